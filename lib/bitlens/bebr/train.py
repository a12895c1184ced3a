"""Train a BEBR head on CLIP features: `python -m bitlens.bebr.train --features DIR --out DIR [...]`.

Runs in one process or under `torchrun` (DistributedDataParallel; every rank
takes its slice of each global batch and the loss sees the embeddings of all
ranks, gathered with gradients for the local part). SGD with Nesterov
momentum, step decay, weight decay only on weights (not biases / BatchNorm),
gradient clipping, optional mixed precision (the loss stays in float32).

Reports the last epoch, as the authors do: `feat_image.npy` / `feat_txt.npy`
are the evaluation embeddings after the final epoch (no epoch is picked on the
evaluation pairs). Files: `checkpoint.pth` (`{'state_dict'}`), `history.json`
(loss and image→text R@1 on the evaluation pairs per epoch, for the curve) and
`train_state.pt` (exact resume; a run with other settings moves the earlier
files to `.previous/<folder>/<time>/`, see bitlens.checkpoint).
"""
from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from bitlens import checkpoint, distributed, io
from bitlens.bebr.heads import HeadConfig, RBEHead
from bitlens.bebr.loss import rbe_loss
from bitlens.bebr.sampler import PairBatches, split_pairs
from bitlens.progress import progress

FEATURE_FILES = ("train_feat.npy", "train_label.npy", "val_img.npy", "val_txt.npy")


@dataclass
class TrainOptions:
    epochs: int = 10
    lr: float = 0.08
    lr_step_epoch: int = 6
    gamma: float = 0.1
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 1e-3
    clip_grad: float = 5.0
    batch_size: int = 4096  # samples = 2 × pairs
    tau: float = 0.05
    hard_k: int = 5
    seed: int = 0
    amp: bool = False
    device: str = "cpu"


def load_features(d) -> dict:
    """The official BEBR feature roles from a folder, validated (shape, dtype, finiteness)."""
    d = Path(d)
    out = {}
    for name in FEATURE_FILES:
        p = d / name
        if not p.exists():
            raise FileNotFoundError(f"{p}: missing feature file; run notebooks/10_bebr_features.ipynb first")
        a = np.load(p, allow_pickle=False)
        if name != "train_label.npy":
            if a.ndim != 2 or a.dtype.kind != "f":
                raise ValueError(f"{p}: expected a 2-D float array, got {a.dtype} {a.shape}")
            if not np.isfinite(a).all():
                raise ValueError(f"{p}: contains NaN or infinite values")
            a = a.astype(np.float32, copy=False)
        out[name[:-4]] = a
    if out["val_img"].shape != out["val_txt"].shape:
        raise ValueError(f"{d}: val_img {out['val_img'].shape} and val_txt {out['val_txt'].shape} must match")
    return out


def param_groups(model: torch.nn.Module, weight_decay: float):
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        (no_decay if p.ndim <= 1 else decay).append(p)  # biases and BatchNorm parameters are 1-D
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


@torch.no_grad()
def embed(head: RBEHead, x: np.ndarray, device: str, batch: int = 8192) -> np.ndarray:
    head.eval()
    out = [head(torch.from_numpy(x[i:i + batch]).to(device)).float().cpu() for i in range(0, len(x), batch)]
    return torch.cat(out).numpy()


ARTIFACTS = ("checkpoint.pth", "best.pth", "feat_image.npy", "feat_txt.npy", "history.json")


def run_settings(cfg: HeadConfig, opts: TrainOptions) -> dict:
    """What must match for a resume: the head and every option except the length and the device (the trainers
    add the `inputs` digest of their features)."""
    return {"config": asdict(cfg), "options": {k: v for k, v in asdict(opts).items() if k not in ("device", "epochs")}}


def training_inputs(features: dict) -> dict:
    """The feature arrays a head learns from and is evaluated on (what the `inputs` digest covers)."""
    return {k: features[k] for k in ("train_feat", "train_label", "val_img", "val_txt") if k in features}


