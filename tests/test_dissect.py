import json

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from bitlens.data.broden import Broden
from bitlens.dissect.activations import layer_fn, preprocess_image, top_images
from bitlens.dissect.labels import bit_groups, summarize, unit_labels
from bitlens.dissect.run import dissect
from bitlens.dissect.tally import Tally, kept_images, tally, unit_thresholds, upsample


def _broden(tmp_path, n=2, size=4, missing_mask=False, cat=(slice(0, 2), slice(0, 2))):
    """n 8×8 images with size×size masks: label 1 ('cat', object) on the `cat` cells (the top-left 2×2);
    image-level label 2 ('sky-s')."""
    d = tmp_path / "broden"
    (d / "images").mkdir(parents=True)
    rows = []
    for i in range(n):
        Image.new("RGB", (8, 8), (i * 40, 0, 0)).save(d / "images" / f"{i}.png")
        m = np.zeros((size, size, 3), np.uint8)
        m[cat + (0,)] = 1
        if not (missing_mask and i == 1):
            Image.fromarray(m).save(d / "images" / f"{i}_object.png")
        rows.append(f"{i}.png,train,8,8,{size},{size},,{i}_object.png,,,2,")
    (d / "index.csv").write_text("image,split,ih,iw,sh,sw,color,object,material,part,scene,texture\n" + "\n".join(rows))
    (d / "category.csv").write_text("name,first,last,count,frequency\nobject,1,1,1,2\nscene,2,2,1,2\n")
    (d / "label.csv").write_text("number,name,category,frequency,coverage,syns\n0,-,-,0,0,\n1,cat,object(2),2,0.25,\n"
                                 "2,sky-s,scene(2),2,1.0,\n")
    return Broden(d)


def test_iou_on_hand_built_masks_pixel_and_image_level(tmp_path):
    b = _broden(tmp_path)
    # unit 0 fires on the top-left 3×3 block of the 4×4 mask grid in both images; activations already at mask size
    acts = np.zeros((2, 1, 4, 4), np.float32)
    acts[:, 0, :3, :3] = 1.0
    t = tally(acts, np.array([0.5]), b, ["object", "scene"])
    # per image: |M| = 9, |L_cat| = 4, |M ∩ L_cat| = 4; sky-s is image-level: |L| = 16, ∩ = |M| = 9
    assert t.intersect[0, 1] == 8 and t.label_area[1] == 8 and t.unit_area[0, 0] == 18
    assert t.intersect[0, 2] == 18 and t.label_area[2] == 32 and t.unit_area[0, 1] == 18
    iou = t.iou()
    assert iou[0, 1] == pytest.approx(8 / (18 + 8 - 8))
    assert iou[0, 2] == pytest.approx(18 / (18 + 32 - 18))


def test_threshold_is_the_top_half_percent_quantile():
    rng = np.random.default_rng(0)
    acts = rng.random((10, 2, 10, 10)).astype(np.float32)  # 1000 values per unit
    thr = unit_thresholds(acts, 0.005)
    for k in range(2):
        v = acts[:, k].ravel()
        assert (v > thr[k]).sum() == 5  # 0.5% of 1000
        assert thr[k] == pytest.approx(np.quantile(v, 0.995))


def test_upsampling_is_bilinear_with_pixel_centres():
    x = torch.tensor([[[[0.0, 1.0], [2.0, 3.0]]]])
    up = upsample(x, (4, 4))[0, 0]
    # align_corners=False: output pixel centres map to (i + 0.5) / 2 − 0.5 in the input, clamped at the borders
    assert up[0, 0] == 0.0 and up[0, 1] == pytest.approx(0.25) and up[1, 1] == pytest.approx(0.75)
    torch.testing.assert_close(up, F.interpolate(x, size=(4, 4), mode="bilinear", align_corners=False)[0, 0])


class _Tiny(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 4, 3, padding=1)

    def forward(self, x):
        return self.conv(x)


