"""The pipeline's caching, forcing and failure reporting, on throw-away notebooks."""
import functools
import json
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from bitlens.pipeline import Pipeline, StageFailed
from bitlens.stages import StageSpec

ROOT = Path(__file__).resolve().parents[1]

STAGES = (StageSpec("s1", (), None, "first"), StageSpec("s2", ("s1",), None, "second"))


def _notebook(body: str) -> nbformat.NotebookNode:
    params = nbformat.v4.new_code_cell('profile = "tiny"\noverrides = {}\nroot = ""')
    params.metadata["tags"] = ["parameters"]
    nb = nbformat.v4.new_notebook(cells=[params, nbformat.v4.new_code_cell(body)])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    return nb


def _writer(stage: str, extra: str = "") -> str:
    return (f"import json, pathlib\n{extra}\n"
            f"d = pathlib.Path(root) / 'results' / profile / '{stage}'\n"
            "d.mkdir(parents=True, exist_ok=True)\n"
            "n = sum(1 for _ in d.glob('run*'))\n"
            "(d / f'run{n}').write_text('x')\n"
            "(d / 'metrics.json').write_text(json.dumps({'runs': n + 1}))\n")


@pytest.fixture
def kit(tmp_path):
    (tmp_path / "params").mkdir()
    shutil.copy(ROOT / "params" / "tiny.yaml", tmp_path / "params" / "tiny.yaml")
    (tmp_path / "pyproject.toml").write_text("")
    nbs = tmp_path / "notebooks"
    nbs.mkdir()
    nbformat.write(_notebook(_writer("s1")), nbs / "s1.ipynb")
    nbformat.write(_notebook(_writer("s2")), nbs / "s2.ipynb")
    return tmp_path


def _pipe(root, **kw):
    lines = []
    p = Pipeline(profile="tiny", root=root, stages=STAGES, log=lines.append, **kw)
    p.params["pipeline"]["kernel"] = "python3"
    return p, lines


def _runs(root, stage):
    return json.loads((root / "results" / "tiny" / stage / "metrics.json").read_text())["runs"]


@pytest.mark.slow
def test_second_run_skips_unchanged_stages_and_force_reruns(kit):
    p, _ = _pipe(kit)
    assert [r.status for r in p.run()] == ["ran", "ran"]
    p, lines = _pipe(kit)
    assert [r.status for r in p.run()] == ["cached", "cached"]
    assert any("up to date" in l and "skipped" in l for l in lines)
    p, _ = _pipe(kit)
    assert [r.status for r in p.run(force=True, only=["s2"])] == ["ran"]
    assert _runs(kit, "s1") == 1 and _runs(kit, "s2") == 2
    manifest = json.loads((kit / "results" / "tiny" / "run_manifest.json").read_text())
    assert set(manifest["stages"]) == {"s1", "s2"} and manifest["packages"]["python"]
    assert (kit / "results" / "tiny" / "params.resolved.yaml").exists()


@pytest.mark.slow
def test_changed_upstream_notebook_reruns_downstream_and_changed_params_rerun_all(kit):
    p, _ = _pipe(kit)
    p.run()
    nbformat.write(_notebook(_writer("s1", "# edited")), kit / "notebooks" / "s1.ipynb")
    p, _ = _pipe(kit)
    assert [r.status for r in p.run()] == ["ran", "ran"]
    p = Pipeline(profile="tiny", root=kit, stages=STAGES, log=lambda *_: None, overrides={"seed": 5})
    p.params["pipeline"]["kernel"] = "python3"
    assert [fresh for _, _, fresh in p.plan()] == [False, False]


@pytest.mark.slow
def test_failing_notebook_names_the_cell_and_leaves_no_completion_marker(kit):
    nbformat.write(_notebook("x = 1\nraise ValueError('deliberate failure')"), kit / "notebooks" / "s2.ipynb")
    p, _ = _pipe(kit)
    with pytest.raises(StageFailed) as e:
        p.run()
    msg = str(e.value)
    assert "s2" in msg and "cell 1" in msg and "ValueError: deliberate failure" in msg
    assert str(kit / "results" / "tiny" / "notebooks" / "s2.ipynb") in msg
    assert not (kit / "results" / "tiny" / "s2" / ".stage.json").exists()
    assert (kit / "results" / "tiny" / "s1" / ".stage.json").exists()


