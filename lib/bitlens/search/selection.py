"""What every backend shares: input checks, exact top-k with ties to the smaller database index, the merge of
chunk results, plane words and the dyadic scaling of SDC, and the cosine ranking keys."""
from __future__ import annotations

import numpy as np

from bitlens.codes import RecurrentCode, as_words

DEFAULT_CHUNK = 1 << 18  # database rows per scan step


def chunk_topk(vals: np.ndarray, offset: int, k: int, largest: bool):
    """Top-k per row of a chunk whose columns are database rows offset, offset+1, …; ties → smaller index."""
    q, n = vals.shape
    if k >= n:
        cols = np.broadcast_to(np.arange(n), (q, n))
    else:
        t = (np.partition(vals, n - k, axis=1)[:, n - k] if largest
             else np.partition(vals, k - 1, axis=1)[:, k - 1])[:, None]
        better = vals > t if largest else vals < t
        eq = vals == t
        need = k - better.sum(1, keepdims=True)
        take = better | (eq & (np.cumsum(eq, axis=1) <= need))
        cols = np.nonzero(take)[1].reshape(q, k)
    rows = np.arange(q)[:, None]
    return vals[rows, cols], cols.astype(np.int64) + offset


def sorted_topk(vals: np.ndarray, idx: np.ndarray, k: int, largest: bool):
    """Sort candidates by (score, index) and keep k per row."""
    order = np.lexsort((idx, -vals if largest else vals), axis=-1)[:, :k]
    rows = np.arange(vals.shape[0])[:, None]
    return vals[rows, order], idx[rows, order]


def merge(best, new, k: int, largest: bool):
    if best is None:
        return sorted_topk(new[0], new[1], k, largest)
    return sorted_topk(np.concatenate([best[0], new[0]], 1), np.concatenate([best[1], new[1]], 1), k, largest)


def check_packed(q: np.ndarray, db: np.ndarray):
    q = np.ascontiguousarray(q)
    db = np.ascontiguousarray(db) if not isinstance(db, np.memmap) else db
    for name, a in (("query", q), ("database", db)):
        if a.dtype != np.uint8 or a.ndim != 2:
            raise ValueError(f"{name} codes must be packed uint8 (N, nbytes) (see bitlens.codes.pack), "
                             f"got {a.dtype} {a.shape}")
    if q.shape[1] != db.shape[1]:
        raise ValueError(f"query codes have {q.shape[1]} bytes per item but database codes {db.shape[1]}")
    return q, db


def check_recurrent(q: RecurrentCode, db: RecurrentCode):
    if not isinstance(q, RecurrentCode) or not isinstance(db, RecurrentCode):
        raise TypeError("sdc_topk takes bitlens.codes.RecurrentCode objects (RecurrentCode.from_values(...))")
    if q.m != db.m:
        raise ValueError(f"query codes have {q.m} dims but database codes {db.m}")


def plane_words(planes: np.ndarray) -> np.ndarray:
    """(P, N, nbytes) uint8 planes → C-contiguous (P, N, W) uint64 words, zero-padded (no copy when aligned)."""
    p, n, nb = planes.shape
    if nb % 8 == 0:
        return np.ascontiguousarray(planes).view(np.uint64)
    return np.stack([as_words(pl) for pl in planes]) if p else np.zeros((0, n, (nb + 7) // 8), np.uint64)


def dyadic_scale(weights) -> int:
    """Smallest power of two that makes every plane weight an integer (exact integer arithmetic in the kernel)."""
    scale = 1
    while any(abs(w * scale - round(w * scale)) > 1e-12 for w in weights):
        scale *= 2
        if scale > 1 << 20:
            raise ValueError(f"plane weights {list(weights)} are not dyadic rationals; the native SDC kernel "
                             f"needs weights like 1, 0.5, 0.25 (use backend='numpy')")
    return scale


def cosine_rank_keys(ip: np.ndarray, db_sqnorms: np.ndarray) -> np.ndarray:
    """Per-query ranking keys equivalent to cosine: ip·|ip| / ‖b_d‖².

    With dyadic plane weights, ip and ‖b_d‖² are exact small rationals, and a
    correctly rounded division maps equal ratios to the same float: cosines
    that are mathematically equal tie exactly, which float cosines of
    normalised vectors do not guarantee (their tie order is rounding noise).
    """
    return ip * np.abs(ip) / db_sqnorms[None, :]


def keys_to_cosine(keys: np.ndarray, query_norms: np.ndarray) -> np.ndarray:
    return np.sign(keys) * np.sqrt(np.abs(keys)) / query_norms[:, None]
