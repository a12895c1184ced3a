"""`bebr:` — CLIP features, the three heads, training and evaluation (the authors' settings: docs/training.md)."""
from bitlens.metrics import TIE_POLICIES
from bitlens.schema.fields import Field, MapOf

TIES = list(TIE_POLICIES)

HEAD = {
    "out_dim": Field(int, min=1, help="output dims (hash: bits; bebr: dims per bit plane)"),
    "u": Field(int, 0, min=0, help="recurrent steps; bit planes = u + 1"),
    "hidden": Field(int, 2048, min=0, help="MLP hidden width (0 = a single Linear)"),
    "blocks": Field(int, 1, min=1, help="Linear-BN-ReLU blocks per transformation"),
    "binary": Field(bool, True, help="sign with straight-through gradient (false = float baseline)"),
}

BEBR = {
    "enabled": Field(bool, True, help="run the BEBR stages"),
    "encoder": {
        "model": Field(str, "RN101", help="open_clip model name"),
        "pretrained": Field(str, "openai", help="open_clip pretrained tag or a local weights file"),
        "quick_gelu": Field(bool, True, help="build with QuickGELU, the activation OpenAI's CLIP weights were trained "
                                            "with (true for OpenAI weights, as a tag or a local file)"),
        "train_tiny": Field(bool, False, help="train the small bitlens-tiny-vit CLIP on the training captions first"),
        "tiny_epochs": Field(int, 3, min=1),
        "tiny_batch_size": Field(int, 128, min=1),
        "tiny_lr": Field(float, 2e-3, above=0),
        "batch_size": Field(int, 256, min=1, help="images / captions per feature batch"),
        "num_workers": Field(int, 0, min=0, help="image decoding workers"),
    },
    "heads": MapOf(HEAD, help="named heads trained and evaluated (hash, bebr, float)"),
    "train": {
        "epochs": Field(int, 10, min=1, help="training epochs; the last one is reported (as the authors)"),
        "lr": Field(float, 0.08, above=0), "lr_step_epoch": Field(int, 6, min=1),
        "gamma": Field(float, 0.1, above=0, max=1), "momentum": Field(float, 0.9, min=0, max=1),
        "nesterov": Field(bool, True),
        "weight_decay": Field(float, 1e-3, min=0, help="not applied to biases / BatchNorm"),
        "clip_grad": Field(float, 5.0, above=0),
        "batch_size": Field(int, 4096, min=2, help="samples per step (= 2 × pairs)"),
        "tau": Field(float, 0.05, above=0, help="contrastive temperature"),
        "hard_k": Field(int, 5, min=1, help="hard negatives"),
        "seed": Field(int, 0, min=0), "amp": Field(bool, False, help="float16 autocast (the loss stays float32)"),
        "nproc": Field(int, 1, min=1, help="GPUs: > 1 launches torchrun with DistributedDataParallel"),
    },
    "eval": {
        "headline_ties": Field(str, "pessimistic", choices=TIES, help="tie policy of the headline table"),
        "search_k": Field(int, 10, min=1, help="k of the timed top-k search"),
    },
    "compat": {  # 13_bebr_compat: backward-compatible training (docs/compat.md)
        "old_head": Field(str, "bebr", help="binary head of 11_bebr_train whose codes index the old gallery"),
        "new_u": Field(int, None, nullable=True, min=0, help="recurrent steps of the new head; null = the old head's "
                                                      "(another value: a new bit budget on the same dims)"),
        "select": {  # chosen on held-out training pairs, never on the reported validation pairs (docs/compat.md)
            "weights": Field(list, [1.0, 3.0], item_type=float, above=0,
                             help="candidate λ, the weight of the compatibility term"),
            "warm_start": Field(list, [False, True], item_type=bool,
                                help="candidate starts of the compatible head: false = seeded random (as the "
                                     "independent head), true = the old head's weights"),
            "holdout": Field(float, 0.2, above=0, max=0.9,
                             help="fraction of the training images held out to choose the candidate on"),
        },
        "seeds": Field(int, 3, min=1, help="head seeds (bebr.train.seed + 0, 1, …) the cross-version table "
                                           "averages (mean ± std)"),
        "epochs": Field(int, None, nullable=True, min=1, help="epochs of both new heads; null = bebr.train.epochs"),
        "ties": Field(str, "pessimistic", choices=TIES, help="tie policy of the cross-version table"),
        "encoder": {
            "model": Field(str, "ViT-B-32-quickgelu", help="open_clip model name of the new encoder version"),
            "pretrained": Field(str, "openai", help="open_clip pretrained tag of the new encoder"),
            "weights": Field(str, "", data_path=True,
                             hint="the new encoder's open_clip weights file, e.g. ViT-B-32 OpenAI weights copied "
                                  "from a host with network (see data/README.md)",
                             help="local weights file of the new encoder (offline hosts); overrides pretrained"),
            "train_tiny": Field(bool, False, help="train a second bitlens-tiny-vit CLIP in-kit as the new version"),
            "init_from_old": Field(bool, False, help="with train_tiny: continue the old version's tiny CLIP "
                                                     "(10_bebr_features) for tiny_epochs more epochs, an upgrade "
                                                     "trained longer, instead of a new CLIP from scratch"),
            "tiny_epochs": Field(int, 1, min=1), "tiny_batch_size": Field(int, 128, min=2),
            "tiny_lr": Field(float, 2e-3, above=0),
            "tiny_seed": Field(int, 1, min=0, help="added to the global seed: the new CLIP starts elsewhere"),
            "batch_size": Field(int, 256, min=1, help="images / captions per feature batch"),
            "num_workers": Field(int, 0, min=0, help="image decoding workers"),
        },
    },
    "released": {
        "root": Field(str, "", data_path=True,
                      hint="the authors' released BEBR feature files: <root>/{hash,bebr,float_finetune}/"
                           "{feat_image,feat_txt}.npy (see data/README.md)",
                      help="released profile: folder with hash/, bebr/, float_finetune/ feature folders"),
    },
}
