"""Figures that show what a dataset holds: images beside their label maps and text (stage 00_data)."""
from __future__ import annotations

import textwrap
from dataclasses import dataclass, field

import numpy as np


@dataclass
class GalleryItem:
    image: np.ndarray  # uint8 (H, W, 3)
    title: str = ""
    maps: dict[str, np.ndarray] = field(default_factory=dict)  # row name → int label map (0 = background)
    text: list[str] = field(default_factory=list)  # captions, attributes… printed under the column


def gallery_figure(items: list[GalleryItem], width: int = 30):
    """One column per item: the image, then each of its label maps, then its text; returns the figure."""
    import matplotlib.pyplot as plt

    if not items:
        raise ValueError("gallery_figure: no items to show")
    rows = ["image"] + list(dict.fromkeys(k for it in items for k in it.maps))
    text_lines = max(sum(len(textwrap.wrap(t, width)) or 1 for t in it.text) for it in items)
    fig, axes = plt.subplots(len(rows), len(items), figsize=(2.3 * len(items), 2.3 * len(rows) + 0.11 * text_lines),
                             squeeze=False)
    for j, it in enumerate(items):
        for r, name in enumerate(rows):
            ax = axes[r, j]
            ax.set_xticks([])
            ax.set_yticks([])
            if name == "image":
                ax.imshow(it.image)
                ax.set_title(it.title, fontsize=8)
            elif name in it.maps:
                m = np.asarray(it.maps[name])
                # background black, labels in distinct colors whatever their id
                ax.imshow(np.ma.masked_equal(m, 0), cmap="tab20", vmin=0, vmax=max(20, int(m.max())),
                          interpolation="nearest")
                ax.set_facecolor("black")
            else:
                ax.axis("off")
            if j == 0:
                ax.set_ylabel(name, fontsize=9)
        axes[-1, j].set_xlabel("\n".join(l for t in it.text for l in (textwrap.wrap(t, width) or [""])),
                               fontsize=6, loc="left")
    fig.tight_layout()
    return fig
