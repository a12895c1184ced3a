"""The reproduction report: every stage's numbers beside the published ones, in markdown and self-contained HTML.

Reads only what stages wrote (`metrics.json`, tables, figures), `paper_targets.yaml`, the latest benchmark CSVs and
the run manifest. The tables are deterministic (no timestamps); the run record, with times, has its own section.
"""
from __future__ import annotations

import html
import json
import math
from pathlib import Path

import pandas as pd

from bitlens import claims, io
from bitlens.png import data_uri
from bitlens.stages import BY_NAME, STAGES

SYNTHETIC = "synthetic data: not comparable"


def verdict(published, ours, tolerance: float, comparable: bool = True) -> str:
    if ours is None:
        return "not run"
    if isinstance(ours, float) and not math.isfinite(ours):
        return f"ours is {ours} (check the stage's output)"
    # on synthetic data even a null target is beside the point: say why nothing is compared
    if not comparable:
        return SYNTHETIC
    if published is None:
        return "no published value"
    diff = ours - published
    # a tolerance is inclusive; round away float noise so 0.01 off with tolerance 0.01 counts as reproduced
    return "reproduced" if round(abs(diff), 12) <= tolerance else f"off by {diff:+.3f}"


def _metrics(results: Path, stage: str) -> dict | None:
    p = results / stage / "metrics.json"
    return io.read_json(p) if p.exists() else None


def _get(m: dict, path: tuple, stage: str):
    """m[path[0]][path[1]]…, or an error naming the metrics file and the missing key (a stage out of contract)."""
    cur = m
    for i, k in enumerate(path):
        if not isinstance(cur, dict) or k not in cur:
            raise KeyError(f"{stage}/metrics.json: missing key '{'.'.join(map(str, path[:i + 1]))}' "
                           f"(each stage writes its metrics.json at its end: re-run the stage)")
        cur = cur[k]
    return cur


def bebr_rows(results: Path, targets: dict, comparable: bool) -> tuple[pd.DataFrame, str]:
    m = _metrics(results, "12_bebr_eval")
    t = targets["bebr"]
    ties = m["headline_ties"] if m else "pessimistic"
    rows = []
    for name, pub in t["rows"].items():
        ours = (m or {}).get("rows", {}).get(name)
        for k, key in (("recall@1", "r1"), ("recall@5", "r5"), ("recall@10", "r10")):
            val = _get(ours, ("i2t", ties, key), "12_bebr_eval") if ours else None
            rows.append({"embedding": name, "metric": f"i2t {k}", "bits (paper)": pub.get("bits"),
                         "bits (ours)": _get(ours, ("bits",), "12_bebr_eval") if ours else None,
                         "published": pub.get(k), "ours": val,
                         "difference": None if val is None or pub.get(k) is None else val - pub[k],
                         "verdict": verdict(pub.get(k), val, t["tolerance"], comparable)})
    note = (f"Image→text, ties **{ties}**. Published: {t['source']}. Tolerance ±{t['tolerance']}."
            + ("" if m else " Stage 12_bebr_eval has not run."))
    return _as_text(rows), note


IBC_METRICS = {"class_map": "class_map", "expert_bit_map": "expert_bit_map", "mis": "mis_knn"}


def ibc_rows(results: Path, targets: dict, comparable: bool) -> tuple[pd.DataFrame, str]:
    ev = _metrics(results, "22_ibc_eval")
    dis = _metrics(results, "21_ibc_dissect")
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
                val = _get(d, ("interpretable",), "21_ibc_dissect") if d else None
            elif k.startswith("attribute_map_"):
                val = (o or {}).get("attribute_map", {}).get(k[len("attribute_map_"):]) if o else None
            elif k.startswith("customized_map_"):
                c = (o or {}).get("customized") or {}
                val = c.get("map") if c.get("attribute") == k[len("customized_map_"):] else None
            else:
                val = _get(o, (IBC_METRICS.get(k, k),), "22_ibc_eval") if o else None
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
    return _as_text(rows), note


def latest_benchmarks(folder: Path) -> list[tuple[str, pd.DataFrame]]:
    if not folder.exists():
        return []
    latest: dict[str, Path] = {}
    for p in sorted(folder.glob("*.csv")):
        bench = p.stem.split("__")[0]
        # newest run wins; on equal times the name decides, so the choice never depends on listing order
        if bench not in latest or (p.stat().st_mtime, p.name) > (latest[bench].stat().st_mtime, latest[bench].name):
            latest[bench] = p
    return [(p.stem, pd.read_csv(p)) for _, p in sorted(latest.items())]


