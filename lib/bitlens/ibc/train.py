"""Train an IBC model: `python -m bitlens.ibc.train --profile tiny --experiment shapes [--set key=value]`.

One step: a batch split in halves (unmasked / GRM-masked), the seven weighted loss terms, Adam with 10× learning
rate for hash_layer, hash_prediction, conv_last, real_prediction and GRM, GRM renormalisation after every step,
StepLR stepped every iteration. Checkpoints (`{'state_dict': ...}`) every N iterations and at the end; resumes
from the latest. Runs under torchrun too (DistributedDataParallel, one batch per rank).
"""
from __future__ import annotations

import argparse
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from bitlens import io
from bitlens.ibc.loss import TERMS, ibc_losses, weighted_total
from bitlens.ibc.model import IBC
from bitlens.progress import progress

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass
class IBCTrainOptions:
    iterations: int = 50_000
    batch_size: int = 200
    lr: float = 1e-4
    beta1: float = 0.9
    beta2: float = 0.999
    weight_decay: float = 5e-4
    step_size: int = 30_000
    gamma: float = 0.1
    seed: int = 1245
    checkpoint_every: int = 10_000
    resize: int = 256
    crop: int = 227
    num_workers: int = 0
    weights: dict = field(default_factory=lambda: {"hash_std_w": 1.0, "hash_mask_w": 0.2, "GRM_w": 1e-5,
                                                   "align_w": 1e4, "real_std_w": 1.0, "real_mask_w": 0.05,
                                                   "sparse_w": 0.0})
    thr_g: float = 1000.0
    device: str = "cpu"


def transforms(resize: int, crop: int, train: bool):
    from torchvision import transforms as T

    ops = [T.Resize(resize)]
    ops += [T.RandomCrop(crop), T.RandomHorizontalFlip()] if train else [T.CenterCrop(crop)]
    return T.Compose(ops + [T.ToTensor(), T.Normalize(IMAGENET_MEAN, IMAGENET_STD)])


class _Cached(torch.utils.data.Dataset):
    """Decoded images kept in memory (small lists): augmentation stays random, decoding happens once."""

    def __init__(self, base, transform):
        self.base, self.transform, self.cache = base, transform, {}

    def __len__(self):
        return len(self.base)

    def __getitem__(self, i):
        if i not in self.cache:
            self.cache[i] = self.base[i][0]
        return self.transform(self.cache[i]), int(self.base.list.labels[i])


def make_loader(image_list, root, opts: IBCTrainOptions, rank: int = 0, cache: bool = False):
    from bitlens.data.imagelist import ImageListDataset

    base = ImageListDataset(image_list, root, None)
    ds = _Cached(base, transforms(opts.resize, opts.crop, True)) if cache else \
        _Plain(base, transforms(opts.resize, opts.crop, True))
    g = torch.Generator().manual_seed(opts.seed + rank)
    sampler = torch.utils.data.RandomSampler(ds, replacement=True, num_samples=10 ** 12, generator=g)
    return torch.utils.data.DataLoader(ds, batch_size=opts.batch_size, sampler=sampler, num_workers=opts.num_workers,
                                       drop_last=True, persistent_workers=opts.num_workers > 0)


class _Plain(torch.utils.data.Dataset):
    def __init__(self, base, transform):
        self.base, self.transform = base, transform

    def __len__(self):
        return len(self.base)

    def __getitem__(self, i):
        img, label, _, _ = self.base[i]
        return self.transform(img), label


def build_optimizer(model: IBC, opts: IBCTrainOptions):
    fast = {id(p) for p in model.lr_x10_parameters()}
    base = [p for p in model.parameters() if id(p) not in fast]
    groups = [{"params": base, "lr": opts.lr}, {"params": model.lr_x10_parameters(), "lr": opts.lr * 10}]
    opt = torch.optim.Adam(groups, lr=opts.lr, betas=(opts.beta1, opts.beta2), weight_decay=opts.weight_decay)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=opts.step_size, gamma=opts.gamma)
    return opt, sched


def grm_stats(model: IBC) -> dict:
    g = model.GRM.detach()
    return {"grm_mean": float(g.mean()), "grm_zero_frac": float((g < 1e-3).float().mean()),
            "grm_l1": float(g.abs().sum())}


