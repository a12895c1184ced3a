"""Backward-compatible BEBR heads: a new version whose query codes search a gallery indexed by the old head.

    python -m bitlens.bebr.compat --new-features DIR --old-features DIR --old-head checkpoint.pth --out DIR [...]

The new head φ_n (on new-encoder features, or on the old features with another bit budget)
is trained with the usual embedding-to-embedding loss plus a compatibility term against
the frozen old head φ_o (docs/compat.md):

    L = rbe_loss(a, b) + λ · [ D(a → b̄) + D(b → ā) ]

a, b: new image / caption codes of the batch; ā, b̄: old codes of the same pairs (constants);
D(q → g): BEBR's one-direction contrastive term with new queries q as anchors and old gallery
codes g as candidates (same-image candidates masked, top-k hard negatives, τ). The old codes
play the part of BCT's frozen old classifier ("influence loss"): the new query must score its
own item's old code above the other old codes of the batch. λ = 0 trains the independent baseline through
the same code path. Both versions share the bit layout (same dims; plane count may differ), so
cross-version scores come from SDC over packed planes.

Runs in one process or under torchrun: every rank holds all old codes (computed once, the old
head frozen in eval mode), takes its slice of each global batch, and contrasts against the old
codes of the whole global batch; new codes are all-gathered with gradients as in `train`.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import torch

from bitlens import checkpoint, distributed, io
from bitlens.bebr.heads import HeadConfig, RBEHead
from bitlens.bebr.loss import contrast_direction, rbe_loss
from bitlens.bebr.sampler import PairBatches, interleave_pairs, split_pairs
from bitlens.bebr.train import (FEATURE_FILES, TrainOptions, autocast, embed, head_flags, load_features, optimizer_step,
                                option_flags, param_groups, run_settings, training_inputs)
from bitlens.progress import progress

HEAD_FILE = "head.pth"
ARTIFACTS = (HEAD_FILE, "feat_image.npy", "feat_txt.npy", "history.json")  # moved aside with an outdated run


# -- the two versions -------------------------------------------------------------------

def check_layout(old: HeadConfig, new: HeadConfig) -> None:
    """Cross-version SDC needs binary codes of the same dimensionality (plane counts may differ)."""
    if not old.binary or not new.binary:
        raise ValueError(f"compatible training needs binary heads (old binary={old.binary}, new binary={new.binary}); "
                         f"set bebr.compat.old_head to a binary head")
    if old.out_dim != new.out_dim:
        raise ValueError(f"the new head has out_dim={new.out_dim} but the old head {old.out_dim}: cross-version SDC "
                         f"compares codes dimension by dimension, so both must have the same out_dim")


def load_head(path, in_dim: int | None = None) -> RBEHead:
    """A trained head from a `train` / `compat` checkpoint (its settings travel in `meta.config`), frozen."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: head checkpoint not found; run notebooks/11_bebr_train.ipynb first")
    ck = torch.load(path, map_location="cpu", weights_only=False)
    try:
        cfg = HeadConfig(**ck["meta"]["config"])
    except (KeyError, TypeError) as e:
        raise ValueError(f"{path}: no head settings under meta.config ({e}); expected a bitlens.bebr checkpoint") \
            from None
    if in_dim is not None and cfg.in_dim != in_dim:
        raise ValueError(f"{path}: the head takes {cfg.in_dim}-d features but the old features are {in_dim}-d; "
                         f"are they from the encoder this head was trained on?")
    head = RBEHead(cfg)
    head.load_official(ck["state_dict"], source=str(path))
    return freeze(head)


def head_checkpoint(folder) -> Path:
    """The trained head in a folder of 11_bebr_train: best.pth where an earlier trainer kept a best epoch (the
    current one moves such files aside), else checkpoint.pth, the reported last epoch."""
    folder = Path(folder)
    for name in ("best.pth", "checkpoint.pth"):
        if (folder / name).exists():
            return folder / name
    raise FileNotFoundError(f"{folder}: no best.pth or checkpoint.pth; run notebooks/11_bebr_train.ipynb first "
                            f"(and check bebr.compat.old_head names one of bebr.heads)")


def freeze(head: RBEHead) -> RBEHead:
    """Eval mode (BatchNorm uses, never updates, its running statistics) and no gradients."""
    head.eval()
    for p in head.parameters():
        p.requires_grad_(False)
    return head


