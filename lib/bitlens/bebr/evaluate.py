"""Recall@K for one pair of feature files, as the official `tools/eval.py`, both directions, explicit ties.

Row i of the image features and row i of the text features are one pair; features are L2-normalised and
compared by dot product. Ties (frequent with binary codes) are broken by the chosen policy: pessimistic
(every tied item ranks first), optimistic, expected (uniformly random order, averaged) or index.

example:
  python -m bitlens.bebr.evaluate --image-feat feat_image.npy --txt-feat feat_txt.npy --ties expected --json
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from bitlens import cli
from bitlens.codes import RecurrentCode, binarize, unpack
from bitlens.metrics import TIE_POLICIES, recall_both_directions


PROG = "python -m bitlens.bebr.evaluate"
MAX_ABS = 1e150  # float64 squares overflow above ~1.3e154; a feature's squared norm sums `dims` of them
NPY_FORMAT = "a NumPy .npy file holding a 2-D float array (items × dims), as written by numpy.save"
# what each tie policy means, in the words the tables' captions use
TIE_MEANING = {"pessimistic": "an item tied with the true one counts before it",
               "optimistic": "the true item counts before every item tied with it",
               "expected": "the mean rank over all orders of the tied items",
               "index": "tied items in database-index order"}


def load_feature_file(path) -> np.ndarray:
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: feature file not found")
    with open(path, "rb") as f:
        magic = f.read(6)
    if magic != b"\x93NUMPY":
        raise ValueError(f"{path}: not a .npy file; expected {NPY_FORMAT}")
    try:
        a = np.load(path, allow_pickle=False)
    except ValueError as e:
        if "pickle" in str(e):  # an object array: not features
            raise ValueError(f"{path}: holds Python objects, not numbers; expected {NPY_FORMAT}") from None
        raise ValueError(f"{path}: truncated or damaged .npy file ({e}); expected {NPY_FORMAT}") from None
    except OSError as e:
        raise ValueError(f"{path}: cannot read ({e}); expected {NPY_FORMAT}") from None
    if a.ndim != 2:
        raise ValueError(f"{path}: expected a 2-D array (items × dims), got shape {a.shape}")
    if a.shape[0] == 0 or a.shape[1] == 0:
        raise ValueError(f"{path}: has shape {a.shape}; Recall@K needs at least one row (one per pair) and one "
                         f"feature dimension")
    if a.dtype.kind not in "fi":
        raise ValueError(f"{path}: expected float features, got dtype {a.dtype}")
    if not np.isfinite(a).all():
        raise ValueError(f"{path}: contains NaN or infinite values")
    big = float(np.abs(a).max())
    if big > MAX_ABS:
        # L2 normalisation squares every value: beyond ~1e154 that overflows float64 and every score is NaN
        raise ValueError(f"{path}: holds values up to {big:.3g}, too large to square in float64 (L2 "
                         f"normalisation); features must stay below {MAX_ABS:g} in magnitude: rescale them "
                         f"(cosine similarity does not change under scaling)")
    return a.astype(np.float64)  # fp16 files (the official eval leaves CLIP in fp16) are widened here


def evaluate_files(image_feat, txt_feat, ties: str = "pessimistic") -> dict:
    img, txt = load_feature_file(image_feat), load_feature_file(txt_feat)
    if img.shape != txt.shape:
        raise ValueError(f"{image_feat} has shape {img.shape} but {txt_feat} has {txt.shape}; "
                         f"they must hold the same one-to-one pairs")
    return recall_both_directions(img, txt, ties=ties)


def format_table(res: dict) -> str:
    lines = [f"{'':6} {'R@1':>7} {'R@5':>7} {'R@10':>7} {'R@50':>7} {'medr':>6} {'meanr':>8}"]
    for d in ("i2t", "t2i"):
        r = res[d]
        lines.append(f"{d:6} {100 * r['r1']:7.2f} {100 * r['r5']:7.2f} {100 * r['r10']:7.2f} {100 * r['r50']:7.2f} "
                     f"{r['medr']:6.1f} {r['meanr']:8.2f}")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    ap = cli.parser(PROG, __doc__)
    ap.add_argument("--image-feat", required=True, help=f"image features: {NPY_FORMAT}")
    ap.add_argument("--txt-feat", required=True, help="text features, same shape, row i paired with image row i")
    ap.add_argument("--ties", default="pessimistic", choices=TIE_POLICIES,
                    help="how items tied with the true one are ranked")
    ap.add_argument("--json", action="store_true", help="print one JSON object {i2t: {...}, t2i: {...}} (fractions)")
    return ap


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        res = evaluate_files(args.image_feat, args.txt_feat, args.ties)
    except (FileNotFoundError, ValueError) as e:
        return cli.fail(PROG, str(e))
    print(json.dumps(res) if args.json else f"ties: {args.ties}\n" + format_table(res))
    return 0


# -- the paper table for trained / released embeddings --------------------------------------

def code_of(emb, binary: bool, planes: int):
    """Embeddings → a RecurrentCode (binary heads) or None (float); validates the value set. A RecurrentCode (what
    11_bebr_train hands on) is returned as it is, after checking its plane count."""
    if not binary:
        return None
    if isinstance(emb, RecurrentCode):
        if len(emb.weights) != planes:
            raise ValueError(f"the code has {len(emb.weights)} bit planes but the head {planes} (u + 1); re-run "
                             f"11_bebr_train with these bebr.heads settings")
        return emb
    weights = tuple(0.5 ** i for i in range(planes))
    return RecurrentCode.from_values(emb, weights)


def code_values(emb) -> np.ndarray:
    """The float64 values of a RecurrentCode (exact: sums of powers of two), other embeddings as float64."""
    return (emb.values() if isinstance(emb, RecurrentCode) else np.asarray(emb)).astype(np.float64)


def score_matrices(img, txt, binary: bool, planes: int) -> tuple[np.ndarray, np.ndarray]:
    """(i2t, t2i) ranking scores. Binary codes (value arrays or RecurrentCodes): exact cosine-equivalent keys from
    bits (SDC), so mathematically equal cosines tie exactly; float: cosine of L2-normalised features (official)."""
    from bitlens.metrics import l2_normalize
    from bitlens.search import cosine_rank_keys, sdc_inner_products

    if not binary:
        s = l2_normalize(img) @ l2_normalize(txt).T
        return s, s.T
    ci, ct = code_of(img, True, planes), code_of(txt, True, planes)
    ip = sdc_inner_products(ci, ct)
    return cosine_rank_keys(ip, ct.squared_norms()), cosine_rank_keys(ip.T, ci.squared_norms())


def official_ranks_agree(img, txt, planes: int, decimals: int = 9) -> bool:
    """Does the SDC ranking from packed bit planes equal the official cosine of the {±0.5, ±1.5} vectors?

    The official float cosine carries rounding noise of ~1e-16 within exact ties, so it is rounded to
    `decimals` before ranking; both rankings break ties by index and must then be identical.
    """
    from bitlens.metrics import l2_normalize, recall_at_k

    keys, _ = score_matrices(img, txt, True, planes)
    official = np.round(l2_normalize(code_values(img)) @ l2_normalize(code_values(txt)).T, decimals)
    for ties in ("pessimistic", "optimistic", "index"):
        a = recall_at_k(keys, ks=(1, 5, 10, 50), ties=ties)
        b = recall_at_k(official, ks=(1, 5, 10, 50), ties=ties)
        if a != b:
            return False
    return True


def table_rows(name: str, img, txt, binary: bool, planes: int, out_dim: int) -> dict:
    """One row of the BEBR table: recalls for every tie policy, both directions, bits and bytes per item. Binary
    embeddings may come as value arrays or as RecurrentCodes."""
    from bitlens.metrics import TIE_POLICIES, recall_at_k

    s_i2t, s_t2i = score_matrices(img, txt, binary, planes)
    row = {"bits": out_dim * planes if binary else 32 * out_dim,
           "bytes_per_item": (out_dim * planes + 7) // 8 if binary else 4 * out_dim,
           "i2t": {}, "t2i": {}}
    for t in TIE_POLICIES:
        row["i2t"][t] = recall_at_k(s_i2t, ties=t)
        row["t2i"][t] = recall_at_k(s_t2i, ties=t)
    return row


def pairs_hashing_metrics(img_codes, txt_codes, radius: int = 2) -> dict:
    """Deep-hashing metrics (`metrics.hashing_metrics`) of ±1 codes of one-to-one pairs, both directions: a
    query's relevant set is its paired item. mAP@K at the DeepHash K values below the number of pairs, and all."""
    from bitlens import metrics

    n, bits = np.asarray(img_codes).shape
    pairs = [np.array([i]) for i in range(n)]
    kw = dict(relevance=pairs, radius=min(radius, bits), map_ks=[k for k in metrics.HASHING_MAP_KS if k < n])
    return {"i2t": metrics.hashing_metrics(img_codes, txt_codes, **kw),
            "t2i": metrics.hashing_metrics(txt_codes, img_codes, **kw)}


