"""Broden (NetDissect) dataset reader: the real broden1_224 and the Shapes world's export alike.

Files (all under the Broden root):
  index.csv         image,split,ih,iw,sh,sw,<one column per category>; a category cell holds `;`-separated
                    entries: a decimal integer = a label for the whole image, a PNG file name (relative to
                    images/) = per-pixel labels with label id = R + 256·G. Image paths are relative to images/.
  category.csv      name,first,last,count,frequency
  label.csv         number,name,category,frequency,coverage,syns; category cells like `material(36);object(3)`.
                    Label 0 ('-', unlabelled) is implicit, as in Broden.
  c_<category>.csv  code,number,name,frequency,coverage: the category's dense codes and per-category coverage.
"""
from __future__ import annotations

import csv
import re
from pathlib import Path

import numpy as np
from PIL import Image

META_COLUMNS = ("image", "split", "ih", "iw", "sh", "sw")
_CATEGORY_ENTRY = re.compile(r"^([^()]+)\((\d+)\)$")


def decode_mask(path) -> np.ndarray:
    """int32 (h, w) label ids of a Broden mask PNG: R + 256·G."""
    try:
        with Image.open(path) as im:
            a = np.asarray(im.convert("RGB"), dtype=np.int32)
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: Broden mask file not found") from None
    except OSError as e:
        raise ValueError(f"{path}: cannot read Broden mask ({e})") from None
    return a[..., 0] + 256 * a[..., 1]


def _read_csv(path: Path, required: tuple[str, ...]) -> list[dict]:
    """Rows as dicts, each with `_line` = its line number in the file; header checked for `required`."""
    if not path.exists():
        raise FileNotFoundError(f"{path}: required Broden file is missing (is {path.parent} a Broden folder? "
                                "see data/README.md)")
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        missing = [c for c in required if c not in (reader.fieldnames or [])]
        if missing:
            raise ValueError(f"{path}:1: header lacks column(s) {', '.join(missing)}; "
                             f"found {', '.join(reader.fieldnames or [])}")
        rows = []
        for row in reader:
            if None in row or any(v is None for v in row.values()):
                raise ValueError(f"{path}:{reader.line_num}: expected {len(reader.fieldnames)} fields "
                                 f"({','.join(reader.fieldnames)})")
            row["_line"] = reader.line_num
            rows.append(row)
    return rows


def _int(value: str, path: Path, line: int, column: str) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        raise ValueError(f"{path}:{line}: column '{column}' should be an integer, got {value!r}") from None


def _float(value: str, path: Path, line: int, column: str) -> float:
    if value in ("", None):
        return 0.0
    try:
        return float(value)
    except ValueError:
        raise ValueError(f"{path}:{line}: column '{column}' should be a number, got {value!r}") from None


