"""One run per results folder: `results/<profile>/.run.lock`, held for the whole of a `run_all.py` run.

Two runs on one folder would move each other's files aside and resume from each other's unfinished state. The
lock is an OS file lock (the `filelock` package), so it is released when its process ends in any way, SIGKILL
included; beside it `.run.lock.json` says who holds it (PID, host, start time, command), for the message a
second run prints. That note outliving its process is how a stale lock shows: the next run takes it over and
says so.
"""
from __future__ import annotations

import contextlib
import json
import os
import socket
import time
from pathlib import Path
from typing import Iterator

LOCK = ".run.lock"
INFO = ".run.lock.json"


class RunLocked(RuntimeError):
    """Another run holds the results folder."""


def _holder(folder: Path) -> dict:
    try:
        return json.loads((folder / INFO).read_text())
    except (OSError, ValueError):
        return {}


def describe(holder: dict) -> str:
    if not holder:
        return "a run whose details are not written yet"
    return (f"PID {holder.get('pid')} on {holder.get('host')}, started {holder.get('started')}"
            + (f": {holder['command']}" if holder.get("command") else ""))


@contextlib.contextmanager
def hold(folder: str | os.PathLike, command: str = "", log=print) -> Iterator[None]:
    """Hold the folder's run lock for the block; RunLocked at once if another run holds it."""
    from filelock import FileLock, Timeout

    folder = Path(folder)
    lock = FileLock(str(folder / LOCK), thread_local=False)
    try:
        lock.acquire(timeout=0)
    except Timeout:
        holder = _holder(folder)
        raise RunLocked(f"another run is using {folder} ({describe(holder)}); nothing was run. Wait for it to "
                        f"end, or stop it" + (f" (kill {holder['pid']})" if holder.get("pid") else "")
                        + ", then run this command again") from None
    try:
        stale = _holder(folder)
        if stale:
            log(f"[bitlens] taking over the lock of {folder} left by a run that is gone ({describe(stale)})")
        (folder / INFO).write_text(json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                                               "started": time.strftime("%Y-%m-%dT%H:%M:%S"),
                                               "command": command}) + "\n")
        yield
    finally:
        with contextlib.suppress(OSError):
            (folder / INFO).unlink()
        lock.release()
