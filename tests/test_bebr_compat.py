import dataclasses
import json
import os
import socket
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
import torch

from bitlens.bebr import compat
from bitlens.bebr.heads import HeadConfig, RBEHead, load_head
from bitlens.bebr.loss import compat_loss
from bitlens.bebr.train import Compatibility, TrainOptions, check_layout, train_head
from bitlens.search import sdc_inner_products, sdc_topk

torch.set_num_threads(1)
QUIET = dict(log=lambda *_: None)


def _roles(img, txt, n_val):
    n = len(img) - n_val
    f = np.empty((2 * n, img.shape[1]), np.float32)
    f[0::2], f[1::2] = img[:n], txt[:n]
    return {"train_feat": f, "train_label": np.repeat(np.arange(n), 2), "val_img": img[n:], "val_txt": txt[n:]}


def _versions(n=1200, n_val=200, d=16, seed=0):
    """Old features, and a new encoder that sees the same items through a fixed rotation with cleaner captions."""
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((n, d)).astype(np.float32)
    img = z + 0.05 * rng.standard_normal((n, d)).astype(np.float32)
    noise = rng.standard_normal((n, d)).astype(np.float32)
    q, _ = np.linalg.qr(np.random.default_rng(seed + 1).standard_normal((d, d)))
    q = q.astype(np.float32)
    old = _roles(img, img + 0.9 * noise, n_val)
    new = _roles(img @ q, (img + 0.6 * noise) @ q, n_val)
    return old, new


def _save_head(path, head):
    torch.save({"state_dict": head.state_dict(), "meta": {"config": asdict(head.cfg)}}, path)


def _recurrent_values(rng, n, m, planes):
    return sum((0.5 ** i) * rng.choice([-1.0, 1.0], size=(n, m)) for i in range(planes))


# -- the frozen old head ------------------------------------------------------------------

def test_compat_loss_sends_no_gradient_to_the_old_head_even_if_its_codes_carry_a_graph():
    torch.manual_seed(0)
    old, new = RBEHead(HeadConfig(6, 8, 1, 16, 1)), RBEHead(HeadConfig(5, 8, 1, 16, 1))
    x_old, x_new = torch.randn(2, 12, 6), torch.randn(2, 12, 5)
    o_img, o_txt = old(x_old[0]), old(x_old[1])  # computed with gradients enabled, on purpose
    assert o_img.requires_grad
    loss = compat_loss(new(x_new[0]), new(x_new[1]), o_img, o_txt, torch.arange(12), 0.05, 3)
    loss.backward()
    assert all(p.grad is None for p in old.parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in new.parameters())


def test_training_leaves_the_old_head_and_its_batchnorm_statistics_unchanged(tmp_path):
    old_f, new_f = _versions(n=300, n_val=40)
    torch.manual_seed(0)
    old = RBEHead(HeadConfig(16, 8, 1, 32, 1))  # BatchNorm inside: train mode would move its running stats
    before = {k: v.clone() for k, v in old.state_dict().items()}
    train_head(new_f, HeadConfig(16, 8, 1, 32, 1), TrainOptions(epochs=1, batch_size=64, lr=0.05), tmp_path,
               compat=Compatibility(old, old_f, 1.0), **QUIET)
    after = old.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert all(not p.requires_grad for p in old.parameters())


