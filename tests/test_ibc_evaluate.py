"""IBC evaluation edge cases, hand-built against the authors' Matlab (`select_distance.m`, `compute_map.m`,
`compute_map_attribute_rank.m`)."""
import math

import numpy as np
import pytest

from bitlens import metrics
from bitlens.ibc import evaluate as ev
from bitlens.ibc.evaluate import customized_retrieval, evaluate_codes
from bitlens.stages import ibc_eval

B = np.array([[1, 1, 1], [1, -1, 1], [-1, 1, -1], [1, 1, -1], [-1, -1, -1]])
LABELS = np.array([0, 0, 1, 99999, 99999])
GRM = np.array([[0.9, 0.1, 0.2],   # class 0 ranks on bit 0
                [0.1, 0.2, 0.9]])  # class 1 ranks on bit 2


def test_expert_bit_map_keeps_missing_label_queries_as_select_distance_does():
    # query 0 (bit 0): distances [0,0,1,0,1] → order 0,1,3,2,4; its class mate 1 at rank 2 → 1/2
    # query 1: same distances; class mate 0 at rank 1 → 1
    # query 2 (bit 2): distances [1,1,0,0,0]; no other item of class 1 → 0
    # queries 3, 4 (label 99999, no GRM row): Matlab leaves their distance column at 0, so the ranking is the
    # database order and the other 99999 item is relevant: item 4 at rank 5 → 1/5; item 3 at rank 4 → 1/4
    per = metrics.expert_bit_map(B, LABELS, GRM, 1, per_query=True)
    np.testing.assert_allclose(per, [1 / 2, 1, 0, 1 / 5, 1 / 4])
    assert metrics.expert_bit_map(B, LABELS, GRM, 1) == pytest.approx((0.5 + 1 + 0 + 0.2 + 0.25) / 5)


def test_attribute_without_items_is_nan_and_the_summary_leaves_it_out():
    attrs = np.array([[1, 0], [0, 2], [1, 0], [0, 2], [0, 0]])  # attribute 2: only 0 and missing (2)
    # attribute 1, queries 0 and 2 on all bits, own item relevant:
    # query 0 → distances [0,1,3,1,3], order 0,1,3,2,4: relevant at ranks 1 and 4 → (1 + 2/4) / 2
    # query 2 → distances [2,3,0,1,1], order 2,3,4,0,1: relevant at ranks 1 and 4 → (1 + 2/4) / 2
    assert metrics.attribute_map(B, attrs, 0) == pytest.approx(0.75)
    assert math.isnan(metrics.attribute_map(B, attrs, 1))
    codes01 = np.where(B > 0, 0.9, 0.1)  # sigmoid outputs, binarised as sign(b - 0.5)
    res = evaluate_codes(codes01, np.concatenate([LABELS[:, None], attrs], 1), GRM, expert_bits=1, mis=False)
    assert res["attribute_map"][0] == pytest.approx(0.75) and math.isnan(res["attribute_map"][1])
    assert res["attributes_without_items"] == 1 and res["attribute_map_mean"] == pytest.approx(0.75)
    assert res["mis_knn"] is None and res["mis_discrete"] is None
    assert res["expert_bit_map"] == pytest.approx(0.39)


def test_customized_retrieval_on_an_absent_attribute_reports_nan_not_a_choice():
    attrs = np.zeros((5, 1))
    r = customized_retrieval(B, attrs, 0, [[0], [1]])
    assert r["bits"] == [] and math.isnan(r["map"]) and r["chosen_on"] == "test set"


def test_string_labels_are_refused_naming_the_field():
    with pytest.raises(ValueError, match="field 'lab' holds <U3 values"):
        evaluate_codes(np.ones((2, 3)), np.array([["cat"], ["dog"]]), mis=False)
    with pytest.raises(ValueError, match="column 0 \\(class labels\\) must hold whole numbers"):
        evaluate_codes(np.ones((2, 3)), np.array([[0.5], [1.0]]), mis=False)


IBC = {"sweep": {"experiment": "shapes", "code_lengths": [64, 16, 32, 16], "iterations": 100},
       "experiments": {"shapes": {"code_length": 32, "iterations": 300}}}


