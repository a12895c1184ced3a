"""Network Dissection of any layer on a Broden-format dataset: the IBC fork of NetDissect-Lite, vectorised.

With `reference=True` (the default) every rule follows the fork's code (see docs/dissection.md):

1. Images with no label in the dissected categories are dropped (thresholds and tallies alike).
2. Activations of the layer for every image are cached (float16 or float32 memmap, resumable). Preprocessing
   `caffe` (the fork's): subtract the Caffe mean R 123.68, G 116.779, B 103.939 from 0–255 pixels, divide by
   255 × 0.224; `torchvision`: ToTensor then per-channel ImageNet mean/std (for models trained that way).
3. Per unit, the threshold is the top-`quantile` (0.5%) activation over all positions of all kept images — exact
   (np.quantile, linear interpolation); the fork reads it from a streaming sketch.
4. Per image, each unit's map is upsampled bilinearly to the mask size (align_corners=False, the pixel-centre
   convention of the PIL resize the fork calls) and thresholded: M = map > threshold.
5. Tallies: |M ∩ L| per label (an image-level label counts all of |M|), |L| per label (image-level: every pixel),
   and |M|_c per category c: an image adds |M| to c only when M overlaps at least one pixel whose label has
   primary category c, or the image has an image-level label of c. (`reference=False`: every image that has
   any label of c adds |M|.) IoU = ∩ / (|M|_c + |L| − ∩), a label scored under its primary category among the
   dissected ones.
6. A unit's label is its best label over all categories; a unit whose best IoU is 0 is unlabelled (empty label).
   It is interpretable if IoU ≥ the threshold (0.04 upstream, 0.01 in the IBC fork).
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from bitlens import io
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


# -- activations ------------------------------------------------------------------

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


@torch.no_grad()
def cache_activations(fn, broden: Broden, cache_dir, input_size: int, batch_size: int = 64, device: str = "cpu",
                      key: str = "", preprocess: str = "caffe", dtype: str = "float16") -> np.ndarray:
    """(N, K, h, w) memmap of activations (`dtype` float16 or float32); resumes a half-written cache batch by batch."""
    if dtype not in CACHE_DTYPES:
        raise ValueError(f"unknown activation cache dtype {dtype!r}; valid: {', '.join(CACHE_DTYPES)}")
    np_dtype, suffix = CACHE_DTYPES[dtype]
    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    meta_path = cache_dir / "activations.json"
    data_path = cache_dir / f"activations.{suffix}"
    n = len(broden)
    first = fn(preprocess_image(broden.load_image(0), input_size, preprocess)[None].to(device))
    shape = (n,) + tuple(first.shape[1:])
    meta = {"shape": list(shape), "key": key, "preprocess": preprocess, "dtype": dtype, "done": 0}
    if meta_path.exists():
        old = json.loads(meta_path.read_text())
        if all(old.get(k) == meta[k] for k in ("shape", "key", "preprocess", "dtype")) and data_path.exists():
            meta = old
    if meta["done"] == 0 or not data_path.exists():
        np.memmap(data_path, dtype=np_dtype, mode="w+", shape=shape).flush()
        meta["done"] = 0
    acts = np.memmap(data_path, dtype=np_dtype, mode="r+", shape=shape)
    starts = range(meta["done"], n, batch_size)
    for s in progress(starts, desc="activations", total=len(starts)):
        x = torch.stack([preprocess_image(broden.load_image(i), input_size, preprocess)
                         for i in range(s, min(n, s + batch_size))])
        acts[s:s + len(x)] = fn(x.to(device)).float().cpu().numpy().astype(np_dtype)
        acts.flush()
        meta["done"] = min(n, s + batch_size)
        io.write_json(meta_path, meta)  # progress is recorded only after the batch is on disk
    return np.memmap(data_path, dtype=np_dtype, mode="r", shape=shape)


def open_activations(cache_dir) -> np.memmap:
    """The finished activation cache of a dissection (read-only), in the dtype it was written with."""
    cache_dir = Path(cache_dir)
    meta_path = cache_dir / "activations.json"
    if not meta_path.exists():
        raise FileNotFoundError(f"{meta_path}: no activation cache here; run the dissection (21_ibc_dissect) first")
    meta = json.loads(meta_path.read_text())
    dtype = meta.get("dtype", "float16")  # caches written before the dtype option were float16
    np_dtype, suffix = CACHE_DTYPES[dtype]
    if meta.get("done") != meta["shape"][0]:
        raise ValueError(f"{meta_path}: the cache is incomplete ({meta.get('done')} of {meta['shape'][0]} images); "
                         "re-run the dissection")
    return np.memmap(cache_dir / f"activations.{suffix}", dtype=np_dtype, mode="r", shape=tuple(meta["shape"]))


def _rows(acts: np.ndarray, images, a: int, b: int, cols: slice) -> np.ndarray:
    block = acts[a:b, cols] if images is None else acts[np.asarray(images[a:b]), cols]
    return np.asarray(block, dtype=np.float32)


def unit_thresholds(acts: np.ndarray, quantile: float = 0.005, images=None,
                    memory: int = MEMORY_BUDGET) -> np.ndarray:
    """Per unit, the exact (1 − quantile) quantile of its activations over all positions of the `images` rows
    (None: all), reading as many units at a time as fit in `memory` bytes."""
    N = acts.shape[0] if images is None else len(images)
    K = acts.shape[1]
    per_unit = max(1, N * int(np.prod(acts.shape[2:])) * 4 * 2)  # the float32 block and np.quantile's copy
    chunk = max(1, min(K, memory // per_unit))
    out = np.empty(K, np.float64)
    for a in progress(range(0, K, chunk), desc="quantiles", total=(K + chunk - 1) // chunk):
        block = _rows(acts, images, 0, N, slice(a, a + chunk))  # (N, c, h, w)
        flat = block.transpose(1, 0, 2, 3).reshape(block.shape[1], -1)
        out[a:a + chunk] = np.quantile(flat, 1.0 - quantile, axis=1)
    return out


def upsample(maps: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear upsampling of (B, K, h, w) maps to the mask size (align_corners=False)."""
    return F.interpolate(maps, size=size, mode="bilinear", align_corners=False)