def test_dissect_writes_tally_csv_in_the_netdissect_layout(tmp_path):
    b = _broden(tmp_path, n=4)
    res = dissect(_Tiny(), b, tmp_path / "out", layer="conv", input_size=8, threshold=0.04, batch_size=3)
    df = pd.read_csv(tmp_path / "out" / "tally.csv")
    assert list(df.columns[:4]) == ["unit", "category", "label", "score"]
    for c in ("object", "scene"):
        assert [f"{c}-label", f"{c}-truth", f"{c}-activation", f"{c}-intersect", f"{c}-iou"] == \
               [x for x in df.columns if x.startswith(c + "-")]
    assert sorted(df["unit"]) == [1, 2, 3, 4]
    assert res["summary"]["units"] == 4 and (tmp_path / "out" / "units.json").exists()


def test_missing_layer_and_missing_mask_are_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="model has no layer 'conv9'; layers: conv"):
        layer_fn(_Tiny(), "conv9")
    b = _broden(tmp_path, missing_mask=True)
    with pytest.raises(FileNotFoundError, match="1_object.png"):
        tally(np.zeros((2, 1, 4, 4), np.float32), np.array([0.5]), b)


def _area_rule_broden(tmp_path):
    """Three 4×4 images (masks 4×4). Image 0: object 'cat' (1) on the top-left 2×2, color 'red-c' (3) on the
    bottom row's right half, scene 'sky-s' (2) image-level. Image 1: 'cat' on the top-left 2×2 only. Image 2: no
    label in any category (the fork drops it)."""
    d = tmp_path / "area"
    (d / "images").mkdir(parents=True)

    def mask(name, cells, label):
        m = np.zeros((4, 4, 3), np.uint8)
        for r, c in cells:
            m[r, c, 0] = label
        Image.fromarray(m).save(d / "images" / name)
        return name

    tl = [(0, 0), (0, 1), (1, 0), (1, 1)]
    for i in range(3):
        Image.new("RGB", (4, 4), (60 * i, 0, 0)).save(d / "images" / f"{i}.png")
    rows = [f"0.png,train,4,4,4,4,{mask('0_c.png', [(3, 2), (3, 3)], 3)},{mask('0_o.png', tl, 1)},2",
            f"1.png,train,4,4,4,4,,{mask('1_o.png', tl, 1)},",
            "2.png,train,4,4,4,4,,,"]
    (d / "index.csv").write_text("image,split,ih,iw,sh,sw,color,object,scene\n" + "\n".join(rows) + "\n")
    (d / "category.csv").write_text("name,first,last,count,frequency\ncolor,3,3,1,1\nobject,1,1,1,2\n"
                                    "scene,2,2,1,1\n")
    (d / "label.csv").write_text("number,name,category,frequency,coverage,syns\n1,cat,object(2),2,0.25,\n"
                                 "2,sky-s,scene(1),1,1.0,\n3,red-c,color(1),1,0.125,\n")
    return Broden(d)


def _area_rule_acts():
    """Unit 0: the top-left 3×3 in image 0 (overlaps 'cat', misses 'red-c'), the bottom-right 2×2 in image 1
    (misses 'cat'), everything in image 2. Unit 1: dead."""
    acts = np.zeros((3, 2, 4, 4), np.float32)
    acts[0, 0, :3, :3] = 1.0
    acts[1, 0, 2:, 2:] = 1.0
    acts[2, 0] = 1.0
    return acts


def test_area_rule_counts_an_image_only_where_the_mask_meets_the_category(tmp_path):
    b = _area_rule_broden(tmp_path)
    acts = _area_rule_acts()
    assert kept_images(b, b.categories).tolist() == [0, 1]
    t = tally(acts, np.array([0.5, 0.5]), b)  # reference: image 2 dropped
    cat, sky, red = 1, 2, 3
    obj, scene, color = (t.categories.index(c) for c in ("object", "scene", "color"))
    # |M| = 9 (image 0) and 4 (image 1); only image 0's mask touches a 'cat' pixel, image 0 has sky-s, no
    # mask touches red-c
    assert t.unit_area[0, obj] == 9 and t.unit_area[0, scene] == 9 and t.unit_area[0, color] == 0
    assert t.intersect[0, cat] == 4 and t.label_area[cat] == 8
    assert t.intersect[0, sky] == 9 and t.label_area[sky] == 16
    assert t.intersect[0, red] == 0 and t.label_area[red] == 2
    iou = t.iou()
    assert iou[0, cat] == pytest.approx(4 / (9 + 8 - 4))
    assert iou[0, sky] == pytest.approx(9 / (9 + 16 - 9))
    # the simple rule adds image 1's |M| to object as well, and keeps image 2
    simple = tally(acts, np.array([0.5, 0.5]), b, reference=False)
    assert simple.unit_area[0, obj] == 9 + 4 + 0 and simple.unit_area[0, scene] == 9
    assert simple.iou()[0, cat] == pytest.approx(4 / (13 + 8 - 4))
    units = unit_labels(t, b)
    assert (units[0]["label"], units[0]["category"]) == ("sky-s", "scene")
    assert units[0]["score"] == pytest.approx(9 / 16)
    # a dead unit is unlabelled: no category, empty label, IoU 0 — and not interpretable at any threshold
    assert (units[1]["label"], units[1]["category"], units[1]["score"]) == ("", "", 0.0)
    assert summarize(units, 0.0)["interpretable"] == 1
    assert bit_groups(units, 0.0) == {"sky-s": [1]}


