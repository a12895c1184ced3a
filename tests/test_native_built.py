"""`make test` sets BITLENS_REQUIRE_NATIVE=1: the compiled kernels must then have been built by the install.

The extensions are optional in setup.py (a machine without a C compiler still installs bitlens and uses the
numpy/faiss fallbacks), so without this check a broken build would silently turn every native-vs-fallback
equality test into a skip.
"""
import importlib
import os

import pytest

pytestmark = pytest.mark.skipif(os.environ.get("BITLENS_REQUIRE_NATIVE") != "1",
                                reason="set BITLENS_REQUIRE_NATIVE=1 to require the compiled kernels")


@pytest.mark.parametrize("module", ["_search", "_map", "_mask"])
def test_compiled_kernel_was_built(module):
    mod = importlib.import_module(f"bitlens.native.{module}")
    assert mod.__file__.endswith((".so", ".pyd")), mod.__file__
