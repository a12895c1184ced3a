"""Stage 21_ibc_dissect: Network Dissection of every bit of every trained IBC model, the bit-interpretation
figures and HTML page, the bit groups that customized retrieval uses, and — in the Shapes world, where the planted
concepts are known — how many of them the bits found and where the bits' masks sit."""
from __future__ import annotations

import pandas as pd

from bitlens import figures, io
from bitlens.data.broden import Broden
from bitlens.dissect.labels import (bit_groups, coverage_caption, planted_caption, planted_verdict,
                                    starting_concepts, starts_caption, summarize)
from bitlens.dissect.placement import band_width, mask_placement, placement_sentence, placement_summary
from bitlens.dissect.run import dissect
from bitlens.ibc.model import load_ibc_checkpoint
from bitlens.stage import Section
from bitlens.stages import ibc_params

BAND = 1 / 16  # the border band's width, as a fraction of the mask's shorter side
PLACEMENT_COLUMNS = ["unit", "label", "category", "iou", "on_region", "region_share", "in_band", "band_share",
                     "images"]


def dissect_experiment(stage, name: str, checkpoint, broden: Broden) -> dict:
    """dissect() of one trained model's bits with the `dissect:` settings, into stage.dir/name."""
    DS, exp = stage.params["dissect"], stage.params["ibc"]["experiments"][name]
    model = load_ibc_checkpoint(checkpoint, exp["crop"])  # its own shapes: classes, bits, backbone head
    return dissect(model, broden, stage.dir / name, DS["layer"], exp["crop"], DS["quantile"], DS["iou_threshold"],
                   DS["categories"], DS["batch_size"], stage.device(), DS["top_n"],
                   cache_key=f"{checkpoint}:{checkpoint.stat().st_mtime_ns}", reference=DS["reference"],
                   preprocess=DS["preprocess"], cache_dtype=DS["cache_dtype"], threads=DS["threads"])


def headline_metrics(units: list[dict], DS: dict, world: dict | None, res: dict) -> tuple[dict, str]:
    """(the experiment's metrics at both thresholds, the sentence giving both headlines)."""
    both = {t: summarize(units, DS[k]) for t, k in (("upstream", "iou_threshold"), ("ibc", "iou_threshold_ibc"))}
    head = both[DS["headline_threshold"]]
    coverage = {r["concept"]: r["best_iou"] for r in res["summary"]["coverage"]} if world is not None else None
    metrics = {**{k: head[k] for k in ("units", "interpretable", "concepts", "iou_threshold", "per_category")},
               "upstream": {k: both["upstream"][k] for k in ("interpretable", "concepts", "iou_threshold")},
               "planted_coverage": coverage, "bit_groups": "bit_groups.json"}
    return metrics, f"{both['upstream']['headline']}  |  IBC fork: {both['ibc']['headline']}"


def draw_bits(stage, out: Section, name: str, res: dict, broden: Broden, grm, class_names, threshold: float,
              per_category: dict) -> list[str]:
    """The bit-interpretation figure, the per-category bar and the HTML page of one experiment; the figure files."""
    DS, units = stage.params["dissect"], res["units"]
    good = sorted([u for u in units if u["score"] >= threshold], key=lambda u: -u["score"])[:DS["max_figure_bits"]]
    if not good:
        out.sentences.append(f"{name}: no bit reaches IoU {threshold}")
        return []
    fig = figures.bit_interpretation_figure(units, broden, res["activations"], [u["unit"] for u in good], grm,
                                            class_names, DS["top_n"])
    stage.save_figure(fig, f"{name}_bits")
    out.figures[f"{name}_bits"] = figures.detach(fig)
    bar = figures.category_bar(per_category, f"{name}: interpretable bits per category (IoU ≥ {threshold})",
                               res["tally"].categories)
    stage.save_figure(bar, f"{name}_categories")
    out.figures[f"{name}_categories"] = figures.detach(bar)
    strips = {u["unit"]: figures.bit_strip(broden, u, res["activations"], DS["top_n"]) for u in units}
    page = figures.dissection_html(f"{name}: Network Dissection of {len(units)} bits",
                                   {**res["summary"], "iou_threshold": threshold,
                                    "headline": summarize(units, threshold)["headline"]}, units, strips,
                                   figures.figure_png(bar))
    io.write_text(stage.dir / f"{name}_dissection.html", page)
    return [f"{name}_bits.png", f"{name}_categories.png"]


def table_name(base: str, name: str, experiments: int) -> str:
    """One experiment's table keeps the plain name (what the report and docs cite); several are prefixed."""
    return base if experiments == 1 else f"{name}_{base}"


