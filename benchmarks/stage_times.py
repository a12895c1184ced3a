"""Record the stage times of a first run of the tiny profile for the README (never typed by hand).

    python run_all.py                      # on a freshly generated world: rm -rf data/shapes results/tiny first
    python benchmarks/stage_times.py       # -> benchmarks/results/tiny_stages__<cpu>-<n>c.csv
    python benchmarks/readme_table.py      # -> the README's stage-time table

Reads `results/<profile>/run_manifest.json` and refuses a run in which any stage did not run (cached, failed or
not run): the goal — the tiny profile in under 6 minutes on 2 quiet cores — is about a first run. Each row keeps
the 1-minute load average at the stage's end; the load at the start of the run is a row of its own.

The CSV keeps every run recorded on that hardware (a run is known by its start time; recording the same run again
replaces its rows). The README shows the newest run's stages and one line per recorded run, so a slow run on a
loaded machine stays visible beside the quiet ones.
"""
from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))
from common import RESULTS, cpu_name, read  # noqa: E402

COLUMNS = ["stage", "seconds", "load_1min", "commit", "started"]
GOAL_SECONDS = 360.0  # the tiny profile's goal: under 6 minutes of stage time


def rows_from_manifest(manifest: dict, source: str = "run_manifest.json") -> list[dict]:
    """One row per stage (and one for the run's start); ValueError naming the stages that did not run."""
    stages = manifest.get("stages") or {}
    missing = [f"{k} ({v.get('status')})" for k, v in stages.items() if v.get("status") != "ran"]
    if not stages or missing:
        raise ValueError(f"{source}: not a complete first run — " + (", ".join(missing) or "no stages") +
                         ". Remove data/shapes and results/<profile>, run `python run_all.py`, then record it.")
    meta = {"commit": (manifest.get("git_commit") or "")[:10] + ("+dirty" if manifest.get("git_dirty") else ""),
            "started": manifest.get("started") or ""}
    rows = [{"stage": "(start of the run)", "seconds": "", "load_1min": manifest.get("load_1min_at_start", ""),
             **meta}]
    rows += [{"stage": k, "seconds": v["seconds"], "load_1min": v.get("load_1min", ""), **meta}
             for k, v in stages.items()]
    return rows


def write(rows: list[dict], profile: str = "tiny", results: Path = RESULTS) -> Path:
    """Add one run's rows to the hardware's CSV, replacing an earlier recording of the same run."""
    results.mkdir(parents=True, exist_ok=True)
    path = results / f"{profile}_stages__{cpu_name()}.csv"
    started = {r["started"] for r in rows}
    kept = [r for r in read(path) if r["started"] not in started] if path.exists() else []
    tmp = path.with_suffix(".csv.tmp")
    with open(tmp, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=COLUMNS)
        w.writeheader()
        w.writerows(kept + rows)
    tmp.replace(path)
    return path


def runs(rows: list[dict]) -> list[list[dict]]:
    """The recorded runs, oldest first (by start time), each as its rows in recorded order."""
    by_start: dict[str, list[dict]] = {}
    for r in rows:
        by_start.setdefault(r["started"], []).append(r)
    return [by_start[k] for k in sorted(by_start)]


def _total(run: list[dict]) -> float:
    return sum(float(r["seconds"]) for r in run if r["seconds"] not in ("", None))


def _load_at_start(run: list[dict]):
    return next((r["load_1min"] for r in run if r["seconds"] in ("", None)), "")


def _minutes(seconds: float) -> str:
    minutes, secs = divmod(round(seconds), 60)
    return f"{minutes} min {secs} s"


def table(rows: list[dict]) -> list[str]:
    """The README lines: the newest run's stage table, its total and the goal's status, then every recorded run."""
    recorded = runs(rows)
    newest = recorded[-1]
    stages = [r for r in newest if r["seconds"] not in ("", None)]
    total = _total(newest)
    out = ["| stage | seconds | load (1 min) at its end |", "|---|---|---|"]
    out += [f"| `{r['stage']}` | {float(r['seconds']):.1f} | {r['load_1min'] or '—'} |" for r in stages]
    status = "met" if total < GOAL_SECONDS else "NOT MET"
    out += [f"| **total** | **{total:.1f}** ({_minutes(total)}) | |", "",
            f"Goal: under {GOAL_SECONDS / 60:.0f} minutes of stage time — **{status}** "
            f"(commit {newest[0]['commit'] or '—'}, started {newest[0]['started'] or '—'}, load average "
            f"{_load_at_start(newest) or '—'} at the start)."]
    if len(recorded) > 1:
        met = sum(_total(run) < GOAL_SECONDS for run in recorded)
        out += ["", f"Every first run recorded on this hardware (goal met in {met} of {len(recorded)}):", "",
                "| started | commit | load at the start | total | goal |", "|---|---|---|---|---|"]
        out += [f"| {run[0]['started'] or '—'} | {run[0]['commit'] or '—'} | {_load_at_start(run) or '—'} | "
                f"{_total(run):.1f} s ({_minutes(_total(run))}) | "
                f"{'met' if _total(run) < GOAL_SECONDS else 'NOT MET'} |" for run in recorded]
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--manifest", type=Path, default=HERE.parent / "results" / "tiny" / "run_manifest.json")
    a = ap.parse_args(argv)
    if not a.manifest.exists():
        raise SystemExit(f"{a.manifest}: no run manifest; run `python run_all.py` first")
    manifest = json.loads(a.manifest.read_text())
    try:
        rows = rows_from_manifest(manifest, str(a.manifest))
    except ValueError as e:
        raise SystemExit(str(e)) from None
    path = write(rows, manifest.get("profile", "tiny"))
    print("\n".join(table(read(path))))
    print(f"written: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
