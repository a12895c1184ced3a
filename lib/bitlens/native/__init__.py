"""Compiled kernels (built by `pip install -e .` / `make setup`); every caller keeps a pure-Python fallback."""
from __future__ import annotations

import importlib
import os


def load(name: str):
    """The compiled module `bitlens.native.<name>`, or None when it is not built; BITLENS_NATIVE=0 forces None
    (to run the fallbacks on a machine that has the kernels)."""
    if os.environ.get("BITLENS_NATIVE", "1") == "0":
        return None
    try:
        return importlib.import_module(f"bitlens.native.{name}")
    except ImportError:
        return None
