"""Profiles: load `params/<profile>.yaml`, apply `--set a.b=c` overrides, validate strictly.

The schema is data (`bitlens.schema.*`, one module per section). Validation
fills defaults, coerces ints to floats where a float is expected, and rejects
anything it does not know with an error that names the key and the valid
choices, so a typo never silently falls back to a default.
"""
from __future__ import annotations

import copy
import difflib
import math
import os
from pathlib import Path
from typing import Any, Mapping, Sequence

import yaml

from bitlens.schema.fields import REQUIRED, Field, MapOf, ParamsError  # noqa: F401  (config's vocabulary)


def _type_name(t) -> str:
    if isinstance(t, tuple):
        return " or ".join(_type_name(x) for x in t)
    return {str: "string", int: "integer", float: "number", bool: "true/false", list: "list", dict: "mapping"}.get(t, t.__name__)


def _coerce(value: Any, f: Field, key: str) -> Any:
    if value is None:
        if f.nullable:
            return None
        raise ParamsError(f"params key '{key}' is null but must be a {_type_name(f.type)}"
                          + (f" ({f.help})" if f.help else ""))
    types = f.type if isinstance(f.type, tuple) else (f.type,)
    ok = False
    for t in types:
        if t is float and isinstance(value, int) and not isinstance(value, bool):
            value, ok = float(value), True
            break
        if t is int and isinstance(value, bool):
            continue
        if isinstance(value, t):
            ok = True
            break
    if not ok:
        raise ParamsError(f"params key '{key}' = {value!r} has type {type(value).__name__}; expected {_type_name(f.type)}"
                          + (f" ({f.help})" if f.help else ""))
    if isinstance(value, float) and not math.isfinite(value):
        raise ParamsError(f"params key '{key}' = {value!r}: NaN and infinite values are not allowed; give a finite "
                          f"number" + (f" ({f.help})" if f.help else ""))
    if isinstance(value, list) and f.item_type is not None:
        item = Field(f.item_type, choices=f.choices, min=f.min, max=f.max, above=f.above, help=f.help)
        return [_coerce(x, item, f"{key}[{i}]") for i, x in enumerate(value)]
    if f.choices is not None and value not in f.choices:
        raise ParamsError(f"params key '{key}' = {value!r} is not one of the valid choices: "
                          + ", ".join(repr(c) for c in f.choices))
    if isinstance(value, (int, float)) and not isinstance(value, bool) and f.out_of_range(value):
        raise ParamsError(f"params key '{key}' = {value!r} is out of range: it must be {f.range_text()}"
                          + (f" ({f.help})" if f.help else ""))
    return value


def _unknown(key: str, name: str, valid: Sequence[str]) -> ParamsError:
    near = difflib.get_close_matches(name, list(valid), n=1)
    hint = f" Did you mean '{near[0]}'?" if near else ""
    return ParamsError(f"unknown params key '{key}'.{hint} Valid keys here: {', '.join(sorted(valid))}")


def validate_section(raw: Any, schema: Mapping[str, Any], prefix: str = "") -> dict:
    if raw is None:
        raw = {}
    if not isinstance(raw, Mapping):
        raise ParamsError(f"params key '{prefix or '<root>'}' must be a mapping, got {type(raw).__name__}")
    out: dict[str, Any] = {}
    for name in raw:
        if name not in schema:
            raise _unknown(f"{prefix}{name}", str(name), [str(k) for k in schema])
    for name, spec in schema.items():
        key = f"{prefix}{name}"
        if isinstance(spec, Field):
            if name in raw:
                out[name] = _coerce(raw[name], spec, key)
            elif spec.default is REQUIRED:
                raise ParamsError(f"params key '{key}' is required" + (f" ({spec.help})" if spec.help else ""))
            else:
                out[name] = copy.deepcopy(spec.default)
        elif isinstance(spec, MapOf):
            sub = raw.get(name, spec.default)
            if sub is None:
                sub = {}
            if not isinstance(sub, Mapping):
                raise ParamsError(f"params key '{key}' must be a mapping of named entries")
            out[name] = {k: _validate_entry(k, v, spec, sub, key) for k, v in sub.items()}
        elif isinstance(spec, Mapping):
            out[name] = validate_section(raw.get(name, {}), spec, f"{key}.")
        else:  # pragma: no cover - schema bug
            raise TypeError(f"bad schema entry at {key}: {spec!r}")
    return out


