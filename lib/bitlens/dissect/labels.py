"""Each unit's label (rule 6 of `bitlens.dissect`), the summaries made of the labels, and the Shapes world's
planted-concept verdicts (ground truth known there)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from bitlens import io
from bitlens.dissect.tally import Tally


def unit_labels(t: Tally, broden) -> list[dict]:
    """Per unit: best label overall and per category (label name, IoU, truth/activation/intersect). A label with
    IoU 0 is no label: a unit that matches nothing (a dead unit) gets category '' and label ''."""
    iou = t.iou()
    out = []
    for k in range(iou.shape[0]):
        per = {}
        for ci, cat in enumerate(t.categories):
            labs = np.flatnonzero(t.label_category == ci)
            if labs.size == 0:
                continue
            best = labs[int(np.argmax(iou[k, labs]))]
            score = float(iou[k, best])
            per[cat] = {"label": broden.label_names.get(int(best), str(best)) if score > 0 else "",
                        "label_id": int(best) if score > 0 else 0,
                        "truth": float(t.label_area[best]), "activation": float(t.unit_area[k, ci]),
                        "intersect": float(t.intersect[k, best]), "iou": score}
        best_cat = max(per, key=lambda c: per[c]["iou"]) if per else ""
        if best_cat and per[best_cat]["iou"] <= 0:
            best_cat = ""
        out.append({"unit": k + 1, "category": best_cat, "label": per[best_cat]["label"] if best_cat else "",
                    "score": per[best_cat]["iou"] if best_cat else 0.0, "categories": per})
    return out


def write_tally_csv(path, units: list[dict], categories: list[str]) -> Path:
    """NetDissect-Lite's tally.csv: unit, category, label, score, then per category label/truth/activation/intersect/iou."""
    import csv
    import io as _io

    buf = _io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    cols = ["unit", "category", "label", "score"]
    for c in categories:
        cols += [f"{c}-label", f"{c}-truth", f"{c}-activation", f"{c}-intersect", f"{c}-iou"]
    w.writerow(cols)
    for u in sorted(units, key=lambda u: -u["score"]):
        row = [u["unit"], u["category"], u["label"], f"{u['score']:.6f}"]
        for c in categories:
            d = u["categories"].get(c)
            row += ([d["label"], int(d["truth"]), int(d["activation"]), int(d["intersect"]), f"{d['iou']:.6f}"]
                    if d else ["", 0, 0, 0, "0"])
        w.writerow(row)
    return io.write_text(path, buf.getvalue())


def summarize(units: list[dict], threshold: float) -> dict:
    good = [u for u in units if u["label"] and u["score"] >= threshold]
    per_cat: dict[str, int] = {}
    for u in good:
        per_cat[u["category"]] = per_cat.get(u["category"], 0) + 1
    return {"units": len(units), "interpretable": len(good), "concepts": len({u["label"] for u in good}),
            "iou_threshold": threshold, "per_category": per_cat,
            "headline": f"{len(good)}/{len(units)} units covering {len({u['label'] for u in good})} concepts "
                        f"with IoU ≥ {threshold}"}


def concept_coverage(t: Tally, broden, threshold: float) -> list[dict]:
    """Per label: the unit that detects it best (any unit, not only those labelled with it)."""
    iou = t.iou()
    rows = []
    for lab in range(1, broden.num_labels):
        if t.label_category[lab] < 0 or t.label_area[lab] == 0:
            continue
        k = int(np.argmax(iou[:, lab]))
        rows.append({"concept": broden.label_names[lab], "category": t.categories[t.label_category[lab]],
                     "best_unit": k + 1, "best_iou": float(iou[k, lab]), "detected": bool(iou[k, lab] >= threshold)})
    return rows


