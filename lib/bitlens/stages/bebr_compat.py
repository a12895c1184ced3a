"""Stage 13_bebr_compat: a backward-compatible new BEBR version and its cross-version table (docs/compat.md).

`run(stage)` adapts the profile's `bebr.compat` / `bebr.train` settings to plain arguments, builds the new
encoder version's features, trains the compatible and the independent new heads (here or under torchrun, through
`bitlens.bebr.train.train_or_launch`), writes the cross-version table with BCT's criterion in sentences made from
its numbers, and the stage's metrics. The notebook only shows what it returns.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from bitlens.bebr import compat
from bitlens.bebr.evaluate import TIE_MEANING
from bitlens.bebr.heads import HeadConfig
from bitlens.bebr.train import Compatibility, embed, load_features, options_from_params, train_or_launch
from bitlens.stage import Section, Stage


def run(stage: Stage, force: bool = False) -> Section:
    """Run the stage into `stage.dir`; `force` recomputes the new version's features and retrains every head."""
    P, C, T = stage.params, stage.params["bebr"]["compat"], stage.params["bebr"]["train"]
    device = stage.device()
    old_dir, heads_dir = stage.input("10_bebr_features"), stage.input("11_bebr_train")
    old_head_path = compat.head_checkpoint(heads_dir / C["old_head"])
    term = Compatibility.from_files(old_dir, old_head_path, C["weight"])
    old_head, old_feats = term.old_head, term.old_features
    old_model = P["bebr"]["encoder"]["model"]
    sentences = [f"old version: {old_model} features, head '{C['old_head']}' ({old_head.cfg.bits} bits)"]

    E = C["encoder"]
    new_dir = stage.dir / "features"
    stage.seed_everything(E["tiny_seed"])
    coco = P["data"]["coco"]
    weights = compat.new_version_features(new_dir, stage.path(coco["root"]), (coco["train_split"], coco["val_split"]),
                                          E, P["seed"] + E["tiny_seed"], device, force=force,
                                          old_weights=old_dir / "tiny_clip.pt", root=stage.root)
    new_feats = load_features(new_dir)
    start = " continued from the old version's weights" if E["train_tiny"] and E["init_from_old"] else ""
    sentences.append(f"new version: {E['model']} ({weights or 'random init'}{start}), "
                     f"{new_feats['train_feat'].shape[1]}-d features")

    u = old_head.cfg.u if C["new_u"] is None else C["new_u"]
    cfg = HeadConfig(new_feats["train_feat"].shape[1], old_head.cfg.out_dim, u, old_head.cfg.hidden,
                     old_head.cfg.blocks)
    opts = options_from_params({**T, "epochs": C["epochs"] or T["epochs"]}, device)
    histories = {}
    for name, with_term in (("compatible", term), ("independent", None)):
        print(f"== {name} head: λ = {C['weight'] if with_term else 0}, {cfg.bits} bits ({cfg.out_dim} dims × "
              f"{cfg.planes} planes)")
        histories[name] = train_or_launch(new_feats, new_dir, cfg, opts, stage.dir / name, T["nproc"], fresh=force,
                                          compat=with_term)

    def val_codes(d):
        return np.load(d / "feat_image.npy"), np.load(d / "feat_txt.npy")

    codes = {"old": tuple(embed(old_head, old_feats[k], device) for k in ("val_img", "val_txt")),  # the old index
             "new (compatible)": val_codes(stage.dir / "compatible"),
             "new (independent)": val_codes(stage.dir / "independent")}
    planes = {"old": old_head.cfg.planes, "new (compatible)": cfg.planes, "new (independent)": cfg.planes}
    rows = compat.compat_rows(codes, planes, C["ties"])
    verdict = compat.bct_verdict(rows)
    table = pd.DataFrame(rows)
    caption = (f"Image→text Recall@K, {len(codes['old'][0])} validation pairs, query version × gallery version; old: "
               f"{old_model} + head '{C['old_head']}' ({old_head.cfg.bits} bits), new: {E['model']} "
               f"({cfg.bits} bits), SDC over packed bit planes. Ties: **{C['ties']}** ({TIE_MEANING[C['ties']]}). "
               + " ".join(verdict["sentences"]))
    stage.save_table(table, "compat_table", caption, report=True)
    sdc_ok = compat.topk_matches_float(codes["new (compatible)"][0], cfg.planes, codes["old"][1], old_head.cfg.planes,
                                       10)
    sentences += verdict["sentences"] + [
        f"cross-version sdc_topk over packed planes == float cosine of the unpacked codes: {sdc_ok}"]
    metrics = {"ties": C["ties"], "rows": rows, "bct": verdict, "sdc_topk_matches_float": sdc_ok,
               "old": {"encoder": old_model, "head": C["old_head"], "bits": old_head.cfg.bits},
               "new": {"encoder": E["model"], "weights": str(weights), "bits": cfg.bits, "weight": C["weight"],
                       "histories": histories}}
    stage.write_metrics(metrics)
    return Section(tables={"compat_table": table}, sentences=sentences, metrics=metrics)
