"""Network Dissection at Broden scale: quantile + tally, bitlens against the IBC fork's algorithm, same process.

The set is generated in memory in Broden's shape (default 10,000 images, 112² masks: a per-pixel `object` map
and `color` map for every image, a `part` map for a third, an image-level `scene` for half and `texture` for
the rest); the activations (256 units, 7×7) come from a fixed random conv net on smooth random images. Both
sides read the same arrays through the same label reader, so file decoding is not timed on either side.

The peer is a port of the fork's loop (feature_operation.py, tally_job), run here on CPU:
- quantile: np.percentile per unit on the float64 activations (the line the fork keeps commented out; its own
  streaming sketch is not ported, so the peer's quantile is exact too);
- tally: per image, per unit whose map exceeds its threshold, a PIL bilinear resize of the float map to the
  mask size (what scipy's imresize(mode='F') did), argwhere, bincount of the labels under the mask, the
  category test through the label→category one-hot, and the final IoU / primary-category argmax.
Generating the data is not timed. Both sides get a warm-up on the first 200 images, then the minimum of
`--repeat` (3) full runs, interleaved. Peak memory is the largest RSS growth over the start of a timed block.

    python benchmarks/bench_dissect.py [--images 10000] [--mask 112] [--units 256] [--peer-images N] [--repeat 3]
"""
from __future__ import annotations

import argparse
import os
import sys
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from common import cpu_count, goal_limit, loadavg, ratio_row, show, write  # noqa: E402

from bitlens.dissect import activations as dis_acts, labels as dis_labels, tally as dis_tally  # noqa: E402

CATEGORIES = ("object", "part", "color", "scene", "texture")
N_LABELS = {"object": 40, "part": 20, "color": 11, "scene": 30, "texture": 47}


class ArrayBroden:
    """An in-memory Broden set with the reader interface the tally uses (records, load_labels, has_labels …)."""

    def __init__(self, n: int, mask: int, seed: int = 0):
        rng = np.random.default_rng(seed)
        self.categories = list(CATEGORIES)
        first, self.first = 1, {}
        self.label_names, self._cat = {0: "-"}, {}
        for c in CATEGORIES:
            self.first[c] = first
            for j in range(N_LABELS[c]):
                self.label_names[first + j] = f"{c}{j}"
                self._cat[first + j] = c
            first += N_LABELS[c]
        self.num_labels = first
        self.records = [{"sh": mask, "sw": mask, "_line": i + 2} for i in range(n)]
        low = max(2, mask // 8)  # label maps are blocky: low-resolution draws, enlarged on read
        self.reps = -(-mask // low)
        self.mask = mask
        self.low = {c: (self.first[c] + rng.integers(0, N_LABELS[c], (n, low, low))).astype(np.int32)
                    for c in ("object", "part", "color")}
        self.low["object"][rng.random((n, low, low)) < 0.1] = 0  # some unlabelled pixels
        self.has_part = rng.random(n) < 1 / 3
        self.scene = np.where(rng.random(n) < 0.5, self.first["scene"] + rng.integers(0, N_LABELS["scene"], n), 0)
        self.texture = np.where(self.scene == 0, self.first["texture"] + rng.integers(0, N_LABELS["texture"], n), 0)

    def __len__(self):
        return len(self.records)

    def primary_category(self, label_id, among=None):
        c = self._cat.get(int(label_id), "")
        return c if among is None or c in among else ""

    def has_labels(self, i, categories=None):
        return True

    def _map(self, c, i):
        m = self.low[c][i].repeat(self.reps, 0).repeat(self.reps, 1)
        return m[:self.mask, :self.mask]

    def load_labels(self, i, categories=None):
        out = {"object": [self._map("object", i)], "color": [self._map("color", i)]}
        if self.has_part[i]:
            out["part"] = [self._map("part", i)]
        if self.scene[i]:
            out["scene"] = [int(self.scene[i])]
        if self.texture[i]:
            out["texture"] = [int(self.texture[i])]
        return {c: v for c, v in out.items() if categories is None or c in categories}


def random_net_activations(n: int, units: int, size: int = 7, seed: int = 0) -> np.ndarray:
    """(n, units, size, size) float32: a fixed random conv net (ReLU) on smooth random 8·size-px images."""
    import torch

    g = torch.Generator().manual_seed(seed)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 64, 5, stride=2, padding=2), torch.nn.ReLU(),
                              torch.nn.Conv2d(64, 128, 3, stride=2, padding=1), torch.nn.ReLU(),
                              torch.nn.Conv2d(128, units, 3, stride=2, padding=1), torch.nn.ReLU())
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * (0.1 if p.ndim == 1 else (2 / p[0].numel()) ** 0.5))
    out = np.empty((n, units, size, size), np.float32)
    with torch.no_grad():
        for s in range(0, n, 500):
            b = min(n, s + 500) - s
            x = torch.randn(b, 3, size, size, generator=g)
            x = torch.nn.functional.interpolate(x, scale_factor=8, mode="bilinear", align_corners=False)
            out[s:s + b] = net(x).numpy()
    return out


