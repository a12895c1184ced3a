"""In-kit pretraining of the tiny IBC backbone on the Shapes world's concept maps.

The paper dissects an IBC network whose AlexNet backbone was pretrained on ImageNet, so its features already
respond to objects, colours and textures before hashing starts. The tiny profile gets the same shape: before IBC
training, the small backbone learns to predict, at every cell of its feature map, the shape, colour and texture
under it (the world's own per-pixel maps, background included), plus the image's scene. Only the backbone's
weights are kept (a state dict of `small_features()`), and IBC training starts from them; beside them, the
read-outs (the 1×1 heads' weights) are kept, so that IBC's bit filters can start from them
(`ibc.experiments.<name>.bit_init: readouts`, see `bitlens.ibc.model.init_bits_from_readouts`).

    weights = pretrain_backbone(small_features(), world_seed=0, n_images=2000, steps=800)
    torch.save(weights["state_dict"], path)
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from bitlens import cache, io
from bitlens.data import shapes
from bitlens.ibc.images import IMAGENET_MEAN, IMAGENET_STD  # the IBC trainer's normalisation
from bitlens.ibc.model import readouts_path, small_features
from bitlens.progress import progress

HEADS = {"shape": len(shapes.SHAPES) + 1, "color": len(shapes.COLOR_NAMES) + 1,
         "texture": len(shapes.TEXTURES) + 1}  # + 1: background
CONCEPTS = {"shape": shapes.SHAPES, "color": shapes.COLOR_NAMES, "texture": shapes.TEXTURES}  # head row j + 1
LOSS_TERMS = (*HEADS, "scene")


@dataclass
class ConceptSet:
    images: torch.Tensor  # (N, 3, S, S) normalised as the IBC trainer does (torchvision mean/std)
    maps: dict[str, torch.Tensor]  # per head: (N, S, S) int64 class per pixel, 0 = background
    scene: torch.Tensor  # (N,) scene index


def concept_set(world_seed: int, n_images: int, image_size: int = 64, max_objects: int = 3,
                split: str = "train") -> ConceptSet:
    """The first `n_images` images of a Shapes split with their shape / colour / texture maps and scenes."""
    imgs, maps, scenes = [], {k: [] for k in HEADS}, []
    for i in progress(range(n_images), desc="pretrain data"):
        im = shapes.render_image(world_seed, split, i, image_size, max_objects)
        imgs.append(im.image)
        maps["shape"].append(im.shape_map)
        maps["color"].append(im.color_map)
        maps["texture"].append(im.texture_map)
        scenes.append(shapes.SCENES.index(im.scene))
    x = torch.from_numpy(np.stack(imgs)).permute(0, 3, 1, 2).float().div(255.0)
    x = (x - torch.tensor(IMAGENET_MEAN)[:, None, None]) / torch.tensor(IMAGENET_STD)[:, None, None]
    return ConceptSet(x, {k: torch.from_numpy(np.stack(v).astype(np.int64)) for k, v in maps.items()},
                      torch.tensor(scenes))


class ConceptHeads(nn.Module):
    """1×1 convolutions on the feature map, one per pixel-level concept category, and a pooled scene head."""

    def __init__(self, channels: int):
        super().__init__()
        self.pixel = nn.ModuleDict({k: nn.Conv2d(channels, n, 1) for k, n in HEADS.items()})
        self.scene = nn.Linear(channels, len(shapes.SCENES))

    def forward(self, feat):
        return {k: h(feat) for k, h in self.pixel.items()}, self.scene(feat.mean((2, 3)))


def _targets_at(maps: torch.Tensor, size: int) -> torch.Tensor:
    """Per-pixel classes sampled at the centres of a size×size grid (nearest neighbour)."""
    n = maps.shape[-1]
    centres = ((torch.arange(size) + 0.5) * n / size).long()
    return maps[:, centres][:, :, centres]


def concept_loss(features: nn.Module, heads: ConceptHeads, x, maps: dict, scene,
                 background_weight: float = 1.0, loss_weights: dict | None = None) -> tuple[torch.Tensor, dict]:
    """Weighted sum of the per-cell cross-entropies (shape, colour, texture; background cells weighted by
    `background_weight`, since most cells are background) and the scene cross-entropy; `loss_weights` maps
    LOSS_TERMS to their weights (default 1 each). The returned dict holds the unweighted terms."""
    w = _loss_weights(loss_weights)
    feat = features(x)
    pix, sc = heads(feat)
    size = feat.shape[-1]
    losses = {k: F.cross_entropy(pix[k], _targets_at(maps[k], size),
                                 weight=torch.tensor([background_weight] + [1.0] * (n - 1)))
              for k, n in HEADS.items()}
    losses["scene"] = F.cross_entropy(sc, scene)
    return sum(w[k] * v for k, v in losses.items()), {k: float(v.detach()) for k, v in losses.items()}


def _loss_weights(loss_weights: dict | None) -> dict:
    w = {k: 1.0 for k in LOSS_TERMS}
    unknown = sorted(set(loss_weights or {}) - set(w))
    if unknown:
        raise ValueError(f"unknown pretraining loss term(s) {', '.join(unknown)}; valid: {', '.join(LOSS_TERMS)}")
    w.update({k: float(v) for k, v in (loss_weights or {}).items()})
    return w


@torch.no_grad()
def concept_accuracy(features: nn.Module, heads: ConceptHeads, data: ConceptSet, batch: int = 200) -> dict:
    """Per head: accuracy over the object cells (background excluded) and, for the scene, over images."""
    features.eval()
    heads.eval()
    hit = {k: 0 for k in (*HEADS, "scene")}
    tot = {k: 0 for k in (*HEADS, "scene")}
    for s in range(0, len(data.images), batch):
        feat = features(data.images[s:s + batch])
        pix, sc = heads(feat)
        for k in HEADS:
            t = _targets_at(data.maps[k][s:s + batch], feat.shape[-1])
            on = t > 0
            hit[k] += int((pix[k].argmax(1)[on] == t[on]).sum())
            tot[k] += int(on.sum())
        hit["scene"] += int((sc.argmax(1) == data.scene[s:s + batch]).sum())
        tot["scene"] += len(sc)
    return {k: hit[k] / max(1, tot[k]) for k in hit}


def pretrain_backbone(features: nn.Module, world_seed: int = 0, n_images: int = 2000, steps: int = 240,
                      batch_size: int = 64, lr: float = 3e-3, seed: int = 0, image_size: int = 64,
                      max_objects: int = 3, n_val: int = 200, background_weight: float = 1.0,
                      loss_weights: dict | None = None) -> dict:
    """Train `features` (a small_features() module) to predict the concept maps; returns {'state_dict': the
    backbone's weights, 'readouts': the pixel heads' weights (readouts_from_heads), 'accuracy': held-out
    accuracy per head (Shapes 'val' images), 'loss': last losses}. Deterministic on CPU for a given seed and
    initial `features` (ensure_pretrained draws those from the seed too)."""
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    train = concept_set(world_seed, n_images, image_size, max_objects, "train")
    with torch.no_grad():
        channels = features(train.images[:1]).shape[1]
    heads = ConceptHeads(channels)
    features.to(memory_format=torch.channels_last)  # faster convolutions on CPU, same values
    heads.to(memory_format=torch.channels_last)
    opt = torch.optim.Adam(list(features.parameters()) + list(heads.parameters()), lr=lr, fused=True)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=max(1, steps))
    last = {}
    features.train()
    heads.train()
    for _ in progress(range(steps), desc="pretrain backbone"):
        idx = torch.randint(0, n_images, (batch_size,), generator=g)
        x = train.images[idx]
        flip = torch.rand(batch_size, generator=g) < 0.5  # mirror half the batch (the IBC trainer flips too)
        x = torch.where(flip[:, None, None, None], x.flip(-1), x).contiguous(memory_format=torch.channels_last)
        maps = {k: torch.where(flip[:, None, None], v[idx].flip(-1), v[idx]) for k, v in train.maps.items()}
        loss, last = concept_loss(features, heads, x, maps, train.scene[idx], background_weight, loss_weights)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
    val = concept_set(world_seed, n_val, image_size, max_objects, "val") if n_val else None
    acc = concept_accuracy(features, heads, val) if val is not None else {}
    features.eval()
    return {"state_dict": {k: v.detach().clone() for k, v in features.state_dict().items()},
            "readouts": readouts_from_heads(heads), "accuracy": acc, "loss": last}


def readouts_from_heads(heads: ConceptHeads) -> dict:
    """{category: {'weight': (1 + n, C), 'bias': (1 + n,), 'concepts': [n names]}}: row 0 is background, row
    j + 1 the concept `concepts[j]` — each a linear read-out of the backbone's channels at one cell."""
    return {k: {"weight": h.weight.detach()[:, :, 0, 0].clone(), "bias": h.bias.detach().clone(),
                "concepts": list(CONCEPTS[k])}
            for k, h in heads.pixel.items()}


