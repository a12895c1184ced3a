"""The published numbers (`paper_targets.yaml`) that reproduced tables are compared against."""
from __future__ import annotations

from pathlib import Path

import yaml

from bitlens import config


def targets_path(value: str = "", root=None) -> Path:
    """An explicit path (`report.targets`), else the checkout's `params/paper_targets.yaml`."""
    root = Path(root) if root else config.find_root()
    path = config.resolve_path(value, root) if value else root / "params" / "paper_targets.yaml"
    if not path.exists():
        raise FileNotFoundError(f"published numbers not found: {path} does not exist; restore "
                                f"params/paper_targets.yaml from git or set report.targets to its path")
    return path


def load_targets(value: str = "", root=None) -> dict:
    p = targets_path(value, root)
    data = yaml.safe_load(p.read_text()) or {}
    for paper in ("bebr", "ibc"):
        if paper not in data or "rows" not in data[paper]:
            raise ValueError(f"{p}: missing section '{paper}.rows'")
    return data
