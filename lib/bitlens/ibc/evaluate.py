"""Evaluate one IBC code file (query set = database set), with the authors' Matlab semantics.

Reported: class mAP (`compute_map.m`, the query's own item non-relevant), expert-bit class mAP (each query
ranks on the top-k GRM bits of its class, `select_distance.m`; needs a GRM field), attribute mAP for every
attribute column of `lab` (`compute_map_attribute_rank.m`, the query's own item relevant), and MIS with two
estimators: scikit-learn's continuous kNN estimator (the paper's) and the exact discrete MI of the bits.

Attributes that no item has give NaN, as in the Matlab; the summary line gives how many there were and the
mean over the others (the Matlab's mean would be NaN).

example:
  python -m bitlens.ibc.evaluate --codes sun_256.mat --binarize 0.5 --expert-bits 12 --json
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
from bitlens.labels import MISSING_LABEL

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


def binary_codes_of(codes, binarize: float | None, source: str = "codes") -> np.ndarray:
    """±1 codes from ±1 or 0/1 values, or from probabilities (sigmoid outputs) cut at `binarize`.

    Real values are cut only when asked: tanh outputs in (−1, 1) cut at 0.5 would be other codes without a word."""
    c = np.asarray(codes, dtype=np.float64)
    values = np.unique(c)
    if set(values.tolist()) <= {-1.0, 1.0} or set(values.tolist()) <= {0.0, 1.0}:
        return binarize_sigmoid(c)  # −1 and 0 → −1, 1 → +1
    lo, hi = float(values[0]), float(values[-1])
    if binarize is None:
        raise ValueError(f"{source}: field 'binary_codes' holds real values ({lo:.4g} … {hi:.4g}), not binary codes "
                         f"(±1 or 0/1). If they are probabilities (sigmoid outputs, IBC's), cut them explicitly: "
                         f"--binarize 0.5")
    if lo < 0 or hi > 1:
        raise ValueError(f"{source}: field 'binary_codes' holds values from {lo:.4g} to {hi:.4g}, outside [0, 1]: "
                         f"not probabilities (tanh outputs?), so cutting them at {binarize} is meaningless; "
                         f"binarize them yourself (sign for tanh) and save ±1 codes")
    return binarize_sigmoid(c - binarize + 0.5)


def check_labels_and_grm(labels: np.ndarray, GRM, source: str = "lab") -> None:
    """Class labels are 0-based (99999 = missing) and index the GRM's rows; the GRM is finite."""
    known = labels[labels != MISSING_LABEL]
    if known.size and known.min() < 0:
        raise ValueError(f"{source}: field 'lab' column 0 holds class label {int(known.min())}; labels must be "
                         f"0-based class indices (99999 = missing): shift them so the first class is 0")
    if GRM is None:
        return
    G = np.asarray(GRM, dtype=np.float64)
    if not np.isfinite(G).all():
        raise ValueError(f"{source}: field 'GRM' has NaN or infinite values; it must be the trained model's class × "
                         f"bit relevance matrix (re-extract the codes from the checkpoint)")
    if known.size and known.max() >= G.shape[0]:
        one_based = known.min() >= 1 and known.max() == G.shape[0]
        raise ValueError(f"{source}: field 'lab' holds class label {int(known.max())} but field 'GRM' has "
                         f"{G.shape[0]} rows (one per class, labels 0 … {G.shape[0] - 1})"
                         + ("; the labels look 1-based: subtract 1 so the first class is 0" if one_based else
                            "; the GRM must have a row for every class"))


def evaluate_codes(binary_codes, lab, GRM=None, expert_bits: int = 13, mis_max_num: int = 100, seed: int = 0,
                   attributes: bool = True, mis: bool = True, source: str = "lab", binarize: float | None = 0.5) -> dict:
    """Every number of one code file. `binary_codes`: ±1, 0/1, or probabilities cut at `binarize` (the stages
    pass IBC's sigmoid outputs; the command line asks for `--binarize 0.5` explicitly)."""
    lab = np.asarray(lab)
    if lab.ndim == 1:
        lab = lab[:, None]
    labels = class_labels(lab, source)
    check_labels_and_grm(labels, GRM, source)
    B = binary_codes_of(binary_codes, binarize, source)
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


# -- the 22_ibc_eval stage: codes of each experiment, its numbers, and sentences made from them --------------

