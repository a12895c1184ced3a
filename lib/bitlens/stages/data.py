"""Stage 00_data: build the Shapes world (tiny profile) or check the real datasets, then read every dataset back
through the loaders the later stages use, with a gallery of what they hold."""
from __future__ import annotations

import time

import numpy as np
import pandas as pd

from bitlens import config
from bitlens.data import shapes
from bitlens.data.broden import Broden
from bitlens.data.coco import load_coco_captions, load_rgb
from bitlens.data.gallery import GalleryItem, gallery_figure
from bitlens.data.imagelist import ImageListDataset, read_list
from bitlens.labels import MISSING_LABEL
from bitlens.stage import Section

SIZES_CAPTION = ("Images (and captions, classes, attributes, labels) per dataset and part, as read by the bitlens "
                 "loaders.")
GALLERY_ITEMS = 6
BRODEN_ITEMS = 4


def build_world(stage) -> str | None:
    """Generate the Shapes world when the profile asks for it (reused when world.json matches); the sentence
    saying where and how long, or None."""
    S = stage.params["data"]["shapes"]
    if not S["generate"]:
        return None
    t0 = time.perf_counter()
    shapes.generate_world(stage.path(S["root"]), seed=S["seed"], image_size=S["image_size"], n_train=S["n_train"],
                          n_val=S["n_val"], n_broden=S["n_broden"], broden_mask_size=S["broden_mask_size"],
                          max_objects=S["max_objects"])
    seconds = round(time.perf_counter() - t0, 2)
    stage.record_seconds("generate_world", seconds)  # in the run manifest: a time is not a result
    return f"Shapes world in {stage.path(S['root'])} ({seconds} s; reused when world.json matches)"


def check_paths(params: dict, root) -> None:
    """Stop with every data path the profile lacks and how to get it."""
    missing = config.missing_data_paths(params, root)
    if missing:
        raise FileNotFoundError(f"profile '{params['profile']}' lacks {len(missing)} data path(s) (see "
                                f"data/README.md):\n" + "\n".join(f"  {key}: {path}\n      get it: {hint}"
                                                                  for key, path, hint in missing))


def count_columns(table: pd.DataFrame) -> pd.DataFrame:
    """Counts as integers, blank where a dataset has no such count."""
    for col in table.columns[2:]:
        table[col] = [("" if pd.isna(v) else int(v)) for v in table[col]]
    return table


def read_datasets(stage) -> tuple[dict, pd.DataFrame, dict, dict, Broden | None]:
    """(sizes for metrics.json, the sizes table, COCO items per split, image lists per (dataset, part), Broden)."""
    D = stage.params["data"]
    sizes, rows, coco, lists = {}, [], {}, {}
    if D["coco"]["root"]:
        for split in (D["coco"]["train_split"], D["coco"]["val_split"]):
            coco[split] = load_coco_captions(stage.path(D["coco"]["root"]), split)
            n_caps = sum(len(it.captions) for it in coco[split])
            sizes[f"coco_{split}"] = {"images": len(coco[split]), "captions": n_caps}
            rows.append({"dataset": "coco", "part": split, "images": len(coco[split]), "captions": n_caps})
    for name, L in D["imagelists"].items():
        for part in ("train", "test", "database"):
            if not L[part]:
                continue  # an empty database means the test list (IBC's protocol)
            lst = read_list(stage.path(L[part]), L["format"], L["num_attributes"])
            lists[(name, part)] = lst
            sizes[f"{name}_{part}"] = len(lst)
            rows.append({"dataset": name, "part": part, "images": len(lst), "classes": len(np.unique(lst.labels)),
                         "attributes": 0 if lst.attributes is None else lst.attributes.shape[1],
                         "missing labels": int((lst.labels == MISSING_LABEL).sum())})
    broden = None
    if D["broden"]["root"]:
        broden = Broden(stage.path(D["broden"]["root"]))
        sizes["broden"] = {"images": len(broden), "labels": broden.num_labels - 1, "categories": broden.categories}
        rows.append({"dataset": "broden", "part": "all", "images": len(broden), "labels": broden.num_labels - 1})
    return sizes, count_columns(pd.DataFrame(rows)), coco, lists, broden


def gallery_items(stage, world: dict | None, coco: dict, lists: dict) -> list[GalleryItem]:
    """The first training images with their class, the Shapes world's per-pixel truth, captions and attributes
    (a real profile: COCO images with their captions)."""
    D, S = stage.params["data"], stage.params["data"]["shapes"]
    train_split = D["coco"]["train_split"]
    items = []
    for j in range(GALLERY_ITEMS):
        if world is not None:
            truth = shapes.render_image(S["seed"], "train", j, S["image_size"], S["max_objects"])
            lst = lists[("shapes", "train")]
            img, label, attrs, _ = ImageListDataset(lst, stage.path(D["imagelists"]["shapes"]["root"]))[j]
            present = [a for a, v in zip(world["attribute_names"], attrs.tolist()) if v == 1]
            items.append(GalleryItem(np.asarray(img), world["class_names"][label],
                                     {"shape": truth.shape_map, "color": truth.color_map,
                                      "texture": truth.texture_map},
                                     [f"“{c}”" for c in coco[train_split][j].captions[:2]]
                                     + ["attrs: " + ", ".join(present)]))
        elif coco:
            it = coco[train_split][j]
            items.append(GalleryItem(np.asarray(load_rgb(it.path)), f"COCO {it.image_id}", {},
                                     [f"“{c}”" for c in it.captions[:2]]))
    return items


def broden_items(broden: Broden, n: int = BRODEN_ITEMS) -> list[GalleryItem]:
    """Broden records with their decoded masks and their image-level labels."""
    items = []
    for i in range(min(n, len(broden))):
        labels = broden.load_labels(i)
        whole = [broden.label_names[e] for es in labels.values() for e in es if isinstance(e, int)]
        maps = {cat: e for cat, es in labels.items() for e in es if not isinstance(e, int)}
        text = [f"{cat}: " + ", ".join(broden.label_names[v] for v in np.unique(m) if v) for cat, m in maps.items()]
        items.append(GalleryItem(broden.load_image(i), "image-level: " + ", ".join(whole), maps, text))
    return items


def run(stage) -> Section:
    P = stage.params
    out = Section()
    built = build_world(stage)
    if built:
        out.sentences.append(built)
    check_paths(P, stage.root)
    sizes, table, coco, lists, broden = read_datasets(stage)
    stage.save_table(table, "data_sizes", SIZES_CAPTION)
    out.tables["data_sizes"] = table
    world = shapes.read_world(stage.path(P["data"]["shapes"]["root"])) if P["data"]["shapes"]["generate"] else None
    items = gallery_items(stage, world, coco, lists)
    if items:
        out.figures["gallery"] = gallery_figure(items)
        stage.save_figure(out.figures["gallery"], "gallery")
    if broden is not None:
        out.figures["broden_sample"] = gallery_figure(broden_items(broden))
        stage.save_figure(out.figures["broden_sample"], "broden_sample")
    out.metrics = {"sizes": sizes, "world": None if world is None else {"arguments": world["arguments"],
                                                                         "version": world["version"]}}
    stage.write_metrics(out.metrics)
    return out
