"""bitlens — a reproducibility kit for binary codes in image retrieval (BEBR and IBC)."""
__version__ = "0.1.0"
