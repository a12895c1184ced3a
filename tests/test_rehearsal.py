"""The dress rehearsal (make rehearse): the real `paper` profile, the IBC trainer under torchrun and the
`released` profile on bitlens.replica's random stand-ins for every input, with size overrides only."""
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from bitlens import replica
from bitlens.stages import STAGES

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def _run(args, timeout=1500):
    env = {**os.environ, "PYTHONPATH": str(ROOT / "lib") + os.pathsep + os.environ.get("PYTHONPATH", ""),
           "HF_HUB_OFFLINE": "1"}
    out = subprocess.run([sys.executable, *map(str, args)], cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=timeout)
    assert out.returncode == 0, (f"{' '.join(map(str, args[:6]))} … failed:\n{out.stdout[-4000:]}\n"
                                 f"{out.stderr[-6000:]}")
    return out


@pytest.fixture(scope="module")
def rehearsal(tmp_path_factory):
    """One rehearsal (the same steps and --set lists as `make rehearse`): {profile: (results folder, stdout)}.

    BITLENS_REHEARSAL_DIR (debugging): run in that folder and keep it; a finished run there is reused."""
    keep = os.environ.get("BITLENS_REHEARSAL_DIR")
    base = Path(keep) if keep else tmp_path_factory.mktemp("rehearsal")
    data, results = base / "replica", base / "results"
    replica.write_replica(data, 0, log=lambda s: None)
    paper = _run(["run_all.py", "--profile", "paper", "--results", results,
                  *[f"--set={s}" for s in replica.paper_overrides(data)]])
    torchrun = _run(["-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                     "-m", "bitlens.stages.ibc_train",
                     "--profile", "paper", "--experiment", "imagenet100c", "--device", "cpu", "--fresh",
                     "--out", results / "ibc_torchrun", *[f"--set={s}" for s in replica.paper_overrides(data)]])
    released = _run(["run_all.py", "--profile", "released", "--results", results,
                     *[f"--set={s}" for s in replica.released_overrides(data)]])
    yield {"paper": (results / "paper", paper.stdout), "released": (results / "released", released.stdout),
           "torchrun": (results / "ibc_torchrun", torchrun.stdout + torchrun.stderr), "data": data}
    if not keep:
        shutil.rmtree(base, ignore_errors=True)  # several GB: the weights replicas and the IBC checkpoints


def _metrics(results: Path, stage: str) -> dict:
    return json.loads((results / stage / "metrics.json").read_text())


def _done(stdout: str) -> set[str]:
    return set(re.findall(r"^\[\d+/\d+\] (\S+): done", stdout, re.M))


def test_every_paper_stage_done_and_the_report_says_meaningless(rehearsal):
    results, stdout = rehearsal["paper"]
    assert _done(stdout) == {s.name for s in STAGES}
    manifest = json.loads((results / "run_manifest.json").read_text())
    assert {s: v["status"] for s, v in manifest["stages"].items()} == {s.name: "ran" for s in STAGES}
    for path in (results / "report.md", results / "90_report" / "headline.md"):
        assert "meaningless" in path.read_text().splitlines()[0], path


def test_paper_architectures_and_code_lengths(rehearsal):
    from bitlens.ibc.model import infer_architecture

    results, _ = rehearsal["paper"]
    rows = _metrics(results, "12_bebr_eval")["rows"]
    assert {n: r["bits"] for n, r in rows.items()} == {"hash": 1024, "bebr": 1024, "float": 16384}
    feats = _metrics(results, "10_bebr_features")  # RN101 with QuickGELU from the replica's TorchScript file
    assert (feats["model"], feats["quick_gelu"], feats["dim"]) == ("RN101", True, 512)
    assert Path(feats["weights"]) == rehearsal["data"] / "weights" / "RN101.pt"
    trained = _metrics(results, "20_ibc_train")["experiments"]
    assert set(trained) == {"imagenet100c", "imagenet150k", "sun120k"}
    assert {n: e["code_length"] for n, e in trained.items()} == dict.fromkeys(trained, 256)
    arch = {n: infer_architecture(results / "20_ibc_train" / e["checkpoint"]) for n, e in trained.items()}
    assert arch["sun120k"]["alexnet_classes"] == 365  # SUN starts from the Places365 file
    assert arch["imagenet100c"]["alexnet_classes"] == 1000
    assert {n: a["num_classes"] for n, a in arch.items()} == {"imagenet100c": 100, "imagenet150k": 1000,
                                                               "sun120k": 397}


def test_dissection_covers_256_units_over_six_categories(rehearsal):
    from bitlens.replica.broden import CATEGORIES

    results, _ = rehearsal["paper"]
    dissected = _metrics(results, "21_ibc_dissect")["experiments"]
    assert set(dissected) == {"imagenet100c", "imagenet150k", "sun120k"}
    import pandas as pd

    for name, m in dissected.items():
        assert m["units"] == 256, name
        tally = pd.read_csv(results / "21_ibc_dissect" / name / "tally.csv")
        assert len(tally) == 256
        # every unit was scored against every category, the image-level scene and texture included
        assert {c for c in CATEGORIES if f"{c}-iou" in tally.columns} == set(CATEGORIES), name


def test_sun_customized_ocean_retrieval_ran(rehearsal):
    results, _ = rehearsal["paper"]
    sun = _metrics(results, "22_ibc_eval")["experiments"]["sun120k"]
    assert sun["customized"] is not None and sun["customized"]["attribute"] == "ocean"


def test_ibc_trainer_under_torchrun(rehearsal):
    out, log = rehearsal["torchrun"]
    assert "for each process" in log  # torchrun's note when it starts more than one process
    rows = (out / "log.csv").read_text().splitlines()
    assert len(rows) == 1 + 3  # header + the 3 iterations
    assert (out / "checkpoint_00000003.pt").exists()


def test_released_done_with_a_released_checkpoint(rehearsal):
    results, stdout = rehearsal["released"]
    assert {"12_bebr_eval", "22_ibc_eval", "90_report"} <= _done(stdout)
    ibc = _metrics(results, "22_ibc_eval")["experiments"]
    assert set(ibc) == {"imagenet100c", "imagenet150k", "sun120k", "imagenet100c_checkpoint"}
    assert (results / "22_ibc_eval" / "imagenet100c_checkpoint_codes.mat").exists() or any(
        (results / "22_ibc_eval").glob("imagenet100c_checkpoint_codes.*"))
    assert "meaningless" in (results / "report.md").read_text().splitlines()[0]
