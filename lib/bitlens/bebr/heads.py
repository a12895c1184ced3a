"""The recurrent binary embedding head (official class `RBE_NORM`), with the official state-dict layout.

b = s(W(x));  for i < u:  f = normalize(B_i(b)),  d = s(R_i(x − f)),  b = b + 2^−(i+1)·d

`s` is sign with a straight-through gradient that is zeroed where |input| > 1
(identity for the float baseline). Module names W, B{i}, R{i} and their inner
layout follow the official code, so its checkpoints load unchanged:
hidden = 0 → one Linear; 1 block → Sequential(Linear, BatchNorm1d, ReLU, Linear);
n > 1 blocks → Sequential(n × LinearBnRelu(fc, bn, relu), Linear).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from bitlens import checkpoint


class _SignSTE(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return torch.sign(x)  # the official sign: an exact 0 stays 0 (it does not occur on trained features)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return grad * (x.abs() <= 1).to(grad.dtype)


def sign_ste(x: torch.Tensor) -> torch.Tensor:
    return _SignSTE.apply(x)


class LinearBnRelu(nn.Module):
    def __init__(self, in_dim: int, out_dim: int, bias: bool = True):
        super().__init__()
        self.fc = nn.Linear(in_dim, out_dim, bias=bias)
        self.bn = nn.BatchNorm1d(out_dim)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x):
        return self.relu(self.bn(self.fc(x)))


def transformation(in_dim: int, out_dim: int, hidden: int, blocks: int, bias: bool = True) -> nn.Module:
    if hidden == 0:
        return nn.Linear(in_dim, out_dim, bias=bias)
    if blocks == 1:
        return nn.Sequential(nn.Linear(in_dim, hidden, bias=bias), nn.BatchNorm1d(hidden), nn.ReLU(inplace=True),
                             nn.Linear(hidden, out_dim, bias=bias))
    layers = [LinearBnRelu(in_dim, hidden, bias)] + [LinearBnRelu(hidden, hidden, bias) for _ in range(1, blocks)]
    return nn.Sequential(*layers, nn.Linear(hidden, out_dim, bias=bias))


@dataclass(frozen=True)
class HeadConfig:
    in_dim: int = 512
    out_dim: int = 512
    u: int = 1  # recurrent steps: bit planes = u + 1
    hidden: int = 2048
    blocks: int = 1
    binary: bool = True

    @property
    def planes(self) -> int:
        return self.u + 1

    @property
    def bits(self) -> int:
        """Storage per item: binary → out_dim × planes; float → 32 × out_dim."""
        return self.out_dim * self.planes if self.binary else 32 * self.out_dim


class RBEHead(nn.Module):
    def __init__(self, cfg: HeadConfig):
        super().__init__()
        self.cfg = cfg
        self.W = transformation(cfg.in_dim, cfg.out_dim, cfg.hidden, cfg.blocks)
        for i in range(cfg.u):
            setattr(self, f"B{i}", transformation(cfg.out_dim, cfg.in_dim, cfg.hidden, cfg.blocks))
            setattr(self, f"R{i}", transformation(cfg.in_dim, cfg.out_dim, cfg.hidden, cfg.blocks))
        self.apply(self._init)

    @staticmethod
    def _init(m):
        if isinstance(m, nn.Linear):
            nn.init.xavier_normal_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)

    def s(self, x):
        return sign_ste(x) if self.cfg.binary else x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b = self.s(self.W(x))
        for i in range(self.cfg.u):
            f = F.normalize(getattr(self, f"B{i}")(b), p=2, dim=1)
            d = self.s(getattr(self, f"R{i}")(x - f))
            b = b + (0.5 ** (i + 1)) * d
        return b

    def load_official(self, state_dict: dict, source: str = "state dict") -> None:
        """Load a state dict with the official keys (optionally prefixed by DDP's `module.`), strictly."""
        checkpoint.load_strict(self, state_dict, source, f"this head ({self.cfg})",
                               "check out_dim / u / hidden / blocks against the checkpoint's training config")


def freeze(head: "RBEHead") -> "RBEHead":
    """Eval mode (BatchNorm uses, never updates, its running statistics) and no gradients."""
    head.eval()
    for p in head.parameters():
        p.requires_grad_(False)
    return head


def load_head(path, in_dim: int | None = None) -> RBEHead:
    """A trained head, frozen, from a checkpoint of `bitlens.bebr.train` (its settings travel in `meta.config`)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: head checkpoint not found; run notebooks/11_bebr_train.ipynb first")
    sd, ck = checkpoint.read_state_dict(path, "a bitlens.bebr head checkpoint")
    try:
        cfg = HeadConfig(**ck["meta"]["config"])
    except (KeyError, TypeError) as e:
        raise ValueError(f"{path}: no head settings under meta.config ({e}); expected a bitlens.bebr checkpoint") \
            from None
    if in_dim is not None and cfg.in_dim != in_dim:
        raise ValueError(f"{path}: the head takes {cfg.in_dim}-d features but the old features are {in_dim}-d; "
                         f"are they from the encoder this head was trained on?")
    head = RBEHead(cfg)
    head.load_official(sd, source=str(path))
    return freeze(head)
