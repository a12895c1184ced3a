"""The pre-run check: every input a run needs, present and readable, before any stage spends time.

`check(params, root, stages)` returns one `Problem` per missing or malformed input of the selected stages: the
params key, the path, what is wrong, the format expected and where the file comes from. Each input is opened with
the loader the run itself uses (COCO captions, image lists, Broden, weights files, code files), so what passes here
is what the stages can read. It also names a pretrained tag that cannot be downloaded (offline host) and a results
disk too small for what the run writes. `python run_all.py --check` prints the list and exits 2; every run does the
same check first and stops before writing anything.
"""
from __future__ import annotations

import fnmatch
import os
import re
import shutil
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

from bitlens import config
from bitlens.cache import file_digest
from bitlens.stages import STAGES, StageSpec

# where each kind of input comes from (data/README.md has the details)
SOURCES = {
    "coco": "COCO 2017 (the COCO dataset's download page: train2017.zip, val2017.zip, annotations_trainval2017.zip)",
    "imagelist": "the IBC release (ssqiao/IBC's README links the pre-resized images and list files)",
    "broden": "Broden broden1_224 (NetDissect-Lite's script/dlbroden.sh)",
    "clip": "OpenAI's CLIP weights (the `clip` package's model URLs: RN101.pt, ViT-B-32.pt), or an open_clip tag "
            "on a host with network",
    "alexnet": "torchvision's AlexNet ImageNet weights (alexnet-owt-7be5be79.pth, torchvision's model download) or "
               "the Places365 AlexNet (alexnet_places365.pth.tar, the Places365 project's model page)",
    "bebr_released": "the BEBR release (ganyk/BEBR's README: dataset/{hash,bebr,float_finetune}/feat_*.npy)",
    "ibc_released": "the IBC release (ssqiao/IBC's README: code files and checkpoints)",
}
GiB = 1 << 30


class InputProblems(ValueError):
    """The inputs of a run are missing or malformed; the message lists every one."""


@dataclass(frozen=True)
class Problem:
    key: str
    path: str
    what: str
    expected: str = ""
    source: str = ""

    def lines(self) -> list[str]:
        out = [f"  - {self.key}: {self.path}" if self.path else f"  - {self.key}", f"      {self.what}"]
        if self.expected:
            out.append(f"      expected: {self.expected}")
        if self.source:
            out.append(f"      get it: {self.source}")
        return out


def needed(key: str, stages: Iterable[StageSpec]) -> bool:
    """Whether one of `stages` opens the input named by params `key` (its `needs`: keys, `*` for any entry)."""
    return any(fnmatch.fnmatchcase(key, pat) for s in stages for pat in s.needs)


def check(params: Mapping[str, Any], root, stages: Sequence[StageSpec] | None = None,
          results: Path | None = None, network: Callable[[], bool] | None = None) -> list[Problem]:
    """Every problem with the inputs of `stages` (default: all of the profile's)."""
    root = Path(root)
    stages = list(STAGES if stages is None else stages)
    problems = [Problem(key, str(path), "missing", _expected(key), hint or _source(key))
                for key, path, hint in config.missing_data_paths(params, root) if needed(key, stages)]
    missing = {p.key for p in problems}
    generated = bool(params["data"]["shapes"]["generate"])
    for key, path, reader in _inputs(params, root):
        if key in missing or not needed(key, stages) or (generated and _generated(params, path, root)):
            continue
        if not path.exists():
            continue  # a path that is not a data_path leaf (e.g. a weights file named by a tag field) is read below
        try:
            reader(path)
        except Exception as e:  # noqa: BLE001 — any failure to read is what the check reports
            problems.append(Problem(key, str(path), _first_line(e), _expected(key), _source(key)))
    problems += _weights(params, root, stages, network or online)
    problems += _targets(params, stages)
    if results is not None:
        problems += _disk(params, root, stages, results)
    return problems


def report(problems: Sequence[Problem], profile: str) -> str:
    lines = [f"profile '{profile}': {len(problems)} input problem(s); nothing was run or written:"]
    for p in problems:
        lines += p.lines()
    lines.append(f"Set the paths in params/{profile}.yaml or with --set KEY=PATH; data/README.md lists every input, "
                 f"its layout and where it comes from. `python run_all.py --profile {profile} --check` checks again.")
    return "\n".join(lines)