def check_same_items(old: dict, new: dict) -> None:
    """Old and new features must describe the same training pairs and validation items, row by row."""
    if not np.array_equal(old["train_label"], new["train_label"]):
        raise ValueError("old and new training features list different pairs (train_label differs); extract both "
                         "versions from the same captions in the same order")
    for k in ("train_feat", "val_img", "val_txt"):
        if old[k].shape[0] != new[k].shape[0]:
            raise ValueError(f"old {k} has {old[k].shape[0]} rows but new {k} {new[k].shape[0]}")


# -- the loss ---------------------------------------------------------------------------

def compat_loss(a: torch.Tensor, b: torch.Tensor, old_img: torch.Tensor, old_txt: torch.Tensor,
                labels: torch.Tensor, tau: float = 0.05, k: int = 5, all_labels: torch.Tensor | None = None,
                offset: int = 0) -> torch.Tensor:
    """D(a → old_txt) + D(b → old_img): new local queries against the old gallery codes of the (global) batch.

    `old_img` / `old_txt` hold every candidate (under DDP: the whole global batch, `offset` = this rank's first
    anchor). They are detached: no gradient can reach the old head, however the codes were computed.
    """
    all_labels = labels if all_labels is None else all_labels
    pos_idx = torch.arange(a.shape[0], device=a.device) + offset
    return (contrast_direction(a, old_txt.detach(), labels, all_labels, pos_idx, tau, k)
            + contrast_direction(b, old_img.detach(), labels, all_labels, pos_idx, tau, k))


# -- training ---------------------------------------------------------------------------