def autocast(device: str, enabled: bool):
    """Mixed precision: float16 on CUDA and CPU alike (the loss itself runs in float32)."""
    return torch.autocast(device_type="cuda" if device.startswith("cuda") else "cpu", dtype=torch.float16,
                          enabled=enabled)


def optimizer_step(loss: torch.Tensor, head: torch.nn.Module, opt, scaler, clip_grad: float) -> None:
    """Backward through the (AMP-scaled) loss, clip the unscaled gradient norm of `head`, step and update the scale."""
    opt.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    scaler.unscale_(opt)
    torch.nn.utils.clip_grad_norm_(head.parameters(), clip_grad)
    scaler.step(opt)
    scaler.update()


def train_head(features: dict, cfg: HeadConfig, opts: TrainOptions, out_dir, fresh: bool = False, log=print,
               on_epoch=None) -> dict:
    """Train one head; returns the history. Writes checkpoint.pth, feat_image.npy / feat_txt.npy (evaluation
    embeddings of the latest epoch), history.json and train_state.pt after every epoch, atomically.

    An earlier run in `out_dir` is continued, reused or moved aside as `bitlens.checkpoint.open_run` decides;
    `fresh=True` always starts again. `on_epoch(epoch)` is called after each saved epoch (tests interrupt)."""
    from bitlens.metrics import recall_both_directions

    out_dir = Path(out_dir)
    if opts.batch_size % 2 or opts.batch_size // 2 <= opts.hard_k:
        # fewer pairs than hard_k + 1 leave an anchor without its negatives: the loss is 0 and nothing is learnt
        raise ValueError(f"batch_size = {opts.batch_size} (--batch-size, bebr.train.batch_size) must be even (image, "
                         f"caption pairs) and hold more than hard_k = {opts.hard_k} pairs, so that every anchor has "
                         f"its hard negatives; use at least {2 * (opts.hard_k + 1)}")
    world, device = distributed.setup(opts.device)
    say = log if world.main else (lambda *a: None)
    img, txt, lab = split_pairs(features["train_feat"], features["train_label"])
    if img.shape[1] != cfg.in_dim:
        raise ValueError(f"features are {img.shape[1]}-d but the head expects in_dim={cfg.in_dim}")
    pairs = PairBatches(len(lab), opts.batch_size // 2, opts.seed)
    if pairs.b % world.size:
        raise ValueError(f"batch of {pairs.b} pairs does not split over {world.size} ranks")
    torch.manual_seed(opts.seed)
    head = RBEHead(cfg).to(device)
    opt = torch.optim.SGD(param_groups(head, opts.weight_decay), lr=opts.lr, momentum=opts.momentum,
                          nesterov=opts.nesterov)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=opts.lr_step_epoch, gamma=opts.gamma)
    scaler = torch.amp.GradScaler("cuda" if device.startswith("cuda") else "cpu", enabled=opts.amp)
    settings = {**run_settings(cfg, opts), "inputs": checkpoint.data_digest(training_inputs(features))}
    st = checkpoint.open_run(out_dir, settings, opts.epochs, world, fresh, ARTIFACTS, "epochs", say)
    # no wall-clock time in the history: it is an output its dependents digest, and a time differs every run
    history, start = {"epoch": [], "loss": [], "val_r1": []}, 0
    if st is not None:
        head.load_state_dict(torch.load(out_dir / "checkpoint.pth", map_location=device,
                                        weights_only=False)["state_dict"])
        history, start = st["history"], int(st["progress"])
        if st["finished"]:
            return history
        opt.load_state_dict(st["optimizer"])
        sched.load_state_dict(st["scheduler"])
        scaler.load_state_dict(st["scaler"])
    if st is None or not checkpoint.restore_rng(st, world):
        torch.manual_seed(opts.seed + world.rank + start)
    model = distributed.wrap(head, world, device)
    local = pairs.b // world.size
    img_t, txt_t, lab_t = torch.from_numpy(img), torch.from_numpy(txt), torch.from_numpy(lab.astype(np.int64))
    for epoch in range(start, opts.epochs):
        model.train()
        t0, total, n = time.perf_counter(), 0.0, 0
        for idx in progress(pairs.epoch(epoch), total=len(pairs), desc=f"epoch {epoch + 1}/{opts.epochs}",
                            disable=not world.main or None):
            mine = idx[world.rank * local:(world.rank + 1) * local]
            a, b, y = img_t[mine].to(device), txt_t[mine].to(device), lab_t[mine].to(device)
            with autocast(device, opts.amp):
                h = model(torch.cat([a, b], 0))
            h1, h2 = h[:local], h[local:]
            if world.distributed:
                gather = distributed.gather_cat
                loss = rbe_loss(h1, h2, y, opts.tau, opts.hard_k, gather(h1), gather(h2), gather(y),
                                offset=world.rank * local)
            else:
                loss = rbe_loss(h1, h2, y, opts.tau, opts.hard_k)
            optimizer_step(loss, head, opt, scaler, opts.clip_grad)
            total += float(loss.detach())
            n += 1
        sched.step()
        vi, vt = embed(head, features["val_img"], device), embed(head, features["val_txt"], device)
        r1 = recall_both_directions(vi, vt, ties="pessimistic", ks=(1,))["i2t"]["r1"]
        history["epoch"].append(epoch + 1)
        history["loss"].append(total / max(n, 1))
        history["val_r1"].append(r1)
        say(f"epoch {epoch + 1}: loss {total / max(n, 1):.4f}  i2t R@1 (evaluation pairs) {r1:.4f}  "
            f"({time.perf_counter() - t0:.1f}s)")
        if world.main:
            io.save_npy(out_dir / "feat_image.npy", vi)
            io.save_npy(out_dir / "feat_txt.npy", vt)
            io.torch_save(out_dir / "checkpoint.pth", {"state_dict": head.state_dict(), "epoch": epoch + 1,
                                                       "meta": settings})
            io.write_json(out_dir / "history.json", history)
        checkpoint.save_state(out_dir, settings, epoch + 1, opts.epochs, world, optimizer=opt.state_dict(),
                              scheduler=sched.state_dict(), scaler=scaler.state_dict(), history=history)
        if on_epoch is not None:
            on_epoch(epoch + 1)
    distributed.barrier(world)
    return history