# -- the inputs and their readers ----------------------------------------------------------------

def _inputs(params, root):
    """(params key, path, reader) of every file or folder input the profile names."""
    from bitlens.codes import load_codes
    from bitlens.data.broden import Broden
    from bitlens.data.coco import load_coco_captions
    from bitlens.data.imagelist import read_list

    D = params["data"]
    if D["coco"]["root"]:
        path = config.resolve_path(D["coco"]["root"], root)
        for split in (D["coco"]["train_split"], D["coco"]["val_split"]):
            yield "data.coco.root", path, lambda p, s=split: _nonempty(load_coco_captions(p, s), f"COCO {s}")
    for name, L in D["imagelists"].items():
        for part in ("train", "test", "database"):
            if L[part]:
                yield (f"data.imagelists.{name}.{part}", config.resolve_path(L[part], root),
                       lambda p, L=L: _first_image(read_list(p, L["format"], L["num_attributes"]), L, root))
    if D["broden"]["root"]:
        yield "data.broden.root", config.resolve_path(D["broden"]["root"], root), Broden
    if params["bebr"]["released"]["root"]:
        yield "bebr.released.root", config.resolve_path(params["bebr"]["released"]["root"], root), _bebr_released
    for name, exp in params["ibc"]["experiments"].items():
        key = f"ibc.experiments.{name}"
        if exp["backbone_weights"] and exp["backbone"] == "alexnet":
            yield f"{key}.backbone_weights", config.resolve_path(exp["backbone_weights"], root), _alexnet_file
        if exp["released_codes"]:
            yield f"{key}.released_codes", config.resolve_path(exp["released_codes"], root), load_codes
        if exp["released_checkpoint"]:
            yield f"{key}.released_checkpoint", config.resolve_path(exp["released_checkpoint"], root), _ibc_checkpoint


def _nonempty(items, what):
    if not items:
        raise ValueError(f"{what} has no images")


def _first_image(lst, L, root):
    if len(lst) == 0:
        raise ValueError("the list is empty")
    first = config.resolve_path(L["root"], root) / lst.paths[0]
    if not first.is_file():
        raise FileNotFoundError(f"its first image {first} does not exist under the image root {L['root']}")


def _bebr_released(path):
    absent = [f"{d}/{f}" for d in ("hash", "bebr", "float_finetune") for f in ("feat_image.npy", "feat_txt.npy")
              if not (path / d / f).is_file()]
    if absent:
        raise FileNotFoundError(f"lacks {', '.join(absent)}")


def hash_suffix_ok(path) -> bool | None:
    """torchvision names its weights `<name>-<first 8 hex digits of the file's SHA-256>.pth`: True when the file
    matches its name, False when not (a truncated or altered download), None when the name carries no hash."""
    m = re.search(r"-([0-9a-f]{8,})\.[A-Za-z.]+$", Path(path).name)
    if not m:
        return None
    return file_digest(path).startswith(m.group(1))


def _alexnet_file(path):
    from bitlens.ibc.model import load_alexnet

    if hash_suffix_ok(path) is False:
        raise ValueError("its SHA-256 does not start with the hash in its name (torchvision's convention): a "
                         "truncated or altered download; download it again")
    load_alexnet(path)


def _ibc_checkpoint(path):
    from bitlens.ibc.model import infer_architecture

    infer_architecture(path)


# -- CLIP weights: a readable file, or a tag this host can download --------------------------------

def online(timeout: float = 3.0) -> bool:
    """Whether the model hub answers from here (False on offline hosts, and whenever HF_HUB_OFFLINE is set)."""
    if os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false", "False"):
        return False
    try:
        from urllib.parse import urlparse

        from huggingface_hub import constants

        host = urlparse(constants.ENDPOINT).hostname
        with socket.create_connection((host, 443), timeout=timeout):
            return True
    except Exception:  # noqa: BLE001 — no route, no DNS, no package: offline all the same
        return False


