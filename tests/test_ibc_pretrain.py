import torch

from bitlens.ibc.model import small_features
from bitlens.ibc.pretrain import HEADS, _targets_at, pretrain_backbone


def test_targets_are_sampled_at_the_cell_centres():
    m = torch.arange(16).reshape(1, 4, 4)
    # 2×2 grid over 4 pixels: centres at pixel 1 and 3 in each direction
    assert _targets_at(m, 2).tolist() == [[[5, 7], [13, 15]]]


def test_pretraining_returns_small_features_weights_deterministically():
    torch.set_num_threads(1)
    runs = []
    for _ in range(2):
        torch.manual_seed(0)  # the backbone's initial weights
        runs.append(pretrain_backbone(small_features(), n_images=24, steps=3, batch_size=8, n_val=8, seed=3))
    a, b = runs
    assert set(a["state_dict"]) == set(small_features().state_dict())
    for k in a["state_dict"]:
        torch.testing.assert_close(a["state_dict"][k], b["state_dict"][k], rtol=0, atol=0)
    assert set(a["accuracy"]) == {*HEADS, "scene"} and all(0 <= v <= 1 for v in a["accuracy"].values())
    fresh = small_features().state_dict()
    assert any(not torch.equal(fresh[k], a["state_dict"][k]) for k in fresh if k.endswith("weight"))
    small_features().load_state_dict(a["state_dict"])  # loads strictly into a fresh backbone


def test_ensure_pretrained_writes_once_and_reuses_matching_weights(tmp_path):
    from bitlens.ibc.pretrain import ensure_pretrained

    torch.set_num_threads(1)
    calls = []

    def factory():
        calls.append(1)
        torch.manual_seed(0)
        return small_features()

    opts = dict(n_images=16, steps=2, batch_size=8, n_val=4)
    meta = ensure_pretrained(tmp_path / "w.pt", factory, **opts)
    assert (tmp_path / "w.pt").exists() and meta["recipe"]["steps"] == 2 and len(calls) == 1
    small_features().load_state_dict(torch.load(tmp_path / "w.pt"))
    assert ensure_pretrained(tmp_path / "w.pt", factory, **opts) == meta and len(calls) == 1
    ensure_pretrained(tmp_path / "w.pt", factory, **{**opts, "steps": 3})
    assert len(calls) == 2  # another recipe: retrained


def test_pretrain_experiments_only_fills_weights_files_inside_the_generated_world(tmp_path, monkeypatch):
    from bitlens.ibc import pretrain

    seen = {}
    monkeypatch.setattr(pretrain, "ensure_pretrained",
                        lambda path, factory, **kw: seen.setdefault(path.name, (factory(), kw)) and
                        {"accuracy": {"shape": 0.5}})
    small = {"backbone": "small", "width": 16, "seed": 7, "released_codes": False}
    params = {"data": {"shapes": {"generate": True, "root": "data/shapes", "seed": 3, "image_size": 64,
                                  "max_objects": 2, "n_train": 50}},
              "ibc": {"experiments": {
                  "mine": {**small, "backbone_weights": "data/shapes/pretrained/w.pt"},
                  "theirs": {**small, "backbone_weights": "weights/given.pt"},
                  "none": {**small, "backbone_weights": ""},
                  "alex": {**small, "backbone": "alexnet", "backbone_weights": "data/shapes/a.pt"}}}}
    out = pretrain.pretrain_experiments(params, tmp_path, log=lambda *_: None)
    assert list(out) == ["mine"] and list(seen) == ["w.pt"]
    features, kw = seen["w.pt"]
    assert features[0].out_channels == 8  # small_features(width=16)
    assert kw == {"world_seed": 3, "image_size": 64, "max_objects": 2, "n_images": 50, "seed": 7,
                  "background_weight": 0.1}
    params["data"]["shapes"]["generate"] = False
    assert pretrain.pretrain_experiments(params, tmp_path, log=lambda *_: None) == {}
