"""`make bench`: every benchmark script present (CPU; the GPU one skips without CUDA), one table of all rows.

Each script measures bitlens and its peers in the same run and writes results/<name>__<hardware>.csv;
`readme_table.py` then renders those CSVs into the README.
"""
from __future__ import annotations

import importlib
import sys
import time
from pathlib import Path

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))
from common import loadavg, machine, show, show_goals  # noqa: E402

SCRIPTS = ["bench_search", "bench_metrics", "bench_dissect", "cuda_search"]


def main() -> int:
    rows = []
    m = machine()
    print(f"machine class {m['machine_class']}: {m['cpu_model']} ({m['cpu_flags'] or 'no avx2'}); bitlens kernel "
          f"{m['kernel']}; faiss {m['faiss_version']} ({m['faiss_compile']}); BLAS numpy {m['blas_numpy']}, "
          f"faiss {m['blas_faiss']}; thread variables: {m['threads_env']}")
    for name in SCRIPTS:
        if not (HERE / f"{name}.py").exists():
            continue
        t0 = time.perf_counter()
        print(f"\n== {name} (load average {loadavg()}) ==", flush=True)
        rows += importlib.import_module(name).main([]) or []
        print(f"({name}: {time.perf_counter() - t0:.0f} s)")
    print(f"\n== all benchmarks (load average now {loadavg()}) ==")
    print(show(rows))
    print()
    print(show_goals(rows))
    unmet = [r["benchmark"] for r in rows if r["met"] == "no"]
    print("goals not met: " + ("; ".join(unmet) if unmet else "none"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
