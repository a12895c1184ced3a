"""`report:` — the reproduction report."""
from bitlens.schema.fields import Field

REPORT = {
    "enabled": Field(bool, True, help="build the report"),
    "targets": Field(str, "", help="the published numbers (empty: params/paper_targets.yaml)"),
    "benchmarks": Field(str, "benchmarks/results", help="folder of benchmark CSVs quoted in the report"),
    "rehearsal": Field(bool, False, help="the run is a rehearsal on bitlens.replica's random files (make rehearse): "
                                         "the report's first line says its numbers are meaningless"),
}
