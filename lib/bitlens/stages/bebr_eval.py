"""Stage 12_bebr_eval: the COCO image→text table of the hash, bebr and float heads beside the published numbers,
baselines at equal bits, every tie policy, the CLIP retrieval protocol, search speed, recall against bits and the
deep-hashing metrics of the Hamming codes.

The binary heads are searched from the packed codes 11_bebr_train hands on (`bebr_train.CODE_FILES`); only the
released embeddings (`bebr.released.root`, float files) are packed here.
"""
from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from bitlens import claims, figures, io, speed, targets
from bitlens.bebr import baselines
from bitlens.bebr.evaluate import (TIE_MEANING, clip_protocol_recalls, clip_protocol_table, code_of, code_values,
                                   hashing_table_row, head_embeddings, load_feature_file, official_ranks_agree,
                                   pairs_hashing_metrics, paper_table, protocol_sentences, sign_codes, table_rows,
                                   ties_table)
from bitlens.bebr.train import load_features
from bitlens.codes import load_packed
from bitlens.metrics import l2_normalize
from bitlens.stage import Section, Stage
from bitlens.stages.bebr_train import CODE_FILES

# the released BEBR embeddings' folders, by head name
RELEASED_FOLDERS = {"hash": "hash", "bebr": "bebr", "float": "float_finetune"}


def load_embeddings(folder, binary: bool, planes: int, out_dim: int, packed: bool):
    """(image, text) evaluation embeddings of one head: its packed codes where `packed` and the head is binary,
    else its float files (binary values packed here)."""
    folder = Path(folder)
    if binary and packed:
        pair = tuple(load_packed(folder / CODE_FILES[f]) for f in ("feat_image.npy", "feat_txt.npy"))
        for code in pair:
            if code.m != out_dim or len(code.weights) != planes:
                raise ValueError(f"{folder}: packed codes of {code.m} dims × {len(code.weights)} planes, but "
                                 f"bebr.heads asks for {out_dim} × {planes}; re-run 11_bebr_train")
        return pair
    img, txt = load_feature_file(folder / "feat_image.npy"), load_feature_file(folder / "feat_txt.npy")
    return (code_of(img, True, planes), code_of(txt, True, planes)) if binary else (img, txt)


def clip_protocol_where(split: str) -> str:
    """Which images the CLIP-protocol table ranks, in the caption's words."""
    if split == "karpathy_test_5k":
        return ("Karpathy's 5k test split (user-supplied dataset_coco.json; its images partly lie in COCO train2017, "
                "the heads' training set, so the heads' rows there are not held out)")
    return f"{split} with all captions (no Karpathy split file given)"


def speed_systems(emb: dict, heads: dict, k: int) -> list:
    """One timed system per head: Hamming over the hash head's plane, SDC over the bebr head's planes, faiss inner
    product over the float head's normalised features."""
    systems = []
    for name, h in heads.items():
        img, txt = emb[name]
        if not h["binary"]:
            systems.append(speed.float_system(l2_normalize(img), l2_normalize(txt), k))
        elif h["u"] == 0:
            systems.append(speed.hash_system(img.planes[0], txt.planes[0], img.m, k))
        else:
            systems.append(speed.bebr_system(img, txt, k, metric="cosine"))
    return systems


