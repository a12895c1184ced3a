"""The reproduction report: every stage's numbers beside the published ones, in markdown and self-contained HTML.

Reads only what stages wrote (`metrics.json`, tables, figures), `paper_targets.yaml`, the latest benchmark CSVs and
the run manifest. The tables are deterministic (no timestamps); the run record, with times, has its own section.
"""
from __future__ import annotations

import base64
import html
import json
from pathlib import Path

import pandas as pd

from bitlens import io
from bitlens.stages import STAGES

SYNTHETIC = "synthetic data: not comparable"


def verdict(published, ours, tolerance: float, comparable: bool = True) -> str:
    if ours is None:
        return "not run"
    if published is None:
        return "no published value"
    if not comparable:
        return SYNTHETIC
    diff = ours - published
    # a tolerance is inclusive; round away float noise so 0.01 off with tolerance 0.01 counts as reproduced
    return "reproduced" if round(abs(diff), 12) <= tolerance else f"off by {diff:+.3f}"


def _metrics(results: Path, stage: str) -> dict | None:
    p = results / stage / "metrics.json"
    return io.read_json(p) if p.exists() else None


def bebr_rows(results: Path, targets: dict, comparable: bool) -> tuple[pd.DataFrame, str]:
    m = _metrics(results, "12_bebr_eval")
    t = targets["bebr"]
    ties = m["headline_ties"] if m else "pessimistic"
    rows = []
    for name, pub in t["rows"].items():
        ours = (m or {}).get("rows", {}).get(name)
        for k, key in (("recall@1", "r1"), ("recall@5", "r5"), ("recall@10", "r10")):
            val = ours["i2t"][ties][key] if ours else None
            rows.append({"embedding": name, "metric": f"i2t {k}", "bits (paper)": pub.get("bits"),
                         "bits (ours)": ours["bits"] if ours else None, "published": pub.get(k), "ours": val,
                         "difference": None if val is None or pub.get(k) is None else val - pub[k],
                         "verdict": verdict(pub.get(k), val, t["tolerance"], comparable)})
    note = (f"Image→text, ties **{ties}**. Published: {t['source']}. Tolerance ±{t['tolerance']}."
            + ("" if m else " Stage 12_bebr_eval has not run."))
    return pd.DataFrame(rows), note


IBC_METRICS = {"class_map": "class_map", "expert_bit_map": "expert_bit_map", "mis": "mis_knn"}


def ibc_rows(results: Path, targets: dict, comparable: bool) -> tuple[pd.DataFrame, str]:
    ev = _metrics(results, "21_ibc_eval")
    dis = _metrics(results, "22_ibc_dissect")
    t = targets["ibc"]
    ours_exps = (ev or {}).get("experiments", {})
    # the tiny profile runs other experiments than the paper's: list only what ran there
    names = (list(t["rows"]) if comparable else []) + [n for n in ours_exps if n not in t["rows"] or not comparable]
    rows = []
    for name in names:
        pub = t["rows"].get(name, {})
        o = ours_exps.get(name)
        d = (dis or {}).get("experiments", {}).get(name)
        keys = [k for k in pub if k != "bits"] or ["class_map", "expert_bit_map", "mis", "interpretable_units"]
        for k in keys:
            if k == "interpretable_units":
                val = d["interpretable"] if d else None
            elif k.startswith("attribute_map_"):
                val = (o or {}).get("attribute_map", {}).get(k[len("attribute_map_"):]) if o else None
            elif k.startswith("customized_map_"):
                c = (o or {}).get("customized") or {}
                val = c.get("map") if c.get("attribute") == k[len("customized_map_"):] else None
            else:
                val = o.get(IBC_METRICS.get(k, k)) if o else None
            p = pub.get(k)
            rows.append({"experiment": name, "metric": k, "bits": (o or {}).get("bits", pub.get("bits")),
                         "published": p, "ours": val,
                         "difference": None if val is None or p is None else val - p,
                         "verdict": verdict(p, val, t["tolerance"], comparable and name in t["rows"])})
    est = (ev or {}).get("estimators", {})
    note = ("Query set = database, Matlab tie order. MIS estimator of the `mis` row: "
            + (est.get("mis_knn", "sklearn kNN (the paper's)")) + f". Published: {t['source']}. "
            + (f"Interpretable units at IoU ≥ {next(iter(dis['experiments'].values()))['iou_threshold']}."
               if dis and dis.get("experiments") else ""))
    return pd.DataFrame(rows), note


