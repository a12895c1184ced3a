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
