"""Compiled kernels (the metrics half; the search half adds its own Extension to this list)."""
import sys

from setuptools import Extension, setup

openmp = [] if sys.platform == "darwin" else ["-fopenmp"]
ext_modules = [
    Extension("bitlens.native._map", ["lib/bitlens/native/_map.c"],
              extra_compile_args=["-O3", "-std=c99", *openmp], extra_link_args=openmp),
]

setup(ext_modules=ext_modules)
