import numpy as np
import pytest
import torch
from PIL import Image

from bitlens import encoders


def _images(tmp_path, n=6):
    # distinct solid colours so that a trained model can tell them apart
    rng = np.random.default_rng(0)
    paths = []
    for i in range(n):
        p = tmp_path / f"im{i}.png"
        Image.fromarray(np.full((20, 20, 3), rng.integers(0, 255, 3), dtype=np.uint8)).save(p)
        paths.append(p)
    return paths


def test_tiny_config_is_registered_and_unknown_names_are_explained():
    import open_clip

    encoders.create_model(encoders.TINY_MODEL)
    assert encoders.TINY_MODEL in open_clip.list_models()
    with pytest.raises(ValueError, match="unknown open_clip model 'no-such-model'"):
        encoders.create_model("no-such-model")
    with pytest.raises(ValueError, match="neither a file nor a tag"):
        encoders.create_model(encoders.TINY_MODEL, "no-such-tag")


def test_features_are_float32_unit_norm_and_batch_independent(tmp_path):
    torch.manual_seed(0)
    model, preprocess, tokenizer = encoders.create_model(encoders.TINY_MODEL)
    paths = _images(tmp_path)
    a = encoders.image_features(model, preprocess, paths, batch_size=4)
    b = encoders.image_features(model, preprocess, paths, batch_size=6)
    assert a.dtype == np.float32 and a.shape == (6, 64)
    np.testing.assert_allclose(np.linalg.norm(a, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(a, b, atol=1e-5)
    t = encoders.text_features(model, tokenizer, ["a red circle", "a blue square", "a green star"], batch_size=2)
    assert t.dtype == np.float32 and t.shape == (3, 64)
    np.testing.assert_allclose(np.linalg.norm(t, axis=1), 1.0, atol=1e-5)


def test_train_tiny_clip_saves_weights_that_load_as_a_local_file(tmp_path):
    paths = _images(tmp_path, n=4)
    caps = [f"caption {i}" for i in range(8)]
    out = encoders.train_tiny_clip(paths, caps, [0, 0, 1, 1, 2, 2, 3, 3], tmp_path / "clip.pt",
                                   epochs=1, batch_size=8, log=lambda *_: None)
    assert out.exists()
    model, preprocess, _ = encoders.create_model(encoders.TINY_MODEL, str(out))
    ref = torch.load(out, map_location="cpu")
    for k, v in model.state_dict().items():
        torch.testing.assert_close(v, ref[k])


def test_train_tiny_clip_continues_from_init_weights_deterministically(tmp_path):
    paths = _images(tmp_path, n=4)
    caps = [f"caption {i}" for i in range(8)]
    idx = [0, 0, 1, 1, 2, 2, 3, 3]
    quiet = dict(batch_size=8, log=lambda *_: None)
    old = torch.load(encoders.train_tiny_clip(paths, caps, idx, tmp_path / "old.pt", epochs=1, seed=0, **quiet))
    # a vanishing learning rate leaves the start in place: the continued model is the old one, not a fresh init
    kept = torch.load(encoders.train_tiny_clip(paths, caps, idx, tmp_path / "kept.pt", epochs=1, lr=1e-12, seed=1,
                                               init_weights=tmp_path / "old.pt", **quiet))
    fresh = torch.load(encoders.train_tiny_clip(paths, caps, idx, tmp_path / "fresh.pt", epochs=1, lr=1e-12, seed=1,
                                                **quiet))
    for k in old:
        torch.testing.assert_close(kept[k], old[k])
    assert any(not torch.allclose(fresh[k].float(), old[k].float()) for k in old)
    # a real continuation (enough steps for the one-cycle schedule to leave its floor) moves away from the start,
    # identically for the same seed
    runs = [torch.load(encoders.train_tiny_clip(paths, caps, idx, tmp_path / f"c{i}.pt", epochs=3, seed=1,
                                                init_weights=tmp_path / "old.pt", batch_size=4, log=lambda *_: None))
            for i in range(2)]
    assert any(not torch.allclose(runs[0][k].float(), old[k].float()) for k in old)
    for k in old:
        torch.testing.assert_close(runs[0][k], runs[1][k], rtol=0, atol=0)
    with pytest.raises(FileNotFoundError, match="no-such.pt"):
        encoders.train_tiny_clip(paths, caps, idx, tmp_path / "x.pt", epochs=1, init_weights=tmp_path / "no-such.pt",
                                 **quiet)


def test_paper_encoder_is_built_with_quickgelu_as_openai_trained_it():
    # RN101 from its config, no weights: the text transformer's activation is what matters for OpenAI weights
    model, _, _ = encoders.create_model("RN101", None, quick_gelu=True)
    assert "QuickGELU" in encoders.activation_classes(model)
    assert "GELU" not in encoders.activation_classes(model)
    plain, _, _ = encoders.create_model("RN101", None)
    assert "GELU" in encoders.activation_classes(plain) and "QuickGELU" not in encoders.activation_classes(plain)


def test_a_local_weights_file_is_loaded_into_a_quickgelu_model(tmp_path):
    torch.manual_seed(0)
    model, _, _ = encoders.create_model(encoders.TINY_MODEL)
    torch.save(model.state_dict(), tmp_path / "w.pt")
    loaded, _, _ = encoders.create_model(encoders.TINY_MODEL, str(tmp_path / "w.pt"), quick_gelu=True)
    assert "QuickGELU" in encoders.activation_classes(loaded)
    assert all(torch.equal(v, loaded.state_dict()[k]) for k, v in model.state_dict().items())


def test_pairs_are_interleaved_image_then_caption_with_the_image_index_as_label():
    from bitlens.bebr.sampler import interleave_pairs, split_pairs

    img = np.arange(6, dtype=np.float32).reshape(3, 2)
    txt = -np.arange(8, dtype=np.float32).reshape(4, 2)
    feats, labels = interleave_pairs(img, txt, [2, 0, 0, 1])
    np.testing.assert_array_equal(feats[0], img[2])
    np.testing.assert_array_equal(feats[1], txt[0])
    np.testing.assert_array_equal(feats[5], txt[2])
    np.testing.assert_array_equal(labels, [2, 2, 0, 0, 0, 0, 1, 1])
    i, t, lab = split_pairs(feats, labels)  # the trainer's reader inverts it
    np.testing.assert_array_equal(i, img[[2, 0, 0, 1]])
    np.testing.assert_array_equal(t, txt)
    np.testing.assert_array_equal(lab, [2, 0, 0, 1])
    with pytest.raises(ValueError, match="image indices must lie in 0..2"):
        interleave_pairs(img, txt, [0, 1, 2, 3])


def test_file_stats_change_when_a_file_is_rewritten_under_the_same_name(tmp_path):
    import os

    from bitlens.cache import digest
    from bitlens.io import file_stats

    f = tmp_path / "a.png"
    f.write_bytes(b"one")
    before = digest({"images": file_stats([f])})
    st = f.stat()
    f.write_bytes(b"two")  # same size, same name
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns + 1))
    assert digest({"images": file_stats([f])}) != before
    assert file_stats([f])[0][:2] == [str(f), 3]


