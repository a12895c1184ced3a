"""Run the profile's notebooks in order with papermill, skipping stages that are up to date.

A stage is up to date when its completion marker (`<stage>/.stage.json`)
carries the fingerprint it has now (`bitlens.fingerprint`: the params it reads,
its notebook's code cells, the library, its upstream stages' output digests).
Fingerprints are computed just before each stage would run, so an upstream that
re-ran with identical outputs leaves its dependents cached and one whose outputs
changed re-runs them. The marker is removed before a stage runs and written only
after it succeeded, so a failed or interrupted stage is never taken as finished.

The run manifest (`run_manifest.json`: commit, device, packages, seed, seconds
per stage) is rewritten before and after every stage, so the report stage reads
the record of the run it is part of.
"""
from __future__ import annotations

import json
import logging
import os
import platform
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

from bitlens import __version__, config, fingerprint, io, preflight, previous, runlock
from bitlens.progress import PREFIX as PROGRESS_PREFIX
from bitlens.stage import COMPLETE_MARKER, PIPELINE_ENV, TIMINGS
from bitlens.stages import STAGES, StageSpec


class StageFailed(RuntimeError):
    def __init__(self, stage: str, message: str):
        super().__init__(message)
        self.stage = stage


class StageInterrupted(StageFailed):
    """Ctrl-C (or SIGTERM) during a stage: it is left incomplete (no marker)."""

    terminated = False


class Terminated(KeyboardInterrupt):
    """SIGTERM (a batch scheduler's time limit, `kill`): handled as Ctrl-C is; run_all raises it from its handler."""


def describe_os_error(e: OSError) -> str:
    """One line for a file-system fault: the path, what happened, what to do."""
    import errno

    where = e.filename or "the results folder"
    if e.errno == errno.ENOSPC:
        return (f"no space left on the disk holding {where}; free some space (or give another folder with "
                f"--results DIR) and run the same command again: finished stages are kept")
    if e.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return (f"{where}: cannot write there ({e.strerror}); make it writable or give another results folder "
                f"with --results DIR")
    if e.errno in (errno.ENOTDIR, errno.EEXIST):
        return (f"{where}: a file stands where a folder is needed; move it away or give another results folder "
                f"with --results DIR")
    return f"{where}: {e.strerror or e}"


@dataclass
class StageResult:
    name: str
    status: str  # ran | cached | failed | skipped
    seconds: float = 0.0
    notebook: Path | None = None
    detail: str = ""
    load: float | None = None  # 1-minute load average when the stage ended (how busy the machine was)
    timings: dict | None = None  # the stage's own wall-clock times (Stage.record_seconds)


def library_fingerprint() -> str:
    return fingerprint.library_digest()


