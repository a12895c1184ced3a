"""Ranking metrics with explicit tie semantics: Recall@K, mAP (Matlab-compatible), precision@K, MIS.

Tie policies for Recall@K (hash codes take few distinct scores, so they matter):
- "pessimistic": every item tied with the true one ranks before it;
- "optimistic": every tied item ranks after it;
- "expected": the tie order is uniformly random — recalls are expectations
  (P(rank ≤ K)) and ranks the mean rank;
- "index": ties broken by smaller index, like a stable sort.
Float features almost never tie, and then all four coincide.

mAP follows the official `compute_map.m`: distances sorted ascending with a
stable sort (ties → lower database index), AP = (1/Q)·Σ_i i / rank_i over the
whole ranking, 0 for a query without relevant items. Hamming distances are
small integers, so the stable sort is numpy's linear-time radix sort on uint16,
precision is evaluated only at the relevant positions, and query blocks run on
two threads (the sort and faiss's distance kernel release the GIL); peak memory
is bounded by `chunk_size` rows of the (queries × items) matrix.
"""
from __future__ import annotations

import numpy as np

from bitlens.labels import MISSING_LABEL
from bitlens.progress import progress

TIE_POLICIES = ("pessimistic", "optimistic", "expected", "index")
DEFAULT_KS = (1, 5, 10, 50)


# -- Recall@K ---------------------------------------------------------------------

def _check_scores(scores: np.ndarray) -> np.ndarray:
    s = np.asarray(scores)
    if s.ndim != 2:
        raise ValueError(f"scores must be a 2-D (queries × items) matrix, got shape {s.shape}")
    if s.dtype.kind == "f" and not np.isfinite(s).all():
        raise ValueError("scores contain NaN or infinite values")
    return s


def rank_bounds(scores, gt=None, chunk: int = 1024, need_index: bool = True):
    """Per query: (#non-relevant scoring above the best relevant, #non-relevant tied with it, #ties before it by index).

    `gt=None` means one-to-one ground truth (query i ↔ item i); otherwise a list of
    relevant index arrays per query (one-to-many) or a boolean (nq, nd) matrix.
    """
    s = _check_scores(scores)
    nq, nd = s.shape
    above = np.zeros(nq, np.int64)
    tied = np.zeros(nq, np.int64)
    tied_before = np.zeros(nq, np.int64)
    cols = np.arange(nd)
    for a in range(0, nq, chunk):
        b = min(nq, a + chunk)
        block = s[a:b]
        if gt is None:
            if nd < nq:
                raise ValueError(f"one-to-one ground truth needs as many items as queries ({nq}), got {nd}")
            # one relevant item per query: two comparisons against its score, no relevance matrix
            rows = np.arange(b - a)
            true = block[rows, np.arange(a, b)][:, None]
            above[a:b] = (block > true).sum(1)
            eq = block == true
            eq[rows, np.arange(a, b)] = False
            tied[a:b] = eq.sum(1)
            if need_index:
                tied_before[a:b] = (eq & (np.arange(nd)[None, :] < np.arange(a, b)[:, None])).sum(1)
            continue
        elif isinstance(gt, np.ndarray) and gt.dtype == bool:
            rel = gt[a:b]
        else:
            rel = np.zeros_like(block, dtype=bool)
            for i, r in enumerate(gt[a:b]):
                rel[i, np.asarray(r, dtype=np.int64)] = True
        if not rel.any(1).all():
            bad = a + int(np.flatnonzero(~rel.any(1))[0])
            raise ValueError(f"query {bad} has no relevant item in the ground truth")
        best = np.where(rel, block, -np.inf).max(1, keepdims=True)
        nonrel = ~rel
        above[a:b] = ((block > best) & nonrel).sum(1)
        eq = (block == best) & nonrel
        tied[a:b] = eq.sum(1)
        # index order: the first relevant item at the best score decides
        first_rel = np.where(rel & (block == best), cols, nd).min(1, keepdims=True)
        tied_before[a:b] = (eq & (cols < first_rel)).sum(1)
    return above, tied, tied_before