TEXT_NUMBERS = ("published", "ours", "difference")


def _as_text(rows: list[dict], columns=TEXT_NUMBERS) -> pd.DataFrame:
    """Counts stay integers, fractions get 4 decimals and a missing value reads "—" (a column mixing them would
    otherwise print 22 units as 22.0000 and a null target as a blank cell)."""
    def one(v, signed=False):
        if v is None or (isinstance(v, float) and math.isnan(v)):
            return "—"
        if isinstance(v, (bool, str)):
            return str(v)
        if float(v).is_integer() and not isinstance(v, float):
            return str(int(v))
        return f"{float(v):+.4f}" if signed else f"{float(v):.4f}"
    def other(k, v):
        if _is_missing(v):
            return "—"
        if "bits" in k and isinstance(v, float) and v.is_integer():
            return str(int(v))
        return v
    df = pd.DataFrame([{k: one(v, k == "difference") if k in columns else other(k, v) for k, v in r.items()}
                       for r in rows])
    df.attrs["preformatted"] = True
    return df


def _fmt(df: pd.DataFrame) -> str:
    if not len(df):
        return "_(empty)_"
    if df.attrs.get("preformatted"):
        # the cells are already text: tabulate must not re-parse "22" into 22.0000
        numeric = TEXT_NUMBERS + ("seconds", "last run (s)")
        align = ["right" if c in numeric or pd.api.types.is_numeric_dtype(df[c]) else "left" for c in df]
        return df.to_markdown(index=False, disable_numparse=True, colalign=align)
    return markdown_table(df)


def _is_missing(v) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))


def markdown_table(df: pd.DataFrame, floatfmt: str = ".4f") -> str:
    """A markdown table whose numbers read for their kind: a missing value is "—" (never "nan"), a column of whole
    numbers above 1 (bits, counts, ranks) prints as integers, other numbers with `floatfmt`."""
    if not len(df):
        return "_(empty)_"
    cols, align = {}, []
    for c in df.columns:
        vals = list(df[c])
        nums = [v for v in vals if isinstance(v, (int, float)) and not isinstance(v, bool) and not _is_missing(v)]
        counted = any(w in str(c).lower() for w in ("bits", "medr", "rank", "images", "count", "iterations"))
        whole = bool(nums) and all(float(v).is_integer() for v in nums) and (
            counted or all(isinstance(v, int) for v in nums) or max(abs(float(v)) for v in nums) > 1)

        def cell(v):
            if _is_missing(v):
                return "—"
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                return str(v)
            return str(int(v)) if whole else format(float(v), floatfmt)
        cols[str(c)] = [cell(v) for v in vals]
        align.append("right" if nums else "left")
    return pd.DataFrame(cols).to_markdown(index=False, disable_numparse=True, colalign=align)


def _img(path: Path) -> str:
    return data_uri(path.read_bytes())


REHEARSAL_LINE = ("**Rehearsal — every number below is meaningless:** this run read bitlens.replica's random "
                  "stand-ins for the datasets and weights (make rehearse); it shows only that each stage runs.")


