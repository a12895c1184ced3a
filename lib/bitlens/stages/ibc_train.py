"""Stage 20_ibc_train: pretrain the tiny backbone on the Shapes concept maps where the profile asks for it, train
every IBC experiment (continued, reused or started afresh as bitlens.checkpoint decides) and the code-length sweep,
and draw the loss terms and the learned GRM."""
from __future__ import annotations

import numpy as np
import pandas as pd

from bitlens import figures
from bitlens.config import resolve_path
from bitlens.ibc.loss import TERMS
from bitlens.ibc.pretrain import pretrain_experiments
from bitlens.ibc.train import run_summary, snapshot_summary, train_experiment
from bitlens.stage import Section
from bitlens.stages import ibc_params

NOTHING_TO_TRAIN = "Nothing to train: this profile evaluates the authors' released code files (stage 22_ibc_eval)."


def pretrain_jobs(params: dict, root) -> dict:
    """{experiment: (weights path, backbone width, seed)} for every IBC experiment with the small backbone whose
    `backbone_weights` file lies inside the generated Shapes world (a file the user provides is used as it is)."""
    S = params["data"]["shapes"]
    if not S["generate"]:
        return {}
    world = resolve_path(S["root"], root).resolve()
    jobs = {}
    for name, exp in params["ibc"]["experiments"].items():
        if exp.get("released_codes") or exp["backbone"] != "small" or not exp["backbone_weights"]:
            continue
        path = resolve_path(exp["backbone_weights"], root).resolve()
        if world in path.parents:
            jobs[name] = (path, exp.get("width") or 64, exp["seed"])
    return jobs


def pretrain(params: dict, root, log=print) -> dict:
    """The backbone pretraining of `pretrain_jobs`, with the recipe `ibc.pretrain` on the world's training images."""
    S, R = params["data"]["shapes"], params["ibc"]["pretrain"]
    return pretrain_experiments(pretrain_jobs(params, root), S["seed"], S["image_size"], S["max_objects"],
                                S["n_train"], R["steps"], R["lr"], R["batch_size"], R["background_weight"],
                                R["loss_weights"], log=log)


def train_one(stage, folder: str, exp: dict, fresh: bool):
    """Train (or continue, or reuse) one model in stage.dir/folder: (model, log table, run summary)."""
    args = ibc_params.train_arguments(exp, stage.params["data"]["imagelists"][exp["dataset"]], stage.root,
                                      stage.device())
    model, rows = train_experiment(**args, out_dir=stage.dir / folder, fresh=fresh)
    return model, pd.DataFrame(rows), run_summary(folder, model, rows)


def grm_sentence(name: str, grm: np.ndarray) -> str:
    """How sparse a learned GRM is and how many bits a class keeps, from its numbers."""
    return (f"{name}: {(grm < 1e-3).mean():.1%} of GRM entries ≈ 0; a class keeps on average "
            f"{(grm > 0.5).sum(1).mean():.1f} of {grm.shape[1]} bits above 0.5")


