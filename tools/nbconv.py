#!/usr/bin/env python
"""Author notebooks as percent-format scripts and convert them (dev tool).

    python tools/nbconv.py to-ipynb draft.py notebooks/12_bebr_eval.ipynb
    python tools/nbconv.py to-py notebooks/12_bebr_eval.ipynb draft.py

`# %%` starts a code cell, `# %% [markdown]` a markdown cell (its lines start
with `# `). The first code cell is tagged `parameters` for papermill. Outputs
are never stored: the committed notebooks are clean.
"""
from __future__ import annotations

import sys
from pathlib import Path

import nbformat


def py_to_nb(text: str) -> nbformat.NotebookNode:
    cells, kind, buf = [], None, []

    def flush():
        if kind is None:
            return
        src = "\n".join(buf).strip("\n")
        if kind == "markdown":
            src = "\n".join(l[2:] if l.startswith("# ") else l.lstrip("#") for l in src.splitlines())
            cells.append(nbformat.v4.new_markdown_cell(src))
        elif src:
            cells.append(nbformat.v4.new_code_cell(src))

    for line in text.splitlines():
        if line.startswith("# %%"):
            flush()
            kind, buf = ("markdown" if "[markdown]" in line else "code"), []
        else:
            buf.append(line)
    flush()
    first_code = next((c for c in cells if c.cell_type == "code"), None)
    if first_code is not None:
        first_code.metadata["tags"] = ["parameters"]
    nb = nbformat.v4.new_notebook(cells=cells)
    nb.metadata["kernelspec"] = {"name": "bitlens", "display_name": "Python (bitlens)", "language": "python"}
    nb.metadata["language_info"] = {"name": "python"}
    for i, c in enumerate(nb.cells):
        c["id"] = f"cell-{i:02d}"
    return nb


def nb_to_py(nb) -> str:
    out = []
    for c in nb.cells:
        if c.cell_type == "markdown":
            out.append("# %% [markdown]\n" + "\n".join("# " + l if l else "#" for l in c.source.splitlines()))
        else:
            out.append("# %%\n" + c.source)
    return "\n\n".join(out) + "\n"


def main(argv):
    if len(argv) != 3 or argv[0] not in ("to-ipynb", "to-py"):
        print(__doc__)
        return 2
    src, dst = Path(argv[1]), Path(argv[2])
    if argv[0] == "to-ipynb":
        nbformat.write(py_to_nb(src.read_text()), dst)
    else:
        dst.write_text(nb_to_py(nbformat.read(src, as_version=4)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