def test_sweep_iterations_prefer_the_training_record_and_otherwise_follow_the_params():
    from bitlens.stages.ibc_params import sweep_iterations

    assert sweep_iterations(IBC, {}) == {16: 100, 32: 300, 64: 100}
    assert sweep_iterations(IBC, {"sweep_iterations": {"16": 300, "32": 300}}) == {16: 300, 32: 300}
    assert ev.sweep_caption({16: 100, 32: 300}, "from the params").endswith(
        "16 bits: 100, 32 bits: 300 — not the same for every length, so the lengths are not compared at equal "
        "training.")
    assert ev.sweep_caption({16: 300, 32: 300}, "recorded").endswith("— the same for every length.")


def test_customized_sentence_states_the_choice_and_the_comparisons_from_the_numbers():
    c = {"attribute": "red", "bits": [3, 7], "map": 0.5, "random_map": 0.25, "all_bits_map": 0.75,
         "combinations": 3}
    s = ev.customized_sentence("shapes", c)
    assert "chosen on the evaluation set itself" in s and "best of 3 bit-group combinations" in s
    assert "mAP 0.5000, above 2 random bits (0.2500) and below all bits (0.7500)" in s


def test_evaluate_experiment_uses_the_dissection_bits_of_the_target_attribute():
    attrs = np.array([[1, 0], [0, 0], [1, 0], [0, 1], [0, 0]])
    codes01 = np.where(B > 0, 0.9, 0.1)
    r = ev.evaluate_experiment(codes01, np.concatenate([LABELS[:, None], attrs], 1), GRM, 1, 4, ["blue", "red"],
                               ["red", "blue"], {"red-c": [1], "square": [2]}, seed=0, dataset="shapes")
    # "blue" has no dissection bits; "red" (concept red-c) has bit 1 → bit index 0 only
    assert r["customized"]["attribute"] == "red" and r["customized"]["bits"] == [1]
    assert r["customized"]["map"] == pytest.approx(metrics.attribute_map(B, attrs, 0, bits=[0]))
    assert set(r["attribute_map"]) == {"red", "blue"} and r["mis_knn"] is not None
    assert ev.json_safe({"a": [float("nan"), 1.0]}) == {"a": [None, 1.0]}


# -- the paper path's IBC inputs: a Places365-started checkpoint, SUN's attribute names, a released checkpoint ---

class _Stage:
    """What the stage's `experiment_codes` reads of a Stage: params, paths under a root, the device, its folder."""

    def __init__(self, root, imagelists):
        self.root, self.dir = root, root / "out"
        self.dir.mkdir()
        self.params = {"data": {"imagelists": imagelists}}

    def path(self, value):
        from bitlens.config import resolve_path

        return resolve_path(value, self.root)

    def device(self):
        return "cpu"


def _sun_replica(root, n=3):
    from PIL import Image

    (root / "data_256").mkdir(parents=True)
    rows = []
    for i in range(n):
        Image.fromarray(np.full((256, 256, 3), 40 * i, np.uint8)).save(root / "data_256" / f"im{i}.jpg")
        attrs = ["1" if j == 66 and i % 2 == 0 else ("2" if j == 3 else "-1") for j in range(102)]
        rows.append(" ".join([f"im{i}.jpg", str(i)] + attrs))
    (root / "test.txt").write_text("\n".join(rows) + "\n")
    return {"sun120k": {"root": "data_256", "format": "sun", "train": "test.txt", "test": "test.txt",
                        "database": "", "num_classes": 397, "num_attributes": 102, "attribute_names": "sun"}}


def _places_checkpoint(path, code_length=8):
    """An IBC checkpoint trained from the Places365 AlexNet: its backbone head has 365 classes."""
    import torch

    from bitlens.ibc.model import IBC

    torch.manual_seed(0)
    model = IBC(code_length, 397, "alexnet", 224, alexnet_classes=365)
    torch.save({"state_dict": model.state_dict()}, path)
    return model


EXP = {"dataset": "sun120k", "released_codes": "", "released_checkpoint": "", "crop": 224, "resize": 256,
       "max_samples": 50_000, "attribute_names": None}


