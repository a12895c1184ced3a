"""The deep-hashing metrics (bitlens.metrics.hashing_metrics) against literal per-query definitions, with ties."""
import numpy as np
import pytest

from bitlens import metrics


def brute(Q, D, rel, ks, map_ks, radius, empty="zero", drop_self=False):
    """Per query: rank by (Hamming distance, index); read every metric off its definition."""
    nq, nd = rel.shape
    bits = Q.shape[1]
    aps = {k: [] for k in map_ks}
    pk, rk = {k: [] for k in ks}, {k: [] for k in ks}
    pr_p, pr_r = [[] for _ in range(bits + 1)], [[] for _ in range(bits + 1)]
    for i in range(nq):
        d = [int((Q[i] != D[j]).sum()) for j in range(nd)]
        items = [j for j in range(nd) if not (drop_self and j == i)]
        ranked = sorted(items, key=lambda j: (d[j], j))
        R = sum(rel[i, j] for j in items)
        for k in map_ks:
            K = len(ranked) if k is None else min(k, len(ranked))
            found, s = 0, 0.0
            for pos, j in enumerate(ranked[:K], 1):
                if rel[i, j]:
                    found += 1
                    s += found / pos
            aps[k].append(s / found if found else 0.0)
        for k in ks:
            h = sum(rel[i, j] for j in ranked[:k])
            pk[k].append(h / k)
            rk[k].append(h / R if R else 0.0)
        for r in range(bits + 1):
            inside = [j for j in items if d[j] <= r]
            h = sum(rel[i, j] for j in inside)
            if inside:
                pr_p[r].append(h / len(inside))
            elif empty == "zero":
                pr_p[r].append(0.0)
            pr_r[r].append(h / R if R else 0.0)
    return ({("all" if k is None else k): np.mean(v) for k, v in aps.items()},
            [np.mean(pk[k]) for k in ks], [np.mean(rk[k]) for k in ks],
            [np.mean(v) if v else np.nan for v in pr_p], [np.mean(v) for v in pr_r])


def check(out, expected, radius):
    m, pk, rk, pp, prr = expected
    for k, v in m.items():
        assert out["map"][k] == pytest.approx(v, abs=1e-12), k
    np.testing.assert_allclose(out["precision_at_k"], pk, atol=1e-12)
    np.testing.assert_allclose(out["recall_at_k"], rk, atol=1e-12)
    np.testing.assert_allclose(out["pr_precision"], pp, atol=1e-12)
    np.testing.assert_allclose(out["pr_recall"], prr, atol=1e-12)
    assert out["precision_within_radius"] == pytest.approx(pp[radius])
    assert out["recall_within_radius"] == pytest.approx(prr[radius])


def test_hand_built_ranking_with_ties():
    # query 0 at distances [1, 0, 1, 0, 2] from the 5 items; stable order 1, 3, 0, 2, 4
    D = np.array([[1, 1, -1], [1, 1, 1], [-1, 1, 1], [1, 1, 1], [-1, -1, 1]])
    Q = np.array([[1, 1, 1]])
    lab_d = np.array([0, 1, 0, 1, 0])
    out = metrics.hashing_metrics(Q, D, np.array([0]), lab_d, map_ks=(1, 3), curve_ks=[1, 2, 3, 5], radius=1)
    # relevant items 0, 2, 4 sit at positions 3, 4, 5
    assert out["map"][1] == 0.0
    assert out["map"][3] == pytest.approx(1 / 3)            # one relevant in the top 3, at position 3
    assert out["map"]["all"] == pytest.approx((1 / 3 + 2 / 4 + 3 / 5) / 3)
    assert out["precision_at_k"] == pytest.approx([0, 0, 1 / 3, 3 / 5])
    assert out["recall_at_k"] == pytest.approx([0, 0, 1 / 3, 1])
    # radius 0: items 1, 3 (none relevant); radius 1: + 0, 2; radius 2: all
    assert out["pr_precision"] == pytest.approx([0, 2 / 4, 3 / 5, 3 / 5])
    assert out["pr_recall"] == pytest.approx([0, 2 / 3, 1, 1])
    assert out["precision_within_radius"] == pytest.approx(0.5)


