"""The result-row API every benchmark uses: timing, rows that name both sides, CSV output, the printed table.

Rules it enforces:
- both sides are timed by `measure` in the same run: one warm-up call, then the minimum of ≥ 3 timed calls;
- a row names both sides (`bitlens` and `peer` labels); a goal against a fixed limit (e.g. "< 60 s") is a
  `limit_row`, whose peer columns stay empty: a constant never sits in a peer column;
- each row records the load average when it was made, so a reader can judge how quiet the machine was.

Usage (in any benchmarks/bench_*.py):

    from common import measure, ratio_row, limit_row, write, show
    ours = measure(lambda: bitlens_fn(x))
    peer = measure(lambda: peer_fn(x))
    rows = [ratio_row("Recall@K 5,000 × 5,000", "bitlens.metrics.recall_at_k", ours,
                      "one vectorised argsort", peer, goal=0.5)]
    rows.append(limit_row("mAP@all 50,000² × 256 bits", "bitlens.metrics.map_at_all", 41.2, "s", 60))
    print(show(rows)); write("metrics", rows)   # -> results/metrics__<cpu>-<n>c.csv
"""
from __future__ import annotations

import csv
import math
import os
import platform
import re
from pathlib import Path

from bitlens.speed import measure  # noqa: F401  (one timing rule for the library and the benchmarks)

RESULTS = Path(__file__).parent / "results"
COLUMNS = ["benchmark", "bitlens", "bitlens_value", "peer", "peer_value", "unit", "ratio", "goal", "met",
           "loadavg", "note", "goal_id"]
# The goals of the issue this suite answers: a row that measures one at the goal's size carries its id
# (`goal_id=`), so `make bench` and the README list every goal as met, not met, or not measured.
GOALS = {
    "hamming-cpu": "Hamming top-10, 1,000 × 100,000 × 1,024 bits, exact tie-break / faster of faiss.knn_hamming, "
                   "IndexBinaryFlat ≤ 0.8",
    "sdc-cpu": "SDC top-10, bebr 512 × 2 / faiss IndexFlatIP fp32 512-d, same N ≤ 0.75 (16× less memory)",
    "recall-at-k": "Recall@K 5,000 × 5,000 / one vectorised argsort (open_clip style) ≤ 0.5",
    "map-time": "mAP@all 50,000² × 256 bits < 60 s",
    "map-memory": "mAP@all 50,000² × 256 bits < 1 GiB",
    "mis": "MIS kNN, 1,000 classes × 256 bits / sklearn, identical values ≤ 0.05",
    "gpu-hamming": "GPU: Hamming top-k 10k × 10M / fp16 GEMM top-k ≤ 1.0",
    "gpu-sdc": "GPU: SDC top-k 10k × 10M / fp16 GEMM top-k ≤ 1.0",
}
REPEAT = 3  # timed calls per side, after one warm-up


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-")


def cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - non-Linux
        return os.cpu_count() or 1


def hardware(kind: str = "cpu") -> str:
    """A file-name-safe hardware name: the CPU model and core count, or the GPU model for kind='gpu'."""
    if kind == "gpu":
        import torch

        return _slug(torch.cuda.get_device_name(0))
    name = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    name = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return _slug(name)[:40] + f"-{cpu_count()}c"


def loadavg() -> str:
    try:
        return "{:.2f}".format(os.getloadavg()[0])
    except OSError:  # pragma: no cover
        return ""


def _check_goal_id(goal_id: str):
    if goal_id and goal_id not in GOALS:
        raise ValueError(f"unknown goal_id {goal_id!r}; valid: {', '.join(GOALS)}")


def ratio_row(benchmark: str, bitlens: str, bitlens_value: float, peer: str, peer_value: float,
              goal: float | None = None, unit: str = "s", note: str = "", goal_id: str = "") -> dict:
    """A row comparing bitlens with a peer measured in the same run; met = ratio ≤ goal."""
    if not bitlens or not peer:
        raise ValueError("a benchmark row names both sides: give the bitlens and the peer label")
    _check_goal_id(goal_id)
    ratio = bitlens_value / peer_value if peer_value else math.nan
    met = "" if goal is None else ("yes" if ratio <= goal else "no")
    return {"benchmark": benchmark, "bitlens": bitlens, "bitlens_value": _round(bitlens_value), "peer": peer,
            "peer_value": _round(peer_value), "unit": unit, "ratio": _round(ratio),
            "goal": "" if goal is None else f"ratio <= {goal:g}", "met": met, "loadavg": loadavg(), "note": note,
            "goal_id": goal_id}


