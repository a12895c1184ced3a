"""Builds bitlens's optional C kernels (OpenMP); metadata lives in pyproject.toml.

One Extension per C file under lib/bitlens/native/. Flags stay portable to any x86-64: faster
instruction sets (popcnt, AVX2) are chosen at run time inside the C code, never by -march.
"""
import sys

from setuptools import Extension, setup

# -ffp-contract=off: no float a*b + c fused into an FMA, so every run-time kernel gives the same bits
CFLAGS = ["-O3", "-fopenmp", "-std=c11", "-fno-strict-aliasing", "-ffp-contract=off"]
LDFLAGS = ["-fopenmp"]
if sys.platform == "darwin":  # Apple clang has no -fopenmp without libomp; build single-threaded there
    CFLAGS, LDFLAGS = ["-O3", "-std=c11", "-ffp-contract=off"], []


def native(name: str) -> Extension:
    # optional: without a C compiler the install still succeeds and bitlens uses its numpy/faiss fallbacks
    return Extension(f"bitlens.native.{name}", [f"lib/bitlens/native/{name}.c"],
                     depends=["lib/bitlens/native/buffers.h", "lib/bitlens/native/kernels.h"], extra_compile_args=CFLAGS, extra_link_args=LDFLAGS,
                     optional=True)


ext_modules = [
    native("_search"),
    native("_map"),
    native("_mask"),
]

setup(ext_modules=ext_modules)
