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


@pytest.mark.slow
def test_tiny_bits_detect_the_planted_concepts_and_their_masks_sit_on_the_objects(tiny_results):
    """The tiny world's goal (docs/dissection.md): >= 12 of the 24 planted concepts are the label of a bit at
    IoU >= 0.04, >= 3 in each pixel-level category, and the top-image masks of the labelled bits lie on the
    objects far above chance and in the border band below chance."""
    import json

    import pandas as pd

    results, _ = tiny_results
    planted = pd.read_csv(results / "21_ibc_dissect" / "planted_concepts.csv")
    found = planted[planted["found"]].groupby("category").size().to_dict()
    assert int(planted["found"].sum()) >= 12, planted
    assert all(found.get(c, 0) >= 3 for c in ("object", "color", "texture")), found
    placed = json.loads((results / "21_ibc_dissect" / "metrics.json").read_text())["experiments"]["shapes"][
        "mask_placement"]
    assert placed["bits"] >= 12
    assert placed["on_region"] > 2 * placed["region_share"], placed
    assert placed["in_band"] < placed["band_share"], placed


@pytest.mark.slow
def test_a_rerun_of_00_data_invalidates_nothing_and_a_deleted_output_is_rebuilt(tiny_results):
    """Issue 23: no time in 00_data's outputs (so re-running it leaves every dependent cached), and a result
    deleted behind the kit's back re-runs the stage that wrote it, so the report is whole again."""
    import json

    results, _ = tiny_results
    assert "generate_s" not in json.loads((results / "00_data" / "metrics.json").read_text())
    out = _run_all(results.parent, "--force", "--only", "00_data")
    assert out.returncode == 0, out.stderr[-4000:]
    manifest = json.loads((results / "run_manifest.json").read_text())
    assert manifest["stages"]["00_data"]["timings"]["generate_world"] >= 0  # the time went to the run record
    listed = _run_all(results.parent, "--list").stdout.splitlines()
    assert len(listed) == len(STAGES) and all("up to date" in line for line in listed), listed
    (results / "12_bebr_eval" / "bebr_table.md").unlink()
    listed = _run_all(results.parent, "--list").stdout.splitlines()
    assert [line.split()[0] for line in listed if "outputs changed" in line] == ["12_bebr_eval"], listed
    out = _run_all(results.parent)
    assert out.returncode == 0, out.stderr[-4000:]
    assert "bebr_table.md (deleted)" in out.stdout
    assert "### Full BEBR table (both directions)" in (results / "report.md").read_text()
    assert not list((results / "12_bebr_eval").glob("previous-*"))