def _weights(params, root, stages, network) -> list[Problem]:
    from bitlens import encoders

    B = params["bebr"]
    wanted = []
    if not B["encoder"]["train_tiny"] and not B["released"]["root"]:
        wanted.append(("bebr.encoder.pretrained", B["encoder"]["model"], B["encoder"]["pretrained"]))
    C = B["compat"]["encoder"]
    if not C["train_tiny"]:
        key = "bebr.compat.encoder.weights" if C["weights"] else "bebr.compat.encoder.pretrained"
        wanted.append((key, C["model"], C["weights"] or C["pretrained"]))
    out, answer = [], None
    for key, model, value in wanted:
        if not needed(key, stages) or not value:
            continue
        try:
            resolved = encoders.resolve_weights(model, value, root)
        except ValueError as e:
            out.append(Problem(key, value, _first_line(e), "an open_clip tag or a weights file", SOURCES["clip"]))
            continue
        if Path(resolved).is_file():
            try:
                _clip_file(resolved)
            except Exception as e:  # noqa: BLE001
                out.append(Problem(key, resolved, _first_line(e), _expected(key), SOURCES["clip"]))
            continue
        if tag_cached(model, resolved):
            continue
        answer = network() if answer is None else answer
        if not answer:
            local = "bebr.compat.encoder.weights" if "compat" in key else "bebr.encoder.pretrained"
            out.append(Problem(key, "", f"pretrained tag {value!r} of {model} must be downloaded, and this host "
                                        f"cannot (offline, or HF_HUB_OFFLINE is set)",
                               f"a local weights file instead: --set {local}=data/weights/<file>.pt",
                               SOURCES["clip"]))
    return out


def tag_cached(model: str, tag: str) -> bool:
    """Whether open_clip's download of this tag is already in the local model-hub cache."""
    try:
        import open_clip
        from huggingface_hub import try_to_load_from_cache

        hub = open_clip.get_pretrained_cfg(model, tag).get("hf_hub", "")
    except Exception:  # noqa: BLE001 — no hub package or no such tag: not cached
        return False
    repo, name = os.path.split(hub.rstrip("/")) if not hub.endswith("/") else (hub.rstrip("/"), "")
    for filename in filter(None, (name, "open_clip_model.safetensors", "open_clip_pytorch_model.bin")):
        if isinstance(try_to_load_from_cache(repo, filename), str):
            return True
    return False


def _clip_file(path):
    """A CLIP weights file is a TorchScript archive (OpenAI's) or a state dict torch can read."""
    import zipfile

    import torch

    from bitlens.encoders import is_torchscript

    if is_torchscript(path):
        return
    if zipfile.is_zipfile(path):
        torch.load(path, map_location="meta", weights_only=True)
        return
    raise ValueError("neither a TorchScript archive nor a PyTorch state dict (a truncated download, or an HTML "
                     "page saved under this name?)")


# -- target attributes --------------------------------------------------------------------------

def _targets(params, stages) -> list[Problem]:
    from bitlens.data.attributes import resolve_names
    from bitlens.data.shapes import ATTRIBUTE_NAMES

    out = []
    for name, exp in params["ibc"]["experiments"].items():
        key = f"ibc.experiments.{name}.target_attributes"
        if not exp["target_attributes"] or not needed(key, stages):
            continue
        ds = params["data"]["imagelists"].get(exp["dataset"]) or {}
        try:
            names = resolve_names(ds.get("attribute_names"), None) or resolve_names(exp["attribute_names"], None)
        except ValueError as e:
            out.append(Problem(key, "", _first_line(e)))
            continue
        if names is None and exp["dataset"] == "shapes":
            names = list(ATTRIBUTE_NAMES)
        if names is None:
            out.append(Problem(key, "", f"{exp['target_attributes']} cannot be resolved: the attribute columns have "
                                        f"no names", "attribute_names on the dataset (a list, or 'sun')"))
            continue
        unknown = [t for t in exp["target_attributes"] if t not in names]
        if unknown:
            out.append(Problem(key, "", f"{', '.join(map(repr, unknown))} not among the attribute names",
                               "one of: " + ", ".join(names)))
    return out


# -- disk ---------------------------------------------------------------------------------------

# Sizes of the public datasets, used for the estimate while the files are not there yet: COCO 2017
# (captions_train2017.json: 118,287 images, 591,753 captions; val2017: 5,000 images) and broden1_224 (63,305 images).
COCO_2017 = (118_287, 591_753, 5_000)
BRODEN_224 = 63_305


