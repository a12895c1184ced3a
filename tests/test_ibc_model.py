"""IBC model: the official state-dict layout, checkpoint loading, GRM renormalisation, masked forward."""
import pytest
import torch
import torch.nn.functional as F
import torchvision

from bitlens.ibc.model import (IBC, build_ibc, infer_architecture, load_alexnet, load_checkpoint,
                               load_ibc_checkpoint)


def official_layout(K: int, C: int, head_classes: int = 1000) -> dict[str, tuple]:
    """Key → shape of the authors' IBC state dict, written out from the architecture description: the whole
    torchvision AlexNet under `alexnet`, its features shared as `conv_basic`, its classifier[:6] as
    `pre_hash_layer`; for K = 256 a copy of classifier[:6] as `classifier`, else Dropout → fc1 → fc2 (= the
    copy's classifier[2:6], a nested Sequential) registered both as `classifier.1/.2` and as `fc1`/`fc2`."""
    alex = {k: tuple(v.shape) for k, v in torchvision.models.alexnet(num_classes=head_classes).state_dict().items()}
    feats = {k[len("features."):]: s for k, s in alex.items() if k.startswith("features.")}
    mlp = {"1.weight": (4096, 9216), "1.bias": (4096,), "4.weight": (4096, 4096), "4.bias": (4096,)}
    out = {"GRM": (C, K)}
    out.update({f"enc_style.alexnet.{k}": s for k, s in alex.items()})
    out.update({f"enc_style.conv_basic.{k}": s for k, s in feats.items()})
    out.update({f"enc_style.pre_hash_layer.{k}": s for k, s in mlp.items()})
    out.update({"enc_style.conv_last.weight": (K, 256, 3, 3), "enc_style.conv_last.bias": (K,),
                "enc_style.hash_layer.weight": (K, 4096), "enc_style.hash_layer.bias": (K,),
                "enc_style.real_prediction.fc.weight": (C, 4096), "enc_style.real_prediction.fc.bias": (C,),
                "enc_style.hash_prediction.fc.weight": (C, K), "enc_style.hash_prediction.fc.bias": (C,)})
    if K == 256:
        out.update({f"enc_style.classifier.{k}": s for k, s in mlp.items()})
    else:
        fc1 = {"weight": (4096, K * 36), "bias": (4096,)}
        fc2 = {"2.weight": (4096, 4096), "2.bias": (4096,)}
        for prefix, part in (("fc1", fc1), ("classifier.1", fc1), ("fc2", fc2), ("classifier.2", fc2)):
            out.update({f"enc_style.{prefix}.{k}": s for k, s in part.items()})
    return out


def cheap_tensors(layout: dict) -> dict:
    """One distinct constant per key, stored as a 1-element storage expanded to the shape (a small file)."""
    return {k: torch.full((1,), float(i)).expand(s) for i, (k, s) in enumerate(layout.items())}


@pytest.mark.parametrize("K", [256, 64])
def test_alexnet_ibc_has_exactly_the_official_keys_and_shapes(K):
    sd = IBC(K, 100, "alexnet", 227).state_dict()
    assert {k: tuple(v.shape) for k, v in sd.items()} == official_layout(K, 100)


def test_an_official_checkpoint_loads_unchanged(tmp_path):
    # the authors' 256-bit SUN model: AlexNet head with 365 Places classes, 397 scene classes
    sd = cheap_tensors(official_layout(256, 397, head_classes=365))
    for k in list(sd):  # shared modules: one tensor under two names, as in any real checkpoint
        if k.startswith("enc_style.conv_basic."):
            sd[k] = sd[k.replace("conv_basic.", "alexnet.features.")]
        if k.startswith("enc_style.pre_hash_layer."):
            sd[k] = sd[k.replace("pre_hash_layer.", "alexnet.classifier.")]
    torch.save({"state_dict": sd}, tmp_path / "checkpoint_00080000.pt")
    model = load_ibc_checkpoint(tmp_path / "checkpoint_00080000.pt")
    assert (model.code_length, model.num_classes, model.backbone) == (256, 397, "alexnet")
    assert model.enc_style.alexnet.classifier[6].out_features == 365
    got = model.state_dict()
    assert all(torch.equal(got[k], sd[k]) for k in sd)
    assert not model.training
    with torch.no_grad():
        assert model.bit_activations(torch.randn(1, 3, 224, 224)).shape == (1, 256, 6, 6)


