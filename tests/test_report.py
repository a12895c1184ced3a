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
    assert report.verdict(0.348, 0.358, 0.01) == "reproduced"  # exactly at the tolerance, above
    assert report.verdict(0.358, 0.348, 0.01) == "reproduced"  # exactly at the tolerance, below
    assert report.verdict(0.348, 0.358001, 0.01) == "off by +0.010"  # just past it
    assert report.verdict(0.5, float("nan"), 0.01).startswith("ours is nan")
    assert report.verdict(None, 0.5, 0.01, comparable=False) == report.SYNTHETIC
    assert report.verdict(0.632, 0.600, 0.01) == "off by -0.032"
    assert report.verdict(None, 0.5, 0.01) == "no published value"
    assert report.verdict(0.5, None, 0.01) == "not run"
    assert report.verdict(0.5, 0.5, 0.01, comparable=False) == report.SYNTHETIC


def test_report_lists_missing_stages_null_targets_and_embeds_images(results):
    s = report.build_report(results, TARGETS, None, "paper")
    md = (results / "report.md").read_text()
    assert "| 22_ibc_eval" in md and "not run" in md
    assert "no published value" in md and "off by -0.032" in md and "reproduced" in md
    assert "ties **pessimistic**" in md
    page = (results / "report.html").read_text()
    assert "<table>" in page and "data:image/png;base64," in page
    assert "<td class='off'>off by -0.032</td>" in page and "<td class='ok'>reproduced</td>" in page
    assert ">no published value</td>" in page and "<td class='n'>0.3580</td>" in page
    # self-contained: nothing fetched from elsewhere
    assert "src='http" not in page and "<link" not in page and "<script" not in page
    assert "12_bebr_eval/recall_vs_bits.png" not in page  # embedded, not linked
    assert (results / "90_report" / "headline.md").exists()
    assert " +0.0100 | reproduced" in md and " -0.0320 | off by -0.032" in md  # signed differences
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


def test_gallery_and_other_outputs_are_collected(results):
    _write(results, "21_ibc_dissect", {"experiments": {}, "figures": ["x_bits.png"]})
    from PIL import Image

    Image.new("RGB", (4, 4), (0, 255, 0)).save(results / "21_ibc_dissect" / "x_bits.png")
    Image.new("RGB", (4, 4), (0, 0, 255)).save(results / "12_bebr_eval" / "extra.png")
    (results / "12_bebr_eval" / "bebr_ties.md").write_text("| a |\n|---|\n| 7 |\n")
    report.build_report(results, TARGETS, None, "paper")
    md = (results / "report.md").read_text()
    gallery = md.split("## Bit-interpretation gallery")[1].split("##")[0]
    assert "21_ibc_dissect/x_bits.png" in gallery
    assert "12_bebr_eval/extra.png" in md and "**bebr ties**" in md
    assert (results / "report.html").read_text().count("data:image/png;base64,") == 3


def test_listed_but_missing_figure_and_out_of_contract_metrics_are_named(results):
    _write(results, "21_ibc_dissect", {"experiments": {}, "figures": ["gone.png"]})
    report.build_report(results, TARGETS, None, "paper")
    assert "lists gone.png, which are not there" in (results / "report.md").read_text()
    _write(results, "21_ibc_dissect", {"experiments": {}, "figures": []})
    _write(results, "12_bebr_eval", {"headline_ties": "expected", "rows": {
        "hash": {"bits": 8, "i2t": {"pessimistic": _recall(0.1, 0.2, 0.3)}}}})
    with pytest.raises(KeyError, match="12_bebr_eval/metrics.json: missing key 'i2t.expected'"):
        report.build_report(results, TARGETS, None, "paper")


def test_latest_benchmark_csv_wins(tmp_path):
    import os

    cols = "benchmark,bitlens_s,peer,peer_s,ratio,target,met,note\n"
    old, new = tmp_path / "hamming__cpu.csv", tmp_path / "hamming__gpu.csv"
    old.write_text(cols + "old,1,p,1,1.0,<= 1,yes,\n")
    new.write_text(cols + "new,1,p,2,0.5,<= 1,yes,\n")
    os.utime(old, (2_000_000_000, 2_000_000_000))
    os.utime(new, (1_000_000_000, 1_000_000_000))
    [(name, df)] = report.latest_benchmarks(tmp_path)
    assert name == "hamming__cpu" and df["benchmark"].tolist() == ["old"]


