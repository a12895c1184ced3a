"""Binary codes: binarise, pack into bit planes, recurrent (multi-plane) codes, code files.

Conventions
- A ±1 code is stored as bits with bit 1 ↔ +1. `binarize` maps x ≥ 0 to +1, so an
  exact zero becomes +1 (the official code's `sign` would give 0 there, a value
  no binary code can hold; zeros do not occur for trained float features).
- Packing uses numpy's big-endian bit order within each byte, padded with zero
  bits to whole bytes; padding bits are 0 in every code, so they never add to a
  Hamming distance.
- A recurrent code b = Σ_i w_i d_i (d_i ∈ {±1}^m) is its planes d_i plus weights
  w_i (BEBR with u = 1: weights (1, 0.5), values {±0.5, ±1.5}).
"""
from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bitlens import io


def binarize(x) -> np.ndarray:
    """±1 int8 codes from real values: x ≥ 0 → +1, x < 0 → −1."""
    x = np.asarray(x)
    if x.dtype.kind == "f" and not np.isfinite(x).all():
        raise ValueError("binarize: input has NaN or infinite values")
    return np.where(x >= 0, 1, -1).astype(np.int8)


def binarize_sigmoid(b) -> np.ndarray:
    """IBC's evaluation codes: sign(b − 0.5) of sigmoid outputs (exactly 0.5 → +1)."""
    return binarize(np.asarray(b, dtype=np.float64) - 0.5)


def _as_bits01(codes) -> np.ndarray:
    c = np.asarray(codes)
    if c.ndim != 2:
        raise ValueError(f"codes must be 2-D (items × bits), got shape {c.shape}")
    if c.dtype == bool:
        return c.astype(np.uint8)
    vals = np.unique(c)
    if np.isin(vals, (-1, 1)).all():
        return (c > 0).astype(np.uint8)
    if np.isin(vals, (0, 1)).all():
        return c.astype(np.uint8)
    raise ValueError(f"codes must hold ±1 or 0/1 values, found {vals[:6].tolist()}…; binarize real values first")


def pack(codes) -> np.ndarray:
    """uint8 (N, ceil(m/8)) from ±1 or {0,1} codes (bit 1 ↔ +1)."""
    return np.packbits(_as_bits01(codes), axis=1)


def unpack(packed, m: int) -> np.ndarray:
    """±1 int8 (N, m) from packed codes."""
    packed = np.asarray(packed)
    if packed.dtype != np.uint8 or packed.ndim != 2:
        raise ValueError(f"packed codes must be uint8 (N, nbytes), got {packed.dtype} {packed.shape}")
    if packed.shape[1] * 8 < m or packed.shape[1] != (m + 7) // 8:
        raise ValueError(f"packed codes have {packed.shape[1]} bytes per item, which does not fit {m} bits")
    bits = np.unpackbits(packed, axis=1, count=m)
    return (bits.astype(np.int8) * 2 - 1)


def as_words(packed: np.ndarray) -> np.ndarray:
    """uint64 view (N, ceil(nbytes/8)), zero-padded: popcount-friendly words."""
    packed = np.ascontiguousarray(packed, dtype=np.uint8)
    n, nb = packed.shape
    nw = (nb + 7) // 8
    if nw * 8 != nb:
        padded = np.zeros((n, nw * 8), np.uint8)
        padded[:, :nb] = packed
        packed = padded
    return packed.view(np.uint64)


def popcount(words: np.ndarray) -> np.ndarray:
    return np.bitwise_count(words)


