"""What makes a stage's results current: fingerprints and completion markers.

A stage's fingerprint covers what its results can depend on and nothing else:

- the params values it declares in `stages.StageSpec.reads` (minus `ignores`);
- the *code cells* of its notebook and their tags (metadata, outputs, markdown and
  execution counts are left out, so opening and saving a notebook in JupyterLab changes nothing);
- the source of the `bitlens` package;
- the content digest of each upstream stage's outputs, as recorded in the
  upstream's completion marker. A changed upstream result therefore re-runs its
  dependents, and an upstream re-run that produced identical files does not.

The completion marker (`<stage dir>/.stage.json`) is written only after a stage
finished: by the pipeline after the notebook succeeded, or by
`Stage.write_metrics` when a notebook runs by hand in JupyterLab. It holds the
fingerprint and the digest of the stage's output files.
"""
from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Any, Mapping

from bitlens import io
from bitlens.cache import file_digest
from bitlens.stages import StageSpec

MARKER = ".stage.json"
MISSING = "<missing>"


def _select(params: Any, parts: list[str]) -> dict[str, Any]:
    """{dotted key: value} of every value that `parts` (with `*` wildcards) names."""
    if not parts:
        return {"": params}
    head, rest = parts[0], parts[1:]
    if not isinstance(params, Mapping):
        return {}
    keys = list(params) if head == "*" else ([head] if head in params else [])
    out = {}
    for k in keys:
        for sub, v in _select(params[k], rest).items():
            out[f"{k}.{sub}" if sub else str(k)] = v
    return out


def _drop(tree: Any, parts: list[str]) -> Any:
    """A copy of `tree` without the keys `parts` names."""
    if not isinstance(tree, Mapping) or not parts:
        return tree
    head, rest = parts[0], parts[1:]
    out = {}
    for k, v in tree.items():
        if head in ("*", k):
            if not rest:
                continue
            v = _drop(v, rest)
        out[k] = v
    return out


def params_read(params: Mapping[str, Any], spec: StageSpec) -> dict[str, Any]:
    """The params values a stage's results depend on, by dotted key."""
    tree: Any = dict(params)
    for key in spec.ignores:
        tree = _drop(tree, key.split("."))
    out: dict[str, Any] = {}
    for key in spec.reads:
        out.update(_select(tree, key.split(".")))
    return out


def notebook_code_digest(path: str | Path) -> str:
    """Hash of a notebook's code cells, in order, with their tags; everything JupyterLab may rewrite is left out.

    Tags are part of what a notebook is: papermill injects the run's parameters after the cell tagged
    `parameters`, so moving or removing that tag changes what the notebook computes."""
    path = Path(path)
    if not path.exists():
        return MISSING
    nb = json.loads(path.read_text(encoding="utf-8"))
    h = hashlib.sha256()
    for cell in nb.get("cells", []):
        if cell.get("cell_type") == "code":
            src = cell.get("source", "")
            h.update(("".join(src) if isinstance(src, list) else src).encode())
            h.update(b"\0tags:" + ",".join(sorted(cell.get("metadata", {}).get("tags", []))).encode() + b"\0")
    return h.hexdigest()


def has_parameters_cell(path: str | Path) -> bool:
    """Whether a notebook has a code cell tagged `parameters` (where papermill injects the run's params)."""
    nb = json.loads(Path(path).read_text(encoding="utf-8"))
    return any(c.get("cell_type") == "code" and "parameters" in c.get("metadata", {}).get("tags", [])
               for c in nb.get("cells", []))


def library_digest() -> str:
    """Hash of every source file of the bitlens package (a code change invalidates every stage)."""
    from bitlens import __version__

    pkg = Path(__file__).resolve().parent
    h = hashlib.sha256(__version__.encode())
    for p in sorted(pkg.rglob("*")):
        if p.suffix in (".py", ".yaml", ".json") and "__pycache__" not in p.parts:
            h.update(str(p.relative_to(pkg)).encode())
            h.update(p.read_bytes())
    return h.hexdigest()


def _output_files(stage_dir: Path) -> list[Path]:
    # hidden files are the marker and in-flight temp files of atomic writes
    return sorted(p for p in stage_dir.rglob("*")
                  if p.is_file() and not any(part.startswith(".") for part in p.relative_to(stage_dir).parts))


def _stat_listing(stage_dir: Path) -> dict[str, list[int]]:
    return {str(p.relative_to(stage_dir)): [p.stat().st_size, p.stat().st_mtime_ns] for p in _output_files(stage_dir)}


def _digest_of(hashes: Mapping[str, str]) -> str:
    h = hashlib.sha256()
    for name in sorted(hashes):
        h.update(f"{name}\0{hashes[name]}\0".encode())
    return h.hexdigest()


