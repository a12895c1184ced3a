"""Replica of Broden `broden1_224` as NetDissect-Lite reads it (docs/replica.md).

- index.csv: image,split,ih,iw,sh,sw,color,object,material,part,scene,texture — images 224², masks 112²;
  per-pixel categories (color, object, material, part) hold mask PNG names relative to images/, several
  `;`-separated where an image has more than one mask of a category (Broden's part masks); image-level
  categories (scene, texture) hold label numbers, also `;`-separated when several apply.
- Masks: label id = R + 256·G, so ids above 255 have a non-zero green channel.
- label.csv (number,name,category,frequency,coverage,syns), category.csv (name,first,last,count,frequency),
  c_<category>.csv (code,number,name,frequency,coverage); label 0 ('-') is implicit.

The pictures come from the Shapes world; its shape, colour and texture maps give the object, colour and texture
labels, so a few labels have real pixels behind them; a patch of high-contrast waves painted on every fourth
picture is the object `ocean`, SUN's customized-retrieval target (and the water scene is `ocean-s`). Numbers and
names follow Broden's conventions (colours -c, scenes -s, materials -m); the vocabulary is the replica's own,
not Broden's 1,197 labels.
"""
from __future__ import annotations

import csv
import io as _io
from pathlib import Path

import numpy as np
from PIL import Image

from bitlens import io
from bitlens.data.shapes import COLOR_NAMES, SCENES, SHAPES, TEXTURES, encode_label_map, render_image, texture_pattern
from bitlens.png import png_bytes
from bitlens.replica.images import jpeg_bytes

IMAGE_SIZE, MASK_SIZE = 224, 112
N_IMAGES = 32
CATEGORIES = ("color", "object", "material", "part", "scene", "texture")  # Broden's index.csv column order
PIXEL_CATEGORIES = ("color", "object", "material", "part")
# Broden's scene names carry -s; the Shapes scenes are renamed to scenes the IBC targets talk about
SCENE_NAMES = {"sky": "sky-s", "grass": "field-s", "sand": "beach-s", "water": "ocean-s", "wall": "building_facade-s",
               "night": "night-s"}
N_OBJECT_LABELS = 260  # enough object labels that some numbers lie above 255, as in Broden (1,197 labels)


OCEAN = "ocean"  # SUN's customized-retrieval target (params: ibc.experiments.sun120k.target_attributes)


def vocabulary() -> dict[str, list[str]]:
    """Label names per category, in label-number order; numbering runs through the categories in this order."""
    objects = list(SHAPES) + [OCEAN] + [f"object{j}" for j in range(len(SHAPES) + 1, N_OBJECT_LABELS)]
    return {"color": [f"{c}-c" for c in COLOR_NAMES],
            "object": objects,
            "material": [f"{m}-m" for m in ("wood", "metal", "glass", "fabric", "stone", "paper")],
            "part": ["top", "bottom", "left side", "right side"],
            "scene": [SCENE_NAMES[s] for s in SCENES],
            "texture": list(TEXTURES) + ["banded", "woven"]}


def _numbers(vocab: dict[str, list[str]]) -> dict[str, np.ndarray]:
    out, n = {}, 1
    for cat in CATEGORIES:
        out[cat] = np.arange(n, n + len(vocab[cat]))
        n += len(vocab[cat])
    return out


def _csv(header, rows) -> str:
    buf = _io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(header)
    w.writerows(rows)
    return buf.getvalue()


def _nearest(label_map: np.ndarray, size: int) -> np.ndarray:
    centers = ((np.arange(size) + 0.5) * label_map.shape[0] / size).astype(int)
    return label_map[np.ix_(centers, centers)]


