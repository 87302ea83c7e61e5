"""Committees: networks that differ only in their seeds, whose averaged class probabilities are the prediction.

Cireşan, Meier, Gambardella & Schmidhuber (2012) took fully connected nets
from 0.35 % to 0.31 % test error by averaging seven of them. Here the
committee is the pipeline's network (member 0, models/weights.npz) and one
more network for each number K in ``committee.members``: the same recipe
with every seed (init, data order, dropout, augmentation) moved by K. Each
is a stage of its own (``train_member@K`` in dvc.yaml, a ``matrix``), so
each member is a cached, reproducible output, and adding or changing one
member trains that member alone. Its outputs lie under members/K/ with the
train stage's own layout.
"""

from __future__ import annotations

from pathlib import Path

from digits.params import Params

MEMBERS_DIR = Path("members")


def member_root(member: int) -> Path:
    """Where member K's train stage writes (models/, metrics/, plots/ below it); member 0 is the pipeline's own network,
    at
    the top.
    """
    return Path(".") if member == 0 else MEMBERS_DIR / str(member)


def member_params(params: Params, member: int) -> Params:
    """``params`` with every seed of a training run moved by ``member``: init, data order, dropout and augmentation."""
    if member == 0:
        return params
    return params.model_copy(
        update={
            "model": params.model.model_copy(update={"init_seed": params.model.init_seed + member}),
            "train": params.train.model_copy(
                update={
                    "shuffle_seed": params.train.shuffle_seed + member,
                    "dropout_seed": params.train.dropout_seed + member,
                }
            ),
            "augment": params.augment.model_copy(update={"seed": params.augment.seed + member}),
        }
    )
