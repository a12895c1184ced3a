"""The IBC network (official `IBC` with `enc_style = AlexEncoderDecouple`), with the official state-dict layout.

    feat      = conv_basic(x)                          AlexNet features (256×6×6 at 224/227 px)
    conv_out  = relu(conv_last(feat))                  K filters = the K bits that get dissected
    b         = sigmoid(hash_layer(pre_hash_layer(flatten(feat))))    the codes (binarised at evaluation)
    real      = real_prediction(classifier(flatten(conv_out [⊙ GRM[y]])))
    hash_pred = hash_prediction(b [⊙ GRM[y]])

Keys: enc_style.{conv_basic, conv_last, classifier, pre_hash_layer, hash_layer, real_prediction.fc,
hash_prediction.fc}.*, GRM; checkpoints are {'state_dict': ...}, so the authors' released checkpoints load
unchanged. Backbones: `alexnet` (torchvision layout) and `small` (a little conv net for 64-px images with the
same interface, for the tiny profile).
"""
from __future__ import annotations

import copy
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F


class _FC(nn.Module):
    """A Linear under the attribute name `fc`, as the official prediction heads."""

    def __init__(self, i: int, o: int):
        super().__init__()
        self.fc = nn.Linear(i, o)

    def forward(self, x):
        return self.fc(x)


def _mlp6(in_dim: int, hidden: int) -> nn.Sequential:
    """AlexNet `classifier[:6]` shape: Dropout, Linear, ReLU, Dropout, Linear, ReLU (keys .1 and .4)."""
    return nn.Sequential(nn.Dropout(), nn.Linear(in_dim, hidden), nn.ReLU(inplace=True), nn.Dropout(),
                         nn.Linear(hidden, hidden), nn.ReLU(inplace=True))


def small_features() -> nn.Sequential:
    """A small conv net for 64-px images (BatchNorm so it trains in a few hundred CPU steps)."""
    return nn.Sequential(
        nn.Conv2d(3, 32, 5, stride=2, padding=2), nn.BatchNorm2d(32), nn.ReLU(inplace=True), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3, padding=1), nn.BatchNorm2d(64), nn.ReLU(inplace=True), nn.MaxPool2d(2),  # 64 → 8
        nn.Conv2d(64, 64, 3, padding=1), nn.BatchNorm2d(64), nn.ReLU(inplace=True),
    )


class AlexEncoderDecouple(nn.Module):
    def __init__(self, code_length: int, num_classes: int, backbone: str = "alexnet", input_size: int = 227,
                 hidden: int | None = None, alexnet: nn.Module | None = None, alexnet_classes: int = 1000):
        super().__init__()
        if backbone == "alexnet":
            import torchvision

            # alexnet_classes: 1000 for ImageNet weights, 365 for the Places365 AlexNet (SUN experiment)
            net = alexnet if alexnet is not None else torchvision.models.alexnet(weights=None,
                                                                                num_classes=alexnet_classes)
            self.conv_basic = net.features
            base_classifier = net.classifier
            hidden = 4096
        elif backbone == "small":
            self.conv_basic = small_features()
            base_classifier = None
            hidden = hidden or 256
        else:
            raise ValueError(f"unknown IBC backbone {backbone!r}; valid: 'alexnet', 'small'")
        with torch.no_grad():
            c, s = self.conv_basic(torch.zeros(1, 3, input_size, input_size)).shape[1:3]
        self.feat_channels, self.feat_size = int(c), int(s)
        flat = c * s * s
        self.conv_last = nn.Conv2d(c, code_length, 3, padding=1)
        nn.init.kaiming_normal_(self.conv_last.weight)
        nn.init.zeros_(self.conv_last.bias)
        if base_classifier is not None:
            # The official module keeps the whole torchvision AlexNet as `alexnet` and shares its features and
            # classifier[:6] as conv_basic / pre_hash_layer; a state dict lists shared tensors under every name, so
            # the authors' checkpoints carry `enc_style.alexnet.*` too. Registering the same modules here makes
            # those checkpoints load strictly and ours load in their code.
            self.alexnet = net
            self.pre_hash_layer = base_classifier[:6]
            if code_length == c:
                self.classifier = copy.deepcopy(base_classifier[:6])
            else:
                # official layout for K ≠ 256: fc1 (new, N(0, 0.01)) and fc2 (a copy of classifier[2:6]),
                # wrapped as classifier = Sequential(Dropout, fc1, fc2)
                self.fc1 = nn.Linear(code_length * s * s, hidden)
                nn.init.normal_(self.fc1.weight, 0, 0.01)
                nn.init.zeros_(self.fc1.bias)
                self.fc2 = nn.Sequential(*copy.deepcopy(list(base_classifier.children())[2:6]))
                self.classifier = nn.Sequential(nn.Dropout(), self.fc1, self.fc2)
        else:
            self.pre_hash_layer = _mlp6(flat, hidden)
            self.classifier = _mlp6(code_length * s * s, hidden)
        self.hash_layer = nn.Linear(hidden, code_length)
        self.real_prediction = _FC(hidden, num_classes)
        self.hash_prediction = _FC(code_length, num_classes)


