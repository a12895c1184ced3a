"""The training-state toolkit: settings differences, moving an earlier run aside, the resume decision."""
import torch

from bitlens import checkpoint
from bitlens.distributed import World


def test_settings_diff_names_each_dotted_key_old_to_new():
    old = {"lr": 0.1, "weights": {"a": 1, "b": 2}, "gone": 3}
    new = {"lr": 0.2, "weights": {"a": 1, "b": 5}, "added": True}
    assert checkpoint.settings_diff(old, new) == ["added: — → True", "gone: 3 → —", "lr: 0.1 → 0.2",
                                                  "weights.b: 2 → 5"]
    assert checkpoint.settings_diff(new, new) == []


def _save(d, settings, progress, total):
    d.mkdir(exist_ok=True)
    (d / "model_1.pt").write_text("model")
    checkpoint.save_state(d, settings, progress, total, World(), note="x")


def test_open_run_resumes_reuses_or_starts_fresh_and_never_mixes_runs(tmp_path):
    w, logs = World(), []
    assert checkpoint.open_run(tmp_path, {"lr": 1}, 10, w, log=logs.append) is None and logs == []
    _save(tmp_path, {"lr": 1}, 4, 10)
    st = checkpoint.open_run(tmp_path, {"lr": 1}, 10, w, patterns=("model_*.pt",), log=logs.append)
    assert st["progress"] == 4 and not st["finished"] and st["note"] == "x"
    assert "resuming at iterations 4 of 10" in logs[-1]
    _save(tmp_path, {"lr": 1}, 10, 10)
    assert checkpoint.open_run(tmp_path, {"lr": 1}, 10, w, patterns=("model_*.pt",), log=logs.append)["finished"]
    assert checkpoint.open_run(tmp_path, {"lr": 2}, 10, w, patterns=("model_*.pt",), log=logs.append) is None
    assert logs[-1].count("lr: 1 → 2") == 1 and "previous-" in logs[-1]
    prev = [p for p in tmp_path.iterdir() if p.name.startswith("previous-")]
    assert len(prev) == 1 and {p.name for p in prev[0].iterdir()} == {"model_1.pt", "train_state.pt"}
    assert not (tmp_path / "train_state.pt").exists() and not (tmp_path / "model_1.pt").exists()
    _save(tmp_path, {"lr": 2}, 10, 10)
    assert checkpoint.open_run(tmp_path, {"lr": 2}, 10, w, fresh=True, patterns=("model_*.pt",),
                               log=logs.append) is None
    assert "fresh run requested" in logs[-1]
    assert len([p for p in tmp_path.iterdir() if p.name.startswith("previous-")]) == 2


def test_generator_states_round_trip():
    st = checkpoint.rng_state()
    a = torch.rand(3)
    checkpoint.set_rng_state(st)
    assert torch.equal(torch.rand(3), a)
