"""`ibc:` — IBC experiments (the authors' configs/*.yaml), the tiny code-length sweep and released artifacts."""
from bitlens.schema.fields import Field, MapOf

ALEXNET_HINT = ("AlexNet backbone weights: torchvision's ImageNet file alexnet-owt-7be5be79.pth (ImageNet "
                "experiments) or the Places365 AlexNet alexnet_places365.pth.tar shipped in the authors' SUN-120K "
                "archive (SUN_attributes/pretrained_model/); see data/README.md")
WEIGHTS = {
    # names as in the official configs
    "hash_std_w": Field(float, 1.0, min=0, help="CE of the unmasked hash predictions (half 1)"),
    "hash_mask_w": Field(float, 0.2, min=0, help="CE of the GRM-masked hash predictions (half 2)"),
    "GRM_w": Field(float, 1e-5, min=0, help="weight of relu(Σ|GRM| − thr_g)"),
    "thr_g": Field(float, 1000.0, min=0, help="GRM L1 budget thr_g"),
    "align_w": Field(float, 1e4, min=0, help="KL between the pooled conv bits and the hash bits (half 2)"),
    "real_std_w": Field(float, 1.0, min=0, help="CE of the real branch (half 1)"),
    "real_mask_w": Field(float, 0.05, min=0, help="CE of the GRM-masked real branch (half 2)"),
    "sparse_w": Field(float, 0.0, min=0, help="weight of relu(mean‖b‖₁ − sparse_ratio·K) (half 2)"),
    "sparse_ratio": Field(float, 0.2, min=0, max=1, help="code sparsity target (the official trainer uses 0.2)"),
}

EXPERIMENT = {
    "dataset": Field(str, help="a key of data.imagelists"),
    "backbone": Field(str, "alexnet", choices=["alexnet", "small"],
                      help="alexnet = torchvision AlexNet (official); small = the tiny profile's conv net"),
    "backbone_weights": Field(str, "", data_path=True, hint=ALEXNET_HINT,
                              help="local weights file (empty: random initialisation; nothing is downloaded): "
                                   "alexnet: a torchvision AlexNet state dict; small: a state dict of small_features()"),
    "hidden": Field(int, 0, min=0, help="small backbone: MLP width (AlexNet: always 4096)"),
    "width": Field(int, 64, min=1, help="small backbone: conv channels"),
    "dropout": Field(float, 0.5, min=0, max=1, help="small backbone: dropout of its two MLPs (AlexNet: 0.5)"),
    "code_length": Field(int, 256, min=1, help="K bits"),
    "iterations": Field(int, 50_000, min=1, help="training iterations (max_iter)"),
    "batch_size": Field(int, 200, min=2, help="split in two halves per step (over all ranks under torchrun)"),
    "lr": Field(float, 1e-4, above=0, help="Adam base lr; ×10 for hash_layer, hash_prediction, conv_last, real_prediction, GRM"),
    "conv_last_lr_mult": Field(float, 10.0, above=0,
                               help="lr multiplier of conv_last, the bit filters (official: 10, with the other heads)"),
    "bit_init": Field(str, "kaiming", choices=["kaiming", "readouts"],
                      help="kaiming = the official init of conv_last; readouts = the first bit filters start as the "
                           "concept read-outs that bitlens.ibc.pretrain keeps beside backbone_weights (small "
                           "backbone, tiny profile), the rest kaiming"),
    "beta1": Field(float, 0.9, min=0, max=1),
    "beta2": Field(float, 0.999, min=0, max=1),
    "weight_decay": Field(float, 5e-4, min=0, help="Adam weight decay (GRM included)"),
    "step_size": Field(int, 30_000, min=1, help="StepLR step, in iterations"),
    "gamma": Field(float, 0.1, above=0, max=1, help="StepLR decay"),
    "seed": Field(int, 1245, min=0, help="seeds the model's initial weights, the data order and the augmentation"),
    "checkpoint_every": Field(int, 10_000, min=1, help="iterations between checkpoints (snapshot_save_iter)"),
    "resize": Field(int, 256, min=1, help="shorter image side before cropping (the official lists are pre-resized to 256)"),
    "crop": Field(int, 227, min=1, help="random crop (train) / centre crop (test): 227 ImageNet, 224 SUN"),
    "num_workers": Field(int, 4, min=0, help="data-loading processes"),
    "cache_images": Field(bool, False, help="keep decoded images in memory (small datasets only)"),
    "weights": WEIGHTS,
    "expert_bits": Field(int, 13, min=1, help="top-k GRM bits per class for expert-bit mAP (13 ImageNet, 12 SUN)"),
    "mis_max_num": Field(int, 100, min=1, help="MIS samples per class (100 ImageNet, 20 SUN)"),
    "max_samples": Field(int, 50_000, min=1, help="at most this many codes are extracted per list"),
    "target_attributes": Field(list, [], item_type=str,
                               help="attributes for customized retrieval (names of the dataset's attribute columns)"),
    "attribute_names": Field((list, str), None, nullable=True, item_type=str,
                             help="released code files without a dataset: names of their attribute columns (a list, "
                                  "or 'sun'); otherwise the dataset's data.imagelists.<name>.attribute_names"),
    "released_codes": Field(str, "", data_path=True, hint="the authors' released .mat code file (see data/README.md)",
                            help="released profile: evaluate this code file instead of training"),
    "released_checkpoint": Field(str, "", data_path=True, hint="the authors' released checkpoint (see data/README.md)",
                                 help="released profile: extract codes of the dataset's test list with this "
                                      "checkpoint (the authors' {'state_dict'} layout), then evaluate them"),
}

PRETRAIN = {
    "steps": Field(int, 240, min=1, help="Adam steps of the concept pretraining"),
    "lr": Field(float, 3e-3, above=0, help="peak learning rate (one-cycle schedule)"),
    "batch_size": Field(int, 64, min=1, help="images per step"),
    "background_weight": Field(float, 0.1, min=0, help="weight of background cells in the per-cell losses"),
    "loss_weights": {k: Field(float, 1.0, min=0, help=f"weight of the {k} loss term") for k in
                     ("shape", "color", "texture", "scene")},
}

IBC = {
    "enabled": Field(bool, True, help="run the IBC stages"),
    "pretrain": PRETRAIN,  # the small backbone's in-kit concept pretraining (bitlens.ibc.pretrain), tiny profile
    "experiments": MapOf(EXPERIMENT, help="named experiments (tiny: shapes; paper/released: imagenet100c, "
                                          "imagenet150k, sun120k)"),
    "sweep": {
        "experiment": Field(str, "", help="experiment whose settings the code-length sweep reuses (empty: no sweep)"),
        "code_lengths": Field(list, [], item_type=int, min=1, help="code lengths K of the sweep (each ≥ 1)"),
        "iterations": Field(int, 200, min=1, help="training iterations of each sweep model"),
    },
}
