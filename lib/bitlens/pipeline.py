"""Run the profile's notebooks in order with papermill, skipping stages that are up to date.

A stage is up to date when its notebook, the resolved params, the library's
source and its upstream stages are unchanged since its last successful run
(one fingerprint, stored in `<stage>/.stage.json`). The marker is removed before
a stage runs and written only after it succeeded, so a half-finished stage is
never mistaken for a finished one.
"""
from __future__ import annotations

import hashlib
import json
import os
import platform
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

from bitlens import __version__, config, io
from bitlens.stage import COMPLETE_MARKER
from bitlens.stages import STAGES, StageSpec


class StageFailed(RuntimeError):
    def __init__(self, stage: str, message: str):
        super().__init__(message)
        self.stage = stage


@dataclass
class StageResult:
    name: str
    status: str  # ran | cached | failed | skipped
    seconds: float = 0.0
    notebook: Path | None = None
    detail: str = ""


def library_fingerprint() -> str:
    """Hash of every source file of the installed bitlens package (code changes invalidate caches)."""
    pkg = Path(__file__).resolve().parent
    h = hashlib.sha256(__version__.encode())
    for p in sorted(pkg.rglob("*")):
        if p.suffix in (".py", ".yaml", ".json") and "__pycache__" not in p.parts:
            h.update(str(p.relative_to(pkg)).encode())
            h.update(p.read_bytes())
    return h.hexdigest()


def git_commit(root: Path) -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10)
        if out.returncode == 0:
            dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                                   capture_output=True, text=True, timeout=10).stdout.strip()
            return out.stdout.strip() + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        pass
    return None


def package_versions() -> dict[str, str]:
    from importlib import metadata

    names = ["bitlens", "torch", "torchvision", "open_clip_torch", "numpy", "scipy", "scikit-learn", "pandas",
             "faiss-cpu", "papermill", "matplotlib"]
    out = {"python": platform.python_version()}
    for n in names:
        try:
            out[n] = metadata.version(n)
        except metadata.PackageNotFoundError:
            pass
    return out


def device_description() -> str:
    try:
        import torch

        if torch.cuda.is_available():
            return f"cuda: {torch.cuda.get_device_name(0)}"
    except ImportError:  # pragma: no cover
        pass
    return f"cpu: {platform.processor() or platform.machine()}, {os.cpu_count()} cores"


def _kernel_name(wanted: str) -> str:
    """The configured kernel if Jupyter knows it; otherwise this interpreter's own kernel."""
    try:
        from jupyter_client.kernelspec import KernelSpecManager

        specs = KernelSpecManager().find_kernel_specs()
    except Exception:  # pragma: no cover - jupyter_client broken
        return wanted
    if wanted in specs:
        return wanted
    if "python3" in specs:
        print(f"[bitlens] kernel '{wanted}' is not registered (run `make setup`); using 'python3'", file=sys.stderr)
        return "python3"
    raise StageFailed("-", f"Jupyter kernel '{wanted}' is not registered. Run `make setup` (it registers the "
                           f"'bitlens' kernel in .venv), or: python -m ipykernel install --sys-prefix --name {wanted}")


