"""Evaluate one IBC code file (query set = database set), with the authors' Matlab semantics.

Reported: class mAP (`compute_map.m`, the query's own item non-relevant), expert-bit class mAP (each query
ranks on the top-k GRM bits of its class, `select_distance.m`; needs a GRM field), attribute mAP for every
attribute column of `lab` (`compute_map_attribute_rank.m`, the query's own item relevant), and MIS with two
estimators: scikit-learn's continuous kNN estimator (the paper's) and the exact discrete MI of the bits.

Attributes that no item has give NaN, as in the Matlab; the summary line gives how many there were and the
mean over the others (the Matlab's mean would be NaN).

example:
  python -m bitlens.ibc.evaluate --codes sun_256.mat --expert-bits 12 --json
"""
from __future__ import annotations

import argparse
import itertools
import json
import math

import numpy as np

from bitlens import metrics
from bitlens import cli
from bitlens.codes import binarize_sigmoid, load_codes

PROG = "python -m bitlens.ibc.evaluate"


def class_labels(lab, source: str = "lab") -> np.ndarray:
    """The integer class labels in column 0 of `lab` (99999 = missing), with a clear error for anything else."""
    lab = np.asarray(lab)
    if lab.ndim == 1:
        lab = lab[:, None]
    if lab.dtype.kind not in "iuf":
        raise ValueError(f"{source}: field 'lab' holds {lab.dtype} values; it must hold numbers: integer class "
                         f"labels in column 0 (99999 = missing) and 0/1/2 attributes after it")
    col = lab[:, 0]
    if lab.dtype.kind == "f" and not (np.isfinite(col).all() and (col == np.round(col)).all()):
        raise ValueError(f"{source}: field 'lab' column 0 (class labels) must hold whole numbers; "
                         f"got values such as {col[~np.isfinite(col) | (col != np.round(col))][0]!r}")
    return col.astype(np.int64)


def evaluate_codes(binary_codes, lab, GRM=None, expert_bits: int = 13, mis_max_num: int = 100, seed: int = 0,
                   attributes: bool = True, mis: bool = True, source: str = "lab") -> dict:
    B = binarize_sigmoid(binary_codes)
    lab = np.asarray(lab)
    if lab.ndim == 1:
        lab = lab[:, None]
    labels = class_labels(lab, source)
    out = {"n": int(B.shape[0]), "bits": int(B.shape[1]), "class_map": metrics.class_map(B, labels)}
    out["expert_bit_map"] = (metrics.expert_bit_map(B, labels, GRM, min(expert_bits, B.shape[1]))
                             if GRM is not None else None)
    attr = ([metrics.attribute_map(B, lab[:, 1:], j) for j in range(lab.shape[1] - 1)]
            if attributes and lab.shape[1] > 1 else [])
    out["attribute_map"] = attr
    present = [m for m in attr if not math.isnan(m)]
    out["attributes_without_items"] = len(attr) - len(present)
    out["attribute_map_mean"] = float(np.mean(present)) if present else None
    out["mis_knn"] = metrics.mutual_information_score(B, labels, mis_max_num, seed, "knn") if mis else None
    out["mis_discrete"] = metrics.mutual_information_score(B, labels, mis_max_num, seed, "discrete") if mis else None
    return out


def random_codes_like(B: np.ndarray, seed: int = 0) -> np.ndarray:
    return np.where(np.random.default_rng(seed).random(B.shape) < 0.5, -1, 1).astype(np.int8)


def customized_retrieval(B, attributes, j: int, groups: list[list[int]], seed: int = 0, max_groups: int = 8) -> dict:
    """Attribute mAP on dissection-selected bits, as the authors' customized retrieval: every non-empty
    combination of `groups` (0-based bit index lists) is tried and the best is kept — chosen on the evaluation
    set itself, so an upper bound — beside random bits of the same number and all bits."""
    groups = [sorted(set(g)) for g in groups if g][:max_groups]
    if not groups:
        return {}
    best = (-1.0, [])
    for r in range(1, len(groups) + 1):
        for combo in itertools.combinations(groups, r):
            bits = sorted(set().union(*combo))
            m = metrics.attribute_map(B, attributes, j, bits=bits)
            if m > best[0]:  # NaN (no item has the attribute) never wins
                best = (m, bits)
    if not best[1]:
        return {"bits": [], "map": float("nan"), "random_map": float("nan"), "all_bits_map": float("nan"),
                "chosen_on": "test set", "combinations": 2 ** len(groups) - 1}
    rng = np.random.default_rng(seed)
    rand_bits = sorted(rng.choice(B.shape[1], len(best[1]), replace=False).tolist())
    return {"bits": [b + 1 for b in best[1]], "map": best[0],
            "random_map": metrics.attribute_map(B, attributes, j, bits=rand_bits),
            "all_bits_map": metrics.attribute_map(B, attributes, j), "chosen_on": "test set",
            "combinations": 2 ** len(groups) - 1}


