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
from bitlens.bebr.train import TrainOptions, embed, train_head


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
    with pytest.raises(ValueError, match=r"missing keys \(\d+\): B0"):
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


def test_training_reports_the_last_epoch_and_reuses_a_finished_run(tmp_path):
    feats = _features()
    cfg = HeadConfig(8, 16, 1, 0, 1)
    opts = TrainOptions(epochs=2, batch_size=32, lr=0.05, lr_step_epoch=1)
    h = train_head(feats, cfg, opts, tmp_path, log=lambda *_: None)
    assert len(h["epoch"]) == 2 and not (tmp_path / "best.pth").exists()
    head = RBEHead(cfg)
    head.load_state_dict(torch.load(tmp_path / "checkpoint.pth")["state_dict"])
    # the saved embeddings are the final model's, whichever epoch scored best on the evaluation pairs
    np.testing.assert_array_equal(np.load(tmp_path / "feat_image.npy"), embed(head, feats["val_img"], "cpu"))
    msgs = []
    again = train_head(feats, cfg, opts, tmp_path, log=msgs.append)
    assert again["loss"] == h["loss"] and "reusing the finished run" in msgs[-1]


def test_other_settings_start_a_fresh_run_and_keep_the_old_one_aside(tmp_path):
    feats = _features()
    opts = TrainOptions(epochs=1, batch_size=32, lr=0.05)
    train_head(feats, HeadConfig(8, 16, 1, 0, 1), opts, tmp_path, log=lambda *_: None)
    msgs = []
    train_head(feats, HeadConfig(8, 8, 1, 0, 1), opts, tmp_path, log=msgs.append)
    assert "settings changed (config.out_dim: 16 → 8)" in msgs[0]
    prev = _previous(tmp_path)[0]
    assert torch.load(prev / "checkpoint.pth")["state_dict"]["W.weight"].shape[0] == 16
    assert torch.load(tmp_path / "checkpoint.pth")["state_dict"]["W.weight"].shape[0] == 8


def test_a_finished_run_on_other_features_is_not_reused(tmp_path):
    """The features are part of a run's settings: after 10_bebr_features rebuilds them (a new world, another
    encoder), the heads train again instead of serving the earlier features' checkpoints."""
    cfg, opts = HeadConfig(8, 16, 1, 0, 1), TrainOptions(epochs=1, batch_size=32, lr=0.05)
    first = train_head(_features(seed=0), cfg, opts, tmp_path, log=lambda *_: None)
    losses = []
    for changed in ({**_features(seed=0), "train_feat": _features(seed=1)["train_feat"]},
                    {**_features(seed=0), "val_img": _features(seed=2)["val_img"]}):
        msgs = []
        losses.append(train_head(changed, cfg, opts, tmp_path, log=msgs.append)["loss"])
        assert "settings changed (inputs: " in msgs[0] and not any("reusing" in m for m in msgs)
        head = RBEHead(cfg)
        head.load_state_dict(torch.load(tmp_path / "checkpoint.pth")["state_dict"])
        # the saved evaluation embeddings are this run's, of these features
        np.testing.assert_array_equal(np.load(tmp_path / "feat_image.npy"), embed(head, changed["val_img"], "cpu"))
    assert losses == [losses[0], first["loss"]] and losses[0] != first["loss"]  # trained on what it was given
    assert len(_previous(tmp_path)) == 2
    msgs = []
    train_head(changed, cfg, opts, tmp_path, log=msgs.append)  # the same features again: reused
    assert "reusing the finished run" in msgs[-1]


def test_a_corrupt_training_state_names_the_remedy_and_the_remedy_works(tmp_path, capsys):
    from bitlens.bebr.train import FEATURE_FILES, main

    feats = _features()
    for name in FEATURE_FILES:
        np.save(tmp_path / name, feats[name[:-4]])
    out = tmp_path / "out"
    args = ["--features", str(tmp_path), "--out", str(out), "--out-dim", "16", "--hidden", "0", "--epochs", "1",
            "--batch-size", "32", "--device", "cpu"]
    assert main(args) == 0
    (out / "train_state.pt").write_bytes((out / "train_state.pt").read_bytes()[:100])  # truncated
    capsys.readouterr()
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "train_state.pt: unreadable training state" in err and "--fresh" in err and "--force" in err
    assert main(args + ["--fresh"]) == 0  # the remedy the message names: the old state is moved aside, unread
    assert checkpoint_progress(out) == 1


def checkpoint_progress(out):
    from bitlens import checkpoint

    return checkpoint.load_state(out)["progress"]


class Interrupt(Exception):
    pass


def test_an_interrupted_then_resumed_run_equals_an_uninterrupted_one_bit_for_bit(tmp_path):
    feats = _features()
    cfg = HeadConfig(8, 16, 1, 0, 1)
    opts = TrainOptions(epochs=3, batch_size=32, lr=0.05, lr_step_epoch=2)
    straight = train_head(feats, cfg, opts, tmp_path / "a", log=lambda *_: None)

    def stop(epoch):
        if epoch == 1:
            raise Interrupt

    with pytest.raises(Interrupt):
        train_head(feats, cfg, opts, tmp_path / "b", log=lambda *_: None, on_epoch=stop)
    resumed = train_head(feats, cfg, opts, tmp_path / "b", log=lambda *_: None)
    assert resumed["loss"] == straight["loss"] and resumed["val_r1"] == straight["val_r1"]
    a, b = (torch.load(tmp_path / d / "checkpoint.pth")["state_dict"] for d in "ab")
    assert all(torch.equal(a[k], b[k]) for k in a)
    for f in ("feat_image.npy", "feat_txt.npy"):
        np.testing.assert_array_equal(np.load(tmp_path / "a" / f), np.load(tmp_path / "b" / f))


