import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# Tests never reach a hub, never draw widget progress bars, never open windows.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("BITLENS_PROGRESS", "off")
os.environ.setdefault("MPLBACKEND", "Agg")
for var, sub in (("JUPYTER_CONFIG_DIR", "config"), ("JUPYTER_DATA_DIR", "data"), ("JUPYTER_RUNTIME_DIR", "runtime")):
    os.environ.setdefault(var, str(ROOT / ".jupyter" / sub))


def pytest_collection_modifyitems(config, items):
    import pytest

    try:
        import torch

        has_cuda = torch.cuda.is_available()
    except ImportError:  # pragma: no cover
        has_cuda = False
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "cuda" in item.keywords and not has_cuda:
            item.add_marker(skip)
