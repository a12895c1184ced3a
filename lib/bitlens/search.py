"""Exact top-k search over packed binary codes: Hamming distance and SDC (symmetric distance calculation).

Every backend returns the same indices and scores: the database is scanned in
chunks of `chunk_size` rows with a running top-k, so peak memory is bounded by
the chunk size, never by the database size, and ties are always broken towards
the smaller database index.

Backends
- "native": bitlens's own C kernel (lib/bitlens/native/_search.c, OpenMP): fused XOR + popcount (AVX-512
  VPOPCNTDQ, AVX2 or popcnt, whichever the CPU has, chosen at run time) and a bounded heap per query behind an
  integer threshold; the fastest CPU path. BITLENS_NATIVE=0 turns it off (bitlens.native.load).
- "faiss": faiss's popcount kernels (`knn_hamming`, `hammings`) on CPU.
- "numpy": XOR + `np.bitwise_count` on uint64 words (no extra dependency).
- "cuda": ±1 codes as int8 matrices on the GPU, Hamming = (m − ip) / 2: the fused Triton kernel of
  `bitlens.gpu_topk` (int8 tl.dot + per-tile top-k) when Triton is present, else inner products from
  `torch._int_mm` (tensor cores) and a chunked running `torch.topk`.
- "auto": native when built, else faiss when installed, else numpy.

SDC: for recurrent codes b = Σ_i w_i d_i, ⟨b_q, b_d⟩ = Σ_ij w_i w_j (m − 2·H(d_q^i, d_d^j)),
so inner products and cosines come from XOR + popcount alone, exactly.
"""
from __future__ import annotations

import numpy as np

from bitlens.codes import RecurrentCode, as_words, popcount

DEFAULT_CHUNK = 1 << 18  # database rows per scan step
_BLOCK_BYTES = 64 << 20  # numpy backend: bytes of XOR scratch per block


def _has_faiss() -> bool:
    try:
        import faiss  # noqa: F401

        return True
    except ImportError:
        return False


def _native_module():
    """The compiled kernel module, or None when it was not built (pure-Python install) or BITLENS_NATIVE=0."""
    from bitlens import native

    return native.load("_search")


def native_kernel() -> str | None:
    """The kernel the native backend uses now ('avx512', 'avx2', 'popcnt', 'generic'), or None without it."""
    mod = _native_module()
    return None if mod is None else mod.kernel()


def xor_popcount_floor(query_packed, db_packed, threads: int = 0) -> int:
    """XOR + popcount of every (query, database) pair with no selection, by the native kernel in use: the
    speed floor a top-k search is measured against (benchmarks). Returns the sum of all distances."""
    mod = _native_module()
    if mod is None:
        raise ImportError("xor_popcount_floor needs the compiled kernel bitlens.native._search: run `make setup`")
    q, db = _check_packed(np.asarray(query_packed), np.asarray(db_packed))
    if db.shape[0] == 0:
        raise ValueError("xor_popcount_floor: the database is empty")
    qw, dw = as_words(q), as_words(db)
    return int(mod.floor(qw, dw, qw.shape[0], dw.shape[0], qw.shape[1], int(threads)))


BACKENDS = ("auto", "native", "faiss", "numpy", "cuda")


def resolve_backend(backend: str) -> str:
    if backend == "auto":
        if _native_module() is not None:
            return "native"
        return "faiss" if _has_faiss() else "numpy"
    if backend not in BACKENDS:
        raise ValueError(f"unknown search backend {backend!r}; valid: {', '.join(BACKENDS)}")
    if backend == "native" and _native_module() is None:
        raise ImportError("backend 'native' needs the compiled kernel bitlens.native._search: run `make setup` "
                          "(or `pip install -e .` with a C compiler), or use backend='faiss' / 'numpy'")
    if backend == "faiss" and not _has_faiss():
        raise ImportError("backend 'faiss' needs faiss-cpu: pip install 'bitlens[faiss]' (or use backend='numpy')")
    if backend == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise RuntimeError("backend 'cuda' needs a CUDA device; use backend='auto' on CPU")
    return backend


# -- exact top-k selection with index tie-break ---------------------------------------

def _chunk_topk(vals: np.ndarray, offset: int, k: int, largest: bool):
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


