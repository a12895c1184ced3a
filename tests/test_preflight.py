"""The pre-run check (`run_all.py --check`, and the same check before every run): every missing or malformed
input is listed at once, with its key, path, expected format and source; nothing is written."""
import hashlib
import subprocess
import sys

import numpy as np
import torch

from bitlens import config, preflight
from bitlens.stages import STAGES

from conftest import ROOT

PAPER_INPUTS = {
    "data.coco.root", "data.broden.root", "bebr.encoder.pretrained", "bebr.compat.encoder.pretrained",
    *(f"data.imagelists.{n}.{part}" for n in ("imagenet100c", "imagenet150k", "sun120k")
      for part in ("root", "train", "test")),
    *(f"ibc.experiments.{n}.backbone_weights" for n in ("imagenet100c", "imagenet150k", "sun120k")),
}


def _paper(tmp_path, **sets):
    sets = {"data.coco.root": str(tmp_path / "data" / "coco"), **sets}
    for name in ("imagenet100c", "imagenet150k", "sun120k"):
        for part in ("root", "train", "test"):
            sets.setdefault(f"data.imagelists.{name}.{part}", str(tmp_path / "data" / name / part))
        sets.setdefault(f"ibc.experiments.{name}.backbone_weights", str(tmp_path / "data" / f"{name}.pth"))
    sets.setdefault("data.broden.root", str(tmp_path / "data" / "broden"))
    return config.load_params("paper", sets)


def test_check_on_empty_data_lists_every_missing_input_once_and_exits_2_writing_nothing(tmp_path):
    sets = [f"{k}={v}" for k, v in {
        "data.coco.root": tmp_path / "coco", "data.broden.root": tmp_path / "broden",
        **{f"data.imagelists.{n}.{p}": tmp_path / n / p for n in ("imagenet100c", "imagenet150k", "sun120k")
           for p in ("root", "train", "test")},
        **{f"ibc.experiments.{n}.backbone_weights": tmp_path / f"{n}.pth"
           for n in ("imagenet100c", "imagenet150k", "sun120k")}}.items()]
    cmd = [sys.executable, str(ROOT / "run_all.py"), "--profile", "paper", "--check", "--results",
           str(tmp_path / "results")] + [a for s in sets for a in ("--set", s)]
    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env={**__import__("os").environ,
                                                                             "HF_HUB_OFFLINE": "1"})
    assert out.returncode == 2, out.stderr
    listed = {line.split(":")[0].strip("- ").strip() for line in out.stderr.splitlines() if line.startswith("  - ")}
    assert listed == PAPER_INPUTS
    assert "16 input problem(s)" in out.stderr and out.stderr.count("get it:") == 16
    assert "pretrained tag 'openai' of RN101 must be downloaded" in out.stderr
    assert not (tmp_path / "results").exists()


def test_a_run_stops_on_the_same_list_before_any_stage(tmp_path):
    out = subprocess.run([sys.executable, str(ROOT / "run_all.py"), "--profile", "paper", "--results",
                          str(tmp_path / "results"), "--set", f"data.coco.root={tmp_path}/nothing"], cwd=ROOT,
                         capture_output=True, text=True)
    assert out.returncode == 2 and "data.coco.root" in out.stderr and "nothing was run or written" in out.stderr
    assert not (tmp_path / "results").exists()


def test_only_the_inputs_of_the_selected_stages_are_required(tmp_path):
    P = _paper(tmp_path)
    only_bebr = [s for s in STAGES if s.name in ("11_bebr_train", "12_bebr_eval")]
    assert preflight.check(P, tmp_path, only_bebr, network=lambda: False) == []
    keys = {p.key for p in preflight.check(P, tmp_path, [s for s in STAGES if s.name == "21_ibc_dissect"],
                                           network=lambda: False)}
    assert "data.broden.root" in keys and "data.coco.root" not in keys


def _alexnet_state(classes=1000):
    import torchvision

    torch.manual_seed(0)
    return torchvision.models.alexnet(weights=None, num_classes=classes).state_dict()