def _int_at_least(lo: int, what: str):
    def parse(text: str) -> int:
        try:
            v = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{what} must be an integer, got {text!r}") from None
        if v < lo:
            raise argparse.ArgumentTypeError(f"{what} must be at least {lo}, got {v}")
        return v
    return parse


def build_parser() -> argparse.ArgumentParser:
    ap = cli.parser(PROG, __doc__)
    ap.add_argument("--codes", required=True,
                    help=".mat or .npz code file with fields binary_codes (sigmoid outputs or ±1), lab (class "
                         "label in column 0, attributes after it) and optionally GRM")
    ap.add_argument("--expert-bits", type=_int_at_least(1, "--expert-bits"), default=13,
                    help="bits per class for the expert-bit mAP (top GRM entries; capped at the code length)")
    ap.add_argument("--mis-max-num", type=_int_at_least(2, "--mis-max-num"), default=100,
                    help="samples per class for MIS: up to half positives (first in file order), the rest random "
                         "negatives")
    ap.add_argument("--seed", type=_int_at_least(0, "--seed"), default=0,
                    help="seed of the MIS negative sampling and of the kNN estimator's noise")
    ap.add_argument("--no-mis", action="store_true", help="skip MIS (the slowest part on many classes)")
    ap.add_argument("--json", action="store_true",
                    help="print one JSON object instead of the table (NaN and skipped values as null)")
    return ap


def _json_value(v):
    if isinstance(v, float) and math.isnan(v):
        return None
    if isinstance(v, list):
        return [_json_value(x) for x in v]
    return v


def format_table(res: dict) -> str:
    def num(v) -> str:
        return "—" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.4f}"

    lines = [f"{res['n']} codes × {res['bits']} bits (query set = database)",
             f"class mAP            {num(res['class_map'])}",
             f"expert-bit mAP       {num(res['expert_bit_map'])}" if res["expert_bit_map"] is not None
             else "expert-bit mAP       — (no GRM in the file)"]
    for j, m in enumerate(res["attribute_map"]):
        lines.append(f"attribute {j + 1:<4} mAP  {num(m)}" + ("  (no item has it)" if math.isnan(m) else ""))
    if res["attribute_map"]:
        lines.append(f"attribute mAP, mean {num(res['attribute_map_mean'])}  over "
                     f"{len(res['attribute_map']) - res['attributes_without_items']} attribute(s); "
                     f"{res['attributes_without_items']} without any item left out")
    if res["mis_knn"] is None:
        lines.append("MIS                  — (skipped: --no-mis)")
    else:
        lines.append(f"MIS (kNN estimator)  {num(res['mis_knn'])}\nMIS (discrete)       {num(res['mis_discrete'])}")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = build_parser()
    args = ap.parse_args(argv)
    try:
        c = load_codes(args.codes)
        if c["lab"] is None:
            raise ValueError(f"{args.codes}: missing field 'lab' (class labels are needed for mAP and MIS)")
        res = evaluate_codes(c["binary_codes"], c["lab"], c["GRM"], args.expert_bits, args.mis_max_num, args.seed,
                             mis=not args.no_mis, source=str(args.codes))
    except (FileNotFoundError, ValueError) as e:
        return cli.fail(PROG, str(e))
    if args.json:
        keys = ("class_map", "expert_bit_map", "attribute_map", "mis_knn", "mis_discrete")
        print(json.dumps({k: _json_value(res[k]) for k in keys}))
    else:
        print(format_table(res))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
