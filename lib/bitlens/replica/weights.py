"""Replica weights files, in the formats users download, with random values (docs/replica.md).

- OpenAI CLIP `RN101.pt`, `ViT-B-32.pt`: TorchScript archives (torch.jit.load) whose `state_dict()` has
  OpenAI's key names, float16 weights as released (open_clip's `convert_weights_to_fp16`, i.e. OpenAI's own
  conversion), and the integer buffers `input_resolution`, `context_length`, `vocab_size`.
  open_clip's `load_openai_model` (and `build_model_from_openai_state_dict`) read them.
- torchvision `alexnet-owt-<hash>.pth`: a plain AlexNet state dict. torchvision names its files
  `<name>-<first 8 hex digits of the file's SHA-256>.pth` and checks that suffix; a file of random values
  cannot carry the real file's `7be5be79`, so the replica's name carries its own hash.
- Places365 `alexnet_places365.pth.tar`: `{'epoch', 'arch', 'state_dict', 'best_prec1'}` with a 365-class
  head, the features under DataParallel's `features.module.*`, in PyTorch's legacy (pre-1.6) file format.
"""
from __future__ import annotations

import hashlib
import io as _io
from pathlib import Path

import torch
from torch import nn

from bitlens import io

OPENAI_MODELS = {"RN101": "RN101.pt", "ViT-B-32": "ViT-B-32.pt"}
PLACES365_FILE = "alexnet_places365.pth.tar"


class _Holder(nn.Module):
    """A module tree that only holds tensors: TorchScript keeps their dotted names as the archive's state dict."""


def _torchscript_of(state: dict[str, torch.Tensor]) -> torch.jit.ScriptModule:
    root = _Holder()
    for key, value in state.items():
        *path, leaf = key.split(".")
        node = root
        for part in path:
            if not hasattr(node, part):
                node.add_module(part, _Holder())
            node = getattr(node, part)
        node.register_buffer(leaf, value.detach().clone())
    return torch.jit.script(root)


def openai_clip_state(model_name: str, seed: int) -> dict[str, torch.Tensor]:
    """OpenAI's state dict layout for `model_name` (RN101, ViT-B-32) with open_clip's random initialisation."""
    import open_clip
    from open_clip.model import CLIP, CLIPTextCfg, CLIPVisionCfg, convert_weights_to_fp16

    cfg = open_clip.get_model_config(model_name)
    if cfg is None:
        raise ValueError(f"open_clip has no model config {model_name!r}")
    torch.manual_seed(seed)
    model = CLIP(cfg["embed_dim"], CLIPVisionCfg(**cfg["vision_cfg"]), CLIPTextCfg(**cfg["text_cfg"]),
                 quick_gelu=True)
    convert_weights_to_fp16(model)
    state = dict(model.state_dict())
    state["input_resolution"] = torch.tensor(cfg["vision_cfg"]["image_size"])
    state["context_length"] = torch.tensor(cfg["text_cfg"]["context_length"])
    state["vocab_size"] = torch.tensor(cfg["text_cfg"]["vocab_size"])
    return state


def write_openai_clip(path: Path, model_name: str, seed: int) -> Path:
    """An OpenAI-style TorchScript CLIP archive at `path`."""
    scripted = _torchscript_of(openai_clip_state(model_name, seed))
    with io.atomic_path(path) as tmp:
        torch.jit.save(scripted, str(tmp))
    return Path(path)


def torchvision_name(data: bytes, stem: str = "alexnet-owt") -> str:
    """torchvision's file name for these bytes: `<stem>-<sha256[:8]>.pth`."""
    return f"{stem}-{hashlib.sha256(data).hexdigest()[:8]}.pth"


def write_torchvision_alexnet(folder: Path, seed: int) -> Path:
    """torchvision's AlexNet state dict (1,000 classes), named with its own hash suffix."""
    import torchvision

    torch.manual_seed(seed)
    buf = _io.BytesIO()
    torch.save(torchvision.models.alexnet(weights=None).state_dict(), buf)
    data = buf.getvalue()
    return io.write_bytes(Path(folder) / torchvision_name(data), data)


def write_places365_alexnet(path: Path, seed: int) -> Path:
    """The Places365 AlexNet checkpoint: 365 classes, `features.module.*` keys, legacy serialisation."""
    import torchvision

    torch.manual_seed(seed)
    sd = torchvision.models.alexnet(weights=None, num_classes=365).state_dict()
    sd = {(k.replace("features.", "features.module.", 1) if k.startswith("features.") else k): v
          for k, v in sd.items()}
    ck = {"epoch": 90, "arch": "alexnet", "state_dict": sd, "best_prec1": 53.17}
    with io.atomic_path(path) as tmp:
        torch.save(ck, tmp, _use_new_zipfile_serialization=False)
    return Path(path)


def write_weights(folder: Path, seed: int) -> dict[str, str]:
    """Every weights file under `folder`; returns {what: file name}."""
    folder = Path(folder)
    out = {}
    for i, (model, fname) in enumerate(OPENAI_MODELS.items()):
        write_openai_clip(folder / fname, model, seed * 10 + i)
        out[model] = fname
    out["alexnet"] = write_torchvision_alexnet(folder, seed * 10 + 2).name
    out["places365"] = write_places365_alexnet(folder / PLACES365_FILE, seed * 10 + 3).name
    return out
