"""The evaluation CLIs explain themselves: help and defaults for every flag, clear errors on stderr, exit 2."""
import json
import re

import numpy as np
import pytest

from bitlens import codes
from bitlens.bebr import evaluate as bebr_eval
from bitlens.ibc import evaluate as ibc_eval


@pytest.mark.parametrize("mod, prog", [(bebr_eval, "python -m bitlens.bebr.evaluate"),
                                       (ibc_eval, "python -m bitlens.ibc.evaluate")])
def test_help_names_the_module_and_every_flag_with_help_and_default(mod, prog, capsys):
    parser = mod.build_parser()
    with pytest.raises(SystemExit) as e:
        parser.parse_args(["--help"])
    assert e.value.code == 0
    text = capsys.readouterr().out
    assert text.startswith(f"usage: {prog}")
    text = text.split("\noptions:\n", 1)[1]
    for action in parser._actions:
        if action.dest == "help":
            continue
        assert action.help, f"{action.option_strings} has no help"
        flag = action.option_strings[-1]
        block = re.search(re.escape(flag) + r".*?(?=\n  -|\Z)", text, re.S).group(0)
        if not action.required:
            assert "(default:" in block, f"{flag}: default not shown"


def _pairs(tmp_path, n=6):
    a = np.random.default_rng(0).standard_normal((n, 4))
    np.save(tmp_path / "i.npy", a)
    np.save(tmp_path / "t.npy", a + 0.01)
    return tmp_path / "i.npy", tmp_path / "t.npy"


def test_bebr_zero_rows_is_an_error_not_a_nan_table(tmp_path, capsys):
    np.save(tmp_path / "empty.npy", np.zeros((0, 4)))
    assert bebr_eval.main(["--image-feat", str(tmp_path / "empty.npy"), "--txt-feat", str(tmp_path / "empty.npy")]) == 2
    cap = capsys.readouterr()
    assert cap.out == "" and "empty.npy: has shape (0, 4); Recall@K needs at least one row" in cap.err
    assert cap.err.startswith("python -m bitlens.bebr.evaluate: error:")


def test_bebr_text_file_names_the_file_and_the_npy_format(tmp_path, capsys):
    i, t = _pairs(tmp_path)
    np.savetxt(tmp_path / "feat.txt", np.ones((6, 4)))
    assert bebr_eval.main(["--image-feat", str(tmp_path / "feat.txt"), "--txt-feat", str(t)]) == 2
    err = capsys.readouterr().err
    assert "feat.txt: not a .npy file; expected a NumPy .npy file holding a 2-D float array" in err
    assert "allow_pickle" not in err
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object))
    assert bebr_eval.main(["--image-feat", str(tmp_path / "obj.npy"), "--txt-feat", str(t)]) == 2
    err = capsys.readouterr().err
    assert "obj.npy: holds Python objects, not numbers" in err and "allow_pickle" not in err


def test_bebr_bad_tie_policy_is_an_argparse_error(tmp_path, capsys):
    i, t = _pairs(tmp_path)
    with pytest.raises(SystemExit) as e:
        bebr_eval.main(["--image-feat", str(i), "--txt-feat", str(t), "--ties", "random"])
    assert e.value.code == 2 and "invalid choice: 'random'" in capsys.readouterr().err


def _ibc_file(tmp_path, lab):
    b = np.random.default_rng(0).random((len(lab), 8)).astype(np.float32)
    p = tmp_path / "codes.npz"
    np.savez(p, binary_codes=b, lab=lab)
    return p


def test_ibc_string_labels_name_the_field(tmp_path, capsys):
    p = _ibc_file(tmp_path, np.array([["cat"], ["dog"], ["cat"]]))
    assert ibc_eval.main(["--codes", str(p), "--no-mis"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("python -m bitlens.ibc.evaluate: error:")
    assert "codes.npz: field 'lab' holds <U3 values; it must hold numbers" in err


@pytest.mark.parametrize("flag, value, message", [("--mis-max-num", "0", "--mis-max-num must be at least 2, got 0"),
                                                  ("--expert-bits", "0", "--expert-bits must be at least 1, got 0"),
                                                  ("--seed", "x", "--seed must be an integer, got 'x'")])
def test_ibc_out_of_range_numbers_are_refused_before_any_work(tmp_path, capsys, flag, value, message):
    p = _ibc_file(tmp_path, np.array([0, 1, 0]))
    with pytest.raises(SystemExit) as e:
        ibc_eval.main(["--codes", str(p), flag, value])
    assert e.value.code == 2 and message in capsys.readouterr().err


def test_ibc_no_mis_and_json_nulls(tmp_path, capsys):
    lab = np.array([[0, 1], [0, 0], [1, 1], [1, 0]])
    b = np.where(np.random.default_rng(1).random((4, 6)) > 0.5, 0.9, 0.1)
    codes.save_codes(tmp_path / "c.npz", b, lab)
    assert ibc_eval.main(["--codes", str(tmp_path / "c.npz"), "--no-mis"]) == 0
    out = capsys.readouterr().out
    assert "MIS                  — (skipped: --no-mis)" in out and "expert-bit mAP       — (no GRM" in out
    assert ibc_eval.main(["--codes", str(tmp_path / "c.npz"), "--no-mis", "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["mis_knn"] is None and res["expert_bit_map"] is None and len(res["attribute_map"]) == 1
