"""What a notebook needs to be a pipeline stage: its params, its folder, and safe writers.

A notebook starts with

    stage = bitlens.stage.Stage("12_bebr_eval", profile, overrides)

and then reads upstream results with `stage.input("11_bebr_train")`, writes
tables/figures with `stage.save_table` / `stage.save_figure`, and ends with
`stage.write_metrics({...})`. Every write is atomic (temp file + rename).

Completion: under `run_all.py` the pipeline marks a stage complete after its
notebook succeeded. Run by hand (JupyterLab, *Run All*), the notebook removes the
stage's old marker when it starts and `write_metrics` writes a new one at the
end, so a hand-run stage counts as done for its dependents and for `run_all.py`,
and a hand-run stage that stopped half-way never does.
"""
from __future__ import annotations

import os
import random
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from bitlens import config, fingerprint, io, previous
from bitlens.stages import stage_spec

COMPLETE_MARKER = fingerprint.MARKER
TIMINGS = ".timings.json"  # hidden, so not an output: the pipeline copies it into the run manifest
PIPELINE_ENV = "BITLENS_PIPELINE"  # set by the pipeline: it, not the notebook, marks the stage complete


@dataclass
class Section:
    """What a stage module's `run(stage)` hands back to its notebook for display: the tables and figures it saved
    (by name), the sentences computed from its numbers, and the metrics it wrote. Everything here is already on
    disk; the notebook only shows it."""
    tables: dict[str, Any] = field(default_factory=dict)
    figures: dict[str, Any] = field(default_factory=dict)
    sentences: list[str] = field(default_factory=list)
    metrics: dict[str, Any] = field(default_factory=dict)


def under_pipeline() -> bool:
    return os.environ.get(PIPELINE_ENV) == "1"


