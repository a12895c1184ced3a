"""What both trainers share: atomic saves, exact resume, a settings check, the one checkpoint loader, the one
torchrun launcher and the one end of their command lines.

A training folder holds the trainer's own files (model checkpoints, logs) and `train_state.pt`: the settings the
run was started with, how far it got (`progress`: iterations or epochs), and everything needed to continue as if
never interrupted (optimizer, scheduler, the random number generators of every rank, the log so far).

`open_run()` decides what a new call does with a folder:

- no earlier run → start fresh;
- `fresh=True` → start fresh; the earlier files are moved aside;
- settings differ → start fresh; the earlier files are moved to `results/<profile>/.previous/<stage>/<UTC time>/`
  (`bitlens.previous`: outside the stage folder, never mixed in; the newest `pipeline.keep_previous` are kept), and
  one log line names each differing key as old → new;
- same settings, interrupted (progress < total) → continue from the saved state;
- same settings, finished (progress == total) → reuse it;
- same settings, but the saved run went further than asked (progress > total) → start fresh, moving it aside.

The settings include an `inputs` digest (`data_digest`) of what the run learns from — the training features, the
image list and its files, the initial weights — so that a folder trained on an earlier version of the data is
moved aside, not reused.

The length of the run (total iterations or epochs) is not one of the settings: a longer run continues a shorter
one with the same settings, which gives exactly the model that training from scratch would, because resume is
exact.

The settings stay a dict compared key by key (not a `bitlens.cache` digest): a changed run logs which keys
changed, old → new, and the `inputs` digest hashes array bytes, which `cache.digest`'s JSON cannot hold exactly.

`read_state_dict()` / `load_strict()` read every model file of the kit (BEBR heads, IBC networks, backbones):
DataParallel's `module.` components are dropped wherever they sit, and a mismatch names every missing, unexpected
and misshapen key. `torchrun_command()` / `launch()` start any training module on several processes, and
`run_cli()` is the end of every training command line (`python -m bitlens.bebr.train`, `bitlens.stages.ibc_train`).
"""
from __future__ import annotations

import json
import random
import shutil
import sys
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from bitlens import cli, distributed, io, previous
from bitlens.distributed import World, broadcast_object

STATE_FILE = "train_state.pt"
PREVIOUS_PREFIX = "previous-"
FRESH_HINT = "--fresh (python -m bitlens.bebr.train / bitlens.stages.ibc_train), --force (run_all.py) or fresh=True"


def flatten(d: dict, prefix: str = "") -> dict:
    """Nested dicts as one dict with dotted keys."""
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out


def data_digest(*parts) -> str:
    """sha256 over arrays, tensors, state dicts / dicts of arrays (sorted by key), lists and scalars: the
    `inputs` setting of a run, so that a finished run is never reused for other training data or another start."""
    import hashlib

    h = hashlib.sha256()

    def feed(x):
        if isinstance(x, dict):
            for k in sorted(x, key=str):
                h.update(b"\x00key:" + str(k).encode())
                feed(x[k])
        elif isinstance(x, torch.Tensor):
            feed(x.detach().cpu().contiguous().numpy())
        elif isinstance(x, np.ndarray):
            a = np.ascontiguousarray(x)
            h.update(f"\x00array:{a.dtype.str}:{a.shape}".encode())
            h.update(a.data if a.dtype != object else repr(a.tolist()).encode())
        elif isinstance(x, (list, tuple)):
            h.update(f"\x00list:{len(x)}".encode())
            for v in x:
                feed(v)
        else:
            h.update(f"\x00{type(x).__name__}:{x!r}".encode())

    for part in parts:
        feed(part)
    return h.hexdigest()


def settings_diff(old: dict, new: dict) -> list[str]:
    """`key: old → new` for every dotted key whose value differs (absent keys read as —)."""
    a, b = flatten(old or {}), flatten(new or {})
    return [f"{k}: {a.get(k, '—')} → {b.get(k, '—')}" for k in sorted(set(a) | set(b))
            if a.get(k, "—") != b.get(k, "—")]


# -- random number generators ----------------------------------------------------------------

def rng_state() -> dict:
    """The state of every generator a training step may draw from (torch CPU and CUDA, numpy, random)."""
    st = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        st["cuda"] = torch.cuda.get_rng_state_all()
    return st


