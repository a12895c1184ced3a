"""Shared helpers: timing, hardware name, CSV output. Every benchmark measures its peer in the same run."""
from __future__ import annotations

import csv
import os
import platform
import re
import time
from pathlib import Path

RESULTS = Path(__file__).parent / "results"
COLUMNS = ["benchmark", "bitlens_s", "peer", "peer_s", "ratio", "target", "met", "note"]


def hardware() -> str:
    try:
        import torch

        if torch.cuda.is_available():
            return re.sub(r"[^A-Za-z0-9]+", "-", torch.cuda.get_device_name(0)).strip("-")
    except ImportError:
        pass
    name = platform.processor() or platform.machine()
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                name = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return re.sub(r"[^A-Za-z0-9]+", "-", name).strip("-")[:40] + f"-{os.cpu_count()}c"


def best_of(fn, repeat: int = 3) -> float:
    """Best wall time of `repeat` runs (after one warm-up when repeat > 1)."""
    if repeat > 1:
        fn()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def row(benchmark, ours, peer, peer_s, target=None, note=""):
    ratio = ours / peer_s if peer_s else float("nan")
    met = "" if target is None else ("yes" if ratio <= target else "NO")
    return {"benchmark": benchmark, "bitlens_s": round(ours, 4), "peer": peer, "peer_s": round(peer_s, 4),
            "ratio": round(ratio, 4), "target": "" if target is None else f"<= {target:g}", "met": met, "note": note}


def write(name: str, rows: list[dict]) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}__{hardware()}.csv"
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, COLUMNS)
        w.writeheader()
        w.writerows(rows)
    return path


def show(rows: list[dict]) -> str:
    lines = [f"{'benchmark':<52} {'bitlens s':>10} {'peer':<28} {'peer s':>9} {'ratio':>8} {'target':>8} {'met':>4}"]
    for r in rows:
        lines.append(f"{r['benchmark']:<52} {r['bitlens_s']:>10.4f} {r['peer']:<28} {r['peer_s']:>9.4f} "
                     f"{r['ratio']:>8.3f} {r['target']:>8} {r['met']:>4}" + (f"  ({r['note']})" if r['note'] else ""))
    return "\n".join(lines)
