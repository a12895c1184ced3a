"""Mutual information between features and a discrete target, equal to scikit-learn's `mutual_info_classif`.

The IBC paper's MIS uses `mutual_info_classif(X, y)` with its defaults: features
treated as continuous, the Kraskov/Ross kNN estimator with 3 neighbours, X scaled
by each column's standard deviation plus noise of 1e-10 × max(1, mean |x|) drawn
from `random_state`. scikit-learn runs one neighbour search per feature; here every
feature is handled at once, because in one dimension neighbours are found by
sorting. The arithmetic is the same operation for operation, so the values are
identical (tests compare with scikit-learn bit for bit):

- a label group with at most 2k+1 members (k = min(3, size − 1)) is searched by
  scikit-learn's brute-force path, whose squared distance is ‖x‖² − 2·x·y + ‖y‖²
  (catastrophic cancellation included), clipped at 0, then square-rooted;
- larger groups go through a KD-tree, whose distance is sqrt((x − y)²);
- the radius is the k-th neighbour's distance moved one float towards 0, and the
  count m is the number of samples (all labels) within it, itself included;
- MI = ψ(n) + ⟨ψ(k)⟩ − ⟨ψ(n_label)⟩ − ⟨ψ(m)⟩, clipped at 0, means in sample order.

`discrete_mutual_info` is the exact plug-in MI of discrete features (scikit-learn's
`mutual_info_classif(..., discrete_features=True)`), vectorised the same way.
"""
from __future__ import annotations

import numpy as np


def _prepare(X, random_state) -> np.ndarray:
    """scikit-learn's preprocessing of continuous features: scale without centring, then tiny seeded noise."""
    from sklearn.preprocessing import scale
    from sklearn.utils import check_random_state

    X = np.asarray(X)
    if X.ndim != 2:
        raise ValueError(f"features must be 2-D (samples × features), got shape {X.shape}")
    rng = check_random_state(random_state)
    X = X.astype(np.float64, copy=True)
    # the same statements as scikit-learn, mask included: X[:, mask] is a copy whose memory layout decides the
    # summation order of the column statistics, hence their last bits
    cont = np.ones(X.shape[1], dtype=bool)
    X[:, cont] = scale(X[:, cont], with_mean=False, copy=False)
    means = np.maximum(1, np.mean(np.abs(X[:, cont]), axis=0))
    X[:, cont] += 1e-10 * means * rng.standard_normal(size=(X.shape[0], np.sum(cont)))
    return X


def _brute_radius(V: np.ndarray, k: int) -> np.ndarray:
    """k-th neighbour distance (self excluded) per sample and feature, as the brute-force kNN computes it."""
    sq = V * V
    middle = -2 * (V[:, None, :] * V[None, :, :])
    d = np.sqrt(np.maximum(0.0, (sq[:, None, :] + middle) + sq[None, :, :]))
    g = V.shape[0]
    d[np.arange(g), np.arange(g)] = np.inf
    return np.sort(d, axis=1)[:, k - 1]


def _tree_radius(V: np.ndarray, k: int) -> np.ndarray:
    """k-th neighbour distance (self excluded) per sample and feature. In 1-D the k nearest lie within k places
    on either side in sorted order; the k-th smallest of two ascending lists a, b is min_i max(a_i, b_(k-i))."""
    g, F = V.shape
    Vt = np.ascontiguousarray(V.T)
    order = np.argsort(Vt, axis=1, kind="stable")
    S = np.take_along_axis(Vt, order, axis=1)
    left = np.full((k + 1, F, g), np.inf)
    right = np.full((k + 1, F, g), np.inf)
    left[0] = right[0] = -np.inf
    for t in range(1, k + 1):
        diff = S[:, :-t] - S[:, t:]
        d = np.sqrt(diff * diff)  # the KD-tree's distance
        left[t][:, t:] = d
        right[t][:, :-t] = d
    kth = np.min([np.maximum(left[i], right[k - i]) for i in range(k + 1)], axis=0)
    out = np.empty_like(Vt)
    np.put_along_axis(out, order, kth, axis=1)
    return out.T


def _count_within(C: np.ndarray, radius: np.ndarray) -> np.ndarray:
    """Per sample and feature, how many samples lie within `radius` (itself included), with the KD-tree's test
    fl(c − s)² ≤ r². That set is a contiguous run of the sorted column: a merge of the thresholds c ± r into the
    sorted column finds its ends, then a few exact steps move them past any value that rounding misplaced."""
    n, F = C.shape
    Ct, R2 = np.ascontiguousarray(C.T), np.ascontiguousarray((radius * radius).T)
    St = np.sort(Ct, axis=1)
    rt = radius.T
    # searchsorted(left) for every row at once: thresholds first, so equal column values sort after them
    keys = np.concatenate([Ct - rt, Ct + rt, St], axis=1)
    order = np.argsort(keys, axis=1, kind="stable")
    is_threshold = order < 2 * n
    before = np.cumsum(~is_threshold, axis=1)  # column values at or before each sorted place
    rows, places = np.nonzero(is_threshold)
    ends = np.empty((F, 2 * n), np.int64)
    ends[rows, order[rows, places]] = before[rows, places]
    lo, hi = ends[:, :n], ends[:, n:]
    flat, base = St.ravel(), np.arange(F)[:, None] * n

    def inside(p):
        d = Ct - flat[base + np.clip(p, 0, n - 1)]
        return (d * d <= R2) & (p >= 0) & (p < n)

    # the start lies at or before the sample's own place and the end at or after the run's first place; each step
    # moves an end one place towards the run's boundary
    while True:
        step_lo = np.where(inside(lo - 1), 1, np.where(inside(lo), 0, -1))
        step_hi = np.where(inside(hi), 1, np.where(inside(hi - 1), 0, -1))
        if not (step_lo.any() or step_hi.any()):
            return (hi - lo).T
        lo -= step_lo
        hi += step_hi