def experiment_codes(checkpoint, test_list, images_root, resize: int, crop: int, device: str = "cpu",
                     max_samples: int = 50_000, out_stem=None):
    """(sigmoid codes, lab, GRM) of `test_list` (its images under `images_root`) through an IBC checkpoint, rebuilt
    from its own shapes (classes, code length, backbone head: 365 for a Places365 start); with `out_stem`, also
    written as `<out_stem>.npz/.mat` (the official fields) and `<out_stem>.packed.npz` (bitlens.codes planes)."""
    from bitlens.ibc.extract import extract_codes, save_official, save_packed
    from bitlens.ibc.model import load_ibc_checkpoint

    model = load_ibc_checkpoint(checkpoint, crop)
    b, lab = extract_codes(model, test_list, images_root, resize, crop, device, max_samples=max_samples)
    grm = model.GRM.detach().cpu().numpy()
    if out_stem is not None:
        save_official(out_stem, b, lab, grm)
        save_packed(out_stem, b)
    return b, lab, grm


def read_bit_groups(path) -> dict:
    """{experiment: {concept: [1-based bits]}} from a dissection's bit_groups.json, or {} when there is none."""
    from pathlib import Path

    path = Path(path)
    return json.loads(path.read_text()) if path.exists() else {}


def evaluate_experiment(b, lab, grm, expert_bits: int, mis_max_num: int, target_attributes: list[str],
                        names: list[str], groups: dict, seed: int, dataset: str = "") -> dict:
    """Every number of one experiment: `evaluate_codes`, the random-code baseline, attribute mAP by name, and
    customized retrieval of the first target attribute that the dissection tied to some bits."""
    r = evaluate_codes(b, lab, grm, expert_bits, mis_max_num, seed=seed)
    B = binarize_sigmoid(b)
    lab = np.asarray(lab)
    r["random_class_map"] = metrics.class_map(random_codes_like(B, seed), class_labels(lab))
    r["attribute_map"] = dict(zip(names, r["attribute_map"]))
    r["customized"] = None
    unknown = [t for t in target_attributes if t not in names]
    if unknown:
        raise ValueError(f"target_attributes {', '.join(map(repr, unknown))} not among the {len(names)} attribute "
                         f"names of {dataset or 'the code file'}; valid: "
                         f"{', '.join(names)}. Name the columns with attribute_names (a list, or 'sun')")
    for target in target_attributes:
        # dissection labels naming this attribute (Broden adds -c / -s suffixes to colours / scenes)
        single = [[bit - 1] for concept, bits in groups.items() if concept.split("-")[0] == target for bit in bits]
        if single:
            r["customized"] = {"attribute": target,
                               **customized_retrieval(B, lab[:, 1:], names.index(target), single, seed)}
            break
    r["dataset"] = dataset or "released"
    r["hashing"] = hashing_metrics_of(b, lab)
    return r


def class_map_verdict(results: dict) -> dict[str, bool]:
    """Per experiment: is its class mAP more than twice that of random codes of the same shape (22_ibc_eval's
    verdict)?"""
    return {n: bool(r["class_map"] > 2 * r["random_class_map"]) for n, r in results.items()}


HASHING_PROTOCOL = ("leave-one-out: query set = database (test list), each query's own item removed from its "
                    "ranking, relevant = same class label; Hamming ranking, ties → lower index")


def hashing_metrics_of(binary_codes, lab, radius: int = 2) -> dict:
    """The deep-hashing metrics (`metrics.hashing_metrics`) of one code file, leave-one-out on the test list.

    mAP@K is computed at the DeepHash K values smaller than the database (larger ones would equal mAP@all) and
    at all; the radius is capped at the code length."""
    B = binarize_sigmoid(binary_codes)
    labels = class_labels(lab)
    n = B.shape[0] - 1
    return metrics.hashing_metrics(B, B, labels, labels, self_match="drop", radius=min(radius, B.shape[1]),
                                   map_ks=[k for k in metrics.HASHING_MAP_KS if k < n])


def hashing_row(name: str, h: dict, bits: int, class_map: float | None = None) -> dict:
    """One table row: mAP@K and @all, precision / recall within the radius, the queries with nothing in it."""
    row = {"experiment": name, "bits": bits}
    if class_map is not None:
        row["class mAP (official)"] = class_map
    row.update({f"mAP@{k}": v for k, v in h["map"].items()})
    r = h["radius"]
    row.update({f"P@r≤{r}": h["precision_within_radius"], f"R@r≤{r}": h["recall_within_radius"],
                f"queries empty at r≤{r}": h["empty_within_radius"]})
    return row


def hashing_caption(runs: dict) -> str:
    h = next(iter(runs.values()))
    return (f"Deep-hashing metrics ({HASHING_PROTOCOL}). mAP@K: AP over the first K, normalised by the relevant "
            f"items found there, 0 when none (DeepHash-pytorch's CalcTopMap); @K shown only where K is below the "
            f"database size ({h['database']} items). P / R within Hamming radius {h['radius']}: a query with no "
            f"item within the radius counts as precision 0 (DeepHash-style papers); the last column counts those "
            f"queries. 'class mAP (official)' keeps the own item in the ranking as non-relevant (compute_map.m).")


