"""IBC training: the step, the schedule, checkpoints, exact resume, data order and augmentation, the CLI."""
import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from bitlens.data.imagelist import read_list
from bitlens.ibc.loss import TERMS
from bitlens.ibc.model import IBC, read_state_dict
from bitlens.ibc.images import center_crop, random_crop_flip
from bitlens.ibc.train import EpochBatches, IBCTrainOptions, latest_checkpoint, train_ibc
from bitlens.stages.ibc_train import main


@pytest.fixture(scope="module")
def image_list(tmp_path_factory):
    """24 images of 40 px, 3 classes (one colour each), SUN-style list with one attribute; one missing label."""
    root = tmp_path_factory.mktemp("imgs")
    rng = np.random.default_rng(0)
    lines = []
    for i in range(24):
        c = i % 3
        img = (rng.random((40, 40, 3)) * 60).astype(np.uint8)
        img[8:32, 8:32, c] = 230
        Image.fromarray(img).save(root / f"{i}.png")
        label = 99999 if i == 5 else c
        lines.append(f"{i}.png {label} {1 if c == 0 else -1}")
    (root / "train.txt").write_text("\n".join(lines) + "\n")
    return root, read_list(root / "train.txt", "sun", 1)


def opts(**kw):
    base = dict(iterations=4, batch_size=8, lr=1e-3, step_size=2, gamma=0.1, seed=3, checkpoint_every=2, resize=36,
                crop=32, thr_g=5.0, cache_images=True,
                weights={"hash_std_w": 1.0, "hash_mask_w": 1.0, "GRM_w": 1e-5, "align_w": 100.0, "real_std_w": 1.0,
                         "real_mask_w": 0.05, "sparse_w": 0.1})
    return IBCTrainOptions(**{**base, **kw})


def model(seed=0):
    torch.manual_seed(seed)
    return IBC(8, 3, "small", 32, 16, width=8)


def test_training_logs_every_term_checkpoints_officially_and_renormalises_the_grm(image_list, tmp_path):
    root, lst = image_list
    m = model()
    rows = train_ibc(m, lst, root, opts(), tmp_path, log=lambda *a: None)
    log = pd.read_csv(tmp_path / "log.csv")
    assert len(rows) == 4 and list(log["iteration"]) == [1, 2, 3, 4]
    assert set(TERMS) | {"total", "lr", "grm_zero_frac", "grm_l1"} <= set(log.columns)
    assert np.isfinite(log[list(TERMS)].to_numpy()).all()
    assert sorted(p.name for p in tmp_path.glob("checkpoint_*.pt")) == ["checkpoint_00000002.pt",
                                                                        "checkpoint_00000004.pt"]
    assert latest_checkpoint(tmp_path).name == "checkpoint_00000004.pt"
    sd, ck = read_state_dict(tmp_path / "checkpoint_00000004.pt")
    assert set(sd) == set(m.state_dict()) and ck["arch"]["code_length"] == 8
    g = m.GRM.detach()
    assert (g >= 0).all() and (g <= 1).all()
    torch.testing.assert_close(g.max(0).values, torch.ones(8))


def test_updates_one_to_seven_use_the_official_step_schedule(image_list, tmp_path):
    """StepLR stepped before each update, as the official loop: update n uses lr·gamma^(n // step_size)."""
    root, lst = image_list
    rows = train_ibc(model(), lst, root, opts(iterations=7, step_size=3, checkpoint_every=7), tmp_path,
                     log=lambda *a: None)
    assert [r["lr"] for r in rows] == pytest.approx([1e-3 * f for f in (1, 1, .1, .1, .1, .01, .01)])


class Interrupt(Exception):
    pass


def _stop_after(n):
    def hook(it):
        if it == n:
            raise Interrupt

    return hook


@pytest.mark.parametrize("stop", [2, 3])  # at a checkpoint, and one update past it (that update is redone)
def test_an_interrupted_then_resumed_run_equals_an_uninterrupted_one_bit_for_bit(image_list, tmp_path, stop):
    root, lst = image_list
    o = dict(iterations=6, checkpoint_every=2, step_size=3)
    straight = model()
    rows = train_ibc(straight, lst, root, opts(**o), tmp_path / "a", log=lambda *a: None)
    with pytest.raises(Interrupt):
        train_ibc(model(), lst, root, opts(**o), tmp_path / "b", log=lambda *a: None, on_iteration=_stop_after(stop))
    resumed = model(seed=99)  # a different initialisation: everything must come from the saved state
    msgs = []
    rows_b = train_ibc(resumed, lst, root, opts(**o), tmp_path / "b", log=msgs.append)
    assert any("resuming at iterations 2 of 6" in m for m in msgs)
    assert [r["total"] for r in rows_b] == [r["total"] for r in rows]
    for k, v in straight.state_dict().items():
        assert torch.equal(v, resumed.state_dict()[k]), k


