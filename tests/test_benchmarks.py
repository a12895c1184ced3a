"""The benchmark framework: result rows, goal status, the README table, and bench_search end to end (tiny)."""
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).parents[1] / "benchmarks"
sys.path.insert(0, str(BENCH))
import common  # noqa: E402


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
    assert path.name == f"demo__{common.hardware()}.csv" and f"-{common.isa_class()}-" in path.name
    back = common.read(path)
    assert [r["benchmark"] for r in back] == ["a", "b"] and back[0]["met"] == "yes"
    assert "theirs" in common.show(rows)
    # every row names the machine it ran on
    for r in back:
        assert {c: r[c] for c in common.MACHINE_COLUMNS} == {c: str(v) for c, v in common.machine().items()}
        assert r["machine_class"] == common.hardware() and r["kernel"]


def test_goal_ids_are_checked_and_every_goal_gets_a_status():
    with pytest.raises(ValueError, match="unknown goal_id"):
        common.ratio_row("x", "ours", 1, "theirs", 1, goal=1, goal_id="nope")
    rows = [common.ratio_row("h", "ours", 0.5, "faiss", 1.0, goal=0.8, goal_id="hamming-cpu"),
            common.limit_row("m", "ours", 70, "s", 60, goal_id="map-time")]
    status = {gid: st for gid, _, st, _ in common.goal_status(rows)}
    assert status["hamming-cpu"] == "met" and status["map-time"] == "not met"
    assert status["sdc-cpu"] == "not measured" and set(status) == set(common.GOALS)
    assert "[not measured]" in common.show_goals(rows).replace("  ", "")


def test_readme_table_is_generated_between_the_markers(tmp_path):
    import readme_table

    res = tmp_path / "results"
    res.mkdir()
    monkey_rows = [common.ratio_row("Hamming demo", "ours", 0.5, "faiss", 1.0, goal=0.8, goal_id="hamming-cpu")]
    import csv

    with open(res / "search__CPU-2c.csv", "w", newline="") as f:
        w = csv.DictWriter(f, common.COLUMNS)
        w.writeheader()
        w.writerows(monkey_rows)
    readme = tmp_path / "README.md"
    readme.write_text("intro\n<!-- bench:start -->\nold typed table\n<!-- bench:end -->\n"
                      "<!-- stages:start -->\n<!-- stages:end -->\noutro\n")
    old, new = readme_table.update(readme, res)
    assert "old typed table" not in new and new.startswith("intro\n") and new.endswith("outro\n")
    assert "| Hamming demo | ours: 0.5 s | faiss: 1 s | 0.5 | — | ratio <= 0.8 | yes |" in new
    assert "**met**" in new and "**NOT MEASURED**" in new
    readme.write_text("no markers")
    with pytest.raises(SystemExit, match="markers"):
        readme_table.update(readme, res)


def test_stage_times_come_from_a_complete_first_run_and_state_the_goal(tmp_path):
    import readme_table
    import stage_times

    stages = {"00_data": {"status": "ran", "seconds": 20.0, "load_1min": 1.1},
              "20_ibc_train": {"status": "ran", "seconds": 330.5, "load_1min": 1.9}}
    manifest = {"git_commit": "abcdef1234567", "git_dirty": False, "started": "2026-11-23T08:00:00",
                "load_1min_at_start": 0.4, "stages": stages}
    rows = stage_times.rows_from_manifest(manifest)
    text = "\n".join(stage_times.table(rows))
    assert "| `20_ibc_train` | 330.5 | 1.9 |" in text and "**350.5** (5 min 50 s)" in text
    assert "**met**" in text and "load average 0.4 at the start" in text and "abcdef1234" in text
    over = stage_times.table(stage_times.rows_from_manifest(
        {**manifest, "stages": {**stages, "10_bebr_features": {"status": "ran", "seconds": 10.0}}}))
    assert "**NOT MET**" in "\n".join(over)  # 360.5 s is not under 6 minutes
    for status in ("cached", "not run", "failed"):
        with pytest.raises(ValueError, match=f"20_ibc_train \\({status}\\)"):
            stage_times.rows_from_manifest({**manifest, "stages": {**stages, "20_ibc_train": {"status": status,
                                                                                              "seconds": 0.0}}})
    res = tmp_path / "results"
    path = stage_times.write(rows, results=res)
    assert path.name.startswith("tiny_stages__")
    readme = tmp_path / "README.md"
    readme.write_text("<!-- bench:start -->\n<!-- bench:end -->\n<!-- stages:start -->\nold\n<!-- stages:end -->\n")
    _, new = readme_table.update(readme, res)
    assert "old" not in new and "| `00_data` | 20.0 | 1.1 |" in new
    assert "tiny_stages" not in new.split("<!-- bench:end -->")[0]  # not read as a benchmark's rows
    assert "Every first run recorded" not in new  # one run: nothing to list beside it

    # a later, slower run is added beside the first; recording it twice does not duplicate it
    later = {**manifest, "started": "2026-11-23T09:00:00", "load_1min_at_start": 1.2,
             "stages": {**stages, "20_ibc_train": {"status": "ran", "seconds": 400.0, "load_1min": 2.0}}}
    stage_times.write(stage_times.rows_from_manifest(later), results=res)
    stage_times.write(stage_times.rows_from_manifest(later), results=res)
    recorded = stage_times.runs(common.read(path))
    assert [run[0]["started"] for run in recorded] == ["2026-11-23T08:00:00", "2026-11-23T09:00:00"]
    assert [len(run) for run in recorded] == [3, 3]
    text = "\n".join(stage_times.table(common.read(path)))
    assert "| `20_ibc_train` | 400.0 | 2.0 |" in text and "**NOT MET**" in text  # the newest run's stages
    assert "goal met in 1 of 2" in text
    assert "| 2026-11-23T08:00:00 | abcdef1234 | 0.4 | 350.5 s (5 min 50 s) | met |" in text
    assert "| 2026-11-23T09:00:00 | abcdef1234 | 1.2 | 420.0 s (7 min 0 s) | NOT MET |" in text