def recall_at_k(scores, gt=None, ks=DEFAULT_KS, ties: str = "pessimistic") -> dict:
    """Recall@K (fractions) and median / mean rank (1-based) of the first relevant item, higher score = better."""
    if ties not in TIE_POLICIES:
        raise ValueError(f"unknown tie policy {ties!r}; valid: {', '.join(TIE_POLICIES)}")
    above, tied, before = rank_bounds(scores, gt, need_index=ties == "index")
    out = {}
    if ties == "expected":
        # the true item's rank is uniform on above+1 … above+tied+1
        for k in ks:
            p = np.clip((k - above) / (tied + 1.0), 0.0, 1.0)
            out[f"r{k}"] = float(p.mean())
        rank = above + tied / 2.0 + 1.0
    else:
        rank = {"pessimistic": above + tied + 1, "optimistic": above + 1, "index": above + before + 1}[ties]
        for k in ks:
            out[f"r{k}"] = float((rank <= k).mean())
    out["medr"] = float(np.median(rank))
    out["meanr"] = float(np.mean(rank))
    return out


def l2_normalize(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    n = np.linalg.norm(x, axis=1, keepdims=True)
    if (n == 0).any():
        raise ValueError(f"{int((n == 0).sum())} row(s) have zero norm and cannot be L2-normalised")
    return x / n


def recall_both_directions(img_feats, txt_feats, ties: str = "pessimistic", ks=DEFAULT_KS) -> dict:
    """Image→text and text→image Recall@K for one-to-one pairs, as the official eval: L2-normalise, dot product."""
    a, b = np.asarray(img_feats), np.asarray(txt_feats)
    if a.ndim != 2 or b.ndim != 2 or a.shape != b.shape:
        raise ValueError(f"image and text features must be 2-D of equal shape, got {a.shape} and {b.shape}")
    sim = l2_normalize(a) @ l2_normalize(b).T
    return {"i2t": recall_at_k(sim, None, ks, ties), "t2i": recall_at_k(sim.T, None, ks, ties)}


# -- mAP ---------------------------------------------------------------------------

def _pm1(codes, name: str) -> np.ndarray:
    c = np.asarray(codes)
    if c.ndim != 2:
        raise ValueError(f"{name} must be 2-D (items × bits), got shape {c.shape}")
    if c.dtype.kind == "f" and not np.isfinite(c).all():
        raise ValueError(f"{name} contain NaN or infinite values")
    if not np.isin(np.unique(c), (-1, 1)).all():
        raise ValueError(f"{name} must be ±1 codes (use bitlens.codes.binarize / binarize_sigmoid first)")
    return c.astype(np.float32)


def _labels(x, n: int, name: str) -> np.ndarray:
    a = np.asarray(x)
    if a.ndim == 2 and a.shape[1] == 1:
        a = a[:, 0]
    if a.shape[0] != n:
        raise ValueError(f"{name} has {a.shape[0]} rows but the codes have {n}")
    return a


def _average_precisions(dist: np.ndarray, rel: np.ndarray, drop_col: np.ndarray | None,
                        topk: int | None) -> np.ndarray:
    """AP per row of a distance block; stable ascending order = Matlab's sort (ties → lower index).

    Distances are small integers, so the stable argsort is numpy's radix sort
    (linear per row), and precision is evaluated only at the relevant positions
    (`nonzero`), not over the whole (rows × items) matrix.
    drop_col: per row, a database index removed from the ranking (or None).
    """
    nr, nd = dist.shape
    order = np.argsort(dist, axis=1, kind="stable")
    rows = np.arange(nr)[:, None]
    r = rel[rows, order]
    if drop_col is not None:
        # position of the dropped item in each sorted row; items after it move up by one
        p_drop = np.argmax(order == drop_col[:, None], axis=1)
        r[np.arange(nr), p_drop] = False
    ri, ci = np.nonzero(r)
    pos = ci + 1
    if drop_col is not None:
        pos = pos - (ci > p_drop[ri])
    if topk is not None:
        sel = pos <= topk
        ri, pos = ri[sel], pos[sel]
    n_rel = np.bincount(ri, minlength=nr)
    start = np.concatenate([[0], np.cumsum(n_rel)[:-1]])
    hits = np.arange(ri.size) - start[ri] + 1
    prec = np.bincount(ri, weights=hits / pos, minlength=nr)
    return np.where(n_rel > 0, prec / np.maximum(n_rel, 1), 0.0)


def _hamming_block(Qp: np.ndarray, Dp: np.ndarray) -> np.ndarray:
    """(rows, items) uint16 Hamming distances of packed codes (faiss kernel when installed)."""
    from bitlens import search

    d = search.hamming_distances(Qp, Dp, backend="faiss" if search.faiss_backend.available() else "numpy")
    return d.astype(np.uint16)


SELF_MODES = {None: 0, "nonrelevant": 1, "relevant": 2, "drop": 3}
NATIVE_BLOCK = 2048  # queries per kernel call: one progress step


def _native_map():
    """The compiled mAP kernel, or None when it is not built (BITLENS_NATIVE=0 forces None)."""
    from bitlens import native

    return native.load("_map")


def _words(bits: np.ndarray) -> np.ndarray:
    """(rows, K) booleans → (rows, ceil(K/64)) uint64 words; padding bits are 0 on both sides, so never count."""
    packed = np.packbits(bits, axis=1)
    pad = (-packed.shape[1]) % 8
    if pad:
        packed = np.pad(packed, ((0, 0), (0, pad)))
    return np.ascontiguousarray(packed).view(np.uint64)


def _native_average_precisions(native, Q, D, ql, dl, self_match, topk, bit_masks) -> np.ndarray:
    # labels of any kind (ints, strings) become dense integer ids: only equality matters
    _, ids = np.unique(np.concatenate([np.asarray(ql).ravel(), np.asarray(dl).ravel()]), return_inverse=True)
    qid, did = ids[:len(ql)].astype(np.int64), ids[len(ql):].astype(np.int64)
    Qw, Dw = _words(Q > 0), _words(D > 0)
    Mw = _words(bit_masks) if bit_masks is not None else None
    nq = Q.shape[0]
    aps = np.zeros(nq)
    starts = range(0, nq, NATIVE_BLOCK)
    for a in progress(starts, desc="mAP", total=len(starts), disable=len(starts) < 4 or None):
        b = min(nq, a + NATIVE_BLOCK)
        out = np.zeros(b - a)
        native.average_precisions(Qw[a:b], Dw, qid[a:b], did, None if Mw is None else Mw[a:b], out,
                                  Qw.shape[1], a, SELF_MODES[self_match], Q.shape[1], topk or 0, 0)
        aps[a:b] = out
    return aps


def _numpy_average_precisions(Q, D, ql, dl, relevance, self_match, topk, bit_masks, chunk_size) -> np.ndarray:
    nq, nd = Q.shape[0], D.shape[0]
    aps = np.zeros(nq)
    # already validated as ±1 above, so pack directly (bit 1 ↔ +1, as bitlens.codes.pack)
    Dp = np.packbits(D > 0, axis=1)
    if bit_masks is not None:
        from bitlens.codes import as_words

        Dw = as_words(Dp)
        Mw = as_words(np.packbits(bit_masks, axis=1))
        Qw = as_words(np.packbits(Q > 0, axis=1))

    def block(a: int) -> None:
        b = min(nq, a + chunk_size)
        if bit_masks is None:
            dist = _hamming_block(np.packbits(Q[a:b] > 0, axis=1), Dp)
        else:
            # Hamming distance on each query's own bits: popcount((q ^ d) & mask_q), word by word
            dist = np.zeros((b - a, nd), np.uint16)
            for w in range(Dw.shape[1]):
                x = (Qw[a:b, w:w + 1] ^ Dw[None, :, w]) & Mw[a:b, w:w + 1]
                dist += np.bitwise_count(x).astype(np.uint16)
        rel = relevance[a:b].copy() if relevance is not None else (ql[a:b, None] == dl[None, :])
        drop = None
        if self_match:
            loc = (np.arange(b - a), np.arange(a, b))
            if self_match == "nonrelevant":
                rel[loc] = False
            elif self_match == "relevant":
                rel[loc] = True
            else:
                drop = np.arange(a, b)
        aps[a:b] = _average_precisions(dist, rel, drop, topk)

    # numpy's sort and faiss's kernels release the GIL: two threads use both cores
    starts = list(range(0, nq, chunk_size))
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=2) as pool:
        for _ in progress(pool.map(block, starts), desc="mAP", total=len(starts),
                          disable=len(starts) < 8 or None):
            pass
    return aps