def test_amp_trains_under_cpu_autocast_with_the_loss_in_float32(tmp_path):
    feats = _features()
    opts = TrainOptions(epochs=1, batch_size=32, lr=0.05, amp=True)
    h = train_head(feats, HeadConfig(8, 16, 1, 0, 1), opts, tmp_path, log=lambda *_: None)
    assert np.isfinite(h["loss"]).all()
    with torch.autocast("cpu", dtype=torch.float16):
        x = torch.randn(6, 4).half()
        loss = rbe_loss(x[:3], x[3:], torch.tensor([0, 0, 1]))  # a same-image negative gets masked
    assert loss.dtype == torch.float32 and torch.isfinite(loss)


def test_cli_rejects_a_misspelt_boolean_and_explains_every_flag(tmp_path, capsys):
    from bitlens.bebr.train import main

    with pytest.raises(SystemExit) as e:
        main(["--features", str(tmp_path), "--out", str(tmp_path), "--amp", "flase"])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: python -m bitlens.bebr.train") and "'flase' is not a boolean" in err
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    for f in TrainOptions.__dataclass_fields__:
        flag = "--" + f.replace("_", "-")
        assert flag in out, flag
    assert "(default: 0.08)" in out and "(default: False)" in out
    assert main(["--features", str(tmp_path / "none"), "--out", str(tmp_path)]) == 2
    assert "train_feat.npy: missing feature file" in capsys.readouterr().err


def test_torchrun_flags_reproduce_every_setting(tmp_path, monkeypatch):
    import bitlens.bebr.train as T
    from bitlens import checkpoint

    cfg = HeadConfig(8, 16, 1, 0, 1, binary=False)
    opts = TrainOptions(epochs=2, batch_size=32, lr=0.05, amp=True, nesterov=False)
    cmd = checkpoint.torchrun_command("bitlens.bebr.train", T.train_flags(tmp_path / "f", tmp_path / "o", cfg, opts,
                                                                          fresh=True), 2)
    assert cmd[1:6] == ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m"]
    seen = {}

    def fake_train(feats, c, o, out, fresh, compat, **kw):
        seen.update(cfg=c, opts=o, fresh=fresh, out=out, compat=compat)
        return {"epoch": [], "val_r1": []}

    monkeypatch.setattr(T, "load_features", lambda d: {"train_feat": np.zeros((2, 8), np.float32)})
    monkeypatch.setattr(T, "train_head", fake_train)
    assert T.main(cmd[cmd.index("bitlens.bebr.train") + 1:]) == 0  # what each rank parses
    assert seen == {"cfg": cfg, "opts": opts, "fresh": True, "out": str(tmp_path / "o"), "compat": None}
    with pytest.raises(ValueError, match="nproc = 1"):
        checkpoint.torchrun_command("bitlens.bebr.train", [], 1)


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
from bitlens.distributed import gather_cat as _gather, world_from_env
import torch.distributed as dist
dist.init_process_group("gloo")
w = world_from_env()
rank, world = w.rank, w.size
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


def _previous(out_dir):
    """The earlier runs moved out of `out_dir` (bitlens.previous), oldest first; none stays inside it."""
    assert not [p for p in out_dir.rglob("previous-*")]
    home = out_dir.parent / ".previous" / out_dir.name
    return sorted(home.iterdir()) if home.exists() else []


def test_clip_protocol_counts_a_hit_for_any_caption_and_each_caption_finds_its_image():
    from bitlens.bebr.evaluate import clip_protocol_recalls

    img = np.array([[1.0, 0.0], [0.0, 1.0]])
    # image 0: captions 0, 1 (caption 1 is the near one); image 1: caption 2, which sits nearer image 0
    txt = np.array([[0.0, 1.0], [1.0, 0.05], [0.9, 0.5]])
    r = clip_protocol_recalls(img, txt, [0, 0, 1], False, 1)
    i2t, t2i = r["i2t"]["pessimistic"], r["t2i"]["pessimistic"]
    # image 0's best caption (1) ranks first; image 1's only caption (2) ranks after caption 0 (cos 1.0)
    assert i2t["r1"] == 0.5 and i2t["meanr"] == (1 + 2) / 2
    # captions 0 → image 1 (not its own 0): rank 2; 1 → image 0: rank 1; 2 → image 0 (not its own 1): rank 2
    assert t2i["r1"] == pytest.approx(1 / 3) and t2i["meanr"] == pytest.approx(5 / 3)
    assert r["images"] == 2 and r["captions"] == 3
    with pytest.raises(ValueError, match="image row 1 has no caption"):
        clip_protocol_recalls(img, txt, [0, 0, 0], False, 1)
    with pytest.raises(ValueError, match="outside 0..1"):
        clip_protocol_recalls(img, txt, [0, 0, 2], False, 1)
