"""`make bench`: every CPU benchmark (and the CUDA one when a GPU is present), one ratio table."""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
import bench_dissect  # noqa: E402
import bench_metrics  # noqa: E402
import bench_search  # noqa: E402
import cuda_search  # noqa: E402
from common import show  # noqa: E402

if __name__ == "__main__":
    rows = bench_search.main([]) + bench_metrics.main([])
    rows += bench_dissect.main(sys.argv[1:])  # e.g. --images 500 for a quick run
    rows += cuda_search.main([])
    print("\n== all benchmarks ==")
    print(show(rows))
    unmet = [r["benchmark"] for r in rows if r["met"] == "NO"]
    print("targets not met: " + (", ".join(unmet) if unmet else "none"))
