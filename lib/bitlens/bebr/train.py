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

A new version of a head can be trained *compatible* with an old one (docs/compat.md): `Compatibility` adds
λ · [D(a → b̄) + D(b → ā)] against the codes a frozen old head gives the same pairs' old features
(`--old-features DIR --old-head checkpoint.pth --weight λ` on the command line). Without it the loop is the
authors' recipe unchanged.
"""
from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from bitlens import checkpoint, distributed, io
from bitlens.bebr.heads import HeadConfig, RBEHead, freeze, load_head
from bitlens.bebr.loss import compat_loss, rbe_loss
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


# best.pth: an earlier trainer's best epoch; head.pth: the earlier compatible trainer's head (both moved aside)
ARTIFACTS = ("checkpoint.pth", "best.pth", "head.pth", "feat_image.npy", "feat_txt.npy", "history.json")


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


# -- the compatibility term ------------------------------------------------------------------

@dataclass
class Compatibility:
    """Train the new head compatible with `old_head` (frozen): λ = `weight` > 0 times new codes contrasted against
    the old codes of the same pairs' `old_features` (docs/compat.md); `warm_start` starts the new head from the old
    head's weights (same architecture and input size) instead of a seeded random start. `old_features_dir` /
    `old_head_path` name the files they came from, which a torchrun launch passes to its processes."""
    old_head: RBEHead
    old_features: dict
    weight: float
    warm_start: bool = False
    old_features_dir: str | None = None
    old_head_path: str | None = None

    @classmethod
    def from_files(cls, features_dir, head_path, weight: float, warm_start: bool = False) -> "Compatibility":
        feats = load_features(features_dir)
        return cls(load_head(head_path, feats["train_feat"].shape[1]), feats, weight, warm_start,
                   str(features_dir), str(head_path))

    def check(self, cfg: HeadConfig, new_features: dict) -> None:
        if not self.weight > 0:
            raise ValueError(f"compatibility weight λ = {self.weight} must be > 0 (bebr.compat weights, --weight); "
                             f"train without the term for an independent head")
        check_layout(self.old_head.cfg, cfg)
        check_same_items(self.old_features, new_features)
        if self.warm_start and self.old_head.cfg != cfg:
            raise ValueError(f"a warm start copies the old head, so the new head must be built alike: old "
                             f"{self.old_head.cfg}, new {cfg} (bebr.compat.new_u, the encoders' feature sizes); "
                             f"train without warm_start")

    def flags(self) -> list[str]:
        if self.old_features_dir is None or self.old_head_path is None:
            raise ValueError("a torchrun launch needs the old version as files: build the term with "
                             "Compatibility.from_files(old features folder, old head checkpoint, λ)")
        return ["--old-features", self.old_features_dir, "--old-head", self.old_head_path, "--weight",
                str(self.weight), *(["--warm-start"] if self.warm_start else [])]


def check_layout(old: HeadConfig, new: HeadConfig) -> None:
    """Cross-version SDC needs binary codes of the same dimensionality (plane counts may differ)."""
    if not old.binary or not new.binary:
        raise ValueError(f"compatible training needs binary heads (old binary={old.binary}, new binary={new.binary}); "
                         f"set bebr.compat.old_head to a binary head")
    if old.out_dim != new.out_dim:
        raise ValueError(f"the new head has out_dim={new.out_dim} but the old head {old.out_dim}: cross-version SDC "
                         f"compares codes dimension by dimension, so both must have the same out_dim")


def check_same_items(old: dict, new: dict) -> None:
    """Old and new features must describe the same training pairs and validation items, row by row."""
    if not np.array_equal(old["train_label"], new["train_label"]):
        raise ValueError("old and new training features list different pairs (train_label differs); extract both "
                         "versions from the same captions in the same order")
    for k in ("train_feat", "val_img", "val_txt"):
        if old[k].shape[0] != new[k].shape[0]:
            raise ValueError(f"old {k} has {old[k].shape[0]} rows but new {k} {new[k].shape[0]}")


def _mean_over_ranks(x: float, world, device: str) -> float:
    if not world.distributed:
        return x
    import torch.distributed as dist

    t = torch.tensor([x], dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return float(t) / world.size


# -- training ---------------------------------------------------------------------------------

def train_head(features: dict, cfg: HeadConfig, opts: TrainOptions, out_dir, fresh: bool = False, log=print,
               on_epoch=None, compat: Compatibility | None = None) -> dict:
    """Train one head; returns the history. Writes checkpoint.pth, feat_image.npy / feat_txt.npy (evaluation
    embeddings of the latest epoch), history.json and train_state.pt after every epoch, atomically.

    With `compat` the loss gains the compatibility term and the history the new→old R@1 (`val_cross_r1`).
    An earlier run in `out_dir` is continued, reused or moved aside as `bitlens.checkpoint.open_run` decides;
    `fresh=True` always starts again. `on_epoch(epoch)` is called after each saved epoch (tests interrupt)."""
    from bitlens.metrics import l2_normalize, recall_at_k

    out_dir = Path(out_dir)
    if opts.batch_size % 2 or opts.batch_size // 2 <= opts.hard_k:
        # fewer pairs than hard_k + 1 leave an anchor without its negatives: the loss is 0 and nothing is learnt
        raise ValueError(f"batch_size = {opts.batch_size} (--batch-size, bebr.train.batch_size) must be even (image, "
                         f"caption pairs) and hold more than hard_k = {opts.hard_k} pairs, so that every anchor has "
                         f"its hard negatives; use at least {2 * (opts.hard_k + 1)}")
    if compat is not None:
        compat.check(cfg, features)
    world, device = distributed.setup(opts.device)
    say = log if world.main else (lambda *a: None)
    img, txt, lab = split_pairs(features["train_feat"], features["train_label"])
    if img.shape[1] != cfg.in_dim:
        raise ValueError(f"features are {img.shape[1]}-d but the head expects in_dim={cfg.in_dim}")
    pairs = PairBatches(len(lab), opts.batch_size // 2, opts.seed)
    if pairs.b % world.size:
        raise ValueError(f"batch of {pairs.b} pairs does not split over {world.size} ranks")
    settings = {**run_settings(cfg, opts), "inputs": checkpoint.data_digest(training_inputs(features))}
    if compat is not None:
        # every rank holds the old codes of every pair, computed once by the frozen head
        old_head = freeze(compat.old_head.to(device))
        o_img, o_txt, _ = split_pairs(compat.old_features["train_feat"], compat.old_features["train_label"],
                                      "old training features")
        old_img, old_txt = (torch.from_numpy(embed(old_head, x, device)) for x in (o_img, o_txt))
        old_val_txt = l2_normalize(embed(old_head, compat.old_features["val_txt"], device))
        settings.update(weight=compat.weight, old_head=checkpoint.data_digest(old_head.state_dict()),
                        inputs=checkpoint.data_digest(training_inputs(features), training_inputs(compat.old_features)))
        if compat.warm_start:
            settings["warm_start"] = True
    torch.manual_seed(opts.seed)  # the same seed gives compatible and independent heads the same start
    head = RBEHead(cfg).to(device)
    if compat is not None and compat.warm_start:
        head.load_state_dict(compat.old_head.state_dict())
    opt = torch.optim.SGD(param_groups(head, opts.weight_decay), lr=opts.lr, momentum=opts.momentum,
                          nesterov=opts.nesterov)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=opts.lr_step_epoch, gamma=opts.gamma)
    scaler = torch.amp.GradScaler("cuda" if device.startswith("cuda") else "cpu", enabled=opts.amp)
    st = checkpoint.open_run(out_dir, settings, opts.epochs, world, fresh, ARTIFACTS, "epochs", say)
    # no wall-clock time in the history: it is an output its dependents digest, and a time differs every run
    history, start = {"epoch": [], "loss": [], "val_r1": [], **({"val_cross_r1": []} if compat else {})}, 0
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
        if st is not None:
            say("saved with another number of ranks: the generators continue from a new seed")
        torch.manual_seed(opts.seed + world.rank + start)
    model = distributed.wrap(head, world, device)
    local = pairs.b // world.size
    offset = world.rank * local
    img_t, txt_t, lab_t = torch.from_numpy(img), torch.from_numpy(txt), torch.from_numpy(lab.astype(np.int64))
    for epoch in range(start, opts.epochs):
        model.train()
        t0, total, n = time.perf_counter(), 0.0, 0
        for idx in progress(pairs.epoch(epoch), total=len(pairs), desc=f"epoch {epoch + 1}/{opts.epochs}",
                            disable=not world.main or None):
            mine = idx[offset:offset + local]
            a, b, y = img_t[mine].to(device), txt_t[mine].to(device), lab_t[mine].to(device)
            y_all = lab_t[idx].to(device)
            with autocast(device, opts.amp):
                h = model(torch.cat([a, b], 0))
            h1, h2 = h[:local].float(), h[local:].float()  # the losses run in float32
            if world.distributed:
                gather = distributed.gather_cat
                loss = rbe_loss(h1, h2, y, opts.tau, opts.hard_k, gather(h1), gather(h2), y_all, offset=offset)
            else:
                loss = rbe_loss(h1, h2, y, opts.tau, opts.hard_k)
            if compat is not None:
                loss = loss + compat.weight * compat_loss(h1, h2, old_img[idx].to(device), old_txt[idx].to(device),
                                                          y, opts.tau, opts.hard_k, y_all, offset=offset)
            optimizer_step(loss, head, opt, scaler, opts.clip_grad)
            total += float(loss.detach())
            n += 1
        sched.step()
        loss_mean = _mean_over_ranks(total, world, device) / max(n, 1)  # the global batch's, as one process logs it
        vi, vt = embed(head, features["val_img"], device), embed(head, features["val_txt"], device)
        qi = l2_normalize(vi)
        r1 = recall_at_k(qi @ l2_normalize(vt).T, ks=(1,), ties="pessimistic")["r1"]
        history["epoch"].append(epoch + 1)
        history["loss"].append(loss_mean)
        history["val_r1"].append(r1)
        line = f"epoch {epoch + 1}: loss {loss_mean:.4f}  i2t R@1 (evaluation pairs) {r1:.4f}"
        if compat is not None:
            history["val_cross_r1"].append(recall_at_k(qi @ old_val_txt.T, ks=(1,), ties="pessimistic")["r1"])
            line += f"  new→old {history['val_cross_r1'][-1]:.4f}"
        say(f"{line}  ({time.perf_counter() - t0:.1f}s)")
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


# -- the command line, here or under torchrun ---------------------------------------------------

PROG = "python -m bitlens.bebr.train"
OPTION_HELP = {"epochs": "training epochs (the last one is reported)", "lr": "SGD learning rate",
               "lr_step_epoch": "epochs between learning-rate decays", "gamma": "learning-rate decay factor",
               "momentum": "SGD momentum", "nesterov": "Nesterov momentum (true/false)",
               "weight_decay": "weight decay (not on biases / BatchNorm)", "clip_grad": "gradient-norm clipping",
               "batch_size": "samples per step (= 2 × pairs), over all ranks", "tau": "contrastive temperature",
               "hard_k": "hard negatives per anchor", "seed": "seeds the head's weights and the batch order",
               "amp": "mixed precision (float16 autocast; true/false)"}
HEAD_FLAGS = (("out_dim", None, "output dims (hash: bits; bebr: dims per bit plane); default 512, or the old "
                                "head's with --old-head"),
              ("u", 1, "recurrent steps (bit planes = u + 1)"), ("hidden", 2048, "MLP hidden width (0 = a single Linear)"),
              ("blocks", 1, "Linear-BN-ReLU blocks per transformation"))


def flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def train_flags(features_dir, out_dir, cfg: HeadConfig, opts: TrainOptions, fresh: bool = False,
                compat: Compatibility | None = None) -> list[str]:
    """The command-line flags that reproduce exactly this training call (what `parser()` reads back)."""
    out = ["--features", str(features_dir), "--out", str(out_dir), "--device", opts.device]
    out += [x for name, _, _ in HEAD_FLAGS for x in (flag(name), str(getattr(cfg, name)))]
    out += [] if cfg.binary else ["--float"]
    for k, v in asdict(opts).items():
        if k != "device":
            out += [flag(k), str(v).lower() if isinstance(v, bool) else str(v)]
    return out + (compat.flags() if compat is not None else []) + (["--fresh"] if fresh else [])


def train_or_launch(features: dict, features_dir, cfg: HeadConfig, opts: TrainOptions, out_dir, nproc: int = 1,
                    fresh: bool = False, log=print, compat: Compatibility | None = None) -> dict:
    """Train one head here (nproc 1) or under torchrun on `nproc` processes (the same flags every rank parses);
    returns its history."""
    if nproc <= 1:
        return train_head(features, cfg, opts, out_dir, fresh=fresh, log=log, compat=compat)
    checkpoint.launch("bitlens.bebr.train", train_flags(features_dir, out_dir, cfg, opts, fresh, compat), nproc)
    path = Path(out_dir) / "history.json"
    if not path.exists():
        raise FileNotFoundError(f"{path}: no training history; did the torchrun launch finish?")
    return json.loads(path.read_text())


def parser():
    from bitlens import cli
    from bitlens.schema.bebr import BEBR, HEAD
    from bitlens.schema.fields import Field

    ap = cli.parser(PROG, __doc__)
    ap.add_argument("--features", required=True, help="folder with " + ", ".join(FEATURE_FILES))
    ap.add_argument("--out", required=True, help="output folder (checkpoint, embeddings, history, train_state.pt)")
    for name, default, text in HEAD_FLAGS:
        ap.add_argument(flag(name), type=cli.ranged(HEAD[name], flag(name), f"bebr.heads.*.{name}"), default=default,
                        help=text)
    ap.add_argument("--float", action="store_true", help="float baseline (identity instead of sign)")
    for f in TrainOptions.__dataclass_fields__.values():
        if f.name != "device":
            # the schema's ranges (epochs ≥ 1, tau > 0, finite rates...), as a profile would be checked
            kind = cli.ranged(BEBR["train"][f.name], flag(f.name), f"bebr.train.{f.name}")
            ap.add_argument(flag(f.name), type=kind, default=f.default, help=OPTION_HELP[f.name],
                            metavar="BOOL" if str(f.type) == "bool" else None)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", help="torch device")
    ap.add_argument("--fresh", action="store_true",
                    help="start from scratch even if the folder holds a run with the same settings (the earlier "
                         "files are moved to .previous/<folder>/<time>/, see bitlens.previous)")
    ap.add_argument("--old-features", help="compatible training: the old version's feature folder (same pairs)")
    ap.add_argument("--old-head", help="compatible training: the old head's checkpoint (11_bebr_train/<head>/)")
    weight = Field(float, 1.0, above=0)  # one of bebr.compat.select.weights
    ap.add_argument("--weight", type=cli.ranged(weight, "--weight", "bebr.compat.select.weights"),
                    default=1.0, help="λ of the compatibility term (with --old-features and --old-head)")
    ap.add_argument("--warm-start", action="store_true", help="start the compatible head from the old head's weights")
    return ap


def main(argv=None) -> int:
    args = parser().parse_args(argv)

    def train() -> dict:
        feats = load_features(args.features)
        compat = None
        if args.old_features or args.old_head:
            if not (args.old_features and args.old_head):
                raise ValueError("compatible training needs both --old-features and --old-head")
            compat = Compatibility.from_files(args.old_features, args.old_head, args.weight, args.warm_start)
        out_dim = args.out_dim or (compat.old_head.cfg.out_dim if compat else 512)
        cfg = HeadConfig(feats["train_feat"].shape[1], out_dim, args.u, args.hidden, args.blocks, not args.float)
        opts = TrainOptions(**{k: getattr(args, k) for k in TrainOptions.__dataclass_fields__})
        hist = train_head(feats, cfg, opts, args.out, fresh=args.fresh, compat=compat)
        return {"epochs": len(hist["epoch"]), "last_epoch_r1": hist["val_r1"][-1] if hist["val_r1"] else None,
                **({"last_epoch_cross_r1": hist["val_cross_r1"][-1]} if compat and hist["val_cross_r1"] else {})}

    return checkpoint.run_cli(PROG, train)


if __name__ == "__main__":
    raise SystemExit(main())