def test_checkpoint_mismatches_are_listed_by_key(tmp_path):
    m = IBC(16, 5, "small", 64, 32, width=16)
    sd = {"module." + k: v for k, v in m.state_dict().items()}  # DataParallel names are accepted
    torch.save({"state_dict": sd}, tmp_path / "ok.pt")
    m2 = IBC(16, 5, "small", 64, 32, width=16)
    load_checkpoint(m2, tmp_path / "ok.pt")
    assert torch.equal(m2.GRM, m.GRM)

    bad = dict(m.state_dict())
    del bad["enc_style.hash_layer.bias"]
    bad["enc_style.extra.weight"] = torch.zeros(1)
    torch.save({"state_dict": bad}, tmp_path / "bad.pt")
    with pytest.raises(ValueError) as e:
        load_checkpoint(IBC(16, 5, "small", 64, 32, width=16), tmp_path / "bad.pt")
    msg = str(e.value)
    assert "bad.pt" in msg and "missing keys (1): enc_style.hash_layer.bias" in msg
    assert "unexpected keys (1): enc_style.extra.weight" in msg
    with pytest.raises(ValueError, match=r"GRM: checkpoint \(5, 16\) vs model \(5, 32\)"):
        load_checkpoint(IBC(32, 5, "small", 64, 32, width=16), tmp_path / "ok.pt")
    torch.save({"weights": 1}, tmp_path / "not.pt")
    with pytest.raises(ValueError, match="expected an IBC checkpoint"):
        load_checkpoint(m2, tmp_path / "not.pt")
    with pytest.raises(FileNotFoundError, match="absent.pt"):
        load_ibc_checkpoint(tmp_path / "absent.pt")


def test_small_checkpoint_architecture_is_read_back_from_the_file(tmp_path):
    m = IBC(24, 7, "small", 64, 48, width=16, dropout=0.0)
    torch.save({"state_dict": m.state_dict(), "arch": m.architecture()}, tmp_path / "c.pt")
    arch = infer_architecture(tmp_path / "c.pt")
    assert {k: arch[k] for k in ("code_length", "num_classes", "backbone", "hidden", "width", "input_size")} == \
        {"code_length": 24, "num_classes": 7, "backbone": "small", "hidden": 48, "width": 16, "input_size": 64}
    loaded = load_ibc_checkpoint(tmp_path / "c.pt")
    x = torch.randn(2, 3, 64, 64)
    m.eval()
    with torch.no_grad():
        torch.testing.assert_close(loaded.codes(x), m.codes(x))


def test_grm_renormalisation_gives_columns_with_max_one_and_values_in_unit_range():
    m = IBC(8, 4, "small", 64, 16, width=8)
    with torch.no_grad():
        # what an optimizer step leaves: mostly positive, above 1 in places, a few small negatives
        m.GRM.copy_(torch.rand(4, 8) * 3 - 0.2)
        m.GRM[:, 0] = torch.tensor([0.3, -0.1, 0.2, 0.1])
        m.GRM[:, 1] = torch.tensor([5.0, 2.5, 0.0, -1.0])
    m.renormalize_grm()
    g = m.GRM.detach()
    assert (g >= 0).all() and (g <= 1).all()
    torch.testing.assert_close(g.max(0).values, torch.ones(8))
    torch.testing.assert_close(g[:, 0], torch.tensor([1.0, 0.0, 2 / 3, 1 / 3]))
    torch.testing.assert_close(g[:, 1], torch.tensor([1.0, 0.5, 0.0, 0.0]))


def test_masked_forward_multiplies_conv_out_channels_by_the_class_grm_row():
    torch.manual_seed(0)
    m = IBC(8, 3, "small", 64, 16, width=8).eval()
    x = torch.randn(3, 3, 64, 64)
    y = torch.tensor([1, 99999, 2])
    plain = m(x)
    masked = m(x, y)
    torch.testing.assert_close(masked.conv_out, plain.conv_out)
    gate = torch.stack([m.GRM[1], torch.ones(8), m.GRM[2]])  # a missing label leaves its sample unmasked
    e = m.enc_style
    expect_real = e.real_prediction(e.classifier(torch.flatten(plain.conv_out * gate[:, :, None, None], 1)))
    torch.testing.assert_close(masked.real_logits, expect_real)
    torch.testing.assert_close(masked.hash_logits, e.hash_prediction(plain.codes * gate))
    torch.testing.assert_close(masked.real_logits[1], plain.real_logits[1])
    # only the rows marked as masked are gated
    half = m(x, y, torch.tensor([False, False, True]))
    torch.testing.assert_close(half.real_logits[:2], plain.real_logits[:2])
    torch.testing.assert_close(half.real_logits[2], masked.real_logits[2])
    with torch.no_grad():
        m.GRM.zero_()
    torch.testing.assert_close(m(x, y).real_logits[0], m.real_logits(torch.zeros_like(plain.conv_out))[0])


