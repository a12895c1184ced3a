"""The CUDA backend: ±1 codes as int8 matrices on the GPU, Hamming = (m − ip) / 2. The fused Triton kernel of
`bitlens.gpu_topk` (int8 tl.dot + per-tile top-k) when Triton is present, else inner products from
`torch._int_mm` (tensor cores) and a chunked running `torch.topk`."""
from __future__ import annotations

import numpy as np

from bitlens.codes import RecurrentCode
from bitlens.search.selection import dyadic_scale, keys_to_cosine, sorted_topk

MAX_BLOCK_ELEMS = 1 << 27  # scores held at once on the GPU: query block × database chunk


def gpu_unpack_pm1(packed: np.ndarray, device):
    """Packed uint8 (n, nbytes) → ±1 int8 (n, nbytes·8) on the GPU (numpy's big-endian bit order)."""
    import torch

    t = torch.from_numpy(np.ascontiguousarray(packed)).to(device, non_blocking=True)
    shifts = torch.arange(7, -1, -1, device=device, dtype=torch.uint8)
    bits = (t[:, :, None] >> shifts) & 1
    return (bits.reshape(t.shape[0], -1).to(torch.int8) * 2 - 1)


def int_mm(a, b):
    """int32 a @ b.T for int8 matrices on tensor cores; pads to the shapes `torch._int_mm` accepts
    (rows of a > 16, inner dim and columns multiples of 8; mat2 column-major)."""
    import torch
    import torch.nn.functional as F

    m, kdim = a.shape
    n = b.shape[0]
    pk = (-kdim) % 8 + (16 if kdim < 16 else 0)
    pm = max(0, 17 - m)
    pm += (-(m + pm)) % 8
    pn = (-n) % 8
    a2 = F.pad(a, (0, pk, 0, pm)) if (pk or pm) else a
    b2 = F.pad(b, (0, pk, 0, pn)) if (pk or pn) else b
    return torch._int_mm(a2.contiguous(), b2.contiguous().t())[:m, :n]


FUSED_BROKEN: list[str] = []  # set once when the Triton kernel cannot run here; the GEMM + torch.topk path remains


def fused(fn, *args):
    """Run a Triton fused top-k; on a compile/launch failure remember it, warn once and return None."""
    from bitlens import gpu_topk

    if FUSED_BROKEN or not gpu_topk.available():
        return None
    try:
        return fn(*args)
    except ValueError:
        raise
    except Exception as e:  # pragma: no cover - depends on the GPU and Triton build
        import warnings

        FUSED_BROKEN.append(repr(e))
        warnings.warn(f"Triton fused top-k unavailable ({e!r}); using the int8 GEMM + torch.topk path")
        return None


def _fused_hamming(q: np.ndarray, db, k: int, chunk: int, dev):
    import torch

    from bitlens import gpu_topk

    m = q.shape[1] * 8  # padding bits are 0 on both sides: −1·−1 adds 1 to ip and to m, m − ip is unchanged
    if k > gpu_topk.BN:
        return None
    rows = min(chunk, 1 << (31 - (2 * m).bit_length()))
    chunks = ((s, gpu_unpack_pm1(db[s:s + rows], dev)) for s in range(0, db.shape[0], rows))
    cost, idx = gpu_topk.running_topk(gpu_unpack_pm1(q, dev), chunks, k, m, 2 * m)
    return (cost >> 1).to(torch.int32).cpu().numpy(), idx.cpu().numpy()


def hamming_topk(q: np.ndarray, db: np.ndarray, k: int, chunk: int, dev=None):
    """Triton fused kernel when available (bitlens.gpu_topk), else int8 GEMM + running torch.topk."""
    import torch

    dev = dev or torch.device("cuda")
    out = fused(_fused_hamming, q, db, k, chunk, dev)
    return out if out is not None else gemm_hamming_topk(q, db, k, chunk, dev)