def _sorted_topk(vals: np.ndarray, idx: np.ndarray, k: int, largest: bool):
    """Sort candidates by (score, index) and keep k per row."""
    order = np.lexsort((idx, -vals if largest else vals), axis=-1)[:, :k]
    rows = np.arange(vals.shape[0])[:, None]
    return vals[rows, order], idx[rows, order]


def _merge(best, new, k: int, largest: bool):
    if best is None:
        return _sorted_topk(new[0], new[1], k, largest)
    return _sorted_topk(np.concatenate([best[0], new[0]], 1), np.concatenate([best[1], new[1]], 1), k, largest)


# -- Hamming distance matrices ----------------------------------------------------

def _check_packed(q: np.ndarray, db: np.ndarray):
    q = np.ascontiguousarray(q)
    db = np.ascontiguousarray(db) if not isinstance(db, np.memmap) else db
    for name, a in (("query", q), ("database", db)):
        if a.dtype != np.uint8 or a.ndim != 2:
            raise ValueError(f"{name} codes must be packed uint8 (N, nbytes) (see bitlens.codes.pack), "
                             f"got {a.dtype} {a.shape}")
    if q.shape[1] != db.shape[1]:
        raise ValueError(f"query codes have {q.shape[1]} bytes per item but database codes {db.shape[1]}")
    return q, db


