"""BEBR's pairwise contrastive loss ("rbe_loss") with duplicate removal and hard negatives.

For anchors h1 and candidates h2 (and the reverse direction): cosine logits / τ;
candidates sharing the anchor's image label are masked with −1e9 (they are the
same picture under another caption, not negatives); cross-entropy over
[positive, the k hardest remaining negatives] with target 0; the two
directions are summed.

The logits are always computed in float32, also under mixed precision: −1e9
does not fit in float16, and a softmax over temperature-scaled cosines is where
half precision loses most.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

MASKED = -1e9


def contrast_direction(a: torch.Tensor, c: torch.Tensor, a_lab: torch.Tensor, c_lab: torch.Tensor,
                       pos_idx: torch.Tensor, tau: float, k: int) -> torch.Tensor:
    """One direction of the loss: anchors `a` (labels `a_lab`) against candidates `c` (labels `c_lab`), anchor i's
    positive at `c[pos_idx[i]]`; same-label candidates masked, the k hardest others as negatives."""
    logits = F.normalize(a, dim=1) @ F.normalize(c, dim=1).T / tau
    pos = logits.gather(1, pos_idx[:, None])
    neg = logits.masked_fill(a_lab[:, None] == c_lab[None, :], MASKED)
    k = min(k, neg.shape[1])
    hard = neg.topk(k, dim=1).values
    z = torch.cat([pos, hard], 1)
    return F.cross_entropy(z, torch.zeros(z.shape[0], dtype=torch.long, device=z.device))


def rbe_loss(h1: torch.Tensor, h2: torch.Tensor, labels: torch.Tensor, tau: float = 0.05, k: int = 5,
             all_h1: torch.Tensor | None = None, all_h2: torch.Tensor | None = None,
             all_labels: torch.Tensor | None = None, offset: int = 0) -> torch.Tensor:
    """Loss for local anchors (h1[i] ↔ h2[i]). Under DDP pass the all-gathered candidates and this rank's offset."""
    if all_h1 is None:
        all_h1, all_h2, all_labels = h1, h2, labels
    pos_idx = torch.arange(h1.shape[0], device=h1.device) + offset
    with torch.autocast(device_type=h1.device.type, enabled=False):
        h1, h2, all_h1, all_h2 = (t.float() for t in (h1, h2, all_h1, all_h2))
        return (contrast_direction(h1, all_h2, labels, all_labels, pos_idx, tau, k)
                + contrast_direction(h2, all_h1, labels, all_labels, pos_idx, tau, k))


def compat_loss(a: torch.Tensor, b: torch.Tensor, old_img: torch.Tensor, old_txt: torch.Tensor,
                labels: torch.Tensor, tau: float = 0.05, k: int = 5, all_labels: torch.Tensor | None = None,
                offset: int = 0) -> torch.Tensor:
    """The compatibility term (docs/compat.md): D(a → old_txt) + D(b → old_img), new local queries against the
    old gallery codes of the (global) batch.

    `old_img` / `old_txt` hold every candidate (under DDP: the whole global batch, `offset` = this rank's first
    anchor). They are detached: no gradient can reach the old head, however the codes were computed.
    """
    all_labels = labels if all_labels is None else all_labels
    pos_idx = torch.arange(a.shape[0], device=a.device) + offset
    return (contrast_direction(a, old_txt.detach(), labels, all_labels, pos_idx, tau, k)
            + contrast_direction(b, old_img.detach(), labels, all_labels, pos_idx, tau, k))