class IBC(nn.Module):
    def __init__(self, code_length: int = 256, num_classes: int = 100, backbone: str = "alexnet",
                 input_size: int = 227, hidden: int | None = None, alexnet: nn.Module | None = None,
                 alexnet_classes: int = 1000):
        super().__init__()
        self.code_length, self.num_classes, self.backbone = code_length, num_classes, backbone
        self.enc_style = AlexEncoderDecouple(code_length, num_classes, backbone, input_size, hidden, alexnet,
                                             alexnet_classes)
        self.GRM = nn.Parameter(torch.rand(num_classes, code_length))

    # -- pieces ----------------------------------------------------------------------
    def features(self, x):
        return self.enc_style.conv_basic(x)

    def bit_activations(self, x):
        """relu(conv_last(features(x))): the K bit filters' maps, the layer Network Dissection examines."""
        return F.relu(self.enc_style.conv_last(self.features(x)))

    def codes_from_features(self, feat):
        e = self.enc_style
        return torch.sigmoid(e.hash_layer(e.pre_hash_layer(torch.flatten(feat, 1))))

    def codes(self, x):
        """Sigmoid codes in [0, 1]; evaluation binarises them as sign(b − 0.5)."""
        return self.codes_from_features(self.features(x))

    def real_logits(self, conv_out, mask=None):
        if mask is not None:
            conv_out = conv_out * mask[:, :, None, None]
        e = self.enc_style
        return e.real_prediction(e.classifier(torch.flatten(conv_out, 1)))

    def hash_logits(self, b, mask=None):
        return self.enc_style.hash_prediction(b if mask is None else b * mask)

    def forward(self, x):
        feat = self.features(x)
        conv_out = F.relu(self.enc_style.conv_last(feat))
        return self.codes_from_features(feat), conv_out

    @torch.no_grad()
    def renormalize_grm(self) -> None:
        """After every optimizer step: each column divided by its max |value|, then clamped to [0, 1]."""
        g = self.GRM
        col_max = g.abs().max(dim=0, keepdim=True).values.clamp_min(1e-12)
        g.copy_((g / col_max).clamp(0.0, 1.0))

    def lr_x10_parameters(self):
        """The parameter groups trained with 10× the base learning rate (official)."""
        e = self.enc_style
        return [*e.hash_layer.parameters(), *e.hash_prediction.parameters(), *e.conv_last.parameters(),
                *e.real_prediction.parameters(), self.GRM]


def build_from_params(exp: dict, num_classes: int) -> IBC:
    return IBC(exp["code_length"], num_classes, exp["backbone"], exp["crop"], exp.get("hidden") or None,
               alexnet_classes=365 if exp.get("places365") else 1000)


def load_alexnet_weights(path, places365: bool = False) -> nn.Module:
    """torchvision AlexNet with weights from a local file (ImageNet state dict, or the Places365 AlexNet file)."""
    import torchvision

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: AlexNet weights file not found (see data/README.md)")
    obj = torch.load(path, map_location="cpu", weights_only=False)
    sd = obj.get("state_dict", obj) if isinstance(obj, dict) else obj.state_dict()
    sd = {k.replace("module.", ""): v for k, v in sd.items()}
    net = torchvision.models.alexnet(weights=None, num_classes=365 if places365 else 1000)
    missing, unexpected = net.load_state_dict(sd, strict=False)
    if missing:
        raise ValueError(f"{path}: not an AlexNet state dict; missing {', '.join(missing[:6])}")
    return net


def load_checkpoint(model: IBC, path, strict: bool = True) -> dict:
    """Load `{'state_dict': ...}` (ours or the authors'), explaining any key or shape mismatch."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: checkpoint not found")
    ck = torch.load(path, map_location="cpu", weights_only=False)
    sd = ck.get("state_dict", ck) if isinstance(ck, dict) else None
    if not isinstance(sd, dict):
        raise ValueError(f"{path}: expected a checkpoint {{'state_dict': ...}}")
    sd = {k[7:] if k.startswith("module.") else k: v for k, v in sd.items()}
    own = model.state_dict()
    missing = sorted(set(own) - set(sd))
    unexpected = sorted(set(sd) - set(own))
    wrong = sorted(k for k in set(own) & set(sd) if tuple(own[k].shape) != tuple(sd[k].shape))
    if strict and (missing or unexpected or wrong):
        lines = [f"{path} does not fit IBC(code_length={model.code_length}, classes={model.num_classes}, "
                 f"backbone={model.backbone}):"]
        if missing:
            lines.append("  missing keys: " + ", ".join(missing[:8]))
        if unexpected:
            lines.append("  unexpected keys: " + ", ".join(unexpected[:8]))
        for k in wrong[:8]:
            lines.append(f"  {k}: checkpoint {tuple(sd[k].shape)} vs model {tuple(own[k].shape)}")
        raise ValueError("\n".join(lines))
    model.load_state_dict(sd, strict=strict)
    return ck


def infer_architecture(path) -> dict:
    """code_length, num_classes and backbone from a checkpoint's tensors (for the dissect CLI)."""
    ck = torch.load(path, map_location="cpu", weights_only=False)
    sd = ck.get("state_dict", ck)
    sd = {k[7:] if k.startswith("module.") else k: v for k, v in sd.items()}
    if "GRM" not in sd or "enc_style.conv_last.weight" not in sd:
        raise ValueError(f"{path}: not an IBC checkpoint (needs GRM and enc_style.conv_last.weight)")
    C, K = sd["GRM"].shape
    first = sd["enc_style.conv_basic.0.weight"]
    backbone = "alexnet" if tuple(first.shape) == (64, 3, 11, 11) else "small"
    head = sd.get("enc_style.alexnet.classifier.6.weight")
    return {"code_length": int(K), "num_classes": int(C), "backbone": backbone,
            "alexnet_classes": int(head.shape[0]) if head is not None else 1000,
            "hidden": int(sd["enc_style.hash_layer.weight"].shape[1]), "meta": ck.get("meta", {})}