def outputs_digest(stage_dir: str | Path) -> str:
    """Content hash of every output file of a stage: its names and the digest of each file's bytes."""
    stage_dir = Path(stage_dir)
    return _digest_of({str(p.relative_to(stage_dir)): file_digest(p) for p in _output_files(stage_dir)})


def changed_outputs(stage_dir: str | Path, marker: Mapping[str, Any] | None = None) -> list[str]:
    """The outputs of a finished stage that differ from what its marker recorded, as `<file> (deleted)`,
    `<file> (modified)` or `<file> (added)`; [] when every output is as the stage left it.

    Size and modification time are compared first; a file whose stat changed is re-hashed and counts as
    modified only if its content did change (a `touch` or a copy that kept the bytes changes nothing)."""
    stage_dir = Path(stage_dir)
    marker = read_marker(stage_dir) if marker is None else marker
    if marker is None or "files" not in marker:
        return []
    recorded, now = marker["files"], _stat_listing(stage_dir)
    if recorded == now:
        return []
    hashes = marker.get("hashes") or {}
    out = [f"{f} (deleted)" for f in recorded if f not in now]
    for f, st in now.items():
        if f not in recorded:
            out.append(f"{f} (added)")
        elif st != recorded[f]:
            same = (st[0] == recorded[f][0] and f in hashes and file_digest(stage_dir / f) == hashes[f])
            if not same and not (f not in hashes and outputs_digest(stage_dir) == marker.get("outputs")):
                out.append(f"{f} (modified)")
    return sorted(out)


def read_marker(stage_dir: str | Path) -> dict | None:
    """The completion marker of a finished stage, or None (never finished, or a run is under way)."""
    stage_dir = Path(stage_dir)
    m = stage_dir / MARKER
    if not m.exists() or not (stage_dir / "metrics.json").exists():
        return None
    try:
        data = json.loads(m.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    return data if isinstance(data, dict) and data.get("fingerprint") else None


def current_outputs_digest(stage_dir: str | Path) -> str:
    """Digest of a finished stage's outputs as they are now (re-hashed only when a file's size/mtime changed)."""
    stage_dir = Path(stage_dir)
    marker = read_marker(stage_dir)
    if marker is None:
        return MISSING
    if marker.get("files") == _stat_listing(stage_dir) and marker.get("outputs"):
        return marker["outputs"]
    return outputs_digest(stage_dir)


def clear_marker(stage_dir: str | Path) -> None:
    m = Path(stage_dir) / MARKER
    if m.exists():
        m.unlink()


def write_marker(stage_dir: str | Path, fingerprint: str, by: str, **extra: Any) -> Path:
    """Mark a stage complete: its fingerprint and the digest of the outputs it just wrote."""
    stage_dir = Path(stage_dir)
    hashes = {str(p.relative_to(stage_dir)): file_digest(p) for p in _output_files(stage_dir)}  # read once
    return io.write_json(stage_dir / MARKER, {
        "fingerprint": fingerprint, "by": by, "finished": time.strftime("%Y-%m-%dT%H:%M:%S"), **extra,
        "outputs": _digest_of(hashes), "files": _stat_listing(stage_dir), "hashes": hashes})


def refresh_stats(stage_dir: str | Path) -> None:
    """Record the outputs' current size and mtime in the marker once `changed_outputs` found their content
    unchanged, so that a touched file is not re-hashed at every run."""
    stage_dir = Path(stage_dir)
    marker = read_marker(stage_dir)
    if marker is not None and "files" in marker and marker["files"] != _stat_listing(stage_dir):
        io.write_json(stage_dir / MARKER, {**marker, "files": _stat_listing(stage_dir)})


def stage_fingerprint(spec: StageSpec, params: Mapping[str, Any], notebook: str | Path, library: str,
                      upstream: Mapping[str, str]) -> str:
    """One hash of everything a stage's results depend on (see the module docstring)."""
    h = hashlib.sha256()
    h.update(json.dumps(params_read(params, spec), sort_keys=True, default=str).encode())
    h.update(notebook_code_digest(notebook).encode())
    h.update(library.encode())
    for d in spec.deps:
        h.update(f"{d}={upstream.get(d, MISSING)}".encode())
    return h.hexdigest()


def fingerprint_now(spec: StageSpec, params: Mapping[str, Any], notebook: str | Path, results: str | Path,
                    library: str | None = None) -> str:
    """The fingerprint a stage has now, upstream outputs read from their folders under `results`."""
    results = Path(results)
    upstream = {d: current_outputs_digest(results / d) for d in spec.deps}
    return stage_fingerprint(spec, params, notebook, library or library_digest(), upstream)