def test_bench_search_runs_end_to_end_on_tiny_sizes(tmp_path, monkeypatch):
    pytest.importorskip("faiss")
    import bench_search

    from bitlens import search

    monkeypatch.setattr(common, "RESULTS", tmp_path)
    monkeypatch.setattr(bench_search, "RESULTS", tmp_path)
    rows = bench_search.main(["--nq", "20", "--nb", "300", "--repeat", "1", "--fallback-nq", "5"])
    names = [r["benchmark"] for r in rows]
    assert any(n.startswith("Hamming top-10, 20 × 300") for n in names)
    floors = [r for r in rows if r["benchmark"].startswith("XOR + popcount floor")]
    assert all(r["bitlens"] and r["peer"] for r in rows if r not in floors)
    if search.kernel.module() is not None:  # the floor rows, and the native search rows as multiples of them
        assert [r["bitlens_value"] > 0 and r["peer"] == "" for r in floors] == [True, True]
        f1 = floors[0]["bitlens_value"]
        ham = next(r for r in rows if r["benchmark"].startswith("Hamming top-10, 20 × 300 × 1,024 bits, exact"))
        assert ham["floor_multiple"] == pytest.approx(ham["bitlens_value"] / f1, rel=1e-3)
        assert search.native_kernel() in ham["bitlens"]
        assert {"SDC top-10 (ip) 512 × 2 vs Hamming top-10 2,048 bits, 20 × 300",
                "SDC top-10 (cosine) vs SDC top-10 (ip), 20 × 300, bebr 512 × 2"} <= set(names)
    assert not any(r["goal_id"] for r in rows)  # not the goal's size: no goal is claimed
    written = common.read(tmp_path / f"search__{common.hardware()}.csv")
    assert all(r["cpu_flags"] == " ".join(common.cpu_flags()) for r in written)
    assert sorted(p.name.split("__")[0] for p in tmp_path.iterdir()) == ["sdc_claim", "search"]


def test_cuda_benchmark_skips_cleanly_without_cuda():
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present: the benchmark would run for real")
    import cuda_search

    assert cuda_search.main([]) == []


def test_the_isa_class_picks_the_goal_limits():
    assert common.isa_class(["avx2", "avx512f", "avx512_vpopcntdq"]) == "avx512"
    assert common.isa_class(["avx2", "avx512f"]) == "avx2"  # AVX-512 without VPOPCNTDQ: the AVX2 goals
    assert common.isa_class([]) == "x86-64"
    assert (common.goal_limit("hamming-cpu", "avx512"), common.goal_limit("hamming-cpu", "avx2")) == (0.5, 0.8)
    assert (common.goal_limit("sdc-cpu", "avx512"), common.goal_limit("sdc-cpu", "x86-64")) == (0.35, 0.75)
    assert common.goal_text("sdc-cpu", "avx512").endswith("≤ 0.35 (16× less memory)")
    assert set(common.GOAL_LIMITS) <= set(common.GOALS)


def _write_rows(path, rows, flags):
    import csv

    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, common.COLUMNS)
        w.writeheader()
        for r in rows:
            w.writerow({**{c: "x" for c in common.MACHINE_COLUMNS}, "floor_multiple": "", **r,
                        "cpu_flags": flags, "machine_class": path.stem.split("__")[1]})


def test_readme_has_one_section_per_machine_class_with_its_own_goal_limits(tmp_path):
    import readme_table

    res = tmp_path / "results"
    res.mkdir()
    # the same ratio 0.6 meets the AVX2 goal (0.8) and misses the AVX-512 one (0.5)
    row = common.ratio_row("Hamming demo", "ours", 0.6, "faiss", 1.0, goal=0.5, goal_id="hamming-cpu")
    _write_rows(res / "search__CPU-A-avx512-2c.csv", [row], "avx2 avx512f avx512_vpopcntdq")
    _write_rows(res / "search__CPU-B-avx2-2c.csv", [{**row, "met": "yes", "goal": "ratio <= 0.8"}], "avx2")
    readme = tmp_path / "README.md"
    readme.write_text("<!-- bench:start -->\n<!-- bench:end -->\n<!-- stages:start -->\n<!-- stages:end -->\n")
    _, new = readme_table.update(readme, res)
    a, b = new.split("### Machine class `CPU-A-avx512-2c`")[1].split("### Machine class `CPU-B-avx2-2c`")
    assert "ISA class `avx512`" in a and "IndexBinaryFlat ≤ 0.5 | **NOT MET**" in a
    assert "Unmet goals on this class: Hamming top-10" in a
    assert "ISA class `avx2`" in b and "IndexBinaryFlat ≤ 0.8 | **met**" in b
    assert "Unmet goals on this class: none." in b and "Not measured on this class: " in b
