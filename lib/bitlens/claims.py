"""Sentences computed from numbers: the order of the embeddings at each Recall@K, ours and the paper's.

Nothing here knows which order the paper reports: it reads the published values
from `params/paper_targets.yaml` (through `bitlens.targets`) and the measured
values from a stage's metrics, and says what they are and whether they agree.
Notebooks, the report and the README state orders and agreements only through
these functions, so a sentence can never outlive the numbers it describes.
"""
from __future__ import annotations

from typing import Mapping, Sequence

KS = (1, 5, 10)
DECIMALS = 4  # the precision tables show: values equal at it are a tie, not an order


def ranked(values: Mapping[str, float | None], decimals: int = DECIMALS) -> list[list[str]]:
    """Names from highest to lowest value, names with equal values (at `decimals`) grouped; missing values left out."""
    known = {n: round(float(v), decimals) for n, v in values.items() if v is not None and v == v}
    groups: list[list[str]] = []
    for name in sorted(known, key=lambda n: (-known[n], n)):
        if groups and known[groups[-1][0]] == known[name]:
            groups[-1].append(name)
        else:
            groups.append([name])
    return groups


def order_text(values: Mapping[str, float | None], decimals: int = DECIMALS) -> str:
    """`float (0.3610) > bebr (0.3600) > hash (0.3480)`; equal values are joined by `=`."""
    return " > ".join(" = ".join(f"{n} ({values[n]:.{decimals}f})" for n in g) for g in ranked(values, decimals))


def recall_table(rows: Mapping[str, Mapping], ties: str) -> dict[str, dict[str, float]]:
    """{embedding: {"recall@K": value}} from the `rows` of 12_bebr_eval's metrics (image→text, one tie policy)."""
    return {name: {f"recall@{k}": r["i2t"][ties][f"r{k}"] for k in KS if f"r{k}" in r["i2t"][ties]}
            for name, r in rows.items()}


def recall_orders(measured: Mapping[str, Mapping[str, float]], published: Mapping[str, Mapping[str, float]],
                  ks: Sequence[int] = KS) -> list[dict]:
    """Per K: our order, the paper's order (over the embeddings both have) and whether they agree."""
    out = []
    for k in ks:
        key = f"recall@{k}"
        names = [n for n in measured if n in published and measured[n].get(key) is not None
                 and published[n].get(key) is not None]
        ours = {n: measured[n][key] for n in names}
        paper = {n: published[n][key] for n in names}
        out.append({"k": k, "embeddings": names, "ours": ranked(ours), "paper": ranked(paper),
                    "ours_text": order_text(ours), "paper_text": order_text(paper, 3),
                    "agree": len(names) > 1 and ranked(ours) == ranked(paper)})
    return out


def _difference(ours: list[list[str]], paper: list[list[str]]) -> str:
    """The first pair of embeddings the two orders place differently, in words."""
    pos_o = {n: i for i, g in enumerate(ours) for n in g}
    pos_p = {n: i for i, g in enumerate(paper) for n in g}
    names = [n for g in paper for n in g]
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            po, pp = pos_o[a] - pos_o[b], pos_p[a] - pos_p[b]
            if (po > 0) - (po < 0) != (pp > 0) - (pp < 0):
                rel = lambda d: "above" if d < 0 else "below" if d > 0 else "level with"  # noqa: E731
                return f"the paper has {a} {rel(pp)} {b}, we have it {rel(po)}"
    return "the orders differ"


def recall_order_sentences(measured: Mapping[str, Mapping[str, float]], published: Mapping[str, Mapping[str, float]],
                           ks: Sequence[int] = KS, comparable: bool = True) -> list[str]:
    """One sentence per K stating both orders and whether they agree (why not, if not)."""
    out = []
    for o in recall_orders(measured, published, ks):
        if len(o["embeddings"]) < 2:
            out.append(f"R@{o['k']}: fewer than two embeddings have both a measured and a published value; "
                       "no order to compare.")
            continue
        verdict = ("the same order" if o["agree"] else f"a different order ({_difference(o['ours'], o['paper'])})")
        out.append(f"R@{o['k']}: ours {o['ours_text']}; paper {o['paper_text']}: {verdict}.")
    if not comparable and out:
        out.append("Our numbers come from the synthetic tiny profile, not COCO: the comparison of orders is for "
                   "orientation only.")
    return out


def agreement_summary(measured: Mapping[str, Mapping[str, float]], published: Mapping[str, Mapping[str, float]],
                      ks: Sequence[int] = KS) -> dict[str, bool]:
    """{"R@1": agrees, ...} for metrics.json."""
    return {f"R@{o['k']}": bool(o["agree"]) for o in recall_orders(measured, published, ks)}
