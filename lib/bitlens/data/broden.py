"""Broden (NetDissect) dataset reader.

`index.csv` rows name an image and, per category, `;`-separated entries: a
PNG file with per-pixel labels (label id = R + 256·G) or a decimal integer,
an image-level label. `label.csv`, `category.csv` and `c_<category>.csv`
describe the labels.
"""
from __future__ import annotations

import csv
import re
from pathlib import Path

import numpy as np
from PIL import Image

CATEGORY_COLUMNS = ("color", "object", "material", "part", "scene", "texture")


def decode_mask(path) -> np.ndarray:
    """Label ids of a Broden mask PNG: R + 256·G."""
    try:
        with Image.open(path) as im:
            a = np.asarray(im.convert("RGB"), dtype=np.int32)
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: Broden mask file not found") from None
    return a[..., 0] + 256 * a[..., 1]


def _read_csv(path: Path) -> list[dict]:
    if not path.exists():
        raise FileNotFoundError(f"{path}: required Broden file is missing (is this a Broden folder?)")
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


class Broden:
    def __init__(self, root):
        import pandas as pd

        self.root = Path(root)
        if not self.root.is_dir():
            raise FileNotFoundError(f"{self.root}: Broden folder not found (see data/README.md)")
        self.labels = pd.read_csv(self.root / "label.csv", keep_default_na=False) if (self.root / "label.csv").exists() \
            else None
        if self.labels is None:
            raise FileNotFoundError(f"{self.root / 'label.csv'}: required Broden file is missing")
        for col in ("number", "name", "category"):
            if col not in self.labels.columns:
                raise ValueError(f"{self.root / 'label.csv'}: missing column '{col}'")
        cats = _read_csv(self.root / "category.csv")
        self.categories = [c["name"] for c in cats]
        index = _read_csv(self.root / "index.csv")
        if index and not {"image", "ih", "iw", "sh", "sw"} <= set(index[0]):
            raise ValueError(f"{self.root / 'index.csv'}: needs columns image, ih, iw, sh, sw and one per category")
        self.records = index
        self.num_labels = int(self.labels["number"].max()) + 1
        self._primary = {}
        for _, row in self.labels.iterrows():
            self._primary[int(row["number"])] = self._parse_primary(str(row["category"]))
        self.label_names = {int(r["number"]): str(r["name"]) for _, r in self.labels.iterrows()}

    @staticmethod
    def _parse_primary(cell: str) -> str:
        """`material(36);object(3)` → the category with the highest count."""
        best, best_n = "", -1
        for name, n in re.findall(r"([A-Za-z_]+)\((\d+)\)", cell):
            if int(n) > best_n:
                best, best_n = name, int(n)
        return best

    def primary_category(self, label_id: int) -> str:
        return self._primary.get(int(label_id), "")

    def __len__(self) -> int:
        return len(self.records)

    def image_path(self, i: int) -> Path:
        return self.root / "images" / self.records[i]["image"]

    def load_image(self, i: int) -> np.ndarray:
        p = self.image_path(i)
        try:
            with Image.open(p) as im:
                return np.asarray(im.convert("RGB"))
        except FileNotFoundError:
            raise FileNotFoundError(f"{p}: image of index.csv row {i + 2} is missing") from None

    def load_labels(self, i: int, categories=None) -> dict[str, list]:
        """Per category: a list of pixel label maps (int32, sh × sw) and/or image-level label ids."""
        rec = self.records[i]
        sh, sw = int(rec["sh"]), int(rec["sw"])
        out: dict[str, list] = {}
        for cat in categories or self.categories:
            cell = (rec.get(cat) or "").strip()
            if not cell:
                continue
            entries = []
            for entry in cell.split(";"):
                entry = entry.strip()
                if not entry:
                    continue
                if entry.isdigit():
                    entries.append(int(entry))
                    continue
                m = decode_mask(self.root / "images" / entry)
                if m.shape != (sh, sw):
                    raise ValueError(f"{self.root / 'images' / entry}: mask is {m.shape[0]}x{m.shape[1]} but "
                                     f"index.csv row {i + 2} says sh, sw = {sh}, {sw}")
                entries.append(m)
            out[cat] = entries
        return out
