"""The embedded tiny profile, end to end through run_all: every stage, the cache, determinism."""
from pathlib import Path

import pytest

from conftest import _run_all
from bitlens.stages import STAGES

# Files whose content includes wall-clock measurements, not only results (report.md ends with the run record;
# its tables are compared through 90_report/headline.md and the stages' own tables).
TIMING_FILES = ("speed", "timing", "bench", "report.md")


def _tables(d: Path) -> dict[str, bytes]:
    out = {}
    for p in sorted(d.rglob("*")):
        if p.suffix in (".csv", ".md") and "notebooks" not in p.parts and not any(t in p.name for t in TIMING_FILES):
            out[str(p.relative_to(d))] = p.read_bytes()
    return out


@pytest.mark.slow
def test_tiny_profile_runs_every_stage_and_writes_the_report(tiny_results):
    results, out = tiny_results
    for spec in STAGES:
        assert (results / spec.name / "metrics.json").exists(), f"{spec.name} wrote no metrics.json"
        assert (results / spec.name / ".stage.json").exists()
    assert (results / "report.html").exists() and (results / "report.md").exists()
    assert "report:" in out.stdout


@pytest.mark.slow
def test_second_run_is_fully_cached(tiny_results):
    results, _ = tiny_results
    out = _run_all(results.parent)
    assert out.returncode == 0, out.stderr[-4000:]
    assert out.stdout.count("up to date") == len(STAGES)


@pytest.mark.slow
def test_two_runs_give_identical_tables(tiny_results, tmp_path):
    results, _ = tiny_results
    out = _run_all(tmp_path)
    assert out.returncode == 0, out.stderr[-4000:]
    a, b = _tables(results), _tables(tmp_path / "tiny")
    assert a.keys() == b.keys()
    differ = [k for k in a if a[k] != b[k]]
    assert not differ, f"tables differ between two identical runs: {differ}"
