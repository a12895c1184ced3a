"""Stage 13_bebr_compat: a backward-compatible new BEBR version and its cross-version table (docs/compat.md).

`run(stage)` adapts the profile's `bebr.compat` / `bebr.train` settings to plain arguments, builds the new
encoder version's features, chooses λ and the head's start on held-out training pairs (`compat.select_setting`),
trains the compatible and the independent new heads for every seed (here or under torchrun, through
`bitlens.bebr.train.train_or_launch`), writes the selection table and the cross-version table (mean ± std over
seeds) with BCT's criterion in sentences made from the means, and the stage's metrics. The notebook only shows
what it returns.
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd

from bitlens.bebr import compat
from bitlens.bebr.evaluate import TIE_MEANING
from bitlens.bebr.heads import HeadConfig
from bitlens.bebr.train import Compatibility, embed, load_features, train_or_launch
from bitlens.stage import Section, Stage
from bitlens.stages.bebr_params import options_from_params


def run(stage: Stage, force: bool = False) -> Section:
    """Run the stage into `stage.dir`; `force` recomputes the new version's features and retrains every head."""
    P, C, T = stage.params, stage.params["bebr"]["compat"], stage.params["bebr"]["train"]
    device = stage.device()
    old_dir, heads_dir = stage.input("10_bebr_features"), stage.input("11_bebr_train")
    old_head_path = compat.head_checkpoint(heads_dir / C["old_head"])
    term = Compatibility.from_files(old_dir, old_head_path, 1.0)  # λ and the start are chosen below
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

    # the compatibility settings, chosen on held-out training pairs: the reported pairs never reach the choice
    S = C["select"]
    candidates = [{"weight": w, "warm_start": ws} for ws in S["warm_start"] for w in S["weights"]]
    selection = compat.select_setting(old_dir, new_dir, old_head.cfg, options_from_params(T, device), cfg, opts,
                                      candidates, S["holdout"], P["seed"], stage.dir / "selection", C["ties"],
                                      T["nproc"], fresh=force)
    chosen = selection["chosen"]
    shown = [f"{s} R@{k}" for s in ("old→old", "new→new", "new→old") for k in (1, 5, 10)]
    sel_table = pd.DataFrame([{"λ": r["weight"], "warm start": r["warm_start"], **{c: r[c] for c in shown},
                               "worst margin": r["worst"], "chosen": "✓" if i == selection["index"] else ""}
                              for i, r in enumerate(selection["candidates"])])
    sel_caption = (f"Choosing the compatibility settings without the reported pairs: the upgrade is rehearsed on the "
                   f"training pairs of {100 * (1 - S['holdout']):.0f}% of the training images (an old head with the "
                   f"old recipe, then each candidate's compatible new head) and measured on the "
                   f"{selection['holdout_pairs']} held-out images (first caption each); image→text Recall@K, "
                   f"ties {C['ties']}. Chosen: the largest worst margin of BCT's criterion over R@1/5/10 (ties: the "
                   f"first listed): λ = {chosen['weight']:g}, warm start {chosen['warm_start']}.")
    stage.save_table(sel_table, "compat_selection", sel_caption, report=True)
    term = replace(term, **chosen)

    old_codes = tuple(embed(old_head, old_feats[k], device) for k in ("val_img", "val_txt"))  # the old index
    planes = {"old": old_head.cfg.planes, "new (compatible)": cfg.planes, "new (independent)": cfg.planes}
    per_seed, histories = [], {}
    seeds = [opts.seed + i for i in range(C["seeds"])]
    for seed in seeds:
        codes = {"old": old_codes}
        for name, with_term in (("compatible", term), ("independent", None)):
            print(f"== {name} head, seed {seed}: λ = {term.weight if with_term else 0}, {cfg.bits} bits")
            folder = stage.dir / f"{name}_seed{seed}"
            histories[folder.name] = train_or_launch(new_feats, new_dir, cfg, replace(opts, seed=seed), folder,
                                                     T["nproc"], fresh=force, compat=with_term)
            codes[f"new ({name})"] = (np.load(folder / "feat_image.npy"), np.load(folder / "feat_txt.npy"))
        per_seed.append(compat.compat_rows(codes, planes, C["ties"]))
    rows = compat.mean_rows(per_seed)
    verdict = compat.bct_verdict(rows)  # from the means over seeds
    table = pd.DataFrame(compat.display_rows(rows))
    caption = (f"Image→text Recall@K, {len(old_codes[0])} validation pairs, query version × gallery version, mean ± "
               f"sample std over {len(seeds)} head seeds ({', '.join(map(str, seeds))}; the old head is fixed, so "
               f"old→old does not vary); old: {old_model} + head '{C['old_head']}' ({old_head.cfg.bits} bits), new: "
               f"{E['model']} ({cfg.bits} bits), compatible head with λ = {term.weight:g}, warm start "
               f"{term.warm_start} (chosen on held-out training pairs), SDC over packed bit planes. Ties: "
               f"**{C['ties']}** ({TIE_MEANING[C['ties']]}). The criterion is checked on the means. "
               + " ".join(verdict["sentences"]))
    stage.save_table(table, "compat_table", caption, report=True)
    sdc_ok = compat.topk_matches_float(codes["new (compatible)"][0], cfg.planes, old_codes[1], old_head.cfg.planes, 10)
    sentences += [sel_caption] + verdict["sentences"] + [
        f"cross-version sdc_topk over packed planes == float cosine of the unpacked codes: {sdc_ok}"]
    metrics = {"ties": C["ties"], "rows": rows, "rows_per_seed": dict(zip(map(str, seeds), per_seed)),
               "bct": verdict, "selection": selection, "sdc_topk_matches_float": sdc_ok,
               "old": {"encoder": old_model, "head": C["old_head"], "bits": old_head.cfg.bits},
               "new": {"encoder": E["model"], "weights": str(weights), "bits": cfg.bits, "compat": chosen,
                       "seeds": seeds, "histories": histories}}
    stage.write_metrics(metrics)
    return Section(tables={"compat_selection": sel_table, "compat_table": table}, sentences=sentences,
                   metrics=metrics)
