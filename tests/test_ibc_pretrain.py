import torch

from bitlens.ibc.model import small_features
from bitlens.data.shapes import COLOR_NAMES
from bitlens.ibc.model import readouts_path
from bitlens.ibc.pretrain import HEADS, ConceptHeads, _targets_at, concept_loss, concept_set, pretrain_backbone


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
    readouts_path(tmp_path / "w.pt").unlink()
    ensure_pretrained(tmp_path / "w.pt", factory, **{**opts, "steps": 3})
    assert len(calls) == 3  # the read-outs are part of the result: a missing file is rebuilt


def test_ensure_pretrained_seeds_the_initial_backbone_from_the_recipe(tmp_path):
    """The factory's draws follow options['seed'], whatever the global RNG state was before (a notebook that
    drew random numbers earlier must not change the pretrained weights)."""
    from bitlens.ibc.pretrain import ensure_pretrained

    torch.set_num_threads(1)
    opts = dict(n_images=16, steps=2, batch_size=8, n_val=0, seed=5)
    torch.manual_seed(123)
    ensure_pretrained(tmp_path / "a.pt", lambda: small_features(16), **opts)
    torch.manual_seed(456)
    ensure_pretrained(tmp_path / "b.pt", lambda: small_features(16), **opts)
    a, b = torch.load(tmp_path / "a.pt"), torch.load(tmp_path / "b.pt")
    assert all(torch.equal(a[k], b[k]) for k in a)
    ensure_pretrained(tmp_path / "c.pt", lambda: small_features(16), **{**opts, "seed": 6})
    c = torch.load(tmp_path / "c.pt")
    assert not torch.equal(a["0.weight"], c["0.weight"])
    ra, rb = torch.load(readouts_path(tmp_path / "a.pt")), torch.load(readouts_path(tmp_path / "b.pt"))
    assert list(ra) == ["shape", "color", "texture"]
    assert ra["color"]["concepts"] == list(COLOR_NAMES)
    assert ra["shape"]["weight"].shape == (HEADS["shape"], 16) and ra["shape"]["bias"].shape == (HEADS["shape"],)
    assert all(torch.equal(ra[k]["weight"], rb[k]["weight"]) for k in ra)


def test_loss_weights_scale_their_terms_only():
    torch.manual_seed(0)
    features, data = small_features(16), concept_set(0, 4, 32, 2)
    heads = ConceptHeads(16)
    one, terms = concept_loss(features, heads, data.images, data.maps, data.scene)
    three, terms3 = concept_loss(features, heads, data.images, data.maps, data.scene,
                                 loss_weights={"shape": 3.0, "scene": 0.0})
    assert terms == terms3
    torch.testing.assert_close(float(three.detach()), float(one.detach()) + 2 * terms["shape"] - terms["scene"], rtol=1e-5, atol=1e-5)
    try:
        concept_loss(features, heads, data.images, data.maps, data.scene, loss_weights={"colour": 2.0})
    except ValueError as e:
        assert "colour" in str(e) and "color" in str(e)
    else:
        raise AssertionError("an unknown loss term must be refused")


def test_pretrain_experiments_hands_each_job_its_width_seed_and_the_shared_recipe(tmp_path, monkeypatch):
    from bitlens.ibc import pretrain

    seen = {}
    monkeypatch.setattr(pretrain, "ensure_pretrained",
                        lambda path, factory, **kw: seen.setdefault(path.name, (factory(), kw)) and
                        {"accuracy": {"shape": 0.5}})
    weights = {"shape": 3.0, "color": 1.0, "texture": 2.0, "scene": 1.0}
    out = pretrain.pretrain_experiments({"mine": (tmp_path / "w.pt", 16, 7)}, 3, 64, 2, 50, 11, 0.02, 9, 0.25,
                                        weights, log=lambda *_: None)
    assert list(out) == ["mine"] and list(seen) == ["w.pt"]
    features, kw = seen["w.pt"]
    assert features[0].out_channels == 8  # small_features(width=16)
    assert kw == {"world_seed": 3, "image_size": 64, "max_objects": 2, "n_images": 50, "seed": 7, "steps": 11,
                  "lr": 0.02, "batch_size": 9, "background_weight": 0.25, "loss_weights": weights}