def build_report(results, targets: dict, benchmarks=None, profile: str | None = None, rehearsal: bool = False) -> dict:
    """Write report.md, report.html and 90_report/headline.md under `results` (= results/<profile>).

    `rehearsal` (params report.rehearsal): the inputs were random replicas, so report.md and headline.md open
    with REHEARSAL_LINE and no number is judged against the paper's."""
    results = Path(results)
    profile = profile or results.name
    comparable = profile != "tiny" and not rehearsal
    stage_status = stage_statuses(results)
    bebr, bebr_note = bebr_rows(results, targets, comparable)
    ibc, ibc_note = ibc_rows(results, targets, comparable)
    md = ([REHEARSAL_LINE, ""] if rehearsal else []) + [f"# bitlens reproduction report — profile `{profile}`", ""]
    if profile == "tiny":
        md += ["The tiny profile runs on the synthetic Shapes world: the published numbers are shown beside ours "
               "for orientation only.", ""]
    md += ["## Stages", "", _fmt(pd.DataFrame(stage_status, columns=["stage", "status"])), ""]
    md += ["## BEBR — COCO image→text retrieval", "", _fmt(bebr), "", bebr_note, ""]
    # a rehearsal's orders are of random numbers (and claims' caveat names the tiny profile): none are stated
    orders = [] if rehearsal else bebr_order_sentences(results, targets, comparable)
    if orders:
        md += ["Order of the embeddings at each Recall@K (computed from the measured and published values):", ""]
        md += [f"- {x}" for x in orders] + [""]
    tbl = results / "12_bebr_eval" / "bebr_table.md"
    if tbl.exists():
        md += ["### Full BEBR table (both directions)", "", tbl.read_text().strip(), ""]
    md += ["## IBC — retrieval and interpretability", "", _fmt(ibc), "", ibc_note, ""]
    tbl = results / "22_ibc_eval" / "ibc_table.md"
    if tbl.exists():
        md += ["### Full IBC table", "", tbl.read_text().strip(), ""]
    researcher = researcher_sentences(results)
    if researcher:
        md += ["## Deep-hashing metrics, the CLIP protocol and baselines at equal bits", "",
               "Built from the numbers of 12_bebr_eval and 22_ibc_eval; their tables follow under "
               "'Tables from the stages'.", ""]
        md += [f"- {x}" for x in researcher] + [""]
    figs = []
    for stage, pattern in (("12_bebr_eval", "recall_vs_bits.png"), ("22_ibc_eval", "code_length_sweep.png")):
        figs += sorted((results / stage).glob(pattern))
    if figs:
        md += ["## Figures", ""] + [_figure(results, f) for f in figs] + [""]
    gallery, missing = dissect_figures(results)
    md += ["## Bit-interpretation gallery (21_ibc_dissect)", ""]
    md += [_figure(results, f) for f in gallery] or ([] if missing else ["_not run_"])
    if missing:
        # one stage's stale outputs should not cost the whole report: say so where the figures would be
        md += ["", f"**Missing:** 21_ibc_dissect/metrics.json lists {', '.join(missing)}, which are not there; "
               "re-run the stage (`run_all.py --only 21_ibc_dissect`)."]
    md += [""]
    listed, listed_md = report_tables(results)
    md += listed_md
    shown = {results / "12_bebr_eval" / "bebr_table.md", results / "22_ibc_eval" / "ibc_table.md", *figs, *gallery,
             *listed}
    md += other_outputs(results, shown)
    benches = latest_benchmarks(Path(benchmarks)) if benchmarks else []
    if benches:
        md += ["## Benchmarks (latest `make bench`)", ""]
        for name, df in benches:
            md += [f"### {name}", "", _fmt(df), ""]
    body_md = "\n".join(md)
    record = run_record(results)
    full_md = body_md + "\n## Run record\n\n" + record + "\n"
    io.write_text(results / "report.md", full_md)
    headline = "\n".join(([REHEARSAL_LINE, ""] if rehearsal else [])
                         + ["## BEBR (headline)", "", _fmt(bebr), "", bebr_note, ""]
                         + [f"- {x}" for x in orders] + ([""] if orders else [])
                         + ["## IBC (headline)", "", _fmt(ibc), "", ibc_note, ""])
    io.write_text(results / "90_report" / "headline.md", headline)
    io.write_text(results / "report.html", to_html(full_md, results, f"bitlens report — {profile}"))
    counts = {}
    for df in (bebr, ibc):
        for v in df["verdict"] if len(df) else []:
            key = v if not v.startswith("off by") else "off"
            counts[key] = counts.get(key, 0) + 1
    return {"verdicts": counts, "stages": dict(stage_status)}


def researcher_sentences(results: Path) -> list[str]:
    """The sentences 12_bebr_eval (baselines at equal bits, the CLIP protocol) and 22_ibc_eval (deep-hashing
    metrics) generated from their numbers, in that order; none for a stage that has not run."""
    m12, m22 = _metrics(results, "12_bebr_eval") or {}, _metrics(results, "22_ibc_eval") or {}
    keys = ((m12, "baseline_sentences"), (m12, "protocol_sentences"), (m22, "hashing_sentences"))
    return [str(x) for m, k in keys for x in m.get(k) or []]


