"""The activation cache of a dissection: every Broden image through the model, preprocessed as the fork does,
kept as a float16/float32 memmap that resumes batch by batch; and the images that excite each unit most."""
from __future__ import annotations

import contextlib
import os
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from bitlens import cache
from bitlens.data.broden import Broden
from bitlens.ibc.images import IMAGENET_MEAN, IMAGENET_STD
from bitlens.progress import progress

CAFFE_MEAN_RGB = (123.68, 116.779, 103.939)  # the fork stores it as BGR (103.939, 116.779, 123.68)
CAFFE_SCALE = 255.0 * 0.224  # one std for all channels
PREPROCESS = ("caffe", "torchvision")
CACHE_DTYPES = {"float16": (np.float16, "f16"), "float32": (np.float32, "f32")}
MEMORY_BUDGET = 256 * 2 ** 20  # bytes a quantile / tally / top-image chunk may hold


def default_threads() -> int:
    """Half the cores (at least 1, at most 8): a busy 2-core machine gets 1 thread and is not oversubscribed."""
    return max(1, min(8, (os.cpu_count() or 2) // 2))


@contextlib.contextmanager
def torch_threads(n: int):
    """Run a block with `n` torch threads (0: default_threads()), restoring the previous count after."""
    old = torch.get_num_threads()
    torch.set_num_threads(n or default_threads())
    try:
        yield
    finally:
        torch.set_num_threads(old)


def layer_fn(model: torch.nn.Module, layer: str):
    """x → activations of `layer`. 'conv_last' on an IBC model = relu(conv_last(features(x))), the bits."""
    if layer == "conv_last" and hasattr(model, "bit_activations"):
        return model.bit_activations
    modules = dict(model.named_modules())
    if layer not in modules:
        names = [n for n in modules if n][:40]
        raise ValueError(f"model has no layer {layer!r}; layers: {', '.join(names)}"
                         + (" …" if len(modules) > 41 else ""))
    target = modules[layer]

    def run(x):
        store = {}
        h = target.register_forward_hook(lambda m, i, o: store.__setitem__("out", o))
        try:
            model(x)
        finally:
            h.remove()
        return store["out"]

    return run


def preprocess_image(img: np.ndarray, size: int, mode: str = "caffe") -> torch.Tensor:
    """uint8 (h, w, 3) RGB → normalised (3, size, size) float tensor (bilinear resize on 0–255 values if needed)."""
    if mode not in PREPROCESS:
        raise ValueError(f"unknown preprocessing {mode!r}; valid: {', '.join(PREPROCESS)}")
    a = np.asarray(img)
    if a.ndim == 2:
        a = np.repeat(a[..., None], 3, axis=2)  # grey images, as the fork's normalize_image
    t = torch.from_numpy(np.array(a, dtype=np.float32)).permute(2, 0, 1)[None]
    if t.shape[-1] != size or t.shape[-2] != size:
        t = F.interpolate(t, size=(size, size), mode="bilinear", align_corners=False)
    if mode == "caffe":
        return ((t - torch.tensor(CAFFE_MEAN_RGB)[:, None, None]) / CAFFE_SCALE)[0]
    t = t / 255.0
    return ((t - torch.tensor(IMAGENET_MEAN)[:, None, None]) / torch.tensor(IMAGENET_STD)[:, None, None])[0]


ACTIVATIONS_RECORD = "activations.json"


@torch.no_grad()
def cache_activations(fn, broden: Broden, cache_dir, input_size: int, batch_size: int = 64, device: str = "cpu",
                      key: str = "", preprocess: str = "caffe", dtype: str = "float16") -> np.ndarray:
    """(N, K, h, w) memmap of activations (`dtype` float16 or float32); resumes a half-written cache batch by batch.

    The cache is a `bitlens.cache` record (`activations.json`): its inputs are the shape, `key`, preprocessing
    and dtype; its state, the images done (rewritten only after their batch is on disk)."""
    if dtype not in CACHE_DTYPES:
        raise ValueError(f"unknown activation cache dtype {dtype!r}; valid: {', '.join(CACHE_DTYPES)}")
    np_dtype, suffix = CACHE_DTYPES[dtype]
    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    record = cache.Record(cache_dir / ACTIVATIONS_RECORD)
    data_name = f"activations.{suffix}"
    data_path = cache_dir / data_name
    n = len(broden)
    first = fn(preprocess_image(broden.load_image(0), input_size, preprocess)[None].to(device))
    shape = (n,) + tuple(first.shape[1:])
    inputs = {"shape": list(shape), "key": key, "preprocess": preprocess, "dtype": dtype}
    state = record.state(inputs) if data_path.exists() else None
    done = int(state["done"]) if state else 0
    if done == 0:
        record.clear()
        np.memmap(data_path, dtype=np_dtype, mode="w+", shape=shape).flush()
    acts = np.memmap(data_path, dtype=np_dtype, mode="r+", shape=shape)
    starts = range(done, n, batch_size)
    for s in progress(starts, desc="activations", total=len(starts)):
        x = torch.stack([preprocess_image(broden.load_image(i), input_size, preprocess)
                         for i in range(s, min(n, s + batch_size))])
        acts[s:s + len(x)] = fn(x.to(device)).float().cpu().numpy().astype(np_dtype)
        acts.flush()
        record.write(inputs, [data_name], state={"done": min(n, s + batch_size)}, shape=list(shape), dtype=dtype)
    return np.memmap(data_path, dtype=np_dtype, mode="r", shape=shape)


def open_activations(cache_dir) -> np.memmap:
    """The finished activation cache of a dissection (read-only), in the dtype it was written with."""
    cache_dir = Path(cache_dir)
    meta_path = cache_dir / ACTIVATIONS_RECORD
    rec = cache.Record(meta_path).read()
    if rec is None or "shape" not in rec:
        raise FileNotFoundError(f"{meta_path}: no activation cache here; run the dissection (21_ibc_dissect) first")
    np_dtype, suffix = CACHE_DTYPES[rec["dtype"]]
    done = (rec.get("state") or {}).get("done")
    if done != rec["shape"][0]:
        raise ValueError(f"{meta_path}: the cache is incomplete ({done} of {rec['shape'][0]} images); "
                         "re-run the dissection")
    return np.memmap(cache_dir / f"activations.{suffix}", dtype=np_dtype, mode="r", shape=tuple(rec["shape"]))


def _rows(acts: np.ndarray, images, a: int, b: int, cols: slice) -> np.ndarray:
    block = acts[a:b, cols] if images is None else acts[np.asarray(images[a:b]), cols]
    return np.asarray(block, dtype=np.float32)



def top_images(acts: np.ndarray, n: int = 10, images=None, memory: int = MEMORY_BUDGET,
               with_peaks: bool = False):
    """(K, n) image indices (into acts) with the highest max activation per unit, best first (ties: lower
    index), among `images` (None: all); the maps are read a bounded chunk of images at a time. `with_peaks`:
    also the (K, n) max activations of those images."""
    rows = np.arange(acts.shape[0]) if images is None else np.asarray(images, np.int64)
    per_image = max(1, int(np.prod(acts.shape[1:])) * 4)
    chunk = max(1, memory // per_image)
    peak = np.empty((len(rows), acts.shape[1]), np.float32)
    for a in range(0, len(rows), chunk):
        peak[a:a + chunk] = _rows(acts, rows, a, a + chunk, slice(None)).max(axis=(2, 3))
    order = np.argsort(-peak, axis=0, kind="stable")[:n]
    if with_peaks:
        return rows[order].T, np.take_along_axis(peak, order, axis=0).T
    return rows[order].T