def train_ibc(model: IBC, image_list, root, opts: IBCTrainOptions, out_dir, resume: bool = True, cache: bool = False,
              log=print) -> list[dict]:
    """Train; returns the per-iteration log (also written as `log.csv`). Checkpoints in `out_dir`."""
    import pandas as pd

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    local_rank, rank, world = (int(os.environ.get(k, d)) for k, d in (("LOCAL_RANK", 0), ("RANK", 0),
                                                                      ("WORLD_SIZE", 1)))
    device = opts.device
    if world > 1:
        import torch.distributed as dist

        if not dist.is_initialized():
            dist.init_process_group("nccl" if device.startswith("cuda") else "gloo")
        if device.startswith("cuda"):
            device = f"cuda:{local_rank}"
            torch.cuda.set_device(local_rank)
    if opts.batch_size < 2:
        raise ValueError("batch_size must be ≥ 2 (the step splits it into two halves)")
    torch.manual_seed(opts.seed + rank)
    model.to(device)
    net = model
    if world > 1:
        net = torch.nn.parallel.DistributedDataParallel(model, device_ids=[local_rank] if device.startswith("cuda")
                                                        else None, find_unused_parameters=True)
    opt, sched = build_optimizer(model, opts)
    meta = {k: v for k, v in asdict(opts).items() if k not in ("device", "num_workers", "checkpoint_every")}
    meta.update(code_length=model.code_length, num_classes=model.num_classes, backbone=model.backbone)
    ckpt = out_dir / "checkpoint.pth.tar"
    start, rows = 0, []
    if resume and ckpt.exists():
        ck = torch.load(ckpt, map_location=device, weights_only=False)
        if ck.get("meta") != meta:
            raise ValueError(f"{ckpt}: trained with other settings; delete it to start again "
                             f"(checkpoint: {ck.get('meta')}; now: {meta})")
        model.load_state_dict(ck["state_dict"])
        opt.load_state_dict(ck["optimizer"])
        sched.load_state_dict(ck["scheduler"])
        start, rows = ck["iteration"], ck.get("log", [])
        log(f"resumed from {ckpt} at iteration {start}")
    loader = iter(make_loader(image_list, root, opts, rank, cache))
    half = opts.batch_size // 2
    model.train()
    t0 = time.perf_counter()

    def save(it):
        io.torch_save(ckpt, {"state_dict": model.state_dict(), "optimizer": opt.state_dict(),
                             "scheduler": sched.state_dict(), "iteration": it, "meta": meta, "log": rows})

    for it in progress(range(start, opts.iterations), desc="IBC", initial=start, total=opts.iterations,
                       disable=rank != 0 or None):
        x, y = next(loader)
        x, y = x.to(device), y.to(device)
        terms = ibc_losses(net if world == 1 else net.module, x[:half], y[:half], x[half:], y[half:], opts.thr_g)
        total = weighted_total(terms, opts.weights)
        opt.zero_grad(set_to_none=True)
        total.backward()
        opt.step()
        model.renormalize_grm()
        sched.step()
        rows.append({"iteration": it + 1, "total": float(total.detach()),
                     **{k: float(v.detach()) for k, v in terms.items()}, "lr": sched.get_last_lr()[0],
                     **grm_stats(model)})
        if rank == 0 and ((it + 1) % opts.checkpoint_every == 0 or it + 1 == opts.iterations):
            save(it + 1)
    if rank == 0:
        if not rows:
            raise RuntimeError("no training iterations were run")
        io.write_text(out_dir / "log.csv", pd.DataFrame(rows).to_csv(index=False))
        log(f"trained {opts.iterations - start} iterations in {time.perf_counter() - t0:.1f}s; "
            f"final loss {rows[-1]['total']:.4f}")
    return rows


def options_from_params(exp: dict, device: str) -> IBCTrainOptions:
    w = {k: exp["weights"][k] for k in ("hash_std_w", "hash_mask_w", "GRM_w", "align_w", "real_std_w",
                                        "real_mask_w", "sparse_w")}
    return IBCTrainOptions(iterations=exp["iterations"], batch_size=exp["batch_size"], lr=exp["lr"],
                           weight_decay=exp["weight_decay"], step_size=exp["step_size"], gamma=exp["gamma"],
                           seed=exp["seed"], checkpoint_every=exp["checkpoint_every"], resize=exp["resize"],
                           crop=exp["crop"], num_workers=exp["num_workers"], weights=w,
                           thr_g=exp["weights"]["thr_g"], device=device)


def main(argv=None) -> int:
    from bitlens import config
    from bitlens.data.imagelist import read_list
    from bitlens.ibc.model import build_from_params, load_alexnet_weights

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--profile", default="tiny")
    ap.add_argument("--experiment", required=True, help="a key of ibc.experiments in the profile")
    ap.add_argument("--out", required=True)
    ap.add_argument("--set", action="append", default=[])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = ap.parse_args(argv)
    P = config.load_params(args.profile, args.set)
    exp = P["ibc"]["experiments"].get(args.experiment)
    if exp is None:
        raise SystemExit(f"unknown experiment {args.experiment!r}; valid: {', '.join(P['ibc']['experiments'])}")
    ds = P["data"]["imagelists"][exp["dataset"]]
    lst = read_list(config.resolve_path(ds["train"]), ds["format"], ds["num_attributes"])
    model = build_from_params(exp, ds["num_classes"])
    if exp["backbone"] == "alexnet" and exp["backbone_weights"]:
        net = load_alexnet_weights(config.resolve_path(exp["backbone_weights"]), exp["places365"])
        model.enc_style.conv_basic.load_state_dict(net.features.state_dict())
        model.enc_style.pre_hash_layer.load_state_dict(net.classifier[:6].state_dict())
    train_ibc(model, lst, config.resolve_path(ds["root"]), options_from_params(exp, args.device), args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