class Broden:
    """A Broden folder: `.categories`, `.labels` (label.csv as a DataFrame), `.records` (index.csv rows),
    `.num_labels` (max label number + 1), `.label_names`, `load_image(i)`, `load_labels(i)`."""

    def __init__(self, root):
        import pandas as pd

        self.root = Path(root)
        if not self.root.is_dir():
            raise FileNotFoundError(f"{self.root}: Broden folder not found (see data/README.md: broden1_224)")
        cat_path, label_path, index_path = (self.root / n for n in ("category.csv", "label.csv", "index.csv"))
        cats = _read_csv(cat_path, ("name",))
        self.categories = [c["name"] for c in cats]
        if not self.categories:
            raise ValueError(f"{cat_path}: lists no category")

        labels = _read_csv(label_path, ("number", "name", "category"))
        self.label_names: dict[int, str] = {0: "-"}
        self._label_counts: dict[int, dict[str, int]] = {}
        for row in labels:
            line = row["_line"]
            num = _int(row["number"], label_path, line, "number")
            if num <= 0:
                continue  # label 0 is the implicit '-'; tolerate files that spell it out
            counts = {}
            for entry in filter(None, row["category"].split(";")):
                m = _CATEGORY_ENTRY.match(entry.strip())
                if not m:
                    raise ValueError(f"{label_path}:{line}: category cell {row['category']!r} should look like "
                                     "'object(3)' or 'material(36);object(3)'")
                if m.group(1) not in self.categories:
                    raise ValueError(f"{label_path}:{line}: unknown category {m.group(1)!r} for label {num}; "
                                     f"category.csv lists {', '.join(self.categories)}")
                counts[m.group(1)] = int(m.group(2))
            if num in self._label_counts:
                raise ValueError(f"{label_path}:{line}: label number {num} appears twice")
            self._label_counts[num] = counts
            self.label_names[num] = row["name"]
        self.num_labels = max(self.label_names) + 1
        self.labels = pd.DataFrame([{k: v for k, v in r.items() if k != "_line"} for r in labels])
        self.labels["number"] = self.labels["number"].astype(int)

        # per-category coverage from c_<category>.csv decides a label's primary category, as NetDissect does
        self._coverage: dict[str, dict[int, float]] = {}
        for cat in self.categories:
            path = self.root / f"c_{cat}.csv"
            if path.exists():
                self._coverage[cat] = {}
                for row in _read_csv(path, ("code", "number", "name", "coverage")):
                    num = _int(row["number"], path, row["_line"], "number")
                    if num not in self.label_names:
                        raise ValueError(f"{path}:{row['_line']}: label number {num} is not in label.csv")
                    self._coverage[cat][num] = _float(row["coverage"], path, row["_line"], "coverage")
        self._primary = {num: self._primary_of(num) for num in self._label_counts}

        records = _read_csv(index_path, META_COLUMNS)
        absent = [c for c in self.categories if records and c not in records[0]]
        if absent:
            raise ValueError(f"{index_path}:1: no column for categor{'y' if len(absent) == 1 else 'ies'} "
                             f"{', '.join(absent)} listed in category.csv")
        for r in records:
            for col in ("ih", "iw", "sh", "sw"):
                _int(r[col], index_path, r["_line"], col)
        self.records = records

    def _primary_of(self, num: int, among=None) -> str:
        """The category where the label covers most (c_<category>.csv); NetDissect breaks ties towards the
        category listed later. Without c_ files: the category with the highest count in label.csv. `among`
        restricts the choice to those categories (the fork only knows the dissected ones)."""
        cands = [c for c in self.categories if c in self._label_counts[num] and (among is None or c in among)]
        if not cands:
            return ""
        if all(c in self._coverage for c in cands):
            return max(cands, key=lambda c: (self._coverage[c].get(num, 0.0), self.categories.index(c)))
        return max(cands, key=lambda c: (self._label_counts[num][c], self.categories.index(c)))

    def primary_category(self, label_id: int, among=None) -> str:
        """The category a label is scored under ('' for label 0 or a number label.csv does not list); `among`:
        only these categories count ('' if the label is in none of them)."""
        num = int(label_id)
        if among is None or num not in self._label_counts:
            return self._primary.get(num, "")
        return self._primary_of(num, set(among))

    def has_labels(self, i: int, categories=None) -> bool:
        """Whether index.csv gives image i any entry (a mask or a nonzero label) in `categories` (None: all)."""
        rec = self.records[i]
        for cat in (self.categories if categories is None else categories):
            for entry in (rec.get(cat) or "").split(";"):
                entry = entry.strip()
                if entry and entry != "0":
                    return True
        return False

    def __len__(self) -> int:
        return len(self.records)

    def image_path(self, i: int) -> Path:
        return self.root / "images" / self.records[i]["image"]

    def load_image(self, i: int) -> np.ndarray:
        """uint8 (ih, iw, 3) RGB."""
        p = self.image_path(i)
        try:
            with Image.open(p) as im:
                return np.asarray(im.convert("RGB"))
        except FileNotFoundError:
            raise FileNotFoundError(f"{p}: image of {self.root / 'index.csv'} line {self.records[i]['_line']} "
                                    "is missing") from None
        except OSError as e:
            raise ValueError(f"{p}: cannot read the image of {self.root / 'index.csv'} line "
                             f"{self.records[i]['_line']} ({e})") from None

    @staticmethod
    def decode_mask(path) -> np.ndarray:
        return decode_mask(path)

    def load_labels(self, i: int, categories=None) -> dict[str, list]:
        """Per category with data: its entries in cell order — int32 (sh, sw) label maps for PNG entries,
        ints for image-level labels."""
        rec = self.records[i]
        where = f"{self.root / 'index.csv'}:{rec['_line']}"
        cats = list(categories) if categories is not None else self.categories
        unknown = [c for c in cats if c not in self.categories]
        if unknown:
            raise ValueError(f"unknown Broden categor{'y' if len(unknown) == 1 else 'ies'} {', '.join(unknown)}; "
                             f"{self.root / 'category.csv'} lists {', '.join(self.categories)}")
        sh, sw = int(rec["sh"]), int(rec["sw"])
        out: dict[str, list] = {}
        for cat in cats:
            entries = []
            for entry in (e.strip() for e in (rec.get(cat) or "").split(";")):
                if not entry:
                    continue
                if entry.isdigit():
                    lab = int(entry)
                    if lab not in self.label_names:
                        raise ValueError(f"{where}: image-level label {lab} in column '{cat}' is not in "
                                         f"{self.root / 'label.csv'}")
                    entries.append(lab)
                    continue
                path = self.root / "images" / entry
                if not path.exists():
                    raise FileNotFoundError(f"{path}: mask named in {where} (column '{cat}') is missing")
                m = decode_mask(path)
                if m.shape != (sh, sw):
                    raise ValueError(f"{path}: mask is {m.shape[0]}x{m.shape[1]} but {where} says sh, sw = "
                                     f"{sh}, {sw}")
                entries.append(m)
            if entries:
                out[cat] = entries
        return out
