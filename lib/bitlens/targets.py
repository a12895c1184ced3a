"""The published numbers (`paper_targets.yaml`) that reproduced tables are compared against."""
from __future__ import annotations

from pathlib import Path

import yaml

from bitlens import config


def targets_path(value: str = "", root=None) -> Path:
    """An explicit path, else `<checkout>/../shared/paper_targets.yaml`, else the copy in `params/`."""
    root = Path(root) if root else config.find_root()
    candidates = [config.resolve_path(value, root)] if value else [root.parent / "shared" / "paper_targets.yaml",
                                                                  root / "params" / "paper_targets.yaml"]
    for c in candidates:
        if c.exists():
            return c
    raise FileNotFoundError("paper_targets.yaml not found (looked at " + ", ".join(map(str, candidates)) +
                            "); set report.targets to its path")


def load_targets(value: str = "", root=None) -> dict:
    p = targets_path(value, root)
    data = yaml.safe_load(p.read_text()) or {}
    for paper in ("bebr", "ibc"):
        if paper not in data or "rows" not in data[paper]:
            raise ValueError(f"{p}: missing section '{paper}.rows'")
    return data