def bebr_order_sentences(results: Path, targets: dict, comparable: bool) -> list[str]:
    m = _metrics(results, "12_bebr_eval")
    if not m or not m.get("rows"):
        return []
    measured = claims.recall_table(m["rows"], m["headline_ties"])
    return claims.recall_order_sentences(measured, targets["bebr"]["rows"], comparable=comparable)


def _caption_from_metrics(results: Path, stage: str, name: str) -> str | None:
    m = _metrics(results, stage) or {}
    for key in ("report_figures", "report_tables"):
        for entry in m.get(key) or []:
            if isinstance(entry, dict) and entry.get("file") == name and entry.get("caption"):
                return str(entry["caption"])
    return None


def figure_caption(results: Path, path: Path) -> str:
    """What a figure shows: the caption its stage gave it, else the stage's title and the figure's name in words."""
    stage = path.relative_to(results).parts[0]
    given = _caption_from_metrics(results, stage, path.name)
    if given:
        return given
    title = BY_NAME[stage].title if stage in BY_NAME else stage
    return f"{title} — {path.stem.replace('_', ' ')}"


def _figure(results: Path, path: Path) -> str:
    caption = " ".join(figure_caption(results, path).replace("[", "(").replace("]", ")").split())
    return f"![{caption}]({path.relative_to(results)})"


def report_tables(results: Path) -> tuple[list[Path], list[str]]:
    """The tables stages list under `report_tables` in their metrics.json ({"file", "caption"}), stage by stage."""
    shown, md = [], []
    for s in STAGES:
        entries = (_metrics(results, s.name) or {}).get("report_tables") or []
        for e in entries:
            f = results / s.name / str(e.get("file", "")) if isinstance(e, dict) else None
            if f is None or not f.is_file():
                md += [f"**Missing:** {s.name}/metrics.json lists the table `{e}`, which is not there; "
                       f"re-run the stage (`run_all.py --only {s.name}`).", ""]
                continue
            text = f.read_text().strip()
            caption = str(e.get("caption") or "")
            if caption and text.endswith(caption):  # the heading carries it: once is enough
                text = text[:-len(caption)].rstrip()
            md += [f"### {caption or f.stem.replace('_', ' ')} ({s.name})", "", text, ""]
            shown.append(f)
    return shown, (["## Tables from the stages", ""] + md) if md else []


def stage_statuses(results: Path) -> list[tuple[str, str]]:
    """ran / not run from the outputs; a failure recorded in the run manifest overrides "ran", since the numbers
    shown are then those of an older run. (ran vs cached is left to the run record: it changes between two runs.)"""
    man = results / "run_manifest.json"
    recorded = json.loads(man.read_text()).get("stages", {}) if man.exists() else {}
    out = []
    for s in STAGES:
        if s.name == "90_report":
            continue
        status = "ran" if (results / s.name / "metrics.json").exists() else "not run"
        failed = recorded.get(s.name, {}).get("status")
        if failed in ("failed", "interrupted"):
            status = f"{failed} (outputs of an earlier run)" if status == "ran" else failed
        out.append((s.name, status))
    return out


def dissect_figures(results: Path) -> tuple[list[Path], list[str]]:
    """The figures 21_ibc_dissect lists in its metrics.json (in that order; else its PNGs by name), and the listed
    ones that are missing."""
    folder = results / "21_ibc_dissect"
    m = _metrics(results, "21_ibc_dissect")
    if m and m.get("figures"):
        return ([folder / f for f in m["figures"] if (folder / f).exists()],
                [f for f in m["figures"] if not (folder / f).exists()])
    return sorted(folder.glob("*.png")), []


def other_outputs(results: Path, shown: set) -> list[str]:
    """Every other table (*.md) and figure (*.png) a stage left at the top of its folder, stage by stage."""
    out = []
    for s in STAGES:
        if s.name == "90_report":
            continue
        folder = results / s.name
        files = sorted(p for p in folder.glob("*") if p.suffix in (".md", ".png") and p not in shown) \
            if folder.is_dir() else []
        if not files:
            continue
        out += [f"### {s.title} ({s.name})", ""]
        for f in files:
            if f.suffix == ".png":
                out += [_figure(results, f), ""]
            else:
                out += [f"**{f.stem.replace('_', ' ')}**", "", f.read_text().strip(), ""]
    return (["## Other tables and figures, by stage", ""] + out) if out else []


