"""Exact top-k search over packed binary codes: Hamming distance and SDC (symmetric distance calculation).

Every backend returns the same indices and scores: the database is scanned in chunks of `chunk_size` rows with a
running top-k, so peak memory is bounded by the chunk size, never by the database size, and ties are always
broken towards the smaller database index (`selection`).

Backends, one module each:
- "native" (`kernel`): bitlens's compiled kernel, the fastest CPU path;
- "faiss" (`faiss_backend`): faiss's popcount kernels on CPU, with exact tie repair;
- "numpy" (`reference`): XOR + `np.bitwise_count`, no extra dependency;
- "cuda" (`cuda`): ±1 int8 codes on the GPU (fused Triton top-k, else int8 GEMM + torch.topk);
- "auto": native when built, else faiss when installed, else numpy.

SDC: for recurrent codes b = Σ_i w_i d_i, ⟨b_q, b_d⟩ = Σ_ij w_i w_j (m − 2·H(d_q^i, d_d^j)),
so inner products and cosines come from XOR + popcount alone, exactly.
"""
from __future__ import annotations

import numpy as np

from bitlens.codes import RecurrentCode, as_words
from bitlens.search import cuda, faiss_backend, kernel, reference
from bitlens.search.faiss_backend import to_faiss_index
from bitlens.search.selection import (DEFAULT_CHUNK, check_packed, check_recurrent, chunk_topk, cosine_rank_keys,
                                      keys_to_cosine, merge)

__all__ = ["BACKENDS", "RecurrentCode", "cosine_rank_keys", "cuda_resident_hamming_topk", "hamming_distances",
           "hamming_topk", "keys_to_cosine", "native_kernel", "resolve_backend", "sdc_inner_products", "sdc_topk",
           "to_faiss_index", "xor_popcount_floor"]

BACKENDS = ("auto", "native", "faiss", "numpy", "cuda")

native_kernel = kernel.name
xor_popcount_floor = kernel.floor
cuda_resident_hamming_topk = cuda.resident_hamming_topk


def resolve_backend(backend: str) -> str:
    if backend == "auto":
        if kernel.module() is not None:
            return "native"
        return "faiss" if faiss_backend.available() else "numpy"
    if backend not in BACKENDS:
        raise ValueError(f"unknown search backend {backend!r}; valid: {', '.join(BACKENDS)}")
    if backend == "native" and kernel.module() is None:
        raise ImportError("backend 'native' needs the compiled kernel bitlens.native._search: run `make setup` "
                          "(or `pip install -e .` with a C compiler), or use backend='faiss' / 'numpy'")
    if backend == "faiss" and not faiss_backend.available():
        raise ImportError("backend 'faiss' needs faiss-cpu: pip install 'bitlens[faiss]' (or use backend='numpy')")
    if backend == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise RuntimeError("backend 'cuda' needs a CUDA device; use backend='auto' on CPU")
    return backend


def _matrix_backend(backend: str) -> str:
    """Full matrices are not the native kernel's job (it computes top-k): faiss when installed, else numpy."""
    backend = resolve_backend(backend)
    if backend == "native":
        return "faiss" if faiss_backend.available() else "numpy"
    if backend == "cuda":
        raise NotImplementedError("full distance matrices on CUDA: use hamming_topk(backend='cuda')")
    return backend


def _hamming_matrix(q: np.ndarray, db: np.ndarray, backend: str) -> np.ndarray:
    if backend == "faiss":
        return faiss_backend.hamming_matrix(q, db)
    return reference.hamming_matrix(as_words(q), as_words(db))


def hamming_distances(query_packed, db_packed, backend: str = "auto") -> np.ndarray:
    """Full (nq, nd) int32 Hamming distance matrix (small sets; use hamming_topk for search)."""
    q, db = check_packed(np.asarray(query_packed), np.asarray(db_packed))
    return _hamming_matrix(q, db, _matrix_backend(backend))


def _check_k(k: int, n: int, what: str) -> int:
    if not 1 <= k:
        raise ValueError(f"k must be ≥ 1, got {k}")
    if n == 0:
        raise ValueError(f"{what}: the database is empty; there is nothing to search")
    return min(k, n)


def hamming_topk(query_packed, db_packed, k: int, backend: str = "auto", chunk_size: int | None = None):
    """k nearest database codes per query by Hamming distance: (dist int32 (nq,k), idx int64 (nq,k))."""
    q, db = check_packed(np.asarray(query_packed), db_packed if isinstance(db_packed, np.memmap)
                         else np.asarray(db_packed))
    n = db.shape[0]
    k_eff = _check_k(k, n, "hamming_topk")
    backend = resolve_backend(backend)
    chunk = int(chunk_size or DEFAULT_CHUNK)
    if backend == "cuda":
        return cuda.hamming_topk(q, db, k_eff, chunk)
    if backend == "native":
        return kernel.hamming_topk(q, db, k_eff, chunk)
    best = None
    qw = as_words(q) if backend == "numpy" else None
    for s in range(0, n, chunk):
        part = np.ascontiguousarray(db[s:s + chunk])
        if backend == "faiss":
            cand = faiss_backend.chunk_topk(q, part, k_eff, s)
        else:
            cand = chunk_topk(reference.hamming_matrix(qw, as_words(part)), s, k_eff, largest=False)
        best = merge(best, cand, k_eff, largest=False)
    return best[0].astype(np.int32), best[1]


def sdc_inner_products(q: RecurrentCode, db: RecurrentCode, backend: str = "auto") -> np.ndarray:
    """(nq, nd) float64 ⟨b_q, b_d⟩ from bits: Σ_ij w_i w_j (m − 2·H(q_i, d_j)). Exact for dyadic weights."""
    check_recurrent(q, db)
    backend = _matrix_backend(backend)
    out = np.zeros((len(q), len(db)), np.float64)
    for i, wi in enumerate(q.weights):
        for j, wj in enumerate(db.weights):
            out += (wi * wj) * (q.m - 2.0 * _hamming_matrix(q.planes[i], db.planes[j], backend))
    return out


def sdc_topk(query: RecurrentCode, db: RecurrentCode, k: int, metric: str = "ip", backend: str = "auto",
             chunk_size: int | None = None):
    """k best database codes per query by SDC inner product or cosine: (scores float64, idx int64)."""
    check_recurrent(query, db)
    if metric not in ("ip", "cosine"):
        raise ValueError(f"unknown SDC metric {metric!r}; valid: 'ip', 'cosine'")
    backend = resolve_backend(backend)
    n = len(db)
    k_eff = _check_k(k, n, "sdc_topk")
    chunk = int(chunk_size or DEFAULT_CHUNK)
    if backend == "cuda":
        return cuda.sdc_topk(query, db, k_eff, metric, chunk)
    if backend == "native":
        return kernel.sdc_topk(query, db, k_eff, metric, chunk)
    best = None
    for s in range(0, n, chunk):
        part = db.subset(slice(s, s + chunk))
        scores = sdc_inner_products(query, part, backend)
        if metric == "cosine":
            scores = cosine_rank_keys(scores, part.squared_norms())
        best = merge(best, chunk_topk(scores, s, k_eff, largest=True), k_eff, largest=True)
    if metric == "cosine":
        return keys_to_cosine(best[0], query.norms()), best[1]
    return best