def train_compatible(new_feats: dict, cfg: HeadConfig, opts: TrainOptions, out_dir, *, old_head: RBEHead | None = None,
                     old_feats: dict | None = None, weight: float = 1.0, fresh: bool = False, log=print) -> dict:
    """Train a new head; with `weight` > 0 against the frozen `old_head` on `old_feats` (same pairs).

    Writes head.pth (after every epoch: the final one is the result, since no epoch is picked on the validation
    items the table is computed on), feat_image.npy / feat_txt.npy (validation codes), history.json and
    train_state.pt, atomically. An earlier run in `out_dir` is continued, reused or moved aside as
    `bitlens.checkpoint.open_run` decides; returns the history.
    """
    from bitlens.metrics import l2_normalize, recall_at_k

    if weight < 0:
        raise ValueError(f"compatibility weight must be ≥ 0, got {weight}")
    if weight > 0:
        if old_head is None or old_feats is None:
            raise ValueError("weight > 0 needs the old head and the old features")
        check_layout(old_head.cfg, cfg)
        check_same_items(old_feats, new_feats)
    out_dir = Path(out_dir)
    world, device = distributed.setup(opts.device)
    say = log if world.main else (lambda *a: None)
    img, txt, lab = split_pairs(new_feats["train_feat"], new_feats["train_label"], "new training features")
    if img.shape[1] != cfg.in_dim:
        raise ValueError(f"new features are {img.shape[1]}-d but the new head expects in_dim={cfg.in_dim}")
    old_img_c = old_txt_c = old_val_txt = None
    if weight > 0:
        old_head = freeze(old_head.to(device))
        o_img, o_txt, _ = split_pairs(old_feats["train_feat"], old_feats["train_label"], "old training features")
        old_img_c = torch.from_numpy(embed(old_head, o_img, device))
        old_txt_c = torch.from_numpy(embed(old_head, o_txt, device))
        old_val_txt = embed(old_head, old_feats["val_txt"], device)
    torch.manual_seed(opts.seed)  # the same seed gives compatible and independent heads the same start
    head = RBEHead(cfg).to(device)
    opt = torch.optim.SGD(param_groups(head, opts.weight_decay), lr=opts.lr, momentum=opts.momentum,
                          nesterov=opts.nesterov)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=opts.lr_step_epoch, gamma=opts.gamma)
    pairs = PairBatches(len(lab), opts.batch_size // 2, opts.seed)
    if pairs.b % world.size:
        raise ValueError(f"batch of {pairs.b} pairs does not split over {world.size} ranks")
    local = pairs.b // world.size
    scaler = torch.amp.GradScaler("cuda" if device.startswith("cuda") else "cpu", enabled=opts.amp)
    settings = {**run_settings(cfg, opts), "weight": weight,
                "old_head": _state_digest(old_head) if weight > 0 else None,
                "inputs": checkpoint.data_digest(training_inputs(new_feats),
                                                 training_inputs(old_feats) if weight > 0 else None)}
    history = {"epoch": [], "loss": [], "val_r1": [], "val_cross_r1": []}  # no times: see bebr.train
    st = checkpoint.open_run(out_dir, settings, opts.epochs, world, fresh, ARTIFACTS, "epochs", say)
    start = 0
    if st is not None:
        head.load_state_dict(torch.load(out_dir / HEAD_FILE, map_location=device, weights_only=False)["state_dict"])
        start, history = int(st["progress"]), st["history"]
        if st["finished"]:
            return history
        opt.load_state_dict(st["optimizer"])
        sched.load_state_dict(st["scheduler"])
        scaler.load_state_dict(st["scaler"])
        checkpoint.restore_rng(st, world)
    model = distributed.wrap(head, world, device)
    img_t, txt_t, lab_t = torch.from_numpy(img), torch.from_numpy(txt), torch.from_numpy(lab.astype(np.int64))
    offset = world.rank * local
    for epoch in range(start, opts.epochs):
        model.train()
        t0, total, n = time.perf_counter(), 0.0, 0
        for idx in progress(pairs.epoch(epoch), total=len(pairs), desc=f"compat epoch {epoch + 1}/{opts.epochs}",
                            disable=not world.main or None):
            mine = idx[offset:offset + local]
            a, b, y = img_t[mine].to(device), txt_t[mine].to(device), lab_t[mine].to(device)
            y_all = lab_t[idx].to(device)
            with autocast(device, opts.amp):
                h = model(torch.cat([a, b], 0))
            h1, h2 = h[:local].float(), h[local:].float()  # the losses run in float32
            if world.distributed:
                loss = rbe_loss(h1, h2, y, opts.tau, opts.hard_k, distributed.gather_cat(h1),
                                distributed.gather_cat(h2), y_all, offset=offset)
            else:
                loss = rbe_loss(h1, h2, y, opts.tau, opts.hard_k)
            if weight > 0:
                loss = loss + weight * compat_loss(h1, h2, old_img_c[idx].to(device), old_txt_c[idx].to(device),
                                                   y, opts.tau, opts.hard_k, y_all, offset=offset)
            optimizer_step(loss, head, opt, scaler, opts.clip_grad)
            total += float(loss.detach())
            n += 1
        sched.step()
        total = _mean_over_ranks(total, world, device)  # the global batch's loss, as one process would log it
        vi, vt = embed(head, new_feats["val_img"], device), embed(head, new_feats["val_txt"], device)
        qi = l2_normalize(vi)
        r1 = recall_at_k(qi @ l2_normalize(vt).T, ks=(1,))["r1"]
        cross = recall_at_k(qi @ l2_normalize(old_val_txt).T, ks=(1,))["r1"] if weight > 0 else None
        for key, v in (("epoch", epoch + 1), ("loss", total / max(n, 1)), ("val_r1", r1), ("val_cross_r1", cross)):
            history[key].append(v)
        say(f"epoch {epoch + 1}: loss {total / max(n, 1):.4f}  val i2t R@1 new→new {r1:.4f}"
            + (f"  new→old {cross:.4f}" if cross is not None else "") + f"  ({time.perf_counter() - t0:.1f}s)")
        if world.main:
            io.torch_save(out_dir / HEAD_FILE, {"state_dict": head.state_dict(), "epoch": epoch, "meta": settings})
            io.save_npy(out_dir / "feat_image.npy", vi)
            io.save_npy(out_dir / "feat_txt.npy", vt)
            io.write_json(out_dir / "history.json", history)
        checkpoint.save_state(out_dir, settings, epoch + 1, opts.epochs, world, optimizer=opt.state_dict(),
                              scheduler=sched.state_dict(), scaler=scaler.state_dict(), history=history)
    distributed.barrier(world)
    return history


def _mean_over_ranks(x: float, world, device: str) -> float:
    if not world.distributed:
        return x
    import torch.distributed as dist

    t = torch.tensor([x], dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return float(t) / world.size


def read_history(out_dir) -> dict:
    """history.json of a finished run (e.g. one launched with torchrun)."""
    path = Path(out_dir) / "history.json"
    if not path.exists():
        raise FileNotFoundError(f"{path}: no training history; did the torchrun launch finish?")
    return json.loads(path.read_text())


def _state_digest(head: RBEHead) -> str:
    return checkpoint.data_digest(head.state_dict())


# -- cross-version search -----------------------------------------------------------------

def as_code(values: np.ndarray, planes: int):
    """Head outputs → a RecurrentCode with plane weights 1, ½, ¼, … (validates the value set)."""
    from bitlens.bebr.evaluate import code_of

    return code_of(values, True, planes)


def cross_scores(query: np.ndarray, q_planes: int, gallery: np.ndarray, g_planes: int) -> np.ndarray:
    """(queries × gallery) cosine-equivalent ranking keys by SDC from packed bit planes; versions may differ."""
    from bitlens.search import cosine_rank_keys, sdc_inner_products

    q, g = as_code(query, q_planes), as_code(gallery, g_planes)
    if q.m != g.m:
        raise ValueError(f"query codes have {q.m} dims but gallery codes {g.m}: not the same bit layout")
    return cosine_rank_keys(sdc_inner_products(q, g), g.squared_norms())


def cross_recall(query: np.ndarray, q_planes: int, gallery: np.ndarray, g_planes: int, ties: str,
                 ks=(1, 5, 10)) -> dict:
    """Recall@K of query i ↔ gallery item i (one-to-one pairs) under the named tie policy."""
    from bitlens.metrics import recall_at_k

    return recall_at_k(cross_scores(query, q_planes, gallery, g_planes), ks=ks, ties=ties)


def topk_matches_float(query: np.ndarray, q_planes: int, gallery: np.ndarray, g_planes: int, k: int) -> bool:
    """Does `search.sdc_topk` (packed planes) return the float cosines of the unpacked codes' best k?"""
    from bitlens.metrics import l2_normalize
    from bitlens.search import sdc_topk

    q, g = as_code(query, q_planes), as_code(gallery, g_planes)
    scores, idx = sdc_topk(q, g, k, metric="cosine")
    ref = l2_normalize(q.values()) @ l2_normalize(g.values()).T
    best = -np.sort(-ref, axis=1)[:, :k]
    picked = np.take_along_axis(ref, idx, axis=1)
    return bool(np.allclose(scores, best, atol=1e-9) and np.allclose(picked, best, atol=1e-9))


ROWS = (("old", "old", "old"), ("new (compatible)", "new (compatible)", "new→new"),
        ("new (independent)", "new (independent)", "new→new"), ("new (compatible)", "old", "cross"),
        ("new (independent)", "old", "cross"))


def compat_rows(codes: dict, planes: dict, ties: str, ks=(1, 5, 10)) -> list[dict]:
    """The cross-version table: `codes[v] = (val image codes, val caption codes)` for v in old,
    new (compatible), new (independent); image→text Recall@K, query version × gallery version."""
    rows = []
    for qv, gv, kind in ROWS:
        r = cross_recall(codes[qv][0], planes[qv], codes[gv][1], planes[gv], ties, ks)
        rows.append({"query": qv, "gallery": gv, "search": kind, **{f"R@{k}": r[f"r{k}"] for k in ks}})
    return rows


def bct_verdict(rows: list[dict], ks=(1, 5, 10)) -> dict:
    """BCT's compatibility criterion from the table's numbers, with sentences made from them.

    compatible ⇔ for every K: R@K(new→old, compatible) ≥ R@K(old→old) and R@K(new→new, compatible) ≥ R@K(old→old).
    The independent head's cross search is reported against the same bar (it is expected to fail).
    """
    def get(q, g):
        return next(r for r in rows if r["query"] == q and r["gallery"] == g)

    oo, nn = get("old", "old"), get("new (compatible)", "new (compatible)")
    cc, ic = get("new (compatible)", "old"), get("new (independent)", "old")
    checks = {
        "cross_ge_old": {f"R@{k}": bool(cc[f"R@{k}"] >= oo[f"R@{k}"]) for k in ks},
        "new_ge_old": {f"R@{k}": bool(nn[f"R@{k}"] >= oo[f"R@{k}"]) for k in ks},
        "independent_cross_ge_old": {f"R@{k}": bool(ic[f"R@{k}"] >= oo[f"R@{k}"]) for k in ks},
    }

    def sentence(name, row, key, what):
        held = [k for k, ok in checks[key].items() if ok]
        failed = [k for k, ok in checks[key].items() if not ok]
        nums = ", ".join(f"{k} {row[k]:.4f} vs {oo[k]:.4f}" for k in checks[key])
        if not failed:
            verdict = f"holds at {', '.join(held)}"
        elif not held:
            verdict = f"fails at {', '.join(failed)}"
        else:
            verdict = f"holds at {', '.join(held)} and fails at {', '.join(failed)}"
        return f"{name} ≥ old→old ({what}): {verdict} ({nums})."

    met = all(checks["cross_ge_old"].values()) and all(checks["new_ge_old"].values())
    lines = [sentence("new→old (compatible head)", cc, "cross_ge_old", "cross-version search"),
             sentence("new→new (compatible head)", nn, "new_ge_old", "the new version alone"),
             sentence("new→old (independent head)", ic, "independent_cross_ge_old", "the baseline")]
    lines.append("The compatible head " + ("meets" if met else "does not meet") + " the BCT compatibility criterion; "
                 + ("the independent head would also pass the cross-version check."
                    if all(checks["independent_cross_ge_old"].values())
                    else "the independently trained head fails its cross-version check."))
    return {"checks": checks, "compatible": bool(met), "sentences": lines}


# -- the new encoder version ----------------------------------------------------------------

def new_version_features(out_dir, coco_root, splits: tuple[str, str], enc: dict, seed: int, device: str,
                         force: bool = False, old_weights=None, root=None) -> str:
    """The new encoder's features in the official file roles under `out_dir`, the same pairs in the same order
    as 10_bebr_features; recomputed only when their inputs change. Returns the weights used.

    `enc` is params `bebr.compat.encoder`: an open_clip model with a pretrained tag or a local weights file, or
    (`train_tiny`) a bitlens-tiny-vit CLIP trained here with data order `seed`: with `init_from_old`, the old
    version's tiny CLIP (`old_weights`, 10_bebr_features' file) continued for `tiny_epochs` more epochs, else a
    second one from scratch. `force` ignores the caches. A relative weights path is taken from the checkout `root`.
    """
    from bitlens import encoders
    from bitlens.bebr import features
    from bitlens.data.coco import load_coco_captions

    out_dir = Path(out_dir)
    train, val = load_coco_captions(coco_root, splits[0]), load_coco_captions(coco_root, splits[1])
    weights = enc["weights"] or enc["pretrained"]
    if not enc["train_tiny"]:
        weights = encoders.resolve_weights(enc["model"], weights, root)
    if enc["train_tiny"]:
        if enc["model"] != encoders.TINY_MODEL:
            raise ValueError(f"bebr.compat.encoder.train_tiny trains {encoders.TINY_MODEL}, but model is "
                             f"{enc['model']!r}; set model: {encoders.TINY_MODEL} or train_tiny: false")
        init = None
        if enc["init_from_old"]:
            if not old_weights or not Path(old_weights).exists():
                raise FileNotFoundError(f"{old_weights}: the old tiny CLIP to continue from is missing "
                                        f"(bebr.compat.encoder.init_from_old); run notebooks/10_bebr_features.ipynb "
                                        f"with bebr.encoder.train_tiny: true first")
            init = str(old_weights)
        weights = features.tiny_clip(out_dir, train, epochs=enc["tiny_epochs"], batch_size=enc["tiny_batch_size"],
                                     lr=enc["tiny_lr"], seed=seed, device=device, init_weights=init, force=force)
    features.pair_features(out_dir, train, val, enc["model"], weights, device=device, batch_size=enc["batch_size"],
                           num_workers=enc["num_workers"], force=force, label="new ")
    return weights


def torchrun_command(nproc: int, new_dir, out, cfg: HeadConfig, opts: TrainOptions, weight: float, old_dir=None,
                     old_head=None, fresh: bool = False) -> list[str]:
    """The `torchrun` command that trains one new head on `nproc` processes with exactly these settings."""
    import sys

    if nproc < 2:
        raise ValueError(f"nproc = {nproc}: torchrun is for 2 or more processes; train in this process instead")
    old = ["--old-features", str(old_dir), "--old-head", str(old_head)] if weight > 0 else []
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}", "-m",
            "bitlens.bebr.compat", "--new-features", str(new_dir), "--out", str(out), "--weight", str(weight), *old,
            "--device", opts.device, *head_flags(cfg), *option_flags(opts), *(["--fresh"] if fresh else [])]


