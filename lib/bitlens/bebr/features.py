"""CLIP features in the official BEBR file roles, computed once per set of inputs.

Both feature versions of the kit come from here: the features every head learns from (stage 10_bebr_features) and
a new encoder's features for backward-compatible training (`bitlens.bebr.compat.new_version_features`). Each step
keeps a `bitlens.cache.Record` beside its outputs and runs again only when its inputs change:

- `tiny_clip`: the small `bitlens-tiny-vit` CLIP trained on the training captions (offline profiles have no
  pretrained weights);
- `pair_features`: `train_feat.npy` (image and caption features interleaved, `[img, txt, img, txt, …]`),
  `train_label.npy` (the image of each pair), `val_img.npy` / `val_txt.npy` (each validation image with its first
  caption);
- `caption_features`: every caption of a set of images (the CLIP retrieval protocol), `txt.npy`, `txt_image.npy`,
  `split.json` and, for images other than the validation ones, `img.npy`.

Images stand for their contents through their size and modification time (`bitlens.io.file_stats`); a weights
file through its bytes.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from bitlens import encoders, io
from bitlens.bebr.sampler import interleave_pairs
from bitlens.cache import Record, file_digest
from bitlens.data.coco import caption_pairs, first_captions

FEATURE_FILES = ("train_feat.npy", "train_label.npy", "val_img.npy", "val_txt.npy")
TINY_WEIGHTS = "tiny_clip.pt"
TINY_RECORD = ".tiny_clip.json"
FEATURES_RECORD = ".features.json"


def weights_identity(weights: str | None) -> str | None:
    """What stands for an encoder's weights in a digest: a local file's bytes, else the tag as given."""
    return file_digest(weights) if weights and Path(weights).exists() else weights


def tiny_clip(out_dir, train: Sequence, *, epochs: int, batch_size: int, lr: float, seed: int, device: str,
              quick_gelu: bool = False, init_weights=None, force: bool = False, log=print) -> str:
    """The path of `tiny_clip.pt` in `out_dir`, trained on the (image, caption) pairs of `train` (COCO items)
    unless a record shows it was trained from the same inputs. `init_weights`: a tiny CLIP to continue from."""
    out_dir = Path(out_dir)
    weights = out_dir / TINY_WEIGHTS
    idx, caps = caption_pairs(train)
    paths = [t.path for t in train]
    hyper = dict(epochs=epochs, batch_size=batch_size, lr=lr, seed=seed, quick_gelu=quick_gelu)
    inputs = {"model": encoders.TINY_MODEL, "captions": caps, "images": io.file_stats(paths),
              "init": file_digest(init_weights) if init_weights else None, **hyper}
    record = Record(out_dir / TINY_RECORD)
    if not force and record.valid(inputs, [TINY_WEIGHTS]):
        log(f"tiny CLIP unchanged: reusing {weights}")
        return str(weights)
    record.clear()
    encoders.train_tiny_clip(paths, caps, idx, weights, device=device, init_weights=init_weights, log=log, **hyper)
    record.write(inputs, [TINY_WEIGHTS])
    return str(weights)


def pair_features(out_dir, train: Sequence, val: Sequence, model: str, weights: str | None, *, device: str,
                  batch_size: int, num_workers: int = 0, quick_gelu: bool = False, root=None, force: bool = False,
                  label: str = "") -> bool:
    """The four official feature files in `out_dir` for COCO items `train` and `val`; False when a record shows
    they were made from the same inputs (nothing computed). `label` prefixes the progress lines."""
    out_dir = Path(out_dir)
    idx, caps = caption_pairs(train)
    val_caps = first_captions(val)
    inputs = {"model": model, "weights": weights_identity(weights), "quick_gelu": quick_gelu, "captions": caps,
              "val": val_caps, "images": io.file_stats(t.path for t in list(train) + list(val))}
    record = Record(out_dir / FEATURES_RECORD)
    if not force and record.valid(inputs, FEATURE_FILES):
        return False
    record.clear()
    net, preprocess, tokenizer = encoders.create_model(model, weights or None, device, quick_gelu, root)
    kw = dict(device=device, batch_size=batch_size, num_workers=num_workers)
    img_train = encoders.image_features(net, preprocess, [t.path for t in train], desc=f"{label}train images", **kw)
    txt_train = encoders.text_features(net, tokenizer, caps, device=device, desc=f"{label}train captions")
    pairs, labels = interleave_pairs(img_train, txt_train, idx)
    io.save_npy(out_dir / "train_feat.npy", pairs)
    io.save_npy(out_dir / "train_label.npy", labels)
    io.save_npy(out_dir / "val_img.npy", encoders.image_features(net, preprocess, [t.path for t in val],
                                                                 desc=f"{label}val images", **kw))
    io.save_npy(out_dir / "val_txt.npy", encoders.text_features(net, tokenizer, val_caps, device=device,
                                                                desc=f"{label}val captions"))
    record.write(inputs, FEATURE_FILES)
    return True


def caption_features(out_dir, items: Sequence, split: dict, model: str, weights: str | None, *, device: str,
                     batch_size: int, num_workers: int = 0, quick_gelu: bool = False, with_images: bool = False,
                     force: bool = False) -> bool:
    """Every caption of COCO items `items` in `out_dir`: `txt.npy` (image-major), `txt_image.npy` (the image row
    of each caption), `split.json` (`split` plus the counts) and, `with_images`, `img.npy`. False when a record
    shows they were made from the same inputs."""
    out_dir = Path(out_dir)
    idx, caps = caption_pairs(items)
    files = ["txt.npy", "txt_image.npy", "split.json"] + (["img.npy"] if with_images else [])
    inputs = {"model": model, "weights": weights_identity(weights), "quick_gelu": quick_gelu, "captions": caps,
              "split": split, "images": io.file_stats(t.path for t in items)}
    record = Record(out_dir / FEATURES_RECORD)
    if not force and record.valid(inputs, files):
        return False
    record.clear()
    net, preprocess, tokenizer = encoders.create_model(model, weights or None, device, quick_gelu)
    io.save_npy(out_dir / "txt.npy", encoders.text_features(net, tokenizer, caps, device=device, desc="all captions"))
    io.save_npy(out_dir / "txt_image.npy", np.asarray(idx, dtype=np.int64))
    if with_images:
        io.save_npy(out_dir / "img.npy", encoders.image_features(net, preprocess, [t.path for t in items],
                                                                 device=device, batch_size=batch_size,
                                                                 num_workers=num_workers, desc="5k test images"))
    io.write_json(out_dir / "split.json", {**split, "n_images": len(items), "n_captions": len(caps)})
    record.write(inputs, files)
    return True
