"""Network Dissection of any layer on a Broden-format dataset (NetDissect-Lite semantics, vectorised).

1. Activations of the layer for every image are cached (float16 memmap, resumable).
2. Per unit, the threshold is the top-`quantile` (0.5%) activation over all positions of all images — exact
   (np.quantile, linear interpolation) on the cached maps.
3. Per image, each unit's map is upsampled bilinearly to the mask size (torch `interpolate`, align_corners=False,
   the pixel-centre convention of PIL's bilinear resize that NetDissect-Lite used through scipy's imresize) and
   thresholded: M = map > threshold.
4. Tallies: |M ∩ L| per label (an image-level label counts all of |M|), |L| per label (image-level: every pixel),
   and |M| per category over the images that have a label of that category.
   IoU = ∩ / (|M|_cat + |L| − ∩), with a label scored under its primary category.
5. A unit's label is its best label over all categories; it is interpretable if IoU ≥ the threshold (0.04
   upstream, 0.01 in the IBC fork).

    python -m bitlens.dissect --checkpoint CKPT --broden DIR --layer conv_last --out DIR [--threshold 0.04]
"""
from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from bitlens import io
from bitlens.data.broden import Broden
from bitlens.progress import progress

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


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


def _preprocess(img: np.ndarray, size: int) -> torch.Tensor:
    t = torch.from_numpy(np.array(img)).permute(2, 0, 1).float().div(255.0)[None]
    if t.shape[-1] != size or t.shape[-2] != size:
        t = F.interpolate(t, size=(size, size), mode="bilinear", align_corners=False)
    mean = torch.tensor(IMAGENET_MEAN)[:, None, None]
    std = torch.tensor(IMAGENET_STD)[:, None, None]
    return ((t - mean) / std)[0]


@torch.no_grad()
def cache_activations(fn, broden: Broden, cache_dir, input_size: int, batch_size: int = 64, device: str = "cpu",
                      key: str = "") -> np.ndarray:
    """(N, K, h, w) float16 memmap of activations; resumes a half-written cache batch by batch."""
    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    meta_path = cache_dir / "activations.json"
    data_path = cache_dir / "activations.f16"
    n = len(broden)
    first = fn(_preprocess(broden.load_image(0), input_size)[None].to(device))
    shape = (n,) + tuple(first.shape[1:])
    meta = {"shape": list(shape), "key": key, "done": 0}
    if meta_path.exists():
        old = json.loads(meta_path.read_text())
        if old.get("shape") == meta["shape"] and old.get("key") == key and data_path.exists():
            meta = old
    if meta["done"] == 0 or not data_path.exists():
        np.memmap(data_path, dtype=np.float16, mode="w+", shape=shape).flush()
        meta["done"] = 0
    acts = np.memmap(data_path, dtype=np.float16, mode="r+", shape=shape)
    starts = range(meta["done"], n, batch_size)
    for s in progress(starts, desc="activations", total=len(starts)):
        x = torch.stack([_preprocess(broden.load_image(i), input_size) for i in range(s, min(n, s + batch_size))])
        acts[s:s + len(x)] = fn(x.to(device)).float().cpu().numpy().astype(np.float16)
        acts.flush()
        meta["done"] = min(n, s + batch_size)
        io.write_json(meta_path, meta)  # progress is recorded only after the batch is on disk
    return np.memmap(data_path, dtype=np.float16, mode="r", shape=shape)


def unit_thresholds(acts: np.ndarray, quantile: float = 0.005, chunk: int = 16) -> np.ndarray:
    """Per unit, the (1 − quantile) quantile of its activations over all positions of all images (exact)."""
    K = acts.shape[1]
    out = np.empty(K, np.float64)
    for a in range(0, K, chunk):
        block = np.asarray(acts[:, a:a + chunk], dtype=np.float32)  # (N, c, h, w)
        flat = block.transpose(1, 0, 2, 3).reshape(block.shape[1], -1)
        out[a:a + chunk] = np.quantile(flat, 1.0 - quantile, axis=1)
    return out


