"""What a notebook needs to be a pipeline stage: its params, its folder, and safe writers.

A notebook starts with

    stage = bitlens.stage.Stage("12_bebr_eval", profile, overrides)

and then reads upstream results with `stage.input("11_bebr_train")`, writes
tables/figures with `stage.save_table` / `stage.save_figure`, and ends with
`stage.write_metrics({...})`. Every write is atomic (temp file + rename).
"""
from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any, Mapping

from bitlens import config, io
from bitlens.stages import stage_spec

COMPLETE_MARKER = ".stage.json"  # written by the pipeline once the stage finished


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

    # -- paths -----------------------------------------------------------------
    def path(self, value: str | os.PathLike) -> Path:
        """A params path resolved against the checkout root."""
        return config.resolve_path(value, self.root)

    def input(self, stage: str) -> Path:
        """Folder of an upstream stage; a clear error if it has not produced results yet."""
        d = self.results / stage
        if not (d / "metrics.json").exists():
            raise FileNotFoundError(
                f"stage {self.name} needs the results of {stage}, but {d / 'metrics.json'} does not exist. "
                f"Run notebooks/{stage}.ipynb first, or: python run_all.py --profile {self.profile} --only {stage}")
        return d

    # -- runtime ---------------------------------------------------------------
    @property
    def section(self) -> dict:
        return self.params.get(self.spec.section, {}) if self.spec.section else {}

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
        return io.write_json(self.dir / "metrics.json", {"stage": self.name, "profile": self.profile, **metrics})

    def read_metrics(self, stage: str | None = None) -> dict:
        d = self.input(stage) if stage else self.dir
        return io.read_json(d / "metrics.json")

    def save_table(self, df, name: str, caption: str | None = None, floatfmt: str = ".4f") -> Path:
        """`<name>.csv` and `<name>.md` (markdown with the caption under the table)."""
        csv = self.dir / f"{name}.csv"
        io.write_text(csv, df.to_csv(index=False))
        md = df.to_markdown(index=False, floatfmt=floatfmt)
        if caption:
            md += f"\n\n{caption}\n"
        io.write_text(self.dir / f"{name}.md", md + "\n")
        return csv

    def save_figure(self, fig, name: str, dpi: int = 110) -> Path:
        path = self.dir / f"{name}.png"
        with io.atomic_path(path, suffix=".png") as tmp:
            fig.savefig(tmp, dpi=dpi, bbox_inches="tight", metadata={"Software": None})
        return path
