"""Loaders on what the real datasets hold: odd image modes, SUN/ImageNet list quirks, Broden cells, bad files."""
import json
import shutil

import numpy as np
import pytest
from PIL import Image

from bitlens.data.broden import Broden, decode_mask
from bitlens.data.coco import CocoImages, caption_pairs, first_captions, load_coco_captions, load_rgb
from bitlens.data.imagelist import ImageListDataset, read_list
from bitlens.labels import MISSING_LABEL
from bitlens.data.shapes import encode_label_map

# -- COCO -------------------------------------------------------------------------------------------------------


def _coco(tmp_path, images=None, annotations=None):
    root = tmp_path / "coco"
    (root / "annotations").mkdir(parents=True)
    (root / "val2017").mkdir()
    Image.new("L", (10, 8), 90).save(root / "val2017" / "000000000007.jpg")  # grayscale, as some COCO files
    Image.new("CMYK", (10, 8), (0, 255, 255, 0)).save(root / "val2017" / "000000000009.jpg")
    images = images if images is not None else [
        {"id": 7, "file_name": "000000000007.jpg", "height": 8, "width": 10},
        {"id": 9, "file_name": "000000000009.jpg", "height": 8, "width": 10}]
    annotations = annotations if annotations is not None else [
        {"id": 1, "image_id": 9, "caption": "A red block. "}, {"id": 2, "image_id": 7, "caption": "a grey field"},
        {"id": 3, "image_id": 9, "caption": "something red"}, {"id": 4, "image_id": 7, "caption": "flat grey"}]
    (root / "annotations" / "captions_val2017.json").write_text(
        json.dumps({"images": images, "annotations": annotations}))
    return root


def test_coco_groups_several_captions_per_image_in_file_order(tmp_path):
    items = load_coco_captions(_coco(tmp_path), "val2017")
    assert [it.image_id for it in items] == [7, 9]
    assert items[1].captions == ("A red block.", "something red")
    assert first_captions(items) == ["a grey field", "A red block."]
    assert caption_pairs(items) == ([0, 0, 1, 1], ["a grey field", "flat grey", "A red block.", "something red"])


def test_coco_images_come_back_rgb_from_grayscale_and_cmyk(tmp_path):
    ds = CocoImages(load_coco_captions(_coco(tmp_path), "val2017"), transform=np.asarray)
    gray, cmyk = ds[0], ds[1]
    assert gray.shape == cmyk.shape == (8, 10, 3)
    assert (gray == 90).all() and cmyk[0, 0, 0] > 200 and cmyk[0, 0, 1] < 60


def test_coco_errors_name_the_file_and_entry(tmp_path):
    root = _coco(tmp_path)
    (root / "val2017" / "000000000009.jpg").unlink()
    with pytest.raises(FileNotFoundError, match=r"000000000009.jpg: image listed in .*captions_val2017.json"
                                                r" \(entry #1\)"):
        load_coco_captions(root, "val2017")
    with pytest.raises(FileNotFoundError, match="captions_train2017.json"):
        load_coco_captions(root, "train2017")
    shutil.rmtree(root)
    root = _coco(tmp_path, annotations=[{"id": 1, "image_id": 7}])
    with pytest.raises(ValueError, match=r"annotation #0 lacks image_id/caption"):
        load_coco_captions(root, "val2017")
    shutil.rmtree(root)
    root = _coco(tmp_path, annotations=[{"id": 1, "image_id": 8, "caption": "x"}])
    with pytest.raises(ValueError, match=r"image ids \[8\]"):
        load_coco_captions(root, "val2017")
    (root / "annotations" / "captions_val2017.json").write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        load_coco_captions(root, "val2017")


@pytest.mark.parametrize("mode, value", [("L", 100), ("RGBA", (10, 20, 30, 128)), ("P", 3), ("LA", (50, 255)),
                                         ("I;16", 65535), ("1", 1)])
def test_any_image_mode_loads_as_rgb(tmp_path, mode, value):
    p = tmp_path / f"x_{mode.replace(';', '')}.png"
    Image.new(mode, (4, 3), value).save(p)
    img = load_rgb(p)
    assert img.mode == "RGB" and img.size == (4, 3)
    if mode == "I;16":
        assert np.asarray(img)[0, 0].tolist() == [255, 255, 255]


