"""Matplotlib figures: bit-interpretation panels, per-category bars, curves; and the dissection HTML page."""
from __future__ import annotations

import html
import io as _io

import numpy as np

from bitlens.png import data_uri, png_bytes


def _plt():
    import matplotlib

    import matplotlib.pyplot as plt

    return matplotlib, plt


def overlay(img: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The image dimmed outside the mask, the mask's boundary in yellow (NetDissect style)."""
    from PIL import Image

    if mask.shape != img.shape[:2]:
        mask = np.asarray(Image.fromarray(mask.astype(np.uint8) * 255).resize(img.shape[1::-1], Image.NEAREST)) > 0
    out = img.astype(np.float32) * np.where(mask[..., None], 1.0, 0.3)
    edge = mask & ~(np.roll(mask, 1, 0) & np.roll(mask, -1, 0) & np.roll(mask, 1, 1) & np.roll(mask, -1, 1))
    out[edge] = (255, 230, 0)
    return out.clip(0, 255).astype(np.uint8)


def bit_strip(broden, unit: dict, acts: np.ndarray, top_n: int = 8) -> np.ndarray:
    """Top images of one unit with its thresholded activation overlaid, side by side (uint8 image); a unit with
    no top images (it never fires) gets a grey panel that says so."""
    from bitlens.dissect.tally import unit_mask  # torch loads only when a strip is drawn

    if not unit["top_images"]:
        return never_fires_panel(broden, top_n)
    tiles = []
    for i in unit["top_images"][:top_n]:
        img = broden.load_image(i)
        rec = broden.records[i]
        m = unit_mask(acts[i, unit["unit"] - 1], unit["threshold"], (int(rec["sh"]), int(rec["sw"])))
        tiles.append(overlay(img, m))
    h = max(t.shape[0] for t in tiles)
    tiles = [np.pad(t, ((0, h - t.shape[0]), (0, 2), (0, 0)), constant_values=255) for t in tiles]
    return np.concatenate(tiles, 1)


def never_fires_panel(broden, top_n: int) -> np.ndarray:
    """A grey strip of the size of a top-image strip that says the bit never fires on the probe images."""
    from PIL import Image, ImageDraw

    h, w = broden.load_image(0).shape[:2] if len(broden.records) else (64, 64)
    h = max(h, 24)  # room for the line of text
    img = Image.new("RGB", (max(240, (w + 2) * top_n), h), (225, 225, 225))
    ImageDraw.Draw(img).text((8, h // 2 - 6), "this bit never fires on the probe images (a dead unit)",
                             fill=(60, 60, 60))
    return np.asarray(img)


def classes_using_bit(GRM: np.ndarray | None, bit: int, class_names, n: int = 3) -> list[str]:
    if GRM is None:
        return []
    col = np.asarray(GRM)[:, bit]
    order = np.argsort(-col, kind="stable")[:n]
    return [f"{class_names[c] if class_names is not None else c} ({col[c]:.2f})" for c in order if col[c] > 0]


MASK_LEGEND = ("bright: where the bit's upsampled activation exceeds its top-0.5% threshold (the mask scored "
               "against the concepts); yellow: the mask's outline; dimmed: below the threshold")


def unit_caption(u: dict) -> str:
    """'red-c (color, IoU 0.123)', or '(unlabelled, IoU 0)' for a unit that matches no concept."""
    if not u["label"]:
        return f"(unlabelled, IoU {u['score']:.3f})"
    return f"{u['label']} ({u['category']}, IoU {u['score']:.3f})"


def bit_interpretation_figure(units: list[dict], broden, acts, bits: list[int], GRM=None, class_names=None,
                              top_n: int = 8):
    """One row per bit (1-based numbers): label, category, IoU, the classes whose GRM row selects it, top images;
    a legend for the mask colours at the bottom."""
    import textwrap

    _, plt = _plt()
    width = min(16, 1.6 * top_n + 1)
    fig, axes = plt.subplots(len(bits), 1, figsize=(width, 2.0 * len(bits) + 0.6), squeeze=False)
    for ax, b in zip(axes[:, 0], bits):
        u = units[b - 1]
        ax.imshow(bit_strip(broden, u, acts, top_n), interpolation="nearest")
        cls = classes_using_bit(GRM, b - 1, class_names)
        title = f"bit {b}: {unit_caption(u)}" + (f" — used most by {', '.join(cls)}" if cls else "")
        ax.set_title("\n".join(textwrap.wrap(title, int(width * 11))), fontsize=10, loc="left")
        ax.axis("off")
    fig.text(0.01, 0.005, "\n".join(textwrap.wrap(MASK_LEGEND, int(width * 13))), fontsize=8, va="bottom")
    fig.tight_layout(rect=(0, 0.04 if len(bits) > 2 else 0.1, 1, 1))
    return fig


def category_bar(per_category: dict, title: str = "interpretable bits per category", categories=None):
    """Bits per category; every category in `categories` gets a bar, zero included (default: the dict's keys)."""
    _, plt = _plt()
    cats = list(categories) if categories is not None else sorted(per_category, key=lambda c: -per_category[c])
    cats += [c for c in per_category if c not in cats]
    fig, ax = plt.subplots(figsize=(max(5, 0.9 * len(cats)), 3))
    vals = [per_category.get(c, 0) for c in cats]
    bars = ax.bar(cats, vals, color="#4c72b0")
    ax.bar_label(bars, fontsize=8)
    ax.set(ylabel="bits", title=title)
    ax.set_ylim(0, max(vals + [1]) * 1.15)
    return fig


def curve(x, series: dict, xlabel: str, ylabel: str, title: str = "", logx: bool = False):
    _, plt = _plt()
    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    for name, ys in series.items():
        ax.plot(x, ys, marker="o", label=name)
    ax.set(xlabel=xlabel, ylabel=ylabel, title=title)
    if logx:
        ax.set_xscale("log", base=2)
    ax.legend(fontsize=8)
    return fig


def detach(fig):
    """Close a saved figure in pyplot so that a notebook shows it where it displays it (once), not also at the end
    of the cell that made it; the figure itself stays whole."""
    _, plt = _plt()
    plt.close(fig)
    return fig


def training_curves(log, terms, weights: dict, thr_g: float, title: str):
    """IBC training: every loss term (unweighted, the weight in its title) with a 10-iteration rolling mean, and
    the GRM's sparsity (fraction of entries below 0.001; Σ|GRM| against the budget thr_g, dotted). `log`: a
    DataFrame with `iteration`, the terms, `grm_zero_frac` and `grm_l1`."""
    _, plt = _plt()
    fig, axes = plt.subplots(2, 4, figsize=(15, 6))
    for ax, term in zip(axes.ravel(), terms):
        ax.plot(log["iteration"], log[term], color="0.8", lw=0.8)
        ax.plot(log["iteration"], log[term].rolling(10, min_periods=1).mean(), lw=1.5)
        ax.set_title(f"{term}  (weight {weights[f'{term}_w']:g})", fontsize=9)
        ax.set_xlabel("iteration", fontsize=8)
    ax = axes.ravel()[-1]
    ax.plot(log["iteration"], log["grm_zero_frac"], label="entries < 0.001 (fraction)")
    ax.set_ylim(0, 1)
    ax.set_xlabel("iteration", fontsize=8)
    ax2 = ax.twinx()
    ax2.plot(log["iteration"], log["grm_l1"], color="C1", label="Σ|GRM|")
    ax2.axhline(thr_g, color="C1", ls=":", lw=1)
    ax.set_title("GRM sparsity (fraction ≈ 0; Σ|GRM| vs thr_g, dotted)", fontsize=9)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def grm_figure(grm: np.ndarray, title: str, class_names=None):
    """The GRM (classes × bits) as an image, bits numbered from 1, class names when there are at most 60."""
    _, plt = _plt()
    C, K = grm.shape
    fig, ax = plt.subplots(figsize=(min(16, 3 + K * 0.22), min(12, 2 + C * 0.2)))
    im = ax.imshow(grm, aspect="auto", cmap="viridis", vmin=0, vmax=1, interpolation="nearest")
    ax.set(xlabel="bit", ylabel="class", title=title)
    if K <= 64:
        ax.set_xticks(range(K), [str(k + 1) for k in range(K)], fontsize=6)
    if class_names and C <= 60:
        ax.set_yticks(range(C), class_names[:C], fontsize=6)
    fig.colorbar(im, ax=ax, fraction=0.03)
    return fig


def dissection_html(title: str, summary: dict, units: list[dict], strips: dict[int, np.ndarray],
                    bar_png: bytes | None = None) -> str:
    """A self-contained page of every unit (NetDissect's report): summary line, bar graph, top images per unit."""
    rows = []
    for u in sorted(units, key=lambda u: -u["score"]):
        good = bool(u["label"]) and u["score"] >= summary["iou_threshold"]
        img = strips.get(u["unit"])
        rows.append(
            f"<div class='unit{' good' if good else ''}'><div class='head'>unit {u['unit']}: "
            f"<b>{html.escape(u['label'] or '(unlabelled)')}</b>"
            + (f" ({html.escape(u['category'])})" if u["category"] else "") + f" IoU {u['score']:.4f}</div>"
            + (f"<img src='{data_uri(png_bytes(img))}'>" if img is not None else "") + "</div>")
    bar = f"<img src='{data_uri(bar_png)}'>" if bar_png else ""
    return f"""<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>
<style>body{{font-family:sans-serif;margin:20px}} .unit{{margin:6px 0;padding:4px;border-left:4px solid #ccc}}
.good{{border-left-color:#2a9d3a}} .head{{font-size:13px;margin-bottom:2px}} img{{max-width:100%}}</style></head>
<body><h1>{html.escape(title)}</h1><p>{html.escape(summary['headline'])}</p><p><small>{html.escape(MASK_LEGEND)}
</small></p>{bar}{''.join(rows)}</body></html>"""


def figure_png(fig) -> bytes:
    buf = _io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight", metadata={"Software": None})
    return buf.getvalue()


def hashing_curves(runs: dict, title: str = ""):
    """Two panels from `metrics.hashing_metrics` outputs, one line per run: precision–recall over Hamming radius
    0..bits (each point one radius) and precision@K over K (log scale)."""
    _, plt = _plt()
    fig, (pr, pk) = plt.subplots(1, 2, figsize=(10, 3.8))
    colours = plt.cm.tab20.colors  # more lines than the default 10-colour cycle: no two runs share a colour
    for i, (name, h) in enumerate(runs.items()):
        c = colours[(2 * i) % 20 if i < 10 else (2 * i + 1) % 20]
        pr.plot(h["pr_recall"], h["pr_precision"], marker=".", label=name, color=c)
        pk.plot(h["curve_ks"], h["precision_at_k"], marker=".", label=name, color=c)
    pr.set(xlabel="recall", ylabel="precision", title="PR over Hamming radius 0..bits", xlim=(0, 1.02), ylim=(0, 1.02))
    pk.set(xlabel="K (top-K retrieved)", ylabel="precision@K", title="precision@K", ylim=(0, 1.02))
    pk.set_xscale("log")
    pr.legend(fontsize=7)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def recall_vs_bits_figure(ours: dict, published: dict, ours_label: str, paper_label: str, k: int = 10,
                          baselines: dict | None = None):
    """Recall@k against bits per item, this run and the published table in two panels side by side: they come
    from different data (a profile's dataset vs COCO), so they never share axes.

    `ours` / `published`: {embedding: (bits, recall)}; `baselines`: {method: [(bits, recall), ...]}, drawn in
    this run's panel as dashed lines with hollow markers, labelled as baselines.
    """
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    names = list(dict.fromkeys([*ours, *published]))  # one colour per embedding in both panels
    for ax, points, title in ((axes[0], ours, ours_label), (axes[1], published, paper_label)):
        for name, (bits, recall) in points.items():
            if bits is None or recall is None:
                continue
            i = names.index(name)
            ax.scatter(bits, recall, s=60, color=f"C{i}")
            # labels of coinciding points would print over each other: stack them
            ax.annotate(f"{name} ({int(bits)} bits)", (bits, recall), textcoords="offset points",
                        xytext=(6, 4 - 11 * i), fontsize=8, color=f"C{i}")
        ax.set(xscale="log", xlabel="bits per item", ylabel=f"image→text R@{k}", title=title)
        ax.margins(x=0.3, y=0.15)
    for j, (method, pts) in enumerate((baselines or {}).items()):
        pts = sorted(pts)
        axes[0].plot([b for b, _ in pts], [r for _, r in pts], ls="--", marker="os^"[j % 3], mfc="none",
                     color=f"C{len(names) + j}", label=f"{method} (baseline)")
    if baselines:
        axes[0].legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    return fig