def git_state(root: Path) -> tuple[str | None, bool | None]:
    """(commit, dirty) of the checkout; (None, None) outside git."""
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10)
        if out.returncode == 0:
            dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                                   capture_output=True, text=True, timeout=10).stdout.strip()
            return out.stdout.strip(), bool(dirty)
    except (OSError, subprocess.SubprocessError):
        pass
    return None, None


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
        # notebooks get what the user named (a profile or a YAML path), so they load the very same params
        self.profile_source = str(config.profile_path(self.profile, self.root)) if str(self.profile).endswith(
            (".yaml", ".yml")) else str(self.profile)
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
        if only and start:
            raise config.ParamsError(f"--only and --from contradict each other (--only {' --only '.join(only)} "
                                     f"--from {start}); give one of them")
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
    def notebook(self, name: str) -> Path:
        return self.notebooks_dir / f"{name}.ipynb"

    def fingerprint(self, spec: StageSpec, lib: str | None = None) -> str:
        """The stage's fingerprint now, from the outputs its upstream stages hold now."""
        return fingerprint.fingerprint_now(spec, self.params, self.notebook(spec.name), self.results_dir, lib)

    def marker(self, name: str) -> Path:
        return self.results_dir / name / COMPLETE_MARKER

    def stored_fingerprint(self, name: str) -> str | None:
        m = fingerprint.read_marker(self.results_dir / name)
        return None if m is None else m["fingerprint"]

    def outputs_changed(self, name: str) -> list[str]:
        """The outputs of a finished stage that are no longer what it wrote (deleted, modified, added)."""
        return fingerprint.changed_outputs(self.results_dir / name)

    def plan(self) -> list[tuple[StageSpec, str, bool]]:
        """(stage, fingerprint, up to date) for every enabled stage, in order.

        A stage whose upstream is to run is listed as to run: whether it must really
        re-run is known only once the upstream has produced its outputs. A stage whose
        own outputs changed since it finished is not up to date.
        """
        lib = library_fingerprint()
        out, stale = [], set()
        for spec in self.enabled_stages():
            fp = self.fingerprint(spec, lib)
            fresh = (self.stored_fingerprint(spec.name) == fp and not (stale & set(spec.deps))
                     and not self.outputs_changed(spec.name))
            if not fresh:
                stale.add(spec.name)
            out.append((spec, fp, fresh))
        return out

    # -- checks ----------------------------------------------------------------
    def check_inputs(self, specs: Sequence[StageSpec] | None = None) -> list[preflight.Problem]:
        """Every missing or malformed input of `specs` (default: the profile's stages); see bitlens.preflight."""
        return preflight.check(self.params, self.root, self.enabled_stages() if specs is None else specs,
                               self.results_dir)

    def require_inputs(self, specs: Sequence[StageSpec] | None = None) -> None:
        problems = self.check_inputs(specs)
        if problems:
            raise preflight.InputProblems(preflight.report(problems, self.profile))

    def check_results_folder(self) -> None:
        """The results folder exists (or can be made) and takes a file: checked before any stage, cached or not."""
        import tempfile

        try:
            self.results_dir.mkdir(parents=True, exist_ok=True)
            fd, probe = tempfile.mkstemp(prefix=".write-probe.", dir=self.results_dir)
            os.close(fd)
            os.unlink(probe)
        except OSError as e:
            if e.filename is None:
                e.filename = str(self.results_dir)
            raise StageFailed("-", describe_os_error(e) + "; nothing was run") from None

    def check_notebooks(self, specs: Sequence[StageSpec]) -> None:
        """Every selected notebook exists and has its `parameters` cell: without it papermill puts the run's
        params above the notebook's own defaults, which then win, and `--set` would be dropped without a word."""
        for spec in specs:
            nb = self.notebook(spec.name)
            if not nb.exists():
                raise StageFailed(spec.name, f"stage {spec.name}: notebook {nb} does not exist; nothing was run")
            try:
                ok = fingerprint.has_parameters_cell(nb)
            except (OSError, ValueError) as e:
                raise StageFailed(spec.name, f"stage {spec.name}: notebook {nb} cannot be read ({e}); restore it "
                                             f"with: git checkout -- {nb.name}") from None
            if not ok:
                raise StageFailed(spec.name, f"stage {spec.name}: notebook {nb} has no code cell tagged "
                                             f"'parameters', so the run's params (--set, the profile) would not "
                                             f"reach it; nothing was run. Tag its first code cell 'parameters' "
                                             f"(JupyterLab: property inspector → Cell Tags) or restore it with "
                                             f"git checkout -- {nb}")

    # -- running ---------------------------------------------------------------
    def run(self, only: Sequence[str] | None = None, start: str | None = None, force: bool = False) -> list[StageResult]:
        selected_specs = self.select(only, start)
        self.check_notebooks(selected_specs)
        self.require_inputs(selected_specs)
        self.check_results_folder()
        try:
            with runlock.hold(self.results_dir, " ".join(sys.argv), self.log):
                return self._run(selected_specs, force)
        except runlock.RunLocked as e:
            raise StageFailed("-", str(e)) from None

    def _run(self, selected_specs: Sequence[StageSpec], force: bool) -> list[StageResult]:
        selected = {s.name for s in selected_specs}
        io.write_text(self.results_dir / "params.resolved.yaml", config.dump_params(self.params))
        kernel = _kernel_name(self.params["pipeline"]["kernel"])
        self._run_started = time.strftime("%Y-%m-%dT%H:%M:%S")
        self._load_at_start = round(os.getloadavg()[0], 2)
        self._record = self._run_record()
        results: list[StageResult] = []
        lib = library_fingerprint()
        todo = [s for s in self.enabled_stages() if s.name in selected]
        for i, spec in enumerate(todo, 1):
            fp = self.fingerprint(spec, lib)
            changed = [] if force else self.outputs_changed(spec.name)
            # a damaged file must not be reused by the stage itself (a trainer would reuse its "finished" run):
            # the stage starts from scratch, its earlier files moved aside
            scratch = force or any(not c.endswith("(added)") for c in changed)
            if changed:
                shown = ", ".join(changed[:5]) + (f" and {len(changed) - 5} more" if len(changed) > 5 else "")
                self.log(f"[{i}/{len(todo)}] {spec.name}: its outputs changed since it finished "
                         f"({shown}); running it again" + (" from scratch" if scratch else ""))
            elif not force and self.stored_fingerprint(spec.name) == fp:
                fingerprint.refresh_stats(self.results_dir / spec.name)
                self.log(f"[{i}/{len(todo)}] {spec.name}: up to date (params it reads, code cells, library and "
                         f"upstream outputs unchanged) — skipped")
                results.append(StageResult(spec.name, "cached", 0.0, self._out_nb(spec.name)))
                continue
            self.log(f"[{i}/{len(todo)}] {spec.name}: running — {spec.title}" + (" (--force: from scratch)" if force else ""))
            self._write_manifest(results + [StageResult(spec.name, "running")])
            try:
                res = self._execute(spec, fp, kernel, scratch)
            except StageFailed as e:
                status = "interrupted" if isinstance(e, StageInterrupted) else "failed"
                self._write_manifest(results + [StageResult(spec.name, status, getattr(e, "seconds", 0.0),
                                                            self._out_nb(spec.name), str(e))])
                raise
            results.append(res)
            self.log(f"[{i}/{len(todo)}] {spec.name}: done in {res.seconds:.1f}s")
        self._write_manifest(results)
        return results

    def _out_nb(self, name: str) -> Path:
        return self.results_dir / "notebooks" / f"{name}.ipynb"

    def _execute(self, spec: StageSpec, fp: str, kernel: str, force: bool = False) -> StageResult:
        import papermill as pm

        nb_in = self.notebook(spec.name)
        if not nb_in.exists():
            raise StageFailed(spec.name, f"stage {spec.name}: notebook {nb_in} does not exist")
        nb_out = self._out_nb(spec.name)
        nb_out.parent.mkdir(parents=True, exist_ok=True)
        stage_dir = self.results_dir / spec.name
        stage_dir.mkdir(parents=True, exist_ok=True)
        fingerprint.clear_marker(stage_dir)
        (stage_dir / TIMINGS).unlink(missing_ok=True)
        for moved in previous.adopt_legacy(stage_dir):
            self.log(f"    {spec.name}: an earlier run kept inside the stage folder moved to {moved}")
        env = {"BITLENS_RESULTS": str(self.results_dir.parent),
               "BITLENS_PROGRESS": os.environ.get("BITLENS_PROGRESS_PIPELINE", "log"),
               "BITLENS_ROOT": str(self.root), PIPELINE_ENV: "1",
               "MPLBACKEND": "module://matplotlib_inline.backend_inline"}
        env_before = {k: os.environ.get(k) for k in env}
        os.environ.update(env)
        t0 = time.perf_counter()
        try:
            with _quiet_kernel_logs():
                pm.execute_notebook(
                    str(nb_in), str(nb_out),
                    parameters={"profile": self.profile_source, "overrides": dict(self.overrides), "root": str(self.root),
                                "force": bool(force)},
                    kernel_name=kernel, cwd=str(self.notebooks_dir), progress_bar=False,
                    execution_timeout=int(self.params["pipeline"]["cell_timeout"]), report_mode=False,
                    stderr_file=_ProgressLines(spec.name, self.log),
                    # the kernel's own log (e.g. ipykernel's TCP-transport notice) is not the stage's business
                    extra_arguments=["--IPKernelApp.log_level=CRITICAL"],
                )
        except KeyboardInterrupt as e:
            raise self._interrupted(spec, t0, isinstance(e, Terminated)) from None
        except pm.PapermillExecutionError as e:
            if e.ename == "KeyboardInterrupt" or self._terminated:
                raise self._interrupted(spec, t0, self._terminated) from None
            cell = _source_cell_index(nb_out, e.cell_index)
            msg = (f"stage {spec.name} failed in notebook {nb_in}\n"
                   f"  cell {cell} (0-based, in {nb_in.name}; In [{e.exec_count}] in the executed notebook): "
                   f"{e.ename}: {e.evalue}\n"
                   f"  executed notebook with the traceback: {nb_out}")
            err = StageFailed(spec.name, msg)
            err.seconds = time.perf_counter() - t0
            raise err from None
        except Exception as e:  # kernel died, timeout, missing kernel...
            if self._terminated:  # the kernel got the same SIGTERM and died first
                raise self._interrupted(spec, t0, True) from None
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
        fingerprint.write_marker(stage_dir, fp, by="pipeline", seconds=round(secs, 2), notebook=str(nb_out),
                                 forced=bool(force))
        previous.prune(self.results_dir, spec.name, self.params["pipeline"]["keep_previous"])
        timings = io.read_json(stage_dir / TIMINGS) if (stage_dir / TIMINGS).exists() else None
        return StageResult(spec.name, "ran", secs, nb_out, load=round(os.getloadavg()[0], 2), timings=timings)

    _terminated = False  # set by terminate(): SIGTERM arrived

    def terminate(self) -> None:
        """Called from a SIGTERM handler before it raises Terminated."""
        self._terminated = True

    def _interrupted(self, spec: StageSpec, t0: float, terminated: bool = False) -> StageInterrupted:
        fingerprint.clear_marker(self.results_dir / spec.name)
        how = "terminated (SIGTERM)" if terminated else "interrupted"
        err = StageInterrupted(spec.name, f"{how} during stage {spec.name}; it is not marked complete. "
                                          f"Re-run it with: {self.command('--from', spec.name)}")
        err.terminated = terminated
        err.seconds = time.perf_counter() - t0
        return err

    def command(self, *args: str) -> str:
        """The run_all command line that repeats this run's profile, overrides and results folder, plus `args`."""
        parts = ["python run_all.py", "--profile", self.profile_source]
        parts += [f"--set {k}={json.dumps(v) if not isinstance(v, str) else v}" for k, v in self.overrides.items()]
        if self.results_dir.parent != self.root / "results":
            parts += ["--results", str(self.results_dir.parent)]
        return " ".join([*parts, *args])

    def _run_record(self) -> dict:
        commit, dirty = git_state(self.root)
        return {"profile": self.profile, "seed": self.params["seed"], "git_commit": commit, "git_dirty": dirty,
                "library_version": __version__, "device": device_description(), "packages": package_versions()}

    def _write_manifest(self, results: Sequence[StageResult]) -> None:
        """The record of this run: every selected stage so far, with its status and seconds."""
        stages: dict[str, Any] = {}
        done = {r.name for r in results}
        for spec in self.enabled_stages():  # stages this run does not (or not yet) touch: their last run
            if spec.name not in done:
                m = fingerprint.read_marker(self.results_dir / spec.name) or {}
                stages[spec.name] = {"status": "not run", "seconds": 0.0, "last_run_seconds": m.get("seconds")}
        for r in results:
            entry: dict[str, Any] = {"status": r.status, "seconds": round(r.seconds, 2)}
            if r.load is not None:
                entry["load_1min"] = r.load
            if r.timings:
                entry["timings"] = r.timings
            if r.status == "cached":
                m = fingerprint.read_marker(self.results_dir / r.name) or {}
                if m.get("seconds") is not None:
                    entry["last_run_seconds"] = m["seconds"]
            if r.detail:
                entry["detail"] = r.detail
            stages[r.name] = entry
        order = [s.name for s in self.enabled_stages()]
        stages = {k: stages[k] for k in sorted(stages, key=lambda k: order.index(k) if k in order else len(order))}
        record = getattr(self, "_record", None) or self._run_record()
        io.write_json(self.results_dir / "run_manifest.json", {
            **record, "started": getattr(self, "_run_started", None),
            "load_1min_at_start": getattr(self, "_load_at_start", None),
            "written": time.strftime("%Y-%m-%dT%H:%M:%S"), "stages": stages})


class _ProgressLines:
    """papermill's stderr sink: passes the notebook's progress lines to the pipeline log, drops the rest
    (warnings and tracebacks stay in the executed notebook)."""

    def __init__(self, stage: str, log):
        self.stage, self.log, self._buf = stage, log, ""

    def write(self, text: str) -> None:
        self._buf += text
        *lines, self._buf = self._buf.split("\n")
        for line in lines:
            if line.startswith(PROGRESS_PREFIX):
                self.log(f"    {self.stage} {line[len(PROGRESS_PREFIX):].strip()}")

    def flush(self) -> None:
        pass


class _quiet_kernel_logs:
    """Keep the run log to the pipeline's own lines: papermill, nbclient and traitlets log at WARNING
    about things a user cannot act on (and print tracebacks when Ctrl-C stops a kernel)."""

    names = ("papermill", "nbclient", "traitlets", "asyncio", "jupyter_client")

    def __enter__(self):
        self._levels = {n: logging.getLogger(n).level for n in self.names}
        for n in self.names:
            logging.getLogger(n).setLevel(logging.ERROR)

    def __exit__(self, *exc):
        for n, lvl in self._levels.items():
            logging.getLogger(n).setLevel(lvl)
        return False


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
