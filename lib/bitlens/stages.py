"""The stage list: which notebook makes which results, and what it reads.

Kept apart from `pipeline` so notebooks (through `bitlens.stage`) can find
upstream folders without importing the papermill machinery.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class StageSpec:
    name: str
    deps: tuple[str, ...]
    section: str | None  # params section whose `enabled` flag switches the stage off
    title: str


# Order matters: it is the execution order. Dissection (21) runs before evaluation (22): IBC
# customized retrieval uses the bit groups that dissection exports.
STAGES: tuple[StageSpec, ...] = (
    StageSpec("00_data", (), None, "Data: build or verify the profile's datasets"),
    StageSpec("10_bebr_features", ("00_data",), "bebr", "BEBR: CLIP features"),
    StageSpec("11_bebr_train", ("10_bebr_features",), "bebr", "BEBR: train hash / bebr / float heads"),
    StageSpec("12_bebr_eval", ("11_bebr_train",), "bebr", "BEBR: COCO Recall@K table"),
    StageSpec("20_ibc_train", ("00_data",), "ibc", "IBC: train the interpretable hashing network"),
    StageSpec("21_ibc_dissect", ("20_ibc_train",), "dissect", "IBC: Network Dissection of every bit"),
    StageSpec("22_ibc_eval", ("20_ibc_train", "21_ibc_dissect"), "ibc", "IBC: codes, mAP tables, MIS"),
    StageSpec("23_bit_browser", ("21_ibc_dissect", "22_ibc_eval"), "dissect", "IBC: bit browser widget"),
    StageSpec("90_report", ("12_bebr_eval", "22_ibc_eval", "21_ibc_dissect"), None, "Reproduction report"),
)

BY_NAME = {s.name: s for s in STAGES}


def stage_spec(name: str) -> StageSpec:
    try:
        return BY_NAME[name]
    except KeyError:
        raise KeyError(f"unknown stage '{name}'; valid stages: {', '.join(BY_NAME)}") from None