@dataclass
class RecurrentCode:
    """Bit planes (P, N, nbytes) uint8 with per-plane weights; values = Σ_i w_i · unpack(plane_i)."""

    planes: np.ndarray
    weights: tuple[float, ...]
    m: int

    def __post_init__(self):
        self.planes = np.asarray(self.planes, dtype=np.uint8)
        if self.planes.ndim == 2:
            self.planes = self.planes[None]
        if self.planes.ndim != 3 or self.planes.shape[0] != len(self.weights):
            raise ValueError(f"RecurrentCode: planes {self.planes.shape} do not match {len(self.weights)} weights")
        if self.planes.shape[2] != (self.m + 7) // 8:
            raise ValueError(f"RecurrentCode: {self.planes.shape[2]} bytes per item do not fit m={self.m} bits")
        self.weights = tuple(float(w) for w in self.weights)

    def __len__(self) -> int:
        return self.planes.shape[1]

    @property
    def bits(self) -> int:
        """Storage in bits per item (dims × planes)."""
        return self.m * len(self.weights)

    @property
    def bytes_per_item(self) -> int:
        return self.planes.shape[0] * self.planes.shape[2]

    @classmethod
    def from_values(cls, values, weights=(1.0, 0.5)) -> "RecurrentCode":
        """Decompose values Σ_i w_i d_i (e.g. {±0.5, ±1.5}) into planes, greedily from the largest weight.

        Raises if the values are not exactly representable with these weights.
        """
        v = np.asarray(values, dtype=np.float64)
        if v.ndim != 2:
            raise ValueError(f"values must be 2-D (items × dims), got {v.shape}")
        residual = v.copy()
        planes = []
        for w in weights:
            d = np.where(residual >= 0, 1, -1).astype(np.int8)
            residual -= w * d
            planes.append(pack(d))
        if np.abs(residual).max(initial=0) > 1e-6:
            bad = np.unique(v[np.abs(residual) > 1e-6])[:5]
            raise ValueError(f"values {bad.tolist()} are not sums of ±{list(weights)}; is this a recurrent code "
                             f"with these plane weights?")
        return cls(np.stack(planes), tuple(weights), v.shape[1])

    def values(self) -> np.ndarray:
        out = np.zeros((len(self), self.m), np.float32)
        for w, p in zip(self.weights, self.planes):
            out += np.float32(w) * unpack(p, self.m)
        return out

    def subset(self, idx) -> "RecurrentCode":
        return RecurrentCode(self.planes[:, idx], self.weights, self.m)

    def squared_norms(self) -> np.ndarray:
        """‖b‖² from bits alone: Σ_ij w_i w_j (m − 2·popcount(d_i ⊕ d_j)); exact in float64."""
        words = [as_words(p) for p in self.planes]
        out = np.zeros(len(self), np.float64)
        for i, wi in enumerate(self.weights):
            for j, wj in enumerate(self.weights):
                if i == j:
                    out += wi * wj * self.m
                else:
                    h = popcount(words[i] ^ words[j]).sum(1, dtype=np.int64)
                    out += wi * wj * (self.m - 2 * h)
        return out

    def norms(self) -> np.ndarray:
        return np.sqrt(self.squared_norms())


# -- code files ------------------------------------------------------------------

def _check_codes(path, codes, lab, grm) -> None:
    if codes.ndim != 2:
        raise ValueError(f"{path}: field 'binary_codes' must be 2-D (items × bits), got shape {codes.shape}")
    if codes.dtype.kind not in "fiub":
        raise ValueError(f"{path}: field 'binary_codes' has dtype {codes.dtype}; expected numbers")
    if codes.dtype.kind == "f" and not np.isfinite(codes).all():
        raise ValueError(f"{path}: field 'binary_codes' has NaN or infinite values")
    if lab is not None and lab.shape[0] != codes.shape[0]:
        raise ValueError(f"{path}: field 'lab' has {lab.shape[0]} rows but 'binary_codes' has {codes.shape[0]}; "
                         f"they must describe the same items")
    if grm is not None and (grm.ndim != 2 or grm.shape[1] != codes.shape[1]):
        raise ValueError(f"{path}: field 'GRM' has shape {grm.shape}; expected (classes, {codes.shape[1]})")


def save_codes(path, binary_codes, lab=None, code_length: int | None = None, GRM=None) -> Path:
    """Write a code file with the official IBC fields (.npz, .mat) or just the codes (.npy). Atomic."""
    path = Path(path)
    codes = np.asarray(binary_codes)
    lab_a = None if lab is None else np.asarray(lab)
    if lab_a is not None and lab_a.ndim == 1:
        lab_a = lab_a[:, None]
    grm = None if GRM is None else np.asarray(GRM, dtype=np.float32)
    _check_codes(path, codes, lab_a, grm)
    fields = {"binary_codes": codes, "code_length": np.int64(code_length or codes.shape[1])}
    if lab_a is not None:
        fields["lab"] = lab_a
    if grm is not None:
        fields["GRM"] = grm
    suffix = path.suffix.lower()
    if suffix == ".npz":
        return io.save_npz(path, **fields)
    if suffix == ".npy":
        return io.save_npy(path, codes)
    if suffix == ".mat":
        import scipy.io as sio

        with io.atomic_path(path, suffix=".mat") as tmp:
            sio.savemat(tmp, fields, do_compression=False)
        return path
    raise ValueError(f"{path}: unknown code file type {suffix!r}; use .npz, .mat or .npy")