def _validate_entry(name: Any, value: Any, spec: MapOf, entries: Mapping, key: str) -> dict:
    """One named entry of a MapOf; an entry that lacks a required key and is one typo away from another entry
    is most likely that typo (`--set ibc.experiments.shape.iterations=3`), and is named as such."""
    try:
        return validate_section(value, spec.schema, f"{key}.{name}.")
    except ParamsError as e:
        near = difflib.get_close_matches(str(name), [str(k) for k in entries if k != name], n=1)
        if near and "is required" in str(e):
            raise ParamsError(f"unknown entry '{name}' of '{key}'; did you mean '{near[0]}'? (entries: "
                              f"{', '.join(map(str, entries))}; a new entry needs every required key: {e})") from None
        raise


def schema() -> dict:
    from bitlens.schema import SCHEMA

    return SCHEMA


def validate(raw: Mapping[str, Any]) -> dict:
    return validate_section(raw, schema())


def find_root(start: str | os.PathLike | None = None) -> Path:
    """The kit's checkout: the nearest folder upwards holding `params/` and `pyproject.toml`."""
    env = os.environ.get("BITLENS_ROOT")
    if env:
        return Path(env).resolve()
    here = Path(start or os.getcwd()).resolve()
    for p in [here, *here.parents]:
        if (p / "params").is_dir() and (p / "pyproject.toml").is_file():
            return p
    # an installed (non-editable) package: fall back to the source tree next to the package
    pkg = Path(__file__).resolve().parents[2]
    if (pkg / "params").is_dir():
        return pkg
    raise FileNotFoundError(f"cannot find the bitlens checkout (a folder with params/ and pyproject.toml) above {here}; "
                            "set BITLENS_ROOT to it")


def parse_set(items: Sequence[str] | None) -> dict[str, Any]:
    """`["a.b=3", "c=[1,2]"]` → `{"a.b": 3, "c": [1, 2]}`; values are parsed as YAML scalars/lists."""
    out: dict[str, Any] = {}
    for item in items or []:
        if "=" not in item:
            raise ParamsError(f"--set expects KEY=VALUE (e.g. bebr.train.epochs=3), got {item!r}")
        key, value = item.split("=", 1)
        key = key.strip()
        if not key:
            raise ParamsError(f"--set {item!r}: empty key")
        try:
            out[key] = yaml.safe_load(value) if value.strip() != "" else ""
        except yaml.YAMLError:
            out[key] = value
    return out


def apply_overrides(raw: dict, overrides: Mapping[str, Any]) -> dict:
    raw = copy.deepcopy(raw)
    for dotted, value in overrides.items():
        parts = dotted.split(".")
        node = raw
        for part in parts[:-1]:
            if node.get(part) is None:
                node[part] = {}
            if not isinstance(node[part], dict):
                raise ParamsError(f"--set {dotted}: '{part}' is a value, not a section")
            node = node[part]
        old = node.get(parts[-1])
        if isinstance(value, Mapping) and isinstance(old, dict):
            # `--set bebr.train={epochs: 3}` changes epochs; the section's other keys stay as the profile set them
            node[parts[-1]] = _merged(old, value)
        else:
            node[parts[-1]] = value
    return raw


def _merged(base: dict, update: Mapping) -> dict:
    out = dict(base)
    for k, v in update.items():
        out[k] = _merged(out[k], v) if isinstance(v, Mapping) and isinstance(out.get(k), dict) else v
    return out


class _UniqueKeyLoader(yaml.SafeLoader):
    """YAML's safe loader, except that a key given twice in one mapping is an error (PyYAML keeps the last)."""

    def construct_mapping(self, node, deep=False):
        seen: dict = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            if key in seen:
                raise ParamsError(f"key '{key}' appears twice in one mapping, on line {seen[key]} and line {line}; "
                                  f"YAML would keep only the second silently: delete one of them")
            seen[key] = line
        return super().construct_mapping(node, deep)


def read_yaml(path: Path):
    """A profile's YAML (duplicate keys refused, naming both lines)."""
    try:
        return yaml.load(path.read_text(encoding="utf-8"), Loader=_UniqueKeyLoader)
    except yaml.YAMLError as e:
        raise ParamsError(f"{path}: not valid YAML: {e}") from None
    except ParamsError as e:
        raise ParamsError(f"{path}: {e}") from None


