#!/usr/bin/env python
"""Put notebooks back in their committed form after editing them in JupyterLab.

    python tools/clean_notebooks.py notebooks/*.ipynb      # rewrite in place
    python tools/clean_notebooks.py --check notebooks/*.ipynb  # exit 1 and name the files that need it

Committed notebooks carry no outputs, no execution counts and only the `bitlens` kernel metadata; JupyterLab adds
outputs, counts and interpreter details on every save. Code and markdown are left exactly as they are (stage
fingerprints read code cells only, so cleaning never makes a stage re-run).
"""
from __future__ import annotations

import argparse
import copy
import sys
from pathlib import Path

import nbformat

KERNEL_METADATA = {"kernelspec": {"display_name": "Python (bitlens)", "language": "python", "name": "bitlens"},
                   "language_info": {"name": "python"}}


def clean(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    nb = copy.deepcopy(nb)
    nb.metadata = nbformat.from_dict(KERNEL_METADATA)
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
        cell.metadata = nbformat.from_dict({k: v for k, v in cell.get("metadata", {}).items() if k == "tags"})
    return nb


def dumps(nb: nbformat.NotebookNode) -> str:
    return nbformat.writes(nb) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python tools/clean_notebooks.py", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("notebooks", nargs="+", type=Path, help="notebook files")
    ap.add_argument("--check", action="store_true", help="only report notebooks that are not clean (exit 1)")
    args = ap.parse_args(argv)
    dirty = []
    for path in args.notebooks:
        text = path.read_text(encoding="utf-8")
        cleaned = dumps(clean(nbformat.reads(text, as_version=4)))
        if cleaned != text:
            dirty.append(path)
            if not args.check:
                path.write_text(cleaned, encoding="utf-8")
    if args.check and dirty:
        print("not clean (run python tools/clean_notebooks.py on them): " + ", ".join(map(str, dirty)),
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