@dataclass
class Pipeline:
    profile: str = "tiny"
    overrides: Mapping[str, Any] = field(default_factory=dict)
    root: Path | None = None
    results: Path | None = None
    stages: Sequence[StageSpec] = STAGES
    notebooks_dir: Path | None = None
    log: Any = print

    def __post_init__(self):
        self.root = Path(self.root).resolve() if self.root else config.find_root()
        self.params = config.load_params(self.profile, self.overrides, root=self.root)
        self.profile = self.params["profile"]
        base = Path(self.results) if self.results else self.root / "results"
        self.results_dir = (base if base.is_absolute() else self.root / base) / self.profile
        self.notebooks_dir = Path(self.notebooks_dir) if self.notebooks_dir else self.root / "notebooks"

    # -- selection ---------------------------------------------------------------
    def enabled_stages(self) -> list[StageSpec]:
        chosen = self.params["pipeline"]["stages"]
        names = [s.name for s in self.stages]
        if chosen is not None:
            for n in chosen:
                if n not in names:
                    raise config.ParamsError(f"params key 'pipeline.stages' names unknown stage '{n}'; "
                                             f"valid stages: {', '.join(names)}")
        out = []
        for s in self.stages:
            if chosen is not None and s.name not in chosen:
                continue
            if s.section and not self.params.get(s.section, {}).get("enabled", True):
                continue
            out.append(s)
        return out

    def select(self, only: Sequence[str] | None = None, start: str | None = None) -> list[StageSpec]:
        enabled = self.enabled_stages()
        names = [s.name for s in enabled]
        for n in list(only or []) + ([start] if start else []):
            if n not in names:
                raise config.ParamsError(f"stage '{n}' is not in profile '{self.profile}'; its stages: {', '.join(names)}")
        if only:
            return [s for s in enabled if s.name in only]
        if start:
            return enabled[names.index(start):]
        return enabled

    # -- fingerprints ----------------------------------------------------------
    def fingerprint(self, spec: StageSpec, lib: str, upstream: Mapping[str, str]) -> str:
        nb = self.notebooks_dir / f"{spec.name}.ipynb"
        h = hashlib.sha256()
        h.update(nb.read_bytes() if nb.exists() else b"<missing notebook>")
        h.update(json.dumps(self.params, sort_keys=True, default=str).encode())
        h.update(lib.encode())
        for d in spec.deps:
            h.update(f"{d}={upstream.get(d, '')}".encode())
        return h.hexdigest()

    def marker(self, name: str) -> Path:
        return self.results_dir / name / COMPLETE_MARKER

    def stored_fingerprint(self, name: str) -> str | None:
        m = self.marker(name)
        if not m.exists() or not (m.parent / "metrics.json").exists():
            return None
        try:
            return json.loads(m.read_text()).get("fingerprint")
        except (OSError, json.JSONDecodeError):
            return None

    def plan(self) -> list[tuple[StageSpec, str, bool]]:
        """(stage, fingerprint, up to date) for every enabled stage, in order."""
        lib = library_fingerprint()
        fps: dict[str, str] = {}
        out = []
        for spec in self.enabled_stages():
            fp = self.fingerprint(spec, lib, fps)
            fps[spec.name] = fp
            out.append((spec, fp, self.stored_fingerprint(spec.name) == fp))
        return out

    # -- checks ----------------------------------------------------------------
    def check_data(self) -> None:
        missing = config.missing_data_paths(self.params, self.root)
        if missing:
            lines = [f"profile '{self.profile}' is missing {len(missing)} data path(s); nothing was run:"]
            for key, path, hint in missing:
                lines.append(f"  - {key}: {path}" + (f"\n      get it: {hint}" if hint else ""))
            lines.append("Set the paths in params/%s.yaml or with --set KEY=PATH; data/README.md lists every "
                         "dataset and its layout." % self.profile)
            raise StageFailed("00_data", "\n".join(lines))

    # -- running ---------------------------------------------------------------
    def run(self, only: Sequence[str] | None = None, start: str | None = None, force: bool = False) -> list[StageResult]:
        self.check_data()
        selected = {s.name for s in self.select(only, start)}
        self.results_dir.mkdir(parents=True, exist_ok=True)
        io.write_text(self.results_dir / "params.resolved.yaml", config.dump_params(self.params))
        kernel = _kernel_name(self.params["pipeline"]["kernel"])
        results: list[StageResult] = []
        plan = self.plan()
        total = sum(1 for s, _, _ in plan if s.name in selected)
        i = 0
        for spec, fp, fresh in plan:
            if spec.name not in selected:
                continue
            i += 1
            if fresh and not force:
                self.log(f"[{i}/{total}] {spec.name}: up to date (notebook, params and library unchanged) — skipped")
                results.append(StageResult(spec.name, "cached", 0.0, self._out_nb(spec.name)))
                continue
            self.log(f"[{i}/{total}] {spec.name}: running — {spec.title}")
            res = self._execute(spec, fp, kernel)
            results.append(res)
            self.log(f"[{i}/{total}] {spec.name}: done in {res.seconds:.1f}s")
        self._write_manifest(results)
        return results

    def _out_nb(self, name: str) -> Path:
        return self.results_dir / "notebooks" / f"{name}.ipynb"

    def _execute(self, spec: StageSpec, fp: str, kernel: str) -> StageResult:
        import papermill as pm

        nb_in = self.notebooks_dir / f"{spec.name}.ipynb"
        if not nb_in.exists():
            raise StageFailed(spec.name, f"stage {spec.name}: notebook {nb_in} does not exist")
        nb_out = self._out_nb(spec.name)
        nb_out.parent.mkdir(parents=True, exist_ok=True)
        stage_dir = self.results_dir / spec.name
        stage_dir.mkdir(parents=True, exist_ok=True)
        marker = self.marker(spec.name)
        if marker.exists():
            marker.unlink()
        env_before = {k: os.environ.get(k) for k in ("BITLENS_PROGRESS", "BITLENS_ROOT", "BITLENS_RESULTS", "MPLBACKEND")}
        os.environ["BITLENS_RESULTS"] = str(self.results_dir.parent)
        os.environ["BITLENS_PROGRESS"] = os.environ.get("BITLENS_PROGRESS_PIPELINE", "log")
        os.environ["BITLENS_ROOT"] = str(self.root)
        os.environ["MPLBACKEND"] = "module://matplotlib_inline.backend_inline"
        t0 = time.perf_counter()
        try:
            pm.execute_notebook(
                str(nb_in), str(nb_out),
                parameters={"profile": self.profile, "overrides": dict(self.overrides), "root": str(self.root)},
                kernel_name=kernel, cwd=str(self.notebooks_dir), progress_bar=False,
                execution_timeout=int(self.params["pipeline"]["cell_timeout"]), report_mode=False,
            )
        except pm.PapermillExecutionError as e:
            secs = time.perf_counter() - t0
            cell = _source_cell_index(nb_out, e.cell_index)
            msg = (f"stage {spec.name} failed in notebook {nb_in}\n"
                   f"  cell {cell} (0-based, in {nb_in.name}; In [{e.exec_count}] in the executed notebook): "
                   f"{e.ename}: {e.evalue}\n"
                   f"  executed notebook with the traceback: {nb_out}")
            self._write_manifest([StageResult(spec.name, "failed", secs, nb_out, msg)])
            raise StageFailed(spec.name, msg) from None
        except Exception as e:  # kernel died, timeout, missing kernel...
            msg = (f"stage {spec.name} failed in notebook {nb_in}: {type(e).__name__}: {e}\n"
                   f"  executed notebook (may be partial): {nb_out}")
            raise StageFailed(spec.name, msg) from None
        finally:
            for k, v in env_before.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
        secs = time.perf_counter() - t0
        if not (stage_dir / "metrics.json").exists():
            raise StageFailed(spec.name, f"stage {spec.name} finished but wrote no {stage_dir / 'metrics.json'}; "
                                         f"its notebook must end with stage.write_metrics(...)")
        io.write_json(marker, {"fingerprint": fp, "seconds": round(secs, 2), "finished": time.strftime("%Y-%m-%dT%H:%M:%S"),
                               "notebook": str(nb_out)})
        return StageResult(spec.name, "ran", secs, nb_out)

    def _write_manifest(self, results: Sequence[StageResult]) -> None:
        path = self.results_dir / "run_manifest.json"
        old = {}
        if path.exists():
            try:
                old = json.loads(path.read_text()).get("stages", {})
            except (OSError, json.JSONDecodeError):
                old = {}
        for r in results:
            entry = {"status": r.status, "seconds": round(r.seconds, 2)}
            if r.status == "cached" and r.name in old:
                entry["last_run_seconds"] = old[r.name].get("seconds", old[r.name].get("last_run_seconds"))
            if r.detail:
                entry["detail"] = r.detail
            old[r.name] = entry
        io.write_json(path, {
            "profile": self.profile, "seed": self.params["seed"], "git_commit": git_commit(self.root),
            "library_version": __version__, "device": device_description(), "packages": package_versions(),
            "written": time.strftime("%Y-%m-%dT%H:%M:%S"), "stages": old,
        })


def _source_cell_index(executed: Path, fallback: int) -> int:
    """0-based index, in the source notebook, of the cell that failed.

    The executed copy has extra cells (papermill's injected parameters and its
    error banners), so count only cells that came from the source notebook.
    """
    try:
        import nbformat

        cells = nbformat.read(executed, as_version=4).cells
    except Exception:  # the executed notebook may be unreadable after a crash
        return fallback
    extra = {"injected-parameters", "papermill-error-cell-tag"}
    idx = 0
    for c in cells:
        if extra & set(c.get("metadata", {}).get("tags", [])):
            continue
        if c.get("metadata", {}).get("papermill", {}).get("status") == "failed":
            return idx
        idx += 1
    return fallback


def summary_table(results: Sequence[StageResult]) -> str:
    lines = [f"{'stage':<20} {'status':<8} {'wall time':>10}"]
    for r in results:
        lines.append(f"{r.name:<20} {r.status:<8} {r.seconds:>9.1f}s")
    lines.append(f"{'total':<20} {'':<8} {sum(r.seconds for r in results):>9.1f}s")
    return "\n".join(lines)
