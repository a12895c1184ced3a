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


KARPATHY_HINT = ("Karpathy's COCO split file dataset_coco.json (from the caption datasets archive of Karpathy's "
                 "NeuralTalk / 'Deep Visual-Semantic Alignments' release: caption_datasets.zip); its 'test' split is "
                 "the 5k test set of open_clip / CLIP_benchmark")


def load_karpathy_split(root, split_file, split: str = "test") -> list[CocoItem]:
    """The images of one split of Karpathy's `dataset_coco.json`, each with its sentences (the `raw` text) in
    file order. The images are found by COCO id in the 2017 folders (`<root>/train2017` or `<root>/val2017`,
    named `<id:012d>.jpg`): the 2014 val images the 5k test set draws from were redistributed over both."""
    root, split_file = Path(root), Path(split_file)
    if not split_file.exists():
        raise FileNotFoundError(f"{split_file}: Karpathy split file not found; expected {KARPATHY_HINT}")
    try:
        data = json.loads(split_file.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ValueError(f"{split_file}: not valid JSON ({e}); expected {KARPATHY_HINT}") from None
    if not isinstance(data, dict) or not isinstance(data.get("images"), list):
        raise ValueError(f"{split_file}: no 'images' list; expected {KARPATHY_HINT}")
    items = []
    for i, im in enumerate(data["images"]):
        try:
            if im["split"] != split:
                continue
            cocoid = int(im["cocoid"])
            caps = tuple(str(s["raw"]).strip() for s in im["sentences"])
        except (KeyError, TypeError, ValueError):
            raise ValueError(f"{split_file}: image entry #{i} lacks split/cocoid/sentences[].raw: "
                             f"{str(im)[:200]}") from None
        if not caps:
            raise ValueError(f"{split_file}: image entry #{i} (COCO id {cocoid}) has no sentence")
        for folder in ("val2017", "train2017"):
            path = root / folder / f"{cocoid:012d}.jpg"
            if path.exists():
                break
        else:
            raise FileNotFoundError(f"{root}/{{val2017,train2017}}/{cocoid:012d}.jpg: image of {split_file} entry #{i} "
                                    f"is missing; the COCO 2017 image folders are needed (see data/README.md)")
        items.append(CocoItem(cocoid, path, caps))
    if not items:
        raise ValueError(f"{split_file}: no image in split {split!r}")
    return items
