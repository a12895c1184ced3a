import numpy as np
import pytest

from bitlens import metrics

S = np.array([[0.5, 0.5, 0.5],
              [0.9, 0.5, 0.5],
              [0.1, 0.2, 0.3]])


@pytest.mark.parametrize("ties,r1,r2,meanr", [
    ("pessimistic", 1 / 3, 1 / 3, (3 + 3 + 1) / 3),
    ("optimistic", 2 / 3, 1.0, (1 + 2 + 1) / 3),
    ("index", 2 / 3, 1.0, (1 + 2 + 1) / 3),
    ("expected", (1 / 3 + 0 + 1) / 3, (2 / 3 + 0.5 + 1) / 3, (2 + 2.5 + 1) / 3),
])
def test_recall_tie_policies_on_a_hand_built_matrix(ties, r1, r2, meanr):
    out = metrics.recall_at_k(S, ks=(1, 2), ties=ties)
    assert out["r1"] == pytest.approx(r1) and out["r2"] == pytest.approx(r2) and out["meanr"] == pytest.approx(meanr)


def test_recall_counts_ties_pessimistically_and_policies_coincide_without_ties():
    rng = np.random.default_rng(0)
    s = rng.standard_normal((50, 50))
    outs = [metrics.recall_at_k(s, ties=t) for t in metrics.TIE_POLICIES]
    assert all(o == outs[0] for o in outs)
    # brute force: rank by argsort, like the official per-query loop
    ranks = np.array([np.where(np.argsort(-s[i], kind="stable") == i)[0][0] + 1 for i in range(50)])
    assert outs[0]["r5"] == pytest.approx((ranks <= 5).mean()) and outs[0]["medr"] == np.median(ranks)


def test_one_to_many_ground_truth_uses_the_best_relevant_item():
    s = np.array([[0.1, 0.9, 0.8, 0.2]])
    assert metrics.recall_at_k(s, gt=[[2, 3]], ks=(1, 2))["r2"] == 1.0
    assert metrics.recall_at_k(s, gt=[[2, 3]], ks=(1, 2))["r1"] == 0.0
    with pytest.raises(ValueError, match="query 0 has no relevant item"):
        metrics.recall_at_k(s, gt=[[]])


def test_recall_rejects_nan_and_unknown_policy():
    with pytest.raises(ValueError, match="NaN"):
        metrics.recall_at_k(np.array([[np.nan]]))
    with pytest.raises(ValueError, match="unknown tie policy"):
        metrics.recall_at_k(S, ties="random")


B = np.array([[1, 1], [1, 1], [-1, 1], [1, 1]])
LAB = np.array([0, 1, 0, 0])


def test_class_map_hand_computed_with_index_ties_and_self_match_nonrelevant():
    # distances of query 0: [0, 0, 1, 0] → stable order 0,1,3,2 → relevant (self excluded) at 3, 4
    expected = ((1 / 3 + 2 / 4) / 2 + 0 + (1 / 2 + 2 / 4) / 2 + (1 / 1 + 2 / 4) / 2) / 4
    assert metrics.class_map(B, LAB) == pytest.approx(expected)
    per = metrics.mean_average_precision(B, B, LAB, LAB, self_match="nonrelevant", per_query=True)
    np.testing.assert_allclose(per, [5 / 12, 0, 0.5, 0.75])


def test_self_match_drop_and_relevant_variants():
    drop = metrics.mean_average_precision(B, B, LAB, LAB, self_match="drop", per_query=True)
    # query 0 without itself: order 1,3,2 → relevant at 2, 3
    assert drop[0] == pytest.approx((1 / 2 + 2 / 3) / 2)
    rel = metrics.mean_average_precision(B, B, LAB, LAB, self_match="relevant", per_query=True)
    assert rel[1] == pytest.approx(1 / 2)  # query 1: order 0,1 → itself at position 2


def test_attribute_map_counts_the_self_match_as_relevant():
    attrs = np.array([[1], [0], [1], [1]])
    expected = ((1 + 2 / 3 + 3 / 4) / 3 + (1 + 1 + 3 / 4) / 3 + (1 + 2 / 3 + 3 / 4) / 3) / 3
    assert metrics.attribute_map(B, attrs, 0) == pytest.approx(expected)


