"""The synthetic Shapes world: images whose scene, shapes, colors and textures are known per pixel.

Every image comes from its own generator seeded by (seed, split, index), so an image does not depend on how
many others are generated, and the files are byte-identical across runs (PNG written by PIL with fixed
settings and no metadata).

The world is exported in the real datasets' on-disk formats (COCO captions, ImageNet/SUN-style list files,
Broden), so the tiny profile runs the same loaders that the paper profile runs on real data.
"""
from __future__ import annotations

import csv
import io as _io
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bitlens import cache, io
from bitlens.png import png_bytes
from bitlens.progress import progress

SCENES = ("sky", "grass", "sand", "water", "wall", "night")
SHAPES = ("circle", "square", "triangle", "star", "ring", "cross")
COLORS = {
    "red": (220, 30, 30), "orange": (245, 140, 20), "yellow": (240, 220, 30), "green": (30, 160, 50),
    "blue": (30, 70, 220), "purple": (140, 40, 180), "white": (245, 245, 245), "black": (15, 15, 15),
}
COLOR_NAMES = tuple(COLORS)
TEXTURES = ("solid", "striped", "dotted", "checkered")
SIZES = {"small": 0.13, "medium": 0.2, "large": 0.28}  # object radius as a fraction of the image side

SCENE_BASE = {"sky": (120, 180, 235), "grass": (70, 150, 60), "sand": (215, 190, 130), "water": (40, 100, 160),
              "wall": (150, 80, 60), "night": (20, 20, 50)}

ATTRIBUTE_NAMES = SHAPES + COLOR_NAMES + TEXTURES
# The class is the shape and texture of the largest visible object (24 classes). IBC's real branch trains the bit
# filters to separate the classes, so the bits keep the concept detectors the classes need: with scene × shape
# classes (worlds before version 3) the bits fired on scenes and borders; with colour × texture (version 3) no bit
# became a shape detector. Colour needs no class: the read-out-initialised colour bits keep it (docs/dissection.md).
CLASS_NAMES = tuple(f"{shape}/{texture}" for shape in SHAPES for texture in TEXTURES)

# Image-set names: their index seeds the per-image generators; the COCO folders are named as COCO 2017's.
SPLITS = {"train": 0, "val": 1, "broden": 2}
COCO_FOLDERS = {"train": "train2017", "val": "val2017"}
COCO_VAL_ID_OFFSET = 1_000_000  # image ids stay unique across the two COCO files
BRODEN_COLUMNS = ("color", "object", "material", "part", "scene", "texture")

SHAPE_WORDS = {"circle": ("circle", "disc", "round shape"), "square": ("square", "box", "block"),
               "triangle": ("triangle", "triangular shape"), "star": ("star", "star shape"),
               "ring": ("ring", "hoop", "donut"), "cross": ("cross", "plus sign")}
TEXTURE_WORDS = {"solid": ("", "plain", "solid"), "striped": ("striped", "stripy"),
                 "dotted": ("dotted", "polka-dot", "spotted"), "checkered": ("checkered", "checked")}
SCENE_PHRASES = {"sky": ("in the sky", "against a blue sky", "under the open sky"),
                 "grass": ("on the grass", "on a lawn", "in a grassy field"),
                 "sand": ("on the sand", "on a sandy beach", "in the desert"),
                 "water": ("on the water", "over the sea", "floating on a lake"),
                 "wall": ("in front of a brick wall", "against a wall", "on a brick background"),
                 "night": ("under a night sky", "at night", "in the dark night")}
COUNT_WORDS = {1: "one", 2: "two", 3: "three", 4: "four", 5: "five"}
CAPTIONS_PER_IMAGE = 5


@dataclass(frozen=True)
class WorldObject:
    shape: str
    color: str
    texture: str
    size: str
    area: int  # visible pixels after the objects drawn later on top
    drawn: int = 0  # pixels of the whole shape, before occlusion


