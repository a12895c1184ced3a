"""The native backend: bitlens's compiled kernel (lib/bitlens/native/_search.c, OpenMP), fused XOR + popcount
(AVX-512 VPOPCNTDQ, AVX2 or popcnt, whichever the CPU has, chosen at run time) and a bounded heap per query behind
an integer threshold; the fastest CPU path. BITLENS_NATIVE=0 turns it off (bitlens.native.load)."""
from __future__ import annotations

import numpy as np

from bitlens.codes import RecurrentCode, as_words
from bitlens.search.selection import check_packed, dyadic_scale, keys_to_cosine, merge, plane_words


def module():
    """The compiled kernel module, or None when it was not built (pure-Python install) or BITLENS_NATIVE=0."""
    from bitlens import native

    return native.load("_search")


def name() -> str | None:
    """The kernel the native backend uses now ('avx512', 'avx2', 'popcnt', 'generic'), or None without it."""
    mod = module()
    return None if mod is None else mod.kernel()


def floor(query_packed, db_packed, threads: int = 0) -> int:
    """XOR + popcount of every (query, database) pair with no selection, by the native kernel in use: the
    speed floor a top-k search is measured against (benchmarks). Returns the sum of all distances."""
    mod = module()
    if mod is None:
        raise ImportError("xor_popcount_floor needs the compiled kernel bitlens.native._search: run `make setup`")
    q, db = check_packed(np.asarray(query_packed), np.asarray(db_packed))
    if db.shape[0] == 0:
        raise ValueError("xor_popcount_floor: the database is empty")
    qw, dw = as_words(q), as_words(db)
    return int(mod.floor(qw, dw, qw.shape[0], dw.shape[0], qw.shape[1], int(threads)))


def topk(qw: np.ndarray, dw: np.ndarray, coef: np.ndarray, k: int, mode: int, base: int = 0,
         dnorm: np.ndarray | None = None):
    """One kernel call: queries (Pq, nq, W) and database (Pd, n, W) uint64 words → (values, rows) best first."""
    mod = module()
    pq, nq, w = qw.shape
    pd, n, _ = dw.shape
    val = np.empty((nq, k), np.int64 if mode == 0 else np.float64)
    idx = np.empty((nq, k), np.int64)
    dn = b"" if dnorm is None else np.ascontiguousarray(dnorm, np.float64)
    mod.topk(qw, nq * w, pq, dw, n * w, pd, nq, n, w, np.ascontiguousarray(coef, np.int64), k, mode, int(base),
             dn, 0, val, idx)
    return val, idx


def hamming_topk(q: np.ndarray, db: np.ndarray, k: int, chunk: int):
    """Top-k of packed queries over a packed database, chunk by chunk (k ≤ the database's rows)."""
    qw = as_words(q)[None]
    best = None
    for s in range(0, db.shape[0], chunk):
        dw = as_words(db[s:s + chunk])[None]
        cost, idx = topk(qw, dw, np.ones((1, 1), np.int64), min(k, dw.shape[1]), 0)
        best = merge(best, (cost, idx + s), k, largest=False)
    return best[0].astype(np.int32), best[1]


def sdc_topk(query: RecurrentCode, db: RecurrentCode, k: int, metric: str, chunk: int):
    scale = dyadic_scale(query.weights + db.weights)
    wq = np.array([round(w * scale) for w in query.weights], np.int64)
    wd = np.array([round(w * scale) for w in db.weights], np.int64)
    coef = np.outer(wq, wd)
    if (coef < 0).any():
        raise ValueError(f"the native SDC kernel needs non-negative plane weights, got {query.weights} and "
                         f"{db.weights} (use backend='numpy')")
    base = int(query.m * coef.sum())
    if base >= 1 << 31:
        raise ValueError("the native SDC kernel holds costs in 32 bits; these codes are too long (use 'numpy')")
    s2 = float(scale * scale)
    qw = plane_words(query.planes)
    best = None
    for s in range(0, len(db), chunk):
        part = db.subset(slice(s, s + chunk))
        dw = plane_words(part.planes)
        kk = min(k, len(part))
        if metric == "ip":
            cost, idx = topk(qw, dw, coef, kk, 0, base)
            cand = ((base - 2 * cost) / s2, idx + s)
        else:
            keys, idx = topk(qw, dw, coef, kk, 1, base, part.squared_norms() * s2)
            cand = (keys / s2, idx + s)  # power-of-two scaling: the same floats numpy's keys would be
        best = merge(best, cand, k, largest=True)
    if metric == "cosine":
        return keys_to_cosine(best[0], query.norms()), best[1]
    return best
