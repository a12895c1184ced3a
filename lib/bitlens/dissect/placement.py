"""Where a bit's top-image masks sit: on the objects, or in a thin band along the image border.

IoU alone does not say where a bit fires. A bit whose thresholded masks are strips along the image edges (a
padding artefact) still scores against labels that cover whole images, such as scenes. So for each bit we pool
the masks of its top images, exactly as the gallery draws them (bilinear upsampling to the mask size, the bit's
top-quantile threshold). We count how many mask pixels fall on pixels of one Broden category ("object" by
default) and how many fall in the outer band. Beside each count is the share that region holds of the same
images, which is the share a mask placed at random would get.
"""
from __future__ import annotations

import numpy as np

from bitlens.dissect.tally import unit_mask
from bitlens.progress import progress

COUNTS = ("images", "mask_px", "mask_on_region_px", "mask_in_band_px", "image_px", "region_px", "band_px")


def border_band(size: tuple[int, int], fraction: float = 1 / 16) -> np.ndarray:
    """Boolean (h, w) mask of the outer band, `fraction` of the shorter side wide (at least one pixel)."""
    h, w = size
    width = band_width(size, fraction)
    band = np.ones((h, w), bool)
    band[width:h - width, width:w - width] = False
    return band


def band_width(size: tuple[int, int], fraction: float = 1 / 16) -> int:
    """The band's width in pixels: `fraction` of the shorter side, at least one."""
    return max(1, int(round(min(size) * fraction)))


def region_pixels(broden, i: int, category: str) -> np.ndarray:
    """Pixels of image i (mask size) that carry any label of `category`. An image-level label covers the whole
    image, as it does in the tally."""
    rec = broden.records[i]
    size = (int(rec["sh"]), int(rec["sw"]))
    region = np.zeros(size, bool)
    for entry in broden.load_labels(i, [category]).get(category, []):
        if isinstance(entry, np.ndarray):
            region |= entry > 0
        elif entry:
            region[:] = True
    return region


def mask_placement(units: list[dict], broden, acts: np.ndarray, top_n: int = 8, category: str = "object",
                   band: float = 1 / 16) -> list[dict]:
    """One row per unit that has top images: its label, IoU and the pixel counts of its top `top_n` images'
    masks (`COUNTS`), with `on_region` / `region_share` and `in_band` / `band_share` as fractions."""
    if category not in broden.categories:
        raise ValueError(f"mask placement: category {category!r} is not in {broden.root / 'category.csv'} "
                         f"(it lists {', '.join(broden.categories)}); pass one of those as `category`")
    if acts.ndim != 4:
        raise ValueError(f"mask placement: activations should be (images, units, h, w), got shape {acts.shape}")
    rows = []
    for u in progress(units, desc="mask placement"):  # Broden scale: 256 bits × top images, each mask decoded
        top = list(u.get("top_images") or [])[:top_n]
        if not top:
            continue  # a dead unit: nothing is drawn, nothing to place
        c = dict.fromkeys(COUNTS, 0)
        for i in top:
            rec = broden.records[i]
            size = (int(rec["sh"]), int(rec["sw"]))
            mask = unit_mask(acts[i, u["unit"] - 1], u["threshold"], size)
            region, edge = region_pixels(broden, i, category), border_band(size, band)
            c["images"] += 1
            c["mask_px"] += int(mask.sum())
            c["mask_on_region_px"] += int((mask & region).sum())
            c["mask_in_band_px"] += int((mask & edge).sum())
            c["image_px"] += mask.size
            c["region_px"] += int(region.sum())
            c["band_px"] += int(edge.sum())
        rows.append({"unit": u["unit"], "label": u["label"], "category": u["category"], "iou": float(u["score"]),
                     **_fractions(c), **c})
    return rows


def _fractions(c: dict) -> dict:
    def div(a, b):
        return a / b if b else float("nan")

    return {"on_region": div(c["mask_on_region_px"], c["mask_px"]), "region_share": div(c["region_px"], c["image_px"]),
            "in_band": div(c["mask_in_band_px"], c["mask_px"]), "band_share": div(c["band_px"], c["image_px"])}


def placement_summary(rows: list[dict], threshold: float) -> dict:
    """Pooled over the labelled bits at IoU ≥ `threshold`: the fractions of `_fractions`, the number of bits,
    and how many of them have most of their mask pixels in the band (`band_bits`)."""
    chosen = [r for r in rows if r["label"] and r["iou"] >= threshold and r["mask_px"]]
    pooled = {k: sum(r[k] for r in chosen) for k in COUNTS}
    return {"bits": len(chosen), "iou_threshold": threshold, **_fractions(pooled),
            "band_bits": sum(r["in_band"] > 0.5 for r in chosen)}


def placement_sentence(summary: dict, category: str = "object", band_px: int = 1) -> str:
    """The report's sentence, from the numbers of `placement_summary`."""
    if not summary["bits"]:
        return f"No bit is labelled at IoU ≥ {summary['iou_threshold']}: no top-image mask to place."
    s = summary
    return (f"Top-image masks of the {s['bits']} bits labelled at IoU ≥ {s['iou_threshold']}: {s['on_region']:.0%} "
            f"of their pixels lie on {category} pixels, which cover {s['region_share']:.0%} of those images; "
            f"{s['in_band']:.0%} lie in the outer {band_px}-pixel band, which is {s['band_share']:.0%} of each image. "
            f"{s['band_bits']} of the {s['bits']} bits have most of their mask in that band.")
