"""Image lists, as IBC's releases ship them: ImageNet-style `relpath label`, SUN-style `relpath class a1 … aK`.

SUN attribute values: 1 = present, -1 (or 0) = absent, 2 = missing (→ NaN). A class label of 99999 marks
a missing class (IBC skips it in its class losses). Paths are relative to the dataset's image root.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from bitlens.data.coco import load_rgb
from bitlens.labels import MISSING_LABEL

FORMATS = ("imagenet", "sun")
_ATTRIBUTE_VALUES = {"1": 1.0, "-1": 0.0, "0": 0.0, "2": np.nan}


@dataclass
class ImageList:
    paths: list[str]
    labels: np.ndarray  # int64 (N,); MISSING_LABEL where the class is unknown
    attributes: np.ndarray | None  # float32 (N, K): 1 / 0 / NaN (missing); None for ImageNet-style lists
    source: str = ""  # the list file
    lines: list[int] = field(default_factory=list)  # line number of each entry in the list file

    def __len__(self) -> int:
        return len(self.paths)

    def where(self, i: int) -> str:
        """'<list file>:<line>' of entry i, for error messages."""
        return f"{self.source}:{self.lines[i]}" if self.lines else f"{self.source} entry {i + 1}"


def read_list(path, fmt: str = "imagenet", num_attributes: int = 0) -> ImageList:
    """Parse a list file. For `sun`, `num_attributes` = 0 takes the attribute count from the first line."""
    path = Path(path)
    if fmt not in FORMATS:
        raise ValueError(f"{path}: unknown list format {fmt!r}; valid: {', '.join(FORMATS)}")
    if not path.is_file():
        raise FileNotFoundError(f"{path}: list file not found (see data/README.md)")
    paths, labels, attrs, lines = [], [], [], []
    k = num_attributes
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            parts = line.split()
            if not parts:
                continue
            if fmt == "sun" and k == 0:
                k = len(parts) - 2
                if k < 1:
                    raise ValueError(f"{path}:{lineno}: a SUN-style line needs 'relpath class a1 … aK', "
                                     f"got {line.strip()[:80]!r}")
            want = 2 if fmt == "imagenet" else 2 + k
            if len(parts) != want:
                shape = "relpath label" if fmt == "imagenet" else f"relpath class + {k} attributes"
                raise ValueError(f"{path}:{lineno}: expected {want} fields ({shape}), got {len(parts)}: "
                                 f"{line.strip()[:80]!r}")
            try:
                label = int(parts[1])
            except ValueError:
                raise ValueError(f"{path}:{lineno}: class label {parts[1]!r} is not an integer") from None
            if label < 0:
                raise ValueError(f"{path}:{lineno}: class label {label} is negative (use {MISSING_LABEL} for "
                                 "a missing label)")
            if fmt == "sun":
                try:
                    attrs.append([_ATTRIBUTE_VALUES[v] for v in parts[2:]])
                except KeyError as e:
                    raise ValueError(f"{path}:{lineno}: attribute value {e.args[0]!r} is not one of 1, -1, 0, "
                                     "2 (missing)") from None
            paths.append(parts[0])
            labels.append(label)
            lines.append(lineno)
    if not paths:
        raise ValueError(f"{path}: the list is empty")
    attributes = np.asarray(attrs, np.float32).reshape(len(paths), k) if fmt == "sun" else None
    return ImageList(paths, np.asarray(labels, np.int64), attributes, str(path), lines)


class ImageListDataset:
    """Torch-style dataset: (image, label, attributes tensor (empty if none), index) per list entry.

    Images are RGB PIL images passed through `transform`."""

    def __init__(self, image_list: ImageList, root, transform=None):
        self.list = image_list
        self.root = Path(root)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.list)

    def path(self, i: int) -> Path:
        return self.root / self.list.paths[i]

    def __getitem__(self, i):
        import torch

        p = self.path(i)
        if not p.exists():
            raise FileNotFoundError(f"{p}: image listed at {self.list.where(i)} is missing "
                                    f"(is the image root {self.root} right?)")
        img = load_rgb(p)
        if self.transform is not None:
            img = self.transform(img)
        attrs = (torch.from_numpy(self.list.attributes[i]) if self.list.attributes is not None
                 else torch.zeros(0))
        return img, int(self.list.labels[i]), attrs, i
