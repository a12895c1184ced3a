"""The seven IBC loss terms of one training step (PAPERS.md's table); missing class labels (99999) are skipped.

The batch is split in two halves: half 1 trains the unmasked predictions, half 2 the GRM-masked ones and the
alignment between the conv bits and the hash bits.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

MISSING_LABEL = 99999
TERMS = ("hash_std", "hash_mask", "GRM", "align", "real_std", "real_mask", "sparse")


def _ce(logits, y):
    keep = y != MISSING_LABEL
    if not keep.any():
        return logits.sum() * 0.0
    return F.cross_entropy(logits[keep], y[keep])


def ibc_losses(model, x1, y1, x2, y2, thr_g: float, sparse_ratio: float = 0.2) -> dict[str, torch.Tensor]:
    """Unweighted terms: hash_std, hash_mask, GRM, align, real_std, real_mask, sparse."""
    b1, conv1 = model(x1)
    b2, conv2 = model(x2)
    keep2 = y2 != MISSING_LABEL
    y2s = torch.where(keep2, y2, torch.zeros_like(y2))
    mask2 = model.GRM[y2s]  # rows of the missing-label samples are dropped by _ce below
    out = {
        "hash_std": _ce(model.hash_logits(b1), y1),
        "hash_mask": _ce(model.hash_logits(b2, mask2), torch.where(keep2, y2, MISSING_LABEL)),
        "GRM": F.relu(model.GRM.abs().sum() - thr_g),
        # torch's kl_div(input = log-probabilities, target = probabilities), default 'mean' reduction as the official
        "align": F.kl_div(F.log_softmax(F.adaptive_avg_pool2d(conv2, 1).flatten(1), dim=1), F.softmax(b2, dim=1)),
        "real_std": _ce(model.real_logits(conv1), y1),
        "real_mask": _ce(model.real_logits(conv2, mask2), torch.where(keep2, y2, MISSING_LABEL)),
        "sparse": F.relu(b2.abs().sum(1).mean() - sparse_ratio * model.code_length),
    }
    return out


def weighted_total(terms: dict, weights: dict) -> torch.Tensor:
    return sum(weights[f"{k}_w"] * v for k, v in terms.items())
