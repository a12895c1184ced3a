"""`report:` — the reproduction report."""
from bitlens.config import Field

REPORT = {
    "enabled": Field(bool, True, help="build the report"),
    "targets": Field(str, "", help="paper_targets.yaml (empty: ../shared/paper_targets.yaml, else params/paper_targets.yaml)"),
    "benchmarks": Field(str, "benchmarks/results", help="folder of benchmark CSVs quoted in the report"),
}
