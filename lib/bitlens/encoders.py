"""CLIP image/text features with open_clip: any model name + pretrained tag or a local weights file.

Features are batched, computed on CUDA when available (fp16 autocast there),
returned as float32 and L2-normalised. For the offline tiny profile there are
no pretrained weights: `train_tiny_clip` trains the small `bitlens-tiny-vit`
config (registered with open_clip from lib/bitlens/model_configs) on the
Shapes captions with open_clip's own ClipLoss.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from bitlens import io
from bitlens.progress import progress

CONFIG_DIR = Path(__file__).parent / "model_configs"
TINY_MODEL = "bitlens-tiny-vit"


def _register_configs() -> None:
    import open_clip

    if TINY_MODEL not in open_clip.list_models():
        open_clip.add_model_config(CONFIG_DIR)


def is_torchscript(path) -> bool:
    """True for a TorchScript archive (what OpenAI ships as `RN101.pt`, `ViT-B-32.pt`): a zip holding compiled
    `code/` and `constants.pkl`, which `torch.load(weights_only=True)` refuses."""
    import zipfile

    try:
        with zipfile.ZipFile(path) as z:
            names = z.namelist()
    except (zipfile.BadZipFile, OSError):
        return False
    return any(n.endswith("/constants.pkl") for n in names) and any("/code/" in n for n in names)


def resolve_weights(model: str, pretrained: str | None, root=None) -> str | None:
    """An open_clip pretrained tag unchanged, or a weights file as an absolute path.

    A relative path resolves against the checkout root, as the pre-run check does (notebooks run with their working
    directory in notebooks/, so a path taken as given would point elsewhere)."""
    import open_clip

    from bitlens.config import resolve_path

    if not pretrained:
        return None
    _register_configs()
    tags = open_clip.list_pretrained_tags_by_model(model) if model in open_clip.list_models() else []
    if pretrained in tags:
        return pretrained
    path = resolve_path(pretrained, root)
    if not path.is_file():
        raise ValueError(f"pretrained {pretrained!r} is neither a file nor a tag of {model} (looked for the file at "
                         f"{path}; tags: {', '.join(tags) or 'none'})")
    return str(path)


def create_model(model: str, pretrained: str | None = None, device: str = "cpu", quick_gelu: bool = False,
                 root=None):
    """(model, preprocess, tokenizer). `pretrained`: an open_clip tag, a local weights file (relative paths are
    taken from the checkout `root`), or None.

    A local file may be a state dict or an OpenAI TorchScript archive (fp16, as released): the archive's tensors
    are loaded into a model built here, so `quick_gelu` applies to both.
    `quick_gelu`: build the text transformer (and ViT towers) with QuickGELU, the activation OpenAI's CLIP was
    trained with. OpenAI weights need it whether they come as the `openai` tag or as a local file; open_clip
    otherwise builds plain GELU for e.g. `RN101` and only warns."""
    import open_clip

    _register_configs()
    if model not in open_clip.list_models():
        raise ValueError(f"unknown open_clip model {model!r}; e.g. RN101, ViT-B-32, {TINY_MODEL}")
    pretrained = resolve_weights(model, pretrained, root)
    scripted = pretrained is not None and Path(pretrained).is_file() and is_torchscript(pretrained)
    try:
        m, _, preprocess = open_clip.create_model_and_transforms(
            model, pretrained=None if scripted else pretrained, device=device, force_quick_gelu=quick_gelu)
    except RuntimeError as e:
        raise RuntimeError(f"cannot load {model} weights {pretrained!r}: {e}. Offline hosts need a local weights "
                           f"file (see data/README.md)") from None
    if scripted:
        load_torchscript_weights(m, pretrained, model)
    return m.eval(), preprocess, open_clip.get_tokenizer(model)


# buffers of OpenAI's TorchScript archives that are settings, not weights
_OPENAI_SETTINGS = ("input_resolution", "context_length", "vocab_size")


def load_torchscript_weights(model, path, name: str = "") -> None:
    """Copy the tensors of a TorchScript CLIP archive into an open_clip model of the same architecture, strictly
    (fp16 values become the model's float32)."""
    try:
        sd = torch.jit.load(str(path), map_location="cpu").state_dict()
    except RuntimeError as e:
        raise ValueError(f"{path}: not a readable TorchScript archive ({e}); re-download the OpenAI weights file") from None
    # scripting saves non-persistent buffers too (open_clip's attention mask); the model rebuilds them itself
    transient = set(dict(model.named_buffers())) - set(model.state_dict())
    sd = {k: v for k, v in sd.items() if k not in _OPENAI_SETTINGS and k not in transient}
    own = model.state_dict()
    missing, unexpected = sorted(set(own) - set(sd)), sorted(set(sd) - set(own))
    wrong = sorted(k for k in set(own) & set(sd) if own[k].shape != sd[k].shape)
    if missing or unexpected or wrong:
        detail = "; ".join(x for x in (
            f"missing {', '.join(missing[:5])}" if missing else "",
            f"unexpected {', '.join(unexpected[:5])}" if unexpected else "",
            ", ".join(f"{k}: file {tuple(sd[k].shape)} vs model {tuple(own[k].shape)}" for k in wrong[:5])) if x)
        raise ValueError(f"{path}: the TorchScript weights do not fit open_clip model {name!r} ({detail}); is it "
                         f"the file of this model (e.g. RN101.pt for RN101, ViT-B-32.pt for ViT-B-32)?")
    model.load_state_dict(sd)


def activation_classes(model) -> set[str]:
    """Names of the activation module classes in a model (QuickGELU vs GELU: which one a CLIP was built with)."""
    names = {"GELU", "QuickGELU", "ReLU", "SiLU"}
    return {type(m).__name__ for m in model.modules() if type(m).__name__ in names}


def _autocast(device: str):
    return torch.autocast("cuda", dtype=torch.float16) if device.startswith("cuda") else torch.autocast(
        "cpu", enabled=False)


@torch.no_grad()
def image_features(model, preprocess, paths, device: str = "cpu", batch_size: int = 256, num_workers: int = 0,
                   desc: str = "image features") -> np.ndarray:
    from bitlens.data.coco import load_rgb

    class _DS(torch.utils.data.Dataset):
        def __len__(self):
            return len(paths)

        def __getitem__(self, i):
            return preprocess(load_rgb(paths[i]))

    dl = torch.utils.data.DataLoader(_DS(), batch_size=batch_size, num_workers=num_workers)
    out = []
    for x in progress(dl, desc=desc):
        with _autocast(device):
            f = model.encode_image(x.to(device))
        out.append(torch.nn.functional.normalize(f.float(), dim=-1).cpu())
    return torch.cat(out).numpy().astype(np.float32)


@torch.no_grad()
def text_features(model, tokenizer, texts, device: str = "cpu", batch_size: int = 1024,
                  desc: str = "text features") -> np.ndarray:
    out = []
    for i in progress(range(0, len(texts), batch_size), desc=desc):
        tok = tokenizer(list(texts[i:i + batch_size])).to(device)
        with _autocast(device):
            f = model.encode_text(tok)
        out.append(torch.nn.functional.normalize(f.float(), dim=-1).cpu())
    return torch.cat(out).numpy().astype(np.float32)


def train_tiny_clip(paths, captions, image_index, out_path, *, epochs: int = 6, batch_size: int = 128,
                    lr: float = 1e-3, seed: int = 0, device: str = "cpu", quick_gelu: bool = False,
                    init_weights=None, log=print) -> Path:
    """Train `bitlens-tiny-vit` contrastively on (image, caption) pairs; saves an open_clip state dict.

    `image_index[j]` is the image of caption j. Each epoch visits every caption once; images are decoded once.
    `init_weights`: a state dict file of this model (e.g. an earlier run's output) to continue from instead of a
    random start; the optimizer and its schedule start afresh, `seed` still orders the batches.
    """
    from open_clip.loss import ClipLoss

    from bitlens.data.coco import load_rgb

    out_path = Path(out_path)
    torch.manual_seed(seed)
    model, preprocess, tokenizer = create_model(TINY_MODEL, None, device, quick_gelu)
    if init_weights is not None:
        if not Path(init_weights).exists():
            raise FileNotFoundError(f"{init_weights}: tiny CLIP weights to continue from not found")
        model.load_state_dict(torch.load(init_weights, map_location=device, weights_only=True))
        model.train()
    images = torch.stack([preprocess(load_rgb(p)) for p in progress(paths, desc="decode images")])
    tokens = tokenizer(list(captions))
    image_index = torch.as_tensor(np.asarray(image_index), dtype=torch.long)
    loss_fn = ClipLoss()
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.05)
    steps = epochs * (len(captions) // batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=max(steps, 1), pct_start=0.1)
    g = torch.Generator().manual_seed(seed)
    model.train()
    for e in range(epochs):
        order = torch.randperm(len(captions), generator=g)
        total = 0.0
        nb = len(captions) // batch_size
        for b in progress(range(nb), desc=f"tiny CLIP epoch {e + 1}/{epochs}"):
            j = order[b * batch_size:(b + 1) * batch_size]
            # one caption per image in a batch: duplicates would be false negatives for the CLIP loss
            _, first = np.unique(image_index[j].numpy(), return_index=True)
            j = j[torch.as_tensor(np.sort(first))]
            img_f, txt_f, scale = model(images[image_index[j]].to(device), tokens[j].to(device))
            loss = loss_fn(img_f, txt_f, scale)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total += float(loss.detach())
        log(f"tiny CLIP epoch {e + 1}: loss {total / max(nb, 1):.4f}")
    model.eval()
    io.torch_save(out_path, model.state_dict())
    return out_path