def _openai_style_archive(path, model_name=encoders.TINY_MODEL, seed=0):
    """A TorchScript archive in fp16 with OpenAI's settings buffers, as OpenAI's RN101.pt / ViT-B-32.pt are."""
    torch.manual_seed(seed)
    model, _, _ = encoders.create_model(model_name, quick_gelu=True)
    for name, value in (("input_resolution", 64), ("context_length", 77), ("vocab_size", 49408)):
        if hasattr(model, name):  # open_clip keeps some as plain ints; OpenAI's archives hold them as tensors
            delattr(model, name)
        model.register_buffer(name, torch.tensor(value))
    reference = {k: v.clone() for k, v in model.state_dict().items()}
    torch.jit.save(torch.jit.script(model.half().eval()), str(path))
    return reference


def test_an_openai_torchscript_file_loads_with_quickgelu(tmp_path):
    ref = _openai_style_archive(tmp_path / "ViT-tiny.pt")
    assert encoders.is_torchscript(tmp_path / "ViT-tiny.pt")
    # torch.load(weights_only=True), open_clip's path for a local file, refuses such an archive
    with pytest.raises(Exception, match="TorchScript"):
        torch.load(tmp_path / "ViT-tiny.pt", weights_only=True)
    model, _, _ = encoders.create_model(encoders.TINY_MODEL, str(tmp_path / "ViT-tiny.pt"), quick_gelu=True)
    assert "QuickGELU" in encoders.activation_classes(model) and "GELU" not in encoders.activation_classes(model)
    sd = model.state_dict()
    assert set(sd) == set(ref) - {"input_resolution", "context_length", "vocab_size"}
    assert all(sd[k].dtype == torch.float32 and torch.equal(sd[k], ref[k].half().float()) for k in sd)


def test_a_torchscript_file_of_another_model_is_refused_by_name(tmp_path):
    _openai_style_archive(tmp_path / "tiny.pt")
    with pytest.raises(ValueError, match=r"tiny\.pt: the TorchScript weights do not fit open_clip model 'RN101'"):
        encoders.create_model("RN101", str(tmp_path / "tiny.pt"))


def test_a_relative_weights_path_is_taken_from_the_checkout_not_the_working_directory(tmp_path, monkeypatch):
    root = tmp_path / "checkout"
    (root / "data" / "weights").mkdir(parents=True)
    torch.manual_seed(0)
    model, _, _ = encoders.create_model(encoders.TINY_MODEL)
    torch.save(model.state_dict(), root / "data" / "weights" / "w.pt")
    elsewhere = tmp_path / "checkout" / "notebooks"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # where papermill runs a notebook
    assert encoders.resolve_weights(encoders.TINY_MODEL, "data/weights/w.pt", root) == str(
        root / "data" / "weights" / "w.pt")
    loaded, _, _ = encoders.create_model(encoders.TINY_MODEL, "data/weights/w.pt", root=root)
    assert all(torch.equal(v, loaded.state_dict()[k]) for k, v in model.state_dict().items())
    assert encoders.resolve_weights("RN101", "openai", root) == "openai"
    with pytest.raises(ValueError, match="looked for the file at .*checkout/data/weights/absent.pt"):
        encoders.resolve_weights(encoders.TINY_MODEL, "data/weights/absent.pt", root)