def mean_average_precision(query_codes, db_codes, query_labels=None, db_labels=None, *, relevance=None,
                           topk: int | None = None, self_match: str | None = None, bit_masks=None,
                           chunk_size: int = 256, per_query: bool = False, backend: str = "auto"):
    """mAP over Hamming ranking of ±1 codes with Matlab `compute_map.m` semantics.

    relevance: a boolean (nq, nd) matrix, or None to use label equality
    (single-label vectors). self_match (query set = database, query i = item i):
    None (nothing special), "nonrelevant" (the query's own item stays in the
    ranking but never counts — the official class mAP), "relevant" (it counts —
    the official attribute mAP), "drop" (removed from the ranking).
    bit_masks: per-query boolean (nq, K) masks: rank each query on its own bits.
    topk: mAP@K (AP over the first K positions, normalised by the relevant items found there).
    backend: "native" (the compiled kernel, label relevance only), "numpy", or "auto" (native when built and
    applicable). Both give bit-identical APs.
    """
    Q = _pm1(query_codes, "query codes")
    D = _pm1(db_codes, "database codes")
    if Q.shape[1] != D.shape[1]:
        raise ValueError(f"query codes have {Q.shape[1]} bits but database codes {D.shape[1]}")
    nq, nd = Q.shape[0], D.shape[0]
    if self_match not in (None, "nonrelevant", "relevant", "drop"):
        raise ValueError(f"unknown self_match {self_match!r}; valid: None, 'nonrelevant', 'relevant', 'drop'")
    if self_match and nq != nd:
        raise ValueError(f"self_match={self_match!r} needs query set = database, got {nq} queries and {nd} items")
    if relevance is None:
        if query_labels is None or db_labels is None:
            raise ValueError("give query_labels and db_labels, or a relevance matrix")
        ql, dl = _labels(query_labels, nq, "query_labels"), _labels(db_labels, nd, "db_labels")
    else:
        ql = dl = None
        relevance = np.asarray(relevance, dtype=bool)
        if relevance.shape != (nq, nd):
            raise ValueError(f"relevance matrix has shape {relevance.shape}, expected ({nq}, {nd})")
    if bit_masks is not None:
        bit_masks = np.asarray(bit_masks, dtype=bool)
        if bit_masks.shape != Q.shape:
            raise ValueError(f"bit_masks must have shape {Q.shape} (one mask per query), got {bit_masks.shape}")
    if backend not in ("auto", "native", "numpy"):
        raise ValueError(f"unknown mAP backend {backend!r}; valid: 'auto', 'native', 'numpy'")
    native = _native_map() if backend != "numpy" and relevance is None else None
    if backend == "native" and native is None:
        raise RuntimeError("the compiled mAP kernel (bitlens.native._map) is not built and label relevance is "
                           "needed for it; run `make setup` (or pip install -e .), or use backend='numpy'")
    if native is not None:
        aps = _native_average_precisions(native, Q, D, ql, dl, self_match, topk, bit_masks)
    else:
        aps = _numpy_average_precisions(Q, D, ql if relevance is None else None, dl if relevance is None else None,
                                        relevance, self_match, topk, bit_masks, chunk_size)
    return aps if per_query else float(aps.mean()) if nq else 0.0


