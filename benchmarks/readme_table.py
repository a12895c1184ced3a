"""Regenerate the README's benchmark section from the CSVs in benchmarks/results (never typed by hand).

Writes between the markers `<!-- bench:start -->` and `<!-- bench:end -->` of README.md, one section per machine
class (the part of a CSV's name after `__`): the machine as its rows recorded it (CPU model and flags, the kernel
bitlens chose, faiss version and compile options, the BLAS core types), the issue's goals with the limits of that
class's ISA (AVX-512 VPOPCNTDQ or AVX2) and met / NOT MET / NOT MEASURED, the unmet goals by name, one table per
CSV of result rows, and the SDC-claim table with its sentence, recomputed by bitlens.speed.claim_sentence from the
stored times. `--check` exits 1 when the README is out of date.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))
from common import BASE_COLUMNS, MACHINE_COLUMNS, RESULTS, goal_status, isa_class, read  # noqa: E402

START, END = "<!-- bench:start -->", "<!-- bench:end -->"
STAGES_START, STAGES_END = "<!-- stages:start -->", "<!-- stages:end -->"


def _value(v, unit):
    return "—" if v in ("", None) else f"{float(v):.4g} {unit}"


def rows_table(rows: list[dict]) -> list[str]:
    out = ["| benchmark | bitlens | peer | ratio | × floor | goal | met | load | note |",
           "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        peer = "—" if not r["peer"] else f"{r['peer']}: {_value(r['peer_value'], r['unit'])}"
        ratio = "—" if r["ratio"] in ("", None) else f"{float(r['ratio']):.3g}"
        fm = r.get("floor_multiple") or ""
        fm = "—" if fm == "" else f"{float(fm):.3g}"
        out.append(f"| {r['benchmark']} | {r['bitlens']}: {_value(r['bitlens_value'], r['unit'])} | {peer} | "
                   f"{ratio} | {fm} | {r['goal'] or '—'} | {r['met'] or '—'} | {r['loadavg'] or '—'} | "
                   f"{r['note']} |")
    return out


def machine_lines(rows: list[dict]) -> list[str]:
    """The machine as the rows recorded it; every distinct record when the rows disagree."""
    recs = []
    for r in rows:
        rec = tuple(r.get(c) or "" for c in MACHINE_COLUMNS)
        if any(rec) and rec not in recs:
            recs.append(rec)
    if not recs:
        return ["_Machine not recorded: these CSVs predate the machine columns (CPU flags, kernel, faiss and BLAS "
                "builds unknown); re-run `make bench` on this machine to replace them._"]
    out = []
    for rec in recs:
        m = dict(zip(MACHINE_COLUMNS, rec))
        out.append(f"- CPU `{m['cpu_model']}`, flags: {m['cpu_flags'] or 'none of avx2/avx512f/avx512_vpopcntdq'}; "
                   f"bitlens kernel **{m['kernel']}**; faiss {m['faiss_version']} (`{m['faiss_compile']}`); "
                   f"BLAS numpy: {m['blas_numpy']}; BLAS faiss: {m['blas_faiss']}; thread variables: "
                   f"{m['threads_env']}")
    return out


def goals_lines(rows: list[dict]) -> list[str]:
    recorded = [r for r in rows if r.get("cpu_flags") is not None and r.get("machine_class")]
    isa = isa_class((recorded[0]["cpu_flags"] or "").split()) if recorded else None
    head = (f"**Goals on this class** (ISA class `{isa}`: "
            f"{'the AVX-512 VPOPCNTDQ limits' if isa == 'avx512' else 'the AVX2 limits'})" if isa else
            "**Goals on this class** (ISA not recorded: shown with the AVX2 limits these rows were judged by)")
    out = [head, "", "| goal | status | measured |", "|---|---|---|"]
    unmet, unmeasured = [], []
    for _, text, status, r in goal_status(rows, isa or "avx2"):
        shown = "**met**" if status == "met" else f"**{status.upper()}**"
        (unmet if status == "not met" else unmeasured if status == "not measured" else []).append(text)
        got = "—" if r is None else (f"{r['bitlens']} {_value(r['bitlens_value'], r['unit'])}" +
                                     (f" / {r['peer']} {_value(r['peer_value'], r['unit'])} = {float(r['ratio']):.3g}"
                                      if r["peer"] else "") + f" (load {r['loadavg']})")
        out.append(f"| {text} | {shown} | {got} |")
    out += ["", "Unmet goals on this class: " + ("; ".join(unmet) if unmet else "none") + ".",
            "", "Not measured on this class: " + ("; ".join(unmeasured) if unmeasured else "none") + "."]
    return out


def claim_table(path: Path) -> list[str]:
    from bitlens import speed

    df = pd.read_csv(path)
    out = ["| system | method | bits/item | bytes/item | items | queries | response | memory vs float |",
           "|---|---|---|---|---|---|---|---|"]
    for _, r in df.iterrows():
        mem = f"{r['memory vs float']:.3g}×" if "memory vs float" in df else "—"
        out.append(f"| {r['system']} | {r['method']} | {r['bits per item']} | {r['bytes per item']} | "
                   f"{r['items']:,} | {r['queries']:,} | {r['response ms']:.4g} ms | {mem} |")
    return out + ["", speed.claim_sentence(df)]


def throughput_table(path: Path) -> list[str]:
    import json

    j = json.loads(path.read_text())
    out = ["| measurement | result |", "|---|---|"]
    for name, r in j.get("bebr", {}).items():
        out.append(f"| BEBR {name} head training, COCO-sized synthetic features | {r['pairs_per_s']:,} pairs/s "
                   f"({r['seconds']} s) |")
    if "ibc" in j:
        r = j["ibc"]
        out.append(f"| IBC AlexNet, K = 256, {r['iterations']} iterations at batch 200 | {r['it_per_s']} it/s "
                   f"({r['images_per_s']:,} images/s; 50,000 iterations ≈ {r['hours_for_50k_iterations']} h) |")
    return out


def render(results: Path = RESULTS) -> str:
    lines = [START, "", "_Generated by `benchmarks/readme_table.py` from `benchmarks/results/*.csv`; "
             "`make bench` re-measures and regenerates the section of the machine class it runs on._", ""]
    classes: dict[str, list[Path]] = {}
    for path in sorted(results.glob("*__*.csv")):
        if path.stem.startswith("tiny_stages__"):
            continue  # the stage-time table has its own section (render_stages)
        classes.setdefault(path.stem.split("__", 1)[1], []).append(path)
    for hw, paths in classes.items():
        every = []
        body = []
        for path in paths:
            name = path.stem.split("__", 1)[0]
            if name == "sdc_claim":
                body += [f"**The BEBR claim: SDC vs Hamming vs float at equal N** (`{path.name}`)", ""]
                body += claim_table(path) + [""]
                continue
            rows = read(path)
            if not rows or set(BASE_COLUMNS) - set(rows[0]):
                body += [f"`{path.name}`: not in the current result-row format; re-run its benchmark.", ""]
                continue
            every += rows
            body += [f"**{name}** (`{path.name}`)", ""] + rows_table(rows) + [""]
        lines += [f"### Machine class `{hw}`", ""] + machine_lines(every) + [""] + goals_lines(every) + [""] + body
    for path in sorted(results.glob("gpu_throughput__*.json")):
        hw = path.stem.split("__", 1)[1]
        lines += [f"**GPU training throughput** (`{path.name}`, {hw}; no peer)", ""] + throughput_table(path) + [""]
    lines += [END]
    return "\n".join(lines)


def render_stages(results: Path = RESULTS) -> str:
    """The tiny profile's stage times, from the rows benchmarks/stage_times.py recorded."""
    import stage_times

    lines = [STAGES_START, "", "_Generated by `benchmarks/readme_table.py` from the rows "
             "`benchmarks/stage_times.py` recorded of first runs._", ""]
    for path in sorted(results.glob("tiny_stages__*.csv")):
        hw = path.stem.split("__", 1)[1]
        lines += [f"**Newest first run of the tiny profile** (`{path.name}`, {hw})", ""]
        lines += stage_times.table(read(path)) + [""]
    return "\n".join(lines + [STAGES_END])


def _replace(text: str, start: str, end: str, body: str, readme: Path) -> str:
    if start not in text or end not in text:
        raise SystemExit(f"{readme}: markers {start} / {end} not found; add them where the table belongs")
    head, rest = text.split(start, 1)
    _, tail = rest.split(end, 1)
    return head + body + tail


def update(readme: Path, results: Path = RESULTS) -> tuple[str, str]:
    text = readme.read_text()
    new = _replace(text, START, END, render(results), readme)
    new = _replace(new, STAGES_START, STAGES_END, render_stages(results), readme)
    return text, new


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--readme", type=Path, default=HERE.parent / "README.md")
    ap.add_argument("--check", action="store_true", help="exit 1 if the README table is out of date")
    a = ap.parse_args(argv)
    old, new = update(a.readme)
    if a.check:
        print("README benchmark table is " + ("up to date" if old == new else "OUT OF DATE: run benchmarks/readme_table.py"))
        return 0 if old == new else 1
    if old != new:
        tmp = a.readme.with_suffix(".md.tmp")
        tmp.write_text(new)
        tmp.replace(a.readme)
    print(f"{a.readme}: benchmark table {'updated' if old != new else 'already up to date'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
