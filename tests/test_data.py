import hashlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bitlens.data import shapes
from bitlens.data.broden import Broden, decode_mask
from bitlens.data.coco import caption_pairs, first_captions, load_coco_captions, load_rgb
from bitlens.data.imagelist import ImageListDataset, read_list

SMALL = dict(seed=3, image_size=32, n_train=12, n_val=6, n_broden=8, broden_mask_size=16, max_objects=3)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("world")
    shapes.generate_world(root, **SMALL)
    return root


def _digest(root: Path) -> dict:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_same_seed_gives_byte_identical_files(world, tmp_path):
    shapes.generate_world(tmp_path, **SMALL)
    assert _digest(world) == _digest(tmp_path)


def test_other_seed_gives_other_images(tmp_path):
    shapes.generate_world(tmp_path, **{**SMALL, "seed": 4})
    a = np.asarray(Image.open(tmp_path / "coco/train2017/000000000001.png"))
    b = shapes.render_image(3, "train", 0, 32).image
    assert not np.array_equal(a, b)


def test_world_is_cached_by_its_arguments(world):
    before = (world / "world.json").stat().st_mtime_ns
    shapes.generate_world(world, **SMALL)
    assert (world / "world.json").stat().st_mtime_ns == before


def test_ground_truth_matches_the_drawing():
    im = shapes.render_image(0, "train", 5, 64)
    assert im.image.shape == (64, 64, 3) and im.image.dtype == np.uint8
    assert (im.shape_map > 0).sum() == sum(o.area for o in im.objects)
    assert ((im.shape_map > 0) == (im.color_map > 0)).all() and ((im.shape_map > 0) == (im.texture_map > 0)).all()
    assert 0 <= im.label < 36 and len(im.captions) == 5
    assert im.attributes.sum() >= 3  # at least one shape, one color, one texture


def test_coco_export_reads_back_with_our_loader_and_torchvision(world):
    from torchvision.datasets import CocoCaptions

    items = load_coco_captions(world / "coco", "train2017")
    assert len(items) == SMALL["n_train"] and all(len(it.captions) == 5 for it in items)
    idx, caps = caption_pairs(items)
    assert len(caps) == 5 * len(items) and idx[:6] == [0, 0, 0, 0, 0, 1]
    assert first_captions(items)[0] == items[0].captions[0]
    tv = CocoCaptions(str(world / "coco" / "train2017"), str(world / "coco/annotations/captions_train2017.json"))
    img, tv_caps = tv[0]
    assert img.size == (32, 32) and sorted(tv_caps) == sorted(items[0].captions)


def test_coco_missing_image_is_named(world, tmp_path):
    import shutil

    shutil.copytree(world / "coco", tmp_path / "coco")
    (tmp_path / "coco/val2017/000001000001.png").unlink()
    with pytest.raises(FileNotFoundError, match="000001000001.png.*entry #0"):
        load_coco_captions(tmp_path / "coco", "val2017")
    with pytest.raises(FileNotFoundError, match="captions_nope.json"):
        load_coco_captions(tmp_path / "coco", "nope")


def test_grayscale_and_cmyk_images_become_rgb(tmp_path):
    Image.new("L", (8, 8), 100).save(tmp_path / "g.png")
    Image.new("CMYK", (8, 8), (0, 255, 255, 0)).save(tmp_path / "c.jpg")
    assert load_rgb(tmp_path / "g.png").mode == "RGB"
    c = np.asarray(load_rgb(tmp_path / "c.jpg"))
    assert c.shape == (8, 8, 3) and c[0, 0, 0] > 200 and c[0, 0, 1] < 60


def test_lists_read_back(world):
    sun = read_list(world / "lists/train.txt", "sun", 18)
    inet = read_list(world / "lists/imagenet_test.txt", "imagenet")
    assert len(sun) == SMALL["n_train"] and sun.attributes.shape == (SMALL["n_train"], 18)
    assert set(np.unique(sun.attributes)) <= {0.0, 1.0} and inet.attributes is None and len(inet) == SMALL["n_val"]
    ds = ImageListDataset(sun, world / "coco")
    img, label, attrs, i = ds[2]
    assert img.size == (32, 32) and label == sun.labels[2] and attrs.shape == (18,) and i == 2


