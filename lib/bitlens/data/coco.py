"""COCO captions (2017 layout): `annotations/captions_<split>.json` + `<split>/` image folder.

Reads the real COCO files and the Shapes export alike. BEBR's two views:
train = every (image, caption) pair; eval = each image with its first caption.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from PIL import Image


@dataclass(frozen=True)
class CocoItem:
    image_id: int
    path: Path
    captions: tuple[str, ...]


def load_coco_captions(root, split: str, check_files: bool = True) -> list[CocoItem]:
    """Images of a split in annotation-file order, each with its captions in annotation order."""
    root = Path(root)
    ann_path = root / "annotations" / f"captions_{split}.json"
    if not ann_path.exists():
        raise FileNotFoundError(f"{ann_path}: COCO captions file not found; expected the COCO 2017 layout "
                                f"<root>/annotations/captions_{split}.json (see data/README.md)")
    try:
        ann = json.loads(ann_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ValueError(f"{ann_path}: not valid JSON ({e})") from None
    for key in ("images", "annotations"):
        if key not in ann:
            raise ValueError(f"{ann_path}: missing field '{key}' (not a COCO captions file?)")
    caps: dict[int, list[str]] = {}
    for i, a in enumerate(ann["annotations"]):
        try:
            caps.setdefault(int(a["image_id"]), []).append(str(a["caption"]).strip())
        except (KeyError, TypeError, ValueError):
            raise ValueError(f"{ann_path}: annotation #{i} lacks image_id/caption: {a!r}") from None
    items = []
    for i, im in enumerate(ann["images"]):
        try:
            image_id, fname = int(im["id"]), im["file_name"]
        except (KeyError, TypeError, ValueError):
            raise ValueError(f"{ann_path}: image entry #{i} lacks id/file_name: {im!r}") from None
        path = root / split / fname
        if check_files and not path.exists():
            raise FileNotFoundError(f"{path}: image listed in {ann_path} (entry #{i}) is missing")
        if image_id not in caps:
            continue  # COCO has a handful of images without captions in some splits
        items.append(CocoItem(image_id, path, tuple(caps[image_id])))
    if not items:
        raise ValueError(f"{ann_path}: no image has a caption")
    return items


def caption_pairs(items: list[CocoItem]) -> tuple[list[int], list[str]]:
    """Every (image, caption) pair: image index into `items` per caption (BEBR training set)."""
    idx, caps = [], []
    for i, it in enumerate(items):
        for c in it.captions:
            idx.append(i)
            caps.append(c)
    return idx, caps


def first_captions(items: list[CocoItem]) -> list[str]:
    """The first caption of each image (BEBR's evaluation protocol: 5,000 one-to-one pairs)."""
    return [it.captions[0] for it in items]


def load_rgb(path) -> Image.Image:
    """Open any image as RGB (COCO has grayscale and CMYK files; Shapes PNGs are RGB)."""
    try:
        with Image.open(path) as im:
            return im.convert("RGB")
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: image file not found") from None
    except OSError as e:
        raise ValueError(f"{path}: cannot read image ({e})") from None


class CocoImages:
    """Torch-style dataset over the images of `items` (index → transformed RGB image)."""

    def __init__(self, items: list[CocoItem], transform=None):
        self.items = items
        self.transform = transform

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i):
        img = load_rgb(self.items[i].path)
        return self.transform(img) if self.transform else img
