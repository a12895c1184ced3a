"""Stage 22_ibc_eval: the codes of every IBC experiment (released, or extracted from 20_ibc_train's checkpoints and
written in the official fields and as packed planes), class / expert-bit / attribute mAP, MIS, customized
retrieval on the dissection's bit groups, the code-length sweep and the deep-hashing metrics."""
from __future__ import annotations

import numpy as np
import pandas as pd

from bitlens import figures, metrics, targets
from bitlens.codes import load_codes
from bitlens.data.attributes import resolve_names
from bitlens.data.imagelist import read_list
from bitlens.ibc import evaluate as ev
from bitlens.stage import Section
from bitlens.stages import ibc_params

NO_GROUPS = "no bit_groups.json from 21_ibc_dissect: customized retrieval is skipped"
METRIC_KEYS = ("dataset", "bits", "class_map", "expert_bit_map", "random_class_map", "attribute_map",
               "attributes_without_items", "attribute_map_mean", "customized", "mis_knn", "mis_discrete", "hashing")


def experiment_codes(stage, name: str, exp: dict, checkpoint=None):
    """(sigmoid codes, lab, GRM, attribute names or None) of an experiment's test list: the released code file,
    or codes extracted from a checkpoint — `checkpoint` (20_ibc_train's) or the authors' `released_checkpoint` —
    also written as `<name>_codes.npz/.mat` (the official fields) and `<name>_codes.packed.npz`."""
    if exp["released_codes"]:
        c = load_codes(stage.path(exp["released_codes"]))
        return c["binary_codes"], c["lab"], c["GRM"], None
    if exp["released_checkpoint"]:
        checkpoint = stage.path(exp["released_checkpoint"])
    if checkpoint is None:
        raise ValueError(f"ibc.experiments.{name}: no checkpoint to extract codes with (train it in 20_ibc_train, or "
                         f"set released_checkpoint / released_codes)")
    lists = stage.params["data"]["imagelists"]
    if exp["dataset"] not in lists:
        raise ValueError(f"ibc.experiments.{name}.dataset = {exp['dataset']!r}: codes are extracted from a dataset's "
                         f"test list; name one of data.imagelists: {', '.join(lists)}")
    ds = lists[exp["dataset"]]
    test = read_list(stage.path(ds["test"]), ds["format"], ds["num_attributes"])
    b, lab, grm = ev.experiment_codes(checkpoint, test, stage.path(ds["root"]), exp["resize"], exp["crop"],
                                      stage.device(), exp["max_samples"], stage.dir / f"{name}_codes")
    return b, lab, grm, resolve_names(ds["attribute_names"], ds["num_attributes"] or None,
                                      f"data.imagelists.{exp['dataset']}.attribute_names")


def attribute_names(stage, exp: dict, lab, names=None) -> list[str]:
    """Attribute column names: the dataset's, the experiment's (released code files), the generated Shapes
    world's, or `attribute j`."""
    count = np.asarray(lab).shape[1] - 1 if np.asarray(lab).ndim == 2 else 0
    if names:
        return list(names)
    own = resolve_names(exp.get("attribute_names"), count, "attribute_names of the experiment")
    if own:
        return own
    world = ibc_params.generated_world(stage.params, stage.root)
    if exp.get("dataset") == "shapes" and world is not None:
        return world["attribute_names"]
    return [f"attribute {j + 1}" for j in range(count)]


def results_table(results: dict, published: dict) -> pd.DataFrame:
    """One row per experiment: our numbers beside the paper's."""
    return pd.DataFrame([{"experiment": name, "bits": r["bits"], "class mAP": r["class_map"],
                          "expert-bit mAP": r["expert_bit_map"], "random-code class mAP": r["random_class_map"],
                          "MIS (kNN, paper's)": r["mis_knn"], "MIS (discrete, exact)": r["mis_discrete"],
                          "customized mAP": (r["customized"] or {}).get("map"),
                          "paper class mAP": published.get(name, {}).get("class_map"),
                          "paper expert-bit mAP": published.get(name, {}).get("expert_bit_map"),
                          "paper MIS": published.get(name, {}).get("mis")} for name, r in results.items()])


def results_caption(experiments: dict, names, seed: int) -> str:
    k_note = ", ".join(f"{n}: k = {experiments[n]['expert_bits']}" for n in names)
    return (f"Query set = database (test list), Hamming ranking, ties → lower index (Matlab). Expert bits: "
            f"{k_note}. MIS estimators: kNN = {metrics.MIS_ESTIMATORS['knn']}; discrete = "
            f"{metrics.MIS_ESTIMATORS['discrete']}. Random codes: same shape, seed {seed}.")


def attribute_caption(r: dict) -> str:
    mean = "—" if r["attribute_map_mean"] is None else f"{r['attribute_map_mean']:.4f}"
    return (f"Attribute retrieval mAP (self-match relevant). {r['attributes_without_items']} attribute(s) without "
            f"any item (— here, NaN in the Matlab); mean over the others: {mean}.")


def sweep(stage, results: dict, trained: dict, train_dir) -> tuple[list[dict], dict, dict]:
    """The code-length sweep's rows, deep-hashing metrics per length and training iterations per length; the
    main model serves at its own length when it trained as long as the sweep says."""
    P, I = stage.params, stage.params["ibc"]
    base_name = I["sweep"]["experiment"]
    base = I["experiments"][base_name]
    iters = ibc_params.sweep_iterations(I, trained)
    rows, hashing = [], {}
    for K in sorted(iters):
        if K == base["code_length"] and iters[K] == trained["experiments"][base_name]["iterations"]:
            r = results[base_name]  # the main model itself
            hashing[K] = r["hashing"]
        else:
            b, lab, grm, _ = experiment_codes(stage, f"sweep_{K}", base, train_dir / trained["sweep"][str(K)])
            r = ev.evaluate_codes(b, lab, grm, min(base["expert_bits"], K), base["mis_max_num"], P["seed"], False)
            hashing[K] = ev.hashing_metrics_of(b, lab)
        rows.append({"bits": K, "iterations": iters[K], "class_map": r["class_map"],
                     "expert_bit_map": r["expert_bit_map"], "mis_knn": r["mis_knn"]})
    return rows, hashing, iters


