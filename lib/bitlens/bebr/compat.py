"""Backward-compatible BEBR heads: a new version whose query codes search a gallery indexed by the old head.

The new head φ_n (on new-encoder features, or on the old features with another bit budget) is trained by
`bitlens.bebr.train.train_head` with its compatibility term against the frozen old head φ_o (docs/compat.md):

    L = rbe_loss(a, b) + λ · [ D(a → b̄) + D(b → ā) ]

a, b: new image / caption codes of the batch; ā, b̄: old codes of the same pairs (constants);
D(q → g): BEBR's one-direction contrastive term with new queries q as anchors and old gallery
codes g as candidates (same-image candidates masked, top-k hard negatives, τ). The old codes
play the part of BCT's frozen old classifier ("influence loss"): the new query must score its
own item's old code above the other old codes of the batch. Without the term the same loop trains the
independent baseline. Both versions share the bit layout (same dims; plane count may differ), so
cross-version scores come from SDC over packed planes.

This module holds what is particular to compatibility: where the old head lives, the cross-version search and
table, BCT's criterion, and the new encoder version's features.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from bitlens import io
from bitlens.bebr.sampler import interleave_pairs, split_pairs
from bitlens.bebr.train import FEATURE_FILES, Compatibility, TrainOptions, embed, train_or_launch
from bitlens.bebr.heads import HeadConfig


def head_checkpoint(folder) -> Path:
    """The trained head in a folder of 11_bebr_train: best.pth where an earlier trainer kept a best epoch (the
    current one moves such files aside), else checkpoint.pth, the reported last epoch."""
    folder = Path(folder)
    for name in ("best.pth", "checkpoint.pth"):
        if (folder / name).exists():
            return folder / name
    raise FileNotFoundError(f"{folder}: no best.pth or checkpoint.pth; run notebooks/11_bebr_train.ipynb first "
                            f"(and check bebr.compat.old_head names one of bebr.heads)")


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


def compat_rows(codes: dict, planes: dict, ties: str, ks=(1, 5, 10), searches=ROWS) -> list[dict]:
    """The cross-version table: `codes[v] = (val image codes, val caption codes)` for v in old,
    new (compatible), new (independent); image→text Recall@K, query version × gallery version (`searches`: the
    rows wanted, of ROWS)."""
    rows = []
    for qv, gv, kind in searches:
        r = cross_recall(codes[qv][0], planes[qv], codes[gv][1], planes[gv], ties, ks)
        rows.append({"query": qv, "gallery": gv, "search": kind, **{f"R@{k}": r[f"r{k}"] for k in ks}})
    return rows


def bct_verdict(rows: list[dict], ks=(1, 5, 10)) -> dict:
    """BCT's compatibility criterion from the table's numbers, with sentences made from them.

    compatible ⇔ for every K: R@K(new→old, compatible) ≥ R@K(old→old) and R@K(new→new, compatible) ≥ R@K(old→old),
    and the independent head's cross search fails that bar (R@K(new→old, independent) < R@K(old→old)): a check
    the independent head passes too does not show that compatible training did anything.
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

    independent_passes = [k for k, ok in checks["independent_cross_ge_old"].items() if ok]
    met = all(checks["cross_ge_old"].values()) and all(checks["new_ge_old"].values()) and not independent_passes
    lines = [sentence("new→old (compatible head)", cc, "cross_ge_old", "cross-version search"),
             sentence("new→new (compatible head)", nn, "new_ge_old", "the new version alone"),
             sentence("new→old (independent head)", ic, "independent_cross_ge_old", "the baseline")]
    lines.append("The compatible head " + ("meets" if met else "does not meet") + " the BCT compatibility criterion; "
                 + (f"the independent head also passes the cross-version check at {', '.join(independent_passes)}, "
                    f"so there the check does not tell compatible training from none."
                    if independent_passes else "the independently trained head fails its cross-version check."))
    return {"checks": checks, "compatible": bool(met), "sentences": lines}


def mean_rows(per_seed: list[list[dict]], ks=(1, 5, 10)) -> list[dict]:
    """One table from the same table over several seeds: each R@K the mean over seeds, with its sample standard
    deviation as `R@K std` (0 for a single seed)."""
    out = []
    for i, row in enumerate(per_seed[0]):
        vals = {k: np.array([t[i][f"R@{k}"] for t in per_seed], np.float64) for k in ks}
        out.append({**{c: row[c] for c in ("query", "gallery", "search")},
                    **{f"R@{k}": float(v.mean()) for k, v in vals.items()},
                    **{f"R@{k} std": float(v.std(ddof=1)) if len(v) > 1 else 0.0 for k, v in vals.items()}})
    return out


def display_rows(rows: list[dict], ks=(1, 5, 10)) -> list[dict]:
    """`mean ± std` cells for the table (the numbers stay in metrics.json)."""
    return [{**{c: r[c] for c in ("query", "gallery", "search")},
             **{f"R@{k}": f"{r[f'R@{k}']:.4f} ± {r[f'R@{k} std']:.4f}" for k in ks}} for r in rows]


# -- choosing the compatibility settings without the reported pairs ------------------------------

SELECTION_SEARCHES = (ROWS[0], ROWS[1], ROWS[3])  # old→old, new→new, new→old of the compatible head
SEARCH_NAMES = {"old": "old→old", "new→new": "new→new", "cross": "new→old"}