def test_no_item_within_radius_counts_as_precision_zero_or_is_excluded():
    D = np.array([[1, 1, 1, 1], [-1, -1, 1, 1]])
    Q = np.array([[1, 1, 1, 1], [-1, -1, -1, -1]])   # query 1 is ≥ 2 bits from every item
    lab = np.array([0, 0])
    zero = metrics.hashing_metrics(Q, D, lab, lab, radius=1, curve_ks=[1])
    excl = metrics.hashing_metrics(Q, D, lab, lab, radius=1, curve_ks=[1], empty="exclude")
    assert zero["empty_within_radius"] == 1
    assert zero["precision_within_radius"] == pytest.approx(0.5)   # (1 + 0) / 2
    assert excl["precision_within_radius"] == pytest.approx(1.0)   # query 1 left out
    assert zero["recall_within_radius"] == excl["recall_within_radius"] == pytest.approx((1 / 2 + 0) / 2)


@pytest.mark.parametrize("bits", [3, 8, 70])
@pytest.mark.parametrize("self_match", [None, "nonrelevant", "relevant", "drop"])
@pytest.mark.parametrize("empty", ["zero", "exclude"])
def test_every_metric_matches_the_brute_force_definitions_with_many_ties(bits, self_match, empty):
    rng = np.random.default_rng(bits)
    n = 40
    B = np.where(rng.random((n, bits)) < 0.5, -1, 1)
    if bits == 70:
        B[:, 5:] = 1          # few distinct codes: many ties across word boundaries
    lab = rng.integers(0, 4, n)
    lab[0] = 9                # a query whose only relevant item is (at most) itself
    rel = lab[:, None] == lab[None, :]
    if self_match in ("nonrelevant", "drop"):
        np.fill_diagonal(rel, False)
    elif self_match == "relevant":
        np.fill_diagonal(rel, True)
    n_eff = n - (self_match == "drop")
    ks, map_ks = [1, 3, 7, n_eff], (1, 5, 13, None)
    out = metrics.hashing_metrics(B, B, lab, lab, self_match=self_match, map_ks=map_ks, curve_ks=ks, radius=2,
                                  empty=empty, chunk_size=7)
    check(out, brute(B, B, rel, ks, map_ks, 2, empty, self_match == "drop"), 2)


def test_relevance_matrix_lists_and_multi_hot_labels_agree_with_brute_force():
    rng = np.random.default_rng(1)
    Q = np.where(rng.random((12, 6)) < 0.5, -1, 1)
    D = np.where(rng.random((30, 6)) < 0.5, -1, 1)
    ql, dl = rng.random((12, 5)) < 0.3, rng.random((30, 5)) < 0.3
    rel = (ql.astype(int) @ dl.T.astype(int)) > 0
    expected = brute(Q, D, rel, [1, 4, 30], (3, None), 2)
    for kw in ({"relevance": rel}, {"relevance": [np.flatnonzero(r) for r in rel]},
               {"query_labels": ql.astype(int), "db_labels": dl.astype(int)}):
        check(metrics.hashing_metrics(Q, D, map_ks=(3,), curve_ks=[1, 4, 30], chunk_size=5, **kw), expected, 2)


def test_map_at_all_and_at_k_equal_the_matlab_map():
    rng = np.random.default_rng(3)
    B = np.where(rng.random((60, 5)) < 0.5, -1, 1)
    lab = rng.integers(0, 3, 60)
    out = metrics.hashing_metrics(B, B, lab, lab, self_match="nonrelevant", map_ks=(10,))
    assert out["map"]["all"] == pytest.approx(metrics.class_map(B, lab), abs=1e-12)
    assert out["map"][10] == pytest.approx(metrics.class_map(B, lab, topk=10), abs=1e-12)


def test_default_curve_ks_and_bad_inputs():
    assert metrics.default_curve_ks(120) == [1, 2, 5, 10, 20, 50, 100, 120]
    B = np.array([[1, -1], [-1, 1]])
    lab = np.array([0, 1])
    with pytest.raises(ValueError, match="radius"):
        metrics.hashing_metrics(B, B, lab, lab, radius=3)
    with pytest.raises(ValueError, match="empty-radius convention"):
        metrics.hashing_metrics(B, B, lab, lab, empty="nan")
    with pytest.raises(ValueError, match="precision@K curve"):
        metrics.hashing_metrics(B, B, lab, lab, curve_ks=[3])
    with pytest.raises(ValueError, match="outside 0..1"):
        metrics.hashing_metrics(B, B, relevance=[[0], [2]])
    with pytest.raises(ValueError, match="±1 codes"):
        metrics.hashing_metrics(B * 2, B, lab, lab)
    with pytest.raises(ValueError, match="query set = database"):
        metrics.hashing_metrics(B[:1], B, lab[:1], lab, self_match="drop")