def limit_row(benchmark: str, bitlens: str, value: float, unit: str, limit: float, note: str = "",
              goal_id: str = "") -> dict:
    """A row checking a measured value against a fixed limit (no peer): met = value < limit."""
    _check_goal_id(goal_id)
    return {"benchmark": benchmark, "bitlens": bitlens, "bitlens_value": _round(value), "peer": "",
            "peer_value": "", "unit": unit, "ratio": "", "goal": f"< {limit:g} {unit}",
            "met": "yes" if value < limit else "no", "loadavg": loadavg(), "note": note, "goal_id": goal_id}


def _round(x: float):
    return x if isinstance(x, str) or not math.isfinite(x) else float(f"{x:.4g}")


def goal_status(rows: list[dict]) -> list[tuple[str, str, str, dict | None]]:
    """(goal id, goal, 'met' / 'not met' / 'not measured', the row or None) for every goal, in GOALS order."""
    out = []
    for gid, text in GOALS.items():
        hit = [r for r in rows if r.get("goal_id") == gid]
        if not hit:
            out.append((gid, text, "not measured", None))
        else:
            r = hit[-1]
            out.append((gid, text, "met" if r["met"] == "yes" else "not met", r))
    return out


def show_goals(rows: list[dict]) -> str:
    lines = ["goals of the issue:"]
    for gid, text, status, r in goal_status(rows):
        detail = ""
        if r is not None:
            peer = f" vs {r['peer']} {_fmt(r['peer_value'], r['unit'])}, ratio {float(r['ratio']):.3g}" \
                if r["peer"] else ""
            detail = f" — {r['bitlens']} {_fmt(r['bitlens_value'], r['unit'])}{peer} (load {r['loadavg']})"
        lines.append(f"  [{status:>12}] {text}{detail}")
    return "\n".join(lines)


def write(name: str, rows: list[dict], kind: str = "cpu") -> Path:
    """Write rows to results/<name>__<hardware>.csv (atomically) and return the path."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}__{hardware(kind)}.csv"
    tmp = path.with_suffix(".csv.tmp")
    with open(tmp, "w", newline="") as f:
        w = csv.DictWriter(f, COLUMNS, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)
    os.replace(tmp, path)
    return path


def read(path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _fmt(value, unit: str) -> str:
    if value in ("", None):
        return "—"
    return f"{float(value):.4g} {unit}"


def show(rows: list[dict]) -> str:
    """A plain-text table: both sides, ratio, goal and met for every row; notes below the table."""
    head = ["benchmark", "bitlens", "value", "peer", "value", "ratio", "goal", "met"]
    body = []
    for r in rows:
        ratio = "" if r["ratio"] in ("", None) else f"{float(r['ratio']):.3f}"
        body.append([r["benchmark"], r["bitlens"], _fmt(r["bitlens_value"], r["unit"]), r["peer"] or "—",
                     _fmt(r["peer_value"], r["unit"]), ratio, r["goal"] or "—", r["met"] or "—"])
    widths = [max(len(x[i]) for x in [head] + body) for i in range(len(head))]
    right = {2, 4, 5}
    lines = ["  ".join(c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(x, widths)))
             for x in [head] + body]
    lines.insert(1, "  ".join("-" * w for w in widths))
    notes = [f"  [{i + 1}] {r['note']}" for i, r in enumerate(rows) if r["note"]]
    return "\n".join(lines + (["notes (row number):"] + notes if notes else []))


# -- transition shims for scripts not yet moved to the API above (remove once none uses them) -------------

def best_of(fn, repeat: int = REPEAT) -> float:
    """Old name of `measure` (always one warm-up)."""
    return measure(fn, max(repeat, 1))


def row(benchmark, ours, peer, peer_s, target=None, note=""):
    """Old positional form of `ratio_row`."""
    return ratio_row(benchmark, "bitlens", ours, peer, peer_s, target, note=note)
