import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from bitlens.bebr.evaluate import main as evaluate_main
from bitlens.bebr.heads import HeadConfig, RBEHead, sign_ste
from bitlens.bebr.loss import MASKED, rbe_loss
from bitlens.bebr.sampler import PairBatches, split_pairs
from bitlens.bebr.train import TrainOptions, train_head


def _linear_head(u):
    head = RBEHead(HeadConfig(in_dim=3, out_dim=2, u=u, hidden=0))
    with torch.no_grad():
        head.W.weight.copy_(torch.tensor([[1.0, 0, 0], [0, -1.0, 0]]))
        head.W.bias.zero_()
        if u:
            head.B0.weight.copy_(torch.tensor([[1.0, 0], [0, 1.0], [0, 0]]))
            head.B0.bias.zero_()
            head.R0.weight.copy_(torch.tensor([[0, 0, 1.0], [1.0, 1.0, 0]]))
            head.R0.bias.zero_()
    return head


def test_head_forward_equals_hand_computation():
    x = torch.tensor([[0.5, 0.2, -0.3]])
    head = _linear_head(1).eval()
    b0 = torch.sign(torch.tensor([[0.5, -0.2]]))                      # s(Wx) = [1, -1]
    f = F.normalize(torch.tensor([[b0[0, 0], b0[0, 1], 0.0]]), dim=1)  # B0 b = [1, -1, 0] / √2
    r = x - f
    d = torch.sign(torch.tensor([[r[0, 2], r[0, 0] + r[0, 1]]]))
    expected = b0 + 0.5 * d
    torch.testing.assert_close(head(x), expected)
    assert set(head(torch.randn(50, 3)).flatten().tolist()) <= {-1.5, -0.5, 0.5, 1.5}


def test_ste_gradient_is_zero_exactly_where_input_exceeds_one():
    x = torch.tensor([-2.0, -1.0, -0.3, 0.4, 1.0, 1.5], requires_grad=True)
    sign_ste(x).sum().backward()
    assert x.grad.tolist() == [0, 1, 1, 1, 1, 0]


def test_float_head_is_identity_activation():
    head = RBEHead(HeadConfig(in_dim=4, out_dim=3, u=0, hidden=0, binary=False))
    x = torch.randn(2, 4)
    torch.testing.assert_close(head(x), head.W(x))


def test_official_state_dict_keys_load_and_mismatch_is_explained():
    bebr = RBEHead(HeadConfig(512, 512, 1, 2048, 1))
    keys = set(bebr.state_dict())
    assert {"W.0.weight", "W.1.running_mean", "W.3.weight", "B0.0.weight", "R0.3.bias"} <= keys
    hashh = RBEHead(HeadConfig(512, 1024, 0, 1536, 3))
    assert {"W.0.fc.weight", "W.0.bn.weight", "W.2.fc.weight", "W.3.weight"} <= set(hashh.state_dict())
    sd = {"module." + k: v for k, v in bebr.state_dict().items()}  # saved from DDP
    RBEHead(HeadConfig(512, 512, 1, 2048, 1)).load_official(sd)
    with pytest.raises(ValueError, match="missing keys: B0"):
        RBEHead(HeadConfig(512, 512, 1, 2048, 1)).load_official(hashh.state_dict(), "hash.pth")


def test_loss_ignores_same_image_negatives_and_uses_exactly_top_k():
    torch.manual_seed(0)
    h1, h2 = torch.randn(6, 4), torch.randn(6, 4)
    labels = torch.tensor([0, 0, 1, 2, 3, 4])  # pairs 0 and 1 show the same image
    tau, k = 0.05, 2
    logits = F.normalize(h1, dim=1) @ F.normalize(h2, dim=1).T / tau

    def direction(lg):
        total = 0
        for i in range(6):
            negs = [lg[i, j] for j in range(6) if labels[j] != labels[i]]
            hard = sorted(negs, reverse=True)[:k]
            z = torch.stack([lg[i, i]] + hard)
            total = total + (torch.logsumexp(z, 0) - z[0])
        return total / 6

    expected = direction(logits) + direction(logits.T)
    torch.testing.assert_close(rbe_loss(h1, h2, labels, tau, k), expected)
    # making a same-image candidate extremely similar must not change the loss
    h2b = h2.clone()
    h2b[1] = h1[0] * 10
    assert MASKED < -1e8


