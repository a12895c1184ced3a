"""Replica of the authors' released artifacts (docs/replica.md).

- BEBR: `dataset/{hash,bebr,float_finetune}/feat_{image,txt}.npy`, one row per COCO val pair: hash ±1 (1,024
  dims), bebr sums of the planes ±1 and ±0.5 (512 dims × 2 planes: values ±0.5, ±1.5), float_finetune float32
  (512 dims). Image i and caption i form pair i.
- IBC code files `<experiment>_256.mat`, MATLAB v5 (scipy.io): `binary_codes` (N × 256 sigmoid outputs),
  `lab` (N × 1 classes; SUN: class + 102 attributes, 1 / 0 / NaN = missing), `code_length`, `GRM` (C × 256).
- A released IBC checkpoint `{'state_dict': ...}` with the IBC model's key names (256 bits, AlexNet).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from bitlens import io
from bitlens.codes import save_codes

BEBR_DIMS = {"hash": (1024, 1), "bebr": (512, 2), "float_finetune": (512, 0)}  # folder: (dims, planes; 0 = float)
N_PAIRS = 40
IBC_CODES = {"imagenet100c": (100, 0), "imagenet150k": (1000, 0), "sun120k": (397, 102)}  # classes, attributes
N_CODES = 60
CODE_LENGTH = 256


def write_bebr(root: Path, seed: int) -> dict:
    """dataset/{hash,bebr,float_finetune}/feat_{image,txt}.npy; a caption's code is its image's, partly flipped,
    so the recalls are not those of chance."""
    rng = np.random.default_rng([seed, 5])
    for folder, (dims, planes) in BEBR_DIMS.items():
        base = rng.standard_normal((N_PAIRS, dims)).astype(np.float32)
        img = base + 0.8 * rng.standard_normal(base.shape).astype(np.float32)
        txt = base + 0.8 * rng.standard_normal(base.shape).astype(np.float32)
        if planes:
            def code(x):
                first = np.where(x >= 0, 1.0, -1.0)
                if planes == 1:
                    return first.astype(np.float32)
                second = np.where(x - first >= 0, 0.5, -0.5)  # the residual's sign: the second plane
                return (first + second).astype(np.float32)
            img, txt = code(img), code(txt)
        for name, arr in (("feat_image", img), ("feat_txt", txt)):
            io.save_npy(Path(root) / "dataset" / folder / f"{name}.npy", arr)
    return {"pairs": N_PAIRS, "folders": list(BEBR_DIMS)}


def write_ibc_codes(root: Path, seed: int) -> dict:
    """<experiment>_256.mat per experiment (MATLAB v5)."""
    rng = np.random.default_rng([seed, 6])
    out = {}
    for name, (classes, attrs) in IBC_CODES.items():
        used = rng.choice(classes, 5, replace=False)
        cls = used[np.arange(N_CODES) % len(used)]
        grm = (rng.random((classes, CODE_LENGTH)) < 0.1).astype(np.float32) * rng.random((classes, CODE_LENGTH),
                                                                                       dtype=np.float32)
        # codes lean towards their class's bits so that class mAP is not that of chance
        prototype = rng.random((len(used), CODE_LENGTH)) < 0.5
        logits = np.where(prototype[np.arange(N_CODES) % len(used)], 2.0, -2.0) + rng.standard_normal(
            (N_CODES, CODE_LENGTH))
        codes = (1 / (1 + np.exp(-logits))).astype(np.float32)
        lab = cls[:, None].astype(np.float64)
        if attrs:
            a = rng.choice(np.array([1.0, 0.0, np.nan]), (N_CODES, attrs), p=[0.3, 0.65, 0.05])
            lab = np.concatenate([lab, a], axis=1)
        path = save_codes(Path(root) / f"{name}_{CODE_LENGTH}.mat", codes, lab, CODE_LENGTH, grm)
        _fixed_header(path)
        out[name] = path.name
    return out


MAT_HEADER = b"MATLAB 5.0 MAT-file, Platform: GLNXA64, Created on: Thu Jan  1 00:00:00 2019"


def _fixed_header(path: Path) -> None:
    """A MAT v5 file starts with 116 bytes of descriptive text holding the creation time; a fixed text keeps the
    replica byte-identical for a seed (readers ignore it)."""
    data = path.read_bytes()
    if not data.startswith(b"MATLAB 5.0"):
        raise ValueError(f"{path}: not a MATLAB v5 file")
    io.write_bytes(path, MAT_HEADER.ljust(116, b" ") + data[116:])


def write_ibc_checkpoint(path: Path, seed: int, num_classes: int = 100) -> Path:
    """A released IBC checkpoint `{'state_dict': ...}` (256 bits, AlexNet, `num_classes` classes)."""
    from bitlens.ibc.model import build_ibc

    model = build_ibc(CODE_LENGTH, num_classes, "alexnet", 227, seed=seed)
    return io.torch_save(path, {"state_dict": model.state_dict()})