def test_map_at_k_and_precision_at_k():
    assert metrics.mean_average_precision(B[:1], B, LAB[:1], LAB, topk=1) == 1.0
    assert metrics.precision_at_k(B[:1], B, LAB[:1], LAB, k=2) == 0.5


def test_map_matches_a_brute_force_loop_on_random_codes():
    rng = np.random.default_rng(1)
    Bq = np.where(rng.random((30, 8)) > 0.5, 1, -1)
    lab = rng.integers(0, 3, 30)
    fast = metrics.mean_average_precision(Bq, Bq, lab, lab, self_match="nonrelevant", chunk_size=7)
    aps = []
    for q in range(30):
        d = (8 - Bq @ Bq[q]) / 2
        order = np.argsort(d, kind="stable")
        rel = (lab[order] == lab[q]) & (order != q)
        pos = np.flatnonzero(rel) + 1
        aps.append((np.arange(1, len(pos) + 1) / pos).mean() if len(pos) else 0)
    assert fast == pytest.approx(np.mean(aps))


def test_expert_bit_map_ranks_each_query_on_its_class_bits():
    rng = np.random.default_rng(2)
    lab = np.repeat([0, 1], 10)
    Bq = np.where(rng.random((20, 6)) > 0.5, 1, -1)
    Bq[:, 0] = np.where(lab == 0, 1, -1)  # bit 0 separates the classes perfectly
    grm = np.array([[1.0, 0, 0, 0, 0, 0], [1.0, 0, 0, 0, 0, 0]])
    # one bit: the ten items of the query's class all tie at distance 0 and come first, in index order,
    # the query itself among them (non-relevant)
    aps = []
    for q in range(20):
        own = [i for i in range(20) if lab[i] == lab[q]]
        pos = [own.index(i) + 1 for i in own if i != q]
        aps.append(np.mean([(r + 1) / p for r, p in enumerate(pos)]))
    assert metrics.expert_bit_map(Bq, lab, grm, 1) == pytest.approx(np.mean(aps))
    assert metrics.expert_bit_map(Bq, lab, grm, 1) > metrics.class_map(Bq, lab)
    np.testing.assert_array_equal(metrics.expert_bits(np.array([[0.5, 0.9, 0.5]]), 2), [[1, 0]])


def test_mis_sampling_takes_the_first_positives_in_file_order():
    labels = np.array([2, 0, 2, 1, 2, 2, 0])
    idx, y = metrics.mis_samples(labels, 2, 4, np.random.default_rng(0))
    assert idx[:2].tolist() == [0, 2] and y.tolist() == [1, 1, 0, 0]
    assert set(idx[2:]) <= {1, 3, 6}
    assert metrics.mis_samples(labels, 5, 4, np.random.default_rng(0)) is None


def test_mis_estimators_are_seeded_and_informative_bits_score_higher():
    rng = np.random.default_rng(3)
    lab = rng.integers(0, 4, 400)
    codes = np.where(rng.random((400, 8)) > 0.5, 1, -1)
    codes[:, 0] = np.where(lab == 1, 1, -1)
    a = metrics.mutual_information_matrix(codes, lab, 100, seed=0)
    b = metrics.mutual_information_matrix(codes, lab, 100, seed=0)
    np.testing.assert_array_equal(a, b)
    assert a[:, 0].max() > a[:, 1:].max()
    d = metrics.mutual_information_score(codes, lab, 100, seed=0, estimator="discrete")
    assert 0 < d < metrics.mutual_information_score(codes, lab, 100, seed=0, estimator="knn")


@pytest.mark.parametrize("self_match", [None, "nonrelevant", "relevant", "drop"])
@pytest.mark.parametrize("topk", [None, 5])
def test_map_variants_match_a_brute_force_loop_with_many_ties(self_match, topk):
    rng = np.random.default_rng(3)
    Bq = np.where(rng.random((40, 6)) > 0.5, 1, -1)  # 6 bits, 40 items: many tied distances
    lab = rng.integers(0, 4, 40)
    fast = metrics.mean_average_precision(Bq, Bq, lab, lab, self_match=self_match, topk=topk, chunk_size=9,
                                          per_query=True)
    for q in range(40):
        d = (6 - Bq @ Bq[q]) / 2
        order = np.argsort(d, kind="stable")
        if self_match == "drop":
            order = order[order != q]
        rel = lab[order] == lab[q]
        if self_match == "nonrelevant":
            rel &= order != q
        elif self_match == "relevant":
            rel |= order == q
        if topk is not None:
            rel = rel[:topk]
        pos = np.flatnonzero(rel) + 1
        ap = (np.arange(1, len(pos) + 1) / pos).mean() if len(pos) else 0.0
        assert fast[q] == pytest.approx(ap), q


