"""Train a BEBR head on CLIP features: `python -m bitlens.bebr.train --features DIR --out DIR [...]`.

Runs in one process or under `torchrun` (DistributedDataParallel; every rank
takes its slice of each global batch and the loss sees the embeddings of all
ranks, gathered with gradients for the local part). SGD with Nesterov
momentum, step decay, weight decay only on weights (not biases / BatchNorm),
gradient clipping, optional AMP; a checkpoint every epoch and resume.
"""
from __future__ import annotations

import argparse
import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from bitlens import io
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


def world_info() -> tuple[int, int, int]:
    """(local_rank, rank, world_size) from torchrun's environment."""
    return int(os.environ.get("LOCAL_RANK", 0)), int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))


@torch.no_grad()
def embed(head: RBEHead, x: np.ndarray, device: str, batch: int = 8192) -> np.ndarray:
    head.eval()
    out = [head(torch.from_numpy(x[i:i + batch]).to(device)).float().cpu() for i in range(0, len(x), batch)]
    return torch.cat(out).numpy()


def _gather(t: torch.Tensor) -> torch.Tensor:
    import torch.distributed.nn.functional as dnf

    # clone: gloo reads a sliced view from the start of its storage, not from its offset
    return torch.cat(dnf.all_gather(t.clone()), 0)