def load_codes(path) -> dict:
    """Read a code file: {'binary_codes' (N,K), 'lab' (N,L) or None, 'code_length', 'GRM' or None}."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: code file not found")
    suffix = path.suffix.lower()
    try:
        if suffix == ".npy":
            raw = {"binary_codes": np.load(path, allow_pickle=False)}
        elif suffix == ".npz":
            with np.load(path, allow_pickle=False) as z:
                raw = {k: z[k] for k in z.files}
        elif suffix == ".mat":
            import scipy.io as sio

            raw = {k: v for k, v in sio.loadmat(path).items() if not k.startswith("__")}
        else:
            raise ValueError(f"{path}: unknown code file type {suffix!r}; use .npz, .mat or .npy")
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, KeyError) as e:
        if "unknown code file type" in str(e):
            raise
        raise ValueError(f"{path}: cannot read code file ({e}); is it truncated or of another format?") from None
    if "binary_codes" not in raw:
        raise ValueError(f"{path}: missing field 'binary_codes' (fields present: {', '.join(sorted(raw)) or 'none'})")
    codes = np.asarray(raw["binary_codes"])
    if codes.ndim == 1:
        codes = codes[:, None]
    lab = raw.get("lab")
    if lab is not None:
        lab = np.asarray(lab)
        if lab.ndim == 1:
            lab = lab[:, None]
    grm = raw.get("GRM")
    grm = None if grm is None else np.asarray(grm, dtype=np.float32)
    _check_codes(path, codes, lab, grm)
    cl = raw.get("code_length")
    code_length = int(np.asarray(cl).ravel()[0]) if cl is not None else codes.shape[1]
    if code_length != codes.shape[1]:
        raise ValueError(f"{path}: field 'code_length' = {code_length} but 'binary_codes' has {codes.shape[1]} columns")
    return {"binary_codes": codes, "lab": lab, "code_length": code_length, "GRM": grm}


# -- packed code files: what stages hand on -------------------------------------------

PACKED_FIELDS = ("planes", "weights", "dims")


def save_packed(path, code: RecurrentCode) -> Path:
    """A recurrent code (a plain binary code is one plane of weight 1) as `.npz`: `planes` (P, N, nbytes) uint8,
    `weights` (P,) float64, `dims` (the bits per plane). Atomic."""
    path = Path(path)
    if path.suffix.lower() != ".npz":
        raise ValueError(f"{path}: packed codes are written as .npz")
    return io.save_npz(path, planes=code.planes, weights=np.asarray(code.weights, dtype=np.float64),
                       dims=np.int64(code.m))


def load_packed(path) -> RecurrentCode:
    """The recurrent code in a `save_packed` file, validated."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: packed code file not found")
    try:
        with np.load(path, allow_pickle=False) as z:
            raw = {k: z[k] for k in z.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
        raise ValueError(f"{path}: cannot read packed codes ({e}); is it truncated? Write it again") from None
    missing = [k for k in PACKED_FIELDS if k not in raw]
    if missing:
        raise ValueError(f"{path}: missing field(s) {', '.join(missing)}; a packed code file holds "
                         f"{', '.join(PACKED_FIELDS)} (bitlens.codes.save_packed)")
    if raw["planes"].dtype != np.uint8:
        raise ValueError(f"{path}: field 'planes' has dtype {raw['planes'].dtype}; expected uint8 packed bits")
    try:
        weights = tuple(np.asarray(raw["weights"], np.float64).ravel().tolist())
        return RecurrentCode(raw["planes"], weights, int(raw["dims"]))
    except ValueError as e:
        raise ValueError(f"{path}: {e}") from None
