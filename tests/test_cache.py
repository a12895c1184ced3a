"""bitlens.cache: a record reuses outputs only for the same inputs and intact outputs."""
import json

import pytest

from bitlens.cache import Record, digest, file_digest


def _step(tmp_path, inputs, text="result"):
    (tmp_path / "out.txt").write_text(text)
    return Record(tmp_path / ".record.json").write(inputs, ["out.txt"], extra_field=1)


def test_a_record_is_valid_for_the_same_inputs_in_any_key_order(tmp_path):
    _step(tmp_path, {"a": 1, "b": [1, 2]})
    rec = Record(tmp_path / ".record.json").valid({"b": [1, 2], "a": 1})
    assert rec is not None and rec["extra_field"] == 1


@pytest.mark.parametrize("change", ["inputs", "deleted", "truncated", "corrupt record", "no record"])
def test_anything_but_the_same_inputs_and_intact_outputs_means_compute_again(tmp_path, change):
    _step(tmp_path, {"a": 1})
    inputs = {"a": 1}
    if change == "inputs":
        inputs = {"a": 2}
    elif change == "deleted":
        (tmp_path / "out.txt").unlink()
    elif change == "truncated":
        (tmp_path / "out.txt").write_text("res")
    elif change == "corrupt record":
        (tmp_path / ".record.json").write_text("{not json")
    else:
        Record(tmp_path / ".record.json").clear()
    assert Record(tmp_path / ".record.json").valid(inputs) is None


def test_a_needed_output_the_record_does_not_list_must_exist(tmp_path):
    _step(tmp_path, {"a": 1})
    rec = Record(tmp_path / ".record.json")
    assert rec.valid({"a": 1}, ["out.txt", "other.txt"]) is None
    (tmp_path / "other.txt").write_text("x")
    assert rec.valid({"a": 1}, ["out.txt", "other.txt"]) is not None


def test_resumable_progress_belongs_to_its_inputs(tmp_path):
    rec = Record(tmp_path / ".record.json")
    rec.write({"n": 10}, state={"done": 4})
    assert rec.state({"n": 10}) == {"done": 4}
    assert rec.state({"n": 11}) is None


def test_a_record_cannot_list_an_output_that_was_not_written(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.npy"):
        Record(tmp_path / ".record.json").write({"a": 1}, ["missing.npy"])


def test_digests_are_content_digests(tmp_path):
    (tmp_path / "f").write_bytes(b"abc")
    assert file_digest(tmp_path / "f") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    assert digest({"x": 1, "y": 2}) == digest({"y": 2, "x": 1}) != digest({"x": 1, "y": 3})
    assert json.loads((_step(tmp_path, {"x": 1})).read_text())["outputs"] == {"out.txt": 6}
