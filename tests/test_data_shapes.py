"""The Shapes world: determinism, ground truth, and every exporter read back by its loader."""
import csv
import hashlib
import json
import re
from pathlib import Path

import numpy as np
import pytest

from bitlens.data import shapes
from bitlens.data.broden import Broden
from bitlens.data.coco import caption_pairs, first_captions, load_coco_captions
from bitlens.data.imagelist import ImageListDataset, read_list

SMALL = dict(seed=3, image_size=32, n_train=14, n_val=6, n_broden=10, broden_mask_size=16, max_objects=3)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("world")
    shapes.generate_world(root, **SMALL)
    return root


def _digests(root: Path) -> dict:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_same_seed_gives_byte_identical_files(world, tmp_path):
    shapes.generate_world(tmp_path, **SMALL)
    a, b = _digests(world), _digests(tmp_path)
    assert len(a) > 3 * (SMALL["n_train"] + SMALL["n_val"]) and a == b


def test_another_seed_gives_other_images(world, tmp_path):
    shapes.generate_world(tmp_path, **{**SMALL, "seed": 4})
    name = "coco/train2017/000000000001.png"
    assert (tmp_path / name).read_bytes() != (world / name).read_bytes()


def test_an_image_does_not_depend_on_how_many_are_generated(world, tmp_path):
    shapes.generate_world(tmp_path, **{**SMALL, "n_train": 5, "n_val": 2, "n_broden": 0})
    for name in ("coco/train2017/000000000004.png", "coco/val2017/000001000002.png"):
        assert (tmp_path / name).read_bytes() == (world / name).read_bytes()


def test_world_is_reused_when_its_arguments_match(world):
    before = (world / "world.json").stat().st_mtime_ns
    sizes = shapes.generate_world(world, **SMALL)
    assert (world / "world.json").stat().st_mtime_ns == before
    assert sizes == json.loads((world / "world.json").read_text())["sizes"]


def test_a_world_whose_list_file_was_cut_short_is_rebuilt(tmp_path):
    shapes.generate_world(tmp_path, **SMALL)
    lst = tmp_path / "lists" / "train.txt"
    whole = lst.read_text()
    lst.write_text(whole.splitlines()[0] + "\n")  # the same arguments, but the record's file size no longer holds
    shapes.generate_world(tmp_path, **SMALL)
    assert lst.read_text() == whole


def test_changed_arguments_rebuild_without_stale_files(tmp_path):
    shapes.generate_world(tmp_path, **SMALL)
    shapes.generate_world(tmp_path, **{**SMALL, "n_train": 4})
    assert len(list((tmp_path / "coco/train2017").iterdir())) == 4
    assert len(list((tmp_path / "images/train2017").iterdir())) == 4
    assert json.loads((tmp_path / "world.json").read_text())["arguments"]["n_train"] == 4


def test_half_written_world_is_rebuilt(tmp_path):
    args = {**SMALL, "n_train": 3, "n_val": 2, "n_broden": 2}
    shapes.generate_world(tmp_path, **args)
    good = _digests(tmp_path)
    (tmp_path / "coco/train2017/000000000002.png").write_bytes(b"truncated")
    (tmp_path / "world.partial").write_text("{}")  # as if a crash struck mid-way
    shapes.generate_world(tmp_path, **args)
    assert _digests(tmp_path) == good and not (tmp_path / "world.partial").exists()


@pytest.mark.parametrize("bad, match", [({"n_train": 0}, "n_train"), ({"image_size": 8}, "image_size"),
                                        ({"broden_mask_size": 64}, "broden_mask_size"), ({"seed": 1.5}, "seed")])
def test_bad_arguments_are_named(tmp_path, bad, match):
    with pytest.raises(ValueError, match=match):
        shapes.generate_world(tmp_path, **{**SMALL, **bad})
    assert not (tmp_path / "world.json").exists()


