"""Ensembles: several trained networks voting by averaged class probabilities.

Seed 002 (L923-935) compares ImageNet results of ensembles (top-5 error: VGG 7.32,
GoogLeNet 6.66, PReLU-net 4.94, BN-Inception 4.82, ResNet 3.57). An ensemble's members
are usually the same architecture trained from different seeds, or checkpoints of one
run; :meth:`Ensemble.from_checkpoints` builds one from saved files.
"""
from __future__ import annotations

import os

import minicnn
from minicnn import nn
from minicnn.nn import functional as F

__all__ = ["Ensemble", "load_model_state"]

_COMBINE = ("mean_softmax", "mean_logits")


class Ensemble(nn.Module):
    """The members' predictions averaged.

    ``combine="mean_softmax"``: the mean of the members' softmax, probabilities
    ``(N, classes)`` (what the ImageNet ensembles report; an accuracy reads them as it
    reads logits, but a cross-entropy needs ``log`` of them). ``"mean_logits"``: the mean
    of the logits, a logits tensor.

    Shape: ``(N, C, H, W)`` -> ``(N, classes)``; every member must give the same shape.
    """

    def __init__(self, models, combine="mean_softmax"):
        super().__init__()
        models = list(models)
        if not models:
            raise ValueError("Ensemble: expected at least one model")
        if combine not in _COMBINE:
            raise ValueError(f"Ensemble: combine must be one of {', '.join(_COMBINE)}, got "
                             f"{combine!r}")
        self.members = nn.ModuleList(models)
        self.combine = combine

    def forward(self, x):
        outputs = [member(x) for member in self.members]          # M x (N, classes)
        shapes = {tuple(o.shape) for o in outputs}
        if len(shapes) != 1:
            raise ValueError(f"Ensemble: the members' outputs differ in shape: {sorted(shapes)}")
        if self.combine == "mean_softmax":
            outputs = [F.softmax(o, dim=1) for o in outputs]
        return minicnn.stack(outputs).mean(0)                      # (N, classes)

    @classmethod
    def from_checkpoints(cls, builder, paths, combine="mean_softmax", **builder_kwargs):
        """One member per checkpoint: ``builder(**builder_kwargs)`` (a zoo name or a
        callable) loaded with each file's weights (a ``minicnn train`` run folder or
        checkpoint, or a state dict saved with ``minicnn.save``)."""
        if isinstance(builder, str):
            from . import get_model_builder
            builder = get_model_builder(builder)
        members = []
        for path in paths:
            member = builder(**builder_kwargs)
            member.load_state_dict(load_model_state(path))
            members.append(member)
        return cls(members, combine)

    def extra_repr(self):
        return f"combine={self.combine!r}"


def load_model_state(path, op="load_model_state"):
    """A model's state dict from a file: a ``minicnn train`` run folder or its
    ``checkpoint.npz`` (its ``"model"`` entry), or a state dict saved with
    ``minicnn.save``."""
    path = os.fspath(path)
    if os.path.isdir(path):
        path = os.path.join(path, "checkpoint.npz")
    if not os.path.exists(path):
        raise FileNotFoundError(f"{op}: no checkpoint at {path!r}")
    state = minicnn.load(path)
    if isinstance(state, dict) and state.get("format") == "minicnn-train":
        state = state["model"]
    if not isinstance(state, dict) or not state:
        raise ValueError(f"{op}: {path!r} holds neither a training checkpoint nor a state dict")
    return state