PRETRAIN_VERSION = 3  # bump when the recipe changes, so stale weights files are rebuilt


def ensure_pretrained(path, features_factory, world_seed: int = 0, image_size: int = 64, max_objects: int = 3,
                      **options) -> dict:
    """Pretrained backbone weights at `path` (a state dict, plus `<path>.readouts.pt` with the concept read-outs),
    with `<path>.json`, their `bitlens.cache` record (inputs: the recipe; it also keeps the recipe and the
    held-out accuracy), written last: reused when the recipe matches and both files are intact, else trained with
    pretrain_backbone(features_factory(), …) — the factory called with torch seeded by `options['seed']`, so the
    initial weights, too, follow the recipe — and written atomically. Returns the record."""
    path = Path(path)
    recipe = {"version": PRETRAIN_VERSION, "world_seed": world_seed, "image_size": image_size,
              "max_objects": max_objects, **options}
    record = cache.Record(path.with_name(path.name + ".json"))
    outputs = [path.name, readouts_path(path).name]
    meta = record.valid(recipe, outputs)
    if meta is not None:
        return meta
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(options.get("seed", 0)))
        features = features_factory()
    res = pretrain_backbone(features, world_seed=world_seed, image_size=image_size, max_objects=max_objects,
                            **options)
    path.parent.mkdir(parents=True, exist_ok=True)
    record.clear()  # the record marks a complete pair: drop it before either file changes
    with io.atomic_path(path, suffix=".pt") as tmp:
        torch.save(res["state_dict"], tmp)
    with io.atomic_path(readouts_path(path), suffix=".pt") as tmp:
        torch.save(res["readouts"], tmp)
    record.write(recipe, outputs, recipe=recipe, accuracy=res["accuracy"], loss=res["loss"])
    return record.read()


def pretrain_experiments(jobs: dict, world_seed: int, image_size: int, max_objects: int, n_images: int,
                         steps: int, lr: float, batch_size: int, background_weight: float, loss_weights: dict,
                         log=print) -> dict:
    """ensure_pretrained() for every `jobs` entry {name: (weights path, backbone width, seed)} on the first
    `n_images` training images of the Shapes world (`world_seed`, `image_size`, `max_objects`), with one recipe
    (`steps`, `lr`, `batch_size`, `background_weight`, `loss_weights`). {name: record}."""
    out = {}
    for name, (path, width, seed) in jobs.items():
        out[name] = ensure_pretrained(path, lambda: small_features(width), world_seed=world_seed,
                                      image_size=image_size, max_objects=max_objects, n_images=n_images, seed=seed,
                                      steps=steps, lr=lr, batch_size=batch_size, background_weight=background_weight,
                                      loss_weights=dict(loss_weights))
        log(f"{name}: backbone pretrained on the Shapes concept maps → {Path(path).name}; held-out accuracy "
            + ", ".join(f"{k} {v:.2f}" for k, v in out[name]["accuracy"].items()))
    return out
