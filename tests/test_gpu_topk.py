"""The Triton fused top-k, run on CPU through Triton's interpreter (in a child process: the interpreter is chosen
when triton is imported). It must return exactly what the numpy backend returns, ties included."""
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytest.importorskip("triton")
pytest.importorskip("torch")

CHILD = textwrap.dedent('''
    import numpy as np, torch
    from bitlens import codes, search, gpu_topk
    gpu_topk.BQ, gpu_topk.BN, gpu_topk.BK = 16, 16, 32  # small tiles: the interpreter runs every program in Python
    cpu = torch.device("cpu")
    rng = np.random.default_rng(0)

    def tied(n, m, seed):
        r = np.random.default_rng(seed)
        base = codes.binarize(r.standard_normal((5, m)))
        return base[r.integers(0, 5, n)]

    for m, k, chunk in ((70, 10, 23), (33, 40, 64)):  # k=40 > tile: the GEMM + torch.topk path
        q, db = codes.pack(tied(5, m, 1)), codes.pack(tied(40, m, 2))
        ref = search.hamming_topk(q, db, k, backend="numpy")
        got = search.cuda.hamming_topk(q, db, min(k, 40), chunk, dev=cpu)
        assert got[0].dtype == np.int32
        np.testing.assert_array_equal(got[0], ref[0])
        np.testing.assert_array_equal(got[1], ref[1])
        # the resident variant
        if k > gpu_topk.BN:
            continue
        d2, i2 = search.cuda.resident_hamming_topk(q, search.cuda.gpu_unpack_pm1(db, cpu), min(k, 40))
        np.testing.assert_array_equal(i2.numpy(), ref[1])
        np.testing.assert_array_equal(d2.numpy(), ref[0])

    def rec(n, m, seed):
        r = np.random.default_rng(seed)
        base = codes.binarize(r.standard_normal((4, m))) + 0.5 * codes.binarize(r.standard_normal((4, m)))
        return codes.RecurrentCode.from_values(base[r.integers(0, 4, n)])

    for m, k, chunk in ((37, 7, 25),):
        qc, dc = rec(5, m, 3), rec(40, m, 4)
        ref = search.sdc_topk(qc, dc, k, backend="numpy")
        got = search.cuda.sdc_topk(qc, dc, k, "ip", chunk, dev=cpu)
        np.testing.assert_array_equal(got[1], ref[1])
        np.testing.assert_array_equal(got[0], ref[0])
    assert not search.cuda.FUSED_BROKEN, search.cuda.FUSED_BROKEN
    print("FUSED-OK")
''')


@pytest.mark.slow
def test_fused_triton_topk_equals_numpy_under_the_interpreter():
    root = Path(__file__).parents[1]
    env = dict(os.environ, TRITON_INTERPRET="1", PYTHONPATH=str(root / "lib"), OMP_NUM_THREADS="1")
    r = subprocess.run([sys.executable, "-c", CHILD], env=env, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-4000:]
    assert "FUSED-OK" in r.stdout
