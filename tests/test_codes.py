import numpy as np
import pytest

from bitlens import codes


@pytest.mark.parametrize("m", [1, 63, 64, 65, 256, 1024])
@pytest.mark.parametrize("suffix", [".npz", ".mat", ".npy"])
def test_codes_survive_pack_file_unpack(tmp_path, m, suffix):
    rng = np.random.default_rng(m)
    c = codes.binarize(rng.standard_normal((7, m)))
    packed = codes.pack(c)
    assert packed.shape == (7, (m + 7) // 8)
    lab = rng.integers(0, 5, (7, 3))
    codes.save_codes(tmp_path / f"c{suffix}", codes.unpack(packed, m), lab, GRM=rng.random((5, m)))
    back = codes.load_codes(tmp_path / f"c{suffix}")
    np.testing.assert_array_equal(back["binary_codes"], c)
    assert back["code_length"] == m
    if suffix != ".npy":
        np.testing.assert_array_equal(back["lab"], lab)
        assert back["GRM"].shape == (5, m)


def test_binarize_conventions():
    np.testing.assert_array_equal(codes.binarize([[-0.1, 0.0, 2.0]]), [[-1, 1, 1]])
    np.testing.assert_array_equal(codes.binarize_sigmoid([[0.49, 0.5, 0.9]]), [[-1, 1, 1]])
    with pytest.raises(ValueError, match="NaN"):
        codes.binarize([[np.nan]])
    with pytest.raises(ValueError, match="±1 or 0/1"):
        codes.pack(np.array([[0.3, 1.0]]))


def test_recurrent_code_planes_values_and_norms_from_bits():
    rng = np.random.default_rng(0)
    d0 = codes.binarize(rng.standard_normal((20, 33)))
    d1 = codes.binarize(rng.standard_normal((20, 33)))
    vals = d0 + 0.5 * d1
    rc = codes.RecurrentCode.from_values(vals, (1.0, 0.5))
    np.testing.assert_array_equal(rc.values(), vals)
    np.testing.assert_allclose(rc.norms(), np.linalg.norm(vals, axis=1))
    # the PAPERS.md identity for u = 1: ‖b‖² = 2.25·m − 2·popcount(c0 ⊕ c1)
    h = (d0 != d1).sum(1)
    np.testing.assert_allclose(rc.squared_norms(), 2.25 * 33 - 2 * h)
    assert rc.bits == 66 and rc.bytes_per_item == 10
    with pytest.raises(ValueError, match="not sums of"):
        codes.RecurrentCode.from_values(np.array([[0.7, 1.5]]), (1.0, 0.5))


def test_corrupt_and_mismatched_code_files_name_file_and_field(tmp_path):
    p = tmp_path / "bad.npz"
    np.savez(p, codes=np.ones((3, 4)))
    with pytest.raises(ValueError, match=r"bad.npz: missing field 'binary_codes'"):
        codes.load_codes(p)
    np.savez(p, binary_codes=np.ones((3, 4)), lab=np.ones((2, 1)))
    with pytest.raises(ValueError, match=r"bad.npz: field 'lab' has 2 rows but 'binary_codes' has 3"):
        codes.load_codes(p)
    np.savez(p, binary_codes=np.full((3, 4), np.nan))
    with pytest.raises(ValueError, match="NaN"):
        codes.load_codes(p)
    np.savez(p, binary_codes=np.ones((3, 4)), code_length=8)
    with pytest.raises(ValueError, match="'code_length' = 8"):
        codes.load_codes(p)
    (tmp_path / "trunc.npz").write_bytes(b"PK\x03\x04garbage")
    with pytest.raises(ValueError, match="trunc.npz: cannot read code file"):
        codes.load_codes(tmp_path / "trunc.npz")
    with pytest.raises(FileNotFoundError, match="nope.mat"):
        codes.load_codes(tmp_path / "nope.mat")


def test_failed_write_keeps_the_old_file(tmp_path, monkeypatch):
    p = tmp_path / "c.npz"
    codes.save_codes(p, np.ones((2, 8)), np.zeros(2))
    before = p.read_bytes()

    def boom(*a, **k):
        raise RuntimeError("disk full")

    monkeypatch.setattr(np, "savez", boom)
    with pytest.raises(RuntimeError):
        codes.save_codes(p, -np.ones((2, 8)), np.zeros(2))
    assert p.read_bytes() == before and len(list(tmp_path.iterdir())) == 1


@pytest.mark.parametrize("weights,m", [((1.0,), 13), ((1.0, 0.5), 64), ((1.0, 0.5, 0.25), 7)])
def test_packed_code_files_give_back_the_same_values_and_norms(tmp_path, weights, m):
    rng = np.random.default_rng(3)
    values = sum(w * np.where(rng.random((9, m)) < 0.5, -1.0, 1.0) for w in weights)
    code = codes.RecurrentCode.from_values(values, weights)
    back = codes.load_packed(codes.save_packed(tmp_path / "c.npz", code))
    assert back.weights == code.weights and back.m == m
    np.testing.assert_array_equal(back.planes, code.planes)
    np.testing.assert_array_equal(back.values(), values.astype(np.float32))
    np.testing.assert_array_equal(back.squared_norms(), code.squared_norms())


def test_bad_packed_code_files_name_the_file_and_the_fix(tmp_path):
    code = codes.RecurrentCode.from_values(np.ones((2, 8)), (1.0,))
    with pytest.raises(ValueError, match=r"x\.npy: packed codes are written as \.npz"):
        codes.save_packed(tmp_path / "x.npy", code)
    with pytest.raises(FileNotFoundError, match="none.npz"):
        codes.load_packed(tmp_path / "none.npz")
    np.savez(tmp_path / "nodims.npz", planes=code.planes, weights=np.ones(1))
    with pytest.raises(ValueError, match="nodims.npz: missing field.*dims"):
        codes.load_packed(tmp_path / "nodims.npz")
    np.savez(tmp_path / "wrong.npz", planes=code.planes, weights=np.ones(2), dims=np.int64(8))
    with pytest.raises(ValueError, match="wrong.npz: RecurrentCode: planes"):
        codes.load_packed(tmp_path / "wrong.npz")
    (tmp_path / "cut.npz").write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(ValueError, match="cut.npz: cannot read packed codes"):
        codes.load_packed(tmp_path / "cut.npz")