def write_broden(root: Path, seed: int, n_images: int = N_IMAGES) -> dict:
    """broden1_224/ with all six categories; returns the sizes."""
    root = Path(root)
    vocab = vocabulary()
    num = _numbers(vocab)
    total = int(num[CATEGORIES[-1]][-1])
    frequency = np.zeros(total + 1, np.int64)
    coverage = {cat: np.zeros(total + 1) for cat in CATEGORIES}
    rng = np.random.default_rng([seed, 4])
    # the six Shapes objects take object numbers spread over the range, some above 255 (a green mask channel)
    shape_ids = num["object"][np.linspace(0, N_OBJECT_LABELS - 1, len(SHAPES)).astype(int)]
    rows = []
    for i in range(n_images):
        im = render_image(seed, "broden", i, IMAGE_SIZE, max_objects=3)
        stem = f"replica/replica_{i + 1:05d}"
        picture = im.image.copy()
        ocean = None
        if i % 4 == 0:  # a patch of high-contrast waves (mask cells; the picture is twice the mask's side)
            y, x = rng.integers(0, MASK_SIZE - 32, 2)
            h, w = rng.integers(16, 32, 2)
            ocean = (slice(y, y + h), slice(x, x + w))
            waves = texture_pattern("striped", 2 * int(max(h, w)), int(rng.integers(8)))[:2 * h, :2 * w]
            picture[2 * y:2 * (y + h), 2 * x:2 * (x + w)] = np.where(waves[..., None], (20, 40, 90), (235, 245, 255))
        io.write_bytes(root / "images" / f"{stem}.jpg", jpeg_bytes(Image.fromarray(picture)))
        maps = {"color": np.where(im.color_map > 0, num["color"][0] - 1 + im.color_map, 0),
                "object": np.where(im.shape_map > 0, shape_ids[np.maximum(im.shape_map - 1, 0)], 0)}
        small = {cat: _nearest(m, MASK_SIZE) for cat, m in maps.items()}
        # material: random rectangles of material labels
        mat = np.zeros((MASK_SIZE, MASK_SIZE), np.int64)
        for _ in range(int(rng.integers(1, 4))):
            y, x = rng.integers(0, MASK_SIZE - 20, 2)
            h, w = rng.integers(12, 60, 2)
            mat[y:y + h, x:x + w] = rng.choice(num["material"])
        small["material"] = mat
        # object labels beyond the six shapes: a block of background (Broden's objects cover much of each image)
        y, x = rng.integers(0, MASK_SIZE // 2, 2)
        extra = small["object"].copy()
        block = int(rng.choice(num["object"][len(SHAPES) + 1:]))
        extra[y:y + 40, x:x + 40] = np.where(extra[y:y + 40, x:x + 40] == 0, block, extra[y:y + 40, x:x + 40])
        # `ocean`, SUN's target attribute: the wave patches, whose high contrast random units' strongest activations
        # tend to meet (as they meet the textured white objects), so that the dissection ties some bits to it
        if ocean is not None:
            extra[ocean] = num["object"][len(SHAPES)]
        small["object"] = extra
        # parts: two masks per image (Broden's part cells list several PNGs), top/bottom halves of the objects
        fg = small["object"] > 0
        half = np.zeros_like(fg)
        half[: MASK_SIZE // 2] = True
        parts = [np.where(fg & half, num["part"][0], 0), np.where(fg & ~half, num["part"][1], 0)]
        cells = dict.fromkeys(CATEGORIES, "")
        for cat in PIXEL_CATEGORIES:
            masks = parts if cat == "part" else [small[cat]]
            names = []
            for j, m in enumerate(masks):
                if not m.any():
                    continue
                name = f"{stem}_{cat}.png" if cat != "part" else f"{stem}_part_{j + 1}.png"
                io.write_bytes(root / "images" / name, png_bytes(encode_label_map(m)))
                names.append(name)
                ids, counts = np.unique(m[m > 0], return_counts=True)
                frequency[ids] += 1
                coverage[cat][ids] += counts / m.size
            cells[cat] = ";".join(names)
        scene = int(num["scene"][SCENES.index(im.scene)])
        textures = sorted({int(num["texture"][TEXTURES.index(o.texture)]) for o in im.visible})
        for cat, ids in (("scene", [scene]), ("texture", textures)):
            frequency[ids] += 1
            coverage[cat][ids] += 1.0
            cells[cat] = ";".join(map(str, ids))
        rows.append([f"{stem}.jpg", "train" if i % 4 else "val", IMAGE_SIZE, IMAGE_SIZE, MASK_SIZE, MASK_SIZE,
                     *(cells[c] for c in CATEGORIES)])
    io.write_text(root / "index.csv", _csv(["image", "split", "ih", "iw", "sh", "sw", *CATEGORIES], rows))
    label_rows = []
    for cat in CATEGORIES:
        for n, name in zip(num[cat], vocab[cat]):
            label_rows.append([int(n), name, f"{cat}({frequency[n]})", int(frequency[n]),
                               f"{coverage[cat][n]:f}", ""])
    io.write_text(root / "label.csv", _csv(["number", "name", "category", "frequency", "coverage", "syns"],
                                           label_rows))
    io.write_text(root / "category.csv", _csv(
        ["name", "first", "last", "count", "frequency"],
        [[cat, int(num[cat][0]), int(num[cat][-1]), len(num[cat]), int(frequency[num[cat]].sum())]
         for cat in CATEGORIES]))
    for cat in CATEGORIES:
        io.write_text(root / f"c_{cat}.csv", _csv(
            ["code", "number", "name", "frequency", "coverage"],
            [[code, int(n), name, int(frequency[n]), f"{coverage[cat][n]:f}"]
             for code, (n, name) in enumerate(zip(num[cat], vocab[cat]), 1)]))
    return {"images": n_images, "labels": total, "mask_size": MASK_SIZE, "max_label": total}
