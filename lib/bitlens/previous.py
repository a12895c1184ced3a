"""Where earlier runs go: `results/<profile>/.previous/<stage>/<UTC time>/`, outside every stage folder.

A trainer that cannot continue the run in its folder (other settings, `--fresh`, `--force`) moves the earlier
files aside rather than deleting them. They go beside the stage folders, not into them, so that a stage folder
holds only the current run: its output digest, which its dependents' fingerprints include, never counts an
earlier run, and the folder does not grow with every forced run. `pipeline.keep_previous` earlier runs are kept
per stage (the newest); `prune` removes the rest.

A folder is recognised as a stage folder by its name, `NN_name` (the stage list's naming). A folder outside any
stage (a CLI's `--out`) keeps its earlier runs in `.previous/<folder name>/<time>/` beside it.
"""
from __future__ import annotations

import re
import shutil
from datetime import datetime, timezone
from pathlib import Path

DIR = ".previous"
_STAGE_NAME = re.compile(r"^\d\d_[A-Za-z0-9_]+$")


def _stamp() -> str:
    return datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S.%fZ")


def destination(out_dir: str | Path) -> Path:
    """A new, not yet existing folder for the earlier run of `out_dir`."""
    out_dir = Path(out_dir).resolve()
    stage = next((a for a in (out_dir, *out_dir.parents) if _STAGE_NAME.match(a.name)), None)
    if stage is None:
        base, rel = out_dir.parent / DIR / out_dir.name, Path()
    else:
        base, rel = stage.parent / DIR / stage.name, out_dir.relative_to(stage)
    stamp = _stamp()
    dest, n = base / stamp, 1
    while dest.exists():
        n += 1
        dest = base / f"{stamp}-{n}"
    return dest / rel


def runs(results_dir: str | Path, stage: str) -> list[Path]:
    """The kept earlier runs of a stage, oldest first."""
    home = Path(results_dir) / DIR / stage
    return sorted(p for p in home.iterdir() if p.is_dir()) if home.is_dir() else []


def prune(results_dir: str | Path, stage: str, keep: int) -> list[Path]:
    """Remove all but the newest `keep` earlier runs of a stage; returns the removed folders."""
    old = runs(results_dir, stage)
    gone = old[:max(0, len(old) - keep)]
    for p in gone:
        shutil.rmtree(p)
    return gone


def adopt_legacy(stage_dir: str | Path, prefix: str = "previous-") -> list[Path]:
    """Move `previous-*` folders that older versions kept inside a stage folder to `.previous/`."""
    stage_dir = Path(stage_dir)
    moved = []
    for p in sorted(stage_dir.rglob(f"{prefix}*")):
        if p.is_dir() and p.exists():
            dest = destination(p.parent)
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.move(str(p), dest)
            moved.append(dest)
    return moved
