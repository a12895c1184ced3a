"""The IBC trainer (single process, or one rank of `torchrun`: the batch is split over the ranks). Its command line
is the stage's, `python -m bitlens.stages.ibc_train`, which turns a profile's experiment into these arguments.

One step, as the official `Trainer.model_update`: the batch is split in halves (unmasked / gated by GRM[y]), the
seven loss terms are weighted and summed, Adam updates the official parameter groups (×10 lr for hash_layer,
hash_prediction, conv_last, real_prediction and GRM), the GRM is renormalised, and StepLR is stepped once per
iteration (before the update, as the official loop does). Data: each epoch a seeded permutation of the list;
images resized (shorter side) then randomly cropped and flipped with a per-sample seed, ImageNet mean/std — so a
resumed run continues exactly as an uninterrupted one would.

Files in the output folder: `checkpoint_%08d.pt` every `checkpoint_every` iterations and at the end (the
official name; `{'state_dict': ...}` as the authors' code reads it, plus `arch` and `meta`), `train_state.pt`
(settings, optimizer, scheduler, progress, every rank's random generators, the log: see bitlens.checkpoint), and
`log.csv` (every loss term, the total, lr and GRM statistics per iteration). A run with other settings moves the
earlier files to `.previous/<folder>/<time>/` beside the stage folders and starts afresh; `--fresh` always does.
"""
from __future__ import annotations

import time
import warnings
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from bitlens import checkpoint, distributed, io
from bitlens.ibc.images import ImageListImages, collate_normalized
from bitlens.ibc.loss import ibc_losses, weighted_total
from bitlens.ibc.model import IBC
from bitlens.ibc.options import IBCTrainOptions
from bitlens.progress import progress

class EpochBatches:
    """Batches of (index, augmentation seed) from iteration `start` on, forever. Every epoch is a permutation of
    the list seeded by (seed, epoch), cut into global batches of `batch_size` (the incomplete last one dropped:
    the official loader's shuffle=True, drop_last=True). A global batch is used in halves (unmasked, masked);
    rank r of w takes the r-th w-th of each half, so the ranks together see exactly the batch one process
    would, in the same halves, with the same augmentation (seeded by (seed, iteration, position))."""

    def __init__(self, n: int, batch_size: int, seed: int, start: int = 0, rank: int = 0, world: int = 1):
        if batch_size % (2 * world):
            raise ValueError(f"batch_size {batch_size} must split into two halves on each of {world} rank(s)")
        if n < batch_size:
            raise ValueError(f"the training list has {n} images: fewer than one batch of {batch_size}; "
                             f"lower batch_size")
        self.n, self.batch, self.seed, self.start, self.rank, self.world = n, batch_size, seed, start, rank, world
        self.per_epoch = n // batch_size
        half, m = batch_size // 2, batch_size // 2 // world
        self.positions = [*range(rank * m, (rank + 1) * m), *range(half + rank * m, half + (rank + 1) * m)]

    def __iter__(self):
        it = self.start
        while True:
            epoch, b = divmod(it, self.per_epoch)
            batch = np.random.default_rng([self.seed, epoch]).permutation(self.n)[b * self.batch:(b + 1) * self.batch]
            yield [(int(batch[p]), int(np.random.SeedSequence([self.seed, it, p]).generate_state(1)[0]))
                   for p in self.positions]
            it += 1


def make_loader(image_list, root, opts: IBCTrainOptions, start: int = 0, rank: int = 0, world: int = 1):
    ds = ImageListImages(image_list, root, opts.resize, opts.crop, opts.cache_images, normalized=False)
    batches = EpochBatches(len(ds), opts.batch_size, opts.seed, start, rank, world)
    return torch.utils.data.DataLoader(ds, batch_sampler=batches, num_workers=opts.num_workers,
                                       collate_fn=collate_normalized, persistent_workers=opts.num_workers > 0)


# -- optimisation -----------------------------------------------------------------------------

def build_optimizer(model: IBC, opts: IBCTrainOptions):
    """Adam over the official parameter groups (GRM included in the weight decay) and StepLR. The fused
    implementation: the same update, without a small tensor operation per parameter and step."""
    opt = torch.optim.Adam(model.param_groups(opts.lr, opts.conv_last_lr_mult), lr=opts.lr,
                           betas=(opts.beta1, opts.beta2), weight_decay=opts.weight_decay, fused=True)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=opts.step_size, gamma=opts.gamma)
    return opt, sched