def test_a_finished_run_is_reused_and_a_longer_one_continues_it(image_list, tmp_path):
    root, lst = image_list
    train_ibc(model(), lst, root, opts(iterations=2), tmp_path, log=lambda *a: None)
    msgs = []
    again = model(seed=5)
    rows = train_ibc(again, lst, root, opts(iterations=2), tmp_path, log=msgs.append)
    assert len(rows) == 2 and any("reusing the finished run" in m for m in msgs)
    sd, _ = read_state_dict(tmp_path / "checkpoint_00000002.pt")
    assert all(torch.equal(v, again.state_dict()[k]) for k, v in sd.items())
    longer = train_ibc(model(), lst, root, opts(iterations=4), tmp_path, log=lambda *a: None)
    assert [r["iteration"] for r in longer] == [1, 2, 3, 4]


def test_a_finished_run_on_another_list_or_from_other_weights_is_not_reused(image_list, tmp_path):
    """Other labels, regenerated image files or other starting weights (train_experiment's `initial_weights`)
    are other inputs: the finished run is moved aside, never served for them."""
    import dataclasses
    import os

    root, lst = image_list
    train_ibc(model(), lst, root, opts(iterations=2), tmp_path, log=lambda *a: None)
    relabelled = dataclasses.replace(lst, labels=lst.labels[::-1].copy())
    st = (root / lst.paths[0]).stat()
    for step, run in (("labels", lambda m: train_ibc(model(), relabelled, root, opts(iterations=2), tmp_path, log=m)),
                      ("file", lambda m: (os.utime(root / lst.paths[0], ns=(st.st_atime_ns, st.st_mtime_ns + 10**9)),
                                          train_ibc(model(), lst, root, opts(iterations=2), tmp_path, log=m))),
                      ("weights", lambda m: train_ibc(model(), lst, root, opts(iterations=2, initial_weights="b"),
                                                      tmp_path, log=m))):
        msgs = []
        run(msgs.append)
        changed = [m for m in msgs if "settings changed" in m]
        assert len(changed) == 1 and not any("reusing" in m for m in msgs), step
        assert ("initial_weights: " if step == "weights" else "inputs: ") in changed[0], step
    assert len(_previous(tmp_path)) == 3


def test_changed_settings_start_a_fresh_run_and_move_the_old_one_aside(image_list, tmp_path):
    root, lst = image_list
    train_ibc(model(), lst, root, opts(iterations=2), tmp_path, log=lambda *a: None)
    first = (tmp_path / "checkpoint_00000002.pt").read_bytes()
    msgs = []
    rows = train_ibc(model(), lst, root, opts(iterations=2, lr=5e-4), tmp_path, log=msgs.append)
    assert [r["iteration"] for r in rows] == [1, 2] and rows[0]["lr"] == pytest.approx(5e-4)
    changed = [m for m in msgs if "settings changed" in m]
    assert len(changed) == 1 and "lr: 0.001 → 0.0005" in changed[0]
    previous = _previous(tmp_path)
    assert len(previous) == 1 and (previous[0] / "checkpoint_00000002.pt").read_bytes() == first
    assert (previous[0] / "train_state.pt").exists() and (previous[0] / "log.csv").exists()
    # fresh=True starts again although the settings match; a shorter request than a saved run does too
    train_ibc(model(), lst, root, opts(iterations=1, checkpoint_every=1, lr=5e-4), tmp_path, log=msgs.append)
    assert [p.name for p in tmp_path.glob("checkpoint_*.pt")] == ["checkpoint_00000001.pt"]
    assert "iterations: 2 → 1" in msgs[-2]
    train_ibc(model(), lst, root, opts(iterations=1, checkpoint_every=1, lr=5e-4), tmp_path, fresh=True,
              log=msgs.append)
    assert "fresh run requested" in msgs[-2]
    assert len(_previous(tmp_path)) == 3