def class_map(B, labels, self_match: str = "nonrelevant", query_idx=None, topk: int | None = None) -> float:
    """Class-level retrieval mAP with query set = database (official `same_train_test`)."""
    labels = _labels(labels, np.asarray(B).shape[0], "labels")
    return mean_average_precision(B, B, labels, labels, self_match=self_match, topk=topk)


def expert_bits(GRM, k: int) -> np.ndarray:
    """Per class, the indices of its k largest GRM entries (descending; equal values → lower bit index)."""
    g = np.asarray(GRM, dtype=np.float64)
    if g.ndim != 2:
        raise ValueError(f"GRM must be 2-D (classes × bits), got shape {g.shape}")
    if not 1 <= k <= g.shape[1]:
        raise ValueError(f"expert bits k={k} must be between 1 and the code length {g.shape[1]}")
    return np.argsort(-g, axis=1, kind="stable")[:, :k]


def expert_bit_map(B, labels, GRM, k: int, self_match: str = "nonrelevant", db_B=None, db_labels=None,
                   per_query: bool = False):
    """Class mAP where a query of class c ranks on the top-k bits of GRM[c] only (official `select_distance.m`).

    As in the Matlab, a query whose class has no GRM row (the missing label 99999, or any class ≥ the GRM's
    rows) keeps a distance of 0 to every item, so its ranking is the database order; it stays in the mean,
    its relevant items being the other items with the same label.
    """
    B = np.asarray(B)
    labels = _labels(labels, B.shape[0], "labels")
    C = np.asarray(GRM).shape[0]
    valid = (labels >= 0) & (labels < C)
    sel = expert_bits(GRM, k)
    masks = np.zeros((B.shape[0], B.shape[1]), bool)
    masks[np.flatnonzero(valid)[:, None], sel[labels[valid]]] = True
    if db_B is None:
        aps = mean_average_precision(B, B, labels, labels, self_match=self_match, bit_masks=masks, per_query=True)
    else:
        aps = mean_average_precision(B, db_B, labels, db_labels, bit_masks=masks, per_query=True)
    return aps if per_query else float(aps.mean()) if aps.size else 0.0