def test_pair_sampler_validates_interleaving():
    f = np.zeros((6, 3), np.float32)
    img, txt, lab = split_pairs(f, np.array([0, 0, 1, 1, 2, 2]))
    assert img.shape == (3, 3) and lab.tolist() == [0, 1, 2]
    with pytest.raises(ValueError, match="pair 1 has different labels"):
        split_pairs(f, np.array([0, 0, 1, 2, 2, 2]))
    batches = list(PairBatches(10, 4, seed=1).epoch(0))
    assert len(batches) == 2 and len(set(np.concatenate(batches))) == 8


def _features(n=64, d=8, seed=0):
    rng = np.random.default_rng(seed)
    img = rng.standard_normal((n, d)).astype(np.float32)
    txt = img + 0.3 * rng.standard_normal((n, d)).astype(np.float32)
    feat = np.empty((2 * n, d), np.float32)
    feat[0::2], feat[1::2] = img, txt
    return {"train_feat": feat, "train_label": np.repeat(np.arange(n), 2), "val_img": img[:32], "val_txt": txt[:32]}


def test_training_writes_checkpoints_and_resumes(tmp_path):
    feats = _features()
    cfg = HeadConfig(8, 16, 1, 0, 1)
    opts = TrainOptions(epochs=2, batch_size=32, lr=0.05, lr_step_epoch=1)
    h = train_head(feats, cfg, opts, tmp_path, log=lambda *_: None)
    assert len(h["epoch"]) == 2 and (tmp_path / "feat_image.npy").exists()
    again = train_head(feats, cfg, opts, tmp_path, log=lambda *_: None)  # nothing left to do: resumes at the end
    assert again["loss"] == h["loss"]
    with pytest.raises(ValueError, match="other settings"):
        train_head(feats, HeadConfig(8, 8, 1, 0, 1), opts, tmp_path)


def test_evaluate_cli_json_and_bad_files(tmp_path, capsys):
    rng = np.random.default_rng(0)
    a = rng.standard_normal((20, 5)).astype(np.float16)  # fp16 like the official eval's CLIP features
    np.save(tmp_path / "i.npy", a)
    np.save(tmp_path / "t.npy", a + 0.01)
    assert evaluate_main(["--image-feat", str(tmp_path / "i.npy"), "--txt-feat", str(tmp_path / "t.npy"), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert set(out) == {"i2t", "t2i"} and set(out["i2t"]) == {"r1", "r5", "r10", "r50", "medr", "meanr"}
    assert out["i2t"]["r1"] == 1.0
    np.save(tmp_path / "bad.npy", np.full((20, 5), np.nan))
    assert evaluate_main(["--image-feat", str(tmp_path / "bad.npy"), "--txt-feat", str(tmp_path / "t.npy")]) == 2
    assert "bad.npy: contains NaN" in capsys.readouterr().err
    np.save(tmp_path / "short.npy", a[:10])
    assert evaluate_main(["--image-feat", str(tmp_path / "short.npy"), "--txt-feat", str(tmp_path / "t.npy")]) == 2


DDP_SCRIPT = """
import json, sys, numpy as np, torch
from bitlens.bebr.heads import HeadConfig, RBEHead
from bitlens.bebr.loss import rbe_loss
from bitlens.bebr.train import _gather, world_info
import torch.distributed as dist
dist.init_process_group("gloo")
_, rank, world = world_info()
torch.manual_seed(0)
head = RBEHead(HeadConfig(8, 16, 1, 0, 1))
rng = np.random.default_rng(0)
a = torch.from_numpy(rng.standard_normal((16, 8)).astype(np.float32))
b = a + 0.1 * torch.from_numpy(rng.standard_normal((16, 8)).astype(np.float32))
y = torch.arange(16)
local = 16 // world
sl = slice(rank * local, (rank + 1) * local)
h1, h2 = head(a[sl]), head(b[sl])
loss = rbe_loss(h1, h2, y[sl], 0.05, 5, _gather(h1), _gather(h2), _gather(y[sl]), offset=rank * local)
t = loss.detach().clone(); dist.all_reduce(t); t /= world
if rank == 0:
    print(json.dumps({"loss": float(t)}), flush=True)
dist.barrier()  # no rank may tear the group down while another still uses it
dist.destroy_process_group()
"""


@pytest.mark.slow
def test_torchrun_two_processes_give_the_single_process_loss(tmp_path):
    script = tmp_path / "ddp.py"
    script.write_text(DDP_SCRIPT)

    def run(n):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        out = subprocess.run([sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={n}",
                              "--master_addr=127.0.0.1", f"--master_port={port}", str(script)],
                             capture_output=True, text=True, timeout=300, env=env)
        assert out.returncode == 0, out.stderr[-3000:]
        return json.loads([l for l in out.stdout.splitlines() if l.startswith("{")][-1])["loss"]

    assert run(2) == pytest.approx(run(1), rel=1e-5)
