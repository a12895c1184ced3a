"""`ibc:` — IBC experiments (PAPERS.md, IBC), the tiny code-length sweep and released artifacts."""
from bitlens.config import Field, MapOf

WEIGHTS = {
    "hash_std_w": Field(float, 1.0, min=0, help="CE of unmasked hash predictions (half 1)"),
    "hash_mask_w": Field(float, 0.2, min=0, help="CE of GRM-masked hash predictions (half 2)"),
    "GRM_w": Field(float, 1e-5, min=0, help="relu(Σ|GRM| − thr_g)"),
    "thr_g": Field(float, 1000.0, min=0, help="GRM L1 budget"),
    "align_w": Field(float, 1e4, min=0, help="KL between pooled conv bits and hash bits (half 2)"),
    "real_std_w": Field(float, 1.0, min=0, help="CE of the real branch (half 1)"),
    "real_mask_w": Field(float, 0.05, min=0, help="CE of the GRM-masked real branch (half 2)"),
    "sparse_w": Field(float, 0.0, min=0, help="relu(mean‖b‖₁ − 0.2·K)"),
}

EXPERIMENT = {
    "dataset": Field(str, help="a key of data.imagelists"),
    "backbone": Field(str, "alexnet", choices=["alexnet", "small"]),
    "backbone_weights": Field(str, "", data_path=True,
                              hint="torchvision AlexNet ImageNet weights (alexnet-owt-7be5be79.pth) or the Places365 "
                                   "AlexNet file (alexnet_places365.pth.tar); see data/README.md",
                              help="local AlexNet weights file (empty: random init)"),
    "places365": Field(bool, False, help="backbone_weights is the Places365 AlexNet (365 classes)"),
    "hidden": Field(int, 0, min=0, help="small backbone MLP width (alexnet always 4096)"),
    "code_length": Field(int, 256, min=1, help="K bits"),
    "iterations": Field(int, 50_000, min=1),
    "batch_size": Field(int, 200, min=2, help="split in two halves per step"),
    "lr": Field(float, 1e-4, above=0),
    "weight_decay": Field(float, 5e-4, min=0),
    "step_size": Field(int, 30_000, min=1, help="StepLR step, in iterations"),
    "gamma": Field(float, 0.1, above=0, max=1),
    "seed": Field(int, 1245, min=0),
    "checkpoint_every": Field(int, 10_000, min=1),
    "resize": Field(int, 256, min=1),
    "crop": Field(int, 227, min=1, help="random crop (train) / centre crop (test)"),
    "num_workers": Field(int, 4, min=0),
    "cache_images": Field(bool, False, help="keep decoded images in memory (small datasets)"),
    "weights": WEIGHTS,
    "expert_bits": Field(int, 13, min=1, help="top-k GRM bits per class for expert-bit mAP (13 ImageNet, 12 SUN)"),
    "mis_max_num": Field(int, 100, min=1, help="MIS samples per class (100 ImageNet, 20 SUN)"),
    "max_samples": Field(int, 50_000, min=1, help="at most this many codes are extracted per list"),
    "target_attributes": Field(list, [], item_type=str, help="attributes for customized retrieval"),
    "released_codes": Field(str, "", data_path=True, hint="the authors' released .mat code file (see data/README.md)",
                            help="released profile: evaluate this code file instead of training"),
    "released_checkpoint": Field(str, "", data_path=True, hint="the authors' released checkpoint (see data/README.md)",
                                 help="released profile: extract codes with this checkpoint"),
}

IBC = {
    "enabled": Field(bool, True, help="run the IBC stages"),
    "experiments": MapOf(EXPERIMENT, help="named experiments (shapes; imagenet100c, imagenet150k, sun120k)"),
    "sweep": {
        "experiment": Field(str, "", help="experiment whose settings the code-length sweep reuses (empty: no sweep)"),
        "code_lengths": Field(list, [], item_type=int),
        "iterations": Field(int, 200, min=1),
    },
}