def options_from_params(train: dict, device: str) -> TrainOptions:
    """Training options from the validated `bebr.train` section."""
    return TrainOptions(**{k: train[k] for k in TrainOptions.__dataclass_fields__ if k in train}, device=device)


def head_config(in_dim: int, head: dict) -> HeadConfig:
    """A head's configuration from one `bebr.heads.<name>` entry."""
    return HeadConfig(in_dim, head["out_dim"], head["u"], head["hidden"], head["blocks"], head["binary"])


def head_flags(cfg: HeadConfig) -> list[str]:
    flags = ["--out-dim", str(cfg.out_dim), "--u", str(cfg.u), "--hidden", str(cfg.hidden), "--blocks",
             str(cfg.blocks)]
    return flags + ([] if cfg.binary else ["--float"])


def option_flags(opts: TrainOptions) -> list[str]:
    """The command-line flags that reproduce `opts` (the device excluded)."""
    out = []
    for k, v in asdict(opts).items():
        if k != "device":
            out += [f"--{k.replace('_', '-')}", str(v).lower() if isinstance(v, bool) else str(v)]
    return out


def torchrun_command(features_dir, out_dir, cfg: HeadConfig, opts: TrainOptions, nproc: int,
                     fresh: bool = False) -> list[str]:
    """The `torchrun` command that trains one head on `nproc` processes with exactly these settings."""
    import sys

    if nproc < 2:
        raise ValueError(f"nproc = {nproc}: torchrun is for 2 or more processes; train in this process instead")
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}", "-m",
            "bitlens.bebr.train", "--features", str(features_dir), "--out", str(out_dir), "--device", opts.device,
            *head_flags(cfg), *option_flags(opts), *(["--fresh"] if fresh else [])]