def estimate_bytes(params, root, stages) -> dict[str, int]:
    """What the selected stages write, roughly (features, checkpoints with optimizer state, activation caches),
    from the dataset sizes on disk (the public sizes while they are absent) and the models' parameter counts."""
    names = {s.name for s in stages}
    out: dict[str, int] = {}
    D = params["data"]
    coco = None
    if D["coco"]["root"]:
        coco = _coco_counts(config.resolve_path(D["coco"]["root"], root), D["coco"])
        if coco is None and not params["data"]["shapes"]["generate"]:
            coco = COCO_2017
    # float32 features: the interleaved training pairs (image, caption) and the evaluation images and captions
    if coco and "10_bebr_features" in names:
        out["10_bebr_features"] = (2 * coco[1] + 2 * coco[2]) * _embed_dim(params["bebr"]["encoder"]["model"]) * 4
    if coco and "13_bebr_compat" in names:
        out["13_bebr_compat"] = (2 * coco[1] + 2 * coco[2]) * _embed_dim(params["bebr"]["compat"]["encoder"]["model"]) * 4
    if "20_ibc_train" in names:
        total = 0
        for exp in params["ibc"]["experiments"].values():
            if exp["released_codes"] or exp["released_checkpoint"] or not exp["dataset"]:
                continue
            n = _ibc_parameters(exp, D["imagelists"].get(exp["dataset"], {}).get("num_classes", 1000))
            snapshots = exp["iterations"] // exp["checkpoint_every"] + 1
            total += n * 4 * (snapshots + 3)  # snapshots + the resumable state (weights and Adam's two moments)
        out["20_ibc_train"] = total
    if "21_ibc_dissect" in names and D["broden"]["root"]:
        index = config.resolve_path(D["broden"]["root"], root) / "index.csv"
        n = None
        if index.is_file():
            with open(index, encoding="utf-8") as f:
                n = sum(1 for _ in f) - 1
        elif not params["data"]["shapes"]["generate"]:
            n = BRODEN_224
        if n:
            item = 2 if params["dissect"]["cache_dtype"] == "float16" else 4
            out["21_ibc_dissect"] = sum(n * _conv_out_size(e) * item for e in params["ibc"]["experiments"].values()
                                        if e["dataset"] and not (e["released_codes"] or e["released_checkpoint"]))
    return out


def _meta_ibc(exp, num_classes: int = 2):
    import torch

    from bitlens.ibc.model import IBC

    with torch.device("meta"):
        return IBC(exp["code_length"], num_classes, exp["backbone"], exp["crop"], exp.get("hidden") or None,
                   width=exp.get("width") or 64)


def _conv_out_size(exp) -> int:
    """Values per image of the dissected layer (K bits × the conv map) at the experiment's crop."""
    import torch

    model = _meta_ibc(exp)
    with torch.no_grad():
        x = model.enc_style.conv_last(model.enc_style.conv_basic(torch.empty(1, 3, exp["crop"], exp["crop"],
                                                                             device="meta")))
    return int(x[0].numel())


def stage_table(params, root) -> str:
    """Markdown: per stage of a profile, the inputs it reads and roughly what it writes (README's "Before your
    first GPU run" is this table for the paper profile)."""
    rows = ["| stage | inputs it needs | writes about |", "|---|---|---|"]
    keys = [k for k, f, _v in config.iter_fields(params) if f.data_path] + ["bebr.encoder.pretrained",
                                                                           "bebr.compat.encoder.pretrained"]
    sizes = estimate_bytes(params, root, STAGES)
    enabled = [s for s in STAGES if not s.section or params.get(s.section, {}).get("enabled", True)]
    chosen = params["pipeline"]["stages"]
    for s in enabled:
        if chosen is not None and s.name not in chosen:
            continue
        own = sorted({k for k in keys if needed(k, [s]) and not _unused(params, k) and _value(params, k)})
        size = sizes.get(s.name)
        rows.append(f"| `{s.name}` | {', '.join(f'`{k}`' for k in own) or '— (upstream results)'} | "
                    f"{'—' if size is None else _human(size)} |")
    return "\n".join(rows)


def _unused(params, key: str) -> bool:
    B = params["bebr"]
    return ((key == "bebr.encoder.pretrained" and (B["encoder"]["train_tiny"] or B["released"]["root"]))
            or (key == "bebr.compat.encoder.pretrained" and B["compat"]["encoder"]["train_tiny"]))


def _value(params, key: str):
    node = params
    for part in key.split("."):
        node = node.get(part) if isinstance(node, Mapping) else None
    return node


