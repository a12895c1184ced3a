import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from bitlens.data.broden import Broden
from bitlens.dissect import Tally, dissect, layer_fn, tally, unit_thresholds, upsample


def _broden(tmp_path, n=2, size=4, missing_mask=False):
    """n 8×8 images with 4×4 masks: label 1 ('cat', object) in the top-left 2×2; image-level label 2 ('sky-s')."""
    d = tmp_path / "broden"
    (d / "images").mkdir(parents=True)
    rows = []
    for i in range(n):
        Image.new("RGB", (8, 8), (i * 40, 0, 0)).save(d / "images" / f"{i}.png")
        m = np.zeros((size, size, 3), np.uint8)
        m[:2, :2, 0] = 1
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
