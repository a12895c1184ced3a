"""The IBC evaluation of one code file (query set = database set, official semantics).

    python -m bitlens.ibc.evaluate --codes FILE.(mat|npz) [--expert-bits K] [--mis-max-num N] [--seed S] [--json]

class mAP (`compute_map.m`, self-match non-relevant), expert-bit class mAP (top-k GRM bits per class, needs GRM),
attribute mAP per attribute column of `lab` (`compute_map_attribute_rank.m`, self-match relevant), and MIS with
both estimators: sklearn's continuous kNN estimator (the paper's) and exact discrete MI.
"""
from __future__ import annotations

import argparse
import itertools
import json
import sys

import numpy as np

from bitlens import metrics
from bitlens.codes import binarize_sigmoid, load_codes


def evaluate_codes(binary_codes, lab, GRM=None, expert_bits: int = 13, mis_max_num: int = 100, seed: int = 0,
                   attributes: bool = True) -> dict:
    B = binarize_sigmoid(binary_codes)
    lab = np.asarray(lab)
    if lab.ndim == 1:
        lab = lab[:, None]
    labels = lab[:, 0].astype(np.int64)
    out = {"n": int(B.shape[0]), "bits": int(B.shape[1]), "class_map": metrics.class_map(B, labels)}
    out["expert_bit_map"] = (metrics.expert_bit_map(B, labels, GRM, min(expert_bits, B.shape[1]))
                             if GRM is not None else None)
    out["attribute_map"] = ([metrics.attribute_map(B, lab[:, 1:], j) for j in range(lab.shape[1] - 1)]
                            if attributes and lab.shape[1] > 1 else [])
    out["mis_knn"] = metrics.mutual_information_score(B, labels, mis_max_num, seed, "knn")
    out["mis_discrete"] = metrics.mutual_information_score(B, labels, mis_max_num, seed, "discrete")
    return out


def random_codes_like(B: np.ndarray, seed: int = 0) -> np.ndarray:
    return np.where(np.random.default_rng(seed).random(B.shape) < 0.5, -1, 1).astype(np.int8)


def customized_retrieval(B, attributes, j: int, groups: list[list[int]], seed: int = 0, max_groups: int = 8) -> dict:
    """Attribute mAP on dissection-selected bits: every non-empty combination of `groups` (0-based bit index
    lists) is tried and the best is reported — chosen on the evaluation set itself, so an upper bound — beside
    random bits of the same size."""
    groups = [sorted(set(g)) for g in groups if g][:max_groups]
    if not groups:
        return {}
    best = (-1.0, [])
    for r in range(1, len(groups) + 1):
        for combo in itertools.combinations(groups, r):
            bits = sorted(set().union(*combo))
            m = metrics.attribute_map(B, attributes, j, bits=bits)
            if m > best[0]:
                best = (m, bits)
    rng = np.random.default_rng(seed)
    rand_bits = sorted(rng.choice(B.shape[1], len(best[1]), replace=False).tolist())
    return {"bits": [b + 1 for b in best[1]], "map": best[0],
            "random_map": metrics.attribute_map(B, attributes, j, bits=rand_bits),
            "all_bits_map": metrics.attribute_map(B, attributes, j), "chosen_on": "test set",
            "combinations": 2 ** len(groups) - 1}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--codes", required=True, help=".mat or .npz with binary_codes, lab[, GRM]")
    ap.add_argument("--expert-bits", type=int, default=13)
    ap.add_argument("--mis-max-num", type=int, default=100)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    try:
        c = load_codes(args.codes)
        if c["lab"] is None:
            raise ValueError(f"{args.codes}: missing field 'lab' (class labels are needed for mAP and MIS)")
        res = evaluate_codes(c["binary_codes"], c["lab"], c["GRM"], args.expert_bits, args.mis_max_num, args.seed)
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps({k: res[k] for k in ("class_map", "expert_bit_map", "attribute_map", "mis_knn",
                                               "mis_discrete")}))
    else:
        print(f"{res['n']} codes × {res['bits']} bits (query set = database)")
        print(f"class mAP            {res['class_map']:.4f}")
        print(f"expert-bit mAP       {res['expert_bit_map']:.4f}" if res["expert_bit_map"] is not None
              else "expert-bit mAP       n/a (no GRM in the file)")
        for j, m in enumerate(res["attribute_map"]):
            print(f"attribute {j + 1:<4} mAP  {m:.4f}")
        print(f"MIS (kNN estimator)  {res['mis_knn']:.4f}\nMIS (discrete)       {res['mis_discrete']:.4f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