@pytest.mark.slow
def test_run_all_exits_nonzero_on_failure(kit, monkeypatch, capsys):
    sys.path.insert(0, str(ROOT))
    import run_all

    nbformat.write(_notebook("raise RuntimeError('boom')"), kit / "notebooks" / "s1.ipynb")

    def make(**kw):
        p = Pipeline(root=kit, stages=STAGES, **kw)
        p.params["pipeline"]["kernel"] = "python3"
        return p

    monkeypatch.setattr(run_all, "Pipeline", make)
    assert run_all.main(["--profile", "tiny"]) == 1
    err = capsys.readouterr().err
    assert "cell 1" in err and "RuntimeError: boom" in err


def test_stage_without_metrics_is_not_complete(kit):
    nbformat.write(_notebook("pass"), kit / "notebooks" / "s1.ipynb")
    p, _ = _pipe(kit)
    with pytest.raises(StageFailed, match="wrote no .*metrics.json"):
        p.run(only=["s1"])


def test_unknown_stage_is_rejected(kit):
    p, _ = _pipe(kit)
    from bitlens.config import ParamsError

    with pytest.raises(ParamsError, match="stage 'nope' is not in profile"):
        p.run(only=["nope"])


def test_paper_profile_without_data_stops_before_any_work(tmp_path):
    out = subprocess.run([sys.executable, str(ROOT / "run_all.py"), "--profile", "paper",
                          "--set", f"data.coco.root={tmp_path}/nothing"], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode != 0
    assert "data.coco.root" in out.stderr and "data.broden.root" in out.stderr and "nothing was run" in out.stderr
    assert "get it:" in out.stderr


def test_list_shows_every_stage():
    out = subprocess.run([sys.executable, str(ROOT / "run_all.py"), "--list"], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    for name in ("00_data", "12_bebr_eval", "21_ibc_dissect", "90_report"):
        assert name in out.stdout


# --- caching by what a stage reads (acceptance tests of issue 11) -----------------------------------------------
# Four fake stages on the throw-away kit: a → b, a → c, (b, c) → d. Each notebook writes its metrics from the
# overrides it was given (so its outputs change exactly when a key it was given changes) and counts its runs in
# a file outside the results.
READS = (
    StageSpec("a", (), None, "a", reads=("data.shapes.n_train",)),
    StageSpec("b", ("a",), None, "b", reads=("bebr.train.epochs",)),
    StageSpec("c", ("a",), None, "c", reads=("ibc.experiments.*.expert_bits",)),
    StageSpec("d", ("b", "c"), None, "d", reads=()),
)


def _reading_notebook(stage: str, reads: str, sleep: float = 0) -> nbformat.NotebookNode:
    body = ("import json, pathlib, time\n"
            f"d = pathlib.Path(root) / 'results' / profile / '{stage}'\n"
            "d.mkdir(parents=True, exist_ok=True)\n"
            f"(pathlib.Path(root) / 'started_{stage}').write_text('x')\n"
            f"time.sleep({sleep})\n"
            f"mine = {{k: v for k, v in overrides.items() if k.startswith('{reads}')}}\n"
            "(d / 'metrics.json').write_text(json.dumps({'read': mine, 'force': globals().get('force')}))\n"
            f"runs = pathlib.Path(root) / 'runs_{stage}'\n"
            "runs.write_text(runs.read_text() + 'x' if runs.exists() else 'x')\n")
    return _notebook(body)


@pytest.fixture
def reading_kit(kit):
    for spec, prefix in zip(READS, ("data.shapes", "bebr.train", "ibc.experiments", "nothing")):
        nbformat.write(_reading_notebook(spec.name, prefix), kit / "notebooks" / f"{spec.name}.ipynb")
    return kit


def _run_reading(root, overrides=None, **kw):
    p = Pipeline(profile="tiny", root=root, stages=READS, log=lambda *_: None, overrides=overrides or {})
    p.params["pipeline"]["kernel"] = "python3"
    return {r.name: r.status for r in p.run(**kw)}


def _count(root, stage):
    f = root / f"runs_{stage}"
    return len(f.read_text()) if f.exists() else 0


@pytest.mark.slow
def test_a_key_read_by_one_stage_reruns_it_and_its_dependents_only(reading_kit):
    assert set(_run_reading(reading_kit).values()) == {"ran"}
    status = _run_reading(reading_kit, {"bebr.train.epochs": 3})
    assert status == {"a": "cached", "b": "ran", "c": "cached", "d": "ran"}
    status = _run_reading(reading_kit, {"bebr.train.epochs": 3, "ibc.experiments.shapes.expert_bits": 4})
    assert status == {"a": "cached", "b": "cached", "c": "ran", "d": "ran"}
    # pipeline settings are read by no stage
    assert set(_run_reading(reading_kit, {"bebr.train.epochs": 3, "ibc.experiments.shapes.expert_bits": 4,
                                          "pipeline.cell_timeout": 99}).values()) == {"cached"}


@pytest.mark.slow
def test_upstream_rerun_with_identical_outputs_keeps_dependents_and_changed_outputs_rerun_them(reading_kit):
    _run_reading(reading_kit)
    # a key `a` reads changes its outputs: b and c re-run; they write what they wrote before, so d stays cached
    status = _run_reading(reading_kit, {"data.shapes.n_train": 7})
    assert status == {"a": "ran", "b": "ran", "c": "ran", "d": "cached"}
    # a's notebook edited in a way that writes the same outputs: a re-runs, nothing downstream does
    nb = nbformat.read(reading_kit / "notebooks" / "a.ipynb", as_version=4)
    nb.cells[1].source += "\n# a comment changes the code cells, not the outputs"
    nbformat.write(nb, reading_kit / "notebooks" / "a.ipynb")
    status = _run_reading(reading_kit, {"data.shapes.n_train": 7})
    assert status == {"a": "ran", "b": "cached", "c": "cached", "d": "cached"}
    # an output changed behind the pipeline's back re-runs the stage that owns it, from scratch (force=True: a
    # trainer must not reuse a damaged run), and its dependents then see its new outputs
    metrics = reading_kit / "results" / "tiny" / "b" / "metrics.json"
    metrics.write_text('{"edited": true}')
    status = _run_reading(reading_kit, {"data.shapes.n_train": 7})
    assert status == {"a": "cached", "b": "ran", "c": "cached", "d": "ran"}
    assert json.loads(metrics.read_text())["force"] is True


@pytest.mark.slow
def test_notebook_metadata_and_outputs_do_not_invalidate(reading_kit):
    _run_reading(reading_kit)
    for spec in READS:
        path = reading_kit / "notebooks" / f"{spec.name}.ipynb"
        nb = nbformat.read(path, as_version=4)
        nb.metadata["language_info"] = {"name": "python", "version": "3.11.9", "mimetype": "text/x-python"}
        nb.metadata["kernelspec"] = {"name": "bitlens", "display_name": "Python (bitlens)", "language": "python"}
        nb.cells[1].execution_count = 7
        nb.cells[1].outputs = [nbformat.v4.new_output("stream", name="stdout", text="hello\n")]
        nb.cells.append(nbformat.v4.new_markdown_cell("A note added in JupyterLab."))
        nbformat.write(nb, path)
    assert set(_run_reading(reading_kit).values()) == {"cached"}


@pytest.mark.slow
def test_force_passes_force_true_to_the_notebook(reading_kit):
    _run_reading(reading_kit)
    metrics = reading_kit / "results" / "tiny" / "b" / "metrics.json"
    assert json.loads(metrics.read_text())["force"] is False
    assert _run_reading(reading_kit, only=["b"], force=True) == {"b": "ran"}
    assert json.loads(metrics.read_text())["force"] is True and _count(reading_kit, "b") == 2


def test_only_and_from_together_are_refused(kit):
    from bitlens.config import ParamsError

    p, _ = _pipe(kit)
    with pytest.raises(ParamsError, match="--only and --from contradict"):
        p.run(only=["s2"], start="s1")


@pytest.mark.slow
@pytest.mark.parametrize("signame, code, words", [("SIGINT", 130, "interrupted during stage b"),
                                                   ("SIGTERM", 143, "terminated (SIGTERM) during stage b")])
def test_a_signal_during_a_stage_prints_one_line_exits_128_plus_it_and_leaves_it_incomplete(reading_kit, signame,
                                                                                          code, words):
    import os
    import signal
    import time

    nbformat.write(_reading_notebook("b", "bebr.train", sleep=120), reading_kit / "notebooks" / "b.ipynb")
    driver = reading_kit / "driver.py"
    driver.write_text(
        "import sys\n"
        f"sys.path.insert(0, {str(ROOT)!r})\n"
        "import run_all\n"
        "from bitlens.pipeline import Pipeline\n"
        "from bitlens.stages import StageSpec\n"
        f"STAGES = {READS!r}\n"
        "def make(**kw):\n"
        f"    p = Pipeline(root={str(reading_kit)!r}, stages=STAGES, **kw)\n"
        "    p.params['pipeline']['kernel'] = 'python3'\n"
        "    return p\n"
        "run_all.Pipeline = make\n"
        "sys.exit(run_all.main(['--profile', 'tiny']))\n")
    env = {**os.environ, "PYTHONPATH": str(ROOT / "lib")}
    # a terminal's foreground job receives Ctrl-C; a background job of a non-interactive shell (how a CI script
    # may start pytest) inherits SIGINT ignored, and an ignored signal stays ignored in every child: restore it
    proc = subprocess.Popen([sys.executable, str(driver)], cwd=reading_kit, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True, env=env,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 120
    while not (reading_kit / "started_b").exists():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "stage b never started"
        time.sleep(0.2)
    time.sleep(1.0)
    if signame == "SIGINT":
        os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in a terminal does: the whole foreground group
    else:
        os.kill(proc.pid, signal.SIGTERM)  # a scheduler's time limit, `kill PID`: run_all alone
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == code, (out, err)
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert words in lines[0] and "--from b" in lines[0]
    assert "Traceback" not in out + err
    assert (reading_kit / "results" / "tiny" / "a" / ".stage.json").exists()
    assert not (reading_kit / "results" / "tiny" / "b" / ".stage.json").exists()
    manifest = json.loads((reading_kit / "results" / "tiny" / "run_manifest.json").read_text())
    assert manifest["stages"]["b"]["status"] == "interrupted"


@pytest.mark.slow
def test_manifest_seen_by_a_stage_holds_this_runs_times(reading_kit):
    body = ("import json, pathlib\n"
            "r = pathlib.Path(root) / 'results' / profile\n"
            "(r / 'd').mkdir(parents=True, exist_ok=True)\n"
            "(r / 'd' / 'metrics.json').write_text((r / 'run_manifest.json').read_text())\n")
    nbformat.write(_notebook(body), reading_kit / "notebooks" / "d.ipynb")
    _run_reading(reading_kit)
    seen = json.loads((reading_kit / "results" / "tiny" / "d" / "metrics.json").read_text())
    assert seen["stages"]["d"]["status"] == "running"
    for name in "abc":
        marker = json.loads((reading_kit / "results" / "tiny" / name / ".stage.json").read_text())
        load = seen["stages"][name].pop("load_1min")  # how busy the machine was when the stage ended
        assert isinstance(load, float) and load >= 0
        assert seen["stages"][name] == {"status": "ran", "seconds": marker["seconds"]}
    assert seen["git_dirty"] in (True, False, None) and seen["seed"] == 0 and seen["device"]


@pytest.fixture
def hand_kit(tmp_path, monkeypatch):
    (tmp_path / "params").mkdir()
    shutil.copy(ROOT / "params" / "tiny.yaml", tmp_path / "params" / "tiny.yaml")
    (tmp_path / "pyproject.toml").write_text("")
    (tmp_path / "notebooks").mkdir()
    for name in ("11_bebr_train", "12_bebr_eval"):
        nbformat.write(_notebook(f"# {name}"), tmp_path / "notebooks" / f"{name}.ipynb")
    monkeypatch.delenv("BITLENS_PIPELINE", raising=False)
    monkeypatch.delenv("BITLENS_RESULTS", raising=False)
    return tmp_path


def test_a_dependent_refuses_an_upstream_without_its_completion_marker(hand_kit):
    from bitlens.stage import Stage

    up = hand_kit / "results" / "tiny" / "11_bebr_train"
    up.mkdir(parents=True)
    (up / "metrics.json").write_text("{}")  # what an interrupted run leaves: results, no marker
    stage = Stage("12_bebr_eval", "tiny", {}, hand_kit)
    with pytest.raises(FileNotFoundError) as e:
        stage.input("11_bebr_train")
    msg = str(e.value)
    assert "11_bebr_train has not finished" in msg
    assert "python run_all.py --profile tiny --only 11_bebr_train" in msg and "notebooks/11_bebr_train.ipynb" in msg


def test_a_notebook_run_by_hand_marks_its_stage_complete_as_the_pipeline_would(hand_kit, capsys):
    from bitlens.stage import Stage

    up = Stage("11_bebr_train", "tiny", {}, hand_kit)
    assert not (up.dir / ".stage.json").exists()
    up.write_metrics({"heads": {}})
    assert json.loads((up.dir / ".stage.json").read_text())["by"] == "notebook"
    assert Stage("12_bebr_eval", "tiny", {}, hand_kit).input("11_bebr_train") == up.dir
    assert "out of date" not in capsys.readouterr().err
    p = Pipeline(profile="tiny", root=hand_kit, log=lambda *_: None)
    spec = next(s for s in p.stages if s.name == "11_bebr_train")
    assert p.stored_fingerprint("11_bebr_train") == p.fingerprint(spec)
    # re-opening the stage by hand starts a new run: it is incomplete until write_metrics
    Stage("11_bebr_train", "tiny", {}, hand_kit)
    assert not (up.dir / ".stage.json").exists()


def test_committed_notebooks_carry_no_outputs_and_no_execution_counts():
    for path in sorted((ROOT / "notebooks").glob("*.ipynb")):
        nb = nbformat.read(path, as_version=4)
        for i, cell in enumerate(nb.cells):
            if cell.cell_type == "code":
                assert cell.outputs == [] and cell.execution_count is None, f"{path.name} cell {i} has outputs"


def test_committed_notebooks_are_clean_and_the_cleaner_undoes_a_jupyterlab_save(tmp_path):
    sys.path.insert(0, str(ROOT / "tools"))
    import clean_notebooks

    paths = sorted((ROOT / "notebooks").glob("*.ipynb"))
    assert clean_notebooks.main(["--check", *map(str, paths)]) == 0
    saved = json.loads(paths[0].read_text())
    saved["metadata"]["language_info"] = {"name": "python", "version": "3.11.9", "mimetype": "text/x-python"}
    code = next(c for c in saved["cells"] if c["cell_type"] == "code")
    code["execution_count"], code["outputs"] = 3, [{"output_type": "stream", "name": "stdout", "text": ["x\n"]}]
    target = tmp_path / paths[0].name
    target.write_text(json.dumps(saved))
    assert clean_notebooks.main(["--check", str(target)]) == 1
    assert clean_notebooks.main([str(target)]) == 0
    assert target.read_text() == paths[0].read_text()


def test_expert_bits_is_read_by_ibc_evaluation_only():
    from bitlens import config, fingerprint
    from bitlens.stages import STAGES as REAL

    a = config.load_params("tiny")
    b = config.load_params("tiny", {"ibc.experiments.shapes.expert_bits": 5})
    changed = [s.name for s in REAL if fingerprint.params_read(a, s) != fingerprint.params_read(b, s)]
    assert changed == ["22_ibc_eval"]
    c = config.load_params("tiny", {"ibc.experiments.shapes.iterations": 7})
    changed = [s.name for s in REAL if fingerprint.params_read(a, s) != fingerprint.params_read(c, s)]
    assert changed == ["20_ibc_train", "21_ibc_dissect", "22_ibc_eval", "23_bit_browser"]
    d = config.load_params("tiny", {"pipeline.cell_timeout": 5})
    assert all(fingerprint.params_read(a, s) == fingerprint.params_read(d, s) for s in REAL)


def test_output_digest_follows_content_not_hidden_files(tmp_path):
    from bitlens import fingerprint

    d = tmp_path / "s"
    d.mkdir()
    (d / "metrics.json").write_text("{}")
    (d / "t.csv").write_text("a\n1\n")
    fingerprint.write_marker(d, "fp", by="test")
    first = fingerprint.current_outputs_digest(d)
    (d / ".t.csv.tmp123").write_text("half-written")  # an in-flight atomic write is not an output
    assert fingerprint.current_outputs_digest(d) == first
    (d / "t.csv").write_text("a\n2\n")  # same size, new content
    assert fingerprint.current_outputs_digest(d) != first
    (d / "t.csv").write_text("a\n1\n")
    assert fingerprint.current_outputs_digest(d) == first
    fingerprint.clear_marker(d)
    assert fingerprint.current_outputs_digest(d) == fingerprint.MISSING


# --- outputs verified before they are trusted (issue 23, finding 1) --------------------------------------------
@pytest.mark.slow
def test_a_deleted_or_damaged_output_reruns_its_stage_and_the_log_names_the_file(kit):
    p, _ = _pipe(kit)
    p.run()
    s1, s2 = kit / "results" / "tiny" / "s1", kit / "results" / "tiny" / "s2"
    (s1 / "run0").unlink()
    p, lines = _pipe(kit)
    # s1 writes its outputs again, byte for byte, so s2 has nothing new to read
    assert [r.status for r in p.run()] == ["ran", "cached"]
    assert (s1 / "run0").read_text() == "x" and _runs(kit, "s1") == 1
    assert any("s1" in l and "run0 (deleted)" in l for l in lines), lines
    (s2 / "metrics.json").write_text('{"ru')  # truncated
    p, lines = _pipe(kit)
    assert [r.status for r in p.run()] == ["cached", "ran"]
    assert any("s2" in l and "metrics.json (modified)" in l for l in lines), lines
    assert json.loads((s2 / "metrics.json").read_text()) == {"runs": 2}  # whole again


def _marked_kit(kit):
    """The kit's stages marked complete by hand (as a finished run leaves them), without running a notebook."""
    from bitlens import fingerprint

    p, _ = _pipe(kit)
    for spec in STAGES:
        d = p.results_dir / spec.name
        d.mkdir(parents=True, exist_ok=True)
        (d / "run0").write_text("x")
        (d / "metrics.json").write_text('{"runs": 1}')
        fingerprint.write_marker(d, p.fingerprint(spec), by="test")
    return p.results_dir


def test_list_shows_outputs_changed_beside_a_stage_whose_output_was_deleted(kit, monkeypatch, capsys):
    sys.path.insert(0, str(ROOT))
    import run_all

    results = _marked_kit(kit)

    def make(**kw):
        p = Pipeline(root=kit, stages=STAGES, **kw)
        p.params["pipeline"]["kernel"] = "python3"
        return p

    monkeypatch.setattr(run_all, "Pipeline", make)
    assert run_all.main(["--list"]) == 0
    out = capsys.readouterr().out
    assert [line.split()[1:3] for line in out.splitlines()] == [["up", "to"], ["up", "to"]]
    (results / "s2" / "run0").unlink()
    assert run_all.main(["--list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "up to date" in lines[0] and "outputs changed" in lines[1]


def test_changed_outputs_checks_content_when_size_or_mtime_differ(tmp_path):
    import os

    from bitlens import fingerprint

    d = tmp_path / "s"
    d.mkdir()
    (d / "metrics.json").write_text("{}")
    (d / "t.csv").write_text("a\n1\n")
    fingerprint.write_marker(d, "fp", by="test")
    assert fingerprint.changed_outputs(d) == []
    os.utime(d / "t.csv", ns=(1, 1))  # touched, same bytes
    assert fingerprint.changed_outputs(d) == []
    (d / "t.csv").write_text("a\n2\n")  # same size, new content
    (d / "new.txt").write_text("n")
    assert fingerprint.changed_outputs(d) == ["new.txt (added)", "t.csv (modified)"]
    (d / "t.csv").unlink()
    assert "t.csv (deleted)" in fingerprint.changed_outputs(d)


# --- earlier runs outside the stage folders, no times in outputs (issue 23, finding 9) ------------------------
MOVING = (StageSpec("10_up", (), None, "up"), StageSpec("20_down", ("10_up",), None, "down"))


@pytest.mark.slow
def test_earlier_runs_move_out_of_the_stage_folder_and_do_not_invalidate_dependents(kit):
    import random

    body = ("import json, pathlib, random\n"
            "from bitlens import checkpoint\n"
            "d = pathlib.Path(root) / 'results' / profile / '10_up'\n"
            "checkpoint.move_aside(d / 'model', ['w.pt'])\n"
            "(d / 'model').mkdir(parents=True, exist_ok=True)\n"
            "(d / 'model' / 'w.pt').write_text('w')\n"
            "(d / '.timings.json').write_text(json.dumps({'build': random.random()}))\n"
            "(d / 'metrics.json').write_text('{}')\n")
    nbformat.write(_notebook(body), kit / "notebooks" / "10_up.ipynb")
    nbformat.write(_notebook(_writer("20_down")), kit / "notebooks" / "20_down.ipynb")
    results = kit / "results" / "tiny"
    (results / "10_up" / "previous-20240101T000000Z").mkdir(parents=True)  # what older versions left inside
    (results / "10_up" / "previous-20240101T000000Z" / "w.pt").write_text("old")

    def run(**kw):
        p = Pipeline(profile="tiny", root=kit, stages=MOVING, log=lambda *_: None,
                     overrides={"pipeline.keep_previous": 2})
        p.params["pipeline"]["kernel"] = "python3"
        return [r.status for r in p.run(**kw)]

    assert run() == ["ran", "ran"]
    for _ in range(2):  # with the adopted older folder, three earlier runs: the oldest is pruned
        assert run(force=True, only=["10_up"]) == ["ran"]
        assert run() == ["cached", "cached"]  # an earlier run moved aside is not an output of 10_up
    assert sorted(str(p.relative_to(results / "10_up")) for p in (results / "10_up").rglob("[!.]*")) == [
        "metrics.json", "model", "model/w.pt"]
    kept = sorted((results / ".previous" / "10_up").iterdir())
    assert len(kept) == 2 and all((k / "model" / "w.pt").read_text() == "w" for k in kept)
    manifest = json.loads((results / "run_manifest.json").read_text())
    assert manifest["stages"]["10_up"]["status"] == "cached"
    p = Pipeline(profile="tiny", root=kit, stages=MOVING, log=lambda *_: None)
    p.params["pipeline"]["kernel"] = "python3"
    p.run(force=True, only=["10_up"])
    manifest = json.loads((results / "run_manifest.json").read_text())
    assert 0 <= manifest["stages"]["10_up"]["timings"]["build"] < 1  # times go to the run record


def test_a_recorded_time_is_not_an_output(hand_kit):
    from bitlens import fingerprint
    from bitlens.stage import Stage

    digests = []
    for seconds in (1.5, 2.5):
        st = Stage("11_bebr_train", "tiny", {}, hand_kit)
        st.record_seconds("build", seconds)
        st.write_metrics({"heads": {}})
        digests.append(fingerprint.current_outputs_digest(st.dir))
    assert digests[0] == digests[1]
    assert json.loads((st.dir / ".timings.json").read_text()) == {"build": 2.5}


# --- what a notebook is (issue 23, finding 2) -------------------------------------------------------------------
def test_a_notebook_without_its_parameters_cell_is_refused_before_anything_runs(kit):
    nb = nbformat.read(kit / "notebooks" / "s2.ipynb", as_version=4)
    nb.cells[0].metadata["tags"] = []
    nbformat.write(nb, kit / "notebooks" / "s2.ipynb")
    p, _ = _pipe(kit)
    with pytest.raises(StageFailed) as e:
        p.run()
    msg = str(e.value)
    assert str(kit / "notebooks" / "s2.ipynb") in msg and "'parameters'" in msg and "nothing was run" in msg
    assert not (kit / "results" / "tiny" / "s1").exists()


def test_cell_tags_are_part_of_the_notebook_fingerprint(kit):
    from bitlens import fingerprint

    path = kit / "notebooks" / "s1.ipynb"
    before = fingerprint.notebook_code_digest(path)
    nb = nbformat.read(path, as_version=4)
    nb.cells[0].metadata["tags"], nb.cells[1].metadata["tags"] = [], ["parameters"]  # the tag moved
    nbformat.write(nb, path)
    moved = fingerprint.notebook_code_digest(path)
    nb.cells[1].metadata["tags"] = []
    nbformat.write(nb, path)
    assert len({before, moved, fingerprint.notebook_code_digest(path)}) == 3


# --- one run per results folder (issue 23, finding 7) -----------------------------------------------------------
def test_a_second_run_on_a_busy_results_folder_stops_at_once_naming_the_first(kit, monkeypatch, capsys):
    import os

    sys.path.insert(0, str(ROOT))
    import run_all

    results = kit / "results" / "tiny"
    results.mkdir(parents=True)
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time\nfrom bitlens import runlock\n"
                               f"with runlock.hold({str(results)!r}, 'python run_all.py --profile tiny'):\n"
                               "    print('held', flush=True)\n    time.sleep(60)\n"],
        stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(ROOT / "lib")})
    try:
        assert holder.stdout.readline().strip() == "held"

        def make(**kw):
            p = Pipeline(root=kit, stages=STAGES, **kw)
            p.params["pipeline"]["kernel"] = "python3"
            return p

        monkeypatch.setattr(run_all, "Pipeline", make)
        assert run_all.main(["--profile", "tiny"]) == 1
        err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
        assert len(err) == 1 and f"PID {holder.pid}" in err[0] and str(results) in err[0], err
        assert "python run_all.py --profile tiny" in err[0] and "nothing was run" in err[0]
        assert not (results / "s1").exists() and not (results / "run_manifest.json").exists()
    finally:
        holder.kill()
        holder.wait()


def test_a_stale_lock_is_taken_over_with_a_message(tmp_path):
    from bitlens import runlock

    (tmp_path / runlock.INFO).write_text(json.dumps({"pid": 999999, "host": "gone", "started": "2026-01-01T00:00:00",
                                                     "command": "python run_all.py"}))
    said = []
    with runlock.hold(tmp_path, "me", log=said.append):
        assert json.loads((tmp_path / runlock.INFO).read_text())["command"] == "me"
    assert len(said) == 1 and "taking over" in said[0] and "PID 999999 on gone" in said[0]
    assert not (tmp_path / runlock.INFO).exists()
    with runlock.hold(tmp_path, "me", log=said.append):  # a lock released in order leaves nothing stale
        pass
    assert len(said) == 1


# --- file-system faults end in one line (issue 23, finding 8) ---------------------------------------------------
def _main_on(kit, monkeypatch, *argv):
    sys.path.insert(0, str(ROOT))
    import run_all

    def make(**kw):
        p = Pipeline(root=kit, stages=STAGES, **kw)
        p.params["pipeline"]["kernel"] = "python3"
        return p

    monkeypatch.setattr(run_all, "Pipeline", make)
    return run_all.main(["--profile", "tiny", *argv])


def _one_line(capsys):
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1, lines
    return lines[0]


def test_a_file_where_the_results_folder_should_be_is_one_line(kit, monkeypatch, capsys):
    (kit / "taken").write_text("a file")
    assert _main_on(kit, monkeypatch, "--results", str(kit / "taken")) == 1
    line = _one_line(capsys)
    assert str(kit / "taken") in line and "a file stands where a folder is needed" in line


def test_a_read_only_results_folder_is_one_line_even_when_every_stage_is_cached(kit, monkeypatch, capsys):
    import os
    import tempfile

    results = _marked_kit(kit)
    results.chmod(0o555)
    if os.geteuid() == 0:  # root writes anywhere: make the folder refuse files as a read-only one does
        real = tempfile.mkstemp

        def refuse(*a, dir=None, **kw):
            if dir is not None and Path(dir) == results:
                raise PermissionError(13, "Permission denied", str(Path(dir) / "x"))
            return real(*a, dir=dir, **kw)

        monkeypatch.setattr(tempfile, "mkstemp", refuse)
    try:
        assert _main_on(kit, monkeypatch) == 1
    finally:
        results.chmod(0o755)
    line = _one_line(capsys)
    assert str(results) in line and "cannot write there" in line and "--results" in line


def test_a_full_disk_is_one_line_naming_the_file(kit, monkeypatch, capsys):
    import errno

    _marked_kit(kit)
    real = Path.write_text

    def full(self, *a, **kw):
        if self.name.startswith(".params.resolved.yaml"):
            raise OSError(errno.ENOSPC, "No space left on device")  # what write() says: no file name
        return real(self, *a, **kw)

    monkeypatch.setattr(Path, "write_text", full)
    assert _main_on(kit, monkeypatch) == 1
    line = _one_line(capsys)
    assert "no space left on the disk holding " + str(kit / "results" / "tiny" / "params.resolved.yaml") in line