def test_ground_truth_matches_the_drawing():
    for i in range(20):
        im = shapes.render_image(0, "train", i, 48)
        assert im.image.shape == (48, 48, 3) and im.image.dtype == np.uint8
        fg = im.shape_map > 0
        assert ((im.color_map > 0) == fg).all() and ((im.texture_map > 0) == fg).all()
        assert fg.sum() == sum(o.area for o in im.objects)
        # the maps name exactly the visible objects' shapes, colors and textures
        assert {shapes.SHAPES[v - 1] for v in np.unique(im.shape_map) if v} == {o.shape for o in im.visible}
        assert {shapes.COLOR_NAMES[v - 1] for v in np.unique(im.color_map) if v} == {o.color for o in im.visible}
        assert {shapes.TEXTURES[v - 1] for v in np.unique(im.texture_map) if v} == {o.texture for o in im.visible}
        largest = max(im.objects, key=lambda o: o.area)
        assert shapes.CLASS_NAMES[im.label] == f"{largest.shape}/{largest.texture}"
        present = {shapes.ATTRIBUTE_NAMES[j] for j in np.flatnonzero(im.attributes)}
        assert present == {v for o in im.visible for v in (o.shape, o.color, o.texture)}


def test_objects_overlap_and_masks_keep_only_what_is_visible():
    partly = 0
    for i in range(200):
        im = shapes.render_image(1, "train", i, 64)
        assert im.objects[-1].area == im.objects[-1].drawn > 0  # the object drawn last is never covered
        partly += sum(0 < o.area < o.drawn for o in im.objects)
        for o in im.objects:
            assert 0 <= o.area <= o.drawn
    assert partly > 10  # occlusion happens, and the masks record only the visible part


def test_world_has_every_class_scene_and_attribute():
    ims = [shapes.render_image(0, "train", i, 32) for i in range(600)]
    assert len({im.label for im in ims}) == len(shapes.CLASS_NAMES) == 24
    assert np.stack([im.attributes for im in ims]).min(0).tolist() == [0] * 18
    assert np.stack([im.attributes for im in ims]).max(0).tolist() == [1] * 18
    counts = np.bincount([len(im.visible) for im in ims], minlength=4)
    assert counts[1] > 0 and counts[2] > 0 and counts[3] > 0


def test_captions_are_five_varied_and_name_what_is_visible():
    for i in range(30):
        im = shapes.render_image(2, "val", i, 32)
        assert len(im.captions) == 5 and len(set(im.captions)) >= 3
        for cap in im.captions:
            assert any(p in cap for p in shapes.SCENE_PHRASES[im.scene])
            for o in im.visible:
                assert o.color in cap and any(w in cap for w in shapes.SHAPE_WORDS[o.shape])


def test_coco_export_has_real_fields_and_reads_back(world):
    ann = json.loads((world / "coco/annotations/captions_val2017.json").read_text())
    assert {"id", "file_name", "height", "width"} <= set(ann["images"][0])
    assert {"id", "image_id", "caption"} <= set(ann["annotations"][0])
    train = json.loads((world / "coco/annotations/captions_train2017.json").read_text())
    ids = [a["id"] for a in ann["annotations"] + train["annotations"]]
    assert len(ids) == len(set(ids)) == 5 * (SMALL["n_train"] + SMALL["n_val"])
    items = load_coco_captions(world / "coco", "val2017")
    assert len(items) == SMALL["n_val"] and all(len(it.captions) == 5 for it in items)
    assert list(items[2].captions) == shapes.render_image(SMALL["seed"], "val", 2, 32).captions
    idx, caps = caption_pairs(items)
    assert len(caps) == 5 * SMALL["n_val"] and idx[:6] == [0, 0, 0, 0, 0, 1]
    assert first_captions(items) == [it.captions[0] for it in items]


def test_coco_export_reads_through_torchvision(world):
    from torchvision.datasets import CocoCaptions

    tv = CocoCaptions(str(world / "coco/train2017"), str(world / "coco/annotations/captions_train2017.json"))
    ours = load_coco_captions(world / "coco", "train2017")
    assert len(tv) == len(ours)
    img, caps = tv[3]
    assert img.size == (32, 32) and img.mode == "RGB" and sorted(caps) == sorted(ours[3].captions)