# -- the peer: a port of the fork's quantile and tally ---------------------------------------------

def fork_quantile(features: np.ndarray, quantile: float) -> np.ndarray:
    return np.percentile(features.transpose(1, 0, 2, 3).reshape(features.shape[1], -1), 100 * (1 - quantile),
                         axis=1)


def fork_tally(features: np.ndarray, threshold: np.ndarray, data, categories) -> list[dict]:
    """The fork's tally_job over every image, then its IoU and per-category labelling (units best first)."""
    from PIL import Image

    units, labels = features.shape[1], data.num_labels
    cats = list(categories)
    primary = np.array([cats.index(data.primary_category(j, cats)) if data.primary_category(j, cats)
                        else len(cats) - 1 for j in range(labels)])  # the fork's max(..., ic) puts orphans last
    labelcat = np.zeros((labels, len(cats)))
    labelcat[np.arange(labels), primary] = 1
    tally_both = np.zeros((units, labels))
    tally_units = np.zeros(units)
    tally_units_cat = np.zeros((units, len(cats)))
    tally_labels = np.zeros(labels)
    for img_index in range(features.shape[0]):
        concept_map = data.load_labels(img_index, cats)
        sh, sw = data.records[img_index]["sh"], data.records[img_index]["sw"]
        scalars, pixels = [], []
        for cat in cats:
            group = concept_map.get(cat, [])
            if group and not isinstance(group[0], (int, np.integer)):
                pixels.append(np.stack(group))
            else:
                scalars += list(group)
        for scalar in scalars:
            tally_labels[scalar] += sh * sw
        if pixels:
            pixels = np.concatenate(pixels)
            tally_label = np.bincount(pixels.ravel())
            tally_label[0] = 0
            tally_labels[:len(tally_label)] += tally_label
        for unit_id in range(units):
            feature_map = features[img_index][unit_id]
            if feature_map.max() > threshold[unit_id]:
                mask = np.asarray(Image.fromarray(feature_map.astype(np.float32), mode="F")
                                  .resize((sw, sh), Image.BILINEAR), dtype=np.float64)
                indexes = np.argwhere(mask > threshold[unit_id])
                tally_units[unit_id] += len(indexes)
                tally_cat = np.zeros(len(cats))
                if len(pixels) > 0:
                    tally_bt = np.bincount(pixels[:, indexes[:, 0], indexes[:, 1]].ravel())
                    if len(tally_bt) > 0:
                        tally_bt[0] = 0
                    tally_cat = np.dot(tally_bt[None, :], labelcat[:len(tally_bt), :])[0]
                    tally_both[unit_id, :len(tally_bt)] += tally_bt
                for scalar in scalars:
                    tally_cat += labelcat[scalar]
                    tally_both[unit_id, scalar] += len(indexes)
                tally_units_cat[unit_id] += len(indexes) * (tally_cat > 0)
    tally_units_cat = np.dot(tally_units_cat, labelcat.T)
    iou = tally_both / (tally_units_cat + tally_labels[np.newaxis, :] - tally_both + 1e-10)
    pciou = np.array([iou * (primary == ci)[np.newaxis, :] for ci in range(len(cats))])
    label_pciou = pciou.argmax(axis=2)
    score_pciou = pciou[np.arange(len(cats))[:, None], np.arange(units)[None, :], label_pciou]
    bestcat = score_pciou.argmax(axis=0)
    return [{"unit": u + 1, "category": cats[bestcat[u]], "label": data.label_names[label_pciou[bestcat[u], u]],
             "score": float(score_pciou[bestcat[u], u])} for u in range(units)]


# -- timing -----------------------------------------------------------------------------------------

def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def timed(fn):
    """(result, seconds, peak RSS growth in bytes) of fn(), RSS sampled every 5 ms in a thread."""
    start, peak, done = _rss(), [0], threading.Event()

    def watch():
        while not done.is_set():
            peak[0] = max(peak[0], _rss() - start)
            time.sleep(0.005)

    t = threading.Thread(target=watch, daemon=True)
    t.start()
    t0 = time.perf_counter()
    out = fn()
    dt = time.perf_counter() - t0
    done.set()
    t.join()
    return out, dt, max(peak[0], _rss() - start)


def compare(ours: list[dict], peer: list[dict]) -> tuple[int, int, float]:
    """(units labelled alike, units compared, max |IoU difference|); dead units (IoU 0) are skipped."""
    by = {u["unit"]: u for u in peer}
    same, n, diff = 0, 0, 0.0
    for u in ours:
        p = by[u["unit"]]
        if u["score"] == 0 and p["score"] < 1e-9:
            continue
        n += 1
        same += u["label"] == p["label"]
        diff = max(diff, abs(u["score"] - p["score"]))
    return same, n, diff


