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
    assert ibc_eval.main(["--codes", str(tmp_path / "c.npz"), "--no-mis", "--binarize", "0.5"]) == 0
    out = capsys.readouterr().out
    assert "MIS                  — (skipped: --no-mis)" in out and "expert-bit mAP       — (no GRM" in out
    assert ibc_eval.main(["--codes", str(tmp_path / "c.npz"), "--no-mis", "--binarize", "0.5", "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["mis_knn"] is None and res["expert_bit_map"] is None and len(res["attribute_map"]) == 1


# --- inputs validated for meaning (issue 23, finding 5) --------------------------------------------------------
def _ibc_codes(tmp_path, lab=None, grm=None, b=None):
    rng = np.random.default_rng(0)
    lab = np.repeat(np.arange(3), 6) if lab is None else lab
    b = (rng.random((len(lab), 8)) > 0.5).astype(np.float32) if b is None else b
    grm = rng.random((3, 8)) if grm is None else grm
    p = tmp_path / "codes.npz"
    np.savez(p, binary_codes=b, lab=lab[:, None], GRM=grm)
    return str(p)


@pytest.mark.parametrize("case, message", [
    ("one-based", "the labels look 1-based: subtract 1"),
    ("negative", "holds class label -1; labels must be 0-based"),
    ("nan-grm", "field 'GRM' has NaN or infinite values"),
    ("short-grm", "field 'GRM' has 2 rows"),
    ("tanh", "outside [0, 1]: not probabilities (tanh outputs?)"),
    ("probabilities", "If they are probabilities (sigmoid outputs, IBC's), cut them explicitly: --binarize 0.5"),
])
def test_ibc_inputs_that_would_skew_a_number_are_refused(tmp_path, capsys, case, message):
    rng = np.random.default_rng(1)
    lab = np.repeat(np.arange(3), 6)
    kw = {"one-based": {"lab": lab + 1}, "negative": {"lab": lab - 1},
          "nan-grm": {"grm": np.full((3, 8), np.nan)}, "short-grm": {"grm": rng.random((2, 8))},
          "tanh": {"b": np.tanh(rng.standard_normal((18, 8)))}, "probabilities": {"b": rng.random((18, 8))}}[case]
    extra = ["--binarize", "0.5"] if case == "tanh" else []
    assert ibc_eval.main(["--codes", _ibc_codes(tmp_path, **kw), "--no-mis", *extra]) == 2
    err = capsys.readouterr().err
    assert "codes.npz" in err and message in err, err


def test_ibc_probabilities_with_an_explicit_cut_equal_their_binary_codes(tmp_path, capsys):
    probs = np.random.default_rng(2).random((18, 8))
    assert ibc_eval.main(["--codes", _ibc_codes(tmp_path, b=probs), "--no-mis", "--json", "--binarize", "0.5"]) == 0
    cut = json.loads(capsys.readouterr().out)
    assert ibc_eval.main(["--codes", _ibc_codes(tmp_path, b=np.where(probs >= 0.5, 1.0, -1.0)), "--no-mis",
                          "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == cut


def test_bebr_features_too_large_to_square_are_refused(tmp_path, capsys):
    i, t = _pairs(tmp_path)
    np.save(i, np.load(i) * 1e200)
    assert bebr_eval.main(["--image-feat", str(i), "--txt-feat", str(t)]) == 2
    err = capsys.readouterr().err
    assert "i.npy: holds values up to" in err and "too large to square" in err and "rescale" in err


@pytest.mark.parametrize("flag, value, message", [
    ("--epochs", "0", "--epochs must be at least 1, got 0"),
    ("--hard-k", "0", "--hard-k must be at least 1, got 0"),
    ("--tau", "0", "--tau must be greater than 0, got 0"),
    ("--lr", "nan", "--lr must be a finite number, got 'nan'"),
    ("--lr", "inf", "--lr must be a finite number, got 'inf'"),
    ("--out-dim", "0", "--out-dim must be at least 1, got 0"),
])
def test_bebr_train_flags_share_the_schema_ranges(tmp_path, capsys, flag, value, message):
    from bitlens.bebr.train import main as train_main

    with pytest.raises(SystemExit) as e:
        train_main(["--features", str(tmp_path), "--out", str(tmp_path / "o"), flag, value])
    assert e.value.code == 2 and message in capsys.readouterr().err


def test_bebr_train_batch_without_room_for_the_hard_negatives_is_refused(tmp_path, capsys):
    from bitlens.bebr.train import FEATURE_FILES, main as train_main

    rng = np.random.default_rng(0)
    feats = {"train_feat": rng.standard_normal((16, 4)).astype(np.float32), "train_label": np.repeat(np.arange(8), 2),
             "val_img": rng.standard_normal((4, 4)).astype(np.float32),
             "val_txt": rng.standard_normal((4, 4)).astype(np.float32)}
    for name in FEATURE_FILES:
        np.save(tmp_path / name, feats[name[:-4]])
    assert train_main(["--features", str(tmp_path), "--out", str(tmp_path / "o"), "--batch-size", "3",
                       "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert "batch_size = 3 (--batch-size, bebr.train.batch_size) must be even" in err and "at least 12" in err
    assert not (tmp_path / "o" / "train_state.pt").exists()


def test_coco_captions_must_be_non_empty_strings(tmp_path):
    from bitlens.data.coco import load_coco_captions

    (tmp_path / "annotations").mkdir()
    for caption in ("  ", None, 42):
        (tmp_path / "annotations" / "captions_val.json").write_text(json.dumps({
            "images": [{"id": 1, "file_name": "a.jpg"}],
            "annotations": [{"image_id": 1, "caption": "a cat"}, {"image_id": 1, "caption": caption}]}))
        with pytest.raises(ValueError, match=r"annotation #1 \(image_id 1\) has caption .* non-empty string"):
            load_coco_captions(tmp_path, "val", check_files=False)


@pytest.mark.parametrize("module, args, message", [
    ("bitlens.bebr.train", ["--features", "x", "--out", "o", "--tau", "0"], "--tau must be greater than 0, got 0"),
    ("bitlens.bebr.train", ["--features", "x", "--out", "o", "--weight", "nan"], "--weight must be a finite"),
    ("bitlens.dissect.__main__", ["--checkpoint", "c", "--broden", "b", "--out", "o", "--quantile", "0"],
     "--quantile must be greater than 0 and at most 1, got 0"),
    ("bitlens.dissect.__main__", ["--checkpoint", "c", "--broden", "b", "--out", "o", "--batch-size", "0"],
     "--batch-size must be at least 1, got 0"),
])
def test_every_cli_shares_the_schema_ranges(module, args, message, capsys):
    import importlib

    mod = importlib.import_module(module)
    with pytest.raises(SystemExit) as e:
        mod.main(args)
    assert e.value.code == 2 and message in capsys.readouterr().err