def run(stage: Stage, force: bool = False) -> Section:
    """Every table and figure of the stage from the embeddings of 11_bebr_train (or the released ones). Nothing here
    is cached, so `force` changes nothing; every stage module takes it."""
    P = stage.params
    heads, headline = P["bebr"]["heads"], P["bebr"]["eval"]["headline_ties"]
    released = P["bebr"]["released"]["root"]
    out = Section()
    if released:
        src = stage.path(released)
        folders = {n: src / f for n, f in RELEASED_FOLDERS.items()}
    else:
        src = stage.input("11_bebr_train")
        folders = {name: src / name for name in heads}
    emb = {n: load_embeddings(folders[n], h["binary"], h["u"] + 1, h["out_dim"], packed=not released)
           for n, h in heads.items()}
    n_pairs = len(emb[next(iter(emb))][0])

    rows, sdc_ok = {}, {}
    for name, h in heads.items():
        img, txt = emb[name]
        rows[name] = table_rows(name, img, txt, h["binary"], h["u"] + 1, h["out_dim"])
        if h["binary"] and h["u"] > 0:
            sdc_ok[name] = official_ranks_agree(img, txt, h["u"] + 1)
    out.sentences.append(f"SDC ranking == official cosine ranking: {sdc_ok}")

    # baselines at equal bits, fit on the training CLIP features
    base_rows, hashers = {}, {}
    if not released:
        clip = load_features(stage.input("10_bebr_features"))
        head_bits = sorted({r["bits"] for n, r in rows.items() if heads[n]["binary"]})
        base_rows, hashers = baselines.baseline_rows(clip["train_feat"], clip["val_img"], clip["val_txt"], head_bits,
                                                     P["seed"])
        base_note = (f" Baselines (LSH, sign-PCA, ITQ with {baselines.ITQ_ITERATIONS} iterations) are fit on the "
                     f"{len(clip['train_feat'])} training CLIP features ({clip['train_feat'].shape[1]} dims; "
                     f"PCA-based codes up to that many bits), seed {P['seed']}.")
    else:
        base_note = " Baselines need the CLIP features of 10_bebr_features; the released embeddings come without them."
    baseline_sentences = baselines.baseline_sentences({n: r for n, r in rows.items() if heads[n]["binary"]},
                                                      base_rows, headline)
    out.sentences += [base_note.strip(), *baseline_sentences]

    published = targets.load_targets(P["report"]["targets"], stage.root)["bebr"]["rows"]
    out.tables["bebr_table"] = pd.DataFrame(paper_table(rows, base_rows, published, headline))
    stage.save_table(out.tables["bebr_table"], "bebr_table", (
        f"Image→text (and text→image) retrieval, {n_pairs} one-to-one pairs. "
        f"Ties: **{headline}** ({TIE_MEANING[headline]}). Bits per item are computed "
        f"from the codes: hash = dims, bebr = dims × planes, float = 32 × dims. Paper columns: "
        f"official BEBR table (COCO 2017 val, RN101). Rows of kind 'baseline' are binary codes of the same CLIP "
        f"features (not learned heads)." + base_note))
    out.tables["bebr_ties"] = pd.DataFrame(ties_table(rows))
    stage.save_table(out.tables["bebr_ties"], "bebr_ties", "Image→text Recall@K under each tie policy.")

    # the CLIP retrieval protocol: every caption of each image, the heads applied to every caption's features
    clip_rows, clip_split, clip_sentences = {}, None, []
    if not released:
        cp = stage.input("10_bebr_features") / "clip_protocol"
        split_info = io.read_json(cp / "split.json")
        clip_split = split_info["split"]
        cp_img = load_feature_file(stage.input("10_bebr_features") / split_info["images"])
        cp_txt = load_feature_file(cp / "txt.npy")
        cp_txt_image = np.load(cp / "txt_image.npy")
        clip_rows["CLIP (float, no head)"] = {"bits": 32 * cp_img.shape[1],
                                              **clip_protocol_recalls(cp_img, cp_txt, cp_txt_image, False, 1)}
        for name, h in heads.items():
            hi = head_embeddings(folders[name], cp_img, stage.device())
            ht = head_embeddings(folders[name], cp_txt, stage.device())
            clip_rows[name] = {"bits": rows[name]["bits"],
                               **clip_protocol_recalls(hi, ht, cp_txt_image, h["binary"], h["u"] + 1)}
        # the checkpoint reproduces the codes 11_bebr_train handed on (same rows when the images are val2017)
        if split_info["images"] == "val_img.npy":
            same = {n: bool(np.array_equal(head_embeddings(folders[n], cp_img, stage.device()),
                                           code_values(emb[n][0])))
                    for n, h in heads.items() if h["binary"]}
            out.sentences.append(f"head checkpoints reproduce 11_bebr_train's binary image codes: {same}")
    if clip_rows:
        out.tables["bebr_clip_protocol"] = pd.DataFrame(clip_protocol_table(clip_rows, headline))
        r0 = next(iter(clip_rows.values()))
        where = clip_protocol_where(clip_split)
        stage.save_table(out.tables["bebr_clip_protocol"], "bebr_clip_protocol", (
            f"CLIP retrieval protocol (open_clip / CLIP_benchmark recall@k): {r0['images']} images, all "
            f"{r0['captions']} captions, {where}. Image→text: hit when any of the image's captions is in the top K; "
            f"text→image: every caption queries for its image. Ties: {headline}. The official BEBR protocol (first "
            f"caption only) is the headline table above."), report=True)
        clip_sentences = protocol_sentences(rows, clip_rows, headline, where.split(" (")[0])
        out.sentences += clip_sentences

    # storage and response time at equal N (wall-clock: its own table)
    k = P["bebr"]["eval"]["search_k"]
    speed_df = speed.speed_table(speed_systems(emb, heads, k), repeat=5)
    for name, ms in zip(heads, speed_df["response ms"]):
        rows[name]["search_ms"] = float(ms)
    claim = (speed.claim_sentence(speed_df) if {"hash", "bebr"} <= set(speed_df["system"])
             else "hash or bebr head missing: the SDC claim is not measured.")
    stage.save_table(speed_df, "bebr_speed", f"Top-{k} search at equal N (image queries over the text gallery), "
                     f"min of 5 after a warm-up, wall-clock. {claim}")
    out.tables["bebr_speed"] = speed_df
    out.sentences.append(claim)

    data = "synthetic Shapes captions" if P["profile"] == "tiny" else "COCO image→text"
    base_pts = {m: [(r["bits"], r["i2t"][headline]["r10"]) for r in base_rows.values() if r["baseline"] == m]
                for m in baselines.METHODS if any(r["baseline"] == m for r in base_rows.values())}
    fig = figures.recall_vs_bits_figure({n: (r["bits"], r["i2t"][headline]["r10"]) for n, r in rows.items()},
                                        {n: (p["bits"], p["recall@10"]) for n, p in published.items()},
                                        f"this run ({P['profile']} profile, {data})",
                                        "published (COCO 2017 val, RN101)", baselines=base_pts)
    stage.save_figure(fig, "recall_vs_bits", caption=(
        f"Image→text Recall@10 against bits per item. Left: this run ({P['profile']} profile, {data}, "
        f"{n_pairs} pairs, {headline} ties). Dashed: baseline codes of the same CLIP features (LSH, sign-PCA, ITQ) "
        f"at several bit counts. Right: the published BEBR table. Different data, so separate panels."))
    plt.close(fig)  # shown by the notebook from the Section
    out.figures["recall_vs_bits"] = fig

    measured = claims.recall_table(rows, headline)
    out.sentences += claims.recall_order_sentences(measured, published, comparable=P["profile"] != "tiny")
    orders_agree = claims.agreement_summary(measured, published)

    # deep-hashing metrics of the Hamming codes: the hash head's and the baselines'
    hashing = {n: pairs_hashing_metrics(sign_codes(emb[n][0]), sign_codes(emb[n][1]))
               for n, h in heads.items() if h["binary"] and h["u"] == 0}
    for (method, bits), hasher in hashers.items():
        hashing[f"{method} {bits}b"] = pairs_hashing_metrics(hasher.codes(clip["val_img"]),
                                                             hasher.codes(clip["val_txt"]))
    if hashing:
        out.tables["bebr_hashing_metrics"] = pd.DataFrame([
            hashing_table_row(n, h, rows[n]["bits"] if n in rows else base_rows[n]["bits"],
                              "head" if n in rows else "baseline") for n, h in hashing.items()])
        hx = next(iter(hashing.values()))["i2t"]
        stage.save_table(out.tables["bebr_hashing_metrics"], "bebr_hashing_metrics", (
            f"Deep-hashing metrics of the Hamming codes, image→text ({hx['queries']} queries, relevant = the paired "
            f"caption; ties → lower index). mAP@K as DeepHash-pytorch's CalcTopMap (K below the {hx['database']} "
            f"items only); within Hamming radius {hx['radius']} a query with no item inside counts as precision 0; "
            f"the last-but-one column counts those queries. text→image mAP@all beside it." + base_note), report=True)
        fig = figures.hashing_curves({n: h["i2t"] for n, h in hashing.items()},
                                     "BEBR Hamming codes, image→text: PR over Hamming radius, precision@K")
        stage.save_figure(fig, "bebr_hashing_curves", caption=(
            "Image→text, relevant = the paired caption. Left: precision against recall as the Hamming radius grows "
            "from 0 to the code length. Right: precision@K (one relevant item per query, so at most 1/K)."))
        plt.close(fig)
        out.figures["bebr_hashing_curves"] = fig

    out.metrics = {"headline_ties": headline, "rows": rows, "baselines": base_rows, "hashing": hashing,
                   "clip_protocol": {"split": clip_split, "rows": clip_rows},
                   "baseline_sentences": baseline_sentences, "protocol_sentences": clip_sentences,
                   "sdc_matches_official": all(sdc_ok.values()), "orders_agree_with_paper": orders_agree}
    stage.write_metrics(out.metrics)
    return out
