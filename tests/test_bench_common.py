import importlib.util
from pathlib import Path

import pytest

_spec = importlib.util.spec_from_file_location("bench_common", Path(__file__).parents[1] / "benchmarks" / "common.py")
common = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(common)


def test_ratio_row_names_both_sides_and_judges_the_goal():
    r = common.ratio_row("x", "ours", 0.6, "theirs", 1.0, goal=0.8)
    assert (r["bitlens"], r["peer"], r["ratio"], r["met"], r["goal"]) == ("ours", "theirs", 0.6, "yes", "ratio <= 0.8")
    assert common.ratio_row("x", "ours", 0.9, "theirs", 1.0, goal=0.8)["met"] == "no"
    assert common.ratio_row("x", "ours", 0.9, "theirs", 1.0)["met"] == ""
    with pytest.raises(ValueError, match="both sides"):
        common.ratio_row("x", "ours", 0.9, "", 1.0)


def test_limit_row_keeps_the_peer_columns_empty():
    r = common.limit_row("mAP", "ours", 61.0, "s", 60)
    assert (r["peer"], r["peer_value"], r["met"], r["goal"]) == ("", "", "no", "< 60 s")
    assert common.limit_row("mAP", "ours", 0.5, "GiB", 1)["met"] == "yes"


def test_measure_warms_up_then_takes_the_minimum_of_repeats():
    calls = []
    assert common.measure(lambda: calls.append(1), repeat=3) >= 0
    assert len(calls) == 4


def test_write_and_read_round_trip(tmp_path, monkeypatch):
    monkeypatch.setattr(common, "RESULTS", tmp_path)
    rows = [common.ratio_row("a", "ours", 1.0, "theirs", 2.0, goal=0.8), common.limit_row("b", "ours", 3, "s", 60)]
    path = common.write("demo", rows)
    assert path.name.startswith("demo__") and path.name.endswith("c.csv")
    back = common.read(path)
    assert [r["benchmark"] for r in back] == ["a", "b"] and back[0]["met"] == "yes"
    assert "theirs" in common.show(rows)