def test_codes_are_sigmoid_outputs_and_bit_activations_are_the_relu_conv_last_maps():
    torch.manual_seed(0)
    m = IBC(12, 3, "small", 64, 16, width=8).eval()
    x = torch.randn(2, 3, 64, 64)
    e = m.enc_style
    feat = e.conv_basic(x)
    torch.testing.assert_close(m.bit_activations(x), F.relu(e.conv_last(feat)))
    assert m.bit_activations(x).shape == (2, 12, 8, 8)
    b = m.codes(x)
    torch.testing.assert_close(b, torch.sigmoid(e.hash_layer(e.pre_hash_layer(feat.flatten(1)))))
    assert ((b > 0) & (b < 1)).all()


def test_optimizer_groups_follow_the_official_trainer():
    m = IBC(16, 5, "alexnet", 227)
    groups = m.param_groups(1e-4)
    assert [g["lr"] for g in groups] == pytest.approx([1e-4, 1e-4, 1e-3, 1e-3, 1e-3, 1e-4, 1e-3, 1e-3])
    fast = {id(p) for g in groups if g["lr"] > 1e-4 for p in g["params"]}
    e = m.enc_style
    assert {id(p) for p in (m.GRM, e.conv_last.weight, e.hash_layer.weight, e.real_prediction.fc.weight,
                            e.hash_prediction.fc.bias)} <= fast
    assert id(e.conv_basic[0].weight) not in fast and id(e.fc1.weight) not in fast
    listed = {id(p) for g in groups for p in g["params"]}
    assert id(e.alexnet.classifier[6].weight) not in listed  # unused, as in the official trainer
    assert len(listed) == sum(len(g["params"]) for g in groups)  # no parameter twice


def test_places365_alexnet_file_is_converted_and_copied_into_both_branches(tmp_path):
    layout = {k: tuple(v.shape) for k, v in torchvision.models.alexnet(num_classes=365).state_dict().items()}
    sd = cheap_tensors(layout)
    # the Places365 release trained `features` under DataParallel: keys `features.module.0.weight`
    renamed = {(k.replace("features.", "features.module.") if k.startswith("features.") else k): v
               for k, v in sd.items()}
    torch.save({"epoch": 90, "arch": "alexnet", "state_dict": renamed}, tmp_path / "alexnet_places365.pth.tar")
    loaded = load_alexnet(tmp_path / "alexnet_places365.pth.tar")
    assert loaded.classifier[6].out_features == 365
    m = build_ibc(256, 397, "alexnet", 224, backbone_weights=tmp_path / "alexnet_places365.pth.tar", seed=1)
    e = m.enc_style
    assert torch.equal(e.conv_basic[0].weight, sd["features.0.weight"])
    assert torch.equal(e.pre_hash_layer[4].weight, sd["classifier.4.weight"])
    assert torch.equal(e.classifier[1].weight, sd["classifier.1.weight"])  # K = 256: the classifier copy
    assert e.classifier[1].weight.data_ptr() != e.pre_hash_layer[1].weight.data_ptr()  # a copy, not shared
    torch.save({"state_dict": {"conv.weight": torch.zeros(1)}}, tmp_path / "other.pth")
    with pytest.raises(ValueError, match="not an AlexNet state dict"):
        load_alexnet(tmp_path / "other.pth")


def _fake_imagenet_alexnet(path):
    """A torchvision AlexNet state dict file (as alexnet-owt-*.pth), with random weights of our own."""
    torch.manual_seed(123)
    sd = torchvision.models.alexnet(num_classes=1000).state_dict()
    torch.save(sd, path)
    return sd


