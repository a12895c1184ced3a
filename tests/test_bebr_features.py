"""bitlens.bebr.features: the official feature roles, and a cache that recomputes exactly when an input changed."""
import json
import os

import numpy as np
import pytest
import torch
from PIL import Image

from bitlens import encoders
from bitlens.bebr import features
from bitlens.data.coco import CocoItem


def _items(tmp_path, n, captions_per_image, prefix="im"):
    rng = np.random.default_rng(len(prefix) + n)
    items = []
    for i in range(n):
        p = tmp_path / f"{prefix}{i}.png"
        Image.fromarray(np.full((16, 16, 3), rng.integers(0, 255, 3), dtype=np.uint8)).save(p)
        items.append(CocoItem(i, p, tuple(f"{prefix} {i} caption {j}" for j in range(captions_per_image))))
    return items


@pytest.fixture
def world(tmp_path):
    return _items(tmp_path, 4, 2, "train"), _items(tmp_path, 3, 2, "val")


def _pairs(out, train, val, **kw):
    torch.manual_seed(0)  # the tiny model without weights starts from random weights
    return features.pair_features(out, train, val, encoders.TINY_MODEL, None, device="cpu", batch_size=2, **kw)


def test_pair_features_are_written_in_the_official_roles(tmp_path, world):
    train, val = world
    assert _pairs(tmp_path / "f", train, val)
    feat = np.load(tmp_path / "f" / "train_feat.npy")
    label = np.load(tmp_path / "f" / "train_label.npy")
    # 8 pairs interleaved [img, txt, ...], a label (the image) per row; an image repeats for each of its captions
    assert feat.shape == (16, 64) and feat.dtype == np.float32
    np.testing.assert_array_equal(label, np.repeat([0, 1, 2, 3], 4))
    np.testing.assert_array_equal(feat[0], feat[2])
    assert not np.array_equal(feat[0], feat[4]) and not np.array_equal(feat[1], feat[3])
    # validation: one row per image with its first caption, in the same model's space as the training pairs
    torch.manual_seed(0)
    model, _, tok = encoders.create_model(encoders.TINY_MODEL)
    first = encoders.text_features(model, tok, [v.captions[0] for v in val])
    np.testing.assert_allclose(np.load(tmp_path / "f" / "val_txt.npy"), first, atol=1e-5)
    assert np.load(tmp_path / "f" / "val_img.npy").shape == (3, 64)


@pytest.mark.parametrize("change", ["caption", "image", "deleted output", "quick_gelu", "weights", "force"])
def test_features_are_reused_until_an_input_or_an_output_changes(tmp_path, world, change):
    train, val = world
    out = tmp_path / "f"
    assert _pairs(out, train, val)
    assert not _pairs(out, train, val)  # the same inputs: nothing computed
    kw = {}
    if change == "caption":
        train = [*train[:-1], CocoItem(3, train[3].path, ("another caption", "train 3 caption 1"))]
    elif change == "image":
        Image.fromarray(np.zeros((18, 16, 3), np.uint8)).save(val[0].path)  # same name, other data
    elif change == "deleted output":
        (out / "val_txt.npy").unlink()
    elif change == "quick_gelu":
        kw["quick_gelu"] = True
    elif change == "force":
        kw["force"] = True
    if change == "weights":
        w = tmp_path / "w.pt"
        torch.manual_seed(1)
        torch.save(encoders.create_model(encoders.TINY_MODEL)[0].state_dict(), w)
        assert features.pair_features(out, train, val, encoders.TINY_MODEL, str(w), device="cpu", batch_size=2)
        os.utime(w, (1, 1))  # a touched weights file is the same weights: its bytes stand for it
        assert not features.pair_features(out, train, val, encoders.TINY_MODEL, str(w), device="cpu", batch_size=2)
        return
    assert _pairs(out, train, val, **kw)
    kw.pop("force", None)
    assert not _pairs(out, train, val, **kw)


def test_a_record_is_written_only_after_all_outputs(tmp_path, world, monkeypatch):
    train, val = world

    def broken(*a, **k):
        raise RuntimeError("disk full")

    _pairs(tmp_path / "f", train, val)
    monkeypatch.setattr(encoders, "text_features", broken)
    with pytest.raises(RuntimeError):
        _pairs(tmp_path / "f", train, val, force=True)
    monkeypatch.undo()
    # the failed recompute dropped the record: the next run computes instead of trusting half-written files
    assert _pairs(tmp_path / "f", train, val)


def test_caption_features_hold_every_caption_and_name_their_images(tmp_path, world):
    _, val = world
    split = {"split": "val", "source": "COCO annotations", "images": "val_img.npy"}
    out = tmp_path / "cp"
    assert features.caption_features(out, val, split, encoders.TINY_MODEL, None, device="cpu", batch_size=2)
    assert np.load(out / "txt.npy").shape == (6, 64)
    np.testing.assert_array_equal(np.load(out / "txt_image.npy"), [0, 0, 1, 1, 2, 2])
    assert json.loads((out / "split.json").read_text()) == {**split, "n_images": 3, "n_captions": 6}
    assert not (out / "img.npy").exists()
    assert not features.caption_features(out, val, split, encoders.TINY_MODEL, None, device="cpu", batch_size=2)
    # other images than the validation ones bring their own image features (and are other inputs)
    assert features.caption_features(out, val, {**split, "images": "clip_protocol/img.npy"}, encoders.TINY_MODEL,
                                     None, device="cpu", batch_size=2, with_images=True)
    assert np.load(out / "img.npy").shape == (3, 64)


def test_tiny_clip_is_retrained_only_for_other_inputs(tmp_path, world, monkeypatch):
    train, _ = world
    calls = []

    def fake_train(paths, caps, idx, out_path, **kw):
        calls.append((list(caps), list(idx), kw))
        out_path.parent.mkdir(parents=True, exist_ok=True)
        out_path.write_bytes(b"weights %d" % len(calls))
        return out_path

    monkeypatch.setattr(encoders, "train_tiny_clip", fake_train)
    kw = dict(epochs=2, batch_size=4, lr=1e-3, seed=0, device="cpu", log=lambda *_: None)
    w = features.tiny_clip(tmp_path / "clip", train, **kw)
    assert w == str(tmp_path / "clip" / "tiny_clip.pt") and len(calls) == 1
    assert calls[0][0][:3] == ["train 0 caption 0", "train 0 caption 1", "train 1 caption 0"]
    assert calls[0][1][:3] == [0, 0, 1] and calls[0][2]["init_weights"] is None
    features.tiny_clip(tmp_path / "clip", train, **kw)
    assert len(calls) == 1
    features.tiny_clip(tmp_path / "clip", train, **{**kw, "epochs": 3})
    assert len(calls) == 2
    old = tmp_path / "old.pt"
    old.write_bytes(b"old CLIP")
    features.tiny_clip(tmp_path / "clip", train, **{**kw, "epochs": 3}, init_weights=old)
    assert len(calls) == 3 and calls[-1][2]["init_weights"] == old
    old.write_bytes(b"another old CLIP")  # what it continues from is part of its inputs
    features.tiny_clip(tmp_path / "clip", train, **{**kw, "epochs": 3}, init_weights=old)
    assert len(calls) == 4
    features.tiny_clip(tmp_path / "clip", train, **{**kw, "epochs": 3}, init_weights=old, force=True)
    assert len(calls) == 5
