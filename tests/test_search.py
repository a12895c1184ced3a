import numpy as np
import pytest

from bitlens import codes, search

NATIVE = pytest.param("native", marks=pytest.mark.skipif(search.kernel.module() is None,
                                                          reason="native kernel not built (make setup)"))
BACKENDS = ["numpy", "faiss", NATIVE]
CPU_BACKENDS = ["numpy", "faiss", "native"] if search.kernel.module() is not None else ["numpy", "faiss"]


def _tied_codes(n, m, seed):
    # few distinct codes → many exact ties in distance
    rng = np.random.default_rng(seed)
    base = codes.binarize(rng.standard_normal((6, m)))
    return base[rng.integers(0, 6, n)]


def _brute_topk(q, db, k):
    d = (q[:, None, :] != db[None, :, :]).sum(-1)
    order = np.lexsort((np.broadcast_to(np.arange(db.shape[0]), d.shape), d), axis=-1)[:, :k]
    return np.take_along_axis(d, order, 1), order


@pytest.mark.parametrize("m", [8, 65, 256])
@pytest.mark.parametrize("chunk", [7, None])
def test_every_backend_returns_identical_results_with_index_tie_break(m, chunk):
    q, db = _tied_codes(9, m, 1), _tied_codes(200, m, 2)
    ref_d, ref_i = _brute_topk(q, db, 10)
    for backend in CPU_BACKENDS:
        d, i = search.hamming_topk(codes.pack(q), codes.pack(db), 10, backend=backend, chunk_size=chunk)
        np.testing.assert_array_equal(d, ref_d, err_msg=backend)
        np.testing.assert_array_equal(i, ref_i, err_msg=backend)


def test_k_larger_than_database_and_bad_inputs():
    q, db = _tied_codes(3, 16, 0), _tied_codes(4, 16, 1)
    d, i = search.hamming_topk(codes.pack(q), codes.pack(db), 10, backend="numpy")
    assert d.shape == (3, 4)
    with pytest.raises(ValueError, match="bytes per item"):
        search.hamming_topk(codes.pack(q), codes.pack(_tied_codes(4, 32, 1)), 2)
    with pytest.raises(ValueError, match="packed uint8"):
        search.hamming_topk(q, codes.pack(db), 2)
    with pytest.raises(ValueError, match="unknown search backend"):
        search.hamming_topk(codes.pack(q), codes.pack(db), 2, backend="gpu")


def _bebr_codes(n, m, seed):
    rng = np.random.default_rng(seed)
    base = codes.binarize(rng.standard_normal((n, m))) + 0.5 * codes.binarize(rng.standard_normal((n, m)))
    return base.astype(np.float32)


@pytest.mark.parametrize("backend", BACKENDS)
def test_sdc_scores_equal_float_dot_products_of_unpacked_codes(backend):
    qv, dv = _bebr_codes(5, 37, 0), _bebr_codes(40, 37, 1)
    q, db = codes.RecurrentCode.from_values(qv), codes.RecurrentCode.from_values(dv)
    np.testing.assert_array_equal(search.sdc_inner_products(q, db, backend), qv.astype(np.float64) @ dv.T)


@pytest.mark.parametrize("backend", BACKENDS)
def test_sdc_cosine_ranks_like_the_official_normalised_evaluation(backend):
    qv, dv = _bebr_codes(6, 16, 3), _bebr_codes(300, 16, 4)
    dv[50] = dv[10]  # exact duplicates tie
    q, db = codes.RecurrentCode.from_values(qv), codes.RecurrentCode.from_values(dv)
    s, i = search.sdc_topk(q, db, 20, metric="cosine", backend=backend, chunk_size=64)
    qn = qv.astype(np.float64) / np.linalg.norm(qv.astype(np.float64), axis=1, keepdims=True)
    dn = dv.astype(np.float64) / np.linalg.norm(dv.astype(np.float64), axis=1, keepdims=True)
    ref = qn @ dn.T
    # exact cosine order (ties by index) from rationals: cos² sign-preserved = ip·|ip| / ‖d‖² with integer 4·ip, 4·‖d‖²
    from fractions import Fraction

    ip4 = np.rint(4 * qv.astype(np.float64) @ dv.T).astype(int)
    n4 = np.rint(4 * (dv.astype(np.float64) ** 2).sum(1)).astype(int)
    order = np.array([sorted(range(300), key=lambda j: (-Fraction(ip4[r, j] * abs(ip4[r, j]), n4[j]), j))[:20]
                      for r in range(6)])
    np.testing.assert_array_equal(i, order)
    np.testing.assert_allclose(s, np.take_along_axis(ref, order, 1), rtol=1e-12)
    # the float evaluation of normalised vectors agrees up to rounding noise within exact ties
    np.testing.assert_allclose(np.sort(np.take_along_axis(ref, i, 1), 1), np.sort(np.take_along_axis(ref, order, 1), 1))


