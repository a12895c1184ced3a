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
    print(show(rows)); write("metrics", rows)   # -> results/metrics__<cpu>-<isa>-<n>c.csv
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
BASE_COLUMNS = ["benchmark", "bitlens", "bitlens_value", "peer", "peer_value", "unit", "ratio", "goal", "met",
                "loadavg", "note", "goal_id"]
# What every row records of the machine it ran on (`machine()`), so a number is never separated from its CPU.
MACHINE_COLUMNS = ["machine_class", "cpu_model", "cpu_flags", "kernel", "faiss_version", "faiss_compile",
                   "blas_numpy", "blas_faiss", "threads_env"]
COLUMNS = BASE_COLUMNS + ["floor_multiple"] + MACHINE_COLUMNS
# The goals of the issues this suite answers: a row that measures one at the goal's size carries its id
# (`goal_id=`), so `make bench` and the README list every goal as met, not met, or not measured. Goals that
# depend on the CPU give one limit per ISA class (`goal_limit`): "avx512" for a CPU with AVX-512 F and
# VPOPCNTDQ, "avx2" for the rest.
GOALS = {
    "hamming-cpu": "Hamming top-10, 1,000 × 100,000 × 1,024 bits, exact tie-break / faster of faiss.knn_hamming, "
                   "IndexBinaryFlat ≤ {limit:g}",
    "hamming-floor": "Hamming top-10, 1,000 × 100,000 × 1,024 bits / XOR + popcount floor (no selection) "
                     "≤ {limit:g}",
    "sdc-cpu": "SDC (ip) top-10, bebr 512 × 2 / faiss IndexFlatIP fp32 512-d, same N ≤ {limit:g} (16× less memory)",
    "sdc-hamming": "SDC (ip) top-10, 512 × 2 / Hamming top-10 over the same total bits (2,048) ≤ {limit:g}",
    "cosine-ip": "SDC (cosine) top-10 / SDC (ip) top-10, 512 × 2 ≤ {limit:g}",
    "dissect": "dissection 10,000 images × 112² × 256 units / fork port ≤ {limit:g} (≥ 10× faster)",
    "recall-at-k": "Recall@K 5,000 × 5,000 / one vectorised argsort (open_clip style) ≤ 0.5",
    "map-time": "mAP@all 50,000² × 256 bits < 60 s",
    "map-memory": "mAP@all 50,000² × 256 bits < 1 GiB",
    "mis": "MIS kNN, 1,000 classes × 256 bits / sklearn, identical values ≤ 0.05",
    "gpu-hamming": "GPU: Hamming top-k 10k × 10M / fp16 GEMM top-k ≤ 1.0",
    "gpu-sdc": "GPU: SDC top-k 10k × 10M / fp16 GEMM top-k ≤ 1.0",
}
GOAL_LIMITS = {  # goal id -> {isa class: limit}; ids not listed carry their limit in the text
    "hamming-cpu": {"avx512": 0.5, "avx2": 0.8},
    "hamming-floor": {"avx512": 1.5, "avx2": 1.5},
    "sdc-cpu": {"avx512": 0.35, "avx2": 0.75},
    "sdc-hamming": {"avx512": 1.2, "avx2": 1.2},
    "cosine-ip": {"avx512": 1.3, "avx2": 1.3},
    "dissect": {"avx512": 0.1, "avx2": 0.1},
}
REPEAT = 3  # timed calls per side, after one warm-up


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-")


def cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - non-Linux
        return os.cpu_count() or 1


def cpu_model() -> str:
    name = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return name


FLAGS = ("avx2", "avx512f", "avx512_vpopcntdq")  # the CPU flags the search kernels choose between


def cpu_flags() -> list[str]:
    """Which of FLAGS the CPU reports (/proc/cpuinfo; empty elsewhere)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    have = set(line.split(":", 1)[1].split())
                    return [x for x in FLAGS if x in have]
    except OSError:
        pass
    return []


def isa_class(flags=None) -> str:
    """'avx512' (AVX-512 F and VPOPCNTDQ), 'avx2', or 'x86-64' (neither): which column of the goals applies."""
    flags = cpu_flags() if flags is None else flags
    if "avx512f" in flags and "avx512_vpopcntdq" in flags:
        return "avx512"
    return "avx2" if "avx2" in flags else "x86-64"


def goal_limit(goal_id: str, isa: str | None = None) -> float:
    """The limit of a CPU-dependent goal on this machine's ISA class (an AVX2 limit where neither applies)."""
    limits = GOAL_LIMITS[goal_id]
    isa = isa or isa_class()
    return limits.get(isa, limits["avx2"])


def goal_text(goal_id: str, isa: str | None = None) -> str:
    text = GOALS[goal_id]
    return text.format(limit=goal_limit(goal_id, isa)) if goal_id in GOAL_LIMITS else text


def cpu_name() -> str:
    """CPU model and core count, file-name safe (the whole-pipeline stage times are recorded by this name)."""
    return _slug(cpu_model())[:40] + f"-{cpu_count()}c"


def hardware(kind: str = "cpu") -> str:
    """The machine class, file-name safe: CPU model, ISA class (from the flags) and core count; or the GPU model
    for kind='gpu'. Results of one class go to one CSV per benchmark."""
    if kind == "gpu":
        import torch

        return _slug(torch.cuda.get_device_name(0))
    return _slug(cpu_model())[:40] + f"-{isa_class()}-{cpu_count()}c"


