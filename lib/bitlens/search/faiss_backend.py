"""The faiss backend: faiss's popcount kernels (`knn_hamming`, `hammings`) on CPU, with exact tie repair, and the
export of packed codes to a faiss binary index."""
from __future__ import annotations

import numpy as np

from bitlens.search.selection import chunk_topk as exact_chunk_topk, sorted_topk


def available() -> bool:
    try:
        import faiss  # noqa: F401

        return True
    except ImportError:
        return False


def hamming_matrix(q: np.ndarray, db: np.ndarray) -> np.ndarray:
    import faiss

    q = np.ascontiguousarray(q)
    db = np.ascontiguousarray(db)
    out = np.empty((q.shape[0], db.shape[0]), np.int32)
    faiss.hammings(faiss.swig_ptr(q), faiss.swig_ptr(db), q.shape[0], db.shape[0], q.shape[1], faiss.swig_ptr(out))
    return out


def chunk_topk(q: np.ndarray, part: np.ndarray, k: int, offset: int):
    """faiss's heap search breaks ties arbitrarily: ask for 2k and redo the rare rows whose tie run is longer."""
    import faiss

    n = part.shape[0]
    k2 = min(n, max(2 * k, k + 16))
    D, I = faiss.knn_hamming(q, part, k2)
    D = D.astype(np.int32)
    if k2 == n:
        return sorted_topk(D, I.astype(np.int64) + offset, k, largest=False)
    ambiguous = D[:, k2 - 1] == D[:, k - 1]  # the k-th distance's tie run may extend beyond what faiss returned
    vals, idx = sorted_topk(D, I.astype(np.int64) + offset, k, largest=False)
    if ambiguous.any():
        rows = np.flatnonzero(ambiguous)
        full = hamming_matrix(q[rows], part)
        v2, i2 = exact_chunk_topk(full, offset, k, largest=False)
        vals[rows], idx[rows] = v2, i2
    return vals, idx


def to_faiss_index(packed, kind: str = "flat", nlist: int = 1024, train_size: int = 100_000, seed: int = 0):
    """A faiss binary index over packed codes: 'flat' (exact, IndexBinaryFlat) or 'ivf' (IndexBinaryIVF)."""
    import faiss

    packed = np.ascontiguousarray(np.asarray(packed, dtype=np.uint8))
    d = packed.shape[1] * 8
    if kind == "flat":
        index = faiss.IndexBinaryFlat(d)
    elif kind == "ivf":
        quantizer = faiss.IndexBinaryFlat(d)
        index = faiss.IndexBinaryIVF(quantizer, d, min(nlist, max(1, packed.shape[0] // 39)))
        rng = np.random.default_rng(seed)
        sample = packed[rng.choice(packed.shape[0], min(train_size, packed.shape[0]), replace=False)]
        index.train(sample)
        index.referenced_quantizer = quantizer  # keep the Python object alive as long as the index
    else:
        raise ValueError(f"unknown faiss index kind {kind!r}; valid: 'flat', 'ivf'")
    index.add(packed)
    return index