def set_rng_state(st: dict) -> None:
    torch.set_rng_state(st["torch"])
    np.random.set_state(st["numpy"])
    random.setstate(st["python"])
    if "cuda" in st and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(st["cuda"])


def gather_rng_states(world: World) -> list:
    """Every rank's generator states, in rank order (on every rank)."""
    mine = rng_state()
    if not world.distributed:
        return [mine]
    import torch.distributed as dist

    out = [None] * world.size
    dist.all_gather_object(out, mine)
    return out


def restore_rng(saved: dict, world: World) -> bool:
    """Restore this rank's generators from a saved state; False when it was saved by a different world size."""
    states = saved.get("rng") or []
    if len(states) != world.size:
        return False
    set_rng_state(states[world.rank])
    return True


# -- the folder --------------------------------------------------------------------------------

def _artifacts(out_dir: Path, patterns) -> list[Path]:
    found = {p for pat in (*patterns, STATE_FILE) for p in out_dir.glob(pat)}
    return sorted(p for p in found if not p.name.startswith(PREVIOUS_PREFIX))


def move_aside(out_dir, patterns=()) -> Path | None:
    """Move the trainer's files (and train_state.pt) out of the stage folder, into
    `results/<profile>/.previous/<stage>/<UTC time>/` (`bitlens.previous`); None if there are none."""
    out_dir = Path(out_dir)
    files = _artifacts(out_dir, patterns)
    if not files:
        return None
    dest = previous.destination(out_dir)
    dest.mkdir(parents=True)
    for p in files:
        shutil.move(str(p), dest / p.name)
    return dest


def load_state(out_dir) -> dict | None:
    path = Path(out_dir) / STATE_FILE
    if not path.exists():
        return None
    try:
        st = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:  # a truncated file cannot come from io.torch_save; say what it is anyway
        raise ValueError(f"{path}: unreadable training state ({type(e).__name__}: {e}); start afresh "
                         f"(the earlier files are moved aside, not read): {FRESH_HINT}") from None
    if not isinstance(st, dict) or "settings" not in st or "progress" not in st:
        raise ValueError(f"{path}: not a bitlens training state (needs 'settings' and 'progress'); start "
                         f"afresh (the earlier files are moved aside, not read): {FRESH_HINT}")
    return st


def save_state(out_dir, settings: dict, progress: int, total: int, world: World, **extra) -> None:
    """Write `train_state.pt` atomically (every rank must call it: the generator states are gathered)."""
    rng = gather_rng_states(world)
    if world.main:
        io.torch_save(Path(out_dir) / STATE_FILE, {"settings": settings, "progress": int(progress),
                                                   "total": int(total), "rng": rng, **extra})


def _decide(out_dir: Path, settings: dict, total: int, fresh: bool, patterns, unit: str, log) -> str:
    """'fresh', 'resume' or 'finished', after moving an unusable earlier run aside (rank 0 only)."""
    if fresh:  # never read the old state: a fresh run is the remedy for one that cannot be read
        moved = move_aside(out_dir, patterns)
        if moved:
            log(f"{out_dir}: fresh run requested; the earlier run is in {moved}/")
        return "fresh"
    st = load_state(out_dir)
    if st is None:
        moved = move_aside(out_dir, patterns)
        if moved:
            log(f"{out_dir}: files without a training state moved to {moved}/; starting a fresh run")
        return "fresh"
    diff = settings_diff(st["settings"], settings)
    if not diff and st["progress"] > total:
        diff = [f"{unit}: {st['progress']} → {total} (the earlier run went further)"]
    if diff:
        moved = move_aside(out_dir, patterns)
        log(f"{out_dir}: settings changed ({'; '.join(diff)}); starting a fresh run, the earlier one is in "
            f"{moved}/")
        return "fresh"
    if st["progress"] == total:
        log(f"{out_dir}: reusing the finished run ({total} {unit}, same settings)")
        return "finished"
    log(f"{out_dir}: resuming at {unit} {st['progress']} of {total} (same settings)")
    return "resume"


def open_run(out_dir, settings: dict, total: int, world: World, fresh: bool = False, patterns=(),
             unit: str = "iterations", log=print) -> dict | None:
    """The saved state to continue from (its `finished` key says whether it is complete), or None to start
    fresh. Rank 0 inspects the folder and moves an unusable run aside; every rank gets the same answer.

    `settings`: everything that shapes the result except the run's length `total`; `patterns`: globs of the
    trainer's files in `out_dir` (moved aside with train_state.pt)."""
    out_dir = Path(out_dir)
    decision = None
    if world.main:
        out_dir.mkdir(parents=True, exist_ok=True)
        decision = _decide(out_dir, settings, total, fresh, patterns, unit, log)
    decision = broadcast_object(decision, world)
    if decision == "fresh":
        return None
    st = load_state(out_dir)
    st["finished"] = decision == "finished"
    return st


