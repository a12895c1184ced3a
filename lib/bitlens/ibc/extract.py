"""Codes of an image list from a trained IBC model → `.npz` + `.mat` with the official fields
(`binary_codes` = sigmoid values N×K, `lab` = class [+ attributes], `code_length`, `GRM`); at most `max_samples`."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from bitlens import codes as codes_mod
from bitlens.progress import progress


@torch.no_grad()
def extract_codes(model, image_list, root, resize: int, crop: int, device: str = "cpu", batch_size: int = 200,
                  max_samples: int = 50_000, num_workers: int = 0):
    """(sigmoid codes float32 (N,K), lab (N, 1 + attributes))."""
    from bitlens.data.imagelist import ImageListDataset
    from bitlens.ibc.train import transforms

    n = min(len(image_list), max_samples)
    ds = ImageListDataset(image_list, root, transforms(resize, crop, train=False))
    sub = torch.utils.data.Subset(ds, range(n))
    dl = torch.utils.data.DataLoader(sub, batch_size=batch_size, num_workers=num_workers)
    model.eval().to(device)
    out = []
    for x, _, _, _ in progress(dl, desc="extract codes"):
        out.append(model.codes(x.to(device)).float().cpu())
    b = torch.cat(out).numpy()
    lab = image_list.labels[:n, None].astype(np.float64)
    if image_list.attributes is not None:
        # official lab columns: class, then attributes as 1 / 0 (missing → 0 here, recorded as NaN-free)
        lab = np.concatenate([lab, np.nan_to_num(image_list.attributes[:n], nan=0.0)], 1)
    return b, lab


def save_official(out_stem, b, lab, grm) -> list[Path]:
    out_stem = Path(out_stem)
    return [codes_mod.save_codes(out_stem.with_suffix(s), b, lab, b.shape[1], grm) for s in (".npz", ".mat")]
