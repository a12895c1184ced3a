"""The synthetic Shapes world: images with known scene, shapes, colors and textures.

Every image is drawn from its own generator seeded by (seed, split, index), so
the world is identical whatever order or subset is generated, and files are
byte-identical across runs (PNG written by PIL with fixed settings).

The world is exported in the real datasets' on-disk formats (COCO captions,
ImageNet/SUN list files, Broden), so the tiny profile exercises the loaders
that the paper profile uses on real data.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from bitlens import io
from bitlens.progress import progress

SCENES = ("sky", "grass", "sand", "water", "wall", "night")
SHAPES = ("circle", "square", "triangle", "star", "ring", "cross")
COLORS = {
    "red": (220, 30, 30), "orange": (245, 140, 20), "yellow": (240, 220, 30), "green": (30, 160, 50),
    "blue": (30, 70, 220), "purple": (140, 40, 180), "white": (245, 245, 245), "black": (15, 15, 15),
}
TEXTURES = ("solid", "striped", "dotted", "checkered")
SIZES = {"small": 0.13, "medium": 0.2, "large": 0.28}  # object radius as a fraction of the image side

SCENE_BASE = {"sky": (120, 180, 235), "grass": (70, 150, 60), "sand": (215, 190, 130), "water": (40, 100, 160),
              "wall": (150, 80, 60), "night": (20, 20, 50)}

ATTRIBUTE_NAMES = tuple(SHAPES) + tuple(COLORS) + tuple(TEXTURES)
CLASS_NAMES = tuple(f"{scene}/{shape}" for scene in SCENES for shape in SHAPES)

_SHAPE_WORDS = {"circle": ["circle", "disc", "round shape"], "square": ["square", "box", "block"],
                "triangle": ["triangle", "triangular shape"], "star": ["star", "star shape"],
                "ring": ["ring", "hoop", "donut"], "cross": ["cross", "plus sign"]}
_TEXTURE_WORDS = {"solid": ["", "plain", "solid"], "striped": ["striped", "stripy"],
                  "dotted": ["dotted", "polka-dot", "spotted"], "checkered": ["checkered", "checked"]}
_SCENE_PHRASES = {"sky": ["in the sky", "against a blue sky", "under the open sky"],
                  "grass": ["on the grass", "on a lawn", "in a grassy field"],
                  "sand": ["on the sand", "on a sandy beach", "in the desert"],
                  "water": ["on the water", "over the sea", "floating on a lake"],
                  "wall": ["in front of a brick wall", "against a wall", "on a brick background"],
                  "night": ["under a night sky", "at night", "in the dark night"]}
_COUNT_WORDS = {1: "one", 2: "two", 3: "three"}

SPLITS = {"train": 0, "val": 1, "broden": 2}


@dataclass
class WorldObject:
    shape: str
    color: str
    texture: str
    size: str
    area: int  # visible pixels


@dataclass
class ShapesImage:
    image: np.ndarray  # uint8 HxWx3
    scene: str
    objects: list[WorldObject]
    shape_map: np.ndarray  # int16 HxW, 0 = background, i+1 = SHAPES[i]
    color_map: np.ndarray  # 0 = background, i+1 = list(COLORS)[i]
    texture_map: np.ndarray  # 0 = background, i+1 = TEXTURES[i]
    captions: list[str]

    @property
    def label(self) -> int:
        """Class = scene × shape of the largest visible object."""
        largest = max(self.objects, key=lambda o: o.area)
        return SCENES.index(self.scene) * len(SHAPES) + SHAPES.index(largest.shape)

    @property
    def attributes(self) -> np.ndarray:
        """Presence (1) / absence (0) of each shape, color and texture among visible objects."""
        present = {o.shape for o in self.objects if o.area} | {o.color for o in self.objects if o.area} | \
                  {o.texture for o in self.objects if o.area}
        return np.array([1 if a in present else 0 for a in ATTRIBUTE_NAMES], dtype=np.int8)


def _background(rng: np.random.Generator, scene: str, n: int) -> np.ndarray:
    yy, xx = np.mgrid[0:n, 0:n].astype(np.float32) / n
    base = np.array(SCENE_BASE[scene], dtype=np.float32)
    noise = rng.normal(0, 6, size=(n, n, 1)).astype(np.float32)
    img = np.broadcast_to(base, (n, n, 3)).astype(np.float32) + noise
    if scene == "sky":  # brighter towards the horizon
        img += (yy[..., None] * 50)
    elif scene == "grass":  # vertical blades
        img[..., 1] += 25 * np.sin(xx * n * 1.7 + rng.uniform(0, 6))[...] * (rng.random((n, n)) > 0.5)
    elif scene == "sand":  # soft dunes
        img += 18 * np.sin(yy * 9 + 3 * np.sin(xx * 5 + rng.uniform(0, 6)))[..., None]
    elif scene == "water":  # horizontal waves
        img[..., 2] += 30 * np.sin(yy * n * 0.9 + 2 * np.sin(xx * 7 + rng.uniform(0, 6)))
    elif scene == "wall":  # bricks: mortar lines every 8 px, offset every other row
        row = (yy * n // 8).astype(int)
        mortar = ((yy * n) % 8 < 1) | (((xx * n) + (row % 2) * 8) % 16 < 1)
        img[mortar] = (200, 200, 190)
    elif scene == "night":  # scattered stars
        stars = rng.random((n, n)) > 0.985
        img[stars] = (250, 250, 220)
    return img


def _shape_mask(shape: str, n: int, cx: float, cy: float, r: float) -> np.ndarray:
    yy, xx = np.mgrid[0:n, 0:n].astype(np.float32) + 0.5
    dx, dy = xx - cx, yy - cy
    d = np.hypot(dx, dy)
    if shape == "circle":
        return d <= r
    if shape == "square":
        return (np.abs(dx) <= 0.85 * r) & (np.abs(dy) <= 0.85 * r)
    if shape == "triangle":  # upward, base at cy + 0.8r
        top, base = cy - r, cy + 0.8 * r
        half = (yy - top) / (base - top) * r
        return (yy >= top) & (yy <= base) & (np.abs(dx) <= half)
    if shape == "star":  # five points: the radius threshold oscillates with angle
        theta = np.arctan2(dy, dx) + np.pi / 2
        return d <= r * (0.45 + 0.55 * (0.5 + 0.5 * np.cos(5 * theta)) ** 2)
    if shape == "ring":
        return (d <= r) & (d >= 0.55 * r)
    if shape == "cross":
        return ((np.abs(dx) <= 0.3 * r) & (np.abs(dy) <= r)) | ((np.abs(dy) <= 0.3 * r) & (np.abs(dx) <= r))
    raise ValueError(f"unknown shape {shape!r}; valid: {', '.join(SHAPES)}")


def _texture_pattern(texture: str, n: int, phase: int) -> np.ndarray:
    """Boolean map of the pixels drawn in the secondary tone."""
    yy, xx = np.mgrid[0:n, 0:n]
    if texture == "solid":
        return np.zeros((n, n), bool)
    if texture == "striped":
        return ((xx + yy + phase) // 3) % 2 == 1
    if texture == "dotted":
        return (((xx + phase) % 5) < 2) & (((yy + phase) % 5) < 2)
    if texture == "checkered":
        return (((xx + phase) // 4) + (yy // 4)) % 2 == 1
    raise ValueError(f"unknown texture {texture!r}; valid: {', '.join(TEXTURES)}")


def _describe(rng: np.random.Generator, o: WorldObject, with_size: bool) -> str:
    words = []
    if with_size:
        words.append(o.size)
    words.append(o.color)
    tex = _TEXTURE_WORDS[o.texture][rng.integers(len(_TEXTURE_WORDS[o.texture]))]
    if tex:
        words.append(tex)
    words.append(_SHAPE_WORDS[o.shape][rng.integers(len(_SHAPE_WORDS[o.shape]))])
    return " ".join(words)


def _article(phrase: str) -> str:
    return ("an " if phrase[0] in "aeiou" else "a ") + phrase


def _captions(rng: np.random.Generator, scene: str, objects: list[WorldObject], k: int = 5) -> list[str]:
    objs = sorted([o for o in objects if o.area], key=lambda o: -o.area)
    out: list[str] = []
    for t in range(k):
        place = _SCENE_PHRASES[scene][rng.integers(len(_SCENE_PHRASES[scene]))]
        descs = [_describe(rng, o, with_size=bool(rng.integers(2))) for o in objs]
        style = (t + int(rng.integers(3))) % 4
        if len(objs) == 1:
            templates = [f"{_article(descs[0])} {place}", f"a picture of {_article(descs[0])} {place}",
                         f"{place}, {_article(descs[0])}", f"there is {_article(descs[0])} {place}"]
        else:
            listed = ", ".join(_article(d) for d in descs[:-1]) + " and " + _article(descs[-1])
            cnt = _COUNT_WORDS.get(len(objs), str(len(objs)))
            templates = [f"{cnt} shapes, {listed}, {place}", f"{listed} {place}",
                         f"a picture with {cnt} objects {place}: {listed}",
                         f"{_article(descs[0])} next to {', '.join(_article(d) for d in descs[1:])} {place}"]
        out.append(templates[style])
    return out


def render_image(seed: int, split: str, index: int, image_size: int = 64, max_objects: int = 3) -> ShapesImage:
    """One image of the world; depends only on (seed, split, index) and the sizes."""
    rng = np.random.default_rng([seed, SPLITS[split], index])
    n = image_size
    scene = SCENES[rng.integers(len(SCENES))]
    img = _background(rng, scene, n)
    shape_map = np.zeros((n, n), np.int16)
    color_map = np.zeros((n, n), np.int16)
    texture_map = np.zeros((n, n), np.int16)
    owner = np.full((n, n), -1, np.int16)
    specs = []
    for j in range(int(rng.integers(1, max_objects + 1))):
        shape = SHAPES[rng.integers(len(SHAPES))]
        color = list(COLORS)[rng.integers(len(COLORS))]
        texture = TEXTURES[rng.integers(len(TEXTURES))]
        size = list(SIZES)[rng.integers(len(SIZES))]
        r = SIZES[size] * n * rng.uniform(0.9, 1.1)
        cx, cy = rng.uniform(r * 0.8, n - r * 0.8, size=2)
        mask = _shape_mask(shape, n, cx, cy, r)
        rgb = np.clip(np.array(COLORS[color], np.float32) + rng.normal(0, 12, 3), 0, 255)
        alt = rgb * 0.45 if color != "black" else np.full(3, 110.0, np.float32)
        pattern = _texture_pattern(texture, n, int(rng.integers(8)))
        paint = np.where(pattern[..., None], alt, rgb)
        img[mask] = paint[mask]
        shape_map[mask] = SHAPES.index(shape) + 1
        color_map[mask] = list(COLORS).index(color) + 1
        texture_map[mask] = TEXTURES.index(texture) + 1
        owner[mask] = j
        specs.append((shape, color, texture, size))
    objects = [WorldObject(*s, area=int((owner == j).sum())) for j, s in enumerate(specs)]
    if not any(o.area for o in objects):  # pragma: no cover - every object is at least partly visible by construction
        raise RuntimeError(f"image {split}/{index} has no visible object")
    image = np.clip(img, 0, 255).astype(np.uint8)
    return ShapesImage(image, scene, objects, shape_map, color_map, texture_map, _captions(rng, scene, objects))


def _save_png(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    # fixed encoder settings and no metadata keep the bytes identical across runs
    Image.fromarray(array).save(path, format="PNG", optimize=False, compress_level=6)


def _encode_labels(label_map: np.ndarray) -> np.ndarray:
    """Broden mask encoding: label id = R + 256·G."""
    out = np.zeros(label_map.shape + (3,), np.uint8)
    out[..., 0] = label_map % 256
    out[..., 1] = label_map // 256
    return out


def _write_csv(path: Path, header: list[str], rows: list[list]) -> None:
    import csv
    import io as _io

    buf = _io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(header)
    w.writerows(rows)
    io.write_text(path, buf.getvalue())


def _export_coco_split(root: Path, split_dir: str, split: str, count: int, seed: int, image_size: int,
                       max_objects: int, id_offset: int, records: list) -> dict:
    images, annotations = [], []
    for i in progress(range(count), desc=f"shapes {split_dir}"):
        im = render_image(seed, split, i, image_size, max_objects)
        image_id = id_offset + i + 1
        fname = f"{image_id:012d}.png"
        _save_png(root / "coco" / split_dir / fname, im.image)
        images.append({"id": image_id, "file_name": fname, "height": image_size, "width": image_size,
                       "license": 0})
        for c in im.captions:
            annotations.append({"id": len(annotations) + 1 + id_offset * 10, "image_id": image_id, "caption": c})
        records.append((f"{split_dir}/{fname}", im.label, im.attributes))
    ann = {"info": {"description": f"Shapes world ({split_dir}), COCO captions layout", "version": "1.0"},
           "licenses": [{"id": 0, "name": "generated", "url": ""}], "images": images, "annotations": annotations}
    io.write_text(root / "coco" / "annotations" / f"captions_{split_dir}.json", json.dumps(ann))
    return {"images": len(images), "captions": len(annotations)}


def _export_lists(root: Path, train: list, val: list) -> None:
    def sun(rows):
        return "".join(f"{p} {c} " + " ".join("1" if a else "-1" for a in attrs) + "\n" for p, c, attrs in rows)

    def imagenet(rows):
        return "".join(f"{p} {c}\n" for p, c, _ in rows)

    lists = root / "lists"
    io.write_text(lists / "train.txt", sun(train))
    io.write_text(lists / "database.txt", sun(train))
    io.write_text(lists / "test.txt", sun(val))
    io.write_text(lists / "imagenet_train.txt", imagenet(train))
    io.write_text(lists / "imagenet_database.txt", imagenet(train))
    io.write_text(lists / "imagenet_test.txt", imagenet(val))


def broden_vocabulary() -> dict[str, list[str]]:
    """Broden label names per category, in label-number order (Broden suffixes: colors -c, scenes -s)."""
    return {"object": list(SHAPES), "color": [f"{c}-c" for c in COLORS], "texture": list(TEXTURES),
            "scene": [f"{s}-s" for s in SCENES]}


def _export_broden(root: Path, count: int, seed: int, image_size: int, mask_size: int, max_objects: int) -> dict:
    out = root / "broden"
    vocab = broden_vocabulary()
    cats = ["color", "object", "scene", "texture"]  # Broden's category.csv order is alphabetical
    numbers: dict[tuple[str, str], int] = {}
    nxt = 1
    for cat in ["object", "color", "texture", "scene"]:
        for name in vocab[cat]:
            numbers[(cat, name)] = nxt
            nxt += 1
    freq = {k: 0 for k in numbers}
    pix = {k: 0 for k in numbers}
    step = image_size // mask_size
    if step * mask_size != image_size:
        raise ValueError(f"broden_mask_size {mask_size} must divide image_size {image_size}")
    rows = []
    for i in progress(range(count), desc="shapes broden"):
        im = render_image(seed, "broden", i, image_size, max_objects)
        stem = f"shapes/{i + 1:06d}"
        _save_png(out / "images" / f"{stem}.png", im.image)
        cells = {c: "" for c in ["color", "object", "material", "part", "scene", "texture"]}
        for cat, lmap, names in (("object", im.shape_map, vocab["object"]), ("color", im.color_map, vocab["color"]),
                                 ("texture", im.texture_map, vocab["texture"])):
            small = lmap[step // 2::step, step // 2::step]  # nearest-neighbour downsample to the mask size
            glob = np.zeros_like(small, dtype=np.int32)
            for local in np.unique(small):
                if local == 0:
                    continue
                key = (cat, names[local - 1])
                glob[small == local] = numbers[key]
                freq[key] += 1
                pix[key] += int((small == local).sum())
            if glob.any():
                _save_png(out / "images" / f"{stem}_{cat}.png", _encode_labels(glob))
                cells[cat] = f"{stem}_{cat}.png"
        skey = ("scene", f"{im.scene}-s")
        cells["scene"] = str(numbers[skey])
        freq[skey] += 1
        pix[skey] += mask_size * mask_size
        rows.append([f"{stem}.png", "train", image_size, image_size, mask_size, mask_size, cells["color"],
                     cells["object"], cells["material"], cells["part"], cells["scene"], cells["texture"]])
    _write_csv(out / "index.csv", ["image", "split", "ih", "iw", "sh", "sw", "color", "object", "material", "part",
                                   "scene", "texture"], rows)
    total_pix = max(1, count * mask_size * mask_size)
    label_rows = [[0, "-", "-", 0, 0.0, ""]]
    for (cat, name), num in numbers.items():
        label_rows.append([num, name, f"{cat}({freq[(cat, name)]})", freq[(cat, name)],
                           round(pix[(cat, name)] / total_pix, 6), ""])
    _write_csv(out / "label.csv", ["number", "name", "category", "frequency", "coverage", "syns"], label_rows)
    cat_rows = []
    for cat in cats:
        nums = [numbers[(cat, n)] for n in vocab[cat]]
        cat_rows.append([cat, min(nums), max(nums), len(nums), sum(freq[(cat, n)] for n in vocab[cat])])
        _write_csv(out / f"c_{cat}.csv", ["code", "number", "name", "frequency", "coverage"],
                   [[j + 1, numbers[(cat, n)], n, freq[(cat, n)], round(pix[(cat, n)] / total_pix, 6)]
                    for j, n in enumerate(vocab[cat])])
    _write_csv(out / "category.csv", ["name", "first", "last", "count", "frequency"], cat_rows)
    return {"images": count, "labels": len(numbers)}


def generate_world(root, *, seed: int = 0, image_size: int = 64, n_train: int = 2000, n_val: int = 500,
                   n_broden: int = 300, broden_mask_size: int = 32, max_objects: int = 3) -> dict:
    """Write the Shapes world and its exports under `root`; returns the sizes.

    `world.json` is written last and records the arguments: if it already
    matches, nothing is regenerated; a half-written world (no world.json) is
    regenerated from scratch.
    """
    root = Path(root)
    args = {"seed": seed, "image_size": image_size, "n_train": n_train, "n_val": n_val, "n_broden": n_broden,
            "broden_mask_size": broden_mask_size, "max_objects": max_objects}
    for k, v in args.items():
        if not isinstance(v, int) or isinstance(v, bool) or v < (0 if k == "seed" else 1):
            raise ValueError(f"generate_world: {k} must be a positive integer, got {v!r}")
    if image_size < 16:
        raise ValueError(f"generate_world: image_size {image_size} is too small to draw shapes (use ≥ 16)")
    marker = root / "world.json"
    if marker.exists():
        try:
            old = json.loads(marker.read_text())
            if old.get("arguments") == args:
                return old["sizes"]
        except (OSError, json.JSONDecodeError):
            pass
        marker.unlink()
    train_rows: list = []
    val_rows: list = []
    sizes = {
        "train2017": _export_coco_split(root, "train2017", "train", n_train, seed, image_size, max_objects, 0, train_rows),
        "val2017": _export_coco_split(root, "val2017", "val", n_val, seed, image_size, max_objects, 1_000_000, val_rows),
    }
    _export_lists(root, train_rows, val_rows)
    sizes["broden"] = _export_broden(root, n_broden, seed, image_size, broden_mask_size, max_objects)
    sizes["classes"] = len(CLASS_NAMES)
    sizes["attributes"] = len(ATTRIBUTE_NAMES)
    world = {"arguments": args, "sizes": sizes, "scenes": list(SCENES), "shapes": list(SHAPES),
             "colors": list(COLORS), "textures": list(TEXTURES), "attribute_names": list(ATTRIBUTE_NAMES),
             "class_names": list(CLASS_NAMES), "broden_vocabulary": broden_vocabulary(),
             "lists": {"root": "coco", "train": "lists/train.txt (= train2017)",
                       "database": "lists/database.txt (= train2017, the retrieval database)",
                       "test": "lists/test.txt (= val2017, the queries)"}}
    io.write_json(marker, world)
    return sizes
