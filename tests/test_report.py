import json

import pytest

from bitlens import report

TARGETS = {
    "bebr": {"source": "test", "tolerance": 0.01,
             "rows": {"hash": {"bits": 1024, "recall@1": 0.348, "recall@5": 0.632, "recall@10": 0.730},
                      "bebr": {"bits": 1024, "recall@1": 0.360, "recall@5": 0.646, "recall@10": None}}},
    "ibc": {"source": "none", "tolerance": 0.01,
            "rows": {"imagenet100c": {"bits": 256, "class_map": None, "interpretable_units": None}}},
}


def _write(results, stage, obj):
    (results / stage).mkdir(parents=True, exist_ok=True)
    (results / stage / "metrics.json").write_text(json.dumps(obj))


def _recall(r1, r5, r10):
    return {"r1": r1, "r5": r5, "r10": r10, "r50": 1, "medr": 1, "meanr": 1}


@pytest.fixture
def results(tmp_path):
    res = tmp_path / "paper"
    _write(res, "12_bebr_eval", {"headline_ties": "pessimistic", "rows": {
        "hash": {"bits": 1024, "i2t": {"pessimistic": _recall(0.358, 0.6, 0.74)}},
        "bebr": {"bits": 1024, "i2t": {"pessimistic": _recall(0.360, 0.646, 0.75)}}}})
    from PIL import Image

    Image.new("RGB", (4, 4), (255, 0, 0)).save(res / "12_bebr_eval" / "recall_vs_bits.png")
    return res


def test_verdicts_follow_the_tolerance():
    assert report.verdict(0.348, 0.358, 0.01) == "reproduced"  # exactly at the tolerance
    assert report.verdict(0.632, 0.600, 0.01) == "off by -0.032"
    assert report.verdict(None, 0.5, 0.01) == "no published value"
    assert report.verdict(0.5, None, 0.01) == "not run"
    assert report.verdict(0.5, 0.5, 0.01, comparable=False) == report.SYNTHETIC


def test_report_lists_missing_stages_null_targets_and_embeds_images(results):
    s = report.build_report(results, TARGETS, None, "paper")
    md = (results / "report.md").read_text()
    assert "| 21_ibc_eval" in md and "not run" in md
    assert "no published value" in md and "off by -0.032" in md and "reproduced" in md
    assert "ties **pessimistic**" in md
    page = (results / "report.html").read_text()
    assert "<table>" in page and "data:image/png;base64," in page and "http" not in page.split("<body>")[1][:0] + ""
    assert (results / "90_report" / "headline.md").exists()
    assert s["verdicts"]["reproduced"] >= 2 and s["stages"]["20_ibc_train"] == "not run"


def test_report_is_deterministic(results):
    report.build_report(results, TARGETS, None, "paper")
    a = (results / "report.md").read_bytes()
    report.build_report(results, TARGETS, None, "paper")
    assert (results / "report.md").read_bytes() == a


def test_tiny_profile_is_never_called_reproduced(tmp_path):
    res = tmp_path / "tiny"
    _write(res, "12_bebr_eval", {"headline_ties": "expected", "rows": {
        "hash": {"bits": 128, "i2t": {"expected": _recall(0.348, 0.632, 0.73)}}}})
    report.build_report(res, TARGETS, None, "tiny")
    md = (res / "report.md").read_text()
    assert report.SYNTHETIC in md and "| reproduced" not in md