@dataclass
class ShapesImage:
    image: np.ndarray  # uint8 (H, W, 3)
    scene: str
    objects: list[WorldObject]  # in drawing order (later ones on top)
    shape_map: np.ndarray  # int16 (H, W): 0 = background, i + 1 = SHAPES[i]
    color_map: np.ndarray  # 0 = background, i + 1 = COLOR_NAMES[i]
    texture_map: np.ndarray  # 0 = background, i + 1 = TEXTURES[i]
    captions: list[str]

    @property
    def visible(self) -> list[WorldObject]:
        return [o for o in self.objects if o.area]

    @property
    def largest(self) -> WorldObject:
        return max(self.objects, key=lambda o: o.area)  # ties: the first drawn

    @property
    def label(self) -> int:
        """Class index into CLASS_NAMES: shape × texture of the largest visible object."""
        return SHAPES.index(self.largest.shape) * len(TEXTURES) + TEXTURES.index(self.largest.texture)

    @property
    def attributes(self) -> np.ndarray:
        """int8 (18,): 1 where a visible object has that shape, color or texture (ATTRIBUTE_NAMES order)."""
        present = {v for o in self.visible for v in (o.shape, o.color, o.texture)}
        return np.array([1 if a in present else 0 for a in ATTRIBUTE_NAMES], dtype=np.int8)


# -- drawing (vectorised over pixels) ----------------------------------------------------------------------------

def _grid(n: int) -> tuple[np.ndarray, np.ndarray]:
    yy, xx = np.mgrid[0:n, 0:n].astype(np.float32)
    return yy, xx


