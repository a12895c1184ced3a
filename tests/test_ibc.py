import json
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from bitlens import codes
from bitlens.ibc.evaluate import customized_retrieval, main as evaluate_main
from bitlens.ibc.loss import MISSING_LABEL, ibc_losses
from bitlens.ibc.model import IBC, infer_architecture, load_checkpoint
from bitlens.ibc.train import build_optimizer, IBCTrainOptions

OFFICIAL_PREFIXES = ("enc_style.alexnet.features.", "enc_style.alexnet.classifier.", "enc_style.fc1.",
                     "enc_style.fc2.", "enc_style.conv_basic.", "enc_style.conv_last.", "enc_style.classifier.",
                     "enc_style.pre_hash_layer.", "enc_style.hash_layer.", "enc_style.real_prediction.fc.",
                     "enc_style.hash_prediction.fc.")


def test_alexnet_model_has_the_official_keys_and_shapes():
    m = IBC(256, 100, "alexnet", 227)
    sd = m.state_dict()
    assert all(k == "GRM" or k.startswith(OFFICIAL_PREFIXES) for k in sd)
    assert sd["GRM"].shape == (100, 256)
    assert sd["enc_style.conv_basic.0.weight"].shape == (64, 3, 11, 11)
    assert sd["enc_style.conv_last.weight"].shape == (256, 256, 3, 3)
    assert sd["enc_style.classifier.1.weight"].shape == (4096, 9216)  # K = 256: a copy of classifier[:6]
    assert sd["enc_style.pre_hash_layer.4.weight"].shape == (4096, 4096)
    assert sd["enc_style.hash_layer.weight"].shape == (256, 4096)
    assert sd["enc_style.real_prediction.fc.weight"].shape == (100, 4096)
    assert sd["enc_style.hash_prediction.fc.weight"].shape == (100, 256)
    # the official module shares AlexNet's layers under `alexnet` too: its checkpoints carry both names
    assert sd["enc_style.alexnet.features.0.weight"].data_ptr() == sd["enc_style.conv_basic.0.weight"].data_ptr()
    assert sd["enc_style.alexnet.classifier.6.weight"].shape == (1000, 4096)
    other = IBC(64, 100, "alexnet", 227).state_dict()
    assert other["enc_style.classifier.1.weight"].shape == (4096, 64 * 36)
    assert other["enc_style.fc1.weight"].shape == (4096, 64 * 36) and other["enc_style.fc2.2.weight"].shape == (4096, 4096)
    assert all(k == "GRM" or k.startswith(OFFICIAL_PREFIXES) for k in other)


def test_an_official_layout_checkpoint_loads_strictly(tmp_path):
    """A checkpoint written as the authors' code writes it (every alias key, DDP prefix) loads unchanged."""
    ref = IBC(256, 100, "alexnet", 227)
    torch.save({"state_dict": {"module." + k: v for k, v in ref.state_dict().items()}}, tmp_path / "ibc.pth.tar")
    m = IBC(256, 100, "alexnet", 227)
    load_checkpoint(m, tmp_path / "ibc.pth.tar")
    assert torch.equal(m.enc_style.conv_basic[0].weight, ref.enc_style.conv_basic[0].weight)
    assert infer_architecture(tmp_path / "ibc.pth.tar")["backbone"] == "alexnet"


def test_checkpoint_round_trip_and_clear_mismatch_errors(tmp_path):
    m = IBC(16, 5, "small", 64, 32)
    torch.save({"state_dict": {"module." + k: v for k, v in m.state_dict().items()}}, tmp_path / "c.pth.tar")
    m2 = IBC(16, 5, "small", 64, 32)
    load_checkpoint(m2, tmp_path / "c.pth.tar")
    assert torch.equal(m2.GRM, m.GRM)
    arch = infer_architecture(tmp_path / "c.pth.tar")
    assert arch["code_length"] == 16 and arch["num_classes"] == 5 and arch["backbone"] == "small"
    with pytest.raises(ValueError, match=r"GRM: checkpoint \(5, 16\) vs model \(5, 32\)"):
        load_checkpoint(IBC(32, 5, "small", 64, 32), tmp_path / "c.pth.tar")


def test_grm_renormalisation_gives_columns_with_max_one_in_unit_range():
    m = IBC(8, 4, "small", 64, 16)
    with torch.no_grad():
        # what an optimizer step leaves: mostly positive, above 1 in places, a few small negatives
        m.GRM.copy_(torch.rand(4, 8) * 3 - 0.2)
    m.renormalize_grm()
    g = m.GRM.detach()
    assert (g >= 0).all() and (g <= 1).all()
    torch.testing.assert_close(g.max(0).values, torch.ones(8))


