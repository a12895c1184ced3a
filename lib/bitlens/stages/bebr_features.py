"""Stage 10_bebr_features: CLIP image and text features in the official file roles, and every caption's features
for the CLIP retrieval protocol (`bitlens.bebr.features` computes and caches them)."""
from __future__ import annotations

import numpy as np

from bitlens import encoders
from bitlens.bebr import features
from bitlens.data.coco import caption_pairs, load_coco_captions, load_karpathy_split
from bitlens.metrics import recall_both_directions
from bitlens.stage import Section, Stage


def run(stage: Stage, force: bool = False) -> Section:
    """Features of the profile's COCO (or Shapes) splits in `stage.dir`; `force` recomputes them (and retrains the
    tiny CLIP) even where the cache records the same inputs."""
    P, E, coco = stage.params, stage.params["bebr"]["encoder"], stage.params["data"]["coco"]
    device = stage.device()
    coco_root = stage.path(coco["root"])
    train = load_coco_captions(coco_root, coco["train_split"])
    val = load_coco_captions(coco_root, coco["val_split"])
    _, caps = caption_pairs(train)
    out = Section()
    out.sentences.append(f"{len(train)} training images, {len(caps)} pairs; {len(val)} validation images "
                         f"(first caption)")

    weights = encoders.resolve_weights(E["model"], E["pretrained"], stage.root)
    if E["train_tiny"]:
        stage.seed_everything()
        weights = features.tiny_clip(stage.dir, train, epochs=E["tiny_epochs"], batch_size=E["tiny_batch_size"],
                                     lr=E["tiny_lr"], seed=P["seed"], device=device, quick_gelu=E["quick_gelu"],
                                     force=force)
    common = dict(device=device, batch_size=E["batch_size"], num_workers=E["num_workers"],
                  quick_gelu=E["quick_gelu"], force=force)
    if not features.pair_features(stage.dir, train, val, E["model"], weights, root=stage.root, **common):
        print("features unchanged: cached")

    ks_file = coco["karpathy_split"]
    if ks_file:
        items = load_karpathy_split(coco_root, stage.path(ks_file))
        split = {"split": "karpathy_test_5k", "source": str(ks_file), "images": "clip_protocol/img.npy"}
    else:
        items = val
        split = {"split": coco["val_split"], "source": "COCO annotations", "images": "val_img.npy"}
    if not features.caption_features(stage.dir / "clip_protocol", items, split, E["model"], weights,
                                     with_images=bool(ks_file), **common):
        print("CLIP-protocol features unchanged: cached")
    out.sentences.append(f"CLIP protocol: {len(items)} images, {len(caption_pairs(items)[1])} captions "
                         f"({split['split']})")

    vi, vt = np.load(stage.dir / "val_img.npy"), np.load(stage.dir / "val_txt.npy")
    clip_recall = recall_both_directions(vi, vt)
    out.sentences.append("Recall@K of the CLIP features themselves: " + str(
        {d: {k: round(v, 4) for k, v in r.items()} for d, r in clip_recall.items()}))
    out.metrics = {"model": E["model"], "weights": str(weights), "quick_gelu": E["quick_gelu"],
                   "dim": int(vi.shape[1]), "train_pairs": len(caps), "val_pairs": int(vi.shape[0]),
                   "clip_recall": clip_recall}
    stage.write_metrics(out.metrics)
    return out
