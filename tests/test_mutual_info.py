"""The fast MI estimators against scikit-learn's `mutual_info_classif`, value for value."""
import numpy as np
import pytest
from sklearn.feature_selection import mutual_info_classif

from bitlens import metrics
from bitlens.mutual_info import discrete_mutual_info, knn_mutual_info


def _case(seed: int, binary: bool):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(4, 160))
    n_pos = int(rng.integers(1, min(n - 1, 12) if seed % 2 else n - 1))  # small groups: brute-force path
    if binary:
        X = np.where(rng.random((n, 17)) > 0.5, 1, -1).astype(np.int8)
        X[:, 0] = 1  # a constant bit
    else:
        X = rng.standard_normal((n, 9)) * rng.integers(0, 3, (n, 9))  # repeated values, zeros
    y = np.zeros(n, np.int64)
    y[rng.choice(n, n_pos, replace=False)] = 1
    if seed % 3 == 0:
        y[rng.integers(n)] = 2  # a label with one sample: dropped by the estimator
    return X, y


@pytest.mark.parametrize("seed", range(24))
@pytest.mark.parametrize("binary", [True, False])
def test_knn_mi_equals_sklearn_exactly(seed, binary):
    X, y = _case(seed, binary)
    np.testing.assert_array_equal(knn_mutual_info(X, y, random_state=seed),
                                  mutual_info_classif(X, y, random_state=seed))


@pytest.mark.parametrize("seed", range(8))
def test_discrete_mi_equals_sklearn_exactly(seed):
    X, y = _case(seed, True)
    np.testing.assert_array_equal(discrete_mutual_info(X > 0, y),
                                  mutual_info_classif(X > 0, y, discrete_features=True))
    Xc, _ = _case(seed, False)  # many-valued columns go through the per-column path
    Xc = np.round(Xc[:len(y)] if len(Xc) >= len(y) else Xc)
    yc = y[:len(Xc)]
    np.testing.assert_array_equal(discrete_mutual_info(Xc, yc), mutual_info_classif(Xc, yc, discrete_features=True))


def test_mis_matrix_equals_one_sklearn_call_per_class_with_the_official_sampling():
    rng = np.random.default_rng(11)
    lab = rng.integers(0, 12, 300)
    lab[:5] = metrics.MISSING_LABEL
    codes = np.where(rng.random((300, 40)) > 0.5, 1, -1)
    codes[:, 3] = np.where(lab == 4, 1, -1)
    fast = metrics.mutual_information_matrix(codes, lab, 30, seed=5)
    sample_rng = np.random.default_rng(5)
    ref = []
    for c in range(12):
        idx, y = metrics.mis_samples(lab, c, 30, sample_rng)
        ref.append(mutual_info_classif(codes[idx].astype(np.float32), y, random_state=5))
    np.testing.assert_array_equal(fast, np.asarray(ref))
    assert fast[4].argmax() == 3


def test_mis_rejects_a_sample_size_below_two():
    with pytest.raises(ValueError, match="max_num must be at least 2"):
        metrics.mutual_information_matrix(np.ones((4, 2)), [0, 0, 1, 1], 0)
