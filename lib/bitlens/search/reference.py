"""The numpy backend: XOR + `np.bitwise_count` on uint64 words, no extra dependency (and the reference the
compiled kernels are tested against)."""
from __future__ import annotations

import numpy as np

from bitlens.codes import popcount

_BLOCK_BYTES = 64 << 20  # bytes of XOR scratch per block


def hamming_matrix(qw: np.ndarray, dbw: np.ndarray) -> np.ndarray:
    nq, w = qw.shape
    out = np.empty((nq, dbw.shape[0]), np.int32)
    rows = max(1, _BLOCK_BYTES // max(1, dbw.shape[0] * w * 8))
    for s in range(0, nq, rows):
        x = qw[s:s + rows, None, :] ^ dbw[None, :, :]
        out[s:s + rows] = popcount(x).sum(-1, dtype=np.int32)
    return out