class Stage:
    def __init__(self, name: str, profile: str = "tiny", overrides: Mapping[str, Any] | None = None,
                 root: str | os.PathLike | None = None, results: str | os.PathLike | None = None):
        self.spec = stage_spec(name)
        self.name = name
        self.root = Path(root).resolve() if root else config.find_root()
        self.params = config.load_params(profile, overrides or {}, root=self.root)
        self.profile = self.params["profile"]
        base = Path(results) if results else Path(os.environ.get("BITLENS_RESULTS", self.root / "results"))
        self.results = (base if base.is_absolute() else self.root / base) / self.profile
        self.dir = self.results / name
        self.dir.mkdir(parents=True, exist_ok=True)
        self.overrides = dict(overrides or {})
        self._report: dict[str, list[dict]] = {"report_tables": [], "report_figures": []}
        if not under_pipeline():
            fingerprint.clear_marker(self.dir)  # this run replaces the results: not complete until it ends
            (self.dir / TIMINGS).unlink(missing_ok=True)

    @property
    def notebook(self) -> Path:
        return self.root / "notebooks" / f"{self.name}.ipynb"

    # -- paths -----------------------------------------------------------------
    def path(self, value: str | os.PathLike) -> Path:
        """A params path resolved against the checkout root."""
        return config.resolve_path(value, self.root)

    def input(self, stage: str) -> Path:
        """Folder of a finished upstream stage; a clear error if it never finished (no completion marker)."""
        d = self.results / stage
        marker = fingerprint.read_marker(d)
        if marker is None:
            raise FileNotFoundError(
                f"stage {self.name} needs the results of stage {stage}, but {stage} has not finished "
                f"(no completion marker {d / COMPLETE_MARKER}). Run stage {stage} first: "
                f"python run_all.py --profile {self.profile} --only {stage}  (or open notebooks/{stage}.ipynb "
                f"in JupyterLab and Run All)")
        try:
            spec = stage_spec(stage)
        except KeyError:
            return d
        changed = fingerprint.changed_outputs(d, marker)
        if changed:
            print(f"[bitlens] warning: outputs of {stage} changed since it finished ({', '.join(changed[:5])}); "
                  f"re-run it: python run_all.py --profile {self.profile} --from {stage}", file=sys.stderr)
            return d
        now = fingerprint.fingerprint_now(spec, self.params, self.root / "notebooks" / f"{stage}.ipynb", self.results)
        if now != marker["fingerprint"]:
            print(f"[bitlens] warning: the results of {stage} are out of date (its notebook, params, library or "
                  f"upstream changed since it ran); re-run it: python run_all.py --profile {self.profile} "
                  f"--from {stage}", file=sys.stderr)
        return d

    # -- runtime ---------------------------------------------------------------
    def device(self) -> str:
        import torch

        want = self.params["device"]
        if want == "cuda" and not torch.cuda.is_available():
            raise RuntimeError("params device=cuda but no CUDA device is visible; use --set device=auto or cpu")
        if want == "auto":
            return "cuda" if torch.cuda.is_available() else "cpu"
        return want

    def seed_everything(self, offset: int = 0) -> int:
        seed = int(self.params["seed"]) + offset
        random.seed(seed)
        try:
            import numpy as np

            np.random.seed(seed)
        except ImportError:  # pragma: no cover
            pass
        try:
            import torch

            torch.manual_seed(seed)
        except ImportError:  # pragma: no cover
            pass
        return seed

    # -- writers ---------------------------------------------------------------
    def write_metrics(self, metrics: Mapping[str, Any]) -> Path:
        """`metrics.json`, the stage's last write; run by hand, it also marks the stage complete."""
        listed = {k: v for k, v in self._report.items() if v and k not in metrics}
        path = io.write_json(self.dir / "metrics.json", {"stage": self.name, "profile": self.profile, **metrics,
                                                         **listed})
        if not under_pipeline():
            fp = fingerprint.fingerprint_now(self.spec, self.params, self.notebook, self.results)
            fingerprint.write_marker(self.dir, fp, by="notebook")
            previous.prune(self.results, self.name, self.params["pipeline"]["keep_previous"])
        return path

    def record_seconds(self, what: str, seconds: float) -> None:
        """A wall-clock time worth keeping (e.g. how long a dataset took to build). Times differ from run to run,
        so they stay out of the stage's outputs (which its dependents' fingerprints include); under `run_all.py`
        they appear in the run manifest, beside the stage's own seconds."""
        path = self.dir / TIMINGS
        times = io.read_json(path) if path.exists() else {}
        io.write_json(path, {**times, what: round(float(seconds), 2)})

    def read_metrics(self, stage: str | None = None) -> dict:
        d = self.input(stage) if stage else self.dir
        return io.read_json(d / "metrics.json")

    def save_table(self, df, name: str, caption: str | None = None, floatfmt: str = ".4f",
                   report: bool = False) -> Path:
        """`<name>.csv` and `<name>.md` (markdown with the caption under the table). `report=True` lists the
        table under `report_tables` in metrics.json, so the report shows it with its caption."""
        from bitlens.report import markdown_table

        csv = self.dir / f"{name}.csv"
        io.write_text(csv, df.to_csv(index=False))
        md = markdown_table(df, floatfmt)
        if caption:
            md += f"\n\n{caption}\n"
        io.write_text(self.dir / f"{name}.md", md + "\n")
        if report:
            self._list("report_tables", f"{name}.md", caption)
        return csv

    def save_figure(self, fig, name: str, dpi: int = 110, caption: str | None = None) -> Path:
        """`<name>.png`; `caption` (what the figure shows, in words) is what the report prints under it."""
        path = self.dir / f"{name}.png"
        with io.atomic_path(path, suffix=".png") as tmp:
            fig.savefig(tmp, dpi=dpi, bbox_inches="tight", metadata={"Software": None})
        if caption:
            self._list("report_figures", path.name, caption)
        return path

    def _list(self, key: str, file: str, caption: str | None) -> None:
        entries = [e for e in self._report[key] if e["file"] != file]
        self._report[key] = entries + [{"file": file, "caption": caption or ""}]