@pytest.mark.parametrize("backend", BACKENDS)
def test_sdc_ip_topk_matches_brute_force(backend):
    qv, dv = _bebr_codes(4, 24, 5), _bebr_codes(100, 24, 6)
    s, i = search.sdc_topk(codes.RecurrentCode.from_values(qv), codes.RecurrentCode.from_values(dv), 7,
                           backend=backend, chunk_size=13)
    ref = qv.astype(np.float64) @ dv.T
    order = np.lexsort((np.broadcast_to(np.arange(100), ref.shape), -ref), axis=-1)[:, :7]
    np.testing.assert_array_equal(i, order)


def test_faiss_index_export_finds_the_same_neighbours():
    q, db = codes.pack(_tied_codes(3, 64, 7)), codes.pack(np.unique(_tied_codes(400, 64, 8) * 0 + codes.binarize(
        np.random.default_rng(9).standard_normal((400, 64))), axis=0))
    index = search.to_faiss_index(db, "flat")
    D, _ = index.search(q, 5)
    d, _ = search.hamming_topk(q, db, 5)
    np.testing.assert_array_equal(D, d)
    ivf = search.to_faiss_index(db, "ivf", nlist=4)
    assert ivf.ntotal == db.shape[0]


@pytest.mark.cuda
def test_cuda_backend_matches_numpy():
    q, db = _tied_codes(20, 256, 1), _tied_codes(3000, 256, 2)
    a = search.hamming_topk(codes.pack(q), codes.pack(db), 10, backend="numpy")
    b = search.hamming_topk(codes.pack(q), codes.pack(db), 10, backend="cuda", chunk_size=1000)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    qv, dv = _bebr_codes(20, 64, 0), _bebr_codes(3000, 64, 1)
    qr, dr = codes.RecurrentCode.from_values(qv), codes.RecurrentCode.from_values(dv)
    for metric in ("ip", "cosine"):
        a = search.sdc_topk(qr, dr, 10, metric=metric, backend="numpy")
        b = search.sdc_topk(qr, dr, 10, metric=metric, backend="cuda", chunk_size=1000)
        np.testing.assert_array_equal(a[1], b[1])


# -- the native kernel: identical to numpy in every shape, kernel variant and work split ----------------------

native_only = pytest.mark.skipif(search.kernel.module() is None, reason="native kernel not built (make setup)")


def _recurrent_tied(n, m, planes, seed):
    # few distinct value rows → many exact ties in inner product and cosine
    rng = np.random.default_rng(seed)
    weights = tuple(0.5 ** i for i in range(planes))
    base = sum(w * codes.binarize(rng.standard_normal((5, m))) for w in weights)
    return codes.RecurrentCode.from_values(base[rng.integers(0, 5, n)], weights)


KERNELS = ["auto", "generic", "popcnt", "avx2", "avx512"]


@pytest.fixture(params=KERNELS)
def kernel(request):
    """Forces each kernel in turn; one this CPU lacks is skipped with its name and what it needs."""
    mod = search.kernel.module()
    if mod is None:
        pytest.skip("native kernel not built (make setup)")
    name = request.param
    if name != "auto" and name not in mod.kernels():
        pytest.skip(f"kernel {name!r} not tested: this CPU lacks {mod.kernel_needs(name)} "
                    f"(it runs {', '.join(mod.kernels())})")
    mod.set_kernel(name)
    assert mod.kernel() == (mod.kernels()[-1] if name == "auto" else name)
    yield name
    mod.set_kernel("auto")


@pytest.mark.parametrize("m", [1, 63, 130, 1024, 2048])
@pytest.mark.parametrize("nq", [3, 40])  # 3 queries: the kernel splits the database across threads instead
def test_native_hamming_equals_numpy_with_ties_in_every_kernel(kernel, m, nq):
    q, db = codes.pack(_tied_codes(nq, m, 3)), codes.pack(_tied_codes(700, m, 4))
    for k, chunk in ((1, None), (10, None), (10, 64), (900, None)):
        ref = search.hamming_topk(q, db, k, backend="numpy", chunk_size=chunk)
        got = search.hamming_topk(q, db, k, backend="native", chunk_size=chunk)
        assert got[0].shape == (nq, min(k, 700))
        np.testing.assert_array_equal(got[0], ref[0])
        np.testing.assert_array_equal(got[1], ref[1])


