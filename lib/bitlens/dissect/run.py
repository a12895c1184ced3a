"""`dissect()`: one model's layer through the cache, the tally and the labels, written as NetDissect-Lite does."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from bitlens import io
from bitlens.data.broden import Broden
from bitlens.dissect.activations import cache_activations, layer_fn, top_images
from bitlens.dissect.labels import (bit_groups, concept_coverage, planted_concepts, summarize, unit_labels,
                                    write_tally_csv)
from bitlens.dissect.tally import dissected_categories, kept_images, tally, unit_thresholds


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


