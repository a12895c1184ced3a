"""Pairs from BEBR's interleaved training features: rows [img, txt, img, txt, …], label = image index."""
from __future__ import annotations

import numpy as np


def interleave_pairs(image_features: np.ndarray, text_features: np.ndarray, image_index) -> tuple:
    """(features, labels) in the official training layout: caption j's pair is rows 2j (its image's features)
    and 2j + 1 (its text features); both rows are labelled with the image index."""
    img, txt = np.asarray(image_features), np.asarray(text_features)
    idx = np.asarray(image_index, np.int64).ravel()
    if txt.shape[0] != idx.shape[0]:
        raise ValueError(f"{txt.shape[0]} caption features but {idx.shape[0]} image indices")
    if idx.size and (idx.min() < 0 or idx.max() >= img.shape[0]):
        raise ValueError(f"image indices must lie in 0..{img.shape[0] - 1}, got {idx.min()}..{idx.max()}")
    if img.shape[1:] != txt.shape[1:]:
        raise ValueError(f"image features {img.shape} and text features {txt.shape} differ in dimension")
    pairs = np.empty((2 * idx.shape[0], *img.shape[1:]), np.float32)
    pairs[0::2], pairs[1::2] = img[idx], txt
    return pairs, np.repeat(idx, 2)


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