def sweep_figure(sw: pd.DataFrame, iters: dict):
    title = "code-length sweep; training iterations " + ", ".join(f"{K}b: {n}" for K, n in sorted(iters.items()))
    fig = figures.curve(sw["bits"], {"class mAP": sw["class_map"], "expert-bit mAP": sw["expert_bit_map"]},
                        "code length (bits)", "mAP", title, logx=True)
    fig.axes[0].set_xticks(list(sw["bits"]), [str(int(K)) for K in sw["bits"]])
    return fig


HASHING_CURVES_CAPTION = ("Left: precision against recall as the Hamming radius grows from 0 to the code length (one "
                          "point per radius). Right: precision@K over the leave-one-out ranking. One line per "
                          "experiment and sweep code length; {protocol}.")


def run(stage) -> Section:
    P, I = stage.params, stage.params["ibc"]
    out = Section()
    released = any(e["released_codes"] or e["released_checkpoint"] for e in I["experiments"].values())
    trained = {} if released else stage.read_metrics("20_ibc_train")
    train_dir = None if released else stage.input("20_ibc_train")
    groups = {} if released else ev.read_bit_groups(stage.results / "21_ibc_dissect" / "bit_groups.json")
    if not released and not groups:
        out.sentences.append(NO_GROUPS)
    results = {}
    for name, exp in I["experiments"].items():
        ckpt = None if released else train_dir / trained["experiments"][name]["checkpoint"]
        b, lab, grm, names = experiment_codes(stage, name, exp, ckpt)
        names = attribute_names(stage, exp, lab, names)
        results[name] = ev.evaluate_experiment(b, lab, grm, exp["expert_bits"], exp["mis_max_num"],
                                               exp["target_attributes"], names, groups.get(name, {}), P["seed"],
                                               exp.get("dataset") or "")
    published = targets.load_targets(P["report"]["targets"], stage.root)["ibc"]["rows"]
    out.tables["ibc_table"] = results_table(results, published)
    stage.save_table(out.tables["ibc_table"], "ibc_table", results_caption(I["experiments"], results, P["seed"]))
    for name, r in results.items():
        if r["attribute_map"]:
            at = pd.DataFrame({"attribute": list(r["attribute_map"]), "mAP": list(r["attribute_map"].values())})
            stage.save_table(at, f"{name}_attribute_map", attribute_caption(r))
            out.tables[f"{name}_attribute_map"] = at
        if r["customized"] and r["customized"]["bits"]:
            out.sentences.append(ev.customized_sentence(name, r["customized"]))
    sweep_rows, sweep_hashing, iters = [], {}, {}
    if not released and I["sweep"]["experiment"]:
        sweep_rows, sweep_hashing, iters = sweep(stage, results, trained, train_dir)
    if sweep_rows:
        sw = pd.DataFrame(sweep_rows)
        source = "recorded by 20_ibc_train" if trained.get("sweep_iterations") else "from the params"
        caption = ev.sweep_caption(iters, source)
        stage.save_table(sw, "code_length_sweep", caption)
        out.tables["code_length_sweep"] = sw
        fig = sweep_figure(sw, iters)
        stage.save_figure(fig, "code_length_sweep", caption=caption)
        out.figures["code_length_sweep"] = figures.detach(fig)
    hash_runs = {name: r["hashing"] for name, r in results.items()}
    hash_rows = [ev.hashing_row(name, r["hashing"], r["bits"], r["class_map"]) for name, r in results.items()]
    base_name = I["sweep"]["experiment"]
    for K, h in sorted(sweep_hashing.items()):  # empty without a sweep
        hash_runs[f"{base_name} {K} bits, {iters[K]} iterations"] = h
        hash_rows.append(ev.hashing_row(f"{base_name} (sweep, {iters[K]} iterations)", h, K))
    out.tables["ibc_hashing_metrics"] = pd.DataFrame(hash_rows)
    stage.save_table(out.tables["ibc_hashing_metrics"], "ibc_hashing_metrics", ev.hashing_caption(hash_runs),
                     report=True)
    hash_sentences = ev.hashing_sentences({n: r["hashing"] for n, r in results.items()})
    if len(sweep_hashing) > 1:
        hash_sentences.append(ev.sweep_hashing_sentence(sweep_hashing))
    out.sentences += hash_sentences
    fig = figures.hashing_curves(hash_runs, "IBC codes: precision–recall over Hamming radius, precision@K")
    stage.save_figure(fig, "ibc_hashing_curves", caption=HASHING_CURVES_CAPTION.format(protocol=ev.HASHING_PROTOCOL))
    out.figures["ibc_hashing_curves"] = figures.detach(fig)
    out.sentences.append(f"class mAP more than twice the random-code baseline: {ev.class_map_verdict(results)}")
    out.metrics = ev.json_safe({"experiments": {n: {k: r[k] for k in METRIC_KEYS} for n, r in results.items()},
                                "sweep": sweep_rows,
                                "sweep_hashing": {str(K): h for K, h in sweep_hashing.items()},
                                "hashing_sentences": hash_sentences,
                                "estimators": {"mis_knn": metrics.MIS_ESTIMATORS["knn"],
                                               "mis_discrete": metrics.MIS_ESTIMATORS["discrete"]}})
    stage.write_metrics(out.metrics)
    return out