@pytest.mark.parametrize("m,planes", [(37, 2), (512, 2), (64, 3), (65, 1)])
@pytest.mark.parametrize("metric", ["ip", "cosine"])
def test_native_sdc_equals_numpy_with_ties_in_every_kernel(kernel, m, planes, metric):
    q, db = _recurrent_tied(20, m, planes, 5), _recurrent_tied(400, m, planes, 6)
    for k, chunk in ((5, None), (5, 50), (450, None)):
        ref = search.sdc_topk(q, db, k, metric=metric, backend="numpy", chunk_size=chunk)
        got = search.sdc_topk(q, db, k, metric=metric, backend="native", chunk_size=chunk)
        np.testing.assert_array_equal(got[1], ref[1])
        np.testing.assert_array_equal(got[0], ref[0])


@native_only
def test_native_hamming_on_a_hand_built_case():
    q = codes.pack(np.array([[1, 1, 1, -1, -1]]))
    db = codes.pack(np.array([[1, 1, 1, -1, -1], [-1, 1, 1, -1, -1], [1, 1, 1, -1, -1], [1, -1, -1, 1, 1]]))
    d, i = search.hamming_topk(q, db, 3, backend="native")
    np.testing.assert_array_equal(d, [[0, 0, 1]])
    np.testing.assert_array_equal(i, [[0, 2, 1]])


@pytest.mark.parametrize("backend", ["numpy", "faiss", NATIVE])
def test_empty_database_is_an_error(backend):
    q = codes.pack(_tied_codes(2, 16, 0))
    with pytest.raises(ValueError, match="empty"):
        search.hamming_topk(q, np.zeros((0, 2), np.uint8), 3, backend=backend)
    rq = _recurrent_tied(2, 16, 2, 0)
    with pytest.raises(ValueError, match="empty"):
        search.sdc_topk(rq, rq.subset(slice(0, 0)), 3, backend=backend)


def test_without_the_native_kernel_auto_falls_back_to_identical_results(monkeypatch):
    q, db = codes.pack(_tied_codes(5, 70, 1)), codes.pack(_tied_codes(300, 70, 2))
    rq, rdb = _recurrent_tied(5, 70, 2, 1), _recurrent_tied(300, 70, 2, 2)
    ref_h = search.hamming_topk(q, db, 12, backend="numpy")
    ref_s = search.sdc_topk(rq, rdb, 12, metric="cosine", backend="numpy")
    monkeypatch.setattr(search.kernel, "module", lambda: None)
    assert search.resolve_backend("auto") in ("faiss", "numpy")
    with pytest.raises(ImportError, match="make setup"):
        search.resolve_backend("native")
    got_h = search.hamming_topk(q, db, 12)
    got_s = search.sdc_topk(rq, rdb, 12, metric="cosine")
    np.testing.assert_array_equal(got_h[1], ref_h[1])
    np.testing.assert_array_equal(got_h[0], ref_h[0])
    np.testing.assert_array_equal(got_s[1], ref_s[1])
    np.testing.assert_array_equal(got_s[0], ref_s[0])


@native_only
def test_auto_prefers_the_native_kernel_when_built():
    assert search.resolve_backend("auto") == "native"


@native_only
def test_native_sdc_rejects_weights_it_cannot_hold_exactly():
    rng = np.random.default_rng(0)
    planes = codes.pack(codes.binarize(rng.standard_normal((6, 16))))[None]
    odd = codes.RecurrentCode(planes, (1 / 3,), 16)
    with pytest.raises(ValueError, match="dyadic"):
        search.sdc_topk(odd, odd, 2, backend="native")
    neg = codes.RecurrentCode(np.concatenate([planes, planes]), (1.0, -0.5), 16)
    with pytest.raises(ValueError, match="non-negative"):
        search.sdc_topk(neg, neg, 2, backend="native")
    # numpy holds them: the error names it as the way out
    assert search.sdc_topk(odd, odd, 2, backend="numpy")[1].shape == (6, 2)


@native_only
def test_full_matrices_with_the_native_backend_equal_numpy():
    q, db = codes.pack(_tied_codes(4, 70, 1)), codes.pack(_tied_codes(30, 70, 2))
    np.testing.assert_array_equal(search.hamming_distances(q, db, "native"), search.hamming_distances(q, db, "numpy"))
    rq, rdb = _recurrent_tied(4, 40, 2, 1), _recurrent_tied(30, 40, 2, 2)
    np.testing.assert_array_equal(search.sdc_inner_products(rq, rdb, "native"),
                                  search.sdc_inner_products(rq, rdb, "numpy"))


