"""Replica image datasets: COCO 2017 captions and the IBC release's image lists (ImageNet-100C, ImageNet-150K,
SUN-120K), in their on-disk formats, with Shapes-world pictures as content.

What the loaders meet on the real disks and the replica reproduces (docs/replica.md):
- COCO: `<split>/<12-digit id>.jpg` JPEGs of varied sizes, a few greyscale (mode L) and CMYK ones;
  `annotations/captions_<split>.json` with `images` and `annotations` (5 to 7 captions an image, not in image
  order).
- IBC ImageNet lists: `data_256/<wnid>/<wnid>_<n>.JPEG`, shorter side 256, lines `relpath label`.
- IBC SUN-120K: `data_256/<letter>/<scene>/sun_<16 letters>.jpg`, lines `relpath class a1 … a102` with
  1 / -1 / 2 (missing) and class 99999 (missing class).
"""
from __future__ import annotations

import io as _io
import json
import string
from pathlib import Path

import numpy as np
from PIL import Image

from bitlens import io
from bitlens.data.shapes import render_image

COCO_SPLITS = {"train2017": 24, "val2017": 16}
IMAGENET_SETS = {  # name: (folder, train list, test list, classes of the real set, replica train, replica test)
    "imagenet100c": ("imagenet100c", "train_100.txt", "val_100.txt", 100, 24, 16),
    "imagenet150k": ("imagenet150k", "train.txt", "test.txt", 1000, 24, 16),
}
SUN_FOLDER = "sun120k"
SUN_LISTS = ("dph_train_category_id_attr_closed.txt", "dph_test_id_attr_closed.txt")
SUN_SIZES = (24, 16)
SUN_CLASSES = 397
SUN_ATTRIBUTES = 102
MISSING_CLASS = 99999
REPLICA_CLASSES = 4  # classes drawn per list, so that every class has several images (mAP needs relevant items)
_SCENES = ("a/abbey", "b/beach", "c/coast", "o/ocean", "m/mountain", "s/skyscraper", "f/forest_path", "h/harbor")


def jpeg_bytes(img: Image.Image, quality: int = 90) -> bytes:
    """JPEG with fixed settings and no metadata (same pixels → same bytes)."""
    buf = _io.BytesIO()
    img.save(buf, format="JPEG", quality=quality, optimize=False)
    return buf.getvalue()


def _picture(seed: int, index: int, size: tuple[int, int], mode: str = "RGB") -> Image.Image:
    """A Shapes picture resized to `size` (w, h), in PIL mode `mode` (RGB, L for greyscale, CMYK)."""
    side = max(size)
    im = render_image(seed, "val", index, image_size=min(side, 256), max_objects=3).image
    pic = Image.fromarray(im).resize(size, Image.BILINEAR)
    return pic if mode == "RGB" else pic.convert(mode)


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    io.write_bytes(path, data)


def write_coco(root: Path, seed: int) -> dict:
    """COCO 2017: train2017/, val2017/, annotations/captions_{train2017,val2017}.json."""
    rng = np.random.default_rng([seed, 1])
    sizes = [(160, 120), (120, 160), (160, 106), (128, 128)]
    out = {}
    for s, (split, n) in enumerate(COCO_SPLITS.items()):
        ids = sorted(rng.choice(np.arange(1, 600_000), n, replace=False).tolist())
        images, annotations = [], []
        for i, image_id in enumerate(ids):
            # COCO holds a few greyscale and CMYK JPEGs; the loader converts them to RGB
            mode = "L" if i % 7 == 3 else "CMYK" if i % 11 == 5 else "RGB"
            w, h = sizes[int(rng.integers(len(sizes)))]
            fname = f"{image_id:012d}.jpg"
            _write(root / split / fname, jpeg_bytes(_picture(seed * 10 + s, i, (w, h), mode)))
            images.append({"license": 1, "file_name": fname, "coco_url": "", "height": h, "width": w,
                           "date_captured": "2013-11-14 11:18:45", "flickr_url": "", "id": image_id})
            caps = render_image(seed * 10 + s, "val", i, 32).captions
            caps = caps + caps[:int(rng.integers(0, 3))]  # COCO has 5 to 7 captions per image
            for c in caps:
                annotations.append({"image_id": image_id, "id": int(rng.integers(1, 10**6)), "caption": c.capitalize()
                                    + "."})
        order = rng.permutation(len(annotations))  # COCO's annotations are not grouped by image
        ann = {"info": {"description": "COCO 2017 Dataset (bitlens replica: random pictures)", "url": "",
                        "version": "1.0", "year": 2017, "contributor": "bitlens.replica", "date_created": ""},
               "licenses": [{"url": "", "id": 1, "name": "replica"}],
               "images": images, "annotations": [annotations[j] for j in order]}
        io.write_text(root / "annotations" / f"captions_{split}.json", json.dumps(ann))
        out[split] = {"images": n, "captions": len(annotations)}
    return out