def planted_tables(stage, out: Section, name: str, res: dict, starts: list[str], experiments: int) -> tuple[dict, list]:
    """The Shapes world's verdicts of one experiment: coverage, planted concepts found, and the bits that started
    as concept read-outs; (metrics, report table entries)."""
    thr = stage.params["dissect"]["iou_threshold"]  # the upstream threshold the planted-concept goal is stated at
    cov = pd.DataFrame(res["summary"]["coverage"])
    cov["detected"] = cov["best_iou"] >= thr
    stage.save_table(cov, f"{name}_planted_coverage", coverage_caption(res["summary"]["coverage"], thr))
    rows = res["summary"]["planted"]
    planted = pd.DataFrame(rows)
    caption = planted_caption(name, rows, thr)
    table = table_name("planted_concepts", name, experiments)
    stage.save_table(planted, table, caption)
    out.tables[table] = planted.sort_values("best_iou", ascending=False)
    out.sentences.append(caption)
    verdict = planted_verdict(rows)
    metrics = {"planted_found": verdict["found"], "planted_total": verdict["total"]}
    listed = [{"file": f"{table}.md", "caption": caption}]
    if starts:  # bit_init: readouts — the concept each bit's filter started as
        began_rows = starting_concepts(res["units"], starts, thr)
        began = pd.DataFrame(began_rows)
        caption = starts_caption(name, began_rows, len(res["units"]), thr)
        table = table_name("bit_starts", name, experiments)
        stage.save_table(began, table, caption)
        out.tables[table] = began
        out.sentences.append(caption)
        listed.append({"file": f"{table}.md", "caption": caption})
        metrics["readout_bits_kept"] = int(began["kept"].sum())
    return metrics, listed


def placement_table(stage, out: Section, name: str, res: dict, broden: Broden, experiments: int) -> tuple[dict, dict]:
    """Where the top-image masks of one experiment's bits sit: on the objects or in the border band;
    (the pooled summary, the report table entry)."""
    DS = stage.params["dissect"]
    rows = mask_placement(res["units"], broden, res["activations"], DS["top_n"], "object", BAND)
    placement = placement_summary(rows, DS["iou_threshold"])
    size = (int(broden.records[0]["sh"]), int(broden.records[0]["sw"]))
    caption = f"{name}: {placement_sentence(placement, 'object', band_width(size, BAND))}"
    table = table_name("mask_placement", name, experiments)
    stage.save_table(pd.DataFrame(rows)[PLACEMENT_COLUMNS].round(4), table, caption)
    out.sentences.append(caption)
    return placement, {"file": f"{table}.md", "caption": caption}


def run(stage) -> Section:
    P, DS = stage.params, stage.params["dissect"]
    out = Section()
    train_dir = stage.input("20_ibc_train")
    trained = stage.read_metrics("20_ibc_train")["experiments"]
    names = DS["experiments"] if DS["experiments"] is not None else list(trained)
    broden = Broden(stage.path(P["data"]["broden"]["root"]))
    stage.device()  # a profile that asks for CUDA where there is none stops here, before any work
    world = ibc_params.generated_world(P, stage.root)
    results, metrics_out, groups_out, figs, tables = {}, {}, {}, [], []
    for name in names:
        res = dissect_experiment(stage, name, train_dir / trained[name]["checkpoint"], broden)
        results[name] = res
        metrics_out[name], headline = headline_metrics(res["units"], DS, world, res)
        out.sentences.append(f"{name}: {headline}")
        groups_out[name] = bit_groups(res["units"], metrics_out[name]["iou_threshold"])
    for name, res in results.items():
        exp = P["ibc"]["experiments"][name]
        grm = load_ibc_checkpoint(train_dir / trained[name]["checkpoint"], exp["crop"]).GRM.detach().numpy()
        figs += draw_bits(stage, out, name, res, broden, grm, world["class_names"] if world else None,
                          metrics_out[name]["iou_threshold"], metrics_out[name]["per_category"])
    for name, res in results.items():
        if world is None:
            break
        more, listed = planted_tables(stage, out, name, res, trained[name].get("bit_init") or [], len(results))
        metrics_out[name].update(more)
        tables += listed
    for name, res in results.items():
        if "object" not in broden.categories:
            break
        metrics_out[name]["mask_placement"], listed = placement_table(stage, out, name, res, broden, len(results))
        tables.append(listed)
    io.write_json(stage.dir / "bit_groups.json", groups_out)
    out.metrics = {"experiments": metrics_out, "figures": figs, "report_tables": tables}
    stage.write_metrics(out.metrics)
    return out
