import pytest
import yaml

from bitlens import config
from bitlens.config import Field, MapOf, ParamsError, validate_section

SCHEMA = {
    "name": Field(str, choices=["a", "b"]),
    "n": Field(int, 3),
    "lr": Field(float, 0.1),
    "ks": Field(list, [1, 5], item_type=int),
    "sub": {"flag": Field(bool, False), "path": Field(str, "x", data_path=True, hint="get it from X")},
    "exps": MapOf({"k": Field(int)}),
}


def test_defaults_fill_and_ints_become_floats():
    out = validate_section({"name": "a", "lr": 1}, SCHEMA)
    assert out["n"] == 3 and out["lr"] == 1.0 and isinstance(out["lr"], float)
    assert out["sub"] == {"flag": False, "path": "x"} and out["exps"] == {}


def test_unknown_key_names_key_and_suggests_valid_ones():
    with pytest.raises(ParamsError) as e:
        validate_section({"name": "a", "sub": {"flga": True}}, SCHEMA)
    msg = str(e.value)
    assert "sub.flga" in msg and "Did you mean 'flag'" in msg and "path" in msg


def test_wrong_type_and_bad_choice_are_errors():
    with pytest.raises(ParamsError, match="'n' = 'three'.*expected integer"):
        validate_section({"name": "a", "n": "three"}, SCHEMA)
    with pytest.raises(ParamsError, match="'name' = 'c' is not one of the valid choices: 'a', 'b'"):
        validate_section({"name": "c"}, SCHEMA)
    with pytest.raises(ParamsError, match=r"ks\[1\]"):
        validate_section({"name": "a", "ks": [1, "x"]}, SCHEMA)
    with pytest.raises(ParamsError, match="'n'.*bool"):
        validate_section({"name": "a", "n": True}, SCHEMA)


def test_required_key_missing_is_an_error():
    with pytest.raises(ParamsError, match="'name' is required"):
        validate_section({}, SCHEMA)
    with pytest.raises(ParamsError, match=r"exps\.e1\.k' is required"):
        validate_section({"name": "a", "exps": {"e1": {}}}, SCHEMA)


def test_set_overrides_parse_yaml_values():
    ov = config.parse_set(["a.b=3", "a.c=[1, 2]", "d=hello", "e=0.5", "f=true"])
    assert ov == {"a.b": 3, "a.c": [1, 2], "d": "hello", "e": 0.5, "f": True}
    with pytest.raises(ParamsError, match="KEY=VALUE"):
        config.parse_set(["novalue"])


@pytest.mark.parametrize("profile", ["tiny", "paper", "released"])
def test_every_profile_validates(profile):
    p = config.load_params(profile)
    assert p["profile"] == profile
    # the resolved params survive a YAML round trip (they are written next to the results)
    assert config.validate(yaml.safe_load(config.dump_params(p))) == p


def test_override_of_unknown_key_is_rejected_with_profile_name():
    with pytest.raises(ParamsError, match=r"tiny.yaml: unknown params key 'data.shapes.n_trian'"):
        config.load_params("tiny", ["data.shapes.n_trian=10"])
    assert config.load_params("tiny", ["data.shapes.n_train=10"])["data"]["shapes"]["n_train"] == 10


def test_unknown_profile_lists_valid_ones():
    with pytest.raises(ParamsError, match="Valid profiles: .*paper.*tiny"):
        config.load_params("tinyy")


def test_paper_profile_lists_missing_data_with_hints(tmp_path):
    p = config.load_params("paper")
    missing = config.missing_data_paths(p, root=tmp_path)
    keys = {k for k, _, _ in missing}
    assert "data.coco.root" in keys and "data.broden.root" in keys
    assert all(h for _, _, h in missing), "every missing path says where to get it"


def test_tiny_profile_needs_no_external_data(tmp_path):
    assert config.missing_data_paths(config.load_params("tiny"), root=tmp_path) == []


# --- strict values and the run_all CLI (issue 11) ----------------------------------------------------------------
import subprocess  # noqa: E402
import sys  # noqa: E402

import pytest  # noqa: E402

from bitlens import config as _config  # noqa: E402

_ROOT = __import__("pathlib").Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("value", [-1, 0])
def test_out_of_range_count_is_refused_naming_key_and_range(value):
    with pytest.raises(_config.ParamsError, match=r"'bebr\.train\.epochs' = %d is out of range: it must be at least 1"
                       % value):
        _config.load_params("tiny", {"bebr.train.epochs": value})