def test_sun_values_and_missing_labels(tmp_path):
    p = tmp_path / "l.txt"
    p.write_text("a.jpg 3 1 -1 2\nb.jpg 99999 -1 1 1\n")
    lst = read_list(p, "sun", 3)
    assert lst.labels.tolist() == [3, 99999]
    np.testing.assert_array_equal(lst.attributes[0, :2], [1, 0]) and np.isnan(lst.attributes[0, 2])


def test_malformed_list_line_is_named(tmp_path):
    p = tmp_path / "bad.txt"
    p.write_text("a.jpg 1\nb.jpg\n")
    with pytest.raises(ValueError, match=r"bad.txt:2: expected 2 fields"):
        read_list(p, "imagenet")
    p.write_text("a.jpg x\n")
    with pytest.raises(ValueError, match=r"bad.txt:1: class label 'x'"):
        read_list(p, "imagenet")
    p.write_text("a.jpg 1 1 7\n")
    with pytest.raises(ValueError, match=r"bad.txt:1: attribute value '7'"):
        read_list(p, "sun", 2)


def test_mask_decoding_uses_r_plus_256_g(tmp_path):
    ids = np.array([[0, 5], [300, 1000]], np.int32)
    rgb = np.stack([ids % 256, ids // 256, np.zeros_like(ids)], -1).astype(np.uint8)
    Image.fromarray(rgb).save(tmp_path / "m.png")
    np.testing.assert_array_equal(decode_mask(tmp_path / "m.png"), ids)


def test_broden_export_reads_back(world):
    b = Broden(world / "broden")
    assert set(b.categories) == {"color", "object", "scene", "texture"} and len(b) == SMALL["n_broden"]
    labels = b.load_labels(0)
    assert isinstance(labels["scene"][0], int) and b.primary_category(labels["scene"][0]) == "scene"
    obj = labels["object"][0]
    assert obj.shape == (16, 16) and all(b.primary_category(v) == "object" for v in np.unique(obj) if v)
    assert b.load_image(0).shape == (32, 32, 3)
    assert b.label_names[1] == "circle"


def _tiny_broden(tmp_path, cell="a.png;b.png;7", mask_shape=(4, 4)):
    d = tmp_path / "broden"
    (d / "images").mkdir(parents=True)
    Image.new("RGB", (8, 8)).save(d / "images" / "x.png")
    for name, lab in (("a.png", 3), ("b.png", 300)):
        m = np.zeros(mask_shape + (3,), np.uint8)
        m[0, 0] = (lab % 256, lab // 256, 0)
        Image.fromarray(m).save(d / "images" / name)
    (d / "index.csv").write_text("image,split,ih,iw,sh,sw,color,object,material,part,scene,texture\n"
                                 f"x.png,train,8,8,4,4,,{cell},,,,\n")
    (d / "category.csv").write_text("name,first,last,count,frequency\nobject,3,300,2,1\n")
    (d / "label.csv").write_text("number,name,category,frequency,coverage,syns\n0,-,-,0,0,\n3,cat,object(1);part(2),1,0.1,\n"
                                 "7,whole,object(1),1,1.0,\n300,big,object(1),1,0.1,\n")
    return d


def test_broden_multi_entry_cells_and_primary_category(tmp_path):
    b = Broden(_tiny_broden(tmp_path))
    entries = b.load_labels(0)["object"]
    assert len(entries) == 3 and entries[2] == 7
    assert entries[0][0, 0] == 3 and entries[1][0, 0] == 300
    assert b.primary_category(3) == "part"  # the category with the highest count wins


def test_broden_mask_size_mismatch_and_missing_mask_are_named(tmp_path):
    b = Broden(_tiny_broden(tmp_path, mask_shape=(5, 4)))
    with pytest.raises(ValueError, match=r"a.png: mask is 5x4 but index.csv row 2 says sh, sw = 4, 4"):
        b.load_labels(0)
    (tmp_path / "broden/images/a.png").unlink()
    with pytest.raises(FileNotFoundError, match="a.png"):
        b.load_labels(0)
    with pytest.raises(FileNotFoundError, match="Broden folder not found"):
        Broden(tmp_path / "nope")
