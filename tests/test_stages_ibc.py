"""The IBC stage modules (20–23) and their params adapters: what they hand the science code, and which world they
read names from."""
import pytest
import torch

from bitlens import config
from bitlens.data import shapes
from bitlens.ibc.loss import WEIGHT_KEYS
from bitlens.ibc.model import build_ibc
from bitlens.stages import ibc_params, ibc_train
from conftest import ROOT

SMALL_WORLD = dict(seed=3, image_size=32, n_train=6, n_val=3, n_broden=0, broden_mask_size=16, max_objects=2)


def _pretrain_params(generate=True):
    small = {"backbone": "small", "width": 16, "seed": 7, "released_codes": False}
    recipe = {"steps": 11, "lr": 0.02, "batch_size": 9, "background_weight": 0.25,
              "loss_weights": {"shape": 3.0, "color": 1.0, "texture": 2.0, "scene": 1.0}}
    return {"data": {"shapes": {"generate": generate, "root": "data/shapes", "seed": 3, "image_size": 64,
                                "max_objects": 2, "n_train": 50}},
            "ibc": {"pretrain": recipe, "experiments": {
                "mine": {**small, "backbone_weights": "data/shapes/pretrained/w.pt"},
                "theirs": {**small, "backbone_weights": "weights/given.pt"},
                "none": {**small, "backbone_weights": ""},
                "alex": {**small, "backbone": "alexnet", "backbone_weights": "data/shapes/a.pt"}}}}


def test_pretraining_only_fills_weights_files_inside_the_generated_world(tmp_path, monkeypatch):
    params = _pretrain_params()
    jobs = ibc_train.pretrain_jobs(params, tmp_path)
    assert jobs == {"mine": ((tmp_path / "data/shapes/pretrained/w.pt").resolve(), 16, 7)}
    seen = {}
    monkeypatch.setattr(ibc_train, "pretrain_experiments", lambda jobs, *args, **kw: seen.update(jobs=jobs, args=args))
    ibc_train.pretrain(params, tmp_path)
    assert seen["jobs"] == jobs
    assert seen["args"] == (3, 64, 2, 50, 11, 0.02, 9, 0.25, params["ibc"]["pretrain"]["loss_weights"])
    assert ibc_train.pretrain_jobs(_pretrain_params(generate=False), tmp_path) == {}


def test_world_names_come_only_from_a_world_the_profile_generates(tmp_path):
    """A checkout's leftover world must not name the classes of a profile that does not generate it."""
    shapes.generate_world(tmp_path / "world", **SMALL_WORLD)
    params = {"data": {"shapes": {"generate": True, "root": "world"}}}
    assert ibc_params.generated_world(params, tmp_path)["class_names"] == list(shapes.CLASS_NAMES)
    params["data"]["shapes"]["generate"] = False
    assert ibc_params.generated_world(params, tmp_path) is None


def _experiment():
    return config.load_params("tiny", root=ROOT)["ibc"]["experiments"]["shapes"]


def test_train_arguments_build_the_seeded_model_and_the_options_of_the_params(tmp_path):
    (tmp_path / "list.txt").write_text("a.png 0\nb.png 2\nc.png 1\n")
    exp = {**_experiment(), "backbone_weights": "", "bit_init": "kaiming"}
    dataset = {"train": "list.txt", "format": "imagenet", "num_attributes": 0, "num_classes": 3, "root": "img"}
    args = ibc_params.train_arguments(exp, dataset, tmp_path, "cpu")
    want = build_ibc(exp["code_length"], 3, exp["backbone"], exp["crop"], exp.get("hidden") or None, None,
                     exp.get("width") or 64, exp["dropout"], seed=exp["seed"])
    got = args["model"].state_dict()
    assert all(torch.equal(v, got[k]) for k, v in want.state_dict().items())
    opts = args["opts"]
    assert opts.weights == {k: exp["weights"][k] for k in WEIGHT_KEYS} and opts.thr_g == exp["weights"]["thr_g"]
    assert (opts.iterations, opts.batch_size, opts.lr, opts.seed, opts.crop) == (
        exp["iterations"], exp["batch_size"], exp["lr"], exp["seed"], exp["crop"])
    assert list(args["image_list"].labels) == [0, 2, 1] and args["images_root"] == tmp_path / "img"


def test_training_refuses_a_label_outside_the_model_classes_before_any_step(tmp_path):
    from bitlens.ibc.train import train_experiment

    (tmp_path / "list.txt").write_text("a.png 0\nb.png 5\nc.png 99999\n")
    exp = {**_experiment(), "backbone_weights": "", "bit_init": "kaiming"}
    dataset = {"train": "list.txt", "format": "imagenet", "num_attributes": 0, "num_classes": 3, "root": "img"}
    with pytest.raises(ValueError, match=r"list.txt: class labels \[5\] are outside 0..2"):
        train_experiment(**ibc_params.train_arguments(exp, dataset, tmp_path, "cpu"), out_dir=tmp_path / "run")
    assert not (tmp_path / "run").exists()
