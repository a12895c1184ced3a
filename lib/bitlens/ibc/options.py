"""The IBC trainer's settings: every option of one training run, with the official loss weights as defaults.

Kept apart from the trainer so that whatever turns params into a run (the 20_ibc_train stage, the training CLI)
can build them without importing the training loop."""
from __future__ import annotations

from dataclasses import dataclass, field

from bitlens.ibc.loss import WEIGHT_KEYS

OFFICIAL_WEIGHTS = {"hash_std_w": 1.0, "hash_mask_w": 0.2, "GRM_w": 1e-5, "align_w": 1e4, "real_std_w": 1.0,
                    "real_mask_w": 0.05, "sparse_w": 0.0}  # configs/imagenet100.yaml


@dataclass
class IBCTrainOptions:
    iterations: int = 50_000
    batch_size: int = 200
    lr: float = 1e-4
    beta1: float = 0.9
    beta2: float = 0.999
    weight_decay: float = 5e-4
    step_size: int = 30_000
    gamma: float = 0.1
    seed: int = 1245
    checkpoint_every: int = 10_000
    resize: int = 256
    crop: int = 227
    num_workers: int = 0
    weights: dict = field(default_factory=lambda: dict(OFFICIAL_WEIGHTS))
    thr_g: float = 1000.0
    sparse_ratio: float = 0.2
    device: str = "cpu"
    cache_images: bool = False
    conv_last_lr_mult: float = 10.0
    # digest of the weights training starts from (train_experiment fills it: backbone file, bit init, seed), so a
    # finished run is not reused for a model that would start elsewhere
    initial_weights: str = ""

    def check(self) -> None:
        absent = [k for k in WEIGHT_KEYS if k not in self.weights]
        if absent:
            raise ValueError(f"IBC loss weights missing: {', '.join(absent)}")
        if self.batch_size < 2 or self.batch_size % 2:
            raise ValueError(f"batch_size {self.batch_size} must be even and ≥ 2 (each step splits it in halves)")
        if self.crop > self.resize:
            raise ValueError(f"crop {self.crop} is larger than resize {self.resize}")
        for k in ("iterations", "step_size", "checkpoint_every"):
            if getattr(self, k) < 1:
                raise ValueError(f"{k} must be ≥ 1, got {getattr(self, k)}")
