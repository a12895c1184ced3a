"""Pairs from BEBR's interleaved training features: rows [img, txt, img, txt, …], label = image index."""
from __future__ import annotations

import numpy as np


def split_pairs(features: np.ndarray, labels: np.ndarray, source: str = "training features"):
    """(image rows, text rows, pair labels) from interleaved arrays, validated."""
    f = np.asarray(features)
    lab = np.asarray(labels).ravel()
    if f.ndim != 2 or f.shape[0] % 2:
        raise ValueError(f"{source}: expected an even number of interleaved [img, txt] rows (2-D), got {f.shape}")
    if lab.shape[0] != f.shape[0]:
        raise ValueError(f"{source}: {f.shape[0]} feature rows but {lab.shape[0]} labels")
    if not np.isfinite(f).all():
        raise ValueError(f"{source}: features contain NaN or infinite values")
    if (lab[0::2] != lab[1::2]).any():
        bad = int(np.flatnonzero(lab[0::2] != lab[1::2])[0])
        raise ValueError(f"{source}: pair {bad} has different labels for its image and text rows")
    return f[0::2], f[1::2], lab[0::2]


class PairBatches:
    """Seeded epoch-wise shuffled batches of pair indices (the last partial batch is dropped, as in training)."""

    def __init__(self, n_pairs: int, batch_pairs: int, seed: int = 0):
        if batch_pairs > n_pairs:
            raise ValueError(f"batch of {batch_pairs} pairs is larger than the {n_pairs} training pairs")
        self.n, self.b, self.seed = n_pairs, batch_pairs, seed

    def __len__(self) -> int:
        return self.n // self.b

    def epoch(self, e: int):
        order = np.random.default_rng([self.seed, e]).permutation(self.n)
        for i in range(len(self)):
            yield order[i * self.b:(i + 1) * self.b]