def test_layout_and_checkpoint_errors_name_the_problem(tmp_path):
    with pytest.raises(ValueError, match="same out_dim"):
        check_layout(HeadConfig(8, 16, 1), HeadConfig(8, 32, 1))
    with pytest.raises(ValueError, match="binary heads"):
        check_layout(HeadConfig(8, 16, 0, binary=False), HeadConfig(8, 16, 1))
    check_layout(HeadConfig(8, 16, 1), HeadConfig(4, 16, 2))  # another encoder and bit budget: fine
    with pytest.raises(FileNotFoundError, match="11_bebr_train"):
        load_head(tmp_path / "nope.pth")
    _save_head(tmp_path / "h.pth", RBEHead(HeadConfig(8, 16, 1, 0)))
    with pytest.raises(ValueError, match="8-d features but the old features are 4-d"):
        load_head(tmp_path / "h.pth", in_dim=4)
    old_f, new_f = _versions(n=100, n_val=20)
    new_f["train_label"] = new_f["train_label"][::-1].copy()
    with pytest.raises(ValueError, match="different pairs"):
        train_head(new_f, HeadConfig(16, 8, 1, 0), TrainOptions(epochs=1, batch_size=32), tmp_path,
                   compat=Compatibility(RBEHead(HeadConfig(16, 8, 1, 0)), old_f, 1.0), **QUIET)


# -- cross-version SDC --------------------------------------------------------------------

def test_cross_version_sdc_equals_float_dot_products_of_the_unpacked_codes():
    rng = np.random.default_rng(3)
    m = 13  # not a whole number of bytes: padding bits must not count
    new = _recurrent_values(rng, 7, m, 3)  # a new bit budget: three planes (±1 ± ½ ± ¼)
    old = _recurrent_values(rng, 11, m, 2)  # the old index: two planes ({±½, ±1.5})
    qc, gc = compat.as_code(new, 3), compat.as_code(old, 2)
    np.testing.assert_array_equal(qc.values(), new)
    ip = sdc_inner_products(qc, gc)
    assert np.array_equal(ip, new @ old.T)  # dyadic weights: exact
    keys = compat.cross_scores(new, 3, old, 2)
    ref = new @ old.T
    assert np.array_equal(keys, ref * np.abs(ref) / (old ** 2).sum(1)[None, :])
    cos = ref / np.linalg.norm(new, axis=1)[:, None] / np.linalg.norm(old, axis=1)[None, :]
    scores, idx = sdc_topk(qc, gc, 4, metric="cosine")
    np.testing.assert_allclose(scores, -np.sort(-cos, axis=1)[:, :4], rtol=0, atol=1e-12)
    assert compat.topk_matches_float(new, 3, old, 2, 4)
    with pytest.raises(ValueError, match="same bit layout"):
        compat.cross_scores(new, 3, _recurrent_values(rng, 5, 12, 2), 2)


def test_cross_recall_uses_the_named_tie_policy():
    # query 0 is exactly as close (cosine) to its true item as to item 1; query 1 finds its own first
    q = np.array([[1.5, 1.5], [0.5, 1.5]])
    g = np.array([[1.5, 0.5], [0.5, 1.5]])
    assert compat.cross_recall(q, 2, g, 2, "pessimistic", ks=(1,))["r1"] == 0.5
    assert compat.cross_recall(q, 2, g, 2, "optimistic", ks=(1,))["r1"] == 1.0


def test_bct_verdict_is_computed_from_the_numbers():
    def row(q, g, r1, r5, r10):
        return {"query": q, "gallery": g, "R@1": r1, "R@5": r5, "R@10": r10}

    rows = [row("old", "old", 0.3, 0.6, 0.7), row("new (compatible)", "new (compatible)", 0.4, 0.7, 0.8),
            row("new (independent)", "new (independent)", 0.4, 0.7, 0.8),
            row("new (compatible)", "old", 0.3, 0.59, 0.75), row("new (independent)", "old", 0.0, 0.01, 0.02)]
    v = compat.bct_verdict(rows)
    assert v["checks"]["cross_ge_old"] == {"R@1": True, "R@5": False, "R@10": True}
    assert v["checks"]["new_ge_old"] == {"R@1": True, "R@5": True, "R@10": True}
    assert not v["compatible"]
    assert "holds at R@1, R@10 and fails at R@5" in v["sentences"][0]
    assert "R@5 0.5900 vs 0.6000" in v["sentences"][0]
    assert v["sentences"][-1].startswith("The compatible head does not meet")
    rows[3]["R@5"] = 0.6  # equal counts as compatible (≥)
    assert compat.bct_verdict(rows)["compatible"]
    rows[4]["R@10"] = 0.7  # the independent head passing at one K: that K does not separate the heads
    v = compat.bct_verdict(rows)
    assert not v["compatible"] and "also passes the cross-version check at R@10" in v["sentences"][-1]