def hashing_table_row(name: str, h: dict, bits: int, kind: str) -> dict:
    """One row of the BEBR deep-hashing table (image→text; text→image mAP@all beside it)."""
    i2t = h["i2t"]
    r = i2t["radius"]
    return {"codes": name, "kind": kind, "bits": bits, **{f"mAP@{k}": v for k, v in i2t["map"].items()},
            f"P@r≤{r}": i2t["precision_within_radius"], f"R@r≤{r}": i2t["recall_within_radius"],
            f"queries empty at r≤{r}": i2t["empty_within_radius"], "t2i mAP@all": h["t2i"]["map"]["all"]}


# -- the CLIP retrieval protocol (open_clip / CLIP_benchmark): every caption of each image -----------------

def head_embeddings(run_dir, x: np.ndarray, device: str = "cpu") -> np.ndarray:
    """Embeddings of features `x` by the head trained in `run_dir` (its checkpoint.pth, read by heads.load_head)."""
    from bitlens.bebr.heads import load_head
    from bitlens.bebr.train import embed

    head = load_head(Path(run_dir) / "checkpoint.pth", in_dim=x.shape[1])
    return embed(head.to(device), np.ascontiguousarray(x, dtype=np.float32), device)


def clip_protocol_recalls(img: np.ndarray, txt: np.ndarray, txt_image, binary: bool, planes: int) -> dict:
    """Recall@K with all captions per image, for every tie policy: image→text, a hit when any of the image's
    captions is within the top K; text→image, each caption's own image (open_clip / CLIP_benchmark recall@k).
    `txt_image[j]`: the image row of caption j."""
    from bitlens.metrics import TIE_POLICIES, recall_at_k

    txt_image = np.asarray(txt_image, dtype=np.int64)
    if txt_image.shape != (len(txt),):
        raise ValueError(f"txt_image must give one image row per caption ({len(txt)}), got shape {txt_image.shape}")
    if txt_image.min() < 0 or txt_image.max() >= len(img):
        raise ValueError(f"txt_image names image rows outside 0..{len(img) - 1}")
    by_image = [[] for _ in range(len(img))]
    for j, i in enumerate(txt_image):
        by_image[i].append(j)
    if any(not c for c in by_image):
        raise ValueError(f"image row {next(i for i, c in enumerate(by_image) if not c)} has no caption")
    s_i2t, s_t2i = score_matrices(img, txt, binary, planes)
    own = [[i] for i in txt_image]
    return {"i2t": {t: recall_at_k(s_i2t, by_image, ties=t) for t in TIE_POLICIES},
            "t2i": {t: recall_at_k(s_t2i, own, ties=t) for t in TIE_POLICIES},
            "images": int(len(img)), "captions": int(len(txt))}