def profile_path(profile: str, root: str | os.PathLike | None = None) -> Path:
    root = Path(root) if root else find_root()
    p = Path(profile)
    if p.suffix in (".yaml", ".yml"):
        if p.exists():
            return p.resolve()
        if not (root / "params" / p.name).exists() or p.parent != Path("."):
            raise ParamsError(f"profile file {p.resolve()} does not exist. Give a profile name "
                              f"({', '.join(list_profiles(root))}) or the path of a profile YAML")
        return root / "params" / p.name
    path = root / "params" / f"{profile}.yaml"
    if not path.exists():
        known = list_profiles(root)
        raise ParamsError(f"unknown profile '{profile}': {path} does not exist. Valid profiles: {', '.join(known)}")
    return path


def list_profiles(root: str | os.PathLike | None = None) -> list[str]:
    """Names of the profiles in `params/`: the YAML files with a top-level `profile:` key
    (`paper_targets.yaml` holds published numbers, not a profile)."""
    root = Path(root) if root else find_root()
    out = []
    for x in sorted((root / "params").glob("*.yaml")):
        try:
            data = yaml.safe_load(x.read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError):
            continue
        if isinstance(data, dict) and "profile" in data:
            out.append(x.stem)
    return out


def load_params(profile: str = "tiny", overrides: Mapping[str, Any] | Sequence[str] | None = None,
                root: str | os.PathLike | None = None) -> dict:
    """Resolved, validated params of a profile. `overrides` is a dotted-key mapping or `KEY=VALUE` strings."""
    path = profile_path(profile, root)
    raw = read_yaml(path) or {}
    if overrides:
        if not isinstance(overrides, Mapping):
            overrides = parse_set(list(overrides))
        raw = apply_overrides(raw, overrides)
    try:
        return validate(raw)
    except ParamsError as e:
        raise ParamsError(f"{path.name}: {e}") from None


def iter_fields(params: Mapping[str, Any], schema_: Mapping[str, Any] | None = None, prefix: str = ""):
    """Yield (dotted key, Field, value) for every leaf of validated params."""
    schema_ = schema() if schema_ is None else schema_
    for name, spec in schema_.items():
        key = f"{prefix}{name}"
        if isinstance(spec, Field):
            yield key, spec, params.get(name)
        elif isinstance(spec, MapOf):
            for k, v in (params.get(name) or {}).items():
                yield from iter_fields(v, spec.schema, f"{key}.{k}.")
        elif isinstance(spec, Mapping):
            yield from iter_fields(params.get(name) or {}, spec, f"{key}.")


def resolve_path(value: str | os.PathLike, root: str | os.PathLike | None = None) -> Path:
    p = Path(os.path.expanduser(str(value)))
    return p if p.is_absolute() else (Path(root) if root else find_root()) / p


def missing_data_paths(params: Mapping[str, Any], root: str | os.PathLike | None = None) -> list[tuple[str, Path, str]]:
    """Every `data_path` field whose file/folder does not exist: (key, path, where to get it).

    Paths under a generated Shapes world are skipped when the profile generates it
    (`data.shapes.generate`), since stage 00_data creates them.
    """
    generate = bool(params.get("data", {}).get("shapes", {}).get("generate", False))
    out = []
    for key, f, value in iter_fields(params):
        if not f.data_path or value in (None, ""):
            continue
        if generate and key.startswith(("data.", "bebr.", "ibc.", "dissect.")) and _under_shapes(value, params):
            continue
        path = resolve_path(value, root)
        if not path.exists():
            out.append((key, path, f.hint or _sibling_hint(params, key)))
    return out


def _sibling_hint(params: Mapping[str, Any], key: str) -> str:
    """A named entry (e.g. one of `data.imagelists`) may carry its own `hint` value."""
    node: Any = params
    for part in key.split(".")[:-1]:
        node = node.get(part, {}) if isinstance(node, Mapping) else {}
    hint = node.get("hint", "") if isinstance(node, Mapping) else ""
    return hint if isinstance(hint, str) else ""


def _under_shapes(value: str, params: Mapping[str, Any]) -> bool:
    shapes_root = str(params.get("data", {}).get("shapes", {}).get("root", "data/shapes")).rstrip("/")
    return str(value).startswith(shapes_root)


def dump_params(params: Mapping[str, Any]) -> str:
    return yaml.safe_dump(dict(params), sort_keys=False, default_flow_style=None)