def test_bad_options_are_explained():
    with pytest.raises(ValueError, match="even"):
        opts(batch_size=7).check()
    with pytest.raises(ValueError, match="crop"):
        opts(crop=40).check()
    with pytest.raises(ValueError, match="fewer than one batch"):
        EpochBatches(5, 8, 0)


def test_epochs_are_seeded_permutations_and_ranks_share_each_half_of_the_global_batch():
    it = iter(EpochBatches(10, 4, seed=1))
    epoch = [i for _ in range(2) for i, _ in next(it)]  # 2 batches per epoch, the last 2 items dropped
    assert len(set(epoch)) == 8
    full = iter(EpochBatches(10, 4, seed=1))
    batches = [next(full) for _ in range(5)]
    later = iter(EpochBatches(10, 4, seed=1, start=3))
    assert [next(later) for _ in range(2)] == batches[3:5]  # resuming continues the same sequence
    one = batches[0]
    r0 = next(iter(EpochBatches(10, 4, seed=1, rank=0, world=2)))
    r1 = next(iter(EpochBatches(10, 4, seed=1, rank=1, world=2)))
    # (item, augmentation seed) pairs: half 1 = one[:2] is split [r0[0]], [r1[0]]; half 2 likewise
    assert r0 == [one[0], one[2]] and r1 == [one[1], one[3]]
    with pytest.raises(ValueError, match="two halves on each of 2"):
        EpochBatches(10, 6, seed=1, world=2)


def test_augmentation_is_a_seeded_crop_and_flip_and_the_test_crop_is_centred():
    x = torch.arange(3 * 6 * 6).reshape(3, 6, 6)
    a = random_crop_flip(x, 4, np.random.default_rng(5))
    b = random_crop_flip(x, 4, np.random.default_rng(5))
    assert torch.equal(a, b) and a.shape == (3, 4, 4)
    crops = {tuple(random_crop_flip(x, 4, np.random.default_rng(s))[0, 0, :2].tolist()) for s in range(40)}
    assert len(crops) > 4  # positions and flips vary with the seed
    from torchvision.transforms import CenterCrop

    assert torch.equal(center_crop(x, 4), CenterCrop(4)(x))
    y = torch.arange(3 * 7 * 9).reshape(3, 7, 9)
    assert torch.equal(center_crop(y, 4), CenterCrop(4)(y))  # odd margins round as torchvision does


def test_command_line_trains_a_profile_experiment(image_list, tmp_path, capsys):
    root, _ = image_list
    sets = [f"data.imagelists.shapes.root={root}", f"data.imagelists.shapes.train={root / 'train.txt'}",
            "data.imagelists.shapes.num_attributes=1", "data.imagelists.shapes.num_classes=3"]
    exp = {"iterations": 2, "batch_size": 8, "checkpoint_every": 2, "resize": 36, "crop": 32, "code_length": 8,
           "width": 8, "hidden": 16, "num_workers": 0,
           "backbone_weights": "", "bit_init": "kaiming"}  # the tiny profile's in-kit pretrained backbone is not built here
    sets += [f"ibc.experiments.shapes.{k}={v}" for k, v in exp.items()]
    args = ["--profile", "tiny", "--experiment", "shapes", "--out", str(tmp_path), "--device", "cpu"]
    args += sum((["--set", s] for s in sets), [])
    assert main(args) == 0
    assert (tmp_path / "checkpoint_00000002.pt").exists()
    assert main(args + ["--fresh"]) == 0
    assert len(_previous(tmp_path)) == 1
    capsys.readouterr()
    with pytest.raises(SystemExit) as e:
        main(["--profile", "tiny", "--experiment", "nope", "--out", str(tmp_path)])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: python -m bitlens.stages.ibc_train") and "unknown experiment 'nope'" in err
    with pytest.raises(SystemExit):
        main(["--profile", "tiny", "--experiment", "shape", "--out", str(tmp_path)])
    assert "unknown experiment 'shape'; did you mean 'shapes'?" in capsys.readouterr().err