def hashing_sentences(runs: dict) -> list[str]:
    """One sentence per run from its numbers: mAP@all, precision / recall within the radius, empty queries."""
    out = []
    for name, h in runs.items():
        r, n = h["radius"], h["queries"]
        out.append(f"{name}: mAP@all {h['map']['all']:.4f}; within Hamming radius {r}, precision "
                   f"{h['precision_within_radius']:.4f} and recall {h['recall_within_radius']:.4f}; "
                   f"{h['empty_within_radius']} of {n} queries retrieve nothing within radius {r} "
                   f"and count as precision 0.")
    return out


def sweep_hashing_sentence(by_bits: dict[int, dict]) -> str:
    """How precision within the radius and mAP@all change over the sweep's code lengths, from the numbers."""
    if len(by_bits) < 2:
        return ""
    ks = sorted(by_bits)
    p = [by_bits[k]["precision_within_radius"] for k in ks]
    m = [by_bits[k]["map"]["all"] for k in ks]

    def trend(v) -> str:
        d = np.diff(v)
        return ("rises with every longer code" if (d > 0).all() else "falls with every longer code" if (d < 0).all()
                else "is not monotone in the code length")
    r = by_bits[ks[0]]["radius"]
    return (f"Code-length sweep: precision within Hamming radius {r} "
            + ", ".join(f"{v:.4f} ({k} bits)" for k, v in zip(ks, p)) + f" — it {trend(p)}; mAP@all "
            + ", ".join(f"{v:.4f} ({k} bits)" for k, v in zip(ks, m)) + f" — it {trend(m)}.")


def customized_sentence(name: str, c: dict) -> str:
    """What customized retrieval measured, from its numbers: the bits, that they were chosen on the evaluation
    set itself, and how they compare with random bits of the same number and with all bits."""
    def cmp(a, b) -> str:
        return "above" if a > b else "below" if a < b else "equal to"

    n = len(c["bits"])
    return (f"{name}: customized retrieval of '{c['attribute']}' on bit{'s' if n > 1 else ''} "
            f"{', '.join(map(str, c['bits']))} — the best of {c['combinations']} bit-group combinations, chosen on "
            f"the evaluation set itself as the authors do (an upper bound, not a held-out result): mAP {c['map']:.4f}, "
            f"{cmp(c['map'], c['random_map'])} {n} random bit{'s' if n > 1 else ''} ({c['random_map']:.4f}) and "
            f"{cmp(c['map'], c['all_bits_map'])} all bits ({c['all_bits_map']:.4f}).")


def sweep_caption(iterations: dict[int, int], source: str) -> str:
    per = ", ".join(f"{K} bits: {n}" for K, n in sorted(iterations.items()))
    same = len(set(iterations.values())) == 1
    return (f"Code-length sweep: class and expert-bit mAP per code length. Training iterations per length ({source}): "
            f"{per}" + (" — the same for every length." if same else
                        " — not the same for every length, so the lengths are not compared at equal training."))


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


def _probability_cut(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--binarize must be a number in (0, 1), got {text!r}") from None
    if not 0 < v < 1:
        raise argparse.ArgumentTypeError(f"--binarize must be in (0, 1) (a probability threshold), got {text}")
    return v


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
    ap.add_argument("--binarize", type=_probability_cut, default=None, metavar="THRESHOLD",
                    help="cut real-valued codes (probabilities: sigmoid outputs in [0, 1]) at this value; without it "
                         "the codes must already be binary (±1 or 0/1)")
    ap.add_argument("--no-mis", action="store_true", help="skip MIS (the slowest part on many classes)")
    ap.add_argument("--json", action="store_true",
                    help="print one JSON object instead of the table (NaN and skipped values as null)")
    return ap


def json_safe(v):
    """NaN → None (JSON null), through lists and dicts."""
    if isinstance(v, float) and math.isnan(v):
        return None
    if isinstance(v, (list, tuple)):
        return [json_safe(x) for x in v]
    if isinstance(v, dict):
        return {k: json_safe(x) for k, x in v.items()}
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
                             mis=not args.no_mis, source=str(args.codes), binarize=args.binarize)
    except (FileNotFoundError, ValueError) as e:
        return cli.fail(PROG, str(e))
    if args.json:
        keys = ("class_map", "expert_bit_map", "attribute_map", "mis_knn", "mis_discrete")
        print(json.dumps({k: json_safe(res[k]) for k in keys}))
    else:
        print(format_table(res))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