def latest_benchmarks(folder: Path) -> list[tuple[str, pd.DataFrame]]:
    if not folder.exists():
        return []
    latest: dict[str, Path] = {}
    for p in sorted(folder.glob("*.csv")):
        bench = p.stem.split("__")[0]
        if bench not in latest or p.stat().st_mtime > latest[bench].stat().st_mtime:
            latest[bench] = p
    return [(p.stem, pd.read_csv(p)) for _, p in sorted(latest.items())]


def _fmt(df: pd.DataFrame) -> str:
    return df.to_markdown(index=False, floatfmt=".4f") if len(df) else "_(empty)_"


def _img(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode()


def build_report(results, targets: dict, benchmarks=None, profile: str | None = None) -> dict:
    """Write report.md, report.html and 90_report/headline.md under `results` (= results/<profile>)."""
    results = Path(results)
    profile = profile or results.name
    comparable = profile != "tiny"
    stage_status = [(s.name, "ran" if (results / s.name / "metrics.json").exists() else "not run")
                    for s in STAGES if s.name != "90_report"]
    bebr, bebr_note = bebr_rows(results, targets, comparable)
    ibc, ibc_note = ibc_rows(results, targets, comparable)
    md = [f"# bitlens reproduction report — profile `{profile}`", ""]
    if not comparable:
        md += ["The tiny profile runs on the synthetic Shapes world: the published numbers are shown beside ours "
               "for orientation only.", ""]
    md += ["## Stages", "", _fmt(pd.DataFrame(stage_status, columns=["stage", "status"])), ""]
    md += ["## BEBR — COCO image→text retrieval", "", _fmt(bebr), "", bebr_note, ""]
    tbl = results / "12_bebr_eval" / "bebr_table.md"
    if tbl.exists():
        md += ["### Full BEBR table (both directions)", "", tbl.read_text().strip(), ""]
    md += ["## IBC — retrieval and interpretability", "", _fmt(ibc), "", ibc_note, ""]
    tbl = results / "21_ibc_eval" / "ibc_table.md"
    if tbl.exists():
        md += ["### Full IBC table", "", tbl.read_text().strip(), ""]
    figs = []
    for stage, pattern in (("12_bebr_eval", "recall_vs_bits.png"), ("21_ibc_eval", "code_length_sweep.png"),
                           ("22_ibc_dissect", "*_bits.png"), ("22_ibc_dissect", "*_categories.png")):
        figs += sorted((results / stage).glob(pattern))
    if figs:
        md += ["## Figures", ""] + [f"![{f.stem}]({f.relative_to(results)})" for f in figs] + [""]
    cov = sorted((results / "22_ibc_dissect").glob("*_planted_coverage.md"))
    for c in cov:
        md += [f"### Planted concepts ({c.stem.split('_')[0]})", "", c.read_text().strip(), ""]
    benches = latest_benchmarks(Path(benchmarks)) if benchmarks else []
    if benches:
        md += ["## Benchmarks (latest `make bench`)", ""]
        for name, df in benches:
            md += [f"### {name}", "", _fmt(df), ""]
    body_md = "\n".join(md)
    record = run_record(results)
    full_md = body_md + "\n## Run record\n\n" + record + "\n"
    io.write_text(results / "report.md", full_md)
    headline = "\n".join(["## BEBR (headline)", "", _fmt(bebr), "", bebr_note, "", "## IBC (headline)", "",
                          _fmt(ibc), "", ibc_note, ""])
    io.write_text(results / "90_report" / "headline.md", headline)
    io.write_text(results / "report.html", to_html(full_md, results, f"bitlens report — {profile}"))
    counts = {}
    for df in (bebr, ibc):
        for v in df["verdict"] if len(df) else []:
            key = v if not v.startswith("off by") else "off"
            counts[key] = counts.get(key, 0) + 1
    return {"verdicts": counts, "stages": dict(stage_status)}


def run_record(results: Path) -> str:
    out = []
    man = results / "run_manifest.json"
    if man.exists():
        m = json.loads(man.read_text())
        out += [f"- git commit: `{m.get('git_commit')}`", f"- device: {m.get('device')}", f"- seed: {m.get('seed')}",
                "- packages: " + ", ".join(f"{k} {v}" for k, v in m.get("packages", {}).items()), "",
                _fmt(pd.DataFrame([{"stage": k, **v} for k, v in m.get("stages", {}).items()]))]
    p = results / "params.resolved.yaml"
    if p.exists():
        out += ["", "<details><summary>resolved params</summary>", "", "```yaml", p.read_text().strip(), "```",
                "", "</details>"]
    return "\n".join(out) or "_(no run manifest)_"


def to_html(md: str, base: Path, title: str) -> str:
    """Markdown (tables, headings, images, lists) → one self-contained HTML page, images embedded."""
    lines, out, table, in_code = md.splitlines(), [], [], False

    def flush_table():
        if not table:
            return
        rows = [r.strip().strip("|").split("|") for r in table if not set(r.replace("|", "").strip()) <= set(":- ")]
        head, body = rows[0], rows[1:]
        out.append("<table><thead><tr>" + "".join(f"<th>{html.escape(c.strip())}</th>" for c in head) +
                   "</tr></thead><tbody>" + "".join("<tr>" + "".join(f"<td>{html.escape(c.strip())}</td>" for c in r)
                                                    + "</tr>" for r in body) + "</tbody></table>")
        table.clear()

    for line in lines:
        if line.startswith("```"):
            flush_table()
            out.append("</pre>" if in_code else "<pre>")
            in_code = not in_code
            continue
        if in_code:
            out.append(html.escape(line))
            continue
        if line.startswith("|"):
            table.append(line)
            continue
        flush_table()
        if line.startswith("#"):
            level = len(line) - len(line.lstrip("#"))
            out.append(f"<h{level}>{html.escape(line[level:].strip())}</h{level}>")
        elif line.startswith("![") and "](" in line:
            alt, src = line[2:].split("](", 1)
            p = base / src.rstrip(")")
            if p.exists():
                out.append(f"<figure><img alt='{html.escape(alt)}' src='{_img(p)}'><figcaption>{html.escape(alt)}"
                           f"</figcaption></figure>")
        elif line.startswith("- "):
            out.append(f"<li>{html.escape(line[2:])}</li>")
        elif line.startswith("<details") or line.startswith("</details"):
            out.append(line)
        elif line.strip():
            text = html.escape(line)
            while "**" in text:
                text = text.replace("**", "<b>", 1).replace("**", "</b>", 1)
            out.append(f"<p>{text}</p>")
    flush_table()
    css = ("body{font-family:system-ui,sans-serif;max-width:1200px;margin:24px auto;padding:0 16px;color:#222}"
           "table{border-collapse:collapse;margin:8px 0;font-size:13px}td,th{border:1px solid #ccc;padding:3px 7px}"
           "th{background:#f2f2f2}img{max-width:100%}pre{background:#f7f7f7;padding:8px;font-size:12px;"
           "overflow:auto}figure{margin:12px 0}figcaption{font-size:12px;color:#666}")
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title><style>{css}"
            f"</style></head><body>{''.join(out)}</body></html>\n")