def planted_concepts(units: list[dict], t: Tally, broden, threshold: float) -> list[dict]:
    """Per label: the bits *labelled* with it (their best label overall) and the best such IoU; `found` when one
    of them reaches `threshold` — the count the Shapes world is judged by."""
    rows = []
    for lab in range(1, broden.num_labels):
        if t.label_category[lab] < 0 or t.label_area[lab] == 0:
            continue
        name = broden.label_names[lab]
        mine = sorted(((u["score"], u["unit"]) for u in units if u["label"] == name), reverse=True)
        best = mine[0][0] if mine else 0.0
        rows.append({"concept": name, "category": t.categories[t.label_category[lab]],
                     "bits": " ".join(str(k) for _, k in mine), "best_iou": float(best),
                     "found": bool(mine and best >= threshold)})
    return rows


def base_concept(label: str) -> str:
    """Broden names colors 'red-c' and scenes 'sky-s'; attributes and read-outs use the plain names."""
    return label[:-2] if label.endswith(("-c", "-s")) else label


def starting_concepts(units: list[dict], starts: list[str], threshold: float) -> list[dict]:
    """For bits whose filters started as concept read-outs (`bit_init: readouts`; `starts[k]` is bit k + 1's
    concept): the dissected label and IoU beside the starting concept; `kept` when the label is that concept at
    IoU ≥ `threshold`."""
    by_unit = {u["unit"]: u for u in units}
    rows = []
    for k, start in enumerate(starts):
        u = by_unit.get(k + 1, {"label": "", "score": 0.0})
        rows.append({"bit": k + 1, "started_as": start, "label": u["label"], "iou": float(u["score"]),
                     "kept": bool(u["label"]) and base_concept(u["label"]) == start and u["score"] >= threshold})
    return rows


def bit_groups(units: list[dict], threshold: float) -> dict[str, list[int]]:
    """Concept → 1-based units labelled with it (IoU ≥ threshold), best first: the customized-retrieval groups."""
    groups: dict[str, list[tuple[float, int]]] = {}
    for u in units:
        if u["label"] and u["score"] >= threshold:
            groups.setdefault(u["label"], []).append((-u["score"], u["unit"]))
    return {c: [k for _, k in sorted(v)] for c, v in sorted(groups.items())}




# -- the Shapes world's verdicts: its planted concepts are known, so the dissection can be judged -----------------

def coverage_caption(coverage: list[dict], threshold: float) -> str:
    """How many planted concepts some bit detects at IoU ≥ `threshold`, whatever that bit's own label."""
    detected = sum(r["best_iou"] >= threshold for r in coverage)
    return f"{detected}/{len(coverage)} planted concepts have a bit with IoU ≥ {threshold}."


def planted_verdict(planted: list[dict]) -> dict:
    """The count the Shapes world is judged by: the planted concepts (`planted_concepts` rows) that are the label
    of some bit at IoU ≥ its threshold, in all and per category (sorted by name): {category: (found, total)}."""
    cats = sorted({r["category"] for r in planted})
    return {"found": sum(bool(r["found"]) for r in planted), "total": len(planted),
            "per_category": {c: (sum(bool(r["found"]) for r in planted if r["category"] == c),
                                 sum(r["category"] == c for r in planted)) for c in cats}}


def planted_caption(name: str, planted: list[dict], threshold: float) -> str:
    v = planted_verdict(planted)
    per_cat = ", ".join(f"{c} {f}/{n}" for c, (f, n) in v["per_category"].items())
    return (f"{name}: {v['found']}/{v['total']} planted concepts are the label of a bit with IoU ≥ {threshold} "
            f"({per_cat}).")


def starts_caption(name: str, began: list[dict], units: int, threshold: float) -> str:
    """How many bits that started as a concept read-out still carry that concept after IBC training."""
    kept = sum(r["kept"] for r in began)
    return (f"{name}: {kept}/{len(began)} bits that started as a concept read-out are labelled with that concept at "
            f"IoU ≥ {threshold} after IBC training ({units - len(began)} more bits started from kaiming).")