def train_head(features: dict, cfg: HeadConfig, opts: TrainOptions, out_dir, resume: bool = True, log=print) -> dict:
    """Train one head; returns the history. Writes checkpoint.pth (every epoch), best.pth, feat_image.npy /
    feat_txt.npy (val embeddings of the best epoch), history.json — all atomically."""
    from bitlens.metrics import recall_both_directions

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    local_rank, rank, world = world_info()
    distributed = world > 1
    device = opts.device
    if distributed:
        import torch.distributed as dist

        if not dist.is_initialized():
            dist.init_process_group("nccl" if device.startswith("cuda") else "gloo")
        if device.startswith("cuda"):
            device = f"cuda:{local_rank}"
            torch.cuda.set_device(local_rank)
    torch.manual_seed(opts.seed)
    img, txt, lab = split_pairs(features["train_feat"], features["train_label"])
    if img.shape[1] != cfg.in_dim:
        raise ValueError(f"features are {img.shape[1]}-d but the head expects in_dim={cfg.in_dim}")
    head = RBEHead(cfg).to(device)
    model = head
    if distributed:
        model = torch.nn.parallel.DistributedDataParallel(head, device_ids=[local_rank] if device.startswith("cuda")
                                                          else None)
    opt = torch.optim.SGD(param_groups(head, opts.weight_decay), lr=opts.lr, momentum=opts.momentum,
                          nesterov=opts.nesterov)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=opts.lr_step_epoch, gamma=opts.gamma)
    scaler = torch.amp.GradScaler("cuda", enabled=opts.amp and device.startswith("cuda"))
    pairs = PairBatches(len(lab), opts.batch_size // 2, opts.seed)
    if pairs.b % world:
        raise ValueError(f"batch of {pairs.b} pairs does not split over {world} ranks")
    local = pairs.b // world
    history = {"epoch": [], "loss": [], "val_r1": [], "seconds": []}
    start = 0
    ckpt_path = out_dir / "checkpoint.pth"
    meta = {"config": asdict(cfg), "options": {k: v for k, v in asdict(opts).items() if k != "device"}}
    if resume and ckpt_path.exists():
        ck = torch.load(ckpt_path, map_location=device, weights_only=False)
        if ck.get("meta") != meta:
            raise ValueError(f"{ckpt_path}: checkpoint was trained with other settings; delete it or set "
                             f"resume=False (checkpoint: {ck.get('meta')}, now: {meta})")
        head.load_state_dict(ck["state_dict"])
        opt.load_state_dict(ck["optimizer"])
        sched.load_state_dict(ck["scheduler"])
        history, start = ck["history"], ck["epoch"] + 1
        log(f"resumed from {ckpt_path} at epoch {start}")
    best = max(history["val_r1"], default=-1.0)
    img_t, txt_t, lab_t = torch.from_numpy(img), torch.from_numpy(txt), torch.from_numpy(lab.astype(np.int64))
    for epoch in range(start, opts.epochs):
        model.train()
        t0, total, n = time.perf_counter(), 0.0, 0
        for idx in progress(pairs.epoch(epoch), total=len(pairs), desc=f"epoch {epoch + 1}/{opts.epochs}",
                            disable=rank != 0 or None):
            mine = idx[rank * local:(rank + 1) * local]
            a, b, y = img_t[mine].to(device), txt_t[mine].to(device), lab_t[mine].to(device)
            with torch.autocast(device_type="cuda" if device.startswith("cuda") else "cpu", dtype=torch.float16,
                                enabled=opts.amp and device.startswith("cuda")):
                h = model(torch.cat([a, b], 0))
                h1, h2 = h[:local].float(), h[local:].float()
                if distributed:
                    loss = rbe_loss(h1, h2, y, opts.tau, opts.hard_k, _gather(h1), _gather(h2), _gather(y),
                                    offset=rank * local)
                else:
                    loss = rbe_loss(h1, h2, y, opts.tau, opts.hard_k)
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.unscale_(opt)
            torch.nn.utils.clip_grad_norm_(head.parameters(), opts.clip_grad)
            scaler.step(opt)
            scaler.update()
            total += float(loss.detach())
            n += 1
        sched.step()
        vi, vt = embed(head, features["val_img"], device), embed(head, features["val_txt"], device)
        r1 = recall_both_directions(vi, vt, ties="pessimistic", ks=(1,))["i2t"]["r1"]
        history["epoch"].append(epoch + 1)
        history["loss"].append(total / max(n, 1))
        history["val_r1"].append(r1)
        history["seconds"].append(time.perf_counter() - t0)
        if rank == 0:
            log(f"epoch {epoch + 1}: loss {total / max(n, 1):.4f}  val i2t R@1 {r1:.4f}")
            if r1 > best:
                best = r1
                io.torch_save(out_dir / "best.pth", {"state_dict": head.state_dict(), "epoch": epoch, "meta": meta})
                io.save_npy(out_dir / "feat_image.npy", vi)
                io.save_npy(out_dir / "feat_txt.npy", vt)
            io.torch_save(ckpt_path, {"state_dict": head.state_dict(), "optimizer": opt.state_dict(),
                                      "scheduler": sched.state_dict(), "epoch": epoch, "history": history,
                                      "meta": meta})
            io.write_json(out_dir / "history.json", history)
    if distributed:
        import torch.distributed as dist

        dist.barrier()
    return history


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--features", required=True, help="folder with " + ", ".join(FEATURE_FILES))
    ap.add_argument("--out", required=True, help="output folder (checkpoints, embeddings, history)")
    ap.add_argument("--out-dim", type=int, default=512)
    ap.add_argument("--u", type=int, default=1, help="recurrent steps (bit planes = u + 1)")
    ap.add_argument("--hidden", type=int, default=2048)
    ap.add_argument("--blocks", type=int, default=1)
    ap.add_argument("--float", action="store_true", help="float baseline (identity instead of sign)")
    for f in TrainOptions.__dataclass_fields__.values():
        if f.name in ("device",):
            continue
        flag = "--" + f.name.replace("_", "-")
        if f.type in ("bool", bool):
            ap.add_argument(flag, type=lambda s: s.lower() in ("1", "true", "yes"), default=f.default)
        else:
            ap.add_argument(flag, type={"int": int, "float": float}.get(str(f.type), float), default=f.default)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--no-resume", action="store_true")
    args = ap.parse_args(argv)
    feats = load_features(args.features)
    cfg = HeadConfig(feats["train_feat"].shape[1], args.out_dim, args.u, args.hidden, args.blocks, not args.float)
    opts = TrainOptions(**{k: getattr(args, k) for k in TrainOptions.__dataclass_fields__})
    hist = train_head(feats, cfg, opts, args.out, resume=not args.no_resume)
    if world_info()[1] == 0:
        print(json.dumps({"best_val_r1": max(hist["val_r1"]) if hist["val_r1"] else None}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
