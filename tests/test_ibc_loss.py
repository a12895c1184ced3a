"""The seven IBC loss terms against hand computations on a tiny batch."""
import math

import pytest
import torch

from bitlens.ibc.loss import TERMS, align_kl, ibc_losses, loss_terms, weighted_total
from bitlens.ibc.model import IBC, IBCOutput
from bitlens.labels import MISSING_LABEL


def hand_ce(logits: torch.Tensor, labels: list[int]) -> float:
    """Mean of −log softmax(logits)[label] over the rows whose label is not missing."""
    vals = []
    for row, y in zip(logits.tolist(), labels):
        if y == MISSING_LABEL:
            continue
        m = max(row)
        log_z = m + math.log(sum(math.exp(v - m) for v in row))
        vals.append(log_z - row[y])
    return sum(vals) / len(vals) if vals else 0.0


def hand_kl(codes: torch.Tensor, conv_out: torch.Tensor) -> float:
    """Σ p·(log p − log q) / (N·K), p = softmax(codes), q = softmax(mean over positions of conv_out)."""
    total, n = 0.0, 0
    for b, maps in zip(codes.tolist(), conv_out.tolist()):
        pooled = [sum(sum(r) for r in ch) / (len(ch) * len(ch[0])) for ch in maps]
        zb = sum(math.exp(v) for v in b)
        zq = sum(math.exp(v) for v in pooled)
        for vb, vq in zip(b, pooled):
            p = math.exp(vb) / zb
            total += p * (math.log(p) - (vq - math.log(zq)))
            n += 1
    return total / n


def outputs(seed: int, n: int = 3, K: int = 4, C: int = 3) -> IBCOutput:
    g = torch.Generator().manual_seed(seed)
    return IBCOutput(torch.rand(n, K, generator=g), torch.relu(torch.randn(n, K, 2, 2, generator=g)),
                     torch.randn(n, C, generator=g), torch.randn(n, C, generator=g))


def test_each_term_equals_a_hand_computation():
    out1, out2 = outputs(0), outputs(1)
    y1, y2 = torch.tensor([0, 2, 1]), torch.tensor([2, MISSING_LABEL, 1])
    GRM = torch.tensor([[0.5, 1.0, 0.0, 0.25], [1.0, 0.1, 0.2, 0.3], [0.0, 0.0, 1.0, 1.0]])
    t = loss_terms(out1, y1, out2, y2, GRM, thr_g=2.0, sparse_ratio=0.2)
    assert set(t) == set(TERMS)
    assert float(t["hash_std"]) == pytest.approx(hand_ce(out1.hash_logits, [0, 2, 1]), rel=1e-5)
    assert float(t["hash_mask"]) == pytest.approx(hand_ce(out2.hash_logits, [2, MISSING_LABEL, 1]), rel=1e-5)
    assert float(t["real_std"]) == pytest.approx(hand_ce(out1.real_logits, [0, 2, 1]), rel=1e-5)
    assert float(t["real_mask"]) == pytest.approx(hand_ce(out2.real_logits, [2, MISSING_LABEL, 1]), rel=1e-5)
    assert float(t["GRM"]) == pytest.approx(5.35 - 2.0, rel=1e-6)  # Σ|GRM| = 5.35
    assert float(t["align"]) == pytest.approx(hand_kl(out2.codes, out2.conv_out), rel=1e-3, abs=1e-7)
    l1 = sum(sum(abs(v) for v in row) for row in out2.codes.tolist()) / 3
    assert float(t["sparse"]) == pytest.approx(max(0.0, l1 - 0.2 * 4), rel=1e-5)
    # the hinge terms vanish under their thresholds
    quiet = loss_terms(out1, y1, out2, y2, GRM, thr_g=10.0, sparse_ratio=1.0)
    assert float(quiet["GRM"]) == 0.0 and float(quiet["sparse"]) == 0.0


def test_align_uses_the_historical_elementwise_mean_reduction():
    # KL of distinct distributions in the official direction: target softmax(codes), input log_softmax(pooled)
    codes, conv = torch.tensor([[0.2, 0.9]]), torch.tensor([[[[1.0, 3.0]], [[0.0, 0.0]]]])
    p = torch.softmax(codes, 1)
    q = torch.log_softmax(torch.tensor([[2.0, 0.0]]), 1)
    assert float(align_kl(codes, conv)) == pytest.approx(float((p * (p.log() - q)).sum() / 2), rel=1e-6)


def test_a_half_with_only_missing_labels_contributes_zero_and_keeps_the_graph():
    out = outputs(2)
    y = torch.full((3,), MISSING_LABEL)
    GRM = torch.rand(3, 4, requires_grad=True)
    t = loss_terms(out, y, out, y, GRM, thr_g=0.0)
    assert float(t["hash_std"]) == 0.0 and float(t["real_mask"]) == 0.0
    weighted_total(t, {f"{k}_w": 1.0 for k in TERMS}).backward()
    assert GRM.grad is not None


def test_weighted_total_uses_the_official_weight_names():
    t = {k: torch.tensor(float(i + 1)) for i, k in enumerate(TERMS)}
    w = {f"{k}_w": 10.0 ** -i for i, k in enumerate(TERMS)}
    assert float(weighted_total(t, w)) == pytest.approx(sum((i + 1) * 10.0 ** -i for i in range(7)))
    with pytest.raises(ValueError, match="sparse_w"):
        weighted_total(t, {k: v for k, v in w.items() if k != "sparse_w"})


@torch.no_grad()
def test_training_forward_gates_only_the_second_half_by_its_labels():
    torch.manual_seed(0)
    m = IBC(8, 3, "small", 64, 16, width=8, dropout=0.0).eval()  # eval: BatchNorm uses running stats
    x1, x2 = torch.randn(2, 3, 64, 64), torch.randn(2, 3, 64, 64)
    y1, y2 = torch.tensor([0, 1]), torch.tensor([2, MISSING_LABEL])
    t = ibc_losses(m, x1, y1, x2, y2, thr_g=1.0)
    o1, o2 = m(x1), m(x2)
    gate = torch.stack([m.GRM[2], torch.ones(8)])
    e = m.enc_style
    real2 = e.real_prediction(e.classifier((o2.conv_out * gate[:, :, None, None]).flatten(1)))
    assert float(t["hash_std"]) == pytest.approx(hand_ce(o1.hash_logits, [0, 1]), rel=1e-5)
    assert float(t["real_std"]) == pytest.approx(hand_ce(o1.real_logits, [0, 1]), rel=1e-5)
    assert float(t["hash_mask"]) == pytest.approx(hand_ce(e.hash_prediction(o2.codes * gate), [2, MISSING_LABEL]),
                                                  rel=1e-5)
    assert float(t["real_mask"]) == pytest.approx(hand_ce(real2, [2, MISSING_LABEL]), rel=1e-5)
    assert float(t["align"]) == pytest.approx(hand_kl(o2.codes, o2.conv_out), rel=1e-3, abs=1e-7)  # float32 sums