def test_bit_masks_rank_each_query_on_its_own_bits_across_word_boundaries():
    rng = np.random.default_rng(4)
    Bq = np.where(rng.random((25, 70)) > 0.5, 1, -1)  # 70 bits: two 64-bit words
    lab = rng.integers(0, 3, 25)
    masks = rng.random((25, 70)) > 0.7
    fast = metrics.mean_average_precision(Bq, Bq, lab, lab, self_match="nonrelevant", bit_masks=masks,
                                          chunk_size=6, per_query=True)
    for q in range(25):
        d = (Bq[:, masks[q]] != Bq[q, masks[q]]).sum(1)
        order = np.argsort(d, kind="stable")
        rel = (lab[order] == lab[q]) & (order != q)
        pos = np.flatnonzero(rel) + 1
        ap = (np.arange(1, len(pos) + 1) / pos).mean() if len(pos) else 0.0
        assert fast[q] == pytest.approx(ap), q


native_built = pytest.mark.skipif(metrics._native_map() is None, reason="compiled mAP kernel not built")


@native_built
@pytest.mark.parametrize("bits", [1, 6, 64, 70, 256])
@pytest.mark.parametrize("self_match", [None, "nonrelevant", "relevant", "drop"])
@pytest.mark.parametrize("topk", [None, 1, 7])
def test_native_map_is_bit_identical_to_numpy_with_many_ties(bits, self_match, topk):
    rng = np.random.default_rng(bits)
    Bq = np.where(rng.random((57, bits)) > 0.5, 1, -1)
    lab = rng.integers(0, 4, 57)
    kw = dict(self_match=self_match, topk=topk, per_query=True)
    a = metrics.mean_average_precision(Bq, Bq, lab, lab, backend="native", **kw)
    b = metrics.mean_average_precision(Bq, Bq, lab, lab, backend="numpy", chunk_size=10, **kw)
    np.testing.assert_array_equal(a, b)
    assert a.max() > 0 or (topk == 1 and self_match == "nonrelevant")


@native_built
def test_native_map_with_bit_masks_split_sets_and_string_labels():
    rng = np.random.default_rng(5)
    Q = np.where(rng.random((20, 130)) > 0.5, 1, -1)
    D = np.where(rng.random((33, 130)) > 0.5, 1, -1)
    ql, dl = rng.choice(["cat", "dog", "eel"], 20), rng.choice(["cat", "dog", "eel"], 33)
    masks = rng.random((20, 130)) > 0.8
    for m in (None, masks):
        a = metrics.mean_average_precision(Q, D, ql, dl, bit_masks=m, backend="native", per_query=True)
        b = metrics.mean_average_precision(Q, D, ql, dl, bit_masks=m, backend="numpy", per_query=True)
        np.testing.assert_array_equal(a, b)


@native_built
def test_native_map_hand_built_ranking():
    # query 0 against B: distances [0, 0, 1, 0] → stable order 0, 1, 3, 2; relevant items 0, 3, 2 at ranks 1, 3, 4
    ap = metrics.mean_average_precision(B[:1], B, LAB[:1], LAB, backend="native", per_query=True)
    assert ap[0] == pytest.approx((1 / 1 + 2 / 3 + 3 / 4) / 3)
    ap = metrics.mean_average_precision(B, B, LAB, LAB, self_match="nonrelevant", backend="native", per_query=True)
    np.testing.assert_allclose(ap, [5 / 12, 0, 0.5, 0.75])


def test_map_backend_names_are_checked():
    with pytest.raises(ValueError, match="unknown mAP backend"):
        metrics.mean_average_precision(B, B, LAB, LAB, backend="gpu")
