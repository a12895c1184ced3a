import numpy as np
import pytest

from bitlens.bebr import baselines


def data(n=400, dim=16, seed=0):
    rng = np.random.default_rng(seed)
    # anisotropic features: PCA has a clear order, ITQ something to rotate
    return rng.standard_normal((n, dim)) * np.linspace(3, 0.3, dim) + 0.5


def test_itq_rotation_is_orthogonal_and_lowers_the_quantisation_loss():
    x = baselines.l2_normalize(data())
    mean, P = baselines._pca(x, 8)
    V = (x - mean) @ P
    R, losses = baselines.itq_rotation(V, 50, seed=3)
    np.testing.assert_allclose(R.T @ R, np.eye(8), atol=1e-10)
    assert losses[-1] < losses[0]
    # each alternating step never increases the loss (B step then Procrustes step)
    assert all(b <= a + 1e-9 for a, b in zip(losses, losses[1:]))
    # and beats plain PCA (R = I) on the same data
    assert losses[-1] < baselines.quantization_loss(V, np.eye(8))


def test_hashers_are_fit_on_training_features_only_and_are_deterministic():
    train = data()
    hashers = baselines.fit_all(train, [32], seed=1)
    again = baselines.fit_all(train.copy(), [32], seed=1)
    for key, h in hashers.items():
        np.testing.assert_array_equal(h.W, again[key].W)
        np.testing.assert_array_equal(h.mean, again[key].mean)
    # the fit takes no evaluation features: codes of new data come from the fitted projection alone
    ev = np.random.default_rng(9).standard_normal((5, 16))
    h = hashers[("ITQ", 16)]
    expected = np.where((baselines.l2_normalize(ev) - h.mean) @ h.W >= 0, 1, -1)
    np.testing.assert_array_equal(h.codes(ev), expected)
    assert set(np.unique(h.codes(ev))) <= {-1, 1} and h.codes(ev).dtype == np.int8


def test_bit_counts_above_the_feature_dimension_are_lsh_only():
    counts = baselines.baseline_bit_counts([32], 16)
    assert counts["LSH"] == [4, 8, 16, 32]
    assert counts["sign-PCA"] == counts["ITQ"] == [4, 8, 16]
    with pytest.raises(ValueError, match="bits ≤ the feature dimension"):
        baselines.fit_itq(data(), 32)


def test_sign_pca_codes_follow_the_leading_component_and_lsh_keeps_angles():
    rng = np.random.default_rng(0)
    t = rng.standard_normal(500)
    x = np.stack([t * 5, rng.standard_normal(500) * 0.1, np.ones(500)], 1)
    h = baselines.fit_pca(x, 1)
    xs = baselines.l2_normalize(x)
    lead = xs[:, 0] - xs[:, 0].mean()
    # the first component is the first coordinate (up to sign)
    assert (h.codes(x)[:, 0] == np.sign(lead)).mean() > 0.95
    # LSH with many bits: Hamming distance / bits estimates angle / π (Charikar)
    a, b = np.array([[1.0, 0.0, 0.0]]), np.array([[np.cos(1.0), np.sin(1.0), 0.0]])
    lsh = baselines.fit_lsh(x, 20000, seed=0)
    ham = (lsh.codes(a) != lsh.codes(b)).mean()
    assert ham == pytest.approx(1.0 / np.pi, abs=0.02)


def test_bad_inputs_name_the_method():
    with pytest.raises(ValueError, match="unknown baseline"):
        baselines.fit("PQ", data(), 4)
    with pytest.raises(ValueError, match="NaN"):
        baselines.fit_lsh(np.full((3, 4), np.nan), 4)
    with pytest.raises(ValueError, match="ITQ: features must be"):
        baselines.fit_itq(data(), 4).codes(np.zeros((2, 3)))


def test_baseline_rows_fit_never_sees_the_evaluation_features():
    rng = np.random.default_rng(4)
    train = data(300, 8)
    img = rng.standard_normal((40, 8))
    txt = img + 0.3 * rng.standard_normal((40, 8))
    rows, hashers = baselines.baseline_rows(train, img, txt, [16], seed=2)
    rows2, hashers2 = baselines.baseline_rows(train, img[::-1] * 3 + 1, txt * -2, [16], seed=2)
    assert hashers.keys() == hashers2.keys()
    for key in hashers:
        np.testing.assert_array_equal(hashers[key].W, hashers2[key].W)
        np.testing.assert_array_equal(hashers[key].mean, hashers2[key].mean)
    assert set(rows) == {"LSH 2b", "LSH 4b", "LSH 8b", "LSH 16b", "sign-PCA 2b", "sign-PCA 4b", "sign-PCA 8b",
                         "ITQ 2b", "ITQ 4b", "ITQ 8b"}
    r = rows["ITQ 8b"]
    assert r["baseline"] == "ITQ" and r["bits"] == 8 and r["bytes_per_item"] == 1
    # recall from the same engine as the heads: equal to ranking the ±1 codes by Hamming distance directly
    from bitlens.metrics import recall_at_k
    h = hashers[("ITQ", 8)]
    ci, ct = h.codes(img).astype(float), h.codes(txt).astype(float)
    assert r["i2t"]["pessimistic"] == recall_at_k(ci @ ct.T, ties="pessimistic")


def test_baseline_sentence_compares_each_head_with_each_methods_best_run_at_no_more_bits():
    def row(bits, r10, method=None):
        r = {"bits": bits, "i2t": {"pessimistic": {"r10": r10}}}
        return {**r, "baseline": method} if method else r

    base = {"LSH 8b": row(8, 0.3, "LSH"), "LSH 16b": row(16, 0.5, "LSH"), "LSH 32b": row(32, 0.9, "LSH"),
            "sign-PCA 8b": row(8, 0.4, "sign-PCA"), "sign-PCA 16b": row(16, 0.2, "sign-PCA")}
    s = baselines.baseline_sentences({"hash": row(16, 0.45)}, base, "pessimistic")
    assert s == ["hash (16 bits): image→text R@10 0.4500 — below LSH's best at ≤ 16 bits (0.5000, 16 bits); "
                 "above sign-PCA's best at ≤ 16 bits (0.4000, 8 bits)."]
