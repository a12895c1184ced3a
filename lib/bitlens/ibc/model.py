"""The IBC network (official `IBC` with `enc_style = AlexEncoderDecouple`), in the official state-dict layout.

    feat      = conv_basic(x)                                   AlexNet features: 256×6×6 at 224/227 px
    conv_out  = relu(conv_last(feat))                           the K bit filters (what dissection examines)
    b         = sigmoid(hash_layer(pre_hash_layer(flatten(feat))))   the codes; evaluation uses sign(b − 0.5)
    real      = real_prediction(classifier(flatten(conv_out [⊙ GRM[y] per channel])))
    hash_pred = hash_prediction(b [⊙ GRM[y]])

The official module keeps the whole torchvision AlexNet as `enc_style.alexnet` and shares its `features` and
`classifier[:6]` as `conv_basic` and `pre_hash_layer`; for K ≠ 256 it also keeps `fc1`/`fc2` beside the
`classifier` that wraps them. A state dict lists a shared tensor under every name, so the authors' checkpoints
hold all of these keys; this module registers the same submodules so they load with `strict=True` and ours load
in their code. The `small` backbone (tiny profile) has the same interface without the AlexNet aliases.
"""
from __future__ import annotations

import copy
import math
from pathlib import Path
from typing import NamedTuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from bitlens import checkpoint
from bitlens.labels import MISSING_LABEL

BACKBONES = ("alexnet", "small")
ALEXNET_HIDDEN = 4096
SMALL_STRIDE = 8  # the small backbone maps a 64-px input to an 8×8 grid


class IBCOutput(NamedTuple):
    codes: torch.Tensor  # sigmoid codes (N, K)
    conv_out: torch.Tensor  # relu(conv_last(features)) (N, K, s, s)
    hash_logits: torch.Tensor  # hash_prediction(codes [⊙ GRM[y]])
    real_logits: torch.Tensor  # real_prediction(classifier(conv_out [⊙ GRM[y]]))


class LinearBlock(nn.Module):
    """A Linear under the attribute name `fc`: the official prediction heads' layout (`*_prediction.fc.*`)."""

    def __init__(self, in_dim: int, out_dim: int):
        super().__init__()
        self.fc = nn.Linear(in_dim, out_dim)

    def forward(self, x):
        return self.fc(x.flatten(1))


def _mlp6(in_dim: int, hidden: int, dropout: float) -> nn.Sequential:
    """AlexNet's `classifier[:6]` shape (Dropout, Linear, ReLU, Dropout, Linear, ReLU: keys .1 and .4)."""
    return nn.Sequential(nn.Dropout(dropout), nn.Linear(in_dim, hidden), nn.ReLU(inplace=True), nn.Dropout(dropout),
                         nn.Linear(hidden, hidden), nn.ReLU(inplace=True))