@pytest.mark.parametrize("K", [256, 64])
def test_the_real_branch_starts_from_the_pretrained_classifier(tmp_path, K):
    sd = _fake_imagenet_alexnet(tmp_path / "alexnet-owt.pth")
    m = build_ibc(K, 10, "alexnet", 227, backbone_weights=tmp_path / "alexnet-owt.pth", seed=0)
    e = m.enc_style
    assert torch.equal(e.pre_hash_layer[1].weight, sd["classifier.1.weight"])
    assert torch.equal(e.pre_hash_layer[4].weight, sd["classifier.4.weight"])
    if K == 256:  # classifier[:6] copied
        assert torch.equal(e.classifier[1].weight, sd["classifier.1.weight"])
        assert torch.equal(e.classifier[4].bias, sd["classifier.4.bias"])
        assert e.classifier[1].weight.data_ptr() != e.pre_hash_layer[1].weight.data_ptr()
    else:  # a new first Linear N(0, 0.01) with zero bias, then the pretrained classifier[2:6]
        assert torch.equal(e.fc2[2].weight, sd["classifier.4.weight"])
        assert torch.equal(e.fc2[2].bias, sd["classifier.4.bias"])
        assert e.fc1.weight.std().item() == pytest.approx(0.01, rel=0.02)
        assert torch.count_nonzero(e.fc1.bias) == 0


def test_heads_get_kaiming_normal_fan_in_weights_and_zero_biases():
    m = IBC(256, 100, "alexnet", 227)
    e = m.enc_style
    for layer in (e.hash_layer, e.hash_prediction.fc, e.real_prediction.fc, e.conv_last):
        w = layer.weight
        fan_in = w[0].numel()
        assert w.std().item() == pytest.approx((2 / fan_in) ** 0.5, rel=0.05), layer
        assert abs(w.mean().item()) < 0.1 * (2 / fan_in) ** 0.5
        assert torch.count_nonzero(layer.bias) == 0
    # PyTorch's default Linear init would give std 1/sqrt(3·fan_in): 0.009 for hash_layer, not 0.022
    assert e.hash_layer.weight.std().item() > 0.02


def test_small_backbone_weights_file_loads_into_conv_basic(tmp_path):
    from bitlens.ibc.model import small_features

    torch.manual_seed(7)
    feats = small_features(16)
    torch.save({"state_dict": feats.state_dict()}, tmp_path / "small.pt")
    m = build_ibc(8, 3, "small", 64, 32, backbone_weights=tmp_path / "small.pt", width=16, seed=0)
    for k, v in feats.state_dict().items():
        assert torch.equal(m.enc_style.conv_basic.state_dict()[k], v), k
    torch.save({"state_dict": small_features(8).state_dict()}, tmp_path / "narrow.pt")
    with pytest.raises(ValueError, match="small backbone"):
        build_ibc(8, 3, "small", 64, 32, backbone_weights=tmp_path / "narrow.pt", width=16)


class AuthorsIBC(torch.nn.Module):
    """The authors' module tree, written from their description (networks.py): the whole AlexNet kept as
    `alexnet`, its features and classifier[:6] registered again as `conv_basic` / `pre_hash_layer`, a second
    AlexNet's classifier for the real branch, `fc1`/`fc2` beside the `classifier` wrapping them for K ≠ 256, and
    `*_prediction.fc` heads."""

    def __init__(self, K, C):
        super().__init__()
        enc = torch.nn.Module()
        alex, second = torchvision.models.alexnet(), torchvision.models.alexnet()
        enc.alexnet = alex
        enc.conv_basic = alex.features
        enc.conv_last = torch.nn.Conv2d(256, K, 3, padding=1)
        if K != 256:
            enc.fc1 = torch.nn.Linear(K * 36, 4096)
            enc.fc2 = torch.nn.Sequential(*list(second.classifier.children())[2:6])
            enc.classifier = torch.nn.Sequential(torch.nn.Dropout(), enc.fc1, enc.fc2)
        else:
            enc.classifier = torch.nn.Sequential(*list(second.classifier.children())[:6])
        enc.pre_hash_layer = torch.nn.Sequential(*list(alex.classifier.children())[:6])
        enc.hash_layer = torch.nn.Linear(4096, K)
        for name, i in (("real_prediction", 4096), ("hash_prediction", K)):
            head = torch.nn.Module()
            head.fc = torch.nn.Linear(i, C)
            setattr(enc, name, head)
        self.enc_style = enc
        self.GRM = torch.nn.Parameter(torch.rand(C, K))


def test_a_checkpoint_written_by_the_trainer_loads_strictly_into_the_authors_module():
    from bitlens.ibc.train import checkpoint_payload

    m = IBC(64, 7, "alexnet", 227)
    payload = checkpoint_payload(m, {"lr": 1e-4}, 10)
    theirs = AuthorsIBC(64, 7)
    theirs.load_state_dict(payload["state_dict"], strict=True)  # what their resume / fea_extraction do
    assert torch.equal(theirs.enc_style.fc2[2].weight, m.enc_style.fc2[2].weight)
    assert torch.equal(theirs.GRM, m.GRM)
    ours = IBC(64, 7, "alexnet", 227)
    ours.load_state_dict(theirs.state_dict(), strict=True)  # and theirs into ours