def test_unreadable_image_is_named(tmp_path):
    (tmp_path / "bad.jpg").write_bytes(b"not an image")
    with pytest.raises(ValueError, match="bad.jpg: cannot read image"):
        load_rgb(tmp_path / "bad.jpg")
    with pytest.raises(FileNotFoundError, match="nope.jpg"):
        load_rgb(tmp_path / "nope.jpg")


# -- image lists ------------------------------------------------------------------------------------------------


def test_sun_values_map_to_one_zero_and_nan(tmp_path):
    p = tmp_path / "sun.txt"
    p.write_text("a/x.jpg 3 1 -1 2\n\nb/y.jpg 99999 -1 1 0\n")
    lst = read_list(p, "sun", 3)
    assert lst.labels.dtype == np.int64 and lst.labels.tolist() == [3, MISSING_LABEL]
    assert lst.attributes.dtype == np.float32
    np.testing.assert_array_equal(lst.attributes, [[1, 0, np.nan], [0, 1, 0]])
    assert lst.lines == [1, 3] and lst.where(1) == f"{p}:3"
    assert read_list(p, "sun").attributes.shape == (2, 3)  # count taken from the first line


def test_imagenet_list_keeps_the_missing_label_and_has_no_attributes(tmp_path):
    p = tmp_path / "in.txt"
    p.write_text("n01/a.JPEG 0\r\nn02/b.JPEG 99999\r\n")
    lst = read_list(p, "imagenet")
    assert lst.paths == ["n01/a.JPEG", "n02/b.JPEG"] and lst.labels.tolist() == [0, 99999]
    assert lst.attributes is None


@pytest.mark.parametrize("text, fmt, k, match", [
    ("a.jpg 1\n\nb.jpg\n", "imagenet", 0, r"bad.txt:3: expected 2 fields \(relpath label\), got 1"),
    ("a.jpg x\n", "imagenet", 0, r"bad.txt:1: class label 'x' is not an integer"),
    ("a.jpg -3\n", "imagenet", 0, r"bad.txt:1: class label -3 is negative"),
    ("a.jpg 1 1 7\n", "sun", 2, r"bad.txt:1: attribute value '7'"),
    ("a.jpg 1 1 -1\nb.jpg 2 1\n", "sun", 0, r"bad.txt:2: expected 4 fields \(relpath class \+ 2 attributes\)"),
    ("a.jpg 1 1 -1\n", "sun", 3, r"bad.txt:1: expected 5 fields"),
    ("\n\n", "imagenet", 0, r"bad.txt: the list is empty"),
    ("a.jpg 1\n", "coco", 0, r"unknown list format 'coco'"),
])
def test_malformed_list_lines_are_named(tmp_path, text, fmt, k, match):
    p = tmp_path / "bad.txt"
    p.write_text(text)
    with pytest.raises(ValueError, match=match):
        read_list(p, fmt, k)


def test_list_dataset_yields_image_label_attributes_index(tmp_path):
    (tmp_path / "img" / "a").mkdir(parents=True)
    Image.new("CMYK", (6, 5)).save(tmp_path / "img" / "a" / "x.jpg")
    p = tmp_path / "l.txt"
    p.write_text("a/x.jpg 4 1 2\n\na/missing.jpg 5 -1 -1\n")
    ds = ImageListDataset(read_list(p, "sun", 2), tmp_path / "img", transform=np.asarray)
    img, label, attrs, i = ds[0]
    assert img.shape == (5, 6, 3) and label == 4 and i == 0
    assert attrs[0] == 1 and attrs[1].isnan()
    with pytest.raises(FileNotFoundError, match=r"missing.jpg: image listed at .*l.txt:3 is missing"):
        ds[1]
    with pytest.raises(FileNotFoundError, match="list file not found"):
        read_list(tmp_path / "nope.txt")


# -- Broden -----------------------------------------------------------------------------------------------------