def step_scheduler(sched) -> None:
    """The official loop steps the scheduler before each update, so update n uses lr·gamma^(n // step_size):
    the first decayed update is number `step_size`. torch warns about that order, which here is intended."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"Detected call of `lr_scheduler\.step\(\)`")
        sched.step()


def grm_stats(model: IBC) -> dict:
    g = model.GRM.detach()
    return {"grm_l1": float(g.abs().sum()), "grm_mean": float(g.mean()),
            "grm_zero_frac": float((g < 1e-3).float().mean()), "grm_ones_frac": float((g > 0.999).float().mean())}


def run_settings(model: IBC, opts: IBCTrainOptions) -> dict:
    """What must match for a resume: every option that shapes the result (not the length, the device, the
    loader processes, the checkpoint cadence or the image cache) and the architecture."""
    m = {k: v for k, v in asdict(opts).items()
         if k not in ("iterations", "device", "num_workers", "checkpoint_every", "cache_images")}
    return {**m, "arch": model.architecture()}


def training_inputs_digest(image_list, root) -> str:
    """The `inputs` setting of an IBC run: the list's paths and labels, and each image file's size and
    modification time (a regenerated dataset under the same names is other data; hashing every image would cost
    minutes at ImageNet scale). The starting weights are `IBCTrainOptions.initial_weights`."""
    stats = [s[1:] for s in io.file_stats(Path(root) / rel for rel in image_list.paths)]
    return checkpoint.data_digest(list(image_list.paths), image_list.labels, np.asarray(stats, np.int64))


def checkpoint_name(iteration: int) -> str:
    """The official trainer's snapshot name after `iteration` updates."""
    return f"checkpoint_{iteration:08d}.pt"


def checkpoint_payload(model: IBC, settings: dict, iteration: int) -> dict:
    """A model snapshot: `state_dict` in the official layout (what the authors' code loads), plus `arch` (to
    rebuild the model) and the run's settings."""
    return {"state_dict": model.state_dict(), "arch": model.architecture(), "meta": settings,
            "iteration": iteration}


ARTIFACTS = ("checkpoint_*.pt", "log.csv", "checkpoint.pth.tar")  # the last: this project's older layout


def latest_checkpoint(out_dir) -> Path | None:
    """The model of a training folder's last saved state (else its highest-numbered snapshot)."""
    out_dir = Path(out_dir)
    st = checkpoint.load_state(out_dir)
    if st is not None:
        return out_dir / st["checkpoint"]
    found = sorted(out_dir.glob("checkpoint_*.pt"))
    return found[-1] if found else None