def test_images_without_labels_do_not_enter_the_thresholds(tmp_path):
    b = _area_rule_broden(tmp_path)
    acts = _area_rule_acts()
    # the median over images 0 and 1 (13 of 32 positions on) is 0; with image 2 (29 of 48 on) it would be 1
    assert unit_thresholds(acts, 0.5, images=[0, 1])[0] == 0.0
    assert unit_thresholds(acts, 0.5)[0] == 1.0


def test_caffe_preprocessing_of_a_constant_image():
    img = np.zeros((6, 6, 3), np.uint8)
    img[:] = (200, 100, 50)
    x = preprocess_image(img, 6, "caffe")
    want = [(200 - 123.68) / (255 * 0.224), (100 - 116.779) / (255 * 0.224), (50 - 103.939) / (255 * 0.224)]
    for ch in range(3):
        torch.testing.assert_close(x[ch], torch.full((6, 6), want[ch]), rtol=0, atol=1e-6)
    tv = preprocess_image(img, 6, "torchvision")
    assert tv[0, 0, 0].item() == pytest.approx((200 / 255 - 0.485) / 0.229, abs=1e-6)
    with pytest.raises(ValueError, match="unknown preprocessing 'bgr'; valid: caffe, torchvision"):
        preprocess_image(img, 6, "bgr")


def test_float32_cache_holds_the_layer_output_exactly(tmp_path):
    b = _broden(tmp_path, n=3)
    model = _Tiny().eval()
    res = dissect(model, b, tmp_path / "out", layer="conv", input_size=8, cache_dtype="float32",
                  preprocess="caffe")
    assert (tmp_path / "out" / "cache" / "activations.f32").exists()
    acts = res["activations"]
    assert acts.dtype == np.float32
    with torch.no_grad():
        want = model(torch.stack([preprocess_image(b.load_image(i), 8, "caffe") for i in range(3)])).numpy()
    np.testing.assert_array_equal(np.asarray(acts), want)
    from bitlens.dissect.activations import open_activations

    np.testing.assert_array_equal(np.asarray(open_activations(tmp_path / "out" / "cache")), want)
    with pytest.raises(ValueError, match="unknown activation cache dtype 'float64'"):
        dissect(model, b, tmp_path / "out2", layer="conv", input_size=8, cache_dtype="float64")


def test_top_images_in_bounded_chunks_match_the_whole_array():
    rng = np.random.default_rng(1)
    acts = rng.random((37, 3, 2, 2)).astype(np.float32)
    whole = top_images(acts, 5)
    chunked = top_images(acts, 5, memory=acts[0].nbytes * 4)  # 4 images per chunk
    np.testing.assert_array_equal(whole, chunked)
    peak = acts.max(axis=(2, 3))
    assert whole[1, 0] == int(np.argmax(peak[:, 1]))
    sub = top_images(acts, 2, images=[3, 7, 9])
    assert set(sub[0]) <= {3, 7, 9}


def test_cli_errors_go_to_stderr_with_status_2(tmp_path, capsys):
    from bitlens.dissect.__main__ import main

    with pytest.raises(SystemExit) as e:
        main(["--broden", str(tmp_path)])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "python -m bitlens.dissect: error" in err and "--checkpoint" in err
    assert main(["--checkpoint", str(tmp_path / "none.pt"), "--broden", str(tmp_path), "--out",
                 str(tmp_path / "o")]) == 2
    assert "none.pt" in capsys.readouterr().err


