"""Metrics at scale. Both sides of a ratio are measured in this run by `measure` (one warm-up, min of 3).

- Recall@K, 5,000 × 5,000 scores: `bitlens.metrics.recall_at_k` / one vectorised argsort over the whole score
  matrix, as open_clip and CLIP_benchmark rank (numpy and torch both timed; the faster is the peer).
- mAP@all, 50,000 × 50,000 × 256 bits, Matlab tie order: wall time and peak memory of a child process (limits).
- MIS kNN: `bitlens.metrics.mutual_information_matrix` / one scikit-learn `mutual_info_classif` call per class
  on the same samples and seed (values checked identical), on the first --mis-classes classes of a
  1,000-class, 2,000 × 256 code set (scikit-learn needs minutes for all 1,000; the ratio is per class).
- `bitlens.ibc.evaluate` on that 2,000 × 256, 1,000-class set, MIS included (limit).
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from common import limit_row, measure, ratio_row, show, write  # noqa: E402

from bitlens import metrics  # noqa: E402

KS = (1, 5, 10)


def argsort_recall_numpy(sim: np.ndarray) -> list[float]:
    """open_clip's retrieval metric in numpy: rank every row with one argsort, find the true item's place."""
    ranking = np.argsort(-sim, axis=1)
    preds = np.nonzero(ranking == np.arange(sim.shape[0])[:, None])[1]
    return [float((preds < k).mean()) for k in KS]


def argsort_recall_torch(sim) -> list[float]:
    """The same in torch, as open_clip writes it (`torch.argsort(logits, descending=True)`)."""
    import torch

    ranking = torch.argsort(sim, dim=1, descending=True)
    preds = torch.where(ranking == torch.arange(sim.shape[0])[:, None])[1]
    return [float((preds < k).float().mean()) for k in KS]


def recall_rows(n: int) -> list[dict]:
    rng = np.random.default_rng(0)
    img = rng.standard_normal((n, 64))
    txt = img + rng.standard_normal((n, 64))
    sim = metrics.l2_normalize(img) @ metrics.l2_normalize(txt).T
    ours_fn = lambda: metrics.recall_at_k(sim, ks=KS)  # noqa: E731
    got = ours_fn()
    if [got[f"r{k}"] for k in KS] != argsort_recall_numpy(sim):
        raise AssertionError("Recall@K differs from the argsort reference")
    peers = {"one vectorised argsort, numpy": measure(lambda: argsort_recall_numpy(sim))}
    try:
        import torch

        st = torch.from_numpy(sim)
        peers["one vectorised argsort, torch"] = measure(lambda: argsort_recall_torch(st))
    except ImportError:
        pass
    ours = measure(ours_fn)
    peer, peer_s = min(peers.items(), key=lambda kv: kv[1])
    note = "; ".join(f"{k}: {v:.3f} s" for k, v in peers.items())
    return [ratio_row(f"Recall@K {n:,} × {n:,}", "bitlens.metrics.recall_at_k", ours, peer, peer_s, goal=0.5,
                      note=note, goal_id="recall-at-k" if n == 5000 else "")]


# peak memory from VmHWM: this process's own high-water mark (ru_maxrss carries the parent's across exec)
MAP_CHILD = """
import json, sys, time
import numpy as np
from bitlens import metrics
n, bits = int(sys.argv[1]), int(sys.argv[2])
rng = np.random.default_rng(0)
B = (rng.integers(0, 2, (n, bits), dtype=np.int8) * 2 - 1).astype(np.int8)
labels = rng.integers(0, 100, n)
backend = "native" if metrics._native_map() is not None else "numpy"
t0 = time.perf_counter()
m = metrics.mean_average_precision(B, B, labels, labels, self_match="nonrelevant", backend=backend)
dt = time.perf_counter() - t0
hwm = [l for l in open("/proc/self/status") if l.startswith("VmHWM:")][0]
print(json.dumps({"seconds": dt, "map": m, "backend": backend, "peak_gib": int(hwm.split()[1]) / 2**20}))
"""


def map_rows(n: int) -> list[dict]:
    out = subprocess.run([sys.executable, "-c", MAP_CHILD, str(n), "256"], capture_output=True, text=True,
                         check=True)
    res = json.loads(out.stdout.strip().splitlines()[-1])
    size = f"mAP@all {n:,}² × 256 bits (Matlab tie order)"
    label = f"bitlens.metrics.mean_average_precision ({res['backend']})"
    at_goal = n == 50_000
    return [limit_row(size + ", time", label, res["seconds"], "s", 60, note="one run in a child process",
                      goal_id="map-time" if at_goal else ""),
            limit_row(size + ", peak memory", label, res["peak_gib"], "GiB", 1,
                      note="peak RSS of the child process (Python and numpy included)",
                      goal_id="map-memory" if at_goal else "")]


def ibc_code_set(seed: int = 0):
    rng = np.random.default_rng(seed)
    lab = rng.integers(0, 1000, 2000)
    codes01 = rng.random((2000, 256)).astype(np.float32)
    return codes01, lab


def sklearn_mis(B, lab, classes, max_num: int, seed: int) -> np.ndarray:
    """The official script's loop: the same sampling, one scikit-learn call per class."""
    from sklearn.feature_selection import mutual_info_classif

    rng = np.random.default_rng(seed)
    rows = []
    for c in classes:
        s = metrics.mis_samples(lab, int(c), max_num, rng)
        if s is not None:
            rows.append(mutual_info_classif(B[s[0]].astype(np.float32), s[1], random_state=seed))
    return np.asarray(rows)


def mis_rows(n_classes: int) -> list[dict]:
    from bitlens.codes import binarize_sigmoid

    codes01, lab = ibc_code_set()
    B = binarize_sigmoid(codes01)
    classes = list(range(n_classes))
    ours_fn = lambda: metrics.mutual_information_matrix(B, lab, 100, 0, classes=classes)  # noqa: E731
    same = np.array_equal(ours_fn(), sklearn_mis(B, lab, classes, 100, 0))
    ours = measure(ours_fn)
    peer = measure(lambda: sklearn_mis(B, lab, classes, 100, 0))
    return [ratio_row(f"MIS kNN, {n_classes} of 1,000 classes × 256 bits", "bitlens.metrics.mutual_information_matrix",
                      ours, "sklearn mutual_info_classif per class", peer, goal=0.05,
                      note=f"values identical: {'yes' if same else 'NO'}; the ratio is per class",
                      goal_id="mis" if same else "")]


def ibc_cli_rows() -> list[dict]:
    from bitlens.ibc.evaluate import evaluate_codes

    codes01, lab = ibc_code_set()
    grm = np.random.default_rng(1).random((1000, 256))
    t0 = time.perf_counter()
    evaluate_codes(codes01, lab[:, None], grm)
    dt = time.perf_counter() - t0
    return [limit_row("bitlens.ibc.evaluate 2,000 × 256, 1,000 classes, MIS included", "bitlens.ibc.evaluate",
                      dt, "s", 30, note="one run: class, expert-bit mAP and both MIS estimators")]


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python benchmarks/bench_metrics.py", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=5000, help="Recall@K queries = items (default: 5000)")
    ap.add_argument("--map-n", type=int, default=50_000, help="mAP@all codes (default: 50000)")
    ap.add_argument("--mis-classes", type=int, default=10, help="classes timed on both MIS sides (default: 10)")
    a = ap.parse_args(argv)
    rows = recall_rows(a.n) + map_rows(a.map_n) + mis_rows(a.mis_classes) + ibc_cli_rows()
    print(show(rows))
    print("written:", write("metrics", rows))
    return rows


if __name__ == "__main__":
    main()