def test_counts_stay_integers_and_null_targets_read_as_a_dash(results):
    _write(results, "21_ibc_dissect", {"experiments": {"imagenet100c": {
        "units": 256, "interpretable": 22, "concepts": 5, "iou_threshold": 0.04, "per_category": {},
        "planted_coverage": None, "bit_groups": "bit_groups.json"}}, "figures": []})
    report.build_report(results, TARGETS, None, "paper")
    head = (results / "90_report" / "headline.md").read_text()
    row = next(r for r in head.splitlines() if "interpretable_units" in r)
    assert [c.strip() for c in row.strip("|").split("|")][3:] == ["—", "22", "—", "no published value"]
    class_map = next(r for r in head.splitlines() if "| class_map" in r)
    assert "not run" in class_map  # 22_ibc_eval missing


def test_a_failed_stage_is_flagged_from_the_manifest(results):
    (results / "run_manifest.json").write_text(json.dumps({
        "git_commit": "abc", "device": "cpu", "seed": 0, "packages": {"numpy": "2"},
        "stages": {"12_bebr_eval": {"status": "failed", "seconds": 1.5}, "20_ibc_train": {"status": "failed"}}}))
    s = report.build_report(results, TARGETS, None, "paper")
    assert s["stages"]["12_bebr_eval"] == "failed (outputs of an earlier run)"
    assert s["stages"]["20_ibc_train"] == "failed"
    md = (results / "report.md").read_text()
    record = md.split("## Run record")[1]
    assert "`abc`" in record and "numpy 2" in record and "1.5" in record


def test_figures_are_captioned_by_what_they_show_not_their_file_name(results):
    _write(results, "22_ibc_eval", {"experiments": {}, "report_figures": [
        {"file": "code_length_sweep.png", "caption": "Class mAP against code length; 16 and 64 bits train fewer steps"}]})
    from PIL import Image

    Image.new("RGB", (4, 4)).save(results / "22_ibc_eval" / "code_length_sweep.png")
    report.build_report(results, TARGETS, None, "paper")
    md = (results / "report.md").read_text()
    assert "![Class mAP against code length; 16 and 64 bits train fewer steps](22_ibc_eval/code_length_sweep.png)" in md
    assert "![BEBR: COCO Recall@K table — recall vs bits](12_bebr_eval/recall_vs_bits.png)" in md
    assert "![recall_vs_bits]" not in md and "![code_length_sweep]" not in md
    assert "<figcaption>Class mAP against code length" in (results / "report.html").read_text()


def test_tables_a_stage_lists_are_shown_with_their_caption(results):
    (results / "13_bebr_compat").mkdir()
    (results / "13_bebr_compat" / "compat_table.md").write_text(
        "| model | R@1 |\n|---|---|\n| ours | 0.5 |\n\nOur heads against the released ones\n")  # as save_table writes
    (results / "13_bebr_compat" / "metrics.json").write_text(json.dumps({"report_tables": [
        {"file": "compat_table.md", "caption": "Our heads against the released ones"},
        {"file": "gone.md", "caption": "x"}]}))
    report.build_report(results, TARGETS, None, "paper")
    md = (results / "report.md").read_text()
    section = md.split("## Tables from the stages")[1]
    assert "### Our heads against the released ones (13_bebr_compat)" in section and "| ours | 0.5 |" in section
    assert "lists the table `{'file': 'gone.md', 'caption': 'x'}`, which is not there" in section
    assert md.count("| ours | 0.5 |") == 1  # not repeated among the other outputs
    assert section.count("Our heads against the released ones") == 1  # the heading carries the caption


def test_orders_are_stated_from_the_numbers(results):
    report.build_report(results, TARGETS, None, "paper")
    md = (results / "report.md").read_text()
    # measured: bebr 0.360 > hash 0.358 at R@1; published: bebr 0.360 > hash 0.348 → same order
    assert "- R@1: ours bebr (0.3600) > hash (0.3580); paper bebr (0.360) > hash (0.348): the same order." in md
    # R@10 has no published bebr value: only one embedding is comparable
    assert "- R@10: fewer than two embeddings" in md


def test_missing_numbers_read_as_a_dash_and_whole_numbers_as_integers(tmp_path):
    import pandas as pd

    md = report.markdown_table(pd.DataFrame({"bits": [16.0, 64.0], "R@1": [0.5, float("nan")],
                                             "paper bits": [None, 1024], "ms": [1.25, None]}))
    rows = [[c.strip() for c in r.strip("|").split("|")] for r in md.splitlines()[2:]]
    assert rows == [["16", "0.5000", "—", "1.2500"], ["64", "—", "1024", "—"]]
    assert "nan" not in md


