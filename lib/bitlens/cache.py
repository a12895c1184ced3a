"""One rule for every cached step of the kit: a record of "these inputs made these outputs".

A record is a small JSON file written *after* the outputs (atomically, like every write of the kit). It holds the
digest of the step's inputs (any JSON-able description: arguments, recipe, upstream file digests) and the size of
every output file. The outputs are reused only when the record exists, its input digest equals the digest of the
inputs asked for now, and every output is still there with its recorded size. Anything else (no record, other
inputs, a file deleted or truncated, a record that does not parse) means "compute again".

A step that can resume (an activation cache filled batch by batch, a training run) keeps its progress in the
record's `state` and rewrites the record after each unit of work that is on disk.

The stage completion markers (`bitlens.fingerprint`) are such records with one more guarantee: per-file content
digests, so that a touched file whose bytes did not change is not taken for a modified result.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Iterable

from bitlens import io


def file_digest(path: str | Path) -> str:
    """SHA-256 of a file's bytes, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def digest(inputs: Any) -> str:
    """SHA-256 of a JSON-able description of a step's inputs (key order does not matter)."""
    return hashlib.sha256(json.dumps(inputs, sort_keys=True, default=str).encode()).hexdigest()


class Record:
    """The record at `path`; output names are relative to the record's folder."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.dir = self.path.parent

    def read(self) -> dict | None:
        """The record's content, or None when it is missing or unreadable."""
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            return None
        return data if isinstance(data, dict) and "inputs" in data else None

    def valid(self, inputs: Any, outputs: Iterable[str] | None = None) -> dict | None:
        """The record when it was made from `inputs` and its outputs are intact, else None.

        `outputs`: names the caller needs now (default: the ones recorded); each must exist with its recorded
        size (a name the record does not list only has to exist)."""
        rec = self.read()
        if rec is None or rec.get("inputs") != digest(inputs):
            return None
        sizes = rec.get("outputs", {})
        for name in (sizes if outputs is None else outputs):
            p = self.dir / name
            if not p.is_file() or (name in sizes and p.stat().st_size != sizes[name]):
                return None
        return rec

    def state(self, inputs: Any) -> dict | None:
        """The progress a resumable step recorded for `inputs` (None: start from the beginning)."""
        rec = self.read()
        if rec is None or rec.get("inputs") != digest(inputs):
            return None
        return rec.get("state")

    def write(self, inputs: Any, outputs: Iterable[str] = (), state: dict | None = None, **extra: Any) -> Path:
        """Record that `inputs` made `outputs` (names relative to the record's folder, all already written)."""
        sizes = {}
        for name in outputs:
            p = self.dir / name
            if not p.is_file():
                raise FileNotFoundError(f"{p}: a cache record can only list outputs already written")
            sizes[str(name)] = p.stat().st_size
        data = {"inputs": digest(inputs), "outputs": sizes, **extra}
        if state is not None:
            data["state"] = state
        return io.write_json(self.path, data)

    def clear(self) -> None:
        """Drop the record before its outputs change, so a crash half-way is never taken for a finished step."""
        self.path.unlink(missing_ok=True)