def test_weights_files_are_checked_for_format_and_for_torchvisions_hash_suffix(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    torch.save(_alexnet_state(), data / "alexnet.pth")
    digest = hashlib.sha256((data / "alexnet.pth").read_bytes()).hexdigest()
    (data / "alexnet.pth").rename(data / f"alexnet-owt-{digest[:8]}.pth")
    good = data / f"alexnet-owt-{digest[:8]}.pth"
    bad = data / "alexnet-owt-7be5be79.pth"  # the real file's name on other bytes: an altered download
    bad.write_bytes(good.read_bytes())
    (data / "RN101.pt").write_text("<html>not found</html>")
    P = _paper(tmp_path, **{"ibc.experiments.imagenet100c.backbone_weights": str(good),
                            "ibc.experiments.imagenet150k.backbone_weights": str(bad),
                            "bebr.encoder.pretrained": str(data / "RN101.pt")})
    found = {p.key: p for p in preflight.check(P, tmp_path, network=lambda: True)}
    assert "ibc.experiments.imagenet100c.backbone_weights" not in found
    assert "SHA-256 does not start with the hash in its name" in found["ibc.experiments.imagenet150k.backbone_weights"].what
    assert "neither a TorchScript archive nor a PyTorch state dict" in found["bebr.encoder.pretrained"].what
    assert preflight.hash_suffix_ok(good) is True and preflight.hash_suffix_ok(bad) is False
    assert preflight.hash_suffix_ok(data / "RN101.pt") is None


def test_a_malformed_list_and_a_broden_without_its_csvs_are_named(tmp_path):
    lists = tmp_path / "sun"
    (lists / "data_256").mkdir(parents=True)
    (lists / "train.txt").write_text("a.jpg 3 1 -1\n")  # 2 attribute columns where 102 are declared
    (tmp_path / "broden").mkdir()
    (tmp_path / "broden" / "index.csv").write_text("image,split,ih,iw,sh,sw,color\n")
    P = _paper(tmp_path, **{"data.imagelists.sun120k.train": str(lists / "train.txt"),
                            "data.imagelists.sun120k.root": str(lists / "data_256"),
                            "data.broden.root": str(tmp_path / "broden")})
    found = {p.key: p for p in preflight.check(P, tmp_path, network=lambda: True)}
    assert "train.txt" in found["data.imagelists.sun120k.train"].what
    assert "relpath class a1" in found["data.imagelists.sun120k.train"].expected
    assert "category.csv" in found["data.broden.root"].what


def test_an_offline_host_is_told_before_stage_10_and_a_full_disk_before_stage_20(tmp_path, monkeypatch):
    P = _paper(tmp_path)
    keys = {p.key for p in preflight.check(P, tmp_path, network=lambda: False)}
    assert {"bebr.encoder.pretrained", "bebr.compat.encoder.pretrained"} <= keys
    assert not {"bebr.encoder.pretrained"} & {p.key for p in preflight.check(P, tmp_path, network=lambda: True)}
    train = [s for s in STAGES if s.name == "20_ibc_train"]
    need = preflight.estimate_bytes(P, tmp_path, train)["20_ibc_train"]
    # three AlexNet IBC models, 6 snapshots + resumable state each: tens of GiB
    assert 10 * preflight.GiB < need < 100 * preflight.GiB
    Usage = __import__("collections").namedtuple("Usage", "total used free")
    monkeypatch.setattr(preflight.shutil, "disk_usage", lambda p: Usage(0, 0, need - 1))
    disk = [p for p in preflight.check(P, tmp_path, train, tmp_path / "results", network=lambda: True)
            if p.key == "results"]
    assert len(disk) == 1 and "GiB free" in disk[0].what


def test_target_attributes_must_name_attributes_of_the_dataset(tmp_path):
    P = _paper(tmp_path, **{"ibc.experiments.sun120k.target_attributes": ["ocean", "oceann"]})
    found = [p for p in preflight.check(P, tmp_path, network=lambda: True)
             if p.key == "ibc.experiments.sun120k.target_attributes"]
    assert len(found) == 1 and "'oceann' not among" in found[0].what and "ocean" in found[0].expected
    P = _paper(tmp_path)
    assert not [p for p in preflight.check(P, tmp_path, network=lambda: True) if "target" in p.key]
    assert np.isfinite(preflight.estimated_gib(P, tmp_path, STAGES))


def test_the_readmes_paper_inputs_table_is_the_generated_one():
    text = (ROOT / "README.md").read_text()
    block = text.split("<!-- paper-inputs:start -->\n")[1].split("\n<!-- paper-inputs:end -->")[0]
    assert block.strip() == preflight.stage_table(config.load_params("paper"), ROOT).strip()