def test_benchmark_cells_never_read_nan(tmp_path, results):
    bench = tmp_path / "bench"
    bench.mkdir()
    (bench / "hamming__cpu.csv").write_text("benchmark,bitlens_s,peer_s,ratio\nx,1.5,,\n")
    report.build_report(results, TARGETS, bench, "paper")
    section = (results / "report.md").read_text().split("## Benchmarks")[1].split("## Run record")[0]
    assert "nan" not in section and "| x " in section and "—" in section


def test_run_record_shows_this_runs_stage_times_and_the_dirty_flag(results):
    (results / "run_manifest.json").write_text(json.dumps({
        "git_commit": "abc", "git_dirty": True, "device": "cpu: x86_64, 2 cores", "seed": 3, "started": "T0",
        "packages": {"torch": "2.3"},
        "stages": {"12_bebr_eval": {"status": "ran", "seconds": 4.5},
                   "20_ibc_train": {"status": "cached", "seconds": 0.0, "last_run_seconds": 96.5},
                   "90_report": {"status": "running", "seconds": 0.0}}}))
    report.build_report(results, TARGETS, None, "paper")
    record = (results / "report.md").read_text().split("## Run record")[1]
    assert "`abc` with uncommitted changes" in record and "seed: 3" in record and "torch 2.3" in record
    rows = {r.split("|")[1].strip(): [c.strip() for c in r.strip("|").split("|")] for r in record.splitlines()
            if r.startswith("| ") and "stage" not in r}
    assert rows["12_bebr_eval"][1:4] == ["ran", "4.5", "4.5"]
    assert rows["20_ibc_train"][1:4] == ["cached", "0.0", "96.5"]
    assert rows["90_report"][1] == "running"


def test_headline_bits_are_integers_and_missing_bits_a_dash(results):
    _write(results, "12_bebr_eval", {"headline_ties": "pessimistic", "rows": {
        "hash": {"bits": 1024.0, "i2t": {"pessimistic": _recall(0.358, 0.6, 0.74)}}}})
    report.build_report(results, TARGETS, None, "paper")
    head = (results / "90_report" / "headline.md").read_text()
    hash_row = next(r for r in head.splitlines() if r.startswith("| hash") and "recall@1" in r)
    bebr_row = next(r for r in head.splitlines() if r.startswith("| bebr") and "recall@1" in r)
    assert [c.strip() for c in hash_row.strip("|").split("|")][2:4] == ["1024", "1024"]
    assert [c.strip() for c in bebr_row.strip("|").split("|")][2:4] == ["1024", "—"]
    assert "None" not in head and "nan" not in head


def test_a_rehearsal_report_opens_saying_its_numbers_are_meaningless_and_judges_nothing(results):
    s = report.build_report(results, TARGETS, None, "paper", rehearsal=True)
    for path in (results / "report.md", results / "90_report" / "headline.md"):
        first = path.read_text().splitlines()[0]
        assert "meaningless" in first and "Rehearsal" in first, path
    md = (results / "report.md").read_text()
    assert "| reproduced" not in md and "off by" not in md  # the paper's numbers are not compared with noise
    assert "reproduced" not in s["verdicts"]
    assert "tiny profile" not in md and "Order of the embeddings" not in md
    report.build_report(results, TARGETS, None, "paper")
    assert "meaningless" not in (results / "report.md").read_text()


def test_baseline_protocol_and_hashing_sentences_get_their_section_in_stage_order(results):
    m = json.loads((results / "12_bebr_eval" / "metrics.json").read_text())
    _write(results, "12_bebr_eval", {**m, "baseline_sentences": ["hash beats LSH"],
                                     "protocol_sentences": ["all captions raise R@1"]})
    _write(results, "22_ibc_eval", {"hashing_sentences": ["precision within radius 2 is 0.5"]})
    report.build_report(results, TARGETS, None, "paper")
    md = (results / "report.md").read_text()
    section = md.split("## Deep-hashing metrics, the CLIP protocol and baselines at equal bits")[1].split("\n## ")[0]
    assert "- hash beats LSH\n- all captions raise R@1\n- precision within radius 2 is 0.5" in section


def test_no_researcher_section_without_its_sentences(results):
    report.build_report(results, TARGETS, None, "paper")
    assert "Deep-hashing metrics, the CLIP protocol" not in (results / "report.md").read_text()