def train_ibc(model: IBC, image_list, root, opts: IBCTrainOptions, out_dir, fresh: bool = False,
              log=print, on_iteration=None) -> list[dict]:
    """Train `model` in place; returns the per-iteration log rows (also `log.csv`).

    The folder's earlier run is continued, reused or moved aside as `bitlens.checkpoint.open_run` decides;
    `fresh=True` always starts from the model as given. `on_iteration(it)` is called after each update (tests
    use it to interrupt a run)."""
    import pandas as pd

    opts.check()
    out_dir = Path(out_dir)
    world, device = distributed.setup(opts.device)
    say = log if world.main else (lambda *a: None)
    if model.backbone == "alexnet":
        # AlexNet's own 1000/365-way layer is part of the official layout but in no optimizer group
        model.enc_style.alexnet.classifier[6].requires_grad_(False)
    model.to(device)
    # channels-last convolutions are a sixth faster on CPU; the weights keep their values (checkpoints are alike)
    layout = torch.channels_last if device == "cpu" else None
    if layout is not None:
        model.to(memory_format=layout)
    opt, sched = build_optimizer(model, opts)
    settings = {**run_settings(model, opts), "inputs": training_inputs_digest(image_list, root)}
    st = checkpoint.open_run(out_dir, settings, opts.iterations, world, fresh, ARTIFACTS, "iterations", say)
    start, rows = 0, []
    if st is not None:
        ck = torch.load(out_dir / st["checkpoint"], map_location="cpu", weights_only=False)
        model.load_state_dict(ck["state_dict"])
        start, rows = int(st["progress"]), list(st["log"])
        if st["finished"]:
            return rows
        opt.load_state_dict(st["optimizer"])
        sched.load_state_dict(st["scheduler"])
    net = distributed.wrap(model, world, device)
    # the loader draws a base seed from torch's generator when it starts: before the generators are set
    loader = iter(make_loader(image_list, root, opts, start, world.rank, world.size))
    if st is None or not checkpoint.restore_rng(st, world):
        if st is not None:
            say("saved with another number of ranks: dropout draws continue from a new seed")
        torch.manual_seed(opts.seed + world.rank + start)
    half = opts.batch_size // world.size // 2
    model.train()
    t0 = time.perf_counter()

    def save(it: int) -> None:
        name = checkpoint_name(it)
        if world.main:
            io.torch_save(out_dir / name, checkpoint_payload(model, settings, it))
            io.write_text(out_dir / "log.csv", pd.DataFrame(rows).to_csv(index=False))
        checkpoint.save_state(out_dir, settings, it, opts.iterations, world, optimizer=opt.state_dict(),
                              scheduler=sched.state_dict(), checkpoint=name, log=rows)

    for it in progress(range(start, opts.iterations), desc="IBC", initial=start, total=opts.iterations,
                       disable=not world.main or None):
        x, y = next(loader)
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        if layout is not None:
            x = x.contiguous(memory_format=layout)
        step_scheduler(sched)
        terms = ibc_losses(net, x[:half], y[:half], x[half:], y[half:], opts.thr_g, opts.sparse_ratio)
        total = weighted_total(terms, opts.weights)
        if not torch.isfinite(total):
            raise FloatingPointError(f"IBC loss became {float(total)} at iteration {it + 1} "
                                     f"({', '.join(f'{k}={float(v):.4g}' for k, v in terms.items())}); "
                                     f"lower lr or the loss weights")
        opt.zero_grad(set_to_none=True)
        total.backward()
        opt.step()
        model.renormalize_grm()
        rows.append({"iteration": it + 1, "total": float(total.detach()),
                     **{k: float(v.detach()) for k, v in terms.items()},
                     "lr": opt.param_groups[0]["lr"], **grm_stats(model)})
        if (it + 1) % opts.checkpoint_every == 0 or it + 1 == opts.iterations:
            save(it + 1)
        if on_iteration is not None:
            on_iteration(it + 1)
    say(f"trained {opts.iterations - start} iterations in {time.perf_counter() - t0:.1f}s; "
        f"final loss {rows[-1]['total']:.4f}")
    distributed.barrier(world)
    return rows


def train_experiment(model: IBC, image_list, images_root, opts: IBCTrainOptions, out_dir, fresh: bool = False,
                     log=print) -> tuple[IBC, list[dict]]:
    """Train one experiment's freshly built `model` (bitlens.ibc.model.build_model, seeded) on `image_list` (its
    images under `images_root`): its labels are checked against the model's classes first, and the digest of the
    starting weights joins the run's settings, so a finished run is reused only for a model that starts alike."""
    from bitlens.labels import MISSING_LABEL

    C = int(model.GRM.shape[0])
    labels = np.asarray(image_list.labels)
    bad = labels[(labels != MISSING_LABEL) & ((labels < 0) | (labels >= C))]
    if bad.size:
        raise ValueError(f"{image_list.source}: class labels {sorted(set(bad.tolist()))[:5]} are outside 0..{C - 1} "
                         f"(data.imagelists num_classes) and not {MISSING_LABEL} (missing)")
    opts.initial_weights = checkpoint.data_digest(model.state_dict())
    rows = train_ibc(model, image_list, images_root, opts, out_dir, fresh=fresh, log=log)
    return model, rows


def run_summary(folder: str, model: IBC, rows: list[dict]) -> dict:
    """What 20_ibc_train records per trained model: its checkpoint (relative to the stage folder), length, final
    loss terms, GRM sparsity and, for `bit_init: readouts`, the concept each initialised bit started as."""
    from bitlens.ibc.loss import TERMS

    last = rows[-1]
    return {"code_length": int(model.code_length), "iterations": int(last["iteration"]),
            "checkpoint": f"{folder}/{checkpoint_name(int(last['iteration']))}",
            "final_total": float(last["total"]), "final_terms": {t: float(last[t]) for t in TERMS},
            "grm_zero_frac": float(last["grm_zero_frac"]),
            "bit_init": list(getattr(model, "bit_init_concepts", []))}  # bit k + 1 started as concept k (readouts)


def snapshot_summary(summary: dict, iteration: int) -> dict:
    """run_summary() of a main run, for its snapshot after `iteration` updates (a sweep point)."""
    folder = summary["checkpoint"].rsplit("/", 1)[0]
    return {"code_length": summary["code_length"], "iterations": int(iteration),
            "checkpoint": f"{folder}/{checkpoint_name(int(iteration))}", "bit_init": summary.get("bit_init", [])}
