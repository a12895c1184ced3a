"""Thresholds, masks and IoU tallies of a dissection (rules 3–5 of `bitlens.dissect`)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from bitlens.dissect.activations import MEMORY_BUDGET, _rows, default_threads, torch_threads
from bitlens.progress import progress


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
    gallery draws and `bitlens.dissect.placement` places."""
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


