"""Image lists: ImageNet-style `relpath label` and SUN-style `relpath class a1 … aK`.

SUN attribute values: 1 = present, -1 = absent, 2 = missing (→ NaN). A class
label of 99999 marks a missing class (IBC skips it in the class losses).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bitlens.data.coco import load_rgb

MISSING_LABEL = 99999


@dataclass
class ImageList:
    paths: list[str]
    labels: np.ndarray  # int64 (N,)
    attributes: np.ndarray | None  # float32 (N, K): 1 / 0 / NaN, or None for ImageNet-style lists
    source: str = ""

    def __len__(self) -> int:
        return len(self.paths)


def read_list(path, fmt: str = "imagenet", num_attributes: int = 0) -> ImageList:
    path = Path(path)
    if fmt not in ("imagenet", "sun"):
        raise ValueError(f"{path}: unknown list format {fmt!r}; valid: 'imagenet', 'sun'")
    if not path.exists():
        raise FileNotFoundError(f"{path}: list file not found")
    paths, labels, attrs = [], [], []
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        want = 2 if fmt == "imagenet" else 2 + num_attributes
        if fmt == "sun" and num_attributes == 0:
            want = len(parts)  # attribute count taken from the first line
            num_attributes = want - 2
        if len(parts) != want:
            raise ValueError(f"{path}:{lineno}: expected {want} fields "
                             f"({'relpath label' if fmt == 'imagenet' else f'relpath class + {num_attributes} attributes'}), "
                             f"got {len(parts)}: {line[:80]!r}")
        try:
            labels.append(int(parts[1]))
        except ValueError:
            raise ValueError(f"{path}:{lineno}: class label {parts[1]!r} is not an integer") from None
        paths.append(parts[0])
        if fmt == "sun":
            row = []
            for v in parts[2:]:
                if v == "1":
                    row.append(1.0)
                elif v in ("-1", "0"):
                    row.append(0.0)
                elif v == "2":
                    row.append(np.nan)
                else:
                    raise ValueError(f"{path}:{lineno}: attribute value {v!r} is not one of 1, -1, 0, 2")
            attrs.append(row)
    if not paths:
        raise ValueError(f"{path}: the list is empty")
    return ImageList(paths, np.asarray(labels, np.int64),
                     np.asarray(attrs, np.float32) if fmt == "sun" else None, str(path))


class ImageListDataset:
    """(image, label, attributes tensor (empty if none), index) for each list entry."""

    def __init__(self, image_list: ImageList, root, transform=None):
        self.list = image_list
        self.root = Path(root)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.list)

    def __getitem__(self, i):
        import torch

        p = self.root / self.list.paths[i]
        if not p.exists():
            raise FileNotFoundError(f"{p}: image listed at line {i + 1} of {self.list.source} is missing")
        img = load_rgb(p)
        if self.transform:
            img = self.transform(img)
        attrs = (torch.from_numpy(self.list.attributes[i]) if self.list.attributes is not None
                 else torch.zeros(0))
        return img, int(self.list.labels[i]), attrs, i