def small_features(width: int = 64) -> nn.Sequential:
    """A small conv net for 64-px images → width×8×8 (BatchNorm, so it trains in a few hundred CPU steps; the
    resolution drops early so that a step costs a few million multiply-adds per image). The first convolution
    pads by replicating the border pixels: zero padding of a normalised image draws a false edge around every
    image, which its filters (and the bits above them) then detect."""
    w = width
    return nn.Sequential(
        nn.Conv2d(3, w // 2, 5, stride=2, padding=2, padding_mode="replicate"), nn.BatchNorm2d(w // 2),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(2),  # 64 → 16
        nn.Conv2d(w // 2, w, 3, padding=1), nn.BatchNorm2d(w), nn.ReLU(inplace=True), nn.MaxPool2d(2),  # → 8
        nn.Conv2d(w, w, 3, padding=1), nn.BatchNorm2d(w), nn.ReLU(inplace=True),
        nn.Conv2d(w, w, 3, padding=1), nn.BatchNorm2d(w), nn.ReLU(inplace=True),
    )


def _kaiming_(module: nn.Module) -> None:
    """The official trainer's `weights_init('kaiming')` on the heads: kaiming-normal fan-in weights, zero bias."""
    for m in module.modules():
        if isinstance(m, (nn.Linear, nn.Conv2d)):
            nn.init.kaiming_normal_(m.weight, a=0, mode="fan_in")
            if m.bias is not None:
                nn.init.zeros_(m.bias)


class AlexEncoderDecouple(nn.Module):
    def __init__(self, code_length: int, num_classes: int, backbone: str = "alexnet", input_size: int = 227,
                 hidden: int | None = None, alexnet: nn.Module | None = None, alexnet_classes: int = 1000,
                 width: int = 64, dropout: float = 0.5):
        super().__init__()
        if code_length < 1:
            raise ValueError(f"code_length must be ≥ 1, got {code_length}")
        if backbone == "alexnet":
            import torchvision

            if alexnet is None:
                alexnet = torchvision.models.alexnet(weights=None, num_classes=alexnet_classes)
            # the real branch starts from its own copy of the (pretrained) classifier, as the official
            # second `alexnet(pretrained=True)` instance
            cls_copy = copy.deepcopy(alexnet.classifier)
            self.alexnet = alexnet
            self.conv_basic = alexnet.features
            hidden = ALEXNET_HIDDEN
        elif backbone == "small":
            self.conv_basic = small_features(width)
            hidden = hidden or 128
        else:
            raise ValueError(f"unknown IBC backbone {backbone!r}; valid: {', '.join(BACKBONES)}")
        with torch.no_grad():
            was = self.conv_basic.training
            c, s = self.conv_basic.eval()(torch.zeros(1, 3, input_size, input_size)).shape[1:3]
            self.conv_basic.train(was)
        self.feat_channels, self.feat_size, self.hidden = int(c), int(s), int(hidden)
        self.conv_last = nn.Conv2d(c, code_length, kernel_size=3, padding=1)
        nn.init.kaiming_normal_(self.conv_last.weight)
        nn.init.zeros_(self.conv_last.bias)
        if backbone == "alexnet":
            if code_length != c:
                self.fc1 = nn.Linear(code_length * s * s, hidden)
                self.fc2 = nn.Sequential(*list(cls_copy.children())[2:6])
                nn.init.normal_(self.fc1.weight, 0, 0.01)
                nn.init.zeros_(self.fc1.bias)
                self.classifier = nn.Sequential(nn.Dropout(), self.fc1, self.fc2)
            else:
                self.classifier = nn.Sequential(*list(cls_copy.children())[:6])
            self.pre_hash_layer = nn.Sequential(*list(alexnet.classifier.children())[:6])
        else:
            self.classifier = _mlp6(code_length * s * s, hidden, dropout)
            self.pre_hash_layer = _mlp6(c * s * s, hidden, dropout)
        self.hash_layer = nn.Linear(hidden, code_length)
        self.real_prediction = LinearBlock(hidden, num_classes)
        self.hash_prediction = LinearBlock(code_length, num_classes)


class IBC(nn.Module):
    """The IBC model. `forward(x)` → IBCOutput; `forward(x, labels, masked)` gates the masked rows by GRM[labels]."""

    def __init__(self, code_length: int = 256, num_classes: int = 100, backbone: str = "alexnet",
                 input_size: int = 227, hidden: int | None = None, alexnet: nn.Module | None = None,
                 alexnet_classes: int = 1000, width: int = 64, dropout: float = 0.5):
        super().__init__()
        self.code_length, self.num_classes, self.backbone = int(code_length), int(num_classes), backbone
        self.input_size = int(input_size)
        self.enc_style = AlexEncoderDecouple(code_length, num_classes, backbone, input_size, hidden, alexnet,
                                             alexnet_classes, width, dropout)
        self.GRM = nn.Parameter(torch.rand(num_classes, code_length))
        e = self.enc_style
        for head in (e.hash_layer, e.hash_prediction, e.real_prediction):
            _kaiming_(head)

    def architecture(self) -> dict:
        """What `load_ibc_checkpoint` needs to rebuild this model (stored in our checkpoints as `arch`)."""
        e = self.enc_style
        arch = {"code_length": self.code_length, "num_classes": self.num_classes, "backbone": self.backbone,
                "input_size": self.input_size, "hidden": e.hidden}
        if self.backbone == "alexnet":
            arch["alexnet_classes"] = int(e.alexnet.classifier[6].out_features)
        else:
            arch["width"] = e.feat_channels
            arch["dropout"] = float(e.classifier[0].p)
        return arch

    # -- the pieces -------------------------------------------------------------------
    def features(self, x):
        return self.enc_style.conv_basic(x)

    def bit_activations(self, x):
        """relu(conv_last(features(x))), (N, K, s, s): the K bit filters' maps that Network Dissection examines."""
        return F.relu(self.enc_style.conv_last(self.features(x)))

    def codes_from_features(self, feat):
        e = self.enc_style
        return torch.sigmoid(e.hash_layer(e.pre_hash_layer(torch.flatten(feat, 1))))

    def codes(self, x):
        """Sigmoid codes in [0, 1] (N, K); evaluation binarises them as sign(b − 0.5)."""
        return self.codes_from_features(self.features(x))

    def grm_mask(self, labels, masked=None):
        """(N, K) channel gates: GRM[label] for the rows to mask (`masked`, default all), ones elsewhere and for
        missing labels (99999), which the official code leaves unmasked."""
        labels = labels.long()
        gate = labels != MISSING_LABEL
        if masked is not None:
            gate = gate & masked.to(gate.device, torch.bool)
        rows = self.GRM[torch.where(gate, labels, torch.zeros_like(labels))]
        return torch.where(gate[:, None], rows, torch.ones_like(rows))

    def real_logits(self, conv_out, mask=None):
        """real_prediction(classifier(conv_out)); `mask` (N, K) multiplies each channel of conv_out."""
        if mask is not None:
            conv_out = conv_out * mask[:, :, None, None]
        e = self.enc_style
        return e.real_prediction(e.classifier(torch.flatten(conv_out, 1)))

    def hash_logits(self, b, mask=None):
        return self.enc_style.hash_prediction(b if mask is None else b * mask)

    def forward(self, x, labels=None, masked=None) -> IBCOutput:
        """Unmasked (labels None), or the rows selected by `masked` (default: all) gated by GRM[labels].

        A training step forwards both halves at once with `masked` marking half 2: the gates are per sample,
        so this equals the official two calls (the AlexNet backbone has no batch statistics)."""
        feat = self.features(x)
        conv_out = F.relu(self.enc_style.conv_last(feat))
        b = self.codes_from_features(feat)
        mask = None if labels is None else self.grm_mask(labels, masked)
        return IBCOutput(b, conv_out, self.hash_logits(b, mask), self.real_logits(conv_out, mask))

    # -- training helpers ---------------------------------------------------------------
    @torch.no_grad()
    def renormalize_grm(self) -> None:
        """After every optimizer step: each column divided by its max |value|, then clamped to [0, 1].

        An all-zero column (never seen in practice) is left at zero instead of becoming NaN."""
        g = self.GRM
        col_max = g.abs().max(dim=0, keepdim=True).values
        g.copy_(torch.where(col_max > 0, g / col_max.clamp_min(torch.finfo(g.dtype).tiny), g).clamp(0.0, 1.0))

    def param_groups(self, lr: float, conv_last_mult: float = 10.0) -> list[dict]:
        """The official optimizer groups, in the official order; ×10 lr for hash_layer, hash_prediction,
        conv_last, real_prediction and GRM. AlexNet's own last layer (`alexnet.classifier.6`) is unused and
        stays out, as in the official trainer. `conv_last_mult` replaces conv_last's ×10 (the tiny profile's
        small backbone loses most of its bit filters to ReLU death within a hundred steps at ×10)."""
        e = self.enc_style
        return [{"params": list(e.conv_basic.parameters()), "lr": lr},
                {"params": list(e.pre_hash_layer.parameters()), "lr": lr},
                {"params": list(e.hash_layer.parameters()), "lr": lr * 10},
                {"params": list(e.hash_prediction.parameters()), "lr": lr * 10},
                {"params": list(e.conv_last.parameters()), "lr": lr * conv_last_mult},
                {"params": list(e.classifier.parameters()), "lr": lr},
                {"params": list(e.real_prediction.parameters()), "lr": lr * 10},
                {"params": [self.GRM], "lr": lr * 10}]


# -- building and loading ------------------------------------------------------------------

def build_ibc(code_length: int, num_classes: int, backbone: str = "alexnet", input_size: int | None = None,
              hidden: int | None = None, backbone_weights=None, width: int = 64, dropout: float = 0.5,
              alexnet_classes: int = 1000, seed: int | None = None) -> IBC:
    """An IBC model. `backbone_weights`: a local weights file — for `alexnet` a torchvision AlexNet state dict
    (ImageNet or Places365: features, pre-hash MLP and real-branch classifier start from it), for `small` a
    state dict of `small_features(width)` (loaded into `conv_basic`).

    `seed` seeds torch before any weight is drawn (the official script seeds first, then builds)."""
    if seed is not None:
        torch.manual_seed(seed)
    input_size = input_size or (227 if backbone == "alexnet" else 64)
    net = load_alexnet(backbone_weights) if backbone_weights and backbone == "alexnet" else None
    model = IBC(code_length, num_classes, backbone, input_size, hidden, net, alexnet_classes, width, dropout)
    if backbone_weights and backbone == "small":
        load_small_features(model.enc_style.conv_basic, backbone_weights)
    return model


def load_small_features(features: nn.Module, path) -> None:
    """Load a state dict (or `{'state_dict': ...}`) into the small backbone, strictly."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: small-backbone weights file not found")
    obj = checkpoint.torch_load(path)
    sd = obj.get("state_dict", obj) if isinstance(obj, dict) else None
    if not isinstance(sd, dict):
        raise ValueError(f"{path}: expected a state dict of small_features() (or {{'state_dict': ...}})")
    checkpoint.load_strict(features, sd, path, "the small backbone (small_features)", FIT_HINT)


def build_model(code_length: int, num_classes: int, backbone: str = "alexnet", input_size: int | None = None,
                hidden: int | None = None, backbone_weights=None, width: int = 64, dropout: float = 0.5,
                bit_init: str = "kaiming", seed: int | None = None) -> IBC:
    """A model to train: build_ibc(), then, for `bit_init='readouts'`, the bit filters started from the concept
    read-outs that the pretraining keeps beside `backbone_weights`."""
    model = build_ibc(code_length, num_classes, backbone, input_size, hidden, backbone_weights, width, dropout,
                      seed=seed)
    if bit_init == "readouts":
        if backbone != "small" or not backbone_weights:
            raise ValueError("bit_init: readouts needs backbone: small and a backbone_weights file written by "
                             "bitlens.ibc.pretrain (its read-outs lie beside it); set bit_init: kaiming otherwise")
        # not part of the state dict: 20_ibc_train records it (run_summary), 21_ibc_dissect compares it with the labels
        model.bit_init_concepts = init_bits_from_readouts(model, load_readouts(readouts_path(backbone_weights)))
    return model


READOUT_ORDER = ("shape", "color", "texture")


def readouts_path(weights_path) -> Path:
    """Where the concept pretraining keeps the read-outs of a weights file: `<weights>.readouts.pt` beside it."""
    weights_path = Path(weights_path)
    return weights_path.with_name(weights_path.name + ".readouts.pt")


def load_readouts(path) -> dict:
    """The concept read-outs that bitlens.ibc.pretrain keeps beside a backbone weights file."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: concept read-outs not found. bit_init: readouts starts the bit filters "
                                f"from the read-outs that 20_ibc_train's pretraining writes beside backbone_weights; "
                                f"re-run 20_ibc_train (or python run_all.py --from 20_ibc_train), or set "
                                f"bit_init: kaiming")
    obj = checkpoint.torch_load(path)
    if not isinstance(obj, dict) or any(k not in obj or not {"weight", "bias"} <= set(obj[k]) for k in READOUT_ORDER):
        raise ValueError(f"{path}: expected {{category: {{'weight', 'bias', 'concepts'}}}} for "
                         f"{', '.join(READOUT_ORDER)} (bitlens.ibc.pretrain.readouts_from_heads)")
    return obj


@torch.no_grad()
def init_bits_from_readouts(model: IBC, readouts: dict) -> list[str]:
    """Start bit k's filter (conv_last) as the read-out of the k-th concept — shapes, then colours, then
    textures — and leave the bits beyond them at their kaiming draw. Returns the concept of each initialised bit.

    The filter of concept j is its read-out minus the mean read-out of the other concepts of its category, on
    the centre tap (the other taps zero): a cell scores by how much more it looks like j than like the category's
    other concepts. Against the background row instead, the bit would rank any confident object cell high, and
    its top activations would land on every texture alike (measured: texture IoUs of 0.04–0.06 instead of
    0.08)."""
    conv = model.enc_style.conv_last
    K, C = conv.weight.shape[:2]
    names = []
    for cat in READOUT_ORDER:
        W, b = readouts[cat]["weight"].float(), readouts[cat]["bias"].float()
        if W.ndim != 2 or W.shape[1] != C or b.shape != (W.shape[0],):
            raise ValueError(f"{cat} read-out of shape {tuple(W.shape)} does not fit conv_last's {C} input "
                             f"channels (a read-out file from another backbone width?)")
        concepts = readouts[cat].get("concepts") or [f"{cat}{j}" for j in range(1, W.shape[0])]
        for j in range(1, W.shape[0]):
            if len(names) == K:
                return names
            others = [i for i in range(1, W.shape[0]) if i != j]
            k = len(names)
            conv.weight[k].zero_()
            conv.weight[k, :, conv.weight.shape[2] // 2, conv.weight.shape[3] // 2] = W[j] - W[others].mean(0)
            conv.bias[k] = b[j] - b[others].mean()
            names.append(concepts[j - 1])
    return names


def load_alexnet(path) -> nn.Module:
    """torchvision AlexNet with the weights of a local file: the ImageNet state dict (`alexnet-owt-*.pth`) or the
    Places365 AlexNet (`alexnet_places365.pth.tar`, `{'state_dict'}` with DataParallel names, 365 classes)."""
    import torchvision

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: AlexNet weights file not found; see data/README.md (torchvision's "
                                f"alexnet-owt-7be5be79.pth for ImageNet, alexnet_places365.pth.tar for SUN)")
    obj = checkpoint.torch_load(path)
    if isinstance(obj, nn.Module):
        obj = obj.state_dict()
    sd = obj.get("state_dict", obj) if isinstance(obj, dict) else None
    if not isinstance(sd, dict) or not all(torch.is_tensor(v) for v in sd.values()):
        raise ValueError(f"{path}: expected an AlexNet state dict (or {{'state_dict': ...}})")
    sd = checkpoint.strip_module(sd)
    if "classifier.6.weight" not in sd:
        raise ValueError(f"{path}: not an AlexNet state dict (no 'classifier.6.weight'; keys start with "
                         f"{', '.join(list(sd)[:4])})")
    net = torchvision.models.alexnet(weights=None, num_classes=int(sd["classifier.6.weight"].shape[0]))
    checkpoint.load_strict(net, sd, path, "torchvision AlexNet", FIT_HINT)
    return net


FIT_HINT = ("build the model with the checkpoint's code length, classes and backbone, or use "
            "bitlens.ibc.model.load_ibc_checkpoint, which reads them from the file")


def read_state_dict(path) -> tuple[dict, dict]:
    """(state dict without `module.` prefixes, the whole checkpoint dict) of an IBC checkpoint file."""
    return checkpoint.read_state_dict(path, "an IBC checkpoint")


def load_checkpoint(model: IBC, path) -> dict:
    """Load `{'state_dict': ...}` (ours or the authors') into `model`, strictly; a mismatch raises a ValueError
    listing the missing and unexpected keys and the shape differences. Returns the checkpoint dict."""
    sd, ck = read_state_dict(path)
    arch = ", ".join(f"{k}={v}" for k, v in model.architecture().items())
    checkpoint.load_strict(model, sd, path, f"IBC({arch})", FIT_HINT)
    return ck


def infer_architecture(path) -> dict:
    """Architecture of an IBC checkpoint, read from its tensors (and from `arch`, which ours also store)."""
    sd, ck = read_state_dict(path)
    need = ("GRM", "enc_style.conv_last.weight", "enc_style.hash_layer.weight", "enc_style.conv_basic.0.weight")
    absent = [k for k in need if k not in sd]
    if absent:
        raise ValueError(f"{path}: not an IBC checkpoint (missing {', '.join(absent)})")
    C, K = (int(n) for n in sd["GRM"].shape)
    first = sd["enc_style.conv_basic.0.weight"]
    backbone = "alexnet" if tuple(first.shape) == (64, 3, 11, 11) else "small"
    hidden = int(sd["enc_style.hash_layer.weight"].shape[1])
    arch = {"code_length": K, "num_classes": C, "backbone": backbone, "hidden": hidden}
    if backbone == "alexnet":
        arch["input_size"] = 227
        head = sd.get("enc_style.alexnet.classifier.6.weight")
        arch["alexnet_classes"] = int(head.shape[0]) if head is not None else 1000
    else:
        c = int(sd["enc_style.conv_last.weight"].shape[1])
        flat = int(sd["enc_style.pre_hash_layer.1.weight"].shape[1])
        arch.update(width=c, input_size=int(round(math.sqrt(flat / c))) * SMALL_STRIDE)
    saved = ck.get("arch") if isinstance(ck.get("arch"), dict) else {}
    arch.update({k: v for k, v in saved.items() if k in ("input_size", "dropout")})
    arch["meta"] = ck.get("meta", {})
    return arch


def load_ibc_checkpoint(path, input_size: int | None = None, device: str = "cpu") -> IBC:
    """An IBC model built from a checkpoint's own shapes and loaded from it (eval mode), ours or the authors'.

    `input_size`: the image side the model will see (default: 227 AlexNet, the training crop for ours)."""
    arch = infer_architecture(path)
    kw = {k: arch[k] for k in ("width", "dropout") if k in arch}
    model = IBC(arch["code_length"], arch["num_classes"], arch["backbone"], input_size or arch["input_size"],
                arch["hidden"] if arch["backbone"] == "small" else None,
                alexnet_classes=arch.get("alexnet_classes", 1000), **kw)
    load_checkpoint(model, path)
    return model.to(device).eval()
