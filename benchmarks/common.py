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
           "loadavg", "note"]
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


def ratio_row(benchmark: str, bitlens: str, bitlens_value: float, peer: str, peer_value: float,
              goal: float | None = None, unit: str = "s", note: str = "") -> dict:
    """A row comparing bitlens with a peer measured in the same run; met = ratio ≤ goal."""
    if not bitlens or not peer:
        raise ValueError("a benchmark row names both sides: give the bitlens and the peer label")
    ratio = bitlens_value / peer_value if peer_value else math.nan
    met = "" if goal is None else ("yes" if ratio <= goal else "no")
    return {"benchmark": benchmark, "bitlens": bitlens, "bitlens_value": _round(bitlens_value), "peer": peer,
            "peer_value": _round(peer_value), "unit": unit, "ratio": _round(ratio),
            "goal": "" if goal is None else f"ratio <= {goal:g}", "met": met, "loadavg": loadavg(), "note": note}


def limit_row(benchmark: str, bitlens: str, value: float, unit: str, limit: float, note: str = "") -> dict:
    """A row checking a measured value against a fixed limit (no peer): met = value < limit."""
    return {"benchmark": benchmark, "bitlens": bitlens, "bitlens_value": _round(value), "peer": "",
            "peer_value": "", "unit": unit, "ratio": "", "goal": f"< {limit:g} {unit}",
            "met": "yes" if value < limit else "no", "loadavg": loadavg(), "note": note}


def _round(x: float):
    return x if isinstance(x, str) or not math.isfinite(x) else float(f"{x:.4g}")


def write(name: str, rows: list[dict], kind: str = "cpu") -> Path:
    """Write rows to results/<name>__<hardware>.csv (atomically) and return the path."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}__{hardware(kind)}.csv"
    tmp = path.with_suffix(".csv.tmp")
    with open(tmp, "w", newline="") as f:
        w = csv.DictWriter(f, COLUMNS)
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
    """A plain-text table: both sides, ratio, goal and met for every row."""
    head = f"{'benchmark':<50} {'bitlens':<34} {'value':>11} {'peer':<34} {'value':>11} {'ratio':>7} " \
           f"{'goal':>14} {'met':>4}"
    lines = [head]
    for r in rows:
        ratio = "" if r["ratio"] in ("", None) else f"{float(r['ratio']):.3f}"
        lines.append(f"{r['benchmark']:<50} {r['bitlens']:<34} {_fmt(r['bitlens_value'], r['unit']):>11} "
                     f"{r['peer'] or '—':<34} {_fmt(r['peer_value'], r['unit']):>11} {ratio:>7} "
                     f"{r['goal']:>14} {r['met'] or '—':>4}" + (f"  ({r['note']})" if r["note"] else ""))
    return "\n".join(lines)


# -- transition shims for scripts not yet moved to the API above (remove once none uses them) -------------

def best_of(fn, repeat: int = REPEAT) -> float:
    """Old name of `measure` (always one warm-up)."""
    return measure(fn, max(repeat, 1))


def row(benchmark, ours, peer, peer_s, target=None, note=""):
    """Old positional form of `ratio_row`."""
    return ratio_row(benchmark, "bitlens", ours, peer, peer_s, target, note=note)