def test_rates_and_thresholds_have_ranges():
    with pytest.raises(_config.ParamsError, match=r"'bebr\.train\.lr' = 0\.0 .*greater than 0"):
        _config.load_params("tiny", {"bebr.train.lr": 0})
    with pytest.raises(_config.ParamsError, match=r"'dissect\.iou_threshold' = 1\.5 .*at least 0 and at most 1"):
        _config.load_params("tiny", {"dissect.iou_threshold": 1.5})
    with pytest.raises(_config.ParamsError, match=r"'ibc\.experiments\.shapes\.expert_bits' = 0 "):
        _config.load_params("tiny", {"ibc.experiments.shapes.expert_bits": 0})
    assert _config.load_params("tiny", {"dissect.iou_threshold": 0.0})["dissect"]["iou_threshold"] == 0.0


def test_every_shipped_profile_is_within_range():
    for profile in _config.list_profiles():
        _config.load_params(profile)


def test_profiles_listed_are_real_profiles():
    assert _config.list_profiles() == ["paper", "released", "tiny"]
    with pytest.raises(_config.ParamsError) as e:
        _config.load_params("nosuch")
    assert "Valid profiles: paper, released, tiny" in str(e.value) and "paper_targets" not in str(e.value)


def _run_all(*args):
    return subprocess.run([sys.executable, str(_ROOT / "run_all.py"), *args], cwd=_ROOT, capture_output=True, text=True)


@pytest.mark.parametrize("args, message", [
    (["--set", "bebr.train.epochs=-1"], "'bebr.train.epochs' = -1 is out of range: it must be at least 1"),
    (["--set", "bebr.train.epochs=0"], "'bebr.train.epochs' = 0 is out of range: it must be at least 1"),
    (["--only", "12_bebr_eval", "--from", "00_data"], "--only and --from contradict each other"),
    (["--profile", "nosuch"], "unknown profile 'nosuch'"),
    (["--bogus"], "unrecognized arguments: --bogus"),
])
def test_run_all_bad_input_exits_2_on_stderr(args, message):
    out = _run_all(*args)
    assert out.returncode == 2 and message in out.stderr and out.stdout == ""


def test_run_all_help_lists_every_flag_with_its_default():
    sys.path.insert(0, str(_ROOT))
    import run_all

    out = _run_all("--help")
    assert out.returncode == 0
    text = " ".join(out.stdout.split())
    for action in run_all.parser()._actions:
        if action.dest == "help":
            continue
        assert action.option_strings[0] in text
    for default in ("(default: tiny)", "(default: None)", "(default: False)", "(default: [])", "(default: results)"):
        assert default in text
    assert text.count("(default:") == len(run_all.parser()._actions) - 1


# --- params that cannot lie (issue 23, finding 6) ----------------------------------------------------------------
def test_a_mapping_set_merges_into_its_section():
    base = config.load_params("tiny")
    p = config.load_params("tiny", ["bebr.train={epochs: 3}"])
    assert p["bebr"]["train"]["epochs"] == 3
    assert p["bebr"]["train"]["batch_size"] == base["bebr"]["train"]["batch_size"] != 4096  # not the schema default
    assert {k: v for k, v in p["bebr"]["train"].items() if k != "epochs"} == \
        {k: v for k, v in base["bebr"]["train"].items() if k != "epochs"}


def test_a_duplicate_key_in_a_profile_names_both_lines(tmp_path):
    text = (config.find_root() / "params" / "tiny.yaml").read_text().replace("seed: 0\n", "seed: 0\nseed: 5\n", 1)
    (tmp_path / "dup.yaml").write_text(text)
    line = next(i for i, l in enumerate(text.splitlines(), 1) if l == "seed: 0")
    with pytest.raises(ParamsError) as e:
        config.load_params(str(tmp_path / "dup.yaml"))
    msg = str(e.value)
    assert "dup.yaml" in msg and "'seed' appears twice" in msg and f"line {line} and line {line + 1}" in msg


@pytest.mark.parametrize("value", [".nan", ".inf", "-.inf"])
def test_nan_and_inf_are_refused(value):
    with pytest.raises(ParamsError, match="bebr.train.lr.*NaN and infinite values are not allowed"):
        config.load_params("tiny", [f"bebr.train.lr={value}"])


def test_list_items_are_validated_one_by_one():
    with pytest.raises(ParamsError, match=r"ibc.sweep.code_lengths\[1\]' = -4 is out of range: it must be at least 1"):
        config.load_params("tiny", ["ibc.sweep.code_lengths=[16, -4]"])


def test_a_misspelt_experiment_suggests_the_closest_one():
    with pytest.raises(ParamsError) as e:
        config.load_params("tiny", ["ibc.experiments.shape.iterations=3"])
    assert "unknown entry 'shape' of 'ibc.experiments'; did you mean 'shapes'?" in str(e.value)


def test_a_missing_profile_file_is_named_as_given(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ParamsError) as e:
        config.load_params("nonexist.yaml")
    msg = str(e.value)
    assert f"profile file {tmp_path / 'nonexist.yaml'} does not exist" in msg and ".yaml.yaml" not in msg
    assert config.load_params("tiny.yaml")["profile"] == "tiny"  # a profile's file name, found in params/