def unit_mask(acts_map: np.ndarray, threshold: float, size: tuple[int, int]) -> np.ndarray:
    """One unit's map of one image upsampled (bilinear) to `size` and thresholded, as in the tally: the mask the
    gallery draws and `bitlens.mask_placement` places."""
    t = torch.as_tensor(np.asarray(acts_map, np.float32))[None, None]
    return (upsample(t, size)[0, 0] > threshold).numpy()


def _bilinear_taps(n_in: int, n_out: int):
    """Source indices and weights of bilinear resizing n_in → n_out (align_corners=False, edges clamped), as
    torch's upsample_bilinear2d computes them."""
    src = np.maximum((np.arange(n_out, dtype=np.float32) + np.float32(0.5)) * np.float32(n_in / n_out)
                     - np.float32(0.5), np.float32(0))
    i0 = np.minimum(src.astype(np.int64), n_in - 1)
    i1 = np.minimum(i0 + 1, n_in - 1)
    w1 = (src - i0).astype(np.float32)
    return i0, i1, (np.float32(1) - w1).astype(np.float32), w1


def _native_mask():
    """The compiled mask kernel, or None when it is not built (BITLENS_NATIVE=0 forces None)."""
    from bitlens import native

    return native.load("_mask")


def mask_pixels(maps: np.ndarray, thr: np.ndarray, size: tuple[int, int],
                threads: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Positive pixels of (bilinear upsample(maps) > thr) without building the full masks: (map index, pixel
    index) arrays, map-major. maps (n, h, w) float32, thr (n,). Width is resized first, then only the output
    rows that can exceed the threshold (a bilinear value is at most the larger of its two source rows) are.
    The compiled kernel (bitlens.native._mask: AVX-512, AVX2 or portable, chosen at run time) does this in one
    pass per map on `threads` OpenMP threads, with the same result for any count; this numpy code is its
    fallback."""
    maps = np.ascontiguousarray(maps, np.float32)
    thr = np.ascontiguousarray(thr, np.float32)
    n, h, w = maps.shape
    H, W = size
    c0, c1, cw0, cw1 = _bilinear_taps(w, W)
    r0, r1, rw0, rw1 = _bilinear_taps(h, H)
    native = _native_mask()
    if native is not None and n:
        cap = max(1024, n * H * W // 8)
        for _ in range(2):  # a second call only when the first buffers were too small
            out_m, out_p = np.empty(cap, np.int64), np.empty(cap, np.int64)
            count = native.mask_pixels(maps, thr, n, h, w, c0, c1, cw0, cw1, r0, r1, rw0, rw1, out_m, out_p,
                                       max(1, int(threads)))
            if count <= cap:
                return out_m[:count], out_p[:count]
            cap = count
    Aw = np.zeros((w, W), np.float32)  # width resize as one matrix product (two taps per output column)
    np.add.at(Aw, (c0, np.arange(W)), cw0)
    np.add.at(Aw, (c1, np.arange(W)), cw1)
    Y = maps @ Aw  # (n, h, W)
    above = Y > thr[:, None, None]
    row_hot = above.any(2)  # (n, h): a source row with a value above the threshold
    col_hot = above.any(1)  # (n, W): an output column with such a value in some source row
    m, r = np.divmod(np.flatnonzero(row_hot[:, r0] | row_hot[:, r1]), H)  # (map, output row) candidates
    if m.size == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    ci, col = np.divmod(np.flatnonzero(col_hot[m]), W)  # … crossed with the candidate columns of their map
    m, r = m[ci], r[ci]
    vals = Y[m, r0[r], col] * rw0[r] + Y[m, r1[r], col] * rw1[r]
    keep = vals > thr[m]
    return m[keep], r[keep] * W + col[keep]


# -- tallies ------------------------------------------------------------------------

@dataclass
class Tally:
    intersect: np.ndarray  # (K, L) |M ∩ L|
    label_area: np.ndarray  # (L,) |L|
    unit_area: np.ndarray  # (K, C) |M|_c (see the module docstring for which images add to it)
    categories: list[str]
    label_category: np.ndarray  # (L,) index of each label's primary category (−1: none)

    def iou(self) -> np.ndarray:
        """(K, L) IoU of each unit with each label, under the label's primary category."""
        cat = np.clip(self.label_category, 0, None)
        union = self.unit_area[:, cat] + self.label_area[None, :] - self.intersect
        out = np.where(union > 0, self.intersect / np.maximum(union, 1e-12), 0.0)
        out[:, self.label_category < 0] = 0.0
        return out


def dissected_categories(broden, categories=None) -> list[str]:
    """The requested categories the Broden set has, in the set's own order (the fork's category.csv order)."""
    want = broden.categories if categories is None else list(categories)
    return [c for c in broden.categories if c in want]


def label_categories(broden, cats: list[str]) -> np.ndarray:
    """(L,) each label's primary category index among `cats` (−1: label 0 or a label in none of them)."""
    out = np.full(broden.num_labels, -1, np.int64)
    for lab in range(1, broden.num_labels):
        pc = broden.primary_category(lab, among=cats)
        if pc:
            out[lab] = cats.index(pc)
    return out


def kept_images(broden, cats: list[str]) -> np.ndarray:
    """Indices of the images with at least one label in `cats` (the fork drops the others)."""
    return np.array([i for i in range(len(broden)) if broden.has_labels(i, cats)], np.int64)


class _Accumulator:
    """Adds one image's thresholded masks to the tallies. Only the units whose map exceeds their threshold
    somewhere are upsampled (the others have empty masks, as in the fork); every count then comes from the
    mask's pixels by bincount, so an image costs O(pixels + mask pixels), not O(units × pixels × labels)."""

    def __init__(self, K: int, L: int, label_cat: np.ndarray, reference: bool):
        self.K, self.L, self.C = K, L, max(1, int(label_cat.max(initial=-1)) + 1)
        self.label_cat, self.reference = label_cat, reference
        self.inter = np.zeros((K, L), np.float64)
        self.larea = np.zeros(L, np.float64)
        self.uarea = np.zeros((K, self.C), np.float64)

    def add(self, units: np.ndarray, rows: np.ndarray, pix: np.ndarray, P: int, maps: list[np.ndarray],
            scalars: list[int], cats_present: list[int]):
        """units: (n,) indices of the units that fire; (rows, pix): the mask pixels, rows indexing `units`;
        P: pixels per mask; maps: (P,) label-id arrays; scalars: image-level labels; cats_present: categories
        with any entry (for the non-reference rule)."""
        L = self.L
        labs = []
        for m in maps:
            lab = np.asarray(m).reshape(-1)
            try:
                cnt = np.bincount(lab, minlength=L)
            except (ValueError, TypeError):  # negative ids (or a float map): sanitise below
                cnt = None
            if cnt is None or len(cnt) > L:  # ids outside 0..L-1 count as unlabelled
                lab = lab.astype(np.int64)
                lab[(lab < 0) | (lab >= L)] = 0
                cnt = np.bincount(lab, minlength=L)
            cnt[0] = 0
            self.larea += cnt
            labs.append((lab, np.flatnonzero(cnt)))
        for s in scalars:
            if 0 < s < L:
                self.larea[s] += P
        if len(units) == 0:
            return
        m_count = np.bincount(rows, minlength=len(units)).astype(np.float64)
        hit = np.zeros((len(units), self.C), bool)
        remap = np.zeros(L, np.int64)
        for lab, present in labs:
            at = lab[pix]
            on = at > 0
            r, at = rows[on], at[on]
            if present.size == 0 or at.size == 0:
                continue
            remap[present] = np.arange(present.size)  # the labels of this map, densely numbered
            both = np.bincount(r * present.size + remap[at], minlength=len(units) * present.size)
            self.inter[np.ix_(units, present)] += both.reshape(len(units), present.size)
            c = self.label_cat[at]
            ok = c >= 0
            hit[r[ok], c[ok]] = True
        for s in scalars:
            if 0 < s < L:
                self.inter[units, s] += m_count
                if self.label_cat[s] >= 0:
                    hit[:, self.label_cat[s]] = True
        if self.reference:
            self.uarea[units] += m_count[:, None] * hit
        else:
            for c in cats_present:
                self.uarea[units, c] += m_count


def tally(acts: np.ndarray, thresholds: np.ndarray, broden, categories=None, batch_size: int = 32,
          device: str = "cpu", reference: bool = True, images=None, threads: int = 0,
          memory: int = MEMORY_BUDGET) -> Tally:
    """Tallies over the `images` (indices into broden and acts; None: every image, or with `reference` the
    images that have a label in the dissected categories). Masks are built `batch_size` images at a time (fewer
    when the upsampled batch could exceed `memory` bytes) with `threads` threads (0: default_threads()) for torch
    and for the compiled mask kernel."""
    cats = dissected_categories(broden, categories)
    L, K = broden.num_labels, acts.shape[1]
    label_cat = label_categories(broden, cats)
    acc = _Accumulator(K, L, label_cat, reference)
    if images is None:
        images = kept_images(broden, cats) if reference else np.arange(len(broden))
    images = np.asarray(images, np.int64)
    thresholds32 = np.asarray(thresholds, np.float32)
    thr = torch.as_tensor(thresholds32, device=device)
    n = len(images)
    threads = threads or default_threads()
    with torch_threads(threads):
        s = 0
        bar = progress(total=n, desc="tally")
        while s < n:
            rec0 = broden.records[int(images[s])]
            size = (int(rec0["sh"]), int(rec0["sw"]))
            step = max(1, min(batch_size, memory // max(1, K * size[0] * size[1] * 5)))
            idx = []
            for i in images[s:s + step]:  # a batch of consecutive images with the same mask size
                rec = broden.records[int(i)]
                if (int(rec["sh"]), int(rec["sw"])) != size:
                    break
                idx.append(int(i))
            maps = torch.as_tensor(np.asarray(acts[idx], dtype=np.float32), device=device)
            fires = maps.flatten(2).amax(2) > thr[None, :]  # (B, K): the unit exceeds its threshold somewhere
            b_of, k_of = (t.cpu().numpy() for t in fires.nonzero(as_tuple=True))
            sel, pix = mask_pixels(maps[fires].cpu().numpy(), thresholds32[k_of], size, threads)
            starts = np.searchsorted(b_of, np.arange(len(idx) + 1))
            pstarts = np.searchsorted(sel, starts)
            for j, i in enumerate(idx):
                pixel, scalars, present = [], [], []
                for cat, entries in broden.load_labels(i, cats).items():
                    present.append(cats.index(cat))
                    for e in entries:
                        (scalars if isinstance(e, (int, np.integer)) else pixel).append(e)
                a, b, pa, pb = starts[j], starts[j + 1], pstarts[j], pstarts[j + 1]
                acc.add(k_of[a:b], sel[pa:pb] - a, pix[pa:pb], size[0] * size[1], pixel,
                        [int(x) for x in scalars], present)
            s += len(idx)
            bar.update(len(idx))
        bar.close()
    return Tally(acc.inter, acc.larea, acc.uarea[:, :len(cats)], cats, label_cat)


# -- labels, outputs ---------------------------------------------------------------

def unit_labels(t: Tally, broden) -> list[dict]:
    """Per unit: best label overall and per category (label name, IoU, truth/activation/intersect). A label with
    IoU 0 is no label: a unit that matches nothing (a dead unit) gets category '' and label ''."""
    iou = t.iou()
    out = []
    for k in range(iou.shape[0]):
        per = {}
        for ci, cat in enumerate(t.categories):
            labs = np.flatnonzero(t.label_category == ci)
            if labs.size == 0:
                continue
            best = labs[int(np.argmax(iou[k, labs]))]
            score = float(iou[k, best])
            per[cat] = {"label": broden.label_names.get(int(best), str(best)) if score > 0 else "",
                        "label_id": int(best) if score > 0 else 0,
                        "truth": float(t.label_area[best]), "activation": float(t.unit_area[k, ci]),
                        "intersect": float(t.intersect[k, best]), "iou": score}
        best_cat = max(per, key=lambda c: per[c]["iou"]) if per else ""
        if best_cat and per[best_cat]["iou"] <= 0:
            best_cat = ""
        out.append({"unit": k + 1, "category": best_cat, "label": per[best_cat]["label"] if best_cat else "",
                    "score": per[best_cat]["iou"] if best_cat else 0.0, "categories": per})
    return out


def write_tally_csv(path, units: list[dict], categories: list[str]) -> Path:
    """NetDissect-Lite's tally.csv: unit, category, label, score, then per category label/truth/activation/intersect/iou."""
    import csv
    import io as _io

    buf = _io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    cols = ["unit", "category", "label", "score"]
    for c in categories:
        cols += [f"{c}-label", f"{c}-truth", f"{c}-activation", f"{c}-intersect", f"{c}-iou"]
    w.writerow(cols)
    for u in sorted(units, key=lambda u: -u["score"]):
        row = [u["unit"], u["category"], u["label"], f"{u['score']:.6f}"]
        for c in categories:
            d = u["categories"].get(c)
            row += ([d["label"], int(d["truth"]), int(d["activation"]), int(d["intersect"]), f"{d['iou']:.6f}"]
                    if d else ["", 0, 0, 0, "0"])
        w.writerow(row)
    return io.write_text(path, buf.getvalue())


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


def summarize(units: list[dict], threshold: float) -> dict:
    good = [u for u in units if u["label"] and u["score"] >= threshold]
    per_cat: dict[str, int] = {}
    for u in good:
        per_cat[u["category"]] = per_cat.get(u["category"], 0) + 1
    return {"units": len(units), "interpretable": len(good), "concepts": len({u["label"] for u in good}),
            "iou_threshold": threshold, "per_category": per_cat,
            "headline": f"{len(good)}/{len(units)} units covering {len({u['label'] for u in good})} concepts "
                        f"with IoU ≥ {threshold}"}


def concept_coverage(t: Tally, broden, threshold: float) -> list[dict]:
    """Per label: the unit that detects it best (any unit, not only those labelled with it)."""
    iou = t.iou()
    rows = []
    for lab in range(1, broden.num_labels):
        if t.label_category[lab] < 0 or t.label_area[lab] == 0:
            continue
        k = int(np.argmax(iou[:, lab]))
        rows.append({"concept": broden.label_names[lab], "category": t.categories[t.label_category[lab]],
                     "best_unit": k + 1, "best_iou": float(iou[k, lab]), "detected": bool(iou[k, lab] >= threshold)})
    return rows


def planted_concepts(units: list[dict], t: Tally, broden, threshold: float) -> list[dict]:
    """Per label: the bits *labelled* with it (their best label overall) and the best such IoU; `found` when one
    of them reaches `threshold` — the count the Shapes world is judged by."""
    rows = []
    for lab in range(1, broden.num_labels):
        if t.label_category[lab] < 0 or t.label_area[lab] == 0:
            continue
        name = broden.label_names[lab]
        mine = sorted(((u["score"], u["unit"]) for u in units if u["label"] == name), reverse=True)
        best = mine[0][0] if mine else 0.0
        rows.append({"concept": name, "category": t.categories[t.label_category[lab]],
                     "bits": " ".join(str(k) for _, k in mine), "best_iou": float(best),
                     "found": bool(mine and best >= threshold)})
    return rows


def base_concept(label: str) -> str:
    """Broden names colors 'red-c' and scenes 'sky-s'; attributes and read-outs use the plain names."""
    return label[:-2] if label.endswith(("-c", "-s")) else label


def starting_concepts(units: list[dict], starts: list[str], threshold: float) -> list[dict]:
    """For bits whose filters started as concept read-outs (`bit_init: readouts`; `starts[k]` is bit k + 1's
    concept): the dissected label and IoU beside the starting concept; `kept` when the label is that concept at
    IoU ≥ `threshold`."""
    by_unit = {u["unit"]: u for u in units}
    rows = []
    for k, start in enumerate(starts):
        u = by_unit.get(k + 1, {"label": "", "score": 0.0})
        rows.append({"bit": k + 1, "started_as": start, "label": u["label"], "iou": float(u["score"]),
                     "kept": bool(u["label"]) and base_concept(u["label"]) == start and u["score"] >= threshold})
    return rows


def bit_groups(units: list[dict], threshold: float) -> dict[str, list[int]]:
    """Concept → 1-based units labelled with it (IoU ≥ threshold), best first: the customized-retrieval groups."""
    groups: dict[str, list[tuple[float, int]]] = {}
    for u in units:
        if u["label"] and u["score"] >= threshold:
            groups.setdefault(u["label"], []).append((-u["score"], u["unit"]))
    return {c: [k for _, k in sorted(v)] for c, v in sorted(groups.items())}


def dissect(model: torch.nn.Module, broden: Broden, out_dir, layer: str = "conv_last", input_size: int = 227,
            quantile: float = 0.005, threshold: float = 0.04, categories=None, batch_size: int = 64,
            device: str = "cpu", top_n: int = 10, cache_key: str = "", reference: bool = True,
            preprocess: str = "caffe", cache_dtype: str = "float16", threads: int = 0) -> dict:
    """Dissect `layer` of `model`; writes tally.csv, units.json and summary.json into out_dir."""
    from bitlens.checkpoint import data_digest

    out_dir = Path(out_dir)
    model = model.eval().to(device)
    fn = layer_fn(model, layer)
    # the cache holds this model's activations of this layer at this size (the preprocessing and dtype are in its
    # meta): a folder dissected before with another checkpoint is recomputed, never reused
    key = data_digest({"weights": model.state_dict(), "layer": layer, "input_size": input_size, "given": cache_key})
    acts = cache_activations(fn, broden, out_dir / "cache", input_size, batch_size, device,
                             key=key, preprocess=preprocess, dtype=cache_dtype)
    if acts.ndim != 4:
        raise ValueError(f"layer {layer!r} gives activations of shape {acts.shape[1:]}; dissection needs conv maps")
    cats = dissected_categories(broden, categories)
    images = kept_images(broden, cats) if reference else np.arange(len(broden))
    if len(images) == 0:
        raise ValueError(f"{broden.root}: no image has a label in the dissected categories {', '.join(cats)}")
    thr = unit_thresholds(acts, quantile, None if len(images) == len(broden) else images)
    t = tally(acts, thr, broden, cats, batch_size, device, reference, images, threads)
    units = unit_labels(t, broden)
    tops, peaks = top_images(acts, top_n, images, with_peaks=True)
    for u, th, tp, pk in zip(units, thr, tops, peaks):
        u["threshold"] = float(th)
        # only images where the unit exceeds its threshold somewhere (a non-empty mask): a unit that never does
        # (a dead ReLU) has no top images, rather than an arbitrary tie order shared with every other dead unit
        u["top_images"] = [int(i) for i, v in zip(tp, pk) if v > th]
    write_tally_csv(out_dir / "tally.csv", units, t.categories)
    io.write_json(out_dir / "units.json", units)
    summary = summarize(units, threshold)
    summary["images"] = int(len(images))
    summary["coverage"] = concept_coverage(t, broden, threshold)
    summary["planted"] = planted_concepts(units, t, broden, threshold)
    summary["bit_groups"] = bit_groups(units, threshold)
    io.write_json(out_dir / "summary.json", summary)
    return {"units": units, "summary": summary, "tally": t, "activations": acts, "thresholds": thr}


def build_parser() -> argparse.ArgumentParser:
    from bitlens import cli

    ap = cli.parser("python -m bitlens.dissect", __doc__)
    ap.add_argument("--checkpoint", required=True, help="IBC checkpoint {'state_dict': ...} (ours or the authors')")
    ap.add_argument("--broden", required=True, help="Broden folder (index.csv, label.csv, category.csv, images/)")
    ap.add_argument("--out", required=True, help="output folder for tally.csv, units.json, summary.json, cache/")
    ap.add_argument("--layer", default="conv_last", help="module name; conv_last = the IBC bits")
    from bitlens.schema.dissect import DISSECT

    def ranged(key, flag):  # the params schema's ranges
        return cli.ranged(DISSECT[key], flag, f"dissect.{key}")

    ap.add_argument("--threshold", type=ranged("iou_threshold", "--threshold"), default=0.04,
                    help="IoU for an interpretable unit (as NetDissect-Lite; IBC fork: 0.01)")
    ap.add_argument("--quantile", type=ranged("quantile", "--quantile"), default=0.005,
                    help="top activation quantile that sets each unit's threshold")
    ap.add_argument("--input-size", type=int, default=0,
                    help="model input size (0 = from the checkpoint: 227 for AlexNet, 64 for the small backbone)")
    ap.add_argument("--batch-size", type=ranged("batch_size", "--batch-size"), default=64, help="images per batch")
    ap.add_argument("--preprocess", choices=PREPROCESS, default="caffe",
                    help="caffe: the fork's mean/255×0.224; torchvision: per-channel mean/std")
    ap.add_argument("--no-reference", action="store_true",
                    help="keep images without labels and use the simple per-category area instead of the fork's rules")
    ap.add_argument("--cache-dtype", choices=tuple(CACHE_DTYPES), default="float16",
                    help="activation cache precision (the fork keeps float64)")
    ap.add_argument("--threads", type=ranged("threads", "--threads"), default=0,
                    help="torch threads in the tally (0 = half the cores, at least 1)")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu",
                    help="torch device")
    return ap


def main(argv=None) -> int:
    from bitlens.ibc.model import infer_architecture, load_ibc_checkpoint

    args = build_parser().parse_args(argv)
    try:
        arch = infer_architecture(args.checkpoint)
        size = args.input_size or arch.get("input_size") or (227 if arch["backbone"] == "alexnet" else 64)
        model = load_ibc_checkpoint(args.checkpoint, size)
        res = dissect(model, Broden(args.broden), args.out, args.layer, size, args.quantile, args.threshold,
                      batch_size=args.batch_size, device=args.device, reference=not args.no_reference,
                      preprocess=args.preprocess, cache_dtype=args.cache_dtype, threads=args.threads)
    except (FileNotFoundError, ValueError) as e:
        print(f"python -m bitlens.dissect: error: {e}", file=sys.stderr)
        return 2
    print(res["summary"]["headline"])
    print(f"tally: {Path(args.out) / 'tally.csv'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