def train_or_launch(features: dict, features_dir, cfg: HeadConfig, opts: TrainOptions, out_dir, nproc: int = 1,
                    fresh: bool = False, log=print) -> dict:
    """Train one head here (nproc 1) or under torchrun (nproc > 1); returns its history."""
    if nproc <= 1:
        return train_head(features, cfg, opts, out_dir, fresh=fresh, log=log)
    import subprocess

    subprocess.run(torchrun_command(features_dir, out_dir, cfg, opts, nproc, fresh), check=True)
    return json.loads((Path(out_dir) / "history.json").read_text())


def main(argv=None) -> int:
    from bitlens import cli

    prog = "python -m bitlens.bebr.train"
    ap = cli.parser(prog, __doc__)
    ap.add_argument("--features", required=True, help="folder with " + ", ".join(FEATURE_FILES))
    ap.add_argument("--out", required=True, help="output folder (checkpoint, embeddings, history, train_state.pt)")
    from bitlens.schema.bebr import BEBR, HEAD

    def head_flag(name, default, text):
        ap.add_argument("--" + name.replace("_", "-"), type=cli.ranged(HEAD[name], "--" + name.replace("_", "-"),
                                                                       f"bebr.heads.*.{name}"),
                        default=default, help=text)

    head_flag("out_dim", 512, "output dims (hash: bits; bebr: dims per bit plane)")
    head_flag("u", 1, "recurrent steps (bit planes = u + 1)")
    head_flag("hidden", 2048, "MLP hidden width (0 = a single Linear)")
    head_flag("blocks", 1, "Linear-BN-ReLU blocks per transformation")
    ap.add_argument("--float", action="store_true", help="float baseline (identity instead of sign)")
    helps = {"epochs": "training epochs (the last one is reported)", "lr": "SGD learning rate",
             "lr_step_epoch": "epochs between learning-rate decays", "gamma": "learning-rate decay factor",
             "momentum": "SGD momentum", "nesterov": "Nesterov momentum (true/false)",
             "weight_decay": "weight decay (not on biases / BatchNorm)", "clip_grad": "gradient-norm clipping",
             "batch_size": "samples per step (= 2 × pairs), over all ranks", "tau": "contrastive temperature",
             "hard_k": "hard negatives per anchor", "seed": "seeds the head's weights and the batch order",
             "amp": "mixed precision (float16 autocast; true/false)"}
    for f in TrainOptions.__dataclass_fields__.values():
        if f.name == "device":
            continue
        flag = "--" + f.name.replace("_", "-")
        # the schema's ranges (epochs ≥ 1, tau > 0, finite rates...), as a profile would be checked
        kind = cli.ranged(BEBR["train"][f.name], flag, f"bebr.train.{f.name}")
        ap.add_argument(flag, type=kind, default=f.default, help=helps[f.name],
                        metavar="BOOL" if str(f.type) == "bool" else None)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", help="torch device")
    ap.add_argument("--fresh", action="store_true",
                    help="start from scratch even if the folder holds a run with the same settings (the earlier "
                         "files are moved to .previous/<folder>/<time>/, see bitlens.previous)")
    args = ap.parse_args(argv)
    world = distributed.world_from_env()
    try:
        feats = load_features(args.features)
        cfg = HeadConfig(feats["train_feat"].shape[1], args.out_dim, args.u, args.hidden, args.blocks,
                         not args.float)
        opts = TrainOptions(**{k: getattr(args, k) for k in TrainOptions.__dataclass_fields__})
        hist = train_head(feats, cfg, opts, args.out, fresh=args.fresh)
    except (FileNotFoundError, ValueError) as e:
        return cli.fail(prog, str(e))
    finally:
        distributed.teardown(world)
    if world.main:
        print(json.dumps({"epochs": len(hist["epoch"]), "last_epoch_r1": hist["val_r1"][-1] if hist["val_r1"]
                          else None}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