# -- a short run: compatibility is learnt, independence is not -------------------------------

def test_compatible_head_searches_the_old_index_and_the_independent_head_does_not(tmp_path):
    old_f, new_f = _versions()
    cfg = HeadConfig(16, 16, 1, 0, 1)
    opts = TrainOptions(epochs=4, batch_size=200, lr=0.05, lr_step_epoch=3)
    train_head(old_f, cfg, opts, tmp_path / "old", **QUIET)
    old_head = load_head(compat.head_checkpoint(tmp_path / "old"), in_dim=16)
    hist = train_head(new_f, cfg, opts, tmp_path / "c", compat=Compatibility(old_head, old_f, 1.0), **QUIET)
    train_head(new_f, cfg, opts, tmp_path / "i", **QUIET)

    def codes(d):
        return np.load(d / "feat_image.npy"), np.load(d / "feat_txt.npy")

    table = {"old": codes(tmp_path / "old"), "new (compatible)": codes(tmp_path / "c"),
             "new (independent)": codes(tmp_path / "i")}
    rows = compat.compat_rows(table, {k: 2 for k in table}, "pessimistic")
    cross = {r["query"]: r["R@10"] for r in rows if r["search"] == "cross"}
    assert cross["new (compatible)"] > 0.5 > 0.2 > cross["new (independent)"]
    # the same settings reuse the finished run; another weight starts afresh and keeps the earlier run aside
    again = train_head(new_f, cfg, opts, tmp_path / "c", compat=Compatibility(old_head, old_f, 1.0), **QUIET)
    assert again["loss"] == hist["loss"]
    lines = []
    other = train_head(new_f, cfg, dataclasses.replace(opts, epochs=1), tmp_path / "c",
                       compat=Compatibility(old_head, old_f, 0.5), log=lines.append)
    assert len(other["loss"]) == 1 and any("weight: 1.0 → 0.5" in line for line in lines)
    assert len(list((tmp_path / ".previous" / "c").glob("*/checkpoint.pth"))) == 1
    assert not list((tmp_path / "c").glob("previous-*"))


