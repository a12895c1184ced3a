"""Progress bars that suit both JupyterLab and papermill logs.

In an interactive notebook or terminal this is `tqdm.auto`. Under the pipeline
(`BITLENS_PROGRESS=log`, set by run_all) widget bars would fill executed
notebooks with noise, so bars print plain text rarely (every 30 s) instead.
`BITLENS_PROGRESS=off` silences them (tests).
"""
from __future__ import annotations

import os
import sys
from typing import Iterable, Optional, TypeVar

T = TypeVar("T")


def progress(iterable: Optional[Iterable[T]] = None, desc: str | None = None, total: int | None = None, **kwargs):
    mode = os.environ.get("BITLENS_PROGRESS", "auto")
    if mode == "off":
        kwargs.setdefault("disable", True)
    if mode == "log":
        from tqdm import tqdm

        kwargs.setdefault("mininterval", 30.0)
        kwargs.setdefault("file", sys.stderr)
        kwargs.setdefault("ascii", True)
        return tqdm(iterable, desc=desc, total=total, **kwargs)
    from tqdm.auto import tqdm

    return tqdm(iterable, desc=desc, total=total, **kwargs)