@pytest.mark.parametrize("backend", ["native", "numpy"])
def test_mask_pixels_equal_thresholded_bilinear_upsampling(backend, monkeypatch):
    from bitlens.dissect import tally as dissect
    from bitlens.dissect.tally import mask_pixels

    if backend == "numpy":
        monkeypatch.setenv("BITLENS_NATIVE", "0")
    elif dissect._native_mask() is None:
        pytest.skip("the compiled mask kernel is not built (tests/test_native_built.py requires it under make test)")
    rng = np.random.default_rng(3)
    maps = torch.as_tensor(rng.random((20, 7, 5)).astype(np.float32))
    thr = torch.as_tensor(rng.uniform(0.6, 0.99, 20).astype(np.float32))
    thr[4] = 2.0  # a map that never fires
    want = (upsample(maps[:, None], (30, 17))[:, 0] > thr[:, None, None]).flatten(1).numpy()
    m, p = mask_pixels(maps.numpy(), thr.numpy(), (30, 17))
    got = np.zeros_like(want)
    got[m, p] = True
    assert want.sum() > 50 and (got != want).sum() == 0 and len(m) == want.sum()
    assert np.all(np.diff(m) >= 0)  # map-major order, which the tally's per-image split relies on
    assert np.all(np.diff(m * 1000 + p) > 0)  # and row-major inside a map


def test_native_mask_kernel_grows_its_buffers_when_a_mask_is_large():
    from bitlens.dissect import tally as dissect

    if dissect._native_mask() is None:
        pytest.skip("the compiled mask kernel is not built")
    maps = np.ones((3, 4, 4), np.float32)  # every pixel of all three masks fires: more than n·H·W/8 pixels
    m, p = dissect.mask_pixels(maps, np.zeros(3, np.float32), (64, 64))
    assert len(m) == 3 * 64 * 64 and np.array_equal(np.bincount(m), [4096] * 3) and p[-1] == 4095


def test_bench_at_a_tiny_size_agrees_with_the_fork_port():
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    import bench_dissect

    data = bench_dissect.ArrayBroden(40, 16)
    acts = bench_dissect.random_net_activations(40, 12)
    thr = unit_thresholds(acts, 0.005)
    ours = unit_labels(tally(acts, thr, data, list(bench_dissect.CATEGORIES)), data)
    peer = bench_dissect.fork_tally(acts.astype(np.float64), thr, data, bench_dissect.CATEGORIES)
    live = [u for u in ours if u["score"] > 0]
    assert len(live) >= 8
    for u in live:
        p = peer[u["unit"] - 1]
        assert u["label"] == p["label"] and u["score"] == pytest.approx(p["score"], abs=1e-9)
    rows = bench_dissect.main(["--images", "30", "--mask", "16", "--units", "8", "--no-write"])
    assert rows[0]["peer"] == "IBC fork loop (port)" and "labels agree" in rows[0]["note"]


