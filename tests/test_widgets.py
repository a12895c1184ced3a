import numpy as np
import pytest

from bitlens.widgets import BitBrowser
from test_dissect import _broden


def _units():
    cats = lambda lab, iou: {"object": {"label": lab, "label_id": 1, "truth": 1, "activation": 1, "intersect": 1,
                                        "iou": iou}}
    return [{"unit": 1, "category": "object", "label": "cat", "score": 0.2, "categories": cats("cat", 0.2),
             "threshold": 0.5, "top_images": [0, 1]},
            {"unit": 2, "category": "scene", "label": "red-c", "score": 0.1, "categories": cats("cat", 0.05),
             "threshold": 0.5, "top_images": [1, 0]}]


@pytest.fixture
def browser(tmp_path):
    b = _broden(tmp_path)
    acts = np.random.default_rng(0).random((2, 2, 4, 4)).astype(np.float32)
    B = np.array([[1, 1], [1, -1], [-1, 1], [-1, -1]])
    attrs = np.array([[1.0], [0.0], [1.0], [0.0]])
    grm = np.array([[1.0, 0.2], [0.1, 0.9]])
    return BitBrowser(_units(), b, acts, grm, ["c0", "c1"], B, np.array([0, 0, 1, 1]), attrs, ["red"])


def test_bit_info_precision_and_concept_ranking(browser):
    info = browser.bit_info(2)
    assert info["label"] == "red-c" and info["classes"][0].startswith("c1")
    # bit 2 is on for items 0 and 2, both red
    assert info["precision"]["attribute 'red'"] == 1.0 and info["precision"]["items_on"] == 2
    assert browser.bits_for_concept("cat") == [(1, 0.2), (2, 0.05)]
    assert browser.render_bit(1).ndim == 3


def test_widget_updates_label_and_image_when_the_bit_changes(browser):
    w = browser.widget()
    label, image = browser.label.value, browser.image.value
    browser.slider.value = 2
    assert browser.label.value != label and "red-c" in browser.label.value and browser.image.value != image
    browser.concept_box.value = "cat"
    assert browser.slider.value == 1 and "bit 1 (IoU 0.200)" in browser.concept_bits.value
    assert w.children


def test_customized_retrieval_and_static_snapshot(browser, tmp_path):
    r = browser.customized([2], "red")
    assert r["map"] == pytest.approx(1.0)
    p = browser.snapshot(1, tmp_path / "bit.png")
    assert p.exists() and p.stat().st_size > 1000


def test_concept_box_accepts_base_names_and_says_no_such_concept(browser):
    assert browser.resolve_concept("red-c") is None  # 'red-c' is no bit's per-category label here
    assert browser.resolve_concept("cat") == "cat" and browser.resolve_concept(" CAT ") == "cat"
    browser.units[1]["categories"]["color"] = {"label": "red-c", "label_id": 3, "truth": 1, "activation": 1,
                                               "intersect": 1, "iou": 0.3}
    assert browser.resolve_concept("red") == "red-c" and browser.resolve_concept("red-c") == "red-c"
    browser.widget()
    browser.concept_box.value = "red"
    assert browser.slider.value == 2 and "red-c" in browser.concept_bits.value
    browser.concept_box.value = "purple"
    assert "no such concept" in browser.concept_bits.value and "purple" in browser.concept_bits.value


def test_no_image_before_the_first_retrieval_and_unlabelled_bits(browser):
    browser.widget()
    assert browser.result_image.layout.display == "none"
    browser.units[0].update(label="", category="", score=0.0)
    assert "(unlabelled)" in browser.describe(1)


def test_a_bit_that_never_fires_says_so_instead_of_showing_images(tmp_path):
    units = _units()
    units[1].update(label="", category="", score=0.0, top_images=[])
    b = _broden(tmp_path)
    browser = BitBrowser(units, b, np.zeros((2, 2, 4, 4), np.float32))
    assert "never fires" in browser.describe(2) and "never fires" not in browser.describe(1)
    assert browser.render_bit(2).shape[0] >= 24 and browser.render_bit(1).shape[1] < browser.render_bit(2).shape[1]
