"""bitlens.replica: each replica file is read by the loader of its real counterpart, in the real format."""
import hashlib
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from bitlens import replica
from bitlens.replica import broden as rbroden
from bitlens.replica import images, released, weights


def _tree(root: Path) -> dict:
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def _datasets(root: Path, seed: int) -> None:
    images.write_coco(root / "coco", seed)
    images.write_imagenet(root / "ibc", "imagenet100c", seed)
    images.write_sun(root / "ibc", seed)
    rbroden.write_broden(root / "broden", seed, n_images=6)
    released.write_bebr(root / "bebr", seed)
    released.write_ibc_codes(root / "codes", seed)


def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path):
    for name, seed in (("a", 3), ("b", 3), ("c", 4)):
        _datasets(tmp_path / name, seed)
    a, b, c = (_tree(tmp_path / n) for n in "abc")
    assert a == b
    assert a.keys() != c.keys() or any(a[k] != c[k] for k in a)


def test_coco_has_greyscale_and_cmyk_jpegs_and_loads(tmp_path):
    from bitlens.data.coco import load_coco_captions, load_rgb

    images.write_coco(tmp_path, 0)
    items = load_coco_captions(tmp_path, "train2017")
    assert len(items) == images.COCO_SPLITS["train2017"]
    assert all(5 <= len(it.captions) <= 7 for it in items)
    modes = {Image.open(it.path).mode for it in items}
    assert {"L", "CMYK", "RGB"} <= modes
    assert all(load_rgb(it.path).mode == "RGB" for it in items)


def test_ibc_lists_load_with_missing_class_and_attributes(tmp_path):
    from bitlens.data.imagelist import ImageListDataset, read_list
    from bitlens.labels import MISSING_LABEL

    images.write_imagenet(tmp_path, "imagenet150k", 0)
    images.write_sun(tmp_path, 0)
    inet = read_list(tmp_path / "imagenet150k" / "train.txt", "imagenet")
    assert inet.labels.max() < 1000 and len(set(inet.labels.tolist())) == images.REPLICA_CLASSES
    img = ImageListDataset(inet, tmp_path / "imagenet150k" / "data_256")[0][0]
    assert min(img.size) == 256
    sun = read_list(tmp_path / "sun120k" / images.SUN_LISTS[0], "sun", 102)
    assert sun.attributes.shape == (images.SUN_SIZES[0], 102)
    assert np.isnan(sun.attributes).any() and (sun.attributes == 1).any() and (sun.attributes == 0).any()
    assert (sun.labels == MISSING_LABEL).any()


def test_broden_has_six_categories_high_ids_and_multi_mask_cells(tmp_path):
    from bitlens.data.broden import Broden, decode_mask

    rbroden.write_broden(tmp_path, 0, n_images=8)
    b = Broden(tmp_path)
    assert b.categories == list(rbroden.CATEGORIES)
    assert b.num_labels - 1 > 255
    parts = [r["part"] for r in b.records if r["part"]]
    assert any(";" in p for p in parts)
    high = max(int(decode_mask(tmp_path / "images" / r["object"]).max()) for r in b.records if r["object"])
    assert high > 255
    labels = b.load_labels(0)
    assert set(labels) >= {"scene", "object"}
    with Image.open(b.image_path(0)) as im:
        assert im.size == (224, 224)
    with Image.open(tmp_path / "images" / b.records[0]["object"]) as m:
        assert m.size == (112, 112)


def test_openai_torchscript_file_loads_with_open_clips_openai_loader(tmp_path):
    import open_clip

    from bitlens.encoders import TINY_MODEL, _register_configs

    _register_configs()
    path = weights.write_openai_clip(tmp_path / "tiny.pt", TINY_MODEL, 0)
    archive = torch.jit.load(str(path))  # a TorchScript archive, as OpenAI's files are
    sd = archive.state_dict()
    assert int(sd["context_length"]) == 24 and int(sd["input_resolution"]) == 64
    assert sd["visual.conv1.weight"].dtype == torch.float16
    model = open_clip.load_openai_model(str(path), device="cpu")
    x = torch.randn(2, 3, 64, 64)
    assert torch.isfinite(model.encode_image(x)).all()
    assert "QuickGELU" in {type(m).__name__ for m in model.modules()}