def _resized_256(seed: int, index: int, rng: np.random.Generator) -> Image.Image:
    """The IBC release's images are pre-resized to 256 on the shorter side."""
    long = int(rng.choice([256, 320, 341]))
    return _picture(seed, index, (long, 256) if rng.random() < 0.7 else (256, long))


def write_imagenet(root: Path, name: str, seed: int) -> dict:
    """One ImageNet-style IBC set: <folder>/data_256/<wnid>/<wnid>_<n>.JPEG + the train / test list files."""
    folder, train_name, test_name, num_classes, n_train, n_test = IMAGENET_SETS[name]
    rng = np.random.default_rng([seed, 2, len(name)])
    classes = sorted(rng.choice(num_classes, REPLICA_CLASSES, replace=False).tolist())
    wnids = {c: f"n{rng.integers(10**7, 10**8):08d}" for c in classes}
    base = root / folder
    k = 0
    for list_name, n in ((train_name, n_train), (test_name, n_test)):
        lines = []
        for i in range(n):
            c = classes[i % len(classes)]
            rel = f"{wnids[c]}/{wnids[c]}_{k + 1}.JPEG"
            _write(base / "data_256" / rel, jpeg_bytes(_resized_256(seed * 10 + 3 + len(name), k, rng)))
            lines.append(f"{rel} {c}\n")
            k += 1
        io.write_text(base / list_name, "".join(lines))
    return {"train": n_train, "test": n_test, "classes": classes}


def write_sun(root: Path, seed: int) -> dict:
    """SUN-120K: sun120k/data_256/<letter>/<scene>/sun_*.jpg + dph_*_attr_closed.txt (class + 102 attributes)."""
    rng = np.random.default_rng([seed, 3])
    classes = sorted(rng.choice(SUN_CLASSES, REPLICA_CLASSES, replace=False).tolist())
    base = root / SUN_FOLDER
    k = 0
    for list_name, n in zip(SUN_LISTS, SUN_SIZES):
        lines = []
        for i in range(n):
            scene = _SCENES[k % len(_SCENES)]
            stem = "".join(rng.choice(list(string.ascii_lowercase), 16))
            rel = f"{scene}/sun_{stem}.jpg"
            _write(base / "data_256" / rel, jpeg_bytes(_resized_256(seed * 10 + 9, k, rng)))
            # the release marks an unknown class 99999 and an unannotated attribute 2
            c = MISSING_CLASS if i % 9 == 7 else classes[i % len(classes)]
            attrs = rng.choice(np.array(["1", "-1", "2"]), SUN_ATTRIBUTES, p=[0.3, 0.65, 0.05])
            lines.append(f"{rel} {c} " + " ".join(attrs) + "\n")
            k += 1
        io.write_text(base / list_name, "".join(lines))
    return {"train": SUN_SIZES[0], "test": SUN_SIZES[1], "classes": classes, "attributes": SUN_ATTRIBUTES}
