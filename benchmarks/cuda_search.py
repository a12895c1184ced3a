"""GPU: Hamming and SDC top-k over 10,000 queries × 10,000,000 codes vs float16 GEMM top-k on the same GPU
(and faiss GPU binary flat when installed). Skips cleanly without CUDA. Smaller sizes: --nq / --nb."""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from common import row, show, write  # noqa: E402


def main(argv=None):
    import torch

    ap = argparse.ArgumentParser()
    ap.add_argument("--nq", type=int, default=10_000)
    ap.add_argument("--nb", type=int, default=10_000_000)
    ap.add_argument("--chunk", type=int, default=1 << 20)
    ap.add_argument("--k", type=int, default=10)
    a = ap.parse_args(argv)
    if not torch.cuda.is_available():
        print("no CUDA device: skipped")
        return []
    from bitlens import codes, search

    rng = np.random.default_rng(0)
    m = 1024
    q = codes.pack(np.where(rng.random((a.nq, m)) > 0.5, 1, -1))
    db = np.packbits(rng.random((a.nb, m)) > 0.5, axis=1)

    def timed(fn):
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        out = fn()
        torch.cuda.synchronize()
        return time.perf_counter() - t0, out

    # peer: float16 GEMM top-k on the same GPU over 512-d float vectors resident on the GPU (the float index)
    qf = torch.randn(a.nq, 512, device="cuda", dtype=torch.float16)
    xf = torch.randn(min(a.chunk, a.nb), 512, device="cuda", dtype=torch.float16)  # one chunk reused: N × 1 KB won't fit

    def fp16():
        best = None
        for s in range(0, a.nb, a.chunk):
            for q0 in range(0, a.nq, max(1, search.MAX_BLOCK_ELEMS // xf.shape[0])):
                qq = qf[q0:q0 + max(1, search.MAX_BLOCK_ELEMS // xf.shape[0])]
                v, _ = torch.topk(qq @ xf.T, a.k, dim=1)
        return v

    timed(fp16)
    peer, _ = timed(fp16)
    timed(lambda: search.hamming_topk(q[:64], db[:a.chunk], a.k, backend="cuda", chunk_size=a.chunk))
    ours, _ = timed(lambda: search.hamming_topk(q, db, a.k, backend="cuda", chunk_size=a.chunk))
    rows = [row(f"CUDA hamming top-{a.k} {a.nq}x{a.nb}x1024 (from host)", ours, "fp16 GEMM top-k 512-d resident",
                peer, 1.0, "bitlens includes host->device transfer and unpacking of the packed database")]
    db_gpu = search._gpu_unpack_pm1(db, torch.device("cuda"))
    res_t, (d1, i1) = timed(lambda: search.cuda_resident_hamming_topk(q, db_gpu, a.k))
    d0, i0 = search.hamming_topk(q[:100], db, a.k, backend="cuda", chunk_size=a.chunk)
    agree = bool((i1[:100].cpu().numpy() == i0).all())
    rows.append(row(f"CUDA hamming top-{a.k} {a.nq}x{a.nb}x1024 (resident int8)", res_t,
                    "fp16 GEMM top-k 512-d resident", peer, 1.0, f"same results as the host path: {agree}; "
                    f"memory per item 1 KB int8 on GPU vs 128 B packed on host"))
    del db_gpu
    vals = lambda n: np.where(rng.random((n, 512)) > 0.5, 1, -1) + 0.5 * np.where(rng.random((n, 512)) > 0.5, 1, -1)
    qc = codes.RecurrentCode.from_values(vals(a.nq))
    nb_sdc = min(a.nb, 2_000_000)
    dc = codes.RecurrentCode.from_values(vals(nb_sdc))
    t_sdc, _ = timed(lambda: search.sdc_topk(qc, dc, a.k, metric="ip", backend="cuda", chunk_size=a.chunk))
    rows.append(row(f"CUDA SDC top-{a.k} {a.nq}x{nb_sdc} bebr 512x2", t_sdc, "fp16 GEMM top-k 512-d (scaled)",
                    peer * nb_sdc / a.nb, 1.0, "peer time scaled to the same N"))
    try:
        import faiss

        if hasattr(faiss, "GpuIndexBinaryFlat"):
            res = faiss.StandardGpuResources()
            idx = faiss.GpuIndexBinaryFlat(res, m)
            idx.add(db)
            t_f, _ = timed(lambda: idx.search(q, a.k))
            rows.append(row("faiss GPU binary flat (reference)", ours, "faiss GpuIndexBinaryFlat", t_f, None))
    except ImportError:
        pass
    print(show(rows))
    print("written:", write("cuda_search", rows))
    return rows


if __name__ == "__main__":
    main()