def _human(n: int) -> str:
    return f"{n / GiB:.1f} GiB" if n >= GiB / 10 else f"{n / (1 << 20):.0f} MiB"


def _embed_dim(model: str) -> int:
    import open_clip

    from bitlens.encoders import _register_configs

    _register_configs()
    cfg = open_clip.get_model_config(model) or {}
    return int(cfg.get("embed_dim", 512))


def _coco_counts(root: Path, C) -> tuple[int, int, int] | None:
    import json

    try:
        train = json.loads((root / "annotations" / f"captions_{C['train_split']}.json").read_text(encoding="utf-8"))
        val = json.loads((root / "annotations" / f"captions_{C['val_split']}.json").read_text(encoding="utf-8"))
        return len(train["images"]), len(train["annotations"]), len(val["images"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _ibc_parameters(exp, num_classes: int) -> int:
    return sum(p.numel() for p in _meta_ibc(exp, num_classes).parameters())


def estimated_gib(params, root, stages) -> float:
    return sum(estimate_bytes(params, root, stages).values()) / GiB


def _disk(params, root, stages, results: Path) -> list[Problem]:
    need = sum(estimate_bytes(params, root, stages).values())
    where = Path(results)
    while not where.exists() and where != where.parent:
        where = where.parent
    free = shutil.disk_usage(where).free
    if need > free:
        return [Problem("results", str(results), f"the run writes about {need / GiB:.1f} GiB but {where} has "
                                                 f"{free / GiB:.1f} GiB free", "free space, or --results on a "
                                                                                "larger disk")]
    return []


# -- wording ------------------------------------------------------------------------------------

def _first_line(e: BaseException) -> str:
    text = str(e.args[0]) if getattr(e, "args", None) else str(e)
    return text.strip().splitlines()[0] if text.strip() else type(e).__name__


EXPECTED = (
    ("data.coco.root", "a folder with annotations/captions_<split>2017.json and <split>2017/ image folders"),
    ("data.imagelists.*.root", "the folder of images (data_256/) that the list files' paths are relative to"),
    ("data.imagelists.", "a list file: 'relpath label' lines (ImageNet) or 'relpath class a1 … aK' (SUN), paths "
                         "relative to the dataset's root"),
    ("data.broden.root", "a Broden folder: index.csv, category.csv, label.csv, c_<category>.csv, images/"),
    ("bebr.released.root", "a folder with hash/, bebr/, float_finetune/, each holding feat_image.npy, feat_txt.npy"),
    (".backbone_weights", "an AlexNet state dict (.pth) or {'state_dict': …} checkpoint (.pth.tar)"),
    (".released_codes", "a .mat or .npz code file with binary_codes, lab (and GRM)"),
    (".released_checkpoint", "an IBC checkpoint {'state_dict': …} with enc_style.* and GRM"),
    ("bebr.", "an OpenAI TorchScript CLIP file (RN101.pt, ViT-B-32.pt) or an open_clip state dict"),
)


def _expected(key: str) -> str:
    return next((text for pat, text in EXPECTED if pat in key or fnmatch.fnmatch(key, pat)), "")


def _source(key: str) -> str:
    for pat, src in (("coco", "coco"), ("imagelists", "imagelist"), ("broden", "broden"),
                     ("bebr.released", "bebr_released"), ("released_", "ibc_released"),
                     ("backbone_weights", "alexnet"), ("bebr.", "clip")):
        if pat in key:
            return SOURCES[src]
    return ""


def _generated(params, path: Path, root) -> bool:
    shapes = config.resolve_path(params["data"]["shapes"]["root"], root)
    try:
        Path(path).resolve().relative_to(shapes.resolve())
        return True
    except ValueError:
        return False


def main(argv=None) -> int:
    import argparse

    ap = argparse.ArgumentParser(prog="python -m bitlens.preflight", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--profile", default="paper", help="params/<profile>.yaml")
    ap.add_argument("--table", action="store_true", help="print the per-stage inputs and disk table (markdown)")
    args = ap.parse_args(argv)
    root = config.find_root()
    params = config.load_params(args.profile, root=root)
    if args.table:
        print(stage_table(params, root))
        return 0
    problems = check(params, root)
    print(report(problems, params["profile"]) if problems else f"profile '{params['profile']}': every input present")
    return 2 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
