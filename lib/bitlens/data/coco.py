"""COCO captions (2017 layout): `annotations/captions_<split>.json` + `<split>/` image folder.

Reads the real COCO files and the Shapes export alike. BEBR's two views:
train = every (image, caption) pair; eval = each image with its first caption.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
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
            image_id, caption = int(a["image_id"]), a["caption"]
        except (KeyError, TypeError, ValueError):
            raise ValueError(f"{ann_path}: annotation #{i} lacks image_id/caption: {a!r}") from None
        if not isinstance(caption, str) or not caption.strip():
            # str(None) or str(123) would become a "caption" the text encoder embeds as if a person wrote it
            raise ValueError(f"{ann_path}: annotation #{i} (image_id {image_id}) has caption {caption!r}; every "
                             f"caption must be a non-empty string: fix or remove that annotation")
        caps.setdefault(image_id, []).append(caption.strip())
    items, seen = [], set()
    for i, im in enumerate(ann["images"]):
        try:
            image_id, fname = int(im["id"]), str(im["file_name"])
        except (KeyError, TypeError, ValueError):
            raise ValueError(f"{ann_path}: image entry #{i} lacks id/file_name: {im!r}") from None
        if image_id in seen:
            raise ValueError(f"{ann_path}: image entry #{i} repeats image id {image_id}")
        seen.add(image_id)
        path = root / split / fname
        if check_files and not path.exists():
            raise FileNotFoundError(f"{path}: image listed in {ann_path} (entry #{i}) is missing")
        if image_id not in caps:
            continue  # COCO has a handful of images without captions in some splits
        items.append(CocoItem(image_id, path, tuple(caps[image_id])))
    orphans = sorted(set(caps) - seen)
    if orphans:
        raise ValueError(f"{ann_path}: captions refer to image ids {orphans[:5]} that the 'images' list lacks")
    if not items:
        raise ValueError(f"{ann_path}: no image has a caption")
    return items


def caption_pairs(items: list[CocoItem]) -> tuple[list[int], list[str]]:
    """Every (image, caption) pair, image-major: (index into `items`, caption) per caption.

    BEBR's training set: its features are stored interleaved [img, txt, img, txt, …] with the image
    index as the pair label, so that pairs of the same image are known duplicates."""
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
    """Open any image as RGB (COCO has grayscale and CMYK JPEGs, other sets palette or RGBA PNGs)."""
    try:
        with Image.open(path) as im:
            if im.mode in ("I;16", "I;16B", "I;16L", "I"):  # 16-bit grayscale: PIL cannot go straight to RGB
                return Image.fromarray((np.asarray(im, np.float64) / 257.0).clip(0, 255).astype(np.uint8)).convert("RGB")
            if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
                return im.convert("RGBA").convert("RGB")  # drop alpha without PIL's palette warning
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