def main(argv=None):
    ap = argparse.ArgumentParser(prog="bench_dissect.py", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=10_000, help="images in the set (default: %(default)s)")
    ap.add_argument("--mask", type=int, default=112, help="mask side in pixels (default: %(default)s)")
    ap.add_argument("--units", type=int, default=256, help="units dissected (default: %(default)s)")
    ap.add_argument("--peer-images", type=int, default=0,
                    help="run the peer on the first N images and compare rates per image (default: 0 = all)")
    ap.add_argument("--threads", type=int, default=0,
                    help="threads of bitlens' tally, torch and the mask kernel (default: 0 = every core this "
                         "process is given, as the goal is stated for the cores of the machine)")
    ap.add_argument("--repeat", type=int, default=3,
                    help="timed runs per side after a warm-up; the minimum is reported (default: %(default)s)")
    ap.add_argument("--no-write", action="store_true", help="do not write benchmarks/results/")
    a = ap.parse_args(argv)
    a.threads = a.threads or cpu_count()
    t0 = time.perf_counter()
    data = ArrayBroden(a.images, a.mask)
    acts = random_net_activations(a.images, a.units)
    print(f"generated {a.images} images ({a.mask}² masks), {a.units} units 7×7 in {time.perf_counter() - t0:.1f} s "
          f"(not timed); load average {loadavg()}; "
          f"tally threads {a.threads}")
    cats = list(CATEGORIES)

    def ours_run():
        thr = dis_tally.unit_thresholds(acts, 0.005)
        t = dis_tally.tally(acts, thr, data, cats, threads=a.threads)
        return thr, dis_labels.unit_labels(t, data)

    n_peer = min(a.images, a.peer_images or a.images)
    f64 = acts[:n_peer].astype(np.float64)  # the fork caches float64

    def peer_run():
        q = fork_quantile(f64, 0.005)
        return q, fork_tally(f64, q, data, cats)

    # both sides alike: a warm-up on the first 200 images, then the minimum of `repeat` full runs
    warm = min(200, a.images)
    dis_tally.tally(acts[:warm], dis_tally.unit_thresholds(acts[:warm], 0.005), data, cats, threads=a.threads,
                  images=np.arange(warm))
    fork_tally(f64[:warm], fork_quantile(f64[:warm], 0.005), data, cats)
    ours_s, peer_s, ours_mem, peer_mem = np.inf, np.inf, 0, 0
    for r in range(a.repeat):
        (thr, ours_units), dt, mem = timed(ours_run)
        ours_s, ours_mem = min(ours_s, dt), max(ours_mem, mem)
        (peer_thr, peer_units), dt, mem = timed(peer_run)
        peer_s, peer_mem = min(peer_s, dt), max(peer_mem, mem)
        print(f"run {r + 1}/{a.repeat}: bitlens {ours_s:.2f} s, peer {peer_s:.1f} s (best so far)")
    _, top_s, top_mem = timed(lambda: dis_acts.top_images(acts, 10))
    scale = a.images / n_peer
    note = (f"peer on {n_peer} of {a.images} images, time scaled ×{scale:.2f}; " if n_peer < a.images else "")
    if n_peer == a.images:
        same, n, diff = compare(ours_units, peer_units)
        note += (f"labels agree {same}/{n} live units, max IoU diff {diff:.2e}, thresholds max diff "
                 f"{np.abs(peer_thr - thr).max():.2e}; ")
    mk = dis_tally._native_mask()
    note += f"bitlens on {a.threads} threads, mask kernel {mk.kernel() if mk else 'numpy fallback'}; "
    note += (f"peak RSS growth bitlens {ours_mem / 2 ** 20:.0f} MiB, peer {peer_mem / 2 ** 20:.0f} MiB; "
             f"top-image selection (bitlens only) {top_s:.2f} s, {top_mem / 2 ** 20:.0f} MiB")
    # target: bitlens time ≤ 0.1 × the fork's (≥ 10× faster)
    at_goal = (a.images, a.mask, a.units) == (10_000, 112, 256) and n_peer == a.images and a.repeat >= 3
    rows = [ratio_row(f"dissect quantile+tally {a.images}x{a.mask}^2x{a.units}u", "bitlens.dissect", ours_s,
                      "IBC fork loop (port)", peer_s * scale, goal_limit("dissect"), note=note,
                      goal_id="dissect" if at_goal else "")]
    print(show(rows))
    print(f"speed-up: {peer_s * scale / ours_s:.1f}x")
    if not a.no_write:
        print("written:", write("dissect", rows))
    return rows


if __name__ == "__main__":
    main()