def run_record(results: Path) -> str:
    out = []
    man = results / "run_manifest.json"
    if man.exists():
        m = json.loads(man.read_text())
        dirty = m.get("git_dirty")
        out += [f"- git commit: `{m.get('git_commit')}`"
                + (" with uncommitted changes" if dirty else " (clean checkout)" if dirty is False else ""),
                f"- device: {m.get('device')}", f"- seed: {m.get('seed')}",
                f"- run started: {m['started']}" if m.get("started") else "- run started: unknown",
                "- packages: " + ", ".join(f"{k} {v}" for k, v in m.get("packages", {}).items()), "",
                "Seconds per stage in this run (cached stages: the seconds of the run that made their results; "
                "`running` is this report):", "",
                _fmt(_stage_times(m.get("stages", {})))]
        # a failure message spans many lines: a table cell cannot hold it
        for name, v in m.get("stages", {}).items():
            if v.get("detail"):
                out += ["", f"<details><summary>{name}: {v.get('status')}</summary>", "", "```",
                        str(v["detail"]).strip(), "```", "", "</details>"]
    p = results / "params.resolved.yaml"
    if p.exists():
        out += ["", "<details><summary>resolved params</summary>", "", "```yaml", p.read_text().strip(), "```",
                "", "</details>"]
    return "\n".join(out) or "_(no run manifest)_"


def _cell_class(text: str) -> str:
    try:
        float(text)
        return " class='n'"
    except ValueError:
        # verdicts are the point of the tables: make them stand out
        return (" class='ok'" if text == "reproduced" else " class='off'" if text.startswith("off by")
                else " class='na'" if text in ("not run", SYNTHETIC, "no published value") else "")


def _stage_times(stages: dict) -> pd.DataFrame:
    def secs(v):
        return "—" if v is None else f"{float(v):.1f}"
    rows = [{"stage": k, "status": v.get("status", "?"),
             "seconds": secs(None if v.get("status") in ("not run", "running") else v.get("seconds")),
             "last run (s)": secs(v.get("last_run_seconds", v.get("seconds") if v.get("status") == "ran" else None)),
             "detail": (str(v["detail"]).strip().splitlines() or [""])[0][:120] if v.get("detail") else ""}
            for k, v in stages.items()]
    df = pd.DataFrame(rows)
    df.attrs["preformatted"] = True
    return df


def to_html(md: str, base: Path, title: str) -> str:
    """Markdown (tables, headings, images, lists, the run record's <details>) → one self-contained HTML page:
    rendered by mistune, with every image embedded and numbers and verdicts marked in the tables."""
    import mistune

    class Page(mistune.HTMLRenderer):
        def image(self, text, url, title=None):
            p = base / url
            if not p.exists():
                return ""
            return (f"<figure><img alt='{html.escape(text)}' src='{_img(p)}'><figcaption>{text}</figcaption>"
                    f"</figure>")

        def paragraph(self, text):
            return text + "\n" if text.startswith("<figure") and text.endswith("</figure>") else f"<p>{text}</p>\n"

        def table_cell(self, text, align=None, head=False):
            return f"<th>{text}</th>" if head else f"<td{_cell_class(text.strip())}>{text}</td>"

    body = mistune.create_markdown(renderer=Page(escape=False), plugins=["table"])(md)
    css = ("body{font-family:system-ui,sans-serif;max-width:1200px;margin:24px auto;padding:0 16px;color:#222}"
           "table{border-collapse:collapse;margin:8px 0;font-size:13px}td,th{border:1px solid #ccc;padding:3px 7px}"
           "th{background:#f2f2f2}td.n{text-align:right;font-variant-numeric:tabular-nums}"
           "td.ok{color:#17692c;font-weight:600}td.off{color:#a61b1b;font-weight:600}td.na{color:#777}"
           "code{background:#f2f2f2;padding:0 3px;border-radius:3px}h2{border-bottom:1px solid #ddd;margin-top:32px}"
           "img{max-width:min(100%,1000px)}pre{background:#f7f7f7;padding:8px;font-size:12px;"
           "overflow:auto}figure{margin:12px 0}figcaption{font-size:12px;color:#666}")
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title><style>{css}"
            f"</style></head><body>{body}</body></html>\n")