def test_a_places365_started_checkpoint_is_rebuilt_from_its_own_shapes(tmp_path):
    import torch

    stage = _Stage(tmp_path, _sun_replica(tmp_path))
    model = _places_checkpoint(tmp_path / "checkpoint_00000003.pt")
    b, lab, grm, names = ibc_eval.experiment_codes(stage, "sun120k", EXP, tmp_path / "checkpoint_00000003.pt")
    assert b.shape == (3, 8) and lab.shape == (3, 103) and grm.shape == (397, 8)
    assert np.array_equal(grm, model.GRM.detach().numpy())
    assert names[66] == "ocean" and len(names) == 102
    assert (tmp_path / "out" / "sun120k_codes.npz").exists() and torch.is_tensor(model.GRM)
    # the packed planes handed to later stages are the evaluation codes sign(b − 0.5), bit for bit
    from bitlens.codes import binarize_sigmoid, load_packed, unpack

    packed = load_packed(tmp_path / "out" / "sun120k_codes.packed.npz")
    assert packed.weights == (1.0,) and np.array_equal(unpack(packed.planes[0], packed.m), binarize_sigmoid(b))


def test_a_released_checkpoint_is_extracted_and_evaluated(tmp_path):
    stage = _Stage(tmp_path, _sun_replica(tmp_path))
    model = _places_checkpoint(tmp_path / "sun_256.pth.tar")
    exp = {**EXP, "released_checkpoint": "sun_256.pth.tar"}
    b, lab, grm, names = ibc_eval.experiment_codes(stage, "sun120k", exp)
    assert np.array_equal(grm, model.GRM.detach().numpy()) and b.shape == (3, 8)
    with pytest.raises(ValueError, match="dataset = '': codes are extracted from a dataset's test list"):
        ibc_eval.experiment_codes(stage, "sun120k", {**exp, "dataset": ""})


def test_ocean_resolves_among_sun_attributes_and_an_unknown_target_names_the_valid_ones():
    from bitlens.data.attributes import SUN_ATTRIBUTES, resolve_names

    names = resolve_names("sun", 102)
    assert names.index("ocean") == 66 and names == list(SUN_ATTRIBUTES)
    with pytest.raises(ValueError, match="names 102 attributes but the data has 18"):
        resolve_names("sun", 18)
    rng = np.random.default_rng(0)
    codes = rng.random((12, 6))
    lab = np.concatenate([rng.integers(0, 3, (12, 1)), rng.integers(0, 2, (12, 102))], 1)
    r = ev.evaluate_experiment(codes, lab, rng.random((3, 6)), 2, 4, ["ocean"], names, {"ocean-s": [2, 5]}, seed=0,
                               dataset="sun120k")
    assert r["customized"]["attribute"] == "ocean" and r["customized"]["bits"] in ([2], [5], [2, 5])
    with pytest.raises(ValueError, match="target_attributes 'ocen' not among the 102 attribute names.*valid: "
                                         "sailing/ boating, driving"):
        ev.evaluate_experiment(codes, lab, None, 2, 4, ["ocen"], names, {}, seed=0, dataset="sun120k")


def test_hashing_metrics_of_is_leave_one_out_and_sweep_sentence_follows_the_numbers():
    rng = np.random.default_rng(0)
    b = rng.random((30, 6))                       # sigmoid outputs
    lab = rng.integers(0, 3, (30, 1))
    h = ev.hashing_metrics_of(b, lab)
    B = np.where(b > 0.5, 1, -1)
    ref = metrics.hashing_metrics(B, B, lab[:, 0], lab[:, 0], self_match="drop", map_ks=())
    assert h["map"]["all"] == ref["map"]["all"] and h["database"] == 29
    assert list(h["map"]) == ["all"]              # every DeepHash K is ≥ the 29-item database
    runs = {16: {"radius": 2, "precision_within_radius": 0.5, "map": {"all": 0.3}},
            32: {"radius": 2, "precision_within_radius": 0.4, "map": {"all": 0.35}},
            64: {"radius": 2, "precision_within_radius": 0.2, "map": {"all": 0.33}}}
    s = ev.sweep_hashing_sentence(runs)
    assert "0.5000 (16 bits), 0.4000 (32 bits), 0.2000 (64 bits) — it falls with every longer code" in s
    assert "mAP@all 0.3000 (16 bits), 0.3500 (32 bits), 0.3300 (64 bits) — it is not monotone" in s
    row = ev.hashing_row("x", h, 6, 0.25)
    assert row["class mAP (official)"] == 0.25 and row["P@r≤2"] == h["precision_within_radius"]


def test_the_class_map_verdict_asks_for_more_than_twice_the_random_codes():
    results = {"a": {"class_map": 0.5, "random_class_map": 0.2}, "b": {"class_map": 0.4, "random_class_map": 0.2}}
    assert ev.class_map_verdict(results) == {"a": True, "b": False}