def test_an_interrupted_run_resumes_to_the_same_head(tmp_path):
    old_f, new_f = _versions(n=300, n_val=40)
    cfg = HeadConfig(16, 8, 1, 0, 1)
    torch.manual_seed(0)
    old = RBEHead(HeadConfig(16, 8, 1, 0, 1))
    opts = TrainOptions(epochs=3, batch_size=64, lr=0.05, lr_step_epoch=2)
    term = Compatibility(old, old_f, 1.0)
    whole = train_head(new_f, cfg, opts, tmp_path / "a", compat=term, **QUIET)
    train_head(new_f, cfg, dataclasses.replace(opts, epochs=1), tmp_path / "b", compat=term, **QUIET)
    resumed = train_head(new_f, cfg, opts, tmp_path / "b", compat=term, **QUIET)
    assert resumed["loss"] == whole["loss"]
    a = torch.load(tmp_path / "a" / "checkpoint.pth", weights_only=False)["state_dict"]
    b = torch.load(tmp_path / "b" / "checkpoint.pth", weights_only=False)["state_dict"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_torchrun_flags_reproduce_the_compatible_settings(tmp_path):
    from bitlens.bebr.train import parser, train_flags

    opts = TrainOptions(epochs=3, lr=0.02, lr_step_epoch=2, gamma=0.5, momentum=0.8, nesterov=False, weight_decay=0.0,
                        clip_grad=1.0, batch_size=64, tau=0.1, hard_k=2, seed=7, amp=True)
    term = Compatibility(RBEHead(HeadConfig(32, 16, 2, 64, 1)), {}, 0.5, True, "old", "old/best.pth")
    args = parser().parse_args(train_flags("new", "out", HeadConfig(32, 16, 2, 64, 1), opts, True, term))
    assert (args.features, args.old_features, args.old_head, args.out) == ("new", "old", "old/best.pth", "out")
    assert (args.weight, args.warm_start, args.out_dim, args.u, args.hidden, args.blocks, args.fresh) == \
        (0.5, True, 16, 2, 64, 1, True)
    assert TrainOptions(**{k: getattr(args, k) for k in TrainOptions.__dataclass_fields__}) == opts
    with pytest.raises(ValueError, match="Compatibility.from_files"):
        train_flags("new", "out", HeadConfig(32, 16, 2, 64, 1), opts, compat=Compatibility(term.old_head, {}, 0.5))


# -- torchrun ----------------------------------------------------------------------------

DDP_SCRIPT = """
import sys, numpy as np, torch
sys.path.insert(0, {tests!r})
from test_bebr_compat import _versions
from bitlens.bebr.heads import HeadConfig, load_head
from bitlens.bebr.train import Compatibility, TrainOptions, train_head
torch.set_num_threads(1)
old_f, new_f = _versions(n=160, n_val=32)
old = load_head({old!r})
train_head(new_f, HeadConfig(16, 8, 1, 0, 1), TrainOptions(epochs=2, batch_size=64, lr=0.05), sys.argv[1],
           compat=Compatibility(old, old_f, 1.0), log=lambda *_: None)
from bitlens import distributed
distributed.teardown(distributed.world_from_env())
"""


@pytest.mark.slow
def test_torchrun_two_processes_give_the_single_process_parameters(tmp_path):
    torch.manual_seed(1)
    _save_head(tmp_path / "old.pth", RBEHead(HeadConfig(16, 8, 1, 32, 1)))  # BatchNorm: frozen, so rank-independent
    script = tmp_path / "ddp.py"
    script.write_text(DDP_SCRIPT.format(tests=str(Path(__file__).parent), old=str(tmp_path / "old.pth")))

    def run(n):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        out_dir = tmp_path / f"n{n}"
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        out = subprocess.run([sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={n}",
                              "--master_addr=127.0.0.1", f"--master_port={port}", str(script), str(out_dir)],
                             capture_output=True, text=True, timeout=300, env=env)
        assert out.returncode == 0, out.stderr[-3000:]
        return torch.load(out_dir / "checkpoint.pth", weights_only=False)["state_dict"], \
            json.loads((out_dir / "history.json").read_text())

    (one, h1), (two, h2) = run(1), run(2)
    assert set(one) == set(two)
    torch.manual_seed(0)  # TrainOptions.seed: the heads' common start
    start = RBEHead(HeadConfig(16, 8, 1, 0, 1))
    assert any(not torch.allclose(one[k], start.state_dict()[k]) for k in one)  # it did train
    for k in one:
        torch.testing.assert_close(two[k], one[k], rtol=1e-5, atol=1e-6)
    assert h2["loss"] == pytest.approx(h1["loss"], rel=1e-5)


def test_continuing_the_old_tiny_clip_needs_its_weights_file(tmp_path):
    import json as _json

    from PIL import Image

    root = tmp_path / "coco"
    (root / "annotations").mkdir(parents=True)
    (root / "val2017").mkdir()
    Image.new("RGB", (10, 8), (200, 0, 0)).save(root / "val2017" / "000000000007.jpg")
    (root / "annotations" / "captions_val2017.json").write_text(_json.dumps({
        "images": [{"id": 7, "file_name": "000000000007.jpg", "height": 8, "width": 10}],
        "annotations": [{"id": 1, "image_id": 7, "caption": "a red field"}]}))
    enc = {"model": "bitlens-tiny-vit", "pretrained": "", "weights": "", "train_tiny": True, "init_from_old": True,
           "tiny_epochs": 1, "tiny_batch_size": 2, "tiny_lr": 1e-3, "batch_size": 4, "num_workers": 0}
    with pytest.raises(FileNotFoundError, match="init_from_old"):
        compat.new_version_features(tmp_path / "new", root, ("val2017", "val2017"), enc, 1, "cpu",
                                    old_weights=tmp_path / "missing.pt")
    assert not (tmp_path / "new" / "tiny_clip.pt").exists()


# -- choosing λ without the reported pairs ---------------------------------------------------------

def test_the_holdout_split_is_the_same_for_both_versions_and_never_reads_the_reported_pairs():
    old_f, new_f = _versions(n=300, n_val=40)
    a, b = compat.holdout_split(old_f, 0.25, seed=3), compat.holdout_split(new_f, 0.25, seed=3)
    np.testing.assert_array_equal(a["train_label"], b["train_label"])
    kept = set(a["train_label"].tolist())
    held = set(old_f["train_label"].tolist()) - kept
    assert len(held) == 65 and len(a["val_img"]) == 65 and len(a["train_label"]) == 2 * 195
    # each held-out image is checked with its own (first) pair, none of the reported pairs
    img, txt = old_f["train_feat"][0::2], old_f["train_feat"][1::2]
    firsts = np.flatnonzero(np.isin(old_f["train_label"][0::2], sorted(held)))
    np.testing.assert_array_equal(a["val_img"], img[firsts])
    np.testing.assert_array_equal(a["val_txt"], txt[firsts])
    with pytest.raises(ValueError, match="select.holdout"):
        compat.holdout_split(old_f, 0.001, seed=3)


def test_the_chosen_setting_does_not_change_when_the_reported_pairs_do(tmp_path):
    from bitlens.bebr.train import FEATURE_FILES

    old_f, new_f = _versions(n=400, n_val=60)
    cfg = HeadConfig(16, 16, 1, 0, 1)
    opts = TrainOptions(epochs=2, batch_size=100, lr=0.05, lr_step_epoch=1)
    cands = [{"weight": 0.5, "warm_start": False}, {"weight": 2.0, "warm_start": True}]

    def choose(run, feats):
        dirs = {}
        for name, f in zip(("old", "new"), feats):
            dirs[name] = tmp_path / run / name
            dirs[name].mkdir(parents=True)
            for file in FEATURE_FILES:
                np.save(dirs[name] / file, f[file[:-4]])
        return compat.select_setting(dirs["old"], dirs["new"], cfg, opts, cfg, opts, cands, 0.25, 0,
                                     tmp_path / run / "selection", "pessimistic", **QUIET)

    first = choose("a", (old_f, new_f))
    rng = np.random.default_rng(9)
    shuffled = [{**f, "val_img": rng.standard_normal(f["val_img"].shape).astype(np.float32),
                 "val_txt": f["val_txt"][::-1].copy()} for f in (old_f, new_f)]
    second = choose("b", shuffled)
    assert second["chosen"] == first["chosen"] and second["candidates"] == first["candidates"]
    assert first["holdout_pairs"] == 85 and len(first["candidates"]) == 2
    worst = [c["worst"] for c in first["candidates"]]
    assert first["index"] == int(np.argmax(worst))  # the largest worst margin of the criterion


def test_the_table_over_seeds_is_the_mean_with_the_sample_deviation():
    def table(r1):
        return [{"query": "old", "gallery": "old", "search": "old", "R@1": 0.5, "R@5": 0.8, "R@10": 0.9},
                {"query": "new (compatible)", "gallery": "old", "search": "cross", "R@1": r1, "R@5": 0.8, "R@10": 0.9}]

    rows = compat.mean_rows([table(0.4), table(0.5), table(0.6)])
    assert rows[1]["R@1"] == pytest.approx(0.5) and rows[1]["R@1 std"] == pytest.approx(0.1)  # ddof = 1
    assert rows[0]["R@1 std"] == 0.0 and compat.mean_rows([table(0.4)])[1]["R@1 std"] == 0.0
    assert compat.display_rows(rows)[1]["R@1"] == "0.5000 ± 0.1000"