def knn_mutual_info(X, y, n_neighbors: int = 3, random_state=None) -> np.ndarray:
    """Equal to `sklearn.feature_selection.mutual_info_classif(X, y, n_neighbors=..., random_state=...)` for
    dense X (all features continuous, the default), one MI value (nats) per column."""
    from scipy.special import digamma

    X = _prepare(X, random_state)
    y = np.asarray(y).ravel()
    if y.shape[0] != X.shape[0]:
        raise ValueError(f"y has {y.shape[0]} samples but X has {X.shape[0]}")
    if n_neighbors < 1:
        raise ValueError(f"n_neighbors must be ≥ 1, got {n_neighbors}")
    n, F = X.shape
    radius = np.empty((n, F))
    label_counts = np.empty(n)
    k_all = np.empty(n)
    for label in np.unique(y):
        mask = y == label
        count = int(mask.sum())
        if count > 1:
            k = min(n_neighbors, count - 1)
            V = X[mask]
            # scikit-learn's NearestNeighbors picks brute force when k ≥ n // 2, a KD-tree otherwise
            r = _brute_radius(V, k) if k >= count // 2 else _tree_radius(V, k)
            radius[mask] = np.nextafter(r, 0)
            k_all[mask] = k
        label_counts[mask] = count
    keep = label_counts > 1
    n_samples = np.sum(keep)
    if n_samples == 0:
        raise ValueError("every label occurs once: the kNN estimator needs a label with at least two samples")
    m_all = _count_within(X[keep], radius[keep])
    base = digamma(n_samples) + np.mean(digamma(k_all[keep])) - np.mean(digamma(label_counts[keep]))
    # row means of a contiguous (features × samples) array: the same summation as a 1-D mean per feature
    mean_m = np.mean(digamma(np.ascontiguousarray(m_all.T.astype(np.float64))), axis=1)
    return np.maximum(0, base - mean_m)


def discrete_mutual_info(X, y) -> np.ndarray:
    """Equal to `mutual_info_classif(X, y, discrete_features=True)`: exact plug-in MI (nats) per column, as
    scikit-learn's `mutual_info_score` on each column's contingency table."""
    X = np.asarray(X)
    y = np.asarray(y).ravel()
    if X.ndim != 2 or X.shape[0] != y.shape[0]:
        raise ValueError(f"X must be (samples × features) with {y.shape[0]} rows, got shape {X.shape}")
    n, F = X.shape
    _, yi = np.unique(y, return_inverse=True)
    ny = int(yi.max()) + 1 if n else 0
    out = np.zeros(F)
    if n == 0 or ny == 1:
        return out
    lo, hi = X.min(0), X.max(0)
    two = (lo != hi) & np.all((X == lo) | (X == hi), axis=0)
    if ny * 2 < 8 and two.any():
        # two-valued columns (binary codes), all at once: (columns × 2 × labels) tables. Fewer than 8 cells keep
        # numpy's sum a plain left-to-right loop, where the empty cells' 0.0 terms change nothing.
        onehot = np.eye(ny, dtype=np.int64)[yi]
        upper = (X[:, two] == hi[two]).astype(np.int64).T @ onehot
        table = np.stack([np.bincount(yi, minlength=ny)[None, :] - upper, upper], axis=1)
        out[two] = _plugin_mi(table)
    for f in np.flatnonzero(~two & (lo != hi)):
        _, xi = np.unique(X[:, f], return_inverse=True)
        nx = int(xi.max()) + 1
        table = np.bincount(xi * ny + yi, minlength=nx * ny).reshape(nx, ny)
        out[f] = _plugin_mi_one(table)
    return out


def _plugin_mi_one(table: np.ndarray) -> float:
    """scikit-learn's `mutual_info_score` of one count table, over its non-zero cells in row-major order."""
    from math import log

    nzx, nzy = np.nonzero(table)
    nz = table[nzx, nzy]
    total = table.sum()
    pi, pj = table.sum(1), table.sum(0)
    outer = pi.take(nzx).astype(np.int64) * pj.take(nzy).astype(np.int64)
    log_outer = -np.log(outer) + log(pi.sum()) + log(pj.sum())
    nm = nz / total
    mi = nm * (np.log(nz) - log(total)) + nm * log_outer
    mi = np.where(np.abs(mi) < np.finfo(mi.dtype).eps, 0.0, mi)
    return float(np.clip(mi.sum(), 0.0, None))


def _plugin_mi(tables: np.ndarray) -> np.ndarray:
    """scikit-learn's `mutual_info_score` of each (values × labels) count table, cells in row-major order."""
    from math import log

    total = int(tables[0].sum())
    pi, pj = tables.sum(2), tables.sum(1)
    nz = tables > 0
    outer = (pi[:, :, None] * pj[:, None, :]).astype(np.int64)
    with np.errstate(divide="ignore", invalid="ignore"):
        log_outer = -np.log(np.where(nz, outer, 1)) + log(total) + log(total)
        nm = tables / total
        mi = nm * (np.log(np.where(nz, tables, 1)) - log(total)) + nm * log_outer
    mi = np.where(nz & (np.abs(mi) >= np.finfo(np.float64).eps), mi, 0.0)
    return np.clip(mi.reshape(len(tables), -1).sum(1), 0.0, None)
