"""Compiled kernels (built by `pip install -e .` / `make setup`); every caller keeps a pure-Python fallback."""
