"""Data-parallel training: torchrun with 2 CPU processes (gloo) ends where one process on the same global batch
ends, for IBC (the gradients are averaged through the DistributedDataParallel wrapper)."""
import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from bitlens.distributed import World, world_from_env

IBC_SCRIPT = r"""
import sys, torch
from bitlens import distributed
from bitlens.data.imagelist import read_list
from bitlens.ibc.model import IBC
from bitlens.ibc.train import IBCTrainOptions, train_ibc

root, out = sys.argv[1], sys.argv[2]
torch.manual_seed(0)
model = IBC(8, 3, "small", 32, 16, width=8, dropout=0.0)
# BatchNorm statistics are per rank under DDP (the authors' AlexNet has none): take them out for the comparison
for seq in (model.enc_style.conv_basic,):
    for i, m in enumerate(seq):
        if isinstance(m, torch.nn.BatchNorm2d):
            seq[i] = torch.nn.Identity()
opts = IBCTrainOptions(iterations=3, batch_size=8, lr=1e-3, step_size=2, seed=3, checkpoint_every=3, resize=36,
                       crop=32, thr_g=5.0, cache_images=True,
                       weights={"hash_std_w": 1.0, "hash_mask_w": 1.0, "GRM_w": 1e-5, "align_w": 100.0,
                                "real_std_w": 1.0, "real_mask_w": 0.05, "sparse_w": 0.0})
world = distributed.world_from_env()
train_ibc(model, read_list(root + "/train.txt", "sun", 1), root, opts, out, log=lambda *a: None)
if world.main:
    torch.save(model.state_dict(), out + "/final.pt")
distributed.teardown(world)
"""


def _torchrun(n, script, *args):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={n}",
                          "--master_addr=127.0.0.1", f"--master_port={port}", str(script), *map(str, args)],
                         capture_output=True, text=True, timeout=300, env=env)
    assert out.returncode == 0, out.stderr[-3000:]


@pytest.mark.slow
def test_torchrun_two_processes_give_the_single_process_ibc_parameters(tmp_path):
    root = tmp_path / "imgs"
    root.mkdir()
    rng = np.random.default_rng(0)
    lines = []
    for i in range(16):
        img = (rng.random((40, 40, 3)) * 60).astype(np.uint8)
        img[8:32, 8:32, i % 3] = 230
        Image.fromarray(img).save(root / f"{i}.png")
        lines.append(f"{i}.png {i % 3} {1 if i % 3 == 0 else -1}")
    (root / "train.txt").write_text("\n".join(lines) + "\n")
    script = tmp_path / "ibc_ddp.py"
    script.write_text(IBC_SCRIPT)
    _torchrun(1, script, root, tmp_path / "one")
    _torchrun(2, script, root, tmp_path / "two")
    one = torch.load(tmp_path / "one" / "final.pt")
    two = torch.load(tmp_path / "two" / "final.pt")
    init = {k: v for k, v in one.items()}
    changed = 0
    for k, v in one.items():
        torch.testing.assert_close(two[k], v, rtol=1e-4, atol=1e-6, msg=k)
    # the runs did train: the final weights are not the initial ones
    torch.manual_seed(0)
    from bitlens.ibc.model import IBC

    start = IBC(8, 3, "small", 32, 16, width=8, dropout=0.0).state_dict()
    changed = sum(not torch.equal(start[k], v) for k, v in one.items() if k in start and "conv_basic" not in k)
    assert changed > 5
    state = torch.load(tmp_path / "two" / "train_state.pt", weights_only=False)
    assert len(state["rng"]) == 2  # both ranks' generators are saved for an exact resume


def test_world_comes_from_torchrun_environment(monkeypatch):
    for k in ("LOCAL_RANK", "RANK", "WORLD_SIZE"):
        monkeypatch.delenv(k, raising=False)
    assert world_from_env() == World(0, 0, 1) and world_from_env().main and not world_from_env().distributed
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    w = world_from_env()
    assert w.distributed and not w.main
    monkeypatch.setenv("RANK", "2")
    with pytest.raises(ValueError, match="outside WORLD_SIZE=2"):
        world_from_env()
    monkeypatch.setenv("RANK", "x")
    with pytest.raises(ValueError, match="RANK='x' is not an integer"):
        world_from_env()
