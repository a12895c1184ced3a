"""Codes of an image list from an IBC model, as the official `fea_extraction.py` writes them: `binary_codes` =
the sigmoid outputs (N×K, binarised only at evaluation), `lab` = class then attributes (SUN-style: 1 present,
0 absent, 2 missing, as the official list reader leaves them), `code_length`, `GRM`; at most 50,000 items, in
list order; test transform = resize + centre crop."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from bitlens import codes as codes_mod
from bitlens.progress import progress

MISSING_ATTRIBUTE = 2.0  # the official `lab` keeps SUN's "2" (missing) as it is


def official_lab(image_list, n: int | None = None) -> np.ndarray:
    """(N, 1 + attributes) float: class label, then 1 / 0 / 2 (missing) per attribute."""
    n = len(image_list) if n is None else n
    lab = np.asarray(image_list.labels[:n], np.float64)[:, None]
    if image_list.attributes is not None:
        a = np.asarray(image_list.attributes[:n], np.float64)
        lab = np.concatenate([lab, np.where(np.isnan(a), MISSING_ATTRIBUTE, a)], 1)
    return lab


@torch.no_grad()
def extract_codes(model, image_list, root, resize: int, crop: int, device: str = "cpu", batch_size: int = 200,
                  max_samples: int = 50_000, num_workers: int = 0):
    """(sigmoid codes float32 (N, K), lab (N, 1 + attributes)) for the first min(len, max_samples) items."""
    from bitlens.ibc.images import ImageListImages, collate_normalized

    n = min(len(image_list), max_samples)
    ds = ImageListImages(image_list, root, resize, crop, normalized=False)
    dl = torch.utils.data.DataLoader(torch.utils.data.Subset(ds, range(n)), batch_size=batch_size,
                                     num_workers=num_workers, collate_fn=collate_normalized)
    was = model.training
    model.eval().to(device)
    out = []
    for x, _ in progress(dl, desc="extract codes"):
        out.append(model.codes(x.to(device)).float().cpu())
    model.train(was)
    return torch.cat(out).numpy(), official_lab(image_list, n)


def save_official(out_stem, b, lab, grm) -> list[Path]:
    """`<stem>.npz` and `<stem>.mat` with the official fields (binary_codes, lab, code_length, GRM)."""
    out_stem = Path(out_stem)
    return [codes_mod.save_codes(out_stem.with_name(out_stem.name + s), b, lab, b.shape[1], grm)
            for s in (".npz", ".mat")]


def save_packed(out_stem, b) -> Path:
    """`<stem>.packed.npz`: the codes sign(b − 0.5) as one bit plane (bitlens.codes), what later stages read
    instead of binarising the sigmoid outputs again."""
    out_stem = Path(out_stem)
    return codes_mod.save_packed(out_stem.with_name(out_stem.name + ".packed.npz"),
                                 codes_mod.RecurrentCode.from_values(codes_mod.binarize_sigmoid(b), (1.0,)))