def test_masked_forward_multiplies_conv_out_channels_by_the_class_grm_row():
    torch.manual_seed(0)
    m = IBC(8, 3, "small", 64, 16).eval()
    x = torch.randn(2, 3, 64, 64)
    _, conv = m(x)
    y = torch.tensor([1, 2])
    mask = m.GRM[y]
    expected = m.enc_style.real_prediction(m.enc_style.classifier(torch.flatten(conv * mask[:, :, None, None], 1)))
    torch.testing.assert_close(m.real_logits(conv, mask), expected)
    with torch.no_grad():
        m.GRM.zero_()
    zeroed = m.real_logits(conv, m.GRM[y])
    torch.testing.assert_close(zeroed, m.real_logits(torch.zeros_like(conv)))


def test_each_loss_term_equals_a_hand_computation():
    torch.manual_seed(1)
    m = IBC(8, 3, "small", 64, 16).eval()
    x1, x2 = torch.randn(3, 3, 64, 64), torch.randn(3, 3, 64, 64)
    y1, y2 = torch.tensor([0, 1, 2]), torch.tensor([2, MISSING_LABEL, 1])
    terms = ibc_losses(m, x1, y1, x2, y2, thr_g=5.0)
    b1, c1 = m(x1)
    b2, c2 = m(x2)
    keep = torch.tensor([True, False, True])
    g = m.GRM[torch.tensor([2, 0, 1])]
    hp = m.enc_style.hash_prediction
    torch.testing.assert_close(terms["hash_std"], F.cross_entropy(hp(b1), y1))
    torch.testing.assert_close(terms["hash_mask"], F.cross_entropy(hp(b2 * g)[keep], y2[keep]))
    torch.testing.assert_close(terms["GRM"], torch.relu(m.GRM.abs().sum() - 5.0))
    pooled = c2.mean(dim=(2, 3))
    p = torch.softmax(b2, 1)
    kl = (p * (torch.log(p) - torch.log_softmax(pooled, 1))).sum() / p.numel()  # torch's default 'mean'
    torch.testing.assert_close(terms["align"], kl)
    torch.testing.assert_close(terms["real_std"], F.cross_entropy(m.real_logits(c1), y1))
    torch.testing.assert_close(terms["real_mask"], F.cross_entropy(m.real_logits(c2, g)[keep], y2[keep]))
    torch.testing.assert_close(terms["sparse"], torch.relu(b2.abs().sum(1).mean() - 0.2 * 8))


def test_optimizer_gives_ten_times_the_lr_to_the_official_groups():
    m = IBC(8, 3, "small", 64, 16)
    opt, _ = build_optimizer(m, IBCTrainOptions(lr=1e-4))
    fast = {id(p) for p in opt.param_groups[1]["params"]}
    assert opt.param_groups[1]["lr"] == pytest.approx(1e-3)
    assert id(m.GRM) in fast and id(m.enc_style.conv_last.weight) in fast
    assert id(m.enc_style.conv_basic[0].weight) not in fast


def _code_file(tmp_path, suffix):
    rng = np.random.default_rng(0)
    lab = np.repeat(np.arange(4), 10)
    b = rng.random((40, 16)).astype(np.float32)
    b[:, 0] = np.where(lab < 2, 0.9, 0.1)
    attrs = (rng.random((40, 2)) > 0.5).astype(float)
    grm = rng.random((4, 16))
    codes.save_codes(tmp_path / f"c{suffix}", b, np.concatenate([lab[:, None], attrs], 1), GRM=grm)
    return tmp_path / f"c{suffix}"


@pytest.mark.parametrize("suffix", [".mat", ".npz"])
def test_evaluate_cli_reports_every_number(tmp_path, capsys, suffix):
    p = _code_file(tmp_path, suffix)
    assert evaluate_main(["--codes", str(p), "--expert-bits", "4", "--mis-max-num", "10", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert set(out) == {"class_map", "expert_bit_map", "attribute_map", "mis_knn", "mis_discrete"}
    assert len(out["attribute_map"]) == 2 and 0 < out["class_map"] <= 1
    assert evaluate_main(["--codes", str(tmp_path / "missing.mat")]) == 2


def test_customized_retrieval_tries_every_combination_and_reports_a_random_baseline():
    rng = np.random.default_rng(0)
    attrs = (rng.random((60, 1)) > 0.5).astype(float)
    B = np.where(rng.random((60, 8)) > 0.5, 1, -1)
    B[:, 3] = np.where(attrs[:, 0] == 1, 1, -1)
    r = customized_retrieval(B, attrs, 0, [[3], [5], [6]])
    assert r["combinations"] == 7 and r["bits"] == [4] and r["chosen_on"] == "test set"
    assert r["map"] == pytest.approx(1.0) and r["random_map"] < r["map"]
