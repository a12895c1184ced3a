"""Stage 90_report: the reproduction report of a profile's results, beside the published numbers."""
from __future__ import annotations

from bitlens import report, targets
from bitlens.stage import Section, Stage


def run(stage: Stage) -> Section:
    """Writes report.md, report.html and headline.md under the results folder; returns the headline (markdown),
    one sentence on the verdicts, one on the stages that did not run, and where the report is."""
    P = stage.params
    summary = report.build_report(stage.results, targets.load_targets(P["report"]["targets"], stage.root),
                                  stage.path(P["report"]["benchmarks"]), stage.profile,
                                  rehearsal=P["report"]["rehearsal"])
    sentences = ["verdicts: " + ", ".join(f"{k}: {v}" for k, v in sorted(summary["verdicts"].items()))]
    not_run = [s for s, status in summary["stages"].items() if status != "ran"]
    if not_run:
        sentences.append("stages not run or failed: " + ", ".join(not_run))
    sentences.append(f"report: {stage.results / 'report.html'}")
    stage.write_metrics(summary)
    return Section(tables={"headline": (stage.dir / "headline.md").read_text()}, sentences=sentences,
                   metrics=summary)
