"""A replica of every real input of the `paper` and `released` profiles, in its exact on-disk format, with
random content: a few dozen items per dataset, weights files of the real architectures with random values.

`write_replica(out, seed)` writes it (deterministic from the seed; `python -m bitlens.replica OUT [--seed N]`);
`paper_overrides(out)` / `released_overrides(out)` are the `--set` lists that point a profile at it and shrink
only its sizes, used by `make rehearse` and tests/test_rehearsal.py alike. docs/replica.md describes each format
from its loader's point of view.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

from bitlens import io

REPLICA_VERSION = 5
MANIFEST = "replica.json"


def read_manifest(out) -> dict | None:
    """replica.json of a complete replica under `out` (written last), or None."""
    try:
        return json.loads((Path(out) / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None


def write_replica(out, seed: int = 0, log=print) -> dict:
    """Write the replica under `out` and return its manifest; an existing replica of the same seed and version
    is kept as it is."""
    from bitlens.replica import broden, images, released, weights

    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise ValueError(f"replica seed must be a non-negative integer, got {seed!r} (--seed)")
    out = Path(out)
    old = read_manifest(out)
    if old and old.get("seed") == seed and old.get("version") == REPLICA_VERSION:
        return old
    (out / MANIFEST).unlink(missing_ok=True)
    for name in ("coco", "ibc", "broden1_224", "weights", "bebr_released", "ibc_released"):
        shutil.rmtree(out / name, ignore_errors=True)  # a half-written or other-seed replica is redone whole
    manifest = {"version": REPLICA_VERSION, "seed": seed}
    log("replica: COCO 2017")
    manifest["coco"] = images.write_coco(out / "coco", seed)
    log("replica: IBC image lists")
    manifest["imagelists"] = {name: images.write_imagenet(out / "ibc", name, seed) for name in images.IMAGENET_SETS}
    manifest["imagelists"]["sun120k"] = images.write_sun(out / "ibc", seed)
    log("replica: Broden 224")
    manifest["broden"] = broden.write_broden(out / "broden1_224", seed)
    log("replica: weights files (CLIP RN101 and ViT-B-32 TorchScript, AlexNet ImageNet and Places365)")
    manifest["weights"] = weights.write_weights(out / "weights", seed)
    log("replica: released artifacts")
    manifest["bebr_released"] = released.write_bebr(out / "bebr_released", seed)
    manifest["ibc_released"] = released.write_ibc_codes(out / "ibc_released", seed)
    released.write_ibc_checkpoint(out / "ibc_released" / "imagenet100c_256.pth", seed, num_classes=100)
    manifest["ibc_released"]["checkpoint"] = "imagenet100c_256.pth"
    io.write_json(out / MANIFEST, manifest)
    return manifest


def _manifest(out) -> dict:
    m = read_manifest(out)
    if m is None:
        raise FileNotFoundError(f"{out}: no complete replica ({MANIFEST} missing); write one first with "
                                f"`python -m bitlens.replica {out}`")
    return m


def data_overrides(out) -> list[str]:
    """`--set` items pointing the `paper` profile's data and weights paths at the replica under `out`."""
    from bitlens.replica import images

    out = Path(out).resolve()
    m = _manifest(out)
    w = out / "weights"
    sets = [f"data.coco.root={out / 'coco'}", f"data.broden.root={out / 'broden1_224'}"]
    for name, (folder, train, test, *_rest) in images.IMAGENET_SETS.items():
        base = out / "ibc" / folder
        sets += [f"data.imagelists.{name}.root={base / 'data_256'}", f"data.imagelists.{name}.train={base / train}",
                 f"data.imagelists.{name}.test={base / test}"]
    base = out / "ibc" / images.SUN_FOLDER
    sets += [f"data.imagelists.sun120k.root={base / 'data_256'}",
             f"data.imagelists.sun120k.train={base / images.SUN_LISTS[0]}",
             f"data.imagelists.sun120k.test={base / images.SUN_LISTS[1]}"]
    sets += [f"bebr.encoder.pretrained={w / m['weights']['RN101']}",
             f"bebr.compat.encoder.weights={w / m['weights']['ViT-B-32']}"]
    for name in ("imagenet100c", "imagenet150k"):
        sets.append(f"ibc.experiments.{name}.backbone_weights={w / m['weights']['alexnet']}")
    sets.append(f"ibc.experiments.sun120k.backbone_weights={w / m['weights']['places365']}")
    return sets


# Size overrides only: the architectures, code lengths, crops and losses stay the paper's.
PAPER_SIZES = [
    "bebr.encoder.batch_size=16", "bebr.encoder.num_workers=0",
    "bebr.train.epochs=1", "bebr.train.batch_size=32", "bebr.train.nproc=2",
    "bebr.compat.encoder.batch_size=16", "bebr.compat.encoder.num_workers=0",
    *(f"ibc.experiments.{name}.{k}" for name in ("imagenet100c", "imagenet150k", "sun120k")
      for k in ("iterations=3", "batch_size=8", "checkpoint_every=2", "num_workers=0")),
    "dissect.batch_size=16",
    "report.rehearsal=true",
]


def paper_overrides(out) -> list[str]:
    """The `--set` list of the rehearsal's `paper` run on the replica under `out`."""
    return data_overrides(out) + PAPER_SIZES


def released_overrides(out) -> list[str]:
    """The `--set` list of the rehearsal's `released` run on the replica's released artifacts under `out`."""
    out = Path(out).resolve()
    m = _manifest(out)
    sets = [f"bebr.released.root={out / 'bebr_released' / 'dataset'}"]
    for name, fname in m["ibc_released"].items():
        if name != "checkpoint":
            sets.append(f"ibc.experiments.{name}.released_codes={out / 'ibc_released' / fname}")
    # the released checkpoint: its codes are extracted from ImageNet-100C's test list (released.yaml's recipe)
    from bitlens.replica import images

    folder, train, test, classes, *_rest = images.IMAGENET_SETS["imagenet100c"]
    base = out / "ibc" / folder
    sets += [f"data.imagelists.imagenet100c.root={base / 'data_256'}", "data.imagelists.imagenet100c.format=imagenet",
             f"data.imagelists.imagenet100c.train={base / train}", f"data.imagelists.imagenet100c.test={base / test}",
             f"data.imagelists.imagenet100c.num_classes={classes}",
             "ibc.experiments.imagenet100c_checkpoint.dataset=imagenet100c",
             f"ibc.experiments.imagenet100c_checkpoint.released_checkpoint="
             f"{out / 'ibc_released' / m['ibc_released']['checkpoint']}",
             "ibc.experiments.imagenet100c_checkpoint.expert_bits=13",
             "ibc.experiments.imagenet100c_checkpoint.mis_max_num=100"]
    return sets + ["report.rehearsal=true"]
