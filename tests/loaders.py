"""A stand-in for a DataLoader in the Trainer's tests: fixed batches, and the state
methods the Trainer saves with a checkpoint."""


class FixedBatches:
    def __init__(self, batches):
        self.batches = batches

    def __iter__(self):
        return iter(self.batches)

    def __len__(self):
        return len(self.batches)

    def state_dict(self):
        return {}

    def load_state_dict(self, state):
        pass