# -- CLI (torchrun target) -------------------------------------------------------------------

PROG = "python -m bitlens.bebr.compat"


def parser():
    from bitlens import cli

    ap = cli.parser(PROG, __doc__)
    ap.add_argument("--new-features", required=True, help="folder with the new version's feature files")
    ap.add_argument("--old-features", help="folder with the old version's feature files (weight > 0)")
    ap.add_argument("--old-head", help="the old head's checkpoint in 11_bebr_train/<head>/ (weight > 0)")
    ap.add_argument("--out", required=True, help="output folder (head.pth, codes, history, train_state.pt)")
    from bitlens.schema.bebr import BEBR, HEAD

    def ranged(field, flag, key):  # the params schema's ranges: what a profile may not hold, a flag may not either
        return cli.ranged(field, flag, key)

    ap.add_argument("--weight", type=ranged(BEBR["compat"]["weight"], "--weight", "bebr.compat.weight"), default=1.0,
                    help="λ of the compatibility term (0: independent head)")
    ap.add_argument("--out-dim", type=ranged(HEAD["out_dim"], "--out-dim", "bebr.heads.*.out_dim"),
                    help="new head dims (default: the old head's)")
    ap.add_argument("--u", type=ranged(HEAD["u"], "--u", "bebr.heads.*.u"), default=1,
                    help="recurrent steps (bit planes = u + 1)")
    ap.add_argument("--hidden", type=ranged(HEAD["hidden"], "--hidden", "bebr.heads.*.hidden"), default=2048,
                    help="MLP hidden width")
    ap.add_argument("--blocks", type=ranged(HEAD["blocks"], "--blocks", "bebr.heads.*.blocks"), default=1,
                    help="Linear-BN-ReLU blocks per transformation")
    for f in TrainOptions.__dataclass_fields__.values():
        if f.name == "device":
            continue
        flag = "--" + f.name.replace("_", "-")
        ap.add_argument(flag, type=ranged(BEBR["train"][f.name], flag, f"bebr.train.{f.name}"), default=f.default,
                        help=f"TrainOptions.{f.name}")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", help="torch device")
    ap.add_argument("--fresh", action="store_true", help="start from scratch (an earlier run is moved aside)")
    return ap


