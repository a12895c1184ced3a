"""The seven IBC loss terms of one training step (the official `Trainer.model_update`).

The batch is split in two halves: half 1 trains the unmasked hash and real predictions; half 2 the predictions
gated by GRM[y] and the alignment between the pooled conv bits and the hash bits. Class label 99999 marks a
missing label: those samples are left out of the cross-entropies (and left unmasked), as in the official code.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from bitlens.ibc.model import MISSING_LABEL, IBCOutput

TERMS = ("hash_std", "hash_mask", "GRM", "align", "real_std", "real_mask", "sparse")
WEIGHT_KEYS = tuple(f"{t}_w" for t in TERMS)  # the official config names: hash_std_w, …, sparse_w


def cross_entropy_known(logits, y):
    """Mean cross-entropy over the samples whose label is not missing; 0 when every label is missing."""
    keep = y != MISSING_LABEL
    if not bool(keep.any()):
        return logits.sum() * 0.0
    return F.cross_entropy(logits[keep], y[keep])


def align_kl(codes, conv_out):
    """KL(log_softmax(avgpool(conv_out)) ‖ softmax(codes)) with torch's historical default reduction: the sum
    over all N×K elements divided by N×K (what the official `F.kl_div(...)` call computed; written out so a
    change of torch's default reduction cannot change it)."""
    pooled = F.adaptive_avg_pool2d(conv_out, 1).flatten(1)
    target = F.softmax(codes, dim=1)
    return F.kl_div(F.log_softmax(pooled, dim=1), target, reduction="sum") / target.numel()


def loss_terms(out1: IBCOutput, y1, out2: IBCOutput, y2, GRM, thr_g: float,
               sparse_ratio: float = 0.2) -> dict[str, torch.Tensor]:
    """Unweighted terms from the outputs of the unmasked half (`out1`) and the GRM-masked half (`out2`)."""
    K = out2.codes.shape[1]
    return {
        "hash_std": cross_entropy_known(out1.hash_logits, y1),
        "hash_mask": cross_entropy_known(out2.hash_logits, y2),
        "GRM": F.relu(GRM.abs().sum() - thr_g),
        "align": align_kl(out2.codes, out2.conv_out),
        "real_std": cross_entropy_known(out1.real_logits, y1),
        "real_mask": cross_entropy_known(out2.real_logits, y2),
        "sparse": F.relu(out2.codes.abs().sum(1).mean() - sparse_ratio * K),
    }


def ibc_losses(model, x1, y1, x2, y2, thr_g: float, sparse_ratio: float = 0.2) -> dict[str, torch.Tensor]:
    """Forward both halves in one pass (half 2 gated by GRM[y2]) and return the seven unweighted terms.

    One pass instead of the official two: the gates are per sample, so the outputs are the same for AlexNet
    (no batch statistics), and DistributedDataParallel sees one forward per backward."""
    core = getattr(model, "module", model)  # DistributedDataParallel wraps the model
    n1 = x1.shape[0]
    masked = torch.cat([torch.zeros(n1, dtype=torch.bool), torch.ones(x2.shape[0], dtype=torch.bool)])
    out = model(torch.cat([x1, x2]), torch.cat([y1, y2]), masked.to(x1.device))
    out1, out2 = IBCOutput(*(t[:n1] for t in out)), IBCOutput(*(t[n1:] for t in out))
    return loss_terms(out1, y1, out2, y2, core.GRM, thr_g, sparse_ratio)


def weighted_total(terms: dict, weights: dict) -> torch.Tensor:
    """Σ weight · term with the official weight names (`<term>_w`); a missing weight is an error."""
    absent = [f"{k}_w" for k in terms if f"{k}_w" not in weights]
    if absent:
        raise ValueError(f"loss weights missing: {', '.join(absent)} (give all of {', '.join(WEIGHT_KEYS)})")
    return sum(weights[f"{k}_w"] * v for k, v in terms.items())
