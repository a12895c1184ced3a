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
from bitlens.bebr.sampler import interleave_pairs
from bitlens.bebr.train import FEATURE_FILES


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
    from bitlens.data.coco import caption_pairs, first_captions, load_coco_captions

    out_dir = Path(out_dir)
    train, val = load_coco_captions(coco_root, splits[0]), load_coco_captions(coco_root, splits[1])
    idx, caps = caption_pairs(train)
    weights = enc["weights"] or enc["pretrained"]
    if not enc["train_tiny"]:
        weights = encoders.resolve_weights(enc["model"], weights, root)
    if enc["train_tiny"]:
        if enc["model"] != encoders.TINY_MODEL:
            raise ValueError(f"bebr.compat.encoder.train_tiny trains {encoders.TINY_MODEL}, but model is "
                             f"{enc['model']!r}; set model: {encoders.TINY_MODEL} or train_tiny: false")
        weights = str(out_dir / "tiny_clip.pt")
        tiny = dict(epochs=enc["tiny_epochs"], batch_size=enc["tiny_batch_size"], lr=enc["tiny_lr"], seed=seed)
        init = None
        if enc["init_from_old"]:
            if not old_weights or not Path(old_weights).exists():
                raise FileNotFoundError(f"{old_weights}: the old tiny CLIP to continue from is missing "
                                        f"(bebr.compat.encoder.init_from_old); run notebooks/10_bebr_features.ipynb "
                                        f"with bebr.encoder.train_tiny: true first")
            init = str(old_weights)
        digest = encoders.inputs_digest(captions=caps, images=[str(t.path) for t in train],
                                        init=encoders.file_digest(init) if init else None, **tiny)
        if force or not encoders.cached(out_dir / "clip", ["done"], digest):
            encoders.train_tiny_clip([t.path for t in train], caps, idx, weights, device=device, init_weights=init,
                                     **tiny)
            io.write_text(out_dir / "clip" / "done", weights)
            encoders.mark_cached(out_dir / "clip", digest)
    wdigest = encoders.file_digest(weights) if weights and Path(weights).exists() else weights
    digest = encoders.inputs_digest(model=enc["model"], weights=wdigest, captions=caps, val=first_captions(val),
                                    images=[str(t.path) for t in train + val])
    if not force and encoders.cached(out_dir, list(FEATURE_FILES), digest):
        return weights
    model, preprocess, tokenizer = encoders.create_model(enc["model"], weights or None, device)
    kw = dict(device=device, batch_size=enc["batch_size"], num_workers=enc["num_workers"])
    img = encoders.image_features(model, preprocess, [t.path for t in train], desc="new train images", **kw)
    pairs, labels = interleave_pairs(img, encoders.text_features(model, tokenizer, caps, device=device,
                                                                 desc="new train captions"), idx)
    io.save_npy(out_dir / "train_feat.npy", pairs)
    io.save_npy(out_dir / "train_label.npy", labels)
    io.save_npy(out_dir / "val_img.npy", encoders.image_features(model, preprocess, [t.path for t in val],
                                                                 desc="new val images", **kw))
    io.save_npy(out_dir / "val_txt.npy", encoders.text_features(model, tokenizer, first_captions(val), device=device,
                                                                desc="new val captions"))
    encoders.mark_cached(out_dir, digest)
    return weights