def run(stage, force: bool = False) -> Section:
    """Everything 20_ibc_train does; `force` trains from scratch even where a finished run with the same settings
    exists."""
    P, I = stage.params, stage.params["ibc"]
    stage.device()  # a profile that asks for CUDA where there is none stops here, before any work
    out = Section()
    todo = {n: e for n, e in I["experiments"].items() if not e["released_codes"]}
    if not todo:
        out.sentences.append(NOTHING_TO_TRAIN)
    pretrain(P, stage.root)
    models, summary = {}, {}
    for name, exp in todo.items():
        models[name], log, summary[name] = train_one(stage, name, exp, force)
        fig = figures.training_curves(log, TERMS, exp["weights"], exp["weights"]["thr_g"],
                                      f"{name}: loss terms and GRM sparsity over {len(log)} iterations")
        stage.save_figure(fig, f"{name}_losses")
        out.figures[f"{name}_losses"] = figures.detach(fig)
    world = ibc_params.generated_world(P, stage.root)
    class_names = world.get("class_names") if world else None
    for name, model in models.items():
        grm = model.GRM.detach().cpu().numpy()
        fig = figures.grm_figure(grm, f"{name}: GRM ({grm.shape[0]} classes × {grm.shape[1]} bits)", class_names)
        stage.save_figure(fig, f"{name}_grm")
        out.figures[f"{name}_grm"] = figures.detach(fig)
        out.sentences.append(grm_sentence(name, grm))
    plan = ibc_params.sweep_plan(I) if todo else {}
    main = I["sweep"]["experiment"]
    swept = {K: summary[main] if entry is None else
             snapshot_summary(summary[main], entry["snapshot"]) if "snapshot" in entry else
             train_one(stage, f"sweep_{K}", entry, force)[2]
             for K, entry in plan.items()}
    if swept:
        out.tables["sweep"] = pd.DataFrame(swept).T[["iterations", "final_total", "grm_zero_frac", "checkpoint"]]
    if summary:
        out.tables["experiments"] = pd.DataFrame(summary).T[["code_length", "iterations", "final_total",
                                                             "grm_zero_frac"]]
    out.metrics = {"experiments": {n: {"dataset": todo[n]["dataset"], **s} for n, s in summary.items()},
                   "sweep": {str(K): s["checkpoint"] for K, s in swept.items()},
                   "sweep_iterations": {str(K): s["iterations"] for K, s in swept.items()}}
    stage.write_metrics(out.metrics)
    return out


CLI_DOC = """Train one IBC experiment of a profile, as stage 20_ibc_train does, into a folder of your choice:
`python -m bitlens.stages.ibc_train --profile paper --experiment imagenet100c --out DIR [--set k=v] [--fresh]`, or
under `torchrun --nproc_per_node N -m bitlens.stages.ibc_train ...` (the batch is split over the ranks). See
bitlens.ibc.train for what one step does and which files the folder holds."""


def main(argv=None) -> int:
    import torch

    from bitlens import checkpoint, cli, config

    prog = "python -m bitlens.stages.ibc_train"
    ap = cli.parser(prog, CLI_DOC)
    ap.add_argument("--profile", default="tiny", help="params/<profile>.yaml")
    ap.add_argument("--experiment", required=True, help="a key of ibc.experiments in the profile")
    ap.add_argument("--out", required=True, help="output folder (checkpoints, train_state.pt, log.csv)")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="params override, repeatable (e.g. ibc.experiments.shapes.lr=0.001)")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", help="torch device")
    ap.add_argument("--fresh", action="store_true",
                    help="start from scratch even if the folder holds a run with the same settings (the earlier "
                         "files are moved to .previous/<folder>/<time>/, see bitlens.previous)")
    args = ap.parse_args(argv)

    def train() -> None:
        P = config.load_params(args.profile, args.set)
        exps = P["ibc"]["experiments"]
        if args.experiment not in exps:
            import difflib

            near = difflib.get_close_matches(args.experiment, list(exps), n=1)
            ap.error(f"unknown experiment {args.experiment!r}" + (f"; did you mean {near[0]!r}?" if near else "")
                     + f" (experiments of profile {args.profile}: {', '.join(exps)})")
        exp = exps[args.experiment]
        if exp["dataset"] not in P["data"]["imagelists"]:
            ap.error(f"ibc.experiments.{args.experiment}.dataset = {exp['dataset']!r} is not a key of "
                     f"data.imagelists ({', '.join(P['data']['imagelists'])})")
        train_experiment(**ibc_params.train_arguments(exp, P["data"]["imagelists"][exp["dataset"]], None, args.device),
                         out_dir=args.out, fresh=args.fresh)

    return checkpoint.run_cli(prog, train)


if __name__ == "__main__":
    raise SystemExit(main())
