import json
import sys

import numpy as np
import pytest
import torch

from bitlens import codes
from bitlens.ibc.evaluate import customized_retrieval, main as evaluate_main


def _code_file(tmp_path, suffix):
    rng = np.random.default_rng(0)
    lab = np.repeat(np.arange(4), 10)
    b = rng.random((40, 16)).astype(np.float32)
    b[:, 0] = np.where(lab < 2, 0.9, 0.1)
    attrs = (rng.random((40, 2)) > 0.5).astype(float)
    grm = rng.random((4, 16))
    codes.save_codes(tmp_path / f"c{suffix}", b, np.concatenate([lab[:, None], attrs], 1), GRM=grm)
    return tmp_path / f"c{suffix}"


@pytest.mark.parametrize("suffix", [".mat", ".npz"])
def test_evaluate_cli_reports_every_number(tmp_path, capsys, suffix):
    p = _code_file(tmp_path, suffix)
    assert evaluate_main(["--codes", str(p), "--expert-bits", "4", "--mis-max-num", "10", "--json",
                          "--binarize", "0.5"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert set(out) == {"class_map", "expert_bit_map", "attribute_map", "mis_knn", "mis_discrete"}
    assert len(out["attribute_map"]) == 2 and 0 < out["class_map"] <= 1
    assert evaluate_main(["--codes", str(tmp_path / "missing.mat")]) == 2


def test_customized_retrieval_tries_every_combination_and_reports_a_random_baseline():
    rng = np.random.default_rng(0)
    attrs = (rng.random((60, 1)) > 0.5).astype(float)
    B = np.where(rng.random((60, 8)) > 0.5, 1, -1)
    B[:, 3] = np.where(attrs[:, 0] == 1, 1, -1)
    r = customized_retrieval(B, attrs, 0, [[3], [5], [6]])
    assert r["combinations"] == 7 and r["bits"] == [4] and r["chosen_on"] == "test set"
    assert r["map"] == pytest.approx(1.0) and r["random_map"] < r["map"]
