"""Progress bars that suit both JupyterLab and papermill logs.

In an interactive notebook or terminal this is `tqdm.auto`. Under the pipeline
(`BITLENS_PROGRESS=log`, set by run_all) widget bars would fill executed
notebooks with noise and a bar redrawn only between iterations says nothing
during a long one, so a loop prints one plain line on stderr at a fixed
interval of wall time (every 30 s, `BITLENS_PROGRESS_EVERY` seconds), from a
timer, whether or not an iteration finished:

    [progress] IBC: 120/300 (40%), 48s elapsed, ETA 72s

run_all forwards these lines to its own log. `BITLENS_PROGRESS=off` silences
bars (tests).
"""
from __future__ import annotations

import os
import sys
import threading
import time
from typing import Iterable, Iterator, Optional, TypeVar

T = TypeVar("T")

PREFIX = "[progress]"
_LAST_LINE: list[float | None] = [None]  # monotonic time of the last progress line in this process


def _fmt_seconds(s: float) -> str:
    s = int(round(s))
    if s < 120:
        return f"{s}s"
    if s < 7200:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{(s % 3600) // 60:02d}m"


class LogProgress:
    """Iterate `iterable`; while it runs, print a progress line every `every` seconds of wall time."""

    def __init__(self, iterable: Optional[Iterable[T]] = None, desc: str | None = None, total: int | None = None,
                 initial: int = 0, every: float = 30.0, file=None, disable: bool = False, **_ignored):
        self.iterable = iterable
        self.desc = desc or "progress"
        if total is None and iterable is not None and hasattr(iterable, "__len__"):
            total = len(iterable) + initial
        self.total = total
        self.initial = self.n = initial
        self.every = every
        self.file = file
        self.disable = disable
        self._t0 = time.monotonic()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def line(self) -> str:
        elapsed = time.monotonic() - self._t0
        done = self.n - self.initial
        if self.total:
            text = f"{self.desc}: {self.n}/{self.total} ({100 * self.n / self.total:.0f}%), {_fmt_seconds(elapsed)} elapsed"
            if done > 0:
                text += f", ETA {_fmt_seconds(elapsed / done * (self.total - self.n))}"
        else:
            text = f"{self.desc}: {self.n} done, {_fmt_seconds(elapsed)} elapsed"
        return f"{PREFIX} {text}"

    def _beat(self):
        # the interval counts from the last line any bar printed, so a run of short loops still reports
        while True:
            last = _LAST_LINE[0] if _LAST_LINE[0] is not None else self._t0
            if self._stop.wait(max(0.0, last + self.every - time.monotonic())):
                return
            if _LAST_LINE[0] is not None and time.monotonic() < _LAST_LINE[0] + self.every:
                continue  # another bar printed meanwhile
            print(self.line(), file=self.file or sys.stderr, flush=True)
            _LAST_LINE[0] = time.monotonic()

    def _start(self):
        if not self.disable and self._thread is None:
            self._thread = threading.Thread(target=self._beat, daemon=True, name=f"progress:{self.desc}")
            self._thread.start()

    def update(self, n: int = 1) -> None:
        self.n += n

    def close(self) -> None:
        self._stop.set()

    def __iter__(self) -> Iterator[T]:
        self._start()
        try:
            for item in self.iterable:
                yield item
                self.n += 1
        finally:
            self.close()

    def __enter__(self):
        self._start()
        return self

    def __exit__(self, *exc):
        self.close()
        return False


def progress(iterable: Optional[Iterable[T]] = None, desc: str | None = None, total: int | None = None, **kwargs):
    mode = os.environ.get("BITLENS_PROGRESS", "auto")
    if mode == "off":
        kwargs["disable"] = True
    if mode == "log":
        kwargs["disable"] = bool(kwargs.get("disable"))  # tqdm's None (= auto) means "on" here
        every = float(os.environ.get("BITLENS_PROGRESS_EVERY", "30"))
        return LogProgress(iterable, desc=desc, total=total, every=every, **kwargs)
    from tqdm.auto import tqdm

    return tqdm(iterable, desc=desc, total=total, **kwargs)