# -- model files ------------------------------------------------------------------------------

def strip_module(state_dict: dict) -> dict:
    """Keys without DataParallel's `module.` components, wherever they sit (DDP: `module.W.weight`; the
    Places365 AlexNet: `features.module.0.weight`)."""
    return {".".join(part for part in k.split(".") if part != "module"): v for k, v in state_dict.items()}


def torch_load(path) -> object:
    """A model file as torch.load reads it: tensors only where possible; pickled objects (whole models, numpy
    scalars of an older PyTorch) as the fallback. A missing or unreadable file says which it is."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: checkpoint not found")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception:
        try:
            return torch.load(path, map_location="cpu", weights_only=False, encoding="latin1")
        except Exception as e:
            raise ValueError(f"{path}: cannot be read by torch.load ({type(e).__name__}: {e}); is it a PyTorch "
                             f"checkpoint, fully downloaded?") from None


def read_state_dict(path, what: str = "a checkpoint") -> tuple[dict, dict]:
    """(state dict without `module.` components, the whole checkpoint dict) of a `{'state_dict': ...}` file."""
    ck = torch_load(path)
    sd = ck.get("state_dict") if isinstance(ck, dict) else None
    if not isinstance(sd, dict):
        keys = " with keys " + ", ".join(map(str, ck)) if isinstance(ck, dict) else ""
        raise ValueError(f"{path}: expected {what} {{'state_dict': ...}}, got {type(ck).__name__}{keys}")
    return strip_module(sd), ck


def load_strict(model: torch.nn.Module, state_dict: dict, source, what: str, hint: str) -> None:
    """Load `state_dict` (module. components dropped) into `model` strictly; a mismatch raises a ValueError that
    lists the missing and unexpected keys and the shape differences, then `hint` (how to build a model that fits)."""
    sd, own = strip_module(state_dict), model.state_dict()
    missing, unexpected = sorted(set(own) - set(sd)), sorted(set(sd) - set(own))
    wrong = sorted(k for k in set(own) & set(sd) if tuple(own[k].shape) != tuple(sd[k].shape))
    if missing or unexpected or wrong:
        def listed(keys):
            return ", ".join(keys[:12]) + (" …" if len(keys) > 12 else "")

        lines = [f"{source} does not fit {what}:"]
        lines += [f"  missing keys ({len(missing)}): {listed(missing)}"] if missing else []
        lines += [f"  unexpected keys ({len(unexpected)}): {listed(unexpected)}"] if unexpected else []
        lines += [f"  {k}: checkpoint {tuple(sd[k].shape)} vs model {tuple(own[k].shape)}" for k in wrong[:12]]
        raise ValueError("\n".join(lines + [f"  ({hint})"]))
    model.load_state_dict(sd)


# -- launching and the command line ---------------------------------------------------------------

def torchrun_command(module: str, args: list[str], nproc: int) -> list[str]:
    """`python -m torch.distributed.run` starting `python -m <module> <args>` on `nproc` local processes."""
    if nproc < 2:
        raise ValueError(f"nproc = {nproc}: torchrun is for 2 or more processes; train in this process instead")
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}", "-m",
            module, *map(str, args)]


def launch(module: str, args: list[str], nproc: int) -> None:
    """Run `module` under torchrun on `nproc` processes and wait; a failed rank raises CalledProcessError."""
    import subprocess

    subprocess.run(torchrun_command(module, args, nproc), check=True)


def run_cli(prog: str, train: Callable[[], dict | None]) -> int:
    """The end of every training command line: `train()` runs inside the process group torchrun describes (or
    alone), a missing file or a bad value becomes `prog: error: ...` with exit status 2, the group is always
    left, and rank 0 prints train's summary as one JSON line."""
    world = distributed.world_from_env()
    try:
        summary = train()
    except (FileNotFoundError, ValueError) as e:
        return cli.fail(prog, str(e))
    finally:
        distributed.teardown(world)
    if world.main and summary is not None:
        print(json.dumps(summary))
    return 0