def attribute_map(B, attributes, j: int, bits=None) -> float:
    """Attribute retrieval mAP (official `compute_map_attribute_rank.m`): queries = items with attribute j (value
    1; 0 and the missing value 2 are not), relevant = items with attribute j, the query's own item counts as
    relevant. `bits`: rank on these bits only. NaN when no item has the attribute (Matlab's mean of nothing)."""
    B = np.asarray(B)
    A = np.asarray(attributes, dtype=np.float64)
    if A.ndim != 2 or A.shape[0] != B.shape[0]:
        raise ValueError(f"attributes must be (items × attributes) with {B.shape[0]} rows, got {A.shape}")
    has = A[:, j] == 1
    qidx = np.flatnonzero(has)
    if qidx.size == 0:
        return float("nan")
    if bits is not None:
        B = B[:, np.asarray(bits, dtype=np.int64)]
    rel = np.broadcast_to(has[None, :], (qidx.size, B.shape[0]))
    return mean_average_precision(B[qidx], B, relevance=rel)


def precision_at_k(query_codes, db_codes, query_labels, db_labels, k: int = 100) -> float:
    """Mean fraction of relevant items among the first k (stable Hamming ranking)."""
    Q = _pm1(query_codes, "query codes")
    D = _pm1(db_codes, "database codes")
    ql, dl = np.asarray(query_labels).ravel(), np.asarray(db_labels).ravel()
    out = []
    for a in range(0, Q.shape[0], 256):
        dist = ((Q.shape[1] - Q[a:a + 256] @ D.T) / 2).astype(np.uint16)
        order = np.argsort(dist, axis=1, kind="stable")[:, :k]
        out.append((dl[order] == ql[a:a + 256, None]).mean(1))
    return float(np.concatenate(out).mean())


# -- MIS -----------------------------------------------------------------------------

