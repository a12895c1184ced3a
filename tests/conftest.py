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


def _run_all(results, *extra, timeout=1800):
    import subprocess
    import sys

    return subprocess.run([sys.executable, str(ROOT / "run_all.py"), "--profile", "tiny", "--results", str(results), *extra],
                          cwd=ROOT, capture_output=True, text=True, timeout=timeout)


import pytest  # noqa: E402


@pytest.fixture(scope="session")
def tiny_results(tmp_path_factory):
    """The whole tiny profile run once per test session (slow tests share it): results/<profile> folder."""
    reuse = os.environ.get("BITLENS_TEST_RESULTS")  # debugging: reuse a finished results/ folder
    base = Path(reuse) if reuse else tmp_path_factory.mktemp("tiny_run")
    out = _run_all(base)
    assert out.returncode == 0, f"tiny pipeline failed:\n{out.stdout[-4000:]}\n{out.stderr[-6000:]}"
    return base / "tiny", out