def test_mask_decoding_is_r_plus_256_g_beyond_255(tmp_path):
    ids = np.array([[0, 5, 255], [256, 300, 1197], [4000, 65535, 511]], np.int32)
    rgb = np.stack([ids % 256, ids // 256, np.full_like(ids, 77)], -1).astype(np.uint8)  # blue is ignored
    Image.fromarray(rgb).save(tmp_path / "m.png")
    np.testing.assert_array_equal(decode_mask(tmp_path / "m.png"), ids)
    assert decode_mask(tmp_path / "m.png").dtype == np.int32
    Image.fromarray(encode_label_map(ids)).save(tmp_path / "e.png")
    np.testing.assert_array_equal(Broden.decode_mask(tmp_path / "e.png"), ids)
    with pytest.raises(ValueError, match="0..65535"):
        encode_label_map(np.array([[70000]]))


def _broden(tmp_path, cell="a.png;b.png;7", mask_shape=(4, 4), label_rows=None, sh="4", c_files=True):
    d = tmp_path / "broden"
    shutil.rmtree(d, ignore_errors=True)
    (d / "images" / "ds").mkdir(parents=True)
    Image.new("RGB", (8, 8), (1, 2, 3)).save(d / "images" / "ds" / "x.jpg")
    for name, lab in (("a.png", 3), ("b.png", 300)):
        m = np.zeros(mask_shape, np.int32)
        m[0, 0] = lab
        Image.fromarray(encode_label_map(m)).save(d / "images" / name)
    (d / "index.csv").write_text("image,split,ih,iw,sh,sw,color,object,material,part,scene,texture\n"
                                 f"ds/x.jpg,train,8,8,{sh},4,,{cell},,,12,\n"
                                 "ds/x.jpg,val,8,8,4,4,,,,,12;7,\n")
    (d / "category.csv").write_text("name,first,last,count,frequency\n"
                                    "object,3,300,3,3\npart,3,3,1,2\nscene,12,12,1,2\n")
    (d / "label.csv").write_text("number,name,category,frequency,coverage,syns\n" + "\n".join(label_rows or [
        "3,wheel,object(1);part(2),3,0.3,", "7,room,object(1),1,1.0,", "12,beach-s,scene(2),2,2.0,shore",
        "300,bolt,object(1),1,0.1,"]) + "\n")
    if c_files:
        (d / "c_object.csv").write_text("code,number,name,frequency,coverage\n1,3,wheel,1,0.9\n2,7,room,1,1.0\n"
                                        "3,300,bolt,1,0.1\n")
        (d / "c_part.csv").write_text("code,number,name,frequency,coverage\n1,3,wheel,2,0.2\n")
        (d / "c_scene.csv").write_text("code,number,name,frequency,coverage\n1,12,beach-s,2,2.0\n")
    return d


def test_broden_cells_hold_several_masks_and_image_level_labels(tmp_path):
    b = Broden(_broden(tmp_path))
    assert b.categories == ["object", "part", "scene"] and len(b) == 2 and b.num_labels == 301
    labels = b.load_labels(0)
    assert set(labels) == {"object", "scene"}  # empty cells give no entry
    first, second, whole = labels["object"]
    assert first.shape == (4, 4) and first.dtype == np.int32 and first[0, 0] == 3 and second[0, 0] == 300
    assert whole == 7 and labels["scene"] == [12]
    assert b.load_labels(1) == {"scene": [12, 7]}
    assert b.load_labels(0, ["scene"]) == {"scene": [12]}
    assert b.load_image(0).shape == (8, 8, 3) and b.label_names[300] == "bolt" and b.label_names[0] == "-"
    assert list(b.labels.columns[:3]) == ["number", "name", "category"]


def test_broden_primary_category_uses_coverage_then_counts(tmp_path):
    b = Broden(_broden(tmp_path))
    assert b.primary_category(3) == "object"  # c_object.csv coverage 0.9 beats c_part.csv's 0.2
    assert b.primary_category(12) == "scene" and b.primary_category(0) == "" and b.primary_category(99) == ""
    b = Broden(_broden(tmp_path, c_files=False))
    assert b.primary_category(3) == "part"  # without c_ files: the highest count in label.csv


def test_broden_mask_size_mismatch_names_file_and_line(tmp_path):
    b = Broden(_broden(tmp_path, mask_shape=(5, 4)))
    with pytest.raises(ValueError, match=r"a.png: mask is 5x4 but .*index.csv:2 says sh, sw = 4, 4"):
        b.load_labels(0)


def test_broden_bad_data_is_named(tmp_path):
    b = Broden(_broden(tmp_path))
    (tmp_path / "broden/images/b.png").unlink()
    with pytest.raises(FileNotFoundError, match=r"b.png: mask named in .*index.csv:2 \(column 'object'\)"):
        b.load_labels(0)
    with pytest.raises(ValueError, match=r"unknown Broden category texturez; .*category.csv lists object, part"):
        b.load_labels(0, ["texturez"])
    with pytest.raises(ValueError, match=r"index.csv:2: image-level label 7 .* is not in"):
        Broden(_broden(tmp_path, label_rows=["3,wheel,object(1),1,0.3,", "12,beach-s,scene(2),2,2.0,",
                                             "300,bolt,object(1),1,0.1,"], c_files=False)).load_labels(0)
    with pytest.raises(ValueError, match=r"label.csv:3: unknown category 'material'"):
        Broden(_broden(tmp_path, label_rows=["3,wheel,object(1),1,0.3,", "7,room,material(1),1,1.0,"],
                       c_files=False))
    with pytest.raises(ValueError, match=r"label.csv:2: category cell 'object'"):
        Broden(_broden(tmp_path, label_rows=["3,wheel,object,1,0.3,"], c_files=False))
    with pytest.raises(ValueError, match=r"index.csv:2: column 'sh' should be an integer, got 'four'"):
        Broden(_broden(tmp_path, sh="four"))
    b = Broden(_broden(tmp_path))
    (tmp_path / "broden/images/ds/x.jpg").unlink()
    with pytest.raises(FileNotFoundError, match=r"x.jpg: image of .*index.csv line 2 is missing"):
        b.load_image(0)
    (tmp_path / "broden/category.csv").unlink()
    with pytest.raises(FileNotFoundError, match=r"category.csv: required Broden file is missing"):
        Broden(tmp_path / "broden")
    with pytest.raises(FileNotFoundError, match="Broden folder not found"):
        Broden(tmp_path / "nope")


def test_broden_index_needs_a_column_per_category(tmp_path):
    d = _broden(tmp_path)
    (d / "category.csv").write_text("name,first,last,count,frequency\nobject,3,300,3,3\npart,3,3,1,2\n"
                                    "scene,12,12,1,2\nedge,1,1,1,1\n")
    with pytest.raises(ValueError, match=r"index.csv:1: no column for category edge"):
        Broden(d)


def test_karpathy_split_finds_test_images_by_coco_id_in_either_2017_folder(tmp_path):
    import json as _json

    from bitlens.data.coco import load_karpathy_split

    (tmp_path / "val2017").mkdir()
    (tmp_path / "train2017").mkdir()
    (tmp_path / "val2017" / "000000000042.jpg").write_bytes(b"x")
    (tmp_path / "train2017" / "000000000007.jpg").write_bytes(b"x")
    split = {"images": [
        {"split": "test", "cocoid": 42, "sentences": [{"raw": "a cat "}, {"raw": "a small cat"}]},
        {"split": "train", "cocoid": 1, "sentences": [{"raw": "x"}]},
        {"split": "test", "cocoid": 7, "sentences": [{"raw": "a dog"}]}]}
    f = tmp_path / "dataset_coco.json"
    f.write_text(_json.dumps(split))
    items = load_karpathy_split(tmp_path, f)
    assert [(it.image_id, it.path.parent.name, it.captions) for it in items] == [
        (42, "val2017", ("a cat", "a small cat")), (7, "train2017", ("a dog",))]
    split["images"].append({"split": "test", "cocoid": 9, "sentences": [{"raw": "y"}]})
    f.write_text(_json.dumps(split))
    with pytest.raises(FileNotFoundError, match="000000000009.jpg"):
        load_karpathy_split(tmp_path, f)
    f.write_text("{")
    with pytest.raises(ValueError, match="not valid JSON"):
        load_karpathy_split(tmp_path, f)
    with pytest.raises(FileNotFoundError, match="dataset_coco.json"):
        load_karpathy_split(tmp_path, tmp_path / "missing.json")