def _readouts(C: int, seed: int = 0) -> dict:
    from bitlens.data.shapes import COLOR_NAMES, SHAPES, TEXTURES

    g = torch.Generator().manual_seed(seed)
    return {cat: {"weight": torch.randn(len(names) + 1, C, generator=g), "bias": torch.randn(len(names) + 1, generator=g),
                  "concepts": list(names)}
            for cat, names in (("shape", SHAPES), ("color", COLOR_NAMES), ("texture", TEXTURES))}


def test_bits_start_as_concept_readouts_against_the_other_concepts_of_their_category():
    from bitlens.data.shapes import COLOR_NAMES, SHAPES, TEXTURES
    from bitlens.ibc.model import init_bits_from_readouts

    torch.manual_seed(0)
    model = build_ibc(32, 24, "small", 64, 32, width=16)
    kaiming = model.enc_style.conv_last.weight[18:].clone()
    r = _readouts(16)
    names = init_bits_from_readouts(model, r)
    assert names == [*SHAPES, *COLOR_NAMES, *TEXTURES]
    w, b = model.enc_style.conv_last.weight, model.enc_style.conv_last.bias
    # bit 6 + 2 = colour 'yellow' (row 3 of the colour read-out): row 3 minus the mean of rows 1, 2, 4..8
    W, B = r["color"]["weight"], r["color"]["bias"]
    others = [1, 2, 4, 5, 6, 7, 8]
    torch.testing.assert_close(w[8, :, 1, 1], W[3] - W[others].mean(0))
    torch.testing.assert_close(b[8], B[3] - B[others].mean())
    assert torch.count_nonzero(w[8]) == torch.count_nonzero(w[8, :, 1, 1])  # only the centre tap
    # on a feature map, bit 8 scores each cell by how much more it reads as yellow than as the other colours
    feat = torch.rand(1, 16, 4, 4)
    logits = torch.einsum("jc,nchw->njhw", W, feat) + B[None, :, None, None]
    want = logits[:, 3] - logits[:, others].mean(1)
    got = F.conv2d(feat, w[8:9], b[8:9], padding=1)[:, 0]
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    assert torch.equal(model.enc_style.conv_last.weight[18:], kaiming)  # the bits beyond the read-outs keep kaiming


def test_fewer_bits_than_readouts_take_the_first_concepts_and_mismatches_are_refused():
    from bitlens.data.shapes import COLOR_NAMES, SHAPES
    from bitlens.ibc.model import init_bits_from_readouts

    model = build_ibc(16, 24, "small", 64, 32, width=16)
    assert init_bits_from_readouts(model, _readouts(16)) == [*SHAPES, *COLOR_NAMES, "solid", "striped"]
    with pytest.raises(ValueError, match="16 input channels"):
        init_bits_from_readouts(model, _readouts(32))


def test_bit_init_readouts_is_read_from_beside_the_backbone_weights(tmp_path):
    from bitlens.ibc.model import build_model, readouts_path, small_features

    torch.save(small_features(16).state_dict(), tmp_path / "w.pt")
    args = dict(code_length=32, num_classes=24, backbone="small", input_size=64, hidden=32, width=16, dropout=0.0,
                backbone_weights=tmp_path / "w.pt", bit_init="readouts", seed=1)
    with pytest.raises(FileNotFoundError, match=r"w\.pt\.readouts\.pt.*bit_init: kaiming"):
        build_model(**args)
    r = _readouts(16, seed=4)
    torch.save(r, readouts_path(tmp_path / "w.pt"))
    m = build_model(**args)
    W = r["shape"]["weight"]
    torch.testing.assert_close(m.enc_style.conv_last.weight[0, :, 1, 1], W[1] - W[2:].mean(0))
    official = build_model(**{**args, "bit_init": "kaiming"})
    assert torch.equal(official.enc_style.conv_last.weight[18:], m.enc_style.conv_last.weight[18:])
    assert not torch.equal(official.enc_style.conv_last.weight[:18], m.enc_style.conv_last.weight[:18])
    with pytest.raises(ValueError, match="backbone: small"):
        build_model(**{**args, "backbone_weights": None})