"""A communicator for tests: the ranks are threads of this process, and each collective
completes when every rank has joined it (in the same order), as MPI's do."""
import threading

import numpy as np

from minicnn.distributed.comm import Communicator, Work


class ThreadWorld:
    def __init__(self, size):
        self.size, self.cond, self.ops = size, threading.Condition(), {}


class ThreadComm(Communicator):
    name = "thread"

    def __init__(self, world, rank, timeout=10.0):
        self.world, self.rank, self.size, self.timeout = world, rank, world.size, timeout
        self.seq, self.log = 0, []          # log: (kind, what) of every collective started

    def _start(self, kind, array, what, root=0):
        seq, self.seq = self.seq, self.seq + 1
        self.log.append((kind, what))
        world = self.world
        with world.cond:
            entry = world.ops.setdefault(seq, {"kind": kind, "arrays": {}, "done": False})
            if entry["kind"] != kind:
                raise AssertionError(f"rank {self.rank} started {kind} as collective {seq}, "
                                     f"another rank {entry['kind']}")
            entry["arrays"][self.rank] = array
            if len(entry["arrays"]) == world.size:
                arrays = entry["arrays"]
                result = (sum(np.asarray(a) for a in arrays.values()) if kind == "allreduce"
                          else np.array(arrays[root], copy=True))
                for a in arrays.values():
                    a[...] = result
                entry["done"] = True
        return Work(lambda: entry["done"], lambda: None, what, self.rank, self.size,
                    self.timeout)

    def allreduce_async(self, array, what="allreduce"):
        return self._start("allreduce", array, what)

    def broadcast(self, array, root=0, what="broadcast"):
        self._start("broadcast", array, what, root).wait()
        return array

    def barrier(self):
        self._start("allreduce", np.zeros(1), "barrier").wait()

    def broadcast_object(self, obj, root=0):
        box = np.empty(1, dtype=object)
        box[0] = obj
        self._start("broadcast", box, "broadcast_object", root).wait()
        return box[0]

    def allgather_object(self, obj):
        return [self.broadcast_object(obj, r) for r in range(self.size)]


def run_ranks(size, fn):
    """``[fn(rank, comm) for rank in range(size)]``, each rank in its own thread."""
    world = ThreadWorld(size)
    results, errors = [None] * size, []

    def body(rank):
        try:
            results[rank] = fn(rank, ThreadComm(world, rank))
        except BaseException as exc:          # noqa: BLE001 -- reported below
            errors.append(exc)
    threads = [threading.Thread(target=body, args=(r,)) for r in range(size)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    if errors:
        raise errors[0]
    return results