def test_rn101_state_has_openais_key_names():
    sd = weights.openai_clip_state("RN101", 0)
    for key in ("visual.layer1.0.conv1.weight", "visual.layer3.22.bn3.running_var", "visual.attnpool.c_proj.weight",
                "transformer.resblocks.11.attn.in_proj_weight", "token_embedding.weight", "text_projection",
                "logit_scale", "input_resolution", "context_length", "vocab_size"):
        assert key in sd, key
    assert sd["visual.layer1.0.conv1.weight"].dtype == torch.float16
    assert sd["ln_final.weight"].dtype == torch.float32  # OpenAI converts conv / linear / attention only


def test_alexnet_files_follow_their_downloads_formats(tmp_path):
    from bitlens.ibc.model import load_alexnet

    path = weights.write_torchvision_alexnet(tmp_path, 0)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    assert path.name == f"alexnet-owt-{digest[:8]}.pth"
    assert load_alexnet(path).classifier[6].out_features == 1000
    places = weights.write_places365_alexnet(tmp_path / weights.PLACES365_FILE, 0)
    assert not zipfile.is_zipfile(places)  # the 2017 file predates PyTorch's zip format
    ck = torch.load(places, map_location="cpu", weights_only=True)
    assert ck["arch"] == "alexnet" and "features.module.0.weight" in ck["state_dict"]
    assert load_alexnet(places).classifier[6].out_features == 365


def test_released_artifacts_load(tmp_path):
    from bitlens.bebr.evaluate import code_of, load_feature_file
    from bitlens.codes import load_codes
    from bitlens.ibc.model import load_ibc_checkpoint

    released.write_bebr(tmp_path, 0)
    for folder, (dims, planes) in released.BEBR_DIMS.items():
        img = load_feature_file(tmp_path / "dataset" / folder / "feat_image.npy")
        assert img.shape == (released.N_PAIRS, dims)
        if planes:
            assert code_of(img, True, planes).planes.shape[0] == planes
    released.write_ibc_codes(tmp_path, 0)
    sun = load_codes(tmp_path / "sun120k_256.mat")
    assert sun["code_length"] == 256 and sun["lab"].shape[1] == 103 and sun["GRM"].shape == (397, 256)
    assert ((sun["binary_codes"] > 0) & (sun["binary_codes"] < 1)).all()
    released.write_ibc_checkpoint(tmp_path / "ck.pth", 0, num_classes=100)
    model = load_ibc_checkpoint(tmp_path / "ck.pth")
    assert tuple(model.GRM.shape) == (100, 256)


SIZE_KEYS = {"batch_size", "num_workers", "epochs", "iterations", "checkpoint_every", "nproc", "rehearsal"}


def test_rehearsal_overrides_change_only_sizes_and_paths(tmp_path):
    from bitlens import config

    (tmp_path / replica.MANIFEST).write_text('{"weights": {"RN101": "RN101.pt", "ViT-B-32": "ViT-B-32.pt", '
                                             '"alexnet": "alexnet-owt-00000000.pth", '
                                             '"places365": "alexnet_places365.pth.tar"}, '
                                             '"ibc_released": {"sun120k": "sun120k_256.mat", "checkpoint": "c.pth"}}')
    sets = config.parse_set(replica.paper_overrides(tmp_path))
    for key, value in sets.items():
        if isinstance(value, str) and value.startswith(str(tmp_path.resolve())):
            continue  # a data or weights path into the replica
        assert key.rsplit(".", 1)[1] in SIZE_KEYS, key
    paper = config.load_params("paper", overrides=sets)
    assert paper["bebr"]["heads"]["hash"]["out_dim"] == 1024 and paper["bebr"]["train"]["nproc"] == 2
    assert {e["code_length"] for e in paper["ibc"]["experiments"].values()} == {256}
    assert paper["report"]["rehearsal"] is True
    released_sets = replica.released_overrides(tmp_path)
    rel = config.load_params("released", overrides=released_sets)
    assert rel["ibc"]["experiments"]["imagenet100c_checkpoint"]["released_checkpoint"].endswith("c.pth")
    assert rel["ibc"]["experiments"]["sun120k"]["released_codes"].endswith("sun120k_256.mat")


def test_overrides_need_a_complete_replica(tmp_path):
    with pytest.raises(FileNotFoundError, match="python -m bitlens.replica"):
        replica.paper_overrides(tmp_path)