def test_lists_follow_the_coco_splits_and_the_ground_truth(world):
    train = read_list(world / "lists/train.txt", "sun", 18)
    test = read_list(world / "lists/test.txt", "sun")  # attribute count taken from the file
    database = read_list(world / "lists/database.txt", "sun", 18)
    inet = read_list(world / "lists/imagenet_train.txt", "imagenet")
    assert len(train) == SMALL["n_train"] and len(test) == SMALL["n_val"] and test.attributes.shape[1] == 18
    assert database.paths == train.paths and inet.paths == train.paths and inet.attributes is None
    assert (inet.labels == train.labels).all()
    items = load_coco_captions(world / "coco", "train2017")
    assert train.paths == [f"train2017/{it.path.name}" for it in items]
    for i in (0, 5):
        im = shapes.render_image(SMALL["seed"], "train", i, 32)
        assert train.labels[i] == im.label and (train.attributes[i] == im.attributes).all()
        img, label, attrs, j = ImageListDataset(train, world / "images")[i]
        assert np.array_equal(np.asarray(img), im.image) and label == im.label and attrs.shape == (18,) and j == i
    img, label, attrs, _ = ImageListDataset(inet, world / "images")[1]
    assert attrs.numel() == 0


def test_broden_export_reads_back_with_the_ground_truth(world):
    b = Broden(world / "broden")
    assert b.categories == ["object", "color", "texture", "scene"] and len(b) == SMALL["n_broden"]
    assert b.num_labels == 25 and b.label_names[0] == "-" and b.label_names[1] == "circle"
    for i in range(SMALL["n_broden"]):
        im = shapes.render_image(SMALL["seed"], "broden", i, 32)
        labels = b.load_labels(i)
        assert labels["scene"] == [b.labels.set_index("name").loc[f"{im.scene}-s", "number"]]
        assert np.array_equal(b.load_image(i), im.image)
        obj = labels["object"][0]
        assert obj.shape == (16, 16)
        assert np.array_equal(obj, im.shape_map[1::2, 1::2])  # shapes are labels 1..6 in SHAPES order
        for cat in ("object", "color", "texture"):
            assert all(b.primary_category(v) == cat for v in np.unique(labels[cat][0]) if v)


def test_broden_csv_files_follow_the_netdissect_formats(world):
    root = world / "broden"
    header = (root / "index.csv").read_text().splitlines()[0]
    assert header == "image,split,ih,iw,sh,sw,color,object,material,part,scene,texture"
    with open(root / "label.csv") as f:
        labels = list(csv.DictReader(f))
    assert list(labels[0]) == ["number", "name", "category", "frequency", "coverage", "syns"]
    assert labels[0]["number"] == "1"  # label 0 ('-') is implicit, as in Broden
    for row in labels:  # NetDissect-Lite parses every category entry with this pattern
        for entry in row["category"].split(";"):
            assert re.match(r"^([^(]*)\(([^)]*)\)$", entry)
    with open(root / "category.csv") as f:
        cats = list(csv.DictReader(f))
    assert list(cats[0]) == ["name", "first", "last", "count", "frequency"]
    firsts = [int(c["first"]) for c in cats]
    assert firsts == sorted(firsts)
    by_number = {int(r["number"]): r for r in labels}
    total = 0
    for c in cats:
        with open(root / f"c_{c['name']}.csv") as f:
            rows = list(csv.DictReader(f))
        assert list(rows[0]) == ["code", "number", "name", "frequency", "coverage"]
        assert [int(r["code"]) for r in rows] == list(range(1, int(c["count"]) + 1))
        assert {int(r["number"]) for r in rows} == set(range(int(c["first"]), int(c["last"]) + 1))
        for r in rows:
            assert by_number[int(r["number"])]["category"] == f"{c['name']}({r['frequency']})"
        assert int(c["frequency"]) == sum(int(r["frequency"]) for r in rows)
        total += sum(float(r["coverage"]) for r in rows if c["name"] == "scene")
    assert total == pytest.approx(SMALL["n_broden"])  # each image has one scene covering it whole


def test_world_json_records_vocabularies_and_splits(world):
    w = json.loads((world / "world.json").read_text())
    assert w["arguments"] == SMALL and len(w["class_names"]) == 24 and len(w["attribute_names"]) == 18
    assert w["class_names"][5] == "square/striped" and "shape" in w["class_rule"]
    assert w["attribute_names"] == list(shapes.ATTRIBUTE_NAMES)
    assert "database = the train2017 images" in w["layout"]["splits"]
    assert w["sizes"]["broden"]["images"] == SMALL["n_broden"]
