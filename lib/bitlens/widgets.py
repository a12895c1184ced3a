"""An ipywidgets browser over a dissection result.

Pick a bit (slider, or a concept name) → its label, category, IoU, top images with the thresholded activation,
the classes whose GRM row uses it, and its precision as a one-bit retriever. Pick a concept → its bits ranked by
IoU. Pick bits and an attribute → customized retrieval on the fly. Without a front end (papermill), `snapshot`
renders the same panel to a PNG.
"""
from __future__ import annotations

import html
from pathlib import Path

import numpy as np

from bitlens import figures, metrics
from bitlens.dissect.labels import base_concept
from bitlens.png import png_bytes


def label_text(label: str) -> str:
    """A unit's label for display: an IoU-0 (dead) unit has none."""
    return label or "(unlabelled)"


class BitBrowser:
    def __init__(self, units: list[dict], broden, activations, GRM=None, class_names=None, codes=None,
                 labels=None, attributes=None, attribute_names=None, item_images=None, top_n: int = 6):
        self.units, self.broden, self.acts = units, broden, activations
        self.GRM = None if GRM is None else np.asarray(GRM)
        self.class_names = class_names
        self.B = None if codes is None else np.asarray(codes)
        self.labels = None if labels is None else np.asarray(labels).ravel()
        self.attrs = None if attributes is None else np.asarray(attributes)
        self.attr_names = list(attribute_names or [])
        self.item_images = item_images
        self.top_n = top_n
        self._widget = None

    # -- pure functions (tested without a front end) -------------------------------------------
    def bit_info(self, bit: int) -> dict:
        u = self.units[bit - 1]
        info = {"bit": bit, "label": u["label"], "category": u["category"], "iou": u["score"],
                "classes": figures.classes_using_bit(self.GRM, bit - 1, self.class_names),
                "precision": self.one_bit_precision(bit)}
        return info

    def one_bit_precision(self, bit: int) -> dict:
        """Precision of "bit = +1" as a retriever of the bit's concept (an attribute) and of its top GRM class."""
        if self.B is None:
            return {}
        on = self.B[:, bit - 1] > 0
        out = {"items_on": int(on.sum())}
        concept = base_concept(self.units[bit - 1]["label"])
        if self.attrs is not None and concept in self.attr_names and on.any():
            out[f"attribute '{concept}'"] = float((self.attrs[on, self.attr_names.index(concept)] == 1).mean())
        if self.GRM is not None and self.labels is not None and on.any():
            c = int(np.argmax(self.GRM[:, bit - 1]))
            name = self.class_names[c] if self.class_names is not None else str(c)
            out[f"class '{name}'"] = float((self.labels[on] == c).mean())
        return out

    def concepts(self) -> list[str]:
        """Every concept some bit is scored against (its best label in some category)."""
        return sorted({d["label"] for u in self.units for d in u["categories"].values() if d["label"]})

    def resolve_concept(self, name: str) -> str | None:
        """The concept a typed name means: the exact label, else the label whose base name matches ('red' →
        'red-c', 'sky' → 'sky-s'), case-insensitive; None when there is no such concept."""
        name = (name or "").strip()
        known = self.concepts()
        if name in known:
            return name
        low = name.lower()
        for c in known:
            if c.lower() == low or base_concept(c).lower() == low:
                return c
        return None

    def bits_for_concept(self, concept: str) -> list[tuple[int, float]]:
        """Bits whose IoU with `concept` (in its category) is known, best first."""
        rows = []
        for u in self.units:
            for d in u["categories"].values():
                if d["label"] == concept:
                    rows.append((u["unit"], d["iou"]))
        return sorted(rows, key=lambda r: -r[1])

    def customized(self, bits: list[int], attribute: str, seed: int = 0) -> dict:
        if self.B is None or self.attrs is None:
            raise ValueError("customized retrieval needs the codes and attributes of the evaluation set")
        j = self.attr_names.index(attribute)
        b0 = [b - 1 for b in bits]
        rand = sorted(np.random.default_rng(seed).choice(self.B.shape[1], len(b0), replace=False).tolist())
        res = {"map": metrics.attribute_map(self.B, self.attrs, j, bits=b0),
               "random_map": metrics.attribute_map(self.B, self.attrs, j, bits=rand)}
        queries = np.flatnonzero(self.attrs[:, j] == 1)
        if queries.size and self.item_images is not None:
            q = queries[0]
            sub = self.B[:, b0]
            dist = (len(b0) - sub @ sub[q]) / 2
            order = [i for i in np.argsort(dist, kind="stable") if i != q][:self.top_n]
            res["query"], res["results"] = int(q), [int(i) for i in order]
        return res

    def render_bit(self, bit: int) -> np.ndarray:
        return figures.bit_strip(self.broden, self.units[bit - 1], self.acts, self.top_n)

    def describe(self, bit: int) -> str:
        i = self.bit_info(bit)
        prec = ", ".join(f"{k}: {v:.3f}" if isinstance(v, float) else f"{k}: {v}" for k, v in i["precision"].items())
        cat = f" ({html.escape(i['category'])})" if i["category"] else ""
        dead = "" if self.units[bit - 1].get("top_images", [0]) else " — never fires on the probe images"
        return (f"<b>bit {bit}</b>: <span class='bitlens-label'>{html.escape(label_text(i['label']))}</span>"
                f"{cat}, IoU {i['iou']:.4f}{dead}<br>used by: "
                f"{html.escape(', '.join(i['classes']) or '—')}<br>one-bit retriever: {html.escape(prec or '—')}")

    # -- widgets ------------------------------------------------------------------------------
    def widget(self):
        import ipywidgets as W

        K = len(self.units)
        self.slider = W.IntSlider(value=1, min=1, max=K, description="bit", continuous_update=False)
        self.slider.add_class("bitlens-bit-slider")
        self.concept_box = W.Combobox(options=self.concepts(), placeholder="concept name (red, circle…)",
                                      description="concept", ensure_option=False, continuous_update=False)
        self.label = W.HTML()
        self.label.add_class("bitlens-bit-label")
        self.image = W.Image(format="png")
        self.image.add_class("bitlens-bit-image")
        self.concept_bits = W.HTML()
        self.slider.observe(lambda ch: self._show(ch["new"]), names="value")
        self.concept_box.observe(lambda ch: self._concept(ch["new"]), names="value")
        parts = [W.HBox([self.slider, self.concept_box]), self.label, self.image, self.concept_bits]
        if self.B is not None and self.attrs is not None and self.attr_names:
            self.bit_pick = W.SelectMultiple(options=list(range(1, K + 1)), rows=6, description="bits")
            self.attr_pick = W.Dropdown(options=self.attr_names, description="attribute")
            self.go = W.Button(description="retrieve")
            self.result = W.HTML()
            self.result_image = W.Image(format="png", layout=W.Layout(display="none"))  # no image until a query
            self.go.on_click(lambda _: self._retrieve())
            parts += [W.HTML("<b>customized retrieval</b>: mAP of the attribute with only the picked bits, on the "
                             "evaluation set the bits are chosen on (as the authors choose bit groups), beside "
                             "the same number of random bits"),
                      W.HBox([self.bit_pick, self.attr_pick, self.go]), self.result, self.result_image]
        self._widget = W.VBox(parts)
        self._show(1)
        return self._widget

    def _show(self, bit: int):
        self.label.value = self.describe(bit)
        self.image.value = png_bytes(self.render_bit(bit))

    def _concept(self, typed: str):
        if not typed:
            return
        concept = self.resolve_concept(typed)
        if concept is None:
            self.concept_bits.value = f"no such concept: <b>{html.escape(typed)}</b>"
            return
        rows = self.bits_for_concept(concept)[:10]
        self.concept_bits.value = (f"<b>{html.escape(concept)}</b>: " +
                                   ", ".join(f"bit {b} (IoU {v:.3f})" for b, v in rows))
        if rows:
            self.slider.value = rows[0][0]

    def _retrieve(self):
        bits = list(self.bit_pick.value)
        if not bits:
            self.result.value = "pick at least one bit"
            return
        r = self.customized(bits, self.attr_pick.value)
        self.result.value = (f"attribute <b>{html.escape(self.attr_pick.value)}</b> with bits {bits}: mAP "
                             f"{r['map']:.4f} (random bits of the same number: {r['random_map']:.4f})")
        if "results" in r:
            self.result_image.value = png_bytes(self._strip([r["query"]] + r["results"]))
            self.result_image.layout.display = None

    def _strip(self, items: list[int]) -> np.ndarray:
        from bitlens.data.coco import load_rgb

        tiles = [np.asarray(load_rgb(self.item_images[i]).resize((64, 64))) for i in items]
        tiles = [np.pad(t, ((0, 0), (0, 3), (0, 0)), constant_values=255) for t in tiles]
        return np.concatenate(tiles, 1)

    # -- static fallback -------------------------------------------------------------------------
    def snapshot(self, bit: int, path) -> Path:
        """The bit panel as a PNG (what the widget shows), for papermill runs and reports."""
        import matplotlib.pyplot as plt

        from bitlens import io

        i = self.bit_info(bit)
        fig, ax = plt.subplots(figsize=(1.5 * self.top_n, 2.3))
        ax.imshow(self.render_bit(bit))
        ax.axis("off")
        prec = ", ".join(f"{k} {v:.2f}" for k, v in i["precision"].items() if isinstance(v, float))
        cat = f" ({i['category']})" if i["category"] else ""
        ax.set_title(f"bit {bit}: {label_text(i['label'])}{cat}, IoU {i['iou']:.3f}\nused by: "
                     f"{', '.join(i['classes']) or '—'}" + (f"\nprecision: {prec}" if prec else ""), fontsize=8,
                     loc="left")
        path = Path(path)
        with io.atomic_path(path, suffix=".png") as tmp:
            fig.savefig(tmp, dpi=100, bbox_inches="tight", metadata={"Software": None})
        plt.close(fig)
        return path
