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
    assert logs[-1].count("lr: 1 → 2") == 1 and ".previous" in logs[-1]
    prev = _previous(tmp_path)
    assert len(prev) == 1 and {p.name for p in prev[0].iterdir()} == {"model_1.pt", "train_state.pt"}
    assert not (tmp_path / "train_state.pt").exists() and not (tmp_path / "model_1.pt").exists()
    _save(tmp_path, {"lr": 2}, 10, 10)
    assert checkpoint.open_run(tmp_path, {"lr": 2}, 10, w, fresh=True, patterns=("model_*.pt",),
                               log=logs.append) is None
    assert "fresh run requested" in logs[-1]
    assert len(_previous(tmp_path)) == 2


def test_generator_states_round_trip():
    st = checkpoint.rng_state()
    a = torch.rand(3)
    checkpoint.set_rng_state(st)
    assert torch.equal(torch.rand(3), a)


def test_an_earlier_run_leaves_the_stage_folder_and_only_the_newest_are_kept(tmp_path):
    from bitlens import previous

    results = tmp_path / "results" / "tiny"
    out = results / "20_ibc_train" / "shapes"
    out.mkdir(parents=True)
    for i in range(4):
        _save(out, {"lr": i}, 1, 1)
        assert checkpoint.open_run(out, {"lr": i + 1}, 1, World(), patterns=("model_*.pt",), log=print) is None
    assert sorted(p.name for p in (results / "20_ibc_train").rglob("*")) == ["shapes"]  # only the current run
    kept = previous.runs(results, "20_ibc_train")
    assert len(kept) == 4 and all((k / "shapes" / "train_state.pt").exists() for k in kept)
    assert [checkpoint.load_state(k / "shapes")["settings"]["lr"] for k in kept] == [0, 1, 2, 3]  # oldest first
    assert previous.prune(results, "20_ibc_train", 3) == kept[:1]
    assert previous.runs(results, "20_ibc_train") == kept[1:]


def _previous(out_dir):
    """The earlier runs moved out of `out_dir` (bitlens.previous), oldest first; none stays inside it."""
    assert not [p for p in out_dir.rglob("previous-*")]
    home = out_dir.parent / ".previous" / out_dir.name
    return sorted(home.iterdir()) if home.exists() else []


def test_no_block_of_six_lines_is_repeated_in_the_training_code():
    """One trainer per paper: the loops, the loader, the launcher and the CLI tail exist once (issue 19)."""
    from collections import defaultdict
    from pathlib import Path

    lib = Path(checkpoint.__file__).parent
    files = [*sorted((lib / "bebr").glob("*.py")), lib / "ibc" / "train.py", lib / "checkpoint.py",
             lib / "distributed.py"]
    seen = defaultdict(list)
    for f in files:
        lines = [(n, t.strip()) for n, t in enumerate(f.read_text().splitlines(), 1)]
        lines = [(n, t) for n, t in lines if t and not t.startswith("#")]
        for i in range(len(lines) - 5):
            seen[tuple(t for _, t in lines[i:i + 6])].append(f"{f.relative_to(lib)}:{lines[i][0]}")
    repeated = {block[0]: places for block, places in seen.items() if len(places) > 1}
    assert not repeated, f"blocks of six lines repeated (first line: places): {repeated}"
