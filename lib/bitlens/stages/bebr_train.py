"""Stage 11_bebr_train: the hash, bebr and float heads trained on the CLIP features of 10_bebr_features.

Each head's folder holds what the trainer writes (checkpoint, history, the official float files `feat_image.npy` /
`feat_txt.npy`) and, for a binary head, its evaluation codes packed as `bitlens.codes` files (`CODE_FILES`): what
12_bebr_eval searches.
"""
from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from bitlens.bebr.evaluate import code_of
from bitlens.bebr.train import load_features, train_or_launch
from bitlens.stages.bebr_params import head_config, options_from_params
from bitlens.codes import save_packed
from bitlens.stage import Section, Stage

# the packed twins of the official float files (image role, text role)
CODE_FILES = {"feat_image.npy": "codes_image.npz", "feat_txt.npy": "codes_txt.npz"}


def pack_head_outputs(head_dir, planes: int) -> list[Path]:
    """Pack a binary head's evaluation embeddings (values Σ 0.5^i · ±1 over `planes` planes) beside its float
    files; the float files stay for tools/eval.py."""
    head_dir = Path(head_dir)
    return [save_packed(head_dir / codes, code_of(np.load(head_dir / feat), True, planes))
            for feat, codes in CODE_FILES.items()]


def curves_figure(histories: dict):
    """Training loss and image→text R@1 per epoch, one line per head."""
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 3.5))
    for name, hist in histories.items():
        a1.plot(hist["epoch"], hist["loss"], marker="o", label=name)
        a2.plot(hist["epoch"], hist["val_r1"], marker="o", label=name)
    a1.set(xlabel="epoch", ylabel="training loss", title="loss")
    a2.set(xlabel="epoch", ylabel="image→text R@1", title="R@1 per epoch, evaluation pairs (last epoch reported)")
    a1.legend()
    a2.legend()
    return fig


def run(stage: Stage, force: bool = False) -> Section:
    """Train (or reuse) every head of `bebr.heads`; `force` trains from scratch even where a finished run with the
    same settings exists."""
    T = stage.params["bebr"]["train"]
    feat_dir = stage.input("10_bebr_features")
    feats = load_features(feat_dir)
    opts = options_from_params(T, stage.device())
    out = Section()
    histories = {}
    for name, h in stage.params["bebr"]["heads"].items():
        cfg = head_config(feats["train_feat"].shape[1], h)
        print(f"== {name}: {cfg.bits} bits ({cfg.out_dim} dims × {cfg.planes} planes)" if cfg.binary
              else f"== {name}: float, {cfg.out_dim} dims")
        histories[name] = train_or_launch(feats, feat_dir, cfg, opts, stage.dir / name, T["nproc"], fresh=force)
        if cfg.binary:
            pack_head_outputs(stage.dir / name, cfg.planes)
    fig = curves_figure(histories)
    stage.save_figure(fig, "training_curves")
    plt.close(fig)  # the notebook shows it from the Section, once
    out.figures["training_curves"] = fig
    out.metrics = {"reported_epoch": "last",
                   "heads": {n: {"epochs": len(h["epoch"]), "last_epoch_r1": h["val_r1"][-1]}
                             for n, h in histories.items()}}
    out.sentences = [f"{n}: {m['epochs']} epochs, image→text R@1 after the last {m['last_epoch_r1']:.4f}"
                     for n, m in out.metrics["heads"].items()]
    stage.write_metrics(out.metrics)
    return out