def _hamming_numpy(qw: np.ndarray, dbw: np.ndarray) -> np.ndarray:
    nq, w = qw.shape
    out = np.empty((nq, dbw.shape[0]), np.int32)
    rows = max(1, _BLOCK_BYTES // max(1, dbw.shape[0] * w * 8))
    for s in range(0, nq, rows):
        x = qw[s:s + rows, None, :] ^ dbw[None, :, :]
        out[s:s + rows] = popcount(x).sum(-1, dtype=np.int32)
    return out


def _hamming_faiss(q: np.ndarray, db: np.ndarray) -> np.ndarray:
    import faiss

    q = np.ascontiguousarray(q)
    db = np.ascontiguousarray(db)
    out = np.empty((q.shape[0], db.shape[0]), np.int32)
    faiss.hammings(faiss.swig_ptr(q), faiss.swig_ptr(db), q.shape[0], db.shape[0], q.shape[1], faiss.swig_ptr(out))
    return out


def _matrix_backend(backend: str) -> str:
    """Full matrices are not the native kernel's job (it computes top-k): faiss when installed, else numpy."""
    backend = resolve_backend(backend)
    if backend == "native":
        return "faiss" if _has_faiss() else "numpy"
    return backend


def hamming_distances(query_packed, db_packed, backend: str = "auto") -> np.ndarray:
    """Full (nq, nd) int32 Hamming distance matrix (small sets; use hamming_topk for search)."""
    q, db = _check_packed(np.asarray(query_packed), np.asarray(db_packed))
    backend = _matrix_backend(backend)
    if backend == "faiss":
        return _hamming_faiss(q, db)
    if backend == "cuda":
        return _cuda_ip_chunks(q, db)  # pragma: no cover - GPU only
    return _hamming_numpy(as_words(q), as_words(db))


def hamming_topk(query_packed, db_packed, k: int, backend: str = "auto", chunk_size: int | None = None):
    """k nearest database codes per query by Hamming distance: (dist int32 (nq,k), idx int64 (nq,k))."""
    q, db = _check_packed(np.asarray(query_packed), db_packed if isinstance(db_packed, np.memmap)
                          else np.asarray(db_packed))
    n = db.shape[0]
    if not 1 <= k:
        raise ValueError(f"k must be ≥ 1, got {k}")
    if n == 0:
        raise ValueError("hamming_topk: the database is empty; there is nothing to search")
    k_eff = min(k, n)
    backend = resolve_backend(backend)
    chunk = int(chunk_size or DEFAULT_CHUNK)
    if backend == "cuda":
        return _cuda_hamming_topk(q, db, k_eff, chunk)
    if backend == "native":
        if n == 0:
            raise ValueError("hamming_topk: the database is empty")
        qw = as_words(q)[None]
        best = None
        for s in range(0, n, chunk):
            dw = as_words(db[s:s + chunk])[None]
            cost, idx = _native_topk(qw, dw, np.ones((1, 1), np.int64), min(k_eff, dw.shape[1]), 0)
            best = _merge(best, (cost, idx + s), k_eff, largest=False)
        return best[0].astype(np.int32), best[1]
    best = None
    qw = as_words(q) if backend == "numpy" else None
    for s in range(0, n, chunk):
        part = np.ascontiguousarray(db[s:s + chunk])
        if backend == "faiss":
            cand = _faiss_chunk_topk(q, part, k_eff, s)
        else:
            d = _hamming_numpy(qw, as_words(part))
            cand = _chunk_topk(d, s, k_eff, largest=False)
        best = _merge(best, cand, k_eff, largest=False)
    return best[0].astype(np.int32), best[1]


def _faiss_chunk_topk(q: np.ndarray, part: np.ndarray, k: int, offset: int):
    """faiss's heap search breaks ties arbitrarily: ask for 2k and redo the rare rows whose tie run is longer."""
    import faiss

    n = part.shape[0]
    k2 = min(n, max(2 * k, k + 16))
    D, I = faiss.knn_hamming(q, part, k2)
    D = D.astype(np.int32)
    if k2 == n:
        return _sorted_topk(D, I.astype(np.int64) + offset, k, largest=False)
    ambiguous = D[:, k2 - 1] == D[:, k - 1]  # the k-th distance's tie run may extend beyond what faiss returned
    vals, idx = _sorted_topk(D, I.astype(np.int64) + offset, k, largest=False)
    if ambiguous.any():
        rows = np.flatnonzero(ambiguous)
        full = _hamming_faiss(q[rows], part)
        v2, i2 = _chunk_topk(full, offset, k, largest=False)
        vals[rows], idx[rows] = v2, i2
    return vals, idx


# -- SDC ---------------------------------------------------------------------------

def _check_recurrent(q: RecurrentCode, db: RecurrentCode):
    if not isinstance(q, RecurrentCode) or not isinstance(db, RecurrentCode):
        raise TypeError("sdc_topk takes bitlens.codes.RecurrentCode objects (RecurrentCode.from_values(...))")
    if q.m != db.m:
        raise ValueError(f"query codes have {q.m} dims but database codes {db.m}")


def sdc_inner_products(q: RecurrentCode, db: RecurrentCode, backend: str = "auto") -> np.ndarray:
    """(nq, nd) float64 ⟨b_q, b_d⟩ from bits: Σ_ij w_i w_j (m − 2·H(q_i, d_j)). Exact for dyadic weights."""
    _check_recurrent(q, db)
    backend = _matrix_backend(backend)
    out = np.zeros((len(q), len(db)), np.float64)
    for i, wi in enumerate(q.weights):
        for j, wj in enumerate(db.weights):
            if backend == "faiss":
                h = _hamming_faiss(q.planes[i], db.planes[j])
            else:
                h = _hamming_numpy(as_words(q.planes[i]), as_words(db.planes[j]))
            out += (wi * wj) * (q.m - 2.0 * h)
    return out


def sdc_topk(query: RecurrentCode, db: RecurrentCode, k: int, metric: str = "ip", backend: str = "auto",
             chunk_size: int | None = None):
    """k best database codes per query by SDC inner product or cosine: (scores float64, idx int64)."""
    _check_recurrent(query, db)
    if metric not in ("ip", "cosine"):
        raise ValueError(f"unknown SDC metric {metric!r}; valid: 'ip', 'cosine'")
    backend = resolve_backend(backend)
    n = len(db)
    if not 1 <= k:
        raise ValueError(f"k must be ≥ 1, got {k}")
    if n == 0:
        raise ValueError("sdc_topk: the database is empty; there is nothing to search")
    k_eff = min(k, n)
    chunk = int(chunk_size or DEFAULT_CHUNK)
    if backend == "cuda":
        return _cuda_sdc_topk(query, db, k_eff, metric, chunk)
    if backend == "native":
        return _native_sdc_topk(query, db, k_eff, metric, chunk)
    best = None
    for s in range(0, n, chunk):
        part = db.subset(slice(s, s + chunk))
        scores = sdc_inner_products(query, part, backend)
        if metric == "cosine":
            scores = cosine_rank_keys(scores, part.squared_norms())
        best = _merge(best, _chunk_topk(scores, s, k_eff, largest=True), k_eff, largest=True)
    if metric == "cosine":
        return keys_to_cosine(best[0], query.norms()), best[1]
    return best


def _plane_words(planes: np.ndarray) -> np.ndarray:
    """(P, N, nbytes) uint8 planes → C-contiguous (P, N, W) uint64 words, zero-padded (no copy when aligned)."""
    p, n, nb = planes.shape
    if nb % 8 == 0:
        return np.ascontiguousarray(planes).view(np.uint64)
    return np.stack([as_words(pl) for pl in planes]) if p else np.zeros((0, n, (nb + 7) // 8), np.uint64)


def _dyadic_scale(weights) -> int:
    """Smallest power of two that makes every plane weight an integer (exact integer arithmetic in the kernel)."""
    scale = 1
    while any(abs(w * scale - round(w * scale)) > 1e-12 for w in weights):
        scale *= 2
        if scale > 1 << 20:
            raise ValueError(f"plane weights {list(weights)} are not dyadic rationals; the native SDC kernel "
                             f"needs weights like 1, 0.5, 0.25 (use backend='numpy')")
    return scale


def _native_topk(qw: np.ndarray, dw: np.ndarray, coef: np.ndarray, k: int, mode: int, base: int = 0,
                 dnorm: np.ndarray | None = None):
    """One kernel call: queries (Pq, nq, W) and database (Pd, n, W) uint64 words → (values, rows) best first."""
    mod = _native_module()
    pq, nq, w = qw.shape
    pd, n, _ = dw.shape
    val = np.empty((nq, k), np.int64 if mode == 0 else np.float64)
    idx = np.empty((nq, k), np.int64)
    dn = b"" if dnorm is None else np.ascontiguousarray(dnorm, np.float64)
    mod.topk(qw, nq * w, pq, dw, n * w, pd, nq, n, w, np.ascontiguousarray(coef, np.int64), k, mode, int(base),
             dn, 0, val, idx)
    return val, idx


def _native_sdc_topk(query: RecurrentCode, db: RecurrentCode, k: int, metric: str, chunk: int):
    scale = _dyadic_scale(query.weights + db.weights)
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
    qw = _plane_words(query.planes)
    best = None
    for s in range(0, len(db), chunk):
        part = db.subset(slice(s, s + chunk))
        dw = _plane_words(part.planes)
        kk = min(k, len(part))
        if metric == "ip":
            cost, idx = _native_topk(qw, dw, coef, kk, 0, base)
            cand = ((base - 2 * cost) / s2, idx + s)
        else:
            keys, idx = _native_topk(qw, dw, coef, kk, 1, base, part.squared_norms() * s2)
            cand = (keys / s2, idx + s)  # power-of-two scaling: the same floats numpy's keys would be
        best = _merge(best, cand, k, largest=True)
    if metric == "cosine":
        return keys_to_cosine(best[0], query.norms()), best[1]
    return best


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


# -- CUDA -------------------------------------------------------------------------

MAX_BLOCK_ELEMS = 1 << 27  # scores held at once on the GPU: query block × database chunk


def _gpu_unpack_pm1(packed: np.ndarray, device):
    """Packed uint8 (n, nbytes) → ±1 int8 (n, nbytes·8) on the GPU (numpy's big-endian bit order)."""
    import torch

    t = torch.from_numpy(np.ascontiguousarray(packed)).to(device, non_blocking=True)
    shifts = torch.arange(7, -1, -1, device=device, dtype=torch.uint8)
    bits = (t[:, :, None] >> shifts) & 1
    return (bits.reshape(t.shape[0], -1).to(torch.int8) * 2 - 1)


def _int_mm(a, b):
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


def _cuda_ip_chunks(q, db):  # pragma: no cover - GPU only
    raise NotImplementedError("full distance matrices on CUDA: use hamming_topk(backend='cuda')")


_FUSED_BROKEN: list[str] = []  # set once when the Triton kernel cannot run here; the GEMM + torch.topk path remains


def _fused(fn, *args):
    """Run a Triton fused top-k; on a compile/launch failure remember it, warn once and return None."""
    from bitlens import gpu_topk

    if _FUSED_BROKEN or not gpu_topk.available():
        return None
    try:
        return fn(*args)
    except ValueError:
        raise
    except Exception as e:  # pragma: no cover - depends on the GPU and Triton build
        import warnings

        _FUSED_BROKEN.append(repr(e))
        warnings.warn(f"Triton fused top-k unavailable ({e!r}); using the int8 GEMM + torch.topk path")
        return None


def _fused_hamming(q: np.ndarray, db, k: int, chunk: int, dev):
    import torch

    from bitlens import gpu_topk

    m = q.shape[1] * 8  # padding bits are 0 on both sides: −1·−1 adds 1 to ip and to m, m − ip is unchanged
    if k > gpu_topk.BN:
        return None
    rows = min(chunk, 1 << (31 - (2 * m).bit_length()))
    chunks = ((s, _gpu_unpack_pm1(db[s:s + rows], dev)) for s in range(0, db.shape[0], rows))
    cost, idx = gpu_topk.running_topk(_gpu_unpack_pm1(q, dev), chunks, k, m, 2 * m)
    return (cost >> 1).to(torch.int32).cpu().numpy(), idx.cpu().numpy()


def _cuda_hamming_topk(q: np.ndarray, db: np.ndarray, k: int, chunk: int, dev=None):
    """Triton fused kernel when available (bitlens.gpu_topk), else int8 GEMM + running torch.topk."""
    import torch

    dev = dev or torch.device("cuda")
    out = _fused(_fused_hamming, q, db, k, chunk, dev)
    return out if out is not None else _gemm_hamming_topk(q, db, k, chunk, dev)


def _gemm_hamming_topk(q: np.ndarray, db: np.ndarray, k: int, chunk: int, dev):  # pragma: no cover - GPU only
    """Running top-k over database chunks; each chunk is uploaded once and scored block by block of queries.

    Within a chunk the key (distance << 20 | local index) fits int32, so torch.topk orders exactly, ties →
    smaller index, at half the memory traffic of int64; across chunks keys are widened (distance << 40 | index).
    """
    import torch

    m = q.shape[1] * 8  # padding bits are 0 on both sides: −1·−1 adds 1 to ip and to m, (m − ip)/2 is unchanged
    if m >= 1 << 11:
        raise ValueError("the CUDA backend handles codes of up to 2,047 bits")
    chunk = min(chunk, 1 << 20)
    qt = _gpu_unpack_pm1(q, dev)
    nq, shift = q.shape[0], 40
    best = torch.full((nq, k), torch.iinfo(torch.int64).max, dtype=torch.int64, device=dev)
    for s in range(0, db.shape[0], chunk):
        part = _gpu_unpack_pm1(db[s:s + chunk], dev)
        local = torch.arange(part.shape[0], device=dev, dtype=torch.int32)
        qb = max(1, MAX_BLOCK_ELEMS // part.shape[0])
        for a in range(0, nq, qb):
            ip = _int_mm(qt[a:a + qb], part)
            key = torch.bitwise_or(torch.bitwise_left_shift((m - ip) >> 1, 20), local[None, :])
            cand = torch.topk(key, min(k, key.shape[1]), dim=1, largest=False, sorted=True).values.to(torch.int64)
            cand = ((cand >> 20) << shift) | ((cand & ((1 << 20) - 1)) + s)
            best[a:a + qb] = torch.topk(torch.cat([best[a:a + qb], cand], 1), k, dim=1, largest=False).values
        del part
    dist = (best >> shift).to(torch.int32).cpu().numpy()
    return dist, (best & ((1 << shift) - 1)).cpu().numpy()


def cuda_resident_hamming_topk(q_packed: np.ndarray, db_pm1, k: int):  # pragma: no cover - GPU only
    """Top-k against a database already on the GPU as ±1 int8 (n, m): the serving case, no transfers."""
    import torch

    from bitlens import gpu_topk

    dev = db_pm1.device
    m = db_pm1.shape[1]
    qt = _gpu_unpack_pm1(q_packed, dev)[:, :m]
    n = db_pm1.shape[0]
    if k <= gpu_topk.BN:
        rows = 1 << (31 - (2 * m).bit_length())
        out = _fused(gpu_topk.running_topk, qt, ((s, db_pm1[s:s + rows]) for s in range(0, n, rows)), k, m, 2 * m)
        if out is not None:
            return (out[0] >> 1).to(torch.int32), out[1]
    best = torch.full((qt.shape[0], k), torch.iinfo(torch.int64).max, dtype=torch.int64, device=dev)
    chunk = 1 << 20
    for s in range(0, n, chunk):
        part = db_pm1[s:s + chunk]
        local = torch.arange(part.shape[0], device=dev, dtype=torch.int32)
        qb = max(1, MAX_BLOCK_ELEMS // part.shape[0])
        for a in range(0, qt.shape[0], qb):
            ip = _int_mm(qt[a:a + qb], part)
            key = torch.bitwise_or(torch.bitwise_left_shift((m - ip) >> 1, 20), local[None, :])
            cand = torch.topk(key, k, dim=1, largest=False, sorted=True).values.to(torch.int64)
            cand = ((cand >> 20) << 40) | ((cand & ((1 << 20) - 1)) + s)
            best[a:a + qb] = torch.topk(torch.cat([best[a:a + qb], cand], 1), k, dim=1, largest=False).values
    return (best >> 40).to(torch.int32), best & ((1 << 40) - 1)


def _cuda_values(code: RecurrentCode, scale: int, device):
    """Integer-scaled values Σ_i (w_i·scale)·d_i as int8 on the GPU, unpacked from the bit planes there."""
    import torch

    out = None
    for w, plane in zip(code.weights, code.planes):
        v = _gpu_unpack_pm1(plane, device)[:, :code.m].to(torch.int16) * int(round(w * scale))
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
    chunks = ((s, _cuda_values(db.subset(slice(s, s + rows)), scale, dev)) for s in range(0, len(db), rows))
    cost, idx = gpu_topk.running_topk(_cuda_values(query, scale, dev), chunks, k, base, 2 * base)
    return (base - cost.cpu().numpy()).astype(np.float64) / float(scale * scale), idx.cpu().numpy()


def _cuda_sdc_topk(query: RecurrentCode, db: RecurrentCode, k: int, metric: str, chunk: int, dev=None):
    import torch

    dev = dev or torch.device("cuda")
    # scale so every plane weight is an integer: exact int8 GEMM (e.g. {±0.5, ±1.5} → {±1, ±3})
    scale = _dyadic_scale(query.weights + db.weights)
    if metric == "ip":
        out = _fused(_fused_sdc_ip, query, db, k, chunk, dev, scale)
        if out is not None:
            return out
    qv = _cuda_values(query, scale, dev)
    nq = len(query)
    margin = k + 32  # candidates kept per chunk; ties at the boundary are resolved exactly on the host
    best_v = torch.full((nq, margin), -float("inf"), dtype=torch.float64, device=dev)
    best_i = torch.zeros((nq, margin), dtype=torch.int64, device=dev)
    for s in range(0, len(db), chunk):
        part = db.subset(slice(s, s + chunk))
        dv = _cuda_values(part, scale, dev)
        sq = torch.from_numpy(part.squared_norms()).to(dev) if metric == "cosine" else None
        qb = max(1, MAX_BLOCK_ELEMS // dv.shape[0])
        for a in range(0, nq, qb):
            ip = _int_mm(qv[a:a + qb], dv).to(torch.float64) / float(scale * scale)
            if metric == "cosine":
                ip = ip * ip.abs() / sq[None, :]
            kk = min(margin, ip.shape[1])
            v, i = torch.topk(ip, kk, dim=1, largest=True, sorted=True)
            cv, ci = torch.cat([best_v[a:a + qb], v], 1), torch.cat([best_i[a:a + qb], i + s], 1)
            v2, o = torch.topk(cv, margin, dim=1)
            best_v[a:a + qb], best_i[a:a + qb] = v2, torch.gather(ci, 1, o)
    vals, idx = _sorted_topk(best_v.cpu().numpy(), best_i.cpu().numpy(), k, largest=True)
    if metric == "cosine":
        vals = keys_to_cosine(vals, query.norms())
    return vals, idx


# -- faiss export -----------------------------------------------------------------

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