@pytest.mark.parametrize("weights", [(1.0,), (1.5,), (1.0, 0.5), (1.0, 0.75), (1.0, 0.5, 0.25), (1.0, 0.25, 0.0625)])
@pytest.mark.parametrize("metric", ["ip", "cosine"])
def test_native_sdc_many_blocks_and_spread_norms_equal_numpy(kernel, weights, metric):
    # more rows than one L2 block (2,048 rows of 512 x 2 planes), 40 queries so threads split the queries, norms
    # spread by independent planes: the per-block cosine threshold is recomputed at every block boundary;
    # (1.5,) and (1.0, 0.75) give plane-pair coefficients other than 1 and powers of two (9; 16, 12, 9)
    rng = np.random.default_rng(len(weights))
    m, n = 509, 5000
    base = [sum(w * codes.binarize(rng.standard_normal((7, m))) for w in weights) for _ in range(2)]
    vals = np.concatenate(base)[rng.integers(0, 14, n)]
    db = codes.RecurrentCode.from_values(vals, weights)
    q = codes.RecurrentCode.from_values(vals[rng.integers(0, n, 40)], weights)
    for k in (1, 10, 100):
        ref = search.sdc_topk(q, db, k, metric=metric, backend="numpy")
        got = search.sdc_topk(q, db, k, metric=metric, backend="native")
        np.testing.assert_array_equal(got[1], ref[1])
        np.testing.assert_array_equal(got[0], ref[0])


@pytest.mark.parametrize("planes", [1, 2, 3])
@pytest.mark.parametrize("nq", [1, 3, 40])
def test_native_database_of_one_row_and_k_beyond_it(kernel, planes, nq):
    q, db = _recurrent_tied(nq, 77, planes, 8), _recurrent_tied(1, 77, planes, 9)
    for metric in ("ip", "cosine"):
        ref = search.sdc_topk(q, db, 5, metric=metric, backend="numpy")
        got = search.sdc_topk(q, db, 5, metric=metric, backend="native")
        assert got[1].shape == (nq, 1)
        np.testing.assert_array_equal(got[1], ref[1])
        np.testing.assert_array_equal(got[0], ref[0])
    hq, hdb = codes.pack(_tied_codes(nq, 77, 1)), codes.pack(_tied_codes(1, 77, 2))
    ref = search.hamming_topk(hq, hdb, 3, backend="numpy")
    got = search.hamming_topk(hq, hdb, 3, backend="native")
    np.testing.assert_array_equal(got[0], ref[0])
    np.testing.assert_array_equal(got[1], ref[1])


@pytest.mark.parametrize("m", [1, 63, 1024, 1031, 2048])
@pytest.mark.parametrize("nq", [1, 70])
def test_floor_sums_every_pair_distance(kernel, m, nq):
    q, db = codes.pack(_tied_codes(nq, m, 1)), codes.pack(_tied_codes(333, m, 2))
    ref = int(search.hamming_distances(q, db, backend="numpy").sum(dtype=np.int64))
    assert search.xor_popcount_floor(q, db) == ref
    assert search.xor_popcount_floor(q, db, threads=1) == ref


@native_only
def test_a_kernel_the_cpu_lacks_is_refused_never_replaced():
    mod = search.kernel.module()
    with pytest.raises(ValueError, match="unknown kernel"):
        mod.set_kernel("sse9")
    missing = [k for k in mod.KERNELS if k not in mod.kernels()]
    if not missing:
        pytest.skip(f"this CPU runs every kernel ({', '.join(mod.kernels())}); nothing to refuse")
    with pytest.raises(RuntimeError, match=f"kernel '{missing[0]}' needs .* which this CPU lacks"):
        mod.set_kernel(missing[0])
    assert mod.kernel() == mod.kernels()[-1]  # the refused request changed nothing


@native_only
def test_bitlens_native_0_turns_the_native_search_off(monkeypatch):
    monkeypatch.setenv("BITLENS_NATIVE", "0")
    assert search.kernel.module() is None
    assert search.native_kernel() is None
    assert search.resolve_backend("auto") in ("faiss", "numpy")
    with pytest.raises(ImportError, match="make setup"):
        search.xor_popcount_floor(codes.pack(_tied_codes(2, 16, 0)), codes.pack(_tied_codes(3, 16, 1)))
