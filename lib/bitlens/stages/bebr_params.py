"""Params → plain arguments for the BEBR stages (11 and 13): the trainer's options and a head's configuration."""
from __future__ import annotations

from bitlens.bebr.heads import HeadConfig
from bitlens.bebr.train import TrainOptions


def options_from_params(train: dict, device: str) -> TrainOptions:
    """Training options from the validated `bebr.train` section."""
    return TrainOptions(**{k: train[k] for k in TrainOptions.__dataclass_fields__ if k in train}, device=device)


def head_config(in_dim: int, head: dict) -> HeadConfig:
    """A head's configuration from one `bebr.heads.<name>` entry."""
    return HeadConfig(in_dim, head["out_dim"], head["u"], head["hidden"], head["blocks"], head["binary"])