def holdout_split(features: dict, fraction: float, seed: int) -> dict:
    """The training pairs split by image, in the official file roles: `train_*` keeps the pairs of most images,
    `val_img` / `val_txt` hold each held-out image with its first caption (one pair per image, as the reported
    pairs are). The reported pairs (`val_*` of `features`) are never read. The held-out images are a seeded draw of
    the labels, so the old and new features of the same pairs split alike."""
    img, txt, lab = split_pairs(features["train_feat"], features["train_label"])
    images = np.unique(lab)
    n_out = int(round(fraction * len(images)))
    if not 0 < n_out < len(images):
        raise ValueError(f"holding out {fraction} of {len(images)} training images leaves {n_out} to check and "
                         f"{len(images) - n_out} to fit; choose bebr.compat.select.holdout in (0, 1) so both are ≥ 1")
    held = np.isin(lab, np.random.default_rng(seed).permutation(images)[:n_out])
    out_idx = np.flatnonzero(held)
    first = out_idx[np.unique(lab[out_idx], return_index=True)[1]]
    keep = np.flatnonzero(~held)
    rows = np.stack([2 * keep, 2 * keep + 1], 1).ravel()
    return {"train_feat": features["train_feat"][rows], "train_label": features["train_label"][rows],
            "val_img": img[first], "val_txt": txt[first]}


def criterion_margins(rows: list[dict], ks=(1, 5, 10)) -> dict:
    """How far each check of BCT's criterion holds on one table: new→old − old→old and new→new − old→old per K,
    and `worst`, the smallest of them (≥ 0: the criterion holds at every K)."""
    def get(q, g):
        return next(r for r in rows if r["query"] == q and r["gallery"] == g)

    oo, nn, no = get("old", "old"), get("new (compatible)", "new (compatible)"), get("new (compatible)", "old")
    m = {f"new→old − old→old R@{k}": no[f"R@{k}"] - oo[f"R@{k}"] for k in ks}
    m.update({f"new→new − old→old R@{k}": nn[f"R@{k}"] - oo[f"R@{k}"] for k in ks})
    return {**m, "worst": min(m.values())}


def select_setting(old_dir, new_dir, old_cfg: HeadConfig, old_opts: TrainOptions, cfg: HeadConfig,
                   opts: TrainOptions, candidates: list[dict], holdout: float, seed: int, out_dir, ties: str,
                   nproc: int = 1, fresh: bool = False, log=print) -> dict:
    """Choose the compatibility settings on held-out training pairs, never on the reported ones.

    The old and new training features are split alike (`holdout_split`) and written under `out_dir`. The upgrade
    is then rehearsed on the fitting pairs alone: an old head (`old_cfg`, `old_opts`: the old version's recipe)
    is trained on the old features, and each candidate ({'weight': λ, 'warm_start': bool}) trains a new head
    compatible with it (`cfg`, `opts`; a candidate holds `Compatibility` fields). Neither saw the held-out pairs, which give each candidate's old→old,
    new→new and new→old table, as the reported pairs do for the real versions. The chosen candidate has the
    largest worst margin of the criterion (`criterion_margins`; ties: the first listed). Returns {'chosen',
    'index', 'candidates': one row per candidate with its settings, held-out Recall@K and margins,
    'holdout_pairs'}."""
    from bitlens.bebr.heads import load_head
    from bitlens.bebr.train import load_features

    if not candidates:
        raise ValueError("no candidate settings to choose from (bebr.compat.select.weights / warm_start are empty)")
    out_dir = Path(out_dir)
    split = {}
    for name, src in (("old", old_dir), ("new", new_dir)):
        split[name] = out_dir / f"{name}_features"
        part = holdout_split(load_features(src), holdout, seed)
        for f in FEATURE_FILES:
            io.save_npy(split[name] / f, part[f[:-4]])
    old, new = load_features(split["old"]), load_features(split["new"])
    log("== the old head, rehearsed on the fitting pairs")
    train_or_launch(old, split["old"], old_cfg, old_opts, out_dir / "old_head", nproc, fresh=fresh, log=log)
    old_head_path = out_dir / "old_head" / "checkpoint.pth"
    old_codes = tuple(embed(load_head(old_head_path), old[k], "cpu") for k in ("val_img", "val_txt"))
    summary = []
    for i, cand in enumerate(candidates):
        term = Compatibility(load_head(old_head_path), old, **cand, old_features_dir=str(split["old"]),
                             old_head_path=str(old_head_path))
        log(f"== candidate {i + 1}/{len(candidates)}: {cand}")
        folder = out_dir / f"candidate_{i + 1}"
        train_or_launch(new, split["new"], cfg, opts, folder, nproc, fresh=fresh, log=log, compat=term)
        codes = {"old": old_codes, "new (compatible)": (np.load(folder / "feat_image.npy"),
                                                        np.load(folder / "feat_txt.npy"))}
        rows = compat_rows(codes, {"old": old_cfg.planes, "new (compatible)": cfg.planes}, ties,
                           searches=SELECTION_SEARCHES)
        summary.append({**cand, **{f"{SEARCH_NAMES[r['search']]} R@{k}": r[f"R@{k}"] for r in rows for k in (1, 5, 10)},
                        **criterion_margins(rows)})
    best = max(range(len(summary)), key=lambda j: (summary[j]["worst"], -j))
    return {"chosen": dict(candidates[best]), "index": best, "candidates": summary,
            "holdout_pairs": int(len(new["val_img"]))}


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