def test_a_unit_that_never_fires_has_no_top_images_and_says_so(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    from bitlens import figures

    class TwoUnits(torch.nn.Module):
        """Unit 1: a ramp over the positions scaled per image (one strongest position overall); unit 2: 0, as a
        ReLU that never opens."""

        def forward(self, x):
            ramp = torch.arange(64.0).reshape(1, 1, 8, 8) / 64 + 1
            return torch.cat([ramp * (1 + x.abs().mean((1, 2, 3)))[:, None, None, None], torch.zeros_like(ramp)
                              .expand(len(x), 1, 8, 8)], 1)

    b = _broden(tmp_path, n=4)
    res = dissect(torch.nn.Sequential(TwoUnits()), b, tmp_path / "out", layer="0", input_size=8, batch_size=4,
                  top_n=3)
    u1, u2 = res["units"][0], res["units"][1]
    assert u2["top_images"] == [] and u2["label"] == ""
    assert 1 <= len(u1["top_images"]) <= 3
    strip = figures.bit_strip(b, u2, res["activations"], 3)
    assert strip.dtype == np.uint8 and strip.ndim == 3 and strip.shape[0] >= 24 and (strip == 225).mean() > 0.8  # the grey panel


def test_figures_show_every_category_and_unlabelled_bits(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    from bitlens import figures

    bar = figures.category_bar({"scene": 2}, "t", ["color", "object", "scene"])
    assert [t.get_text() for t in bar.axes[0].get_xticklabels()] == ["color", "object", "scene"]
    b = _area_rule_broden(tmp_path)
    units = unit_labels(tally(_area_rule_acts(), np.array([0.5, 0.5]), b), b)
    for u in units:
        u.update(threshold=0.5, top_images=[0, 1])
    fig = figures.bit_interpretation_figure(units, b, _area_rule_acts(), [1, 2], top_n=2)
    titles = [ax.get_title(loc="left") for ax in fig.axes]
    assert titles[0].startswith("bit 1: sky-s (scene, IoU 0.562)") and titles[1] == "bit 2: (unlabelled, IoU 0.000)"
    assert any("yellow" in t.get_text() for t in fig.texts)
    page = figures.dissection_html("t", {"iou_threshold": 0.04, "headline": "h"}, units, {})
    assert "(unlabelled)" in page


@pytest.mark.parametrize("dtype", [np.int32, np.int64, np.uint16])
def test_tally_counts_label_ids_outside_the_vocabulary_as_unlabelled(dtype):
    from bitlens.dissect.tally import _Accumulator

    acc = _Accumulator(1, 4, np.array([-1, 0, 0, 1]), reference=True)
    good = np.array([[1, 3], [2, 2]], dtype)
    acc.add(np.array([0]), np.array([0, 0, 0]), np.array([0, 1, 3]), 4, [good], [], [0, 1])
    assert acc.larea.tolist() == [0, 1, 2, 1] and acc.inter[0].tolist() == [0, 1, 1, 1]
    assert acc.uarea[0].tolist() == [3, 3]  # the mask overlaps labels of both categories
    if dtype is not np.uint16:
        bad = np.array([[1, -1], [7, 2]], dtype)  # -1 and 7 are no labels of this 4-label vocabulary
        acc.add(np.array([0]), np.array([0, 0, 0]), np.array([0, 1, 2]), 4, [bad], [], [0])
        assert acc.larea.tolist() == [0, 2, 3, 1] and acc.inter[0].tolist() == [0, 2, 1, 1]


def test_starting_concepts_compare_each_readout_bit_with_its_dissected_label():
    from bitlens.dissect.labels import starting_concepts

    units = [{"unit": 1, "label": "circle", "score": 0.09}, {"unit": 2, "label": "red-c", "score": 0.05},
             {"unit": 3, "label": "solid", "score": 0.03}, {"unit": 4, "label": "", "score": 0.0},
             {"unit": 5, "label": "red-c", "score": 0.2}]
    rows = starting_concepts(units, ["circle", "red", "solid", "striped"], 0.04)
    assert [(r["bit"], r["label"], r["kept"]) for r in rows] == [
        (1, "circle", True), (2, "red-c", True),  # Broden's 'red-c' is the read-out 'red'
        (3, "solid", False),  # its concept, below the threshold
        (4, "", False)]  # a bit that never fires kept nothing; bit 5 started from no read-out


def test_mask_placement_tells_object_masks_from_border_strips(tmp_path):
    from bitlens.dissect.placement import mask_placement, placement_sentence, placement_summary

    b = _broden(tmp_path, size=16, cat=(slice(6, 10), slice(6, 10)))  # 'cat' on the centre 4×4 of 16×16 masks
    acts = np.zeros((2, 3, 16, 16), np.float32)
    acts[:, 0, 6:10, 6:10] = 1.0    # unit 1: exactly the object
    acts[:, 1, :, 0] = 1.0          # unit 2: the left column, a border strip
    acts[0, 2, 6:10, 4:10] = 1.0    # unit 3: the object and the 4×2 block left of it, in image 0 only
    units = [{"unit": 1, "label": "cat", "category": "object", "score": 0.9, "threshold": 0.5, "top_images": [0, 1]},
             {"unit": 2, "label": "sky-s", "category": "scene", "score": 0.06, "threshold": 0.5,
              "top_images": [1, 0]},
             {"unit": 3, "label": "cat", "category": "object", "score": 0.03, "threshold": 0.5, "top_images": [0]},
             {"unit": 4, "label": "", "category": "", "score": 0.0, "threshold": 0.0, "top_images": []}]
    rows = {r["unit"]: r for r in mask_placement(units, b, acts, top_n=8)}
    assert sorted(rows) == [1, 2, 3]  # the dead unit has no top images: no row
    band_share = (256 - 14 * 14) / 256  # a 1-pixel band at 16 × 1/16
    assert rows[1]["on_region"] == 1.0 and rows[1]["in_band"] == 0.0 and rows[1]["mask_px"] == 32
    assert rows[1]["region_share"] == pytest.approx(16 / 256) and rows[1]["band_share"] == pytest.approx(band_share)
    assert rows[2]["on_region"] == 0.0 and rows[2]["in_band"] == 1.0 and rows[2]["mask_px"] == 32
    assert rows[3]["on_region"] == pytest.approx(16 / 24) and rows[3]["images"] == 1
    # pooled over the bits labelled at IoU ≥ 0.04: units 1 and 2 (unit 3 is below the threshold)
    s = placement_summary(list(rows.values()), 0.04)
    assert s["bits"] == 2 and s["band_bits"] == 1
    assert s["on_region"] == pytest.approx(32 / 64) and s["in_band"] == pytest.approx(32 / 64)
    text = placement_sentence(s, "object", 1)
    assert text.startswith("Top-image masks of the 2 bits labelled at IoU ≥ 0.04: 50% of their pixels lie on object")
    assert "which cover 6% of those images" in text and "1 of the 2 bits have most of their mask" in text
    # an image-level label covers the whole image, as in the tally
    scene = {r["unit"]: r for r in mask_placement(units, b, acts, category="scene")}
    assert scene[2]["mask_on_region_px"] == 32 and scene[2]["region_px"] == 512 and scene[2]["on_region"] == 1.0
    with pytest.raises(ValueError, match="category 'texture' is not in .*category.csv"):
        mask_placement(units, b, acts, category="texture")
    assert placement_summary([], 0.04)["bits"] == 0
    assert placement_sentence(placement_summary([], 0.04)).startswith("No bit is labelled")


def test_a_folder_dissected_with_another_model_gets_fresh_activations(tmp_path):
    """What `python -m bitlens.dissect` does (no cache key given): the cache keys on the weights and the layer."""
    b = _broden(tmp_path, n=3)
    torch.manual_seed(0)
    first, second = _Tiny().eval(), _Tiny().eval()
    dissect(first, b, tmp_path / "out", layer="conv", input_size=8, cache_dtype="float32")
    res = dissect(second, b, tmp_path / "out", layer="conv", input_size=8, cache_dtype="float32")
    with torch.no_grad():
        want = second(torch.stack([preprocess_image(b.load_image(i), 8, "caffe") for i in range(3)])).numpy()
    np.testing.assert_array_equal(np.asarray(res["activations"]), want)
    cache = tmp_path / "out" / "cache"
    stamp = (cache / "activations.f32").stat().st_mtime_ns
    again = dissect(second, b, tmp_path / "out", layer="conv", input_size=8, cache_dtype="float32")
    assert (cache / "activations.f32").stat().st_mtime_ns == stamp  # the same model: the cache is reused
    assert json.loads((cache / "activations.json").read_text())["state"]["done"] == 3
    np.testing.assert_array_equal(np.asarray(again["activations"]), want)


MASK_KERNELS = ["generic", "avx2", "avx512"]


@pytest.mark.parametrize("kernel", MASK_KERNELS)
@pytest.mark.parametrize("threads", [1, 2, 3])
def test_every_mask_kernel_and_thread_count_gives_the_same_pixels(kernel, threads):
    from bitlens.dissect import tally as dissect

    native = dissect._native_mask()
    if native is None:
        pytest.skip("the compiled mask kernel is not built")
    if kernel not in native.kernels():
        pytest.skip(f"mask kernel {kernel!r} not tested: this CPU lacks {native.kernel_needs(kernel)} "
                    f"(it runs {', '.join(native.kernels())})")
    rng = np.random.default_rng(11)
    maps = rng.random((37, 9, 13)).astype(np.float32)
    maps[5] = 0.5  # a flat map: its row and column values tie with each other
    thr = rng.uniform(0.55, 0.99, 37).astype(np.float32)
    thr[5] = np.float32(0.5)  # equal to the map everywhere: no pixel may fire, rounding included
    thr[7] = 2.0
    want = (upsample(torch.as_tensor(maps)[:, None], (41, 29))[:, 0] > torch.as_tensor(thr)[:, None, None])
    want = want.flatten(1).numpy()
    native.set_kernel(kernel)
    try:
        assert native.kernel() == kernel
        m, p = dissect.mask_pixels(maps, thr, (41, 29), threads=threads)
    finally:
        native.set_kernel("auto")
    got = np.zeros_like(want)
    got[m, p] = True
    assert want.sum() > 500 and (got == want).all() and len(m) == want.sum()
    assert np.all(np.diff(m * 10_000 + p) > 0)  # map-major, row-major: the order the tally splits by


def test_a_mask_kernel_the_cpu_lacks_is_refused():
    from bitlens.dissect import tally as dissect

    native = dissect._native_mask()
    if native is None:
        pytest.skip("the compiled mask kernel is not built")
    with pytest.raises(ValueError, match="unknown kernel"):
        native.set_kernel("sse9")
    missing = [k for k in native.KERNELS if k not in native.kernels()]
    if not missing:
        pytest.skip(f"this CPU runs every mask kernel ({', '.join(native.kernels())})")
    with pytest.raises(RuntimeError, match=f"kernel '{missing[0]}' needs"):
        native.set_kernel(missing[0])
    assert native.kernel() == native.kernels()[-1]


def test_mask_kernel_rejects_taps_outside_the_map():
    from bitlens.dissect import tally as dissect

    native = dissect._native_mask()
    if native is None:
        pytest.skip("the compiled mask kernel is not built")
    c0, c1, cw0, cw1 = dissect._bilinear_taps(4, 8)
    r0, r1, rw0, rw1 = dissect._bilinear_taps(4, 8)
    c1 = c1.copy()
    c1[-1] = 4  # one past the last column
    out = np.empty(64, np.int64)
    with pytest.raises(ValueError, match="column tap"):
        native.mask_pixels(np.ones(16, np.float32), np.zeros(1, np.float32), 1, 4, 4, c0, c1, cw0, cw1, r0, r1,
                           rw0, rw1, out, out.copy())


def test_tally_is_the_same_on_any_number_of_threads():
    import sys
    from pathlib import Path

    from bitlens.dissect.tally import tally

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    import bench_dissect

    data = bench_dissect.ArrayBroden(60, 16)
    acts = bench_dissect.random_net_activations(60, 12)
    thr = unit_thresholds(acts, 0.005)
    cats = list(bench_dissect.CATEGORIES)
    one, two = tally(acts, thr, data, cats, threads=1), tally(acts, thr, data, cats, threads=2)
    assert one.intersect.sum() > 0
    for a, b in ((one.intersect, two.intersect), (one.label_area, two.label_area), (one.unit_area, two.unit_area)):
        np.testing.assert_array_equal(a, b)


def test_planted_concept_verdicts_count_labelled_concepts_per_category():
    from bitlens.dissect.labels import coverage_caption, planted_caption, planted_verdict, starts_caption

    planted = [{"concept": "circle", "category": "object", "found": True},
               {"concept": "square", "category": "object", "found": False},
               {"concept": "red-c", "category": "color", "found": True},
               {"concept": "striped", "category": "texture", "found": False}]
    assert planted_verdict(planted) == {"found": 2, "total": 4, "per_category": {
        "color": (1, 1), "object": (1, 2), "texture": (0, 1)}}
    assert planted_caption("shapes", planted, 0.04) == (
        "shapes: 2/4 planted concepts are the label of a bit with IoU ≥ 0.04 (color 1/1, object 1/2, texture 0/1).")
    # coverage asks for any bit reaching the threshold, whatever its label
    assert coverage_caption([{"best_iou": 0.04}, {"best_iou": 0.039}, {"best_iou": 0.2}], 0.04) == (
        "2/3 planted concepts have a bit with IoU ≥ 0.04.")
    began = [{"kept": True}, {"kept": False}, {"kept": True}]
    assert starts_caption("shapes", began, 8, 0.04) == (
        "shapes: 2/3 bits that started as a concept read-out are labelled with that concept at IoU ≥ 0.04 after "
        "IBC training (5 more bits started from kaiming).")