def test_command_line_help_shows_every_default(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    for flag in ("--profile", "--experiment", "--out", "--set", "--device", "--fresh"):
        assert flag in out
    assert "(default: tiny)" in out and "(default: False)" in out


def test_extracted_lab_keeps_missing_attributes_as_2(tmp_path):
    from bitlens.ibc.extract import extract_codes

    rng = np.random.default_rng(1)
    for i in range(3):
        Image.fromarray((rng.random((40, 40, 3)) * 255).astype(np.uint8)).save(tmp_path / f"{i}.png")
    (tmp_path / "test.txt").write_text("0.png 0 1 2\n1.png 1 -1 1\n2.png 99999 2 -1\n")
    lst = read_list(tmp_path / "test.txt", "sun", 2)
    b, lab = extract_codes(model(), lst, tmp_path, 36, 32, batch_size=2)
    assert b.shape == (3, 8) and ((b > 0) & (b < 1)).all()
    np.testing.assert_array_equal(lab, [[0, 1, 2], [1, 0, 1], [99999, 2, 0]])


def test_sweep_plan_trains_other_lengths_as_long_as_asked_and_reuses_the_main_model():
    from bitlens.stages.ibc_params import sweep_plan

    base = {"code_length": 32, "iterations": 300, "checkpoint_every": 100, "lr": 1e-3}
    ibc = {"experiments": {"shapes": base}, "sweep": {"experiment": "shapes", "code_lengths": [64, 16, 32, 16],
                                                      "iterations": 300}}
    plan = sweep_plan(ibc)
    assert list(plan) == [16, 32, 64] and plan[32] is None
    assert plan[16] == {**base, "code_length": 16, "checkpoint_every": 300}
    assert sweep_plan({**ibc, "sweep": {**ibc["sweep"], "experiment": ""}}) == {}
    with pytest.raises(ValueError, match="ibc.sweep.experiment = 'nope'"):
        sweep_plan({**ibc, "sweep": {**ibc["sweep"], "experiment": "nope"}})
    # a shorter sweep: the main run's snapshot after that many updates serves its own length, when it has one
    short = sweep_plan({**ibc, "sweep": {**ibc["sweep"], "iterations": 200}})
    assert short[32] == {"snapshot": 200} and short[16]["iterations"] == 200
    odd = sweep_plan({**ibc, "sweep": {**ibc["sweep"], "iterations": 150}})
    assert odd[32] == {**base, "iterations": 150, "checkpoint_every": 150}  # no snapshot at 150: trained
    longer = sweep_plan({**ibc, "sweep": {**ibc["sweep"], "iterations": 400}})
    assert longer[32]["iterations"] == 400


def test_a_main_run_snapshot_is_the_model_a_run_of_that_length_gives(image_list, tmp_path):
    """Why a sweep may use the main run's snapshot: it equals training for that many iterations (with StepLR
    and the data order running on past it)."""
    from bitlens.ibc.train import run_summary, snapshot_summary

    root, lst = image_list
    m = model()
    rows = train_ibc(m, lst, root, opts(iterations=4, checkpoint_every=2), tmp_path / "main", log=lambda *a: None)
    short = train_ibc(model(), lst, root, opts(iterations=2, checkpoint_every=2), tmp_path / "short",
                      log=lambda *a: None)
    snap = snapshot_summary(run_summary("main", m, rows), 2)
    assert snap["checkpoint"] == "main/checkpoint_00000002.pt" and snap["iterations"] == 2
    a, _ = read_state_dict(tmp_path / snap["checkpoint"])
    b, _ = read_state_dict(tmp_path / "short" / "checkpoint_00000002.pt")
    assert all(torch.equal(a[k], b[k]) for k in a) and len(short) == 2


def test_batches_are_normalised_once_with_the_values_of_per_image_normalisation(image_list):
    from bitlens.ibc.images import ImageListImages, collate_normalized, normalize

    root, lst = image_list
    raw = ImageListImages(lst, root, 36, 32, normalized=False)
    ready = ImageListImages(lst, root, 36, 32)
    keys = [(0, 11), (3, None), (5, 7)]
    items = [raw[k] for k in keys]
    assert all(x.dtype == torch.uint8 for x, _ in items)
    x, y = collate_normalized(items)
    want = torch.stack([ready[k][0] for k in keys])
    assert torch.equal(x, want) and torch.equal(x[1], normalize(raw[3][0]))
    assert y.tolist() == [int(lst.labels[i]) for i, _ in keys] and y.dtype == torch.long


def _previous(out_dir):
    """The earlier runs moved out of `out_dir` (bitlens.previous), oldest first; none stays inside it."""
    assert not [p for p in out_dir.rglob("previous-*")]
    home = out_dir.parent / ".previous" / out_dir.name
    return sorted(home.iterdir()) if home.exists() else []