def _blas(prefix: str) -> str:
    """The BLAS threadpoolctl finds loaded from the package folder `prefix` (e.g. numpy.libs): API, version,
    core type it runs on (OpenBLAS's 'architecture'), threads."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return "threadpoolctl not installed"
    found = [i for i in threadpool_info() if i.get("user_api") == "blas" and prefix in i.get("filepath", "")]
    return "; ".join(f"{i.get('internal_api')} {i.get('version')} core={i.get('architecture', '?')} "
                     f"threads={i.get('num_threads')}" for i in found) or "not found"


_MACHINE: dict | None = None


def machine() -> dict:
    """What every row records of the machine and the libraries (MACHINE_COLUMNS); computed once per process."""
    global _MACHINE
    if _MACHINE is None:
        import numpy  # noqa: F401  (its BLAS must be loaded for threadpoolctl to see it)

        from bitlens import search

        try:
            import faiss

            fv, fc = faiss.__version__, faiss.get_compile_options().strip()
        except ImportError:
            fv = fc = "not installed"
        env = " ".join(f"{k}={os.environ[k]}" for k in sorted(os.environ)
                       if k.startswith(("OPENBLAS_", "OMP_", "MKL_", "GOTO")) or k == "BITLENS_NATIVE")
        _MACHINE = {"machine_class": hardware(), "cpu_model": cpu_model(), "cpu_flags": " ".join(cpu_flags()),
                    "kernel": search.native_kernel() or "none (native kernel not built)", "faiss_version": fv,
                    "faiss_compile": fc, "blas_numpy": _blas("numpy"), "blas_faiss": _blas("faiss"),
                    "threads_env": env or "none set"}
    return _MACHINE


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


def value_row(benchmark: str, bitlens: str, value: float, unit: str = "s", note: str = "") -> dict:
    """A measured value with no peer and no goal (e.g. the XOR + popcount floor)."""
    return {"benchmark": benchmark, "bitlens": bitlens, "bitlens_value": _round(value), "peer": "",
            "peer_value": "", "unit": unit, "ratio": "", "goal": "", "met": "", "loadavg": loadavg(),
            "note": note, "goal_id": ""}


def with_floor(row: dict, floor_s: float) -> dict:
    """Record the row's bitlens time as a multiple of the floor measured in the same run at the same size."""
    row["floor_multiple"] = _round(float(row["bitlens_value"]) / floor_s) if floor_s else ""
    return row


def _round(x: float):
    return x if isinstance(x, str) or not math.isfinite(x) else float(f"{x:.4g}")


def goal_status(rows: list[dict], isa: str | None = None) -> list[tuple[str, str, str, dict | None]]:
    """(goal id, goal text for the ISA class, 'met' / 'not met' / 'not measured', the row or None) for every goal,
    in GOALS order; `isa` defaults to the class of the rows' machine (or this machine's)."""
    if isa is None:
        classes = {r.get("machine_class") for r in rows if r.get("machine_class")}
        isa = _isa_of_rows(rows) if classes else isa_class()
    out = []
    for gid in GOALS:
        text = goal_text(gid, isa)
        hit = [r for r in rows if r.get("goal_id") == gid]
        if not hit:
            out.append((gid, text, "not measured", None))
        else:
            r = hit[-1]
            out.append((gid, text, "met" if r["met"] == "yes" else "not met", r))
    return out


def _isa_of_rows(rows: list[dict]) -> str:
    flags = next((r.get("cpu_flags") for r in rows if r.get("cpu_flags") is not None), "")
    return isa_class((flags or "").split())


def show_goals(rows: list[dict]) -> str:
    isa = _isa_of_rows(rows) if any(r.get("machine_class") for r in rows) else isa_class()
    lines = [f"goals of the issues (ISA class {isa}):"]
    for gid, text, status, r in goal_status(rows, isa):
        detail = ""
        if r is not None:
            peer = f" vs {r['peer']} {_fmt(r['peer_value'], r['unit'])}, ratio {float(r['ratio']):.3g}" \
                if r["peer"] else ""
            detail = f" — {r['bitlens']} {_fmt(r['bitlens_value'], r['unit'])}{peer} (load {r['loadavg']})"
        lines.append(f"  [{status:>12}] {text}{detail}")
    return "\n".join(lines)


def write(name: str, rows: list[dict], kind: str = "cpu") -> Path:
    """Write rows to results/<name>__<machine class>.csv (atomically), each row with the machine's record, and
    return the path."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}__{hardware(kind)}.csv"
    info = machine()
    tmp = path.with_suffix(".csv.tmp")
    with open(tmp, "w", newline="") as f:
        w = csv.DictWriter(f, COLUMNS, extrasaction="ignore")
        w.writeheader()
        w.writerows([{"floor_multiple": "", **info, **r} for r in rows])
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
    head = ["benchmark", "bitlens", "value", "peer", "value", "ratio", "× floor", "goal", "met"]
    body = []
    for r in rows:
        ratio = "" if r["ratio"] in ("", None) else f"{float(r['ratio']):.3f}"
        fm = r.get("floor_multiple", "")
        body.append([r["benchmark"], r["bitlens"], _fmt(r["bitlens_value"], r["unit"]), r["peer"] or "—",
                     _fmt(r["peer_value"], r["unit"]), ratio, "—" if fm in ("", None) else f"{float(fm):.2f}",
                     r["goal"] or "—", r["met"] or "—"])
    widths = [max(len(x[i]) for x in [head] + body) for i in range(len(head))]
    right = {2, 4, 5, 6}
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
