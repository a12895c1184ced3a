"""Hamming and SDC top-10 on CPU against faiss, measured in the same run.

- Hamming top-10, 1,000 queries × 100,000 codes × 1,024 bits: bitlens (faiss backend) / faiss.knn_hamming
  (target ≤ 1.05); numpy fallback / faiss (reported).
- SDC top-10 on bebr codes (512 dims × 2 planes) / float32 inner-product top-10 on 512-d vectors with faiss
  IndexFlatIP (target ≤ 1.0), with memory per item (target 16× smaller).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from common import best_of, row, show, write  # noqa: E402

from bitlens import codes, search  # noqa: E402


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--nq", type=int, default=1000)
    ap.add_argument("--nb", type=int, default=100_000)
    ap.add_argument("--repeat", type=int, default=3)
    a = ap.parse_args(argv)
    import faiss

    rng = np.random.default_rng(0)
    q = codes.pack(np.where(rng.random((a.nq, 1024)) > 0.5, 1, -1))
    db = codes.pack(np.where(rng.random((a.nb, 1024)) > 0.5, 1, -1))
    peer = best_of(lambda: faiss.knn_hamming(q, db, 10), a.repeat)
    ours = best_of(lambda: search.hamming_topk(q, db, 10, backend="faiss"), a.repeat)
    rows = [row(f"hamming top-10 {a.nq}x{a.nb}x1024 (faiss backend)", ours, "faiss.knn_hamming", peer, 1.05,
                "exact index tie-break included")]
    npy = best_of(lambda: search.hamming_topk(q, db, 10, backend="numpy"), 1)
    rows.append(row(f"hamming top-10 {a.nq}x{a.nb}x1024 (numpy fallback)", npy, "faiss.knn_hamming", peer, None,
                    "no faiss installed"))

    d = 512
    qv = (np.where(rng.random((a.nq, d)) > 0.5, 1, -1) + 0.5 * np.where(rng.random((a.nq, d)) > 0.5, 1, -1))
    dv = (np.where(rng.random((a.nb, d)) > 0.5, 1, -1) + 0.5 * np.where(rng.random((a.nb, d)) > 0.5, 1, -1))
    qc, dc = codes.RecurrentCode.from_values(qv), codes.RecurrentCode.from_values(dv)
    qf = rng.standard_normal((a.nq, d)).astype(np.float32)
    xf = rng.standard_normal((a.nb, d)).astype(np.float32)
    index = faiss.IndexFlatIP(d)
    index.add(xf)
    peer = best_of(lambda: index.search(qf, 10), a.repeat)
    ours = best_of(lambda: search.sdc_topk(qc, dc, 10, metric="ip", backend="faiss"), a.repeat)
    mem_ratio = (4 * d) / dc.bytes_per_item
    rows.append(row(f"SDC top-10 {a.nq}x{a.nb} bebr 512x2 bits (ip)", ours, "faiss IndexFlatIP fp32 512-d", peer, 1.0,
                    f"memory per item {dc.bytes_per_item} B vs {4 * d} B = {mem_ratio:.0f}x smaller (target 16x)"))
    print(show(rows))
    print("written:", write("search", rows))
    return rows


if __name__ == "__main__":
    main()
