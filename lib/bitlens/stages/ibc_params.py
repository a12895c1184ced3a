"""Params → plain arguments for the IBC stages (20–23) and `python -m bitlens.stages.ibc_train`: the only place that reads
`ibc.*` and `data.*` entries for the IBC science code, which takes paths, numbers and objects."""
from __future__ import annotations


from bitlens.config import resolve_path
from bitlens.data import shapes
from bitlens.data.imagelist import read_list
from bitlens.ibc.loss import WEIGHT_KEYS
from bitlens.ibc.model import build_model
from bitlens.ibc.options import IBCTrainOptions


def generated_world(params: dict, root) -> dict | None:
    """The Shapes world's record (class and attribute names, vocabularies) when the profile generates it, else
    None: a checkout's leftover world must not name another profile's classes."""
    S = params["data"]["shapes"]
    return shapes.read_world(resolve_path(S["root"], root)) if S["generate"] else None


def train_options(exp: dict, device: str) -> IBCTrainOptions:
    """Training options from one validated `ibc.experiments.<name>` entry."""
    w = exp["weights"]
    return IBCTrainOptions(iterations=exp["iterations"], batch_size=exp["batch_size"], lr=exp["lr"],
                           beta1=exp["beta1"], beta2=exp["beta2"], weight_decay=exp["weight_decay"],
                           step_size=exp["step_size"], gamma=exp["gamma"], seed=exp["seed"],
                           checkpoint_every=exp["checkpoint_every"], resize=exp["resize"], crop=exp["crop"],
                           num_workers=exp["num_workers"], weights={k: w[k] for k in WEIGHT_KEYS},
                           thr_g=w["thr_g"], sparse_ratio=w["sparse_ratio"], device=device,
                           cache_images=exp["cache_images"], conv_last_lr_mult=exp["conv_last_lr_mult"])


def model_to_train(exp: dict, num_classes: int, root=None):
    """The seeded model an experiment starts from, with its backbone weights file if any."""
    weights = resolve_path(exp["backbone_weights"], root) if exp.get("backbone_weights") else None
    return build_model(exp["code_length"], num_classes, exp["backbone"], exp["crop"], exp.get("hidden") or None,
                       weights, exp.get("width") or 64, exp.get("dropout", 0.5), exp.get("bit_init", "kaiming"),
                       seed=exp["seed"])


def train_arguments(exp: dict, dataset: dict, root, device: str) -> dict:
    """The arguments of `bitlens.ibc.train.train_experiment` for one experiment and its `data.imagelists` entry
    (all but the output folder and `fresh`)."""
    lst = read_list(resolve_path(dataset["train"], root), dataset["format"], dataset["num_attributes"])
    return {"model": model_to_train(exp, dataset["num_classes"], root), "image_list": lst,
            "images_root": resolve_path(dataset["root"], root), "opts": train_options(exp, device)}


def sweep_plan(ibc: dict) -> dict[int, dict | None]:
    """{code length: what gives that point} of the code-length sweep (`ibc.sweep`): the sweep experiment's entry
    at that length for `ibc.sweep.iterations` (to train); at the experiment's own length, None when the main
    model trains exactly that long (it serves), or {'snapshot': N} when the main run saves a snapshot after
    N = `ibc.sweep.iterations` updates (a run of N iterations would give that model exactly, since training
    resumes exactly: see bitlens.checkpoint), else its entry to train like the others."""
    sw = ibc["sweep"]
    if not sw["experiment"] or not sw["code_lengths"]:
        return {}
    if sw["experiment"] not in ibc["experiments"]:
        raise ValueError(f"ibc.sweep.experiment = {sw['experiment']!r} is not a key of ibc.experiments "
                         f"({', '.join(ibc['experiments'])})")
    base, n = ibc["experiments"][sw["experiment"]], sw["iterations"]

    def own_length():
        if n == base["iterations"]:
            return None
        if n < base["iterations"] and n % base["checkpoint_every"] == 0:
            return {"snapshot": n}
        return {**base, "iterations": n, "checkpoint_every": n}

    return {K: own_length() if K == base["code_length"] else
            {**base, "code_length": K, "iterations": n, "checkpoint_every": n}
            for K in sorted(set(sw["code_lengths"]))}


def sweep_iterations(ibc: dict, trained: dict) -> dict[int, int]:
    """{code length: training iterations} of the code-length sweep: as recorded by 20_ibc_train
    (`sweep_iterations`), else as the params set them (the main length trains for its experiment's
    iterations, the others for `ibc.sweep.iterations`)."""
    recorded = (trained or {}).get("sweep_iterations")
    if recorded:
        return {int(k): int(v) for k, v in recorded.items()}
    sw = ibc["sweep"]
    base = ibc["experiments"][sw["experiment"]]
    return {int(K): int(base["iterations"] if K == base["code_length"] else sw["iterations"])
            for K in sorted(set(sw["code_lengths"]))}

