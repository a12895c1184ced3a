"""Binary codes anyone gets for free from the same CLIP features: the baselines of the BEBR table.

- LSH: sign of random Gaussian projections of the L2-normalised features (random hyperplanes; Charikar's
  SimHash for the angle, so no centring). Any number of bits.
- sign-PCA: sign of the top principal components of the L2-normalised, training-mean-centred features.
- ITQ (Gong & Lazebnik, "Iterative quantization", CVPR 2011 / TPAMI 2013): PCA to `bits` dimensions, then an
  orthogonal rotation R that minimises the quantisation loss ‖B − VR‖²_F by alternating minimisation
  (B = sign(VR); R from the SVD of VᵀB — the orthogonal Procrustes solution), 50 iterations from a seeded
  random orthogonal matrix.

PCA keeps at most as many directions as the features have dimensions, so sign-PCA and ITQ exist only for
bits ≤ dim; above it (the tiny and paper heads store 2 × dim bits) they are reported at dim bits, their maximum,
and only LSH runs at the head's bit count (`baseline_bit_counts`). Every hasher is fit on the training features
only (image and caption features of the training pairs together: one projection for both modalities, as the
heads are shared) and then applied unchanged to the evaluation features.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bitlens.metrics import l2_normalize

METHODS = ("LSH", "sign-PCA", "ITQ")
ITQ_ITERATIONS = 50


@dataclass(frozen=True)
class LinearHasher:
    """codes(x) = sign((normalise(x) − mean) @ W), ±1 int8 (a zero projection maps to +1)."""
    method: str
    mean: np.ndarray      # (dim,)
    W: np.ndarray         # (dim, bits)

    @property
    def bits(self) -> int:
        return int(self.W.shape[1])

    def codes(self, x) -> np.ndarray:
        x = np.asarray(x)
        if x.ndim != 2 or x.shape[1] != self.W.shape[0]:
            raise ValueError(f"{self.method}: features must be (items × {self.W.shape[0]}), got shape {x.shape}")
        z = (l2_normalize(x) - self.mean) @ self.W
        return np.where(z >= 0, 1, -1).astype(np.int8)


def _check_train(x, bits: int, method: str) -> np.ndarray:
    x = np.asarray(x)
    if x.ndim != 2 or x.shape[0] < 2:
        raise ValueError(f"{method}: training features must be 2-D with at least 2 rows, got shape {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError(f"{method}: training features contain NaN or infinite values")
    if bits < 1:
        raise ValueError(f"{method}: bits must be at least 1, got {bits}")
    if method != "LSH" and bits > x.shape[1]:
        raise ValueError(f"{method} needs bits ≤ the feature dimension ({x.shape[1]}): PCA has no more directions; "
                         f"got {bits} (use LSH, or fewer bits)")
    return l2_normalize(x)


def fit_lsh(train, bits: int, seed: int = 0) -> LinearHasher:
    x = _check_train(train, bits, "LSH")
    W = np.random.default_rng(seed).standard_normal((x.shape[1], bits))
    return LinearHasher("LSH", np.zeros(x.shape[1]), W)


def _pca(x: np.ndarray, bits: int) -> tuple[np.ndarray, np.ndarray]:
    mean = x.mean(0)
    # eigenvectors of the covariance, largest first; the sign of each is fixed (largest |entry| positive) so the
    # codes do not depend on the LAPACK build
    vals, vecs = np.linalg.eigh(np.cov(x - mean, rowvar=False))
    P = vecs[:, np.argsort(-vals, kind="stable")[:bits]]
    P = P * np.where(P[np.abs(P).argmax(0), np.arange(bits)] < 0, -1.0, 1.0)
    return mean, P


def fit_pca(train, bits: int) -> LinearHasher:
    x = _check_train(train, bits, "sign-PCA")
    mean, P = _pca(x, bits)
    return LinearHasher("sign-PCA", mean, P)


def quantization_loss(V: np.ndarray, R: np.ndarray) -> float:
    """ITQ's objective ‖sign(VR) − VR‖²_F."""
    Z = V @ R
    return float(((np.where(Z >= 0, 1.0, -1.0) - Z) ** 2).sum())