def protocol_sentences(official: dict, clip: dict, ties: str, split: str) -> list[str]:
    """Per embedding, R@1 / R@5 image→text under the official protocol (first caption) and the CLIP one (any of
    the image's captions), and the text→image R@1 with all captions as queries, from the numbers."""
    out = []
    for name, c in clip.items():
        o = official.get(name)
        ci = c["i2t"][ties]
        head = (f"{name}: image→text R@1 {ci['r1']:.4f}, R@5 {ci['r5']:.4f} with all {c['captions']} captions of "
                f"{c['images']} images ({split})")
        if o is not None:
            oi = o["i2t"][ties]
            d = "higher than" if ci["r1"] > oi["r1"] else "lower than" if ci["r1"] < oi["r1"] else "equal to"
            head += f", {d} the official first-caption R@1 {oi['r1']:.4f}"
        out.append(head + f"; text→image R@1 {c['t2i'][ties]['r1']:.4f} over {c['captions']} caption queries.")
    return out


def sign_codes(emb) -> np.ndarray:
    """±1 int8 codes of a one-plane binary embedding: a RecurrentCode's plane or the signs of values."""
    if isinstance(emb, RecurrentCode):
        if len(emb.weights) != 1:
            raise ValueError(f"Hamming codes have one bit plane; this code has {len(emb.weights)}")
        return unpack(emb.planes[0], emb.m)
    return binarize(emb)


# -- the tables of 12_bebr_eval, assembled from the rows above ------------------------------------

def paper_table(rows: dict, base_rows: dict, published: dict, ties: str) -> list[dict]:
    """The headline table: one record per head (beside its published numbers, `published[name]` with `bits` and
    `recall@K`) and per baseline code, under tie policy `ties`."""
    def recalls(r):
        i2t, t2i = r["i2t"][ties], r["t2i"][ties]
        return {"R@1": i2t["r1"], "R@5": i2t["r5"], "R@10": i2t["r10"], "R@50": i2t["r50"], "medr": i2t["medr"],
                "meanr": i2t["meanr"], "t2i R@1": t2i["r1"], "t2i R@5": t2i["r5"], "t2i R@10": t2i["r10"]}

    table = []
    for name, r in rows.items():
        pub = published.get(name, {})
        table.append({"embedding": name, "kind": "head", "bits": r["bits"], **recalls(r),
                      "paper bits": pub.get("bits"), "paper R@1": pub.get("recall@1"),
                      "paper R@5": pub.get("recall@5"), "paper R@10": pub.get("recall@10")})
    for name, r in base_rows.items():
        table.append({"embedding": name, "kind": "baseline", "bits": r["bits"], **recalls(r)})
    return table


def ties_table(rows: dict) -> list[dict]:
    """Image→text Recall@K of every embedding under every tie policy, one record each."""
    return [{"embedding": n, "ties": t, **r["i2t"][t]} for n, r in rows.items() for t in r["i2t"]]


def clip_protocol_table(clip_rows: dict, ties: str) -> list[dict]:
    """The CLIP-protocol table: bits and R@1/5/10 both ways per embedding, under tie policy `ties`."""
    return [{"embedding": n, "bits": r["bits"], **{f"i2t R@{k}": r["i2t"][ties][f"r{k}"] for k in (1, 5, 10)},
             **{f"t2i R@{k}": r["t2i"][ties][f"r{k}"] for k in (1, 5, 10)}} for n, r in clip_rows.items()]


if __name__ == "__main__":
    raise SystemExit(main())