def upsample(maps: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear upsampling of (B, K, h, w) maps to the mask size (align_corners=False)."""
    return F.interpolate(maps, size=size, mode="bilinear", align_corners=False)


# -- tallies ------------------------------------------------------------------------

@dataclass
class Tally:
    intersect: np.ndarray  # (K, L) |M ∩ L|
    label_area: np.ndarray  # (L,) |L|
    unit_area: np.ndarray  # (K, C) |M| over images having category c
    categories: list[str]
    label_category: np.ndarray  # (L,) index of each label's primary category (−1: none)

    def iou(self) -> np.ndarray:
        """(K, L) IoU of each unit with each label, under the label's primary category."""
        cat = np.clip(self.label_category, 0, None)
        union = self.unit_area[:, cat] + self.label_area[None, :] - self.intersect
        out = np.where(union > 0, self.intersect / np.maximum(union, 1e-12), 0.0)
        out[:, self.label_category < 0] = 0.0
        return out


def tally(acts: np.ndarray, thresholds: np.ndarray, broden: Broden, categories=None, batch_size: int = 32,
          device: str = "cpu") -> Tally:
    cats = [c for c in (categories or broden.categories) if c in broden.categories]
    L, K = broden.num_labels, acts.shape[1]
    label_cat = np.full(L, -1, np.int64)
    for lab in range(1, L):
        pc = broden.primary_category(lab)
        if pc in cats:
            label_cat[lab] = cats.index(pc)
    inter = np.zeros((K, L), np.float64)
    larea = np.zeros(L, np.float64)
    uarea = np.zeros((K, len(cats)), np.float64)
    thr = torch.as_tensor(thresholds, dtype=torch.float32, device=device)[None, :, None, None]
    n = len(broden)
    for s in progress(range(0, n, batch_size), desc="tally", total=(n + batch_size - 1) // batch_size):
        idx = range(s, min(n, s + batch_size))
        rec0 = broden.records[s]
        size = (int(rec0["sh"]), int(rec0["sw"]))
        maps = torch.as_tensor(np.asarray(acts[s:s + len(idx)], dtype=np.float32), device=device)
        same = all((int(broden.records[i]["sh"]), int(broden.records[i]["sw"])) == size for i in idx)
        masks = [(upsample(maps, size) > thr).flatten(2)] if same else None
        for j, i in enumerate(idx):
            rec = broden.records[i]
            sz = (int(rec["sh"]), int(rec["sw"]))
            M = masks[0][j] if same else (upsample(maps[j:j + 1], sz) > thr).flatten(2)[0]  # (K, P) bool
            Mf = M.float()
            m_count = Mf.sum(1).cpu().numpy()
            P = M.shape[1]
            for cat, entries in broden.load_labels(i, cats).items():
                ci = cats.index(cat)
                if entries:
                    uarea[:, ci] += m_count
                for e in entries:
                    if isinstance(e, int):
                        if 0 < e < L:
                            inter[:, e] += m_count
                            larea[e] += P
                        continue
                    flat = torch.as_tensor(e.reshape(-1), device=device, dtype=torch.long)
                    present = torch.unique(flat)
                    present = present[(present > 0) & (present < L)]
                    if present.numel() == 0:
                        continue
                    onehot = (flat[:, None] == present[None, :]).float()  # (P, n_present)
                    pi = present.cpu().numpy()
                    inter[:, pi] += (Mf @ onehot).cpu().numpy()
                    larea[pi] += onehot.sum(0).cpu().numpy()
    return Tally(inter, larea, uarea, cats, label_cat)


# -- labels, outputs ---------------------------------------------------------------

def unit_labels(t: Tally, broden: Broden) -> list[dict]:
    """Per unit: best label overall and per category (label name, IoU, truth/activation/intersect)."""
    iou = t.iou()
    out = []
    for k in range(iou.shape[0]):
        per = {}
        for ci, cat in enumerate(t.categories):
            labs = np.flatnonzero(t.label_category == ci)
            if labs.size == 0:
                continue
            best = labs[int(np.argmax(iou[k, labs]))]
            per[cat] = {"label": broden.label_names.get(int(best), str(best)), "label_id": int(best),
                        "truth": float(t.label_area[best]), "activation": float(t.unit_area[k, ci]),
                        "intersect": float(t.intersect[k, best]), "iou": float(iou[k, best])}
        best_cat = max(per, key=lambda c: per[c]["iou"]) if per else ""
        out.append({"unit": k + 1, "category": best_cat, "label": per[best_cat]["label"] if per else "",
                    "score": per[best_cat]["iou"] if per else 0.0, "categories": per})
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


def top_images(acts: np.ndarray, n: int = 10) -> np.ndarray:
    """(K, n) image indices with the highest max activation per unit."""
    peak = np.asarray(acts, dtype=np.float32).max(axis=(2, 3))  # (N, K)
    return np.argsort(-peak, axis=0, kind="stable")[:n].T


def summarize(units: list[dict], threshold: float) -> dict:
    good = [u for u in units if u["score"] >= threshold]
    per_cat: dict[str, int] = {}
    for u in good:
        per_cat[u["category"]] = per_cat.get(u["category"], 0) + 1
    return {"units": len(units), "interpretable": len(good), "concepts": len({u["label"] for u in good}),
            "iou_threshold": threshold, "per_category": per_cat,
            "headline": f"{len(good)}/{len(units)} units covering {len({u['label'] for u in good})} concepts "
                        f"with IoU ≥ {threshold}"}


def concept_coverage(t: Tally, broden: Broden, threshold: float) -> list[dict]:
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


def bit_groups(units: list[dict], threshold: float) -> dict[str, list[int]]:
    """Concept → 1-based units labelled with it (IoU ≥ threshold), best first: the customized-retrieval groups."""
    groups: dict[str, list[tuple[float, int]]] = {}
    for u in units:
        if u["score"] >= threshold:
            groups.setdefault(u["label"], []).append((-u["score"], u["unit"]))
    return {c: [k for _, k in sorted(v)] for c, v in sorted(groups.items())}


def dissect(model: torch.nn.Module, broden: Broden, out_dir, layer: str = "conv_last", input_size: int = 227,
            quantile: float = 0.005, threshold: float = 0.04, categories=None, batch_size: int = 64,
            device: str = "cpu", top_n: int = 10, cache_key: str = "") -> dict:
    """Dissect `layer` of `model`; writes tally.csv, units.json and summary.json into out_dir."""
    out_dir = Path(out_dir)
    model = model.eval().to(device)
    fn = layer_fn(model, layer)
    acts = cache_activations(fn, broden, out_dir / "cache", input_size, batch_size, device, key=cache_key)
    if acts.ndim != 4:
        raise ValueError(f"layer {layer!r} gives activations of shape {acts.shape[1:]}; dissection needs conv maps")
    thr = unit_thresholds(acts, quantile)
    t = tally(acts, thr, broden, categories, batch_size, device)
    units = unit_labels(t, broden)
    tops = top_images(acts, top_n)
    for u, th, tp in zip(units, thr, tops):
        u["threshold"] = float(th)
        u["top_images"] = [int(i) for i in tp]
    write_tally_csv(out_dir / "tally.csv", units, t.categories)
    io.write_json(out_dir / "units.json", units)
    summary = summarize(units, threshold)
    summary["coverage"] = concept_coverage(t, broden, threshold)
    summary["bit_groups"] = bit_groups(units, threshold)
    io.write_json(out_dir / "summary.json", summary)
    return {"units": units, "summary": summary, "tally": t, "activations": acts, "thresholds": thr}


def main(argv=None) -> int:
    from bitlens.ibc.model import infer_architecture, load_ibc_checkpoint

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", required=True, help="IBC checkpoint {'state_dict': ...} (ours or the authors')")
    ap.add_argument("--broden", required=True, help="Broden folder (index.csv, label.csv, category.csv, images/)")
    ap.add_argument("--layer", default="conv_last", help="module name; conv_last = the IBC bits")
    ap.add_argument("--out", required=True)
    ap.add_argument("--threshold", type=float, default=0.04, help="IoU for an interpretable unit (IBC fork: 0.01)")
    ap.add_argument("--quantile", type=float, default=0.005)
    ap.add_argument("--input-size", type=int, default=0, help="model input size (default: 227 AlexNet, 64 small)")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = ap.parse_args(argv)
    try:
        arch = infer_architecture(args.checkpoint)
        size = args.input_size or (227 if arch["backbone"] == "alexnet" else 64)
        model = load_ibc_checkpoint(args.checkpoint, size)
        res = dissect(model, Broden(args.broden), args.out, args.layer, size, args.quantile, args.threshold,
                      batch_size=args.batch_size, device=args.device)
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}")
        return 2
    print(res["summary"]["headline"])
    print(f"tally: {Path(args.out) / 'tally.csv'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
