"""Paper-shaped training throughput on a GPU (synthetic inputs; the real datasets are not needed).

- BEBR: heads on 512-d features of COCO size (591,753 train pairs, 5,000 val pairs), batch 4,096, AMP optional.
- IBC: the AlexNet configuration (K = 256, 100 classes) on synthetic 227-px batches of 200, a few hundred steps.
"""
from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch


def bebr(pairs: int, epochs: int, amp: bool) -> dict:
    from bitlens.bebr.heads import HeadConfig
    from bitlens.bebr.train import TrainOptions, train_head

    rng = np.random.default_rng(0)
    n_img = pairs // 5
    img = rng.standard_normal((n_img, 512)).astype(np.float32)
    idx = rng.integers(0, n_img, pairs)
    txt = img[idx] + 0.8 * rng.standard_normal((pairs, 512)).astype(np.float32)
    feat = np.empty((2 * pairs, 512), np.float32)
    feat[0::2], feat[1::2] = img[idx], txt
    feat /= np.linalg.norm(feat, axis=1, keepdims=True)
    val_i = img[:5000] / np.linalg.norm(img[:5000], axis=1, keepdims=True)
    val_t = val_i + 0.05 * rng.standard_normal(val_i.shape).astype(np.float32)
    feats = {"train_feat": feat, "train_label": np.repeat(idx, 2), "val_img": val_i, "val_txt": val_t}
    out = {}
    for name, cfg in {"hash": HeadConfig(512, 1024, 0, 1536, 3), "bebr": HeadConfig(512, 512, 1, 2048, 1),
                      "float": HeadConfig(512, 512, 0, 2048, 3, binary=False)}.items():
        opts = TrainOptions(epochs=epochs, device="cuda", amp=amp)
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        h = train_head(feats, cfg, opts, f"/tmp/bebr_{name}", fresh=True, log=lambda *a: None)
        torch.cuda.synchronize()
        dt = time.perf_counter() - t0
        out[name] = {"seconds": round(dt, 2), "pairs_per_s": round(pairs * epochs / dt),
                     "epoch_seconds": [round(s, 2) for s in h["seconds"]], "val_r1": h["val_r1"]}
    return out


def ibc(iterations: int) -> dict:
    from bitlens.ibc.loss import ibc_losses, weighted_total
    from bitlens.ibc.model import IBC
    from bitlens.ibc.train import IBCTrainOptions, build_optimizer

    torch.manual_seed(0)
    m = IBC(256, 100, "alexnet", 227).cuda()
    opts = IBCTrainOptions()
    opt, sched = build_optimizer(m, opts)
    x = torch.randn(200, 3, 227, 227, device="cuda")
    y = torch.randint(0, 100, (200,), device="cuda")
    times = []
    for it in range(iterations):
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        terms = ibc_losses(m, x[:100], y[:100], x[100:], y[100:], opts.thr_g)
        loss = weighted_total(terms, opts.weights)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        m.renormalize_grm()
        sched.step()
        torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    steady = times[10:] or times
    return {"iterations": iterations, "it_per_s": round(1 / np.mean(steady), 2),
            "images_per_s": round(200 / np.mean(steady)), "final_loss": float(loss.detach()),
            "hours_for_50k_iterations": round(50_000 * np.mean(steady) / 3600, 2)}


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--pairs", type=int, default=591_753)
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--ibc-iterations", type=int, default=300)
    ap.add_argument("--amp", action="store_true")
    a = ap.parse_args()
    print(json.dumps({"device": torch.cuda.get_device_name(0), "bebr": bebr(a.pairs, a.epochs, a.amp),
                      "ibc": ibc(a.ibc_iterations)}, indent=1))