def gemm_hamming_topk(q: np.ndarray, db: np.ndarray, k: int, chunk: int, dev):  # pragma: no cover - GPU only
    """Running top-k over database chunks; each chunk is uploaded once and scored block by block of queries.

    Within a chunk the key (distance << 20 | local index) fits int32, so torch.topk orders exactly, ties →
    smaller index, at half the memory traffic of int64; across chunks keys are widened (distance << 40 | index).
    """
    import torch

    m = q.shape[1] * 8  # padding bits are 0 on both sides: −1·−1 adds 1 to ip and to m, (m − ip)/2 is unchanged
    if m >= 1 << 11:
        raise ValueError("the CUDA backend handles codes of up to 2,047 bits")
    chunk = min(chunk, 1 << 20)
    qt = gpu_unpack_pm1(q, dev)
    nq, shift = q.shape[0], 40
    best = torch.full((nq, k), torch.iinfo(torch.int64).max, dtype=torch.int64, device=dev)
    for s in range(0, db.shape[0], chunk):
        part = gpu_unpack_pm1(db[s:s + chunk], dev)
        local = torch.arange(part.shape[0], device=dev, dtype=torch.int32)
        qb = max(1, MAX_BLOCK_ELEMS // part.shape[0])
        for a in range(0, nq, qb):
            ip = int_mm(qt[a:a + qb], part)
            key = torch.bitwise_or(torch.bitwise_left_shift((m - ip) >> 1, 20), local[None, :])
            cand = torch.topk(key, min(k, key.shape[1]), dim=1, largest=False, sorted=True).values.to(torch.int64)
            cand = ((cand >> 20) << shift) | ((cand & ((1 << 20) - 1)) + s)
            best[a:a + qb] = torch.topk(torch.cat([best[a:a + qb], cand], 1), k, dim=1, largest=False).values
        del part
    dist = (best >> shift).to(torch.int32).cpu().numpy()
    return dist, (best & ((1 << shift) - 1)).cpu().numpy()


def resident_hamming_topk(q_packed: np.ndarray, db_pm1, k: int):  # pragma: no cover - GPU only
    """Top-k against a database already on the GPU as ±1 int8 (n, m): the serving case, no transfers."""
    import torch

    from bitlens import gpu_topk

    dev = db_pm1.device
    m = db_pm1.shape[1]
    qt = gpu_unpack_pm1(q_packed, dev)[:, :m]
    n = db_pm1.shape[0]
    if k <= gpu_topk.BN:
        rows = 1 << (31 - (2 * m).bit_length())
        out = fused(gpu_topk.running_topk, qt, ((s, db_pm1[s:s + rows]) for s in range(0, n, rows)), k, m, 2 * m)
        if out is not None:
            return (out[0] >> 1).to(torch.int32), out[1]
    best = torch.full((qt.shape[0], k), torch.iinfo(torch.int64).max, dtype=torch.int64, device=dev)
    chunk = 1 << 20
    for s in range(0, n, chunk):
        part = db_pm1[s:s + chunk]
        local = torch.arange(part.shape[0], device=dev, dtype=torch.int32)
        qb = max(1, MAX_BLOCK_ELEMS // part.shape[0])
        for a in range(0, qt.shape[0], qb):
            ip = int_mm(qt[a:a + qb], part)
            key = torch.bitwise_or(torch.bitwise_left_shift((m - ip) >> 1, 20), local[None, :])
            cand = torch.topk(key, k, dim=1, largest=False, sorted=True).values.to(torch.int64)
            cand = ((cand >> 20) << 40) | ((cand & ((1 << 20) - 1)) + s)
            best[a:a + qb] = torch.topk(torch.cat([best[a:a + qb], cand], 1), k, dim=1, largest=False).values
    return (best >> 40).to(torch.int32), best & ((1 << 40) - 1)


def cuda_values(code: RecurrentCode, scale: int, device):
    """Integer-scaled values Σ_i (w_i·scale)·d_i as int8 on the GPU, unpacked from the bit planes there."""
    import torch

    out = None
    for w, plane in zip(code.weights, code.planes):
        v = gpu_unpack_pm1(plane, device)[:, :code.m].to(torch.int16) * int(round(w * scale))
        out = v if out is None else out + v
    return out.to(torch.int8)


def _fused_sdc_ip(query: RecurrentCode, db: RecurrentCode, k: int, chunk: int, dev, scale: int):
    from bitlens import gpu_topk

    if k > gpu_topk.BN:
        return None
    base = query.m * sum(abs(round(w * scale)) for w in query.weights) * sum(abs(round(w * scale)) for w in db.weights)
    if base * 2 >= 1 << 20:
        return None
    rows = min(chunk, 1 << (31 - (2 * base).bit_length()))
    chunks = ((s, cuda_values(db.subset(slice(s, s + rows)), scale, dev)) for s in range(0, len(db), rows))
    cost, idx = gpu_topk.running_topk(cuda_values(query, scale, dev), chunks, k, base, 2 * base)
    return (base - cost.cpu().numpy()).astype(np.float64) / float(scale * scale), idx.cpu().numpy()


def sdc_topk(query: RecurrentCode, db: RecurrentCode, k: int, metric: str, chunk: int, dev=None):
    import torch

    dev = dev or torch.device("cuda")
    # scale so every plane weight is an integer: exact int8 GEMM (e.g. {±0.5, ±1.5} → {±1, ±3})
    scale = dyadic_scale(query.weights + db.weights)
    if metric == "ip":
        out = fused(_fused_sdc_ip, query, db, k, chunk, dev, scale)
        if out is not None:
            return out
    qv = cuda_values(query, scale, dev)
    nq = len(query)
    margin = k + 32  # candidates kept per chunk; ties at the boundary are resolved exactly on the host
    best_v = torch.full((nq, margin), -float("inf"), dtype=torch.float64, device=dev)
    best_i = torch.zeros((nq, margin), dtype=torch.int64, device=dev)
    for s in range(0, len(db), chunk):
        part = db.subset(slice(s, s + chunk))
        dv = cuda_values(part, scale, dev)
        sq = torch.from_numpy(part.squared_norms()).to(dev) if metric == "cosine" else None
        qb = max(1, MAX_BLOCK_ELEMS // dv.shape[0])
        for a in range(0, nq, qb):
            ip = int_mm(qv[a:a + qb], dv).to(torch.float64) / float(scale * scale)
            if metric == "cosine":
                ip = ip * ip.abs() / sq[None, :]
            kk = min(margin, ip.shape[1])
            v, i = torch.topk(ip, kk, dim=1, largest=True, sorted=True)
            cv, ci = torch.cat([best_v[a:a + qb], v], 1), torch.cat([best_i[a:a + qb], i + s], 1)
            v2, o = torch.topk(cv, margin, dim=1)
            best_v[a:a + qb], best_i[a:a + qb] = v2, torch.gather(ci, 1, o)
    vals, idx = sorted_topk(best_v.cpu().numpy(), best_i.cpu().numpy(), k, largest=True)
    if metric == "cosine":
        vals = keys_to_cosine(vals, query.norms())
    return vals, idx
