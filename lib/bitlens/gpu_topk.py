"""Fused GPU top-k over ±1 int8 codes (Triton): int8 GEMM tile → integer keys → per-tile top-k, in one kernel.

The unfused CUDA path materialises a (queries × chunk) int32 score matrix and runs `torch.topk` over it; the
selection dominates. Here every program scores a BQ × BN tile with `tl.dot` on int8 (tensor cores), turns
costs into keys `cost << idx_bits | row-in-chunk` (unique, so the order is exact and ties go to the smaller
index), keeps the TOPK smallest keys of its tile with `tl.topk`, and writes only those. The host keeps the k
smallest of the per-tile candidates per chunk (`chunk / BN × TOPK` instead of `chunk` per query) and merges
chunks by (cost, index).

Correct by construction and tested on CPU through Triton's interpreter (TRITON_INTERPRET=1,
tests/test_gpu_topk.py); speed needs a GPU (benchmarks/cuda_search.py).
"""
from __future__ import annotations

import numpy as np

BQ, BN, BK = 64, 128, 64  # tile: queries × database rows × code dims per step (int8 tl.dot needs ≥ 16, 16, 32)


def available() -> bool:
    try:
        import triton  # noqa: F401
    except ImportError:
        return False
    return True


def _kernel():
    import triton
    import triton.language as tl

    @triton.jit
    def topk_tile(q_ptr, d_ptr, out_ptr, nq, n, base, K: tl.constexpr, IDX_BITS: tl.constexpr,
                  TOPK: tl.constexpr, BQ_: tl.constexpr, BN_: tl.constexpr, BK_: tl.constexpr):
        pid_q = tl.program_id(0)
        pid_n = tl.program_id(1)
        rq = pid_q * BQ_ + tl.arange(0, BQ_)
        rn = pid_n * BN_ + tl.arange(0, BN_)
        acc = tl.zeros((BQ_, BN_), dtype=tl.int32)
        for k0 in range(0, K, BK_):
            rk = k0 + tl.arange(0, BK_)
            a = tl.load(q_ptr + rq[:, None] * K + rk[None, :], mask=rq[:, None] < nq, other=0)
            b = tl.load(d_ptr + rn[None, :] * K + rk[:, None], mask=rn[None, :] < n, other=0)
            acc += tl.dot(a, b, out_dtype=tl.int32)
        # cost = base - ip ≥ 0: twice the Hamming distance for ±1 codes, the SDC cost for scaled recurrent values
        cost = base - acc
        key = (cost << IDX_BITS) | rn[None, :]
        key = tl.where(rn[None, :] < n, key, 0x7FFFFFFF)
        best = tl.topk(key, TOPK, dim=1, descending=False)
        cols = pid_n * TOPK + tl.arange(0, TOPK)
        tl.store(out_ptr + rq[:, None] * (tl.num_programs(1) * TOPK) + cols[None, :], best, mask=rq[:, None] < nq)

    return topk_tile


_KERNEL = None


def chunk_topk(q, d, k: int, base: int, max_cost: int):
    """k smallest (cost, row) per query of int8 (nq, K) queries against int8 (n, K) rows, both on one device.

    cost = base − q·d must lie in [0, max_cost] (base ≥ the largest possible inner product). Returns (cost int64 (nq, k'), row int64).
    """
    import torch
    import triton

    global _KERNEL
    if _KERNEL is None:
        _KERNEL = _kernel()
    nq, kdim = q.shape
    n = d.shape[0]
    idx_bits = 31 - int(max_cost).bit_length()
    if n > (1 << idx_bits):
        raise ValueError(f"chunk of {n} rows exceeds the {1 << idx_bits} rows its {idx_bits}-bit keys can index")
    pad = (-kdim) % BK  # zero dims add nothing to the inner product
    if pad:
        q = torch.nn.functional.pad(q, (0, pad))
        d = torch.nn.functional.pad(d, (0, pad))
    topk = 1 << max(0, (min(k, n) - 1).bit_length())
    if topk > BN:
        raise ValueError(f"the fused kernel keeps at most {BN} candidates per tile; k={k} is larger")
    tiles = triton.cdiv(n, BN)
    out = torch.empty((nq, tiles * topk), dtype=torch.int32, device=q.device)
    grid = (triton.cdiv(nq, BQ), tiles)
    _KERNEL[grid](q.contiguous(), d.contiguous(), out, nq, n, base, K=kdim + pad, IDX_BITS=idx_bits, TOPK=topk,
                  BQ_=BQ, BN_=BN, BK_=BK)
    kk = min(k, n)
    keys = torch.topk(out, kk, dim=1, largest=False, sorted=True).values.to(torch.int64)
    return keys >> idx_bits, keys & ((1 << idx_bits) - 1)


def running_topk(q, chunks, k: int, base: int, max_cost: int):
    """Merge `chunk_topk` over (offset, int8 rows) chunks: (cost int64 (nq, k), index int64), exact ties by index."""
    import torch

    best = None
    for offset, d in chunks:
        c, i = chunk_topk(q, d, k, base, max_cost)
        cand = (c << 40) | (i + offset)  # cost < 2^23, index < 2^40: one int64 key orders (cost, index)
        best = cand if best is None else torch.cat([best, cand], 1)
        best = torch.topk(best, min(k, best.shape[1]), dim=1, largest=False, sorted=True).values
    return best >> 40, best & ((1 << 40) - 1)


def to_numpy(t) -> np.ndarray:
    return t.cpu().numpy()