def mis_samples(labels, cls: int, max_num: int, rng: np.random.Generator):
    """Official sampling for one class: the first min(max_num/2, n_pos) positives in file order,
    then random negatives (label ≠ cls) up to max_num. Returns (indices, binary targets) or None."""
    labels = np.asarray(labels).ravel()
    pos = np.flatnonzero(labels == cls)
    if pos.size == 0:
        return None
    p = min(max_num // 2, pos.size)
    neg = np.flatnonzero(labels != cls)
    neg = neg[rng.permutation(neg.size)[:max_num - p]]
    idx = np.concatenate([pos[:p], neg])
    y = np.zeros(idx.size, np.int64)
    y[:p] = 1
    return idx, y


def mutual_information_matrix(codes, labels, max_num: int, seed: int = 0, estimator: str = "knn",
                              classes=None) -> np.ndarray:
    """(classes, bits) mutual information between each bit and one-vs-rest class membership.

    "knn" equals scikit-learn's `mutual_info_classif(X, y, random_state=seed)` per class (the official script),
    "discrete" equals `mutual_info_classif(X > 0, y, discrete_features=True)`; both computed for all bits at
    once by `bitlens.mutual_info`.
    """
    from bitlens.mutual_info import discrete_mutual_info, knn_mutual_info

    X = _pm1(codes, "codes")
    labels = np.asarray(labels).ravel()
    if labels.shape[0] != X.shape[0]:
        raise ValueError(f"labels has {labels.shape[0]} rows but the codes have {X.shape[0]}")
    if estimator not in MIS_ESTIMATORS:
        raise ValueError(f"unknown MI estimator {estimator!r}; valid: 'knn' (sklearn's continuous kNN estimator, "
                         f"the paper's), 'discrete' (exact plug-in MI of the binary bits)")
    if int(max_num) < 2:
        raise ValueError(f"MIS max_num must be at least 2 (one positive and one negative sample), got {max_num}")
    if classes is None:
        classes = [c for c in np.unique(labels) if c != MISSING_LABEL and c >= 0]
    rng = np.random.default_rng(seed)
    # the negatives are drawn class after class from one generator, so sample first, in order
    samples = [s for s in (mis_samples(labels, int(c), max_num, rng) for c in classes) if s is not None]

    def one(sample):
        idx, y = sample
        if estimator == "knn":
            return knn_mutual_info(X[idx], y, random_state=seed)
        return discrete_mutual_info(X[idx] > 0, y)

    from concurrent.futures import ThreadPoolExecutor

    # numpy's sorts and arithmetic release the GIL: two threads use both cores; map keeps the class order
    with ThreadPoolExecutor(max_workers=2) as pool:
        rows = list(progress(pool.map(one, samples), desc=f"MIS ({estimator})", total=len(samples)))
    return np.asarray(rows)


def mutual_information_score(codes, labels, max_num: int, seed: int = 0, estimator: str = "knn") -> float:
    """MIS = mean over bits of the max over classes of MI(bit; class membership), official sampling."""
    mi = mutual_information_matrix(codes, labels, max_num, seed, estimator)
    return float(mi.max(axis=0).mean()) if mi.size else 0.0


MIS_ESTIMATORS = {
    "knn": "sklearn mutual_info_classif, continuous kNN estimator (3 neighbours), as the official script (seeded)",
    "discrete": "exact plug-in MI of binary bits (sklearn mutual_info_classif, discrete_features=True)",
}


# -- Hashing-literature metrics (DeepHash-style) ---------------------------------------
#
# One pass over (query block × database) Hamming distances gives every number the deep-hashing papers report:
# mAP@K, precision@K / recall@K curves, the precision–recall curve over Hamming radius 0..bits and precision /
# recall within a radius. Conventions (docs/metrics.md):
# - ranking: ascending Hamming distance, ties → lower database index (a stable sort, as compute_map.m);
# - mAP@K (DeepHash-pytorch `CalcTopMap`): AP over the first K positions, normalised by the relevant items found
#   there, 0 for a query with none in its top K; the mean is over all queries. K = None (or ≥ the database) is
#   mAP@all, equal to `mean_average_precision`;
# - precision@K = relevant among the first K / K; recall@K = relevant among the first K / all relevant;
# - within radius r: retrieved = items at distance ≤ r. A query that retrieves nothing has precision 0
#   (`empty="zero"`, the DeepHash-style papers') or is left out of the precision mean (`empty="exclude"`);
# - a query without any relevant item has AP, recall and precision 0 (the same as mAP's 0 for R = 0).

HASHING_MAP_KS = (100, 1000, 5000)   # DeepHash-pytorch: @1000 (ImageNet), @5000 (COCO, NUS-WIDE); @100 small sets
EMPTY_RADIUS = ("zero", "exclude")


def _relevance_rows(a: int, b: int, ql, dl, relevance, nd: int) -> np.ndarray:
    """Boolean (b − a, nd) relevance of queries a..b: label equality, shared multi-hot label, a boolean matrix,
    or per-query lists of relevant database indices (sparse, so 50k × 50k needs no dense matrix)."""
    if relevance is None:
        if ql.ndim == 2:
            return (ql[a:b].astype(np.float32) @ dl.T.astype(np.float32)) > 0
        return ql[a:b, None] == dl[None, :]
    if isinstance(relevance, np.ndarray):
        return relevance[a:b].copy()
    rel = np.zeros((b - a, nd), bool)
    for i, r in enumerate(relevance[a:b]):
        rel[i, r] = True
    return rel


def _check_relevance(relevance, nq: int, nd: int):
    if isinstance(relevance, np.ndarray) or (hasattr(relevance, "shape") and hasattr(relevance, "dtype")):
        rel = np.asarray(relevance)
        if rel.dtype != bool:
            raise ValueError(f"relevance matrix must be boolean, got {rel.dtype}")
        if rel.shape != (nq, nd):
            raise ValueError(f"relevance matrix has shape {rel.shape}, expected ({nq}, {nd})")
        return rel
    rel = [np.asarray(r, dtype=np.int64).ravel() for r in relevance]
    if len(rel) != nq:
        raise ValueError(f"relevance lists {len(rel)} queries but there are {nq} query codes")
    for i, r in enumerate(rel):
        if r.size and (r.min() < 0 or r.max() >= nd):
            raise ValueError(f"relevance of query {i} names database index {int(r.max() if r.max() >= nd else r.min())}"
                             f", outside 0..{nd - 1}")
    return rel


def default_curve_ks(n: int) -> list[int]:
    """K values of a precision@K curve: 1, 2, 5 × powers of ten, up to n (inclusive)."""
    ks, p = [], 1
    while p <= n:
        ks += [k for k in (p, 2 * p, 5 * p) if k <= n]
        p *= 10
    return sorted(set(ks + [n])) if n > 0 else []


def hashing_metrics(query_codes, db_codes, query_labels=None, db_labels=None, *, relevance=None,
                    map_ks=HASHING_MAP_KS, curve_ks=None, radius: int = 2, empty: str = "zero",
                    self_match: str | None = None, chunk_size: int = 128) -> dict:
    """The deep-hashing metrics of ±1 codes in one chunked pass (peak memory ∝ chunk_size × database).

    Relevance: label equality (1-D labels), at least one shared label (2-D multi-hot labels, DeepHash), a boolean
    (nq, nd) matrix, or per-query lists of relevant database indices. self_match (query set = database, query i
    = item i): None, "nonrelevant" / "relevant" (the own item stays in the ranking), "drop" (removed from the
    ranking and the database, the usual leave-one-out).
    Returns {"map": {K: mAP@K, "all": mAP@all}, "curve_ks", "precision_at_k", "recall_at_k", "radii",
    "pr_precision", "pr_recall", "radius", "precision_within_radius", "recall_within_radius",
    "empty_within_radius" (queries with nothing within `radius`), "empty", "queries", "database"}; see the
    conventions above.
    """
    Q = _pm1(query_codes, "query codes")
    D = _pm1(db_codes, "database codes")
    if Q.shape[1] != D.shape[1]:
        raise ValueError(f"query codes have {Q.shape[1]} bits but database codes {D.shape[1]}")
    nq, nd, bits = Q.shape[0], D.shape[0], Q.shape[1]
    if self_match not in (None, "nonrelevant", "relevant", "drop"):
        raise ValueError(f"unknown self_match {self_match!r}; valid: None, 'nonrelevant', 'relevant', 'drop'")
    if self_match and nq != nd:
        raise ValueError(f"self_match={self_match!r} needs query set = database, got {nq} queries and {nd} items")
    if empty not in EMPTY_RADIUS:
        raise ValueError(f"unknown empty-radius convention {empty!r}; valid: 'zero' (a query with no item within "
                         f"the radius has precision 0, DeepHash-style) or 'exclude' (left out of the mean)")
    if not 0 <= int(radius) <= bits:
        raise ValueError(f"Hamming radius must be between 0 and the code length {bits}, got {radius}")
    if relevance is None:
        if query_labels is None or db_labels is None:
            raise ValueError("give query_labels and db_labels, or relevance")
        ql, dl = np.asarray(query_labels), np.asarray(db_labels)
        if ql.ndim == 2 and ql.shape[1] == 1:
            ql, dl = ql[:, 0], np.asarray(dl).reshape(len(dl), -1)[:, 0]
        if ql.shape[0] != nq or dl.shape[0] != nd or ql.ndim != dl.ndim or ql.shape[1:] != dl.shape[1:]:
            raise ValueError(f"labels must be (queries[, classes]) and (items[, classes]) matching the codes "
                             f"({nq} and {nd} rows), got {ql.shape} and {dl.shape}")
    else:
        ql = dl = None
        relevance = _check_relevance(relevance, nq, nd)
    n_eff = nd - (self_match == "drop")
    if n_eff < 1:
        raise ValueError("the database is empty once the query's own item is dropped")
    map_ks = [None if k is None else int(k) for k in map_ks] + ([None] if None not in map_ks else [])
    if any(k is not None and k < 1 for k in map_ks):
        raise ValueError(f"mAP@K needs K ≥ 1, got {map_ks}")
    curve_ks = np.asarray(default_curve_ks(n_eff) if curve_ks is None else curve_ks, dtype=np.int64)
    if curve_ks.size and (curve_ks.min() < 1 or curve_ks.max() > n_eff):
        raise ValueError(f"precision@K curve needs 1 ≤ K ≤ {n_eff} (the database), got {curve_ks.tolist()}")
    # positions (0-based) whose running sums are read: each mAP@K's K and each curve K
    top = [min(k, n_eff) if k is not None else n_eff for k in map_ks]
    need = max(top + curve_ks.tolist() + [1])
    Qp, Dp = np.packbits(Q > 0, axis=1), np.packbits(D > 0, axis=1)
    nb = bits + 2  # distance bins 0..bits, and bits + 1 for a dropped own item
    ap = np.zeros((len(map_ks), nq))
    hits_k = np.zeros((curve_ks.size, nq))
    n_rel = np.zeros(nq)
    cum_all = np.zeros((nq, bits + 1))
    cum_rel = np.zeros((nq, bits + 1))

    def block(a: int) -> None:
        b = min(nq, a + chunk_size)
        nr = b - a
        dist = _hamming_block(Qp[a:b], Dp)
        rel = _relevance_rows(a, b, ql, dl, relevance, nd)
        if self_match:
            loc = (np.arange(nr), np.arange(a, b))
            if self_match == "relevant":
                rel[loc] = True
            else:
                rel[loc] = False
                if self_match == "drop":
                    dist[loc] = bits + 1  # past every real distance: last in the ranking, outside every radius
        n_rel[a:b] = rel.sum(1)
        # radius metrics: per-row histograms of every item's and the relevant items' distances
        idx = dist.astype(np.int64) + (np.arange(nr, dtype=np.int64) * nb)[:, None]
        h_all = np.bincount(idx.ravel(), minlength=nr * nb).reshape(nr, nb)[:, :bits + 1]
        h_rel = np.bincount(idx[rel], minlength=nr * nb).reshape(nr, nb)[:, :bits + 1]
        cum_all[a:b] = np.cumsum(h_all, axis=1)
        cum_rel[a:b] = np.cumsum(h_rel, axis=1)
        del idx
        # ranking metrics: stable order over the first `need` positions
        order = np.argsort(dist, axis=1, kind="stable")[:, :need]
        r = rel[np.arange(nr)[:, None], order]
        hits = np.cumsum(r, axis=1, dtype=np.int64)
        prec_terms = np.cumsum(np.where(r, hits / np.arange(1, need + 1), 0.0), axis=1)
        for j, K in enumerate(top):
            found = hits[:, K - 1]
            ap[j, a:b] = np.where(found > 0, prec_terms[:, K - 1] / np.maximum(found, 1), 0.0)
        if curve_ks.size:
            hits_k[:, a:b] = hits[:, curve_ks - 1].T

    starts = list(range(0, nq, chunk_size))
    from concurrent.futures import ThreadPoolExecutor

    # numpy's sorts and faiss's distance kernel release the GIL: two threads use both cores
    with ThreadPoolExecutor(max_workers=2) as pool:
        for _ in progress(pool.map(block, starts), desc="hashing metrics", total=len(starts),
                          disable=len(starts) < 8 or None):
            pass

    with np.errstate(invalid="ignore", divide="ignore"):
        recall_r = np.where(n_rel[:, None] > 0, cum_rel / np.maximum(n_rel, 1)[:, None], 0.0)
        prec_r = np.where(cum_all > 0, cum_rel / np.maximum(cum_all, 1), 0.0)
    retrieved = cum_all > 0
    if empty == "zero":
        pr_precision = prec_r.mean(0) if nq else np.zeros(bits + 1)
    else:
        cnt = retrieved.sum(0)
        pr_precision = np.where(cnt > 0, prec_r.sum(0) / np.maximum(cnt, 1), np.nan)
    pr_recall = recall_r.mean(0) if nq else np.zeros(bits + 1)
    recall_k = np.where(n_rel[None, :] > 0, hits_k / np.maximum(n_rel, 1)[None, :], 0.0)
    return {
        "map": {("all" if k is None else k): float(ap[j].mean()) if nq else 0.0 for j, k in enumerate(map_ks)},
        "curve_ks": curve_ks.tolist(),
        "precision_at_k": (hits_k.mean(1) / np.maximum(curve_ks, 1)).tolist() if nq else [0.0] * curve_ks.size,
        "recall_at_k": recall_k.mean(1).tolist() if nq else [0.0] * curve_ks.size,
        "radii": list(range(bits + 1)),
        "pr_precision": [float(x) for x in pr_precision],
        "pr_recall": [float(x) for x in pr_recall],
        "radius": int(radius),
        "precision_within_radius": float(pr_precision[radius]),
        "recall_within_radius": float(pr_recall[radius]),
        "empty_within_radius": int((~retrieved[:, radius]).sum()),
        "empty": empty,
        "queries": int(nq),
        "database": int(n_eff),
    }
