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
