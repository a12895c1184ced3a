"""The AVX-512 search kernel's logic on any x86-64 CPU: the kernel source is rebuilt with its `_mm512_*`
intrinsics replaced by the scalar stand-ins of tests/native_emu/emu512.h, forced to the 'avx512' kernel, and
compared with numpy like the real kernels in test_search.py. On a CPU with AVX-512 VPOPCNTDQ test_search.py
runs the real instructions as well; this test keeps the blocking, masks and cross-query sums covered where CI
has none. Slow: it compiles."""
import importlib.util
import platform
import shutil
import subprocess
import sysconfig
from pathlib import Path

import numpy as np
import pytest

from bitlens import codes, search

ROOT = Path(__file__).resolve().parents[1]
SOURCE = ROOT / "lib" / "bitlens" / "native" / "_search.c"
EMU = Path(__file__).resolve().parent / "native_emu"

pytestmark = pytest.mark.slow

REPLACE = [  # (text in _search.c, replacement): each must be found, so a changed kernel cannot pass unemulated
    ("_mm512_", "emu512_"),
    ("__m512i", "emu512i"),
    ('#define AVX512_TARGET "avx512f,avx512vpopcntdq,popcnt"', '#define AVX512_TARGET "popcnt"'),
    ('__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vpopcntdq")', "1"),
    ("#include <immintrin.h>", '#include <immintrin.h>\n#include "emu512.h"'),
]


@pytest.fixture(scope="module")
def emulated(tmp_path_factory):
    if platform.machine() not in ("x86_64", "AMD64"):
        pytest.skip(f"the emulation builds the x86 kernel; this machine is {platform.machine()}")
    cc = (sysconfig.get_config_var("CC") or "cc").split()[0]
    if shutil.which(cc) is None:
        pytest.skip(f"no C compiler ({cc}) to build the emulated kernel")
    src = SOURCE.read_text()
    for old, new in REPLACE:
        assert old in src, f"{SOURCE.name} no longer contains {old!r}: update {Path(__file__).name}"
        src = src.replace(old, new)
    out = tmp_path_factory.mktemp("emu512")
    (out / "_search.c").write_text(src)
    so = out / ("_search" + sysconfig.get_config_var("EXT_SUFFIX"))
    cmd = [cc, "-shared", "-fPIC", "-O2", "-fopenmp", "-std=c11", "-fno-strict-aliasing", f"-I{EMU}",
           f"-I{SOURCE.parent}", f"-I{sysconfig.get_paths()['include']}", str(out / "_search.c"), "-o", str(so)]
    res = subprocess.run(cmd, capture_output=True, text=True)
    assert res.returncode == 0, f"building the emulated kernel failed:\n{' '.join(cmd)}\n{res.stderr}"
    spec = importlib.util.spec_from_file_location("_search", so)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    if "avx512" not in mod.kernels():
        pytest.skip(f"the emulated kernel needs popcnt and AVX2 underneath; this CPU runs {mod.kernels()}")
    mod.set_kernel("avx512")
    assert mod.kernel() == "avx512"
    return mod


@pytest.fixture
def use(emulated, monkeypatch):
    monkeypatch.setattr(search.kernel, "module", lambda: emulated)
    return emulated


def _tied(n, m, seed):
    rng = np.random.default_rng(seed)
    return codes.binarize(rng.standard_normal((6, m)))[rng.integers(0, 6, n)]


def _recurrent(n, m, weights, seed, distinct=5):
    rng = np.random.default_rng(seed)
    base = sum(w * codes.binarize(rng.standard_normal((distinct, m))) for w in weights)
    return codes.RecurrentCode.from_values(base[rng.integers(0, distinct, n)], weights)


@pytest.mark.parametrize("m", [1, 63, 130, 1024, 1031, 2048])
@pytest.mark.parametrize("nq", [3, 20, 40])
def test_emulated_avx512_hamming_equals_numpy(use, m, nq):
    q, db = codes.pack(_tied(nq, m, 3)), codes.pack(_tied(700, m, 4))
    for k, chunk in ((1, None), (10, None), (10, 64), (900, None)):
        ref = search.hamming_topk(q, db, k, backend="numpy", chunk_size=chunk)
        got = search.hamming_topk(q, db, k, backend="native", chunk_size=chunk)
        np.testing.assert_array_equal(got[0], ref[0])
        np.testing.assert_array_equal(got[1], ref[1])
    assert search.xor_popcount_floor(q, db) == int(search.hamming_distances(q, db, "numpy").sum(dtype=np.int64))


@pytest.mark.parametrize("m,weights", [(37, (1.0, 0.5)), (512, (1.0, 0.5)), (64, (1.0, 0.5, 0.25)), (65, (1.5,)),
                                       (509, (1.0, 0.75))])
@pytest.mark.parametrize("metric", ["ip", "cosine"])
def test_emulated_avx512_sdc_equals_numpy(use, m, weights, metric):
    q, db = _recurrent(20, m, weights, 5), _recurrent(2500, m, weights, 6, distinct=40)
    for k, chunk in ((5, None), (5, 700), (2600, None)):
        ref = search.sdc_topk(q, db, k, metric=metric, backend="numpy", chunk_size=chunk)
        got = search.sdc_topk(q, db, k, metric=metric, backend="native", chunk_size=chunk)
        np.testing.assert_array_equal(got[1], ref[1])
        np.testing.assert_array_equal(got[0], ref[0])