def itq_rotation(V: np.ndarray, iterations: int = ITQ_ITERATIONS, seed: int = 0) -> tuple[np.ndarray, list[float]]:
    """The ITQ rotation of PCA-projected data V (n × bits) and the quantisation loss before each iteration and
    after the last."""
    bits = V.shape[1]
    R, _ = np.linalg.qr(np.random.default_rng(seed).standard_normal((bits, bits)))
    losses = [quantization_loss(V, R)]
    for _ in range(iterations):
        B = np.where(V @ R >= 0, 1.0, -1.0)
        # min over orthogonal R of ‖B − VR‖ = max tr(Rᵀ VᵀB): R = U Wᵀ from VᵀB = U Σ Wᵀ
        # (orthogonal Procrustes)
        U, _, Wt = np.linalg.svd(V.T @ B)
        R = U @ Wt
        losses.append(quantization_loss(V, R))
    return R, losses


def fit_itq(train, bits: int, iterations: int = ITQ_ITERATIONS, seed: int = 0) -> LinearHasher:
    x = _check_train(train, bits, "ITQ")
    mean, P = _pca(x, bits)
    R, _ = itq_rotation((x - mean) @ P, iterations, seed)
    return LinearHasher("ITQ", mean, P @ R)


def fit(method: str, train, bits: int, seed: int = 0) -> LinearHasher:
    if method == "LSH":
        return fit_lsh(train, bits, seed)
    if method == "sign-PCA":
        return fit_pca(train, bits)
    if method == "ITQ":
        return fit_itq(train, bits, seed=seed)
    raise ValueError(f"unknown baseline {method!r}; valid: {', '.join(METHODS)}")


def baseline_bit_counts(head_bits, dim: int) -> dict[str, list[int]]:
    """Per method, the bit counts it runs at: every head's bit count, dim / 4, dim / 2 and dim for the curve;
    PCA-based methods only up to dim (see the module docstring)."""
    counts = sorted({int(b) for b in head_bits} | {b for b in (dim // 4, dim // 2, dim) if b >= 1})
    return {m: [b for b in counts if m == "LSH" or b <= dim] for m in METHODS}


def fit_all(train, head_bits, seed: int = 0) -> dict[tuple[str, int], LinearHasher]:
    """Every baseline hasher, fit on the training features only."""
    dim = np.asarray(train).shape[1]
    return {(m, b): fit(m, train, b, seed) for m, bs in baseline_bit_counts(head_bits, dim).items() for b in bs}


def baseline_rows(train, img, txt, head_bits, seed: int = 0) -> tuple[dict, dict]:
    """BEBR-table rows ({"<method> <bits>b": row}) of every baseline, and the fitted hashers.

    The hashers are fit on `train` alone, then code the evaluation images and captions, which are ranked by
    the same engine as the heads' codes (`bebr.evaluate.table_rows`: packed bits, bitlens.search)."""
    from bitlens.bebr.evaluate import table_rows

    hashers = fit_all(train, head_bits, seed)
    rows = {}
    for (method, bits), h in hashers.items():
        row = table_rows(f"{method} {bits}b", h.codes(img), h.codes(txt), True, 1, bits)
        rows[f"{method} {bits}b"] = {"baseline": method, **row}
    return rows, hashers


def baseline_sentences(heads: dict, base: dict, ties: str, k: str = "r10") -> list[str]:
    """Per binary head: its image→text R@K beside the best run of each baseline at no more bits than the head
    stores (more bits are not always better: sign-PCA's low-variance directions add noise), from the numbers.
    `heads`/`base`: table rows as `bebr.evaluate.table_rows` returns (baselines with their "baseline" method)."""
    def cmp(a, b) -> str:
        return "above" if a > b else "below" if a < b else "equal to"

    out = []
    for name, r in heads.items():
        bits, ours = r["bits"], r["i2t"][ties][k]
        parts = []
        for method in METHODS:
            cands = [b for b in base.values() if b["baseline"] == method and b["bits"] <= bits]
            if not cands:
                continue
            # the best run; among equal recalls the fewest bits
            b = max(cands, key=lambda x: (x["i2t"][ties][k], -x["bits"]))
            v = b["i2t"][ties][k]
            parts.append(f"{cmp(ours, v)} {method}'s best at ≤ {bits} bits ({v:.4f}, {b['bits']} bits)")
        if parts:
            out.append(f"{name} ({bits} bits): image→text R@{k[1:]} {ours:.4f} — " + "; ".join(parts) + ".")
    return out
