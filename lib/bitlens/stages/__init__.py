"""The stage list: which notebook makes which results, and what it reads.

Kept apart from `pipeline` so notebooks (through `bitlens.stage`) can find
upstream folders without importing the papermill machinery.

`reads` names the params a stage's results depend on (dotted keys; `*` matches
every entry of a named mapping such as `ibc.experiments`); `ignores` removes keys
from inside them. A stage's fingerprint covers exactly those values, so changing
a key re-runs only the stages that read it (and, through their outputs, their
dependents). `pipeline.*` (timeouts, kernel) is read by no stage: it changes how a
stage runs, never what it produces.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class StageSpec:
    name: str
    deps: tuple[str, ...]
    section: str | None  # params section whose `enabled` flag switches the stage off
    title: str
    reads: tuple[str, ...] = ("seed", "device", "data", "bebr", "ibc", "dissect", "report")
    ignores: tuple[str, ...] = ()
    # the input files and folders the stage opens (params keys, `*` for any entry): what the pre-run check requires
    needs: tuple[str, ...] = ()


# The settings that only IBC evaluation uses: training and dissection do not depend on them.
_IBC_EVAL_ONLY = tuple(f"ibc.experiments.*.{k}" for k in ("expert_bits", "mis_max_num", "max_samples",
                                                           "target_attributes"))

# Order matters: it is the execution order. Dissection (21) runs before evaluation (22): IBC
# customized retrieval uses the bit groups that dissection exports.
STAGES: tuple[StageSpec, ...] = (
    StageSpec("00_data", (), None, "Data: build or verify the profile's datasets", reads=("data",),
              needs=("data.*",)),
    StageSpec("10_bebr_features", ("00_data",), "bebr", "BEBR: CLIP features",
              reads=("seed", "device", "data.coco", "bebr.encoder", "bebr.released"),
              needs=("data.coco.root", "bebr.encoder.pretrained")),
    StageSpec("11_bebr_train", ("10_bebr_features",), "bebr", "BEBR: train hash / bebr / float heads",
              reads=("seed", "device", "bebr.heads", "bebr.train")),
    StageSpec("12_bebr_eval", ("10_bebr_features", "11_bebr_train"), "bebr", "BEBR: COCO Recall@K table",
              reads=("seed", "bebr.heads", "bebr.eval", "bebr.released", "report.targets"),
              needs=("bebr.released.root",)),
    StageSpec("13_bebr_compat", ("10_bebr_features", "11_bebr_train"), "bebr", "BEBR: backward-compatible version",
              reads=("seed", "device", "data.coco", "bebr.encoder.model", "bebr.train", "bebr.compat"),
              needs=("data.coco.root", "bebr.compat.encoder.*")),
    StageSpec("20_ibc_train", ("00_data",), "ibc", "IBC: train the interpretable hashing network",
              reads=("seed", "device", "data.imagelists", "ibc"), ignores=_IBC_EVAL_ONLY,
              needs=("data.imagelists.*.root", "data.imagelists.*.train", "ibc.experiments.*.backbone_weights")),
    StageSpec("21_ibc_dissect", ("20_ibc_train",), "dissect", "IBC: Network Dissection of every bit",
              reads=("device", "data.imagelists", "data.broden", "data.shapes", "ibc.experiments", "dissect"),
              ignores=_IBC_EVAL_ONLY, needs=("data.broden.root",)),
    StageSpec("22_ibc_eval", ("20_ibc_train", "21_ibc_dissect"), "ibc", "IBC: codes, mAP tables, MIS",
              reads=("seed", "device", "data.imagelists", "data.shapes", "ibc", "report.targets"),
              needs=("data.imagelists.*.root", "data.imagelists.*.test", "data.imagelists.*.database",
                     "ibc.experiments.*.released_codes", "ibc.experiments.*.released_checkpoint",
                     "ibc.experiments.*.target_attributes")),
    StageSpec("23_bit_browser", ("21_ibc_dissect", "22_ibc_eval"), "dissect", "IBC: bit browser widget",
              reads=("data.imagelists", "data.broden", "data.shapes", "ibc.experiments", "dissect"),
              ignores=_IBC_EVAL_ONLY, needs=("data.broden.root", "data.imagelists.*.root", "data.imagelists.*.test")),
    StageSpec("90_report", ("12_bebr_eval", "13_bebr_compat", "21_ibc_dissect", "22_ibc_eval"), None, "Reproduction report",
              reads=("seed", "report")),
)

BY_NAME = {s.name: s for s in STAGES}


def stage_spec(name: str) -> StageSpec:
    try:
        return BY_NAME[name]
    except KeyError:
        raise KeyError(f"unknown stage '{name}'; valid stages: {', '.join(BY_NAME)}") from None