def _background(rng: np.random.Generator, scene: str, n: int) -> np.ndarray:
    """float32 (n, n, 3): the scene's base color, noise and its own texture."""
    yy, xx = _grid(n)
    img = np.empty((n, n, 3), np.float32)
    img[:] = SCENE_BASE[scene]
    img += rng.normal(0, 6, size=(n, n, 1)).astype(np.float32)
    u, v = yy / n, xx / n  # scale-free coordinates so the textures look alike at any image size
    if scene == "sky":  # brighter towards the horizon, a soft cloud band
        img += (u * 50)[..., None]
        img += (25 * np.exp(-((u - rng.uniform(0.2, 0.5)) * 8) ** 2))[..., None]
    elif scene == "grass":  # vertical blades of random height
        blades = np.sin(v * n * 1.7 + rng.uniform(0, 6)) * (rng.random((n, n)) > 0.5)
        img[..., 1] += 25 * blades
    elif scene == "sand":  # soft dunes
        img += (18 * np.sin(u * 9 + 3 * np.sin(v * 5 + rng.uniform(0, 6))))[..., None]
    elif scene == "water":  # horizontal waves
        img[..., 2] += 30 * np.sin(u * n * 0.9 + 2 * np.sin(v * 7 + rng.uniform(0, 6)))
    elif scene == "wall":  # bricks: mortar lines, every other row offset by half a brick
        brick = max(4, n // 8)
        row = (yy // brick).astype(int)
        mortar = (yy % brick < 1) | ((xx + (row % 2) * brick) % (2 * brick) < 1)
        img[mortar] = (200, 200, 190)
    elif scene == "night":  # scattered stars
        img[rng.random((n, n)) > 0.985] = (250, 250, 220)
    return img


def shape_mask(shape: str, n: int, cx: float, cy: float, r: float) -> np.ndarray:
    """bool (n, n): the pixels whose centres fall inside `shape` of radius r centred at (cx, cy)."""
    yy, xx = _grid(n)
    dx, dy = xx + 0.5 - cx, yy + 0.5 - cy
    d = np.hypot(dx, dy)
    if shape == "circle":
        return d <= r
    if shape == "square":
        return (np.abs(dx) <= 0.85 * r) & (np.abs(dy) <= 0.85 * r)
    if shape == "triangle":  # pointing up, base at cy + 0.8 r
        top, base = cy - r, cy + 0.8 * r
        half = (yy + 0.5 - top) / (base - top) * r
        return (yy + 0.5 >= top) & (yy + 0.5 <= base) & (np.abs(dx) <= half)
    if shape == "star":  # five points: the radius oscillates with the angle
        theta = np.arctan2(dy, dx) + np.pi / 2
        return d <= r * (0.45 + 0.55 * (0.5 + 0.5 * np.cos(5 * theta)) ** 2)
    if shape == "ring":
        return (d <= r) & (d >= 0.55 * r)
    if shape == "cross":
        return ((np.abs(dx) <= 0.3 * r) & (np.abs(dy) <= r)) | ((np.abs(dy) <= 0.3 * r) & (np.abs(dx) <= r))
    raise ValueError(f"unknown shape {shape!r}; valid: {', '.join(SHAPES)}")


def texture_pattern(texture: str, n: int, phase: int) -> np.ndarray:
    """bool (n, n): the pixels painted in the secondary tone."""
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


# -- captions ----------------------------------------------------------------------------------------------------

def _pick(rng: np.random.Generator, options) -> str:
    return options[int(rng.integers(len(options)))]


def _article(phrase: str) -> str:
    return ("an " if phrase[0] in "aeiou" else "a ") + phrase


def _describe(rng: np.random.Generator, o: WorldObject) -> str:
    words = [o.size] if rng.random() < 0.5 else []
    words.append(o.color)
    texture = _pick(rng, TEXTURE_WORDS[o.texture])
    if texture:
        words.append(texture)
    words.append(_pick(rng, SHAPE_WORDS[o.shape]))
    return _article(" ".join(words))


def _join(phrases: list[str]) -> str:
    return phrases[0] if len(phrases) == 1 else ", ".join(phrases[:-1]) + " and " + phrases[-1]


def _caption(rng: np.random.Generator, scene: str, objects: list[WorldObject], template: int) -> str:
    place = _pick(rng, SCENE_PHRASES[scene])
    descs = [_describe(rng, o) for o in objects]
    if len(objects) == 1:
        forms = (f"{descs[0]} {place}", f"a picture of {descs[0]} {place}", f"{place}, {descs[0]}",
                 f"there is {descs[0]} {place}", f"a photo showing {descs[0]} {place}")
    else:
        count = COUNT_WORDS.get(len(objects), str(len(objects)))
        forms = (f"{count} shapes, {_join(descs)}, {place}", f"{_join(descs)} {place}",
                 f"a picture with {count} objects {place}: {_join(descs)}",
                 f"{descs[0]} next to {_join(descs[1:])} {place}",
                 f"{place}, {count} shapes: {_join(descs)}")
    return forms[template % len(forms)]


def captions_for(rng: np.random.Generator, scene: str, objects: list[WorldObject],
                 k: int = CAPTIONS_PER_IMAGE) -> list[str]:
    """k captions of the visible objects (largest first), each from its own template, re-drawn once if it repeats."""
    shown = sorted((o for o in objects if o.area), key=lambda o: -o.area)
    start = int(rng.integers(k))
    out: list[str] = []
    for t in range(k):
        cap = _caption(rng, scene, shown, start + t)
        if cap in out:
            cap = _caption(rng, scene, shown, start + t)
        out.append(cap)
    return out


# -- one image ---------------------------------------------------------------------------------------------------

def render_image(seed: int, split: str, index: int, image_size: int = 64, max_objects: int = 3) -> ShapesImage:
    """Image `index` of `split` ('train', 'val' or 'broden'); depends only on these arguments."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; valid: {', '.join(SPLITS)}")
    rng = np.random.default_rng([seed, SPLITS[split], index])
    n = image_size
    scene = _pick(rng, SCENES)
    img = _background(rng, scene, n)
    maps = np.zeros((3, n, n), np.int16)  # shape, color, texture
    owner = np.full((n, n), -1, np.int16)
    specs = []
    for j in range(int(rng.integers(1, max_objects + 1))):
        shape, color, texture, size = (_pick(rng, SHAPES), _pick(rng, COLOR_NAMES), _pick(rng, TEXTURES),
                                       _pick(rng, tuple(SIZES)))
        r = SIZES[size] * n * rng.uniform(0.9, 1.1)
        cx, cy = rng.uniform(r * 0.8, n - r * 0.8, size=2)
        mask = shape_mask(shape, n, cx, cy, r)
        rgb = np.clip(np.array(COLORS[color], np.float32) + rng.normal(0, 12, 3), 0, 255)  # jittered color
        # the secondary tone of a texture: darker, except on black where darker would vanish
        alt = rgb * 0.45 if color != "black" else np.full(3, 110.0, np.float32)
        pattern = texture_pattern(texture, n, int(rng.integers(8)))
        img[mask] = np.where(pattern[mask][:, None], alt, rgb)
        maps[:, mask] = np.array([SHAPES.index(shape), COLOR_NAMES.index(color), TEXTURES.index(texture)],
                                 np.int16)[:, None] + 1
        owner[mask] = j
        specs.append((shape, color, texture, size, int(mask.sum())))
    areas = np.bincount(owner[owner >= 0].ravel(), minlength=len(specs))
    objects = [WorldObject(*s[:4], area=int(a), drawn=s[4]) for s, a in zip(specs, areas)]
    if not any(o.area for o in objects):  # the last object drawn is always visible
        raise RuntimeError(f"Shapes image {split}/{index} has no visible object")
    image = np.clip(np.rint(img), 0, 255).astype(np.uint8)
    return ShapesImage(image, scene, objects, maps[0], maps[1], maps[2], captions_for(rng, scene, objects))


# -- files -------------------------------------------------------------------------------------------------------

def encode_label_map(label_map: np.ndarray) -> np.ndarray:
    """Broden mask pixels for label ids: R = id mod 256, G = id div 256, B = 0."""
    if label_map.min(initial=0) < 0 or label_map.max(initial=0) >= 256 * 256:
        raise ValueError("Broden label ids must lie in 0..65535 to fit R + 256·G")
    out = np.zeros(label_map.shape + (3,), np.uint8)
    out[..., 0] = label_map % 256
    out[..., 1] = label_map // 256
    return out


def _write_file(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)  # completeness is marked once for the whole world (world.json), not per image


def _link_or_copy(src: Path, dst: Path) -> None:
    """Same bytes under a second name; a hard link costs no disk where the file system allows it."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    if dst.exists():
        dst.unlink()
    try:
        os.link(src, dst)
    except OSError:
        shutil.copyfile(src, dst)


def _csv_text(header: list[str], rows: list[list]) -> str:
    buf = _io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(header)
    w.writerows(rows)
    return buf.getvalue()


# -- exporters ---------------------------------------------------------------------------------------------------

def _export_coco_split(root: Path, split: str, count: int, seed: int, image_size: int, max_objects: int) -> list:
    """COCO 2017 layout: coco/<folder>/<12-digit id>.png + coco/annotations/captions_<folder>.json.

    The same files also appear as images/<folder>/… for the list files. Returns (relpath, class, attributes)."""
    folder = COCO_FOLDERS[split]
    id_offset = COCO_VAL_ID_OFFSET if split == "val" else 0
    images, annotations, rows = [], [], []
    for i in progress(range(count), desc=f"Shapes {folder}"):
        im = render_image(seed, split, i, image_size, max_objects)
        image_id = id_offset + i + 1
        fname = f"{image_id:012d}.png"
        coco_path = root / "coco" / folder / fname
        _write_file(coco_path, png_bytes(im.image))
        _link_or_copy(coco_path, root / "images" / folder / fname)
        images.append({"id": image_id, "file_name": fname, "height": image_size, "width": image_size,
                       "license": 1, "date_captured": ""})
        for c in im.captions:
            annotations.append({"id": id_offset * CAPTIONS_PER_IMAGE + len(annotations) + 1, "image_id": image_id,
                                "caption": c})
        rows.append((f"{folder}/{fname}", im.label, im.attributes))
    ann = {"info": {"description": f"bitlens Shapes world, {folder}, in the COCO captions layout",
                    "version": "1.0", "year": 2017, "contributor": "bitlens.data.shapes", "url": "",
                    "date_created": ""},
           "licenses": [{"id": 1, "name": "generated data", "url": ""}],
           "images": images, "annotations": annotations}
    io.write_text(root / "coco" / "annotations" / f"captions_{folder}.json", json.dumps(ann))
    return rows


def _export_lists(root: Path, train: list, val: list) -> None:
    """SUN-style `relpath class a1..a18` (1 / -1) and ImageNet-style `relpath class`; database = train."""
    def sun(rows):
        return "".join(f"{p} {c} " + " ".join("1" if a else "-1" for a in attrs) + "\n" for p, c, attrs in rows)

    def imagenet(rows):
        return "".join(f"{p} {c}\n" for p, c, _ in rows)

    for name, rows in (("train", train), ("test", val), ("database", train)):
        io.write_text(root / "lists" / f"{name}.txt", sun(rows))
        io.write_text(root / "lists" / f"imagenet_{name}.txt", imagenet(rows))


def broden_vocabulary() -> dict[str, list[str]]:
    """Label names per Broden category in label-number order (Broden suffixes colors -c and scenes -s)."""
    return {"object": list(SHAPES), "color": [f"{c}-c" for c in COLOR_NAMES], "texture": list(TEXTURES),
            "scene": [f"{s}-s" for s in SCENES]}


def _broden_synonyms(category: str, name: str) -> str:
    if category == "object":
        return ";".join(w for w in SHAPE_WORDS[name] if w != name)
    if category == "texture":
        return ";".join(w for w in TEXTURE_WORDS[name] if w and w != name)
    return ""


def _export_broden(root: Path, count: int, seed: int, image_size: int, mask_size: int, max_objects: int) -> dict:
    """Broden layout (NetDissect-Lite): index.csv, category.csv, label.csv, c_<category>.csv, images/.

    Label numbers are fixed by the vocabulary (object, color, texture, scene), so a concept keeps its number
    whatever the world's size. As in Broden, label 0 ('-', unlabelled) is implicit: label.csv starts at 1.
    frequency = images showing the label; coverage = the label's area summed over images, in whole masks."""
    out = root / "broden"
    vocab = broden_vocabulary()
    number: dict[tuple[str, str], int] = {}
    for cat in ("object", "color", "texture", "scene"):
        for name in vocab[cat]:
            number[(cat, name)] = len(number) + 1
    local_to_global = {cat: np.array([0] + [number[(cat, n)] for n in vocab[cat]], np.int32) for cat in vocab}
    frequency = np.zeros(len(number) + 1, np.int64)
    coverage = np.zeros(len(number) + 1, np.float64)
    # nearest-neighbour downsampling to the mask grid: the pixel nearest each mask cell's centre
    centers = ((np.arange(mask_size) + 0.5) * image_size / mask_size).astype(int)
    rows = []
    for i in progress(range(count), desc="Shapes broden"):
        im = render_image(seed, "broden", i, image_size, max_objects)
        stem = f"shapes/{i + 1:06d}"
        _write_file(out / "images" / f"{stem}.png", png_bytes(im.image))
        cells = dict.fromkeys(BRODEN_COLUMNS, "")
        for cat, full in (("object", im.shape_map), ("color", im.color_map), ("texture", im.texture_map)):
            glob = local_to_global[cat][full[np.ix_(centers, centers)]]
            ids, counts = np.unique(glob, return_counts=True)
            keep = ids > 0
            if not keep.any():
                continue
            frequency[ids[keep]] += 1
            coverage[ids[keep]] += counts[keep] / glob.size
            _write_file(out / "images" / f"{stem}_{cat}.png", png_bytes(encode_label_map(glob)))
            cells[cat] = f"{stem}_{cat}.png"
        scene_id = number[("scene", f"{im.scene}-s")]
        frequency[scene_id] += 1
        coverage[scene_id] += 1.0  # an image-level label covers the whole image
        cells["scene"] = str(scene_id)
        rows.append([f"{stem}.png", "val" if i % 5 == 4 else "train", image_size, image_size, mask_size, mask_size,
                     *(cells[c] for c in BRODEN_COLUMNS)])
    io.write_text(out / "index.csv", _csv_text(["image", "split", "ih", "iw", "sh", "sw", *BRODEN_COLUMNS], rows))
    io.write_text(out / "label.csv", _csv_text(
        ["number", "name", "category", "frequency", "coverage", "syns"],
        [[num, name, f"{cat}({frequency[num]})", int(frequency[num]), f"{coverage[num]:f}",
          _broden_synonyms(cat, name)] for (cat, name), num in number.items()]))
    cat_rows = []
    for cat in ("object", "color", "texture", "scene"):  # category.csv lists categories by their first label
        nums = [number[(cat, n)] for n in vocab[cat]]
        cat_rows.append([cat, min(nums), max(nums), len(nums), int(frequency[nums].sum())])
        io.write_text(out / f"c_{cat}.csv", _csv_text(
            ["code", "number", "name", "frequency", "coverage"],
            [[code, num, n, int(frequency[num]), f"{coverage[num]:f}"]
             for code, (n, num) in enumerate(zip(vocab[cat], nums), 1)]))
    io.write_text(out / "category.csv", _csv_text(["name", "first", "last", "count", "frequency"], cat_rows))
    return {"images": count, "labels": len(number), "mask_size": mask_size}


# -- the whole world ---------------------------------------------------------------------------------------------

MANAGED = ("coco", "images", "lists", "broden")  # what generate_world owns under its root
WORLD_VERSION = 4  # bump whenever the files change for the same arguments, so old worlds are rebuilt


def _validated_arguments(**args) -> dict:
    for k, v in args.items():
        if not isinstance(v, int) or isinstance(v, bool) or v < (0 if k in ("seed", "n_broden") else 1):
            raise ValueError(f"generate_world: {k} must be a {'non-negative' if k in ('seed', 'n_broden') else 'positive'}"
                             f" integer, got {v!r} (params: data.shapes.{k})")
    if args["image_size"] < 16:
        raise ValueError(f"generate_world: image_size {args['image_size']} is too small to draw shapes "
                         "(use at least 16; params: data.shapes.image_size)")
    if args["broden_mask_size"] > args["image_size"]:
        raise ValueError(f"generate_world: broden_mask_size {args['broden_mask_size']} is larger than image_size "
                         f"{args['image_size']} (Broden masks are at most image-sized; broden1_224 uses 112 for 224)")
    if args["max_objects"] > 5:
        raise ValueError(f"generate_world: max_objects {args['max_objects']} is above 5; the images get too crowded")
    return args


def _world_inputs(args: dict) -> dict:
    return {"version": WORLD_VERSION, "arguments": args}


def _world_outputs(root: Path) -> list[str]:
    """The index files of a world (lists, caption files, Broden's index): a world whose index files are gone or
    cut short is rebuilt."""
    found = [*root.glob("lists/*.txt"), *root.glob("coco/annotations/*.json"), *root.glob("broden/*.csv")]
    return sorted(str(f.relative_to(root)) for f in found)


def read_world(root) -> dict | None:
    """The world.json of a complete world under `root`, or None."""
    return cache.Record(Path(root) / "world.json").read()


def generate_world(root, *, seed: int = 0, image_size: int = 64, n_train: int = 2000, n_val: int = 500,
                   n_broden: int = 300, broden_mask_size: int = 32, max_objects: int = 3) -> dict:
    """Write the Shapes world and its exports under `root`; returns the sizes.

    world.json, written last, is the world's `bitlens.cache` record (inputs: the arguments and WORLD_VERSION;
    outputs: the index files) and also describes the world (vocabularies, class names, layout): when it matches
    the arguments nothing is redone. A world left half-written (world.partial present), generated with other
    arguments, or with an index file gone is cleared and rebuilt."""
    root = Path(root)
    args = _validated_arguments(seed=seed, image_size=image_size, n_train=n_train, n_val=n_val, n_broden=n_broden,
                                broden_mask_size=broden_mask_size, max_objects=max_objects)
    record = cache.Record(root / "world.json")
    old = record.valid(_world_inputs(args))
    if old is not None and not (root / "world.partial").exists():
        return old["sizes"]
    if record.read() is not None or (root / "world.partial").exists():
        record.clear()
        for name in MANAGED:  # stale files from a larger world would otherwise linger beside the new ones
            shutil.rmtree(root / name, ignore_errors=True)
    root.mkdir(parents=True, exist_ok=True)
    io.write_json(root / "world.partial", {"arguments": args})
    train = _export_coco_split(root, "train", n_train, seed, image_size, max_objects)
    val = _export_coco_split(root, "val", n_val, seed, image_size, max_objects)
    _export_lists(root, train, val)
    sizes = {"train2017": {"images": n_train, "captions": n_train * CAPTIONS_PER_IMAGE},
             "val2017": {"images": n_val, "captions": n_val * CAPTIONS_PER_IMAGE},
             "lists": {"train": n_train, "test": n_val, "database": n_train},
             "broden": _export_broden(root, n_broden, seed, image_size, broden_mask_size, max_objects),
             "classes": len(CLASS_NAMES), "attributes": len(ATTRIBUTE_NAMES)}
    world = {
        "version": WORLD_VERSION, "arguments": args, "sizes": sizes,
        "scenes": list(SCENES), "shapes": list(SHAPES), "colors": list(COLOR_NAMES), "textures": list(TEXTURES),
        "attribute_names": list(ATTRIBUTE_NAMES), "class_names": list(CLASS_NAMES),
        "class_rule": "class = shape index × 4 + texture index of the largest visible object",
        "broden_vocabulary": broden_vocabulary(),
        "layout": {
            "coco": "coco/annotations/captions_{train2017,val2017}.json + coco/{train2017,val2017}/ (5 captions each)",
            "lists": "lists/{train,test,database}.txt (SUN-style: relpath class + 18 attributes, 1 / -1), "
                     "lists/imagenet_{train,test,database}.txt (relpath class); relpaths are relative to images/",
            "splits": "train = the COCO train2017 images; test (queries) = the val2017 images; "
                      "database = the train2017 images (as in IBC's retrieval protocol)",
            "broden": "broden/ (index.csv, category.csv, label.csv, c_<category>.csv, images/); object, color, "
                      "texture per pixel (label id = R + 256·G), scene per image",
        },
    }
    record.write(_world_inputs(args), _world_outputs(root), **world)
    (root / "world.partial").unlink()
    return sizes