def main(argv=None) -> int:
    from bitlens import cli

    prog = PROG
    args = parser().parse_args(argv)
    world = distributed.world_from_env()
    try:
        new = load_features(args.new_features)
        old = old_head = None
        if args.weight > 0:
            if not (args.old_features and args.old_head):
                return cli.fail(prog, "--weight > 0 needs --old-features and --old-head")
            old = load_features(args.old_features)
            old_head = load_head(args.old_head, old["train_feat"].shape[1])
        out_dim = args.out_dim or (old_head.cfg.out_dim if old_head else None)
        if out_dim is None:
            return cli.fail(prog, "--out-dim is needed without --old-head")
        cfg = HeadConfig(new["train_feat"].shape[1], out_dim, args.u, args.hidden, args.blocks, True)
        opts = TrainOptions(**{k: getattr(args, k) for k in TrainOptions.__dataclass_fields__})
        hist = train_compatible(new, cfg, opts, args.out, old_head=old_head, old_feats=old, weight=args.weight,
                                fresh=args.fresh)
    except (FileNotFoundError, ValueError) as e:
        return cli.fail(prog, str(e))
    finally:
        distributed.teardown(world)
    if world.main:
        print(json.dumps({"final_val_r1": hist["val_r1"][-1] if hist["val_r1"] else None,
                          "final_val_cross_r1": hist["val_cross_r1"][-1] if hist["val_cross_r1"] else None}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
