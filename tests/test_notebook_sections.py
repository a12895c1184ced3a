"""Notebooks read like paper sections: a title, the parameters, one call into bitlens.stages, and display cells.
Read from the committed notebooks, so logic creeping back into a notebook fails here (#19)."""
import ast

import nbformat
import pytest

from conftest import ROOT

NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
MAX_LINES, MAX_TOTAL = 40, 300
DISPLAY_CALLS = {"display", "print", "Markdown", "HTML", "Image"}


def code_lines(nb) -> list[str]:
    """Non-blank, non-comment lines of the code cells."""
    return [line for c in nb.cells if c.cell_type == "code" for line in c.source.splitlines()
            if line.strip() and not line.strip().startswith("#")]


def _tree(nb) -> ast.Module:
    return ast.parse("\n".join(c.source for c in nb.cells if c.cell_type == "code"))


def _is_display(stmt: ast.stmt) -> bool:
    """A display call, or a choice between display calls (a loop that shows some of a stage's figures)."""
    if isinstance(stmt, ast.If):
        return all(_is_display(s) for s in stmt.body + stmt.orelse)
    return (isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Call)
            and isinstance(stmt.value.func, ast.Name) and stmt.value.func.id in DISPLAY_CALLS)


def logic_in(nb) -> list[str]:
    """What a section must not hold: definitions, lambdas, loops or comprehensions that compute."""
    found = []
    for node in ast.walk(_tree(nb)):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda)):
            found.append(f"{type(node).__name__} at line {node.lineno}")
        elif isinstance(node, (ast.For, ast.While)) and not all(_is_display(s) for s in node.body):
            found.append(f"a loop that computes at line {node.lineno}")
    return found


def stage_calls(nb) -> list[str]:
    """The `<module>.run(stage …)` calls of a notebook."""
    return [ast.unparse(n.func) for n in ast.walk(_tree(nb))
            if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute) and n.func.attr == "run"
            and n.args and isinstance(n.args[0], ast.Name) and n.args[0].id == "stage"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_a_notebook_is_a_title_its_parameters_one_stage_call_and_display(path):
    nb = nbformat.read(path, as_version=4)
    assert nb.cells[0].cell_type == "markdown" or any(
        c.cell_type == "markdown" and c.source.lstrip().startswith("# ") for c in nb.cells), "no title"
    assert any("parameters" in c.metadata.get("tags", []) for c in nb.cells if c.cell_type == "code")
    assert logic_in(nb) == []
    assert len(stage_calls(nb)) == 1, f"one call into bitlens.stages expected, found {stage_calls(nb)}"
    assert len(code_lines(nb)) < MAX_LINES


def test_the_notebooks_hold_at_most_300_code_lines_together():
    total = sum(len(code_lines(nbformat.read(p, as_version=4))) for p in NOTEBOOKS)
    assert total <= MAX_TOTAL


def test_the_section_rules_see_logic():
    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell("f = lambda x: x\nfor r in rows:\n    total += r\nfor t in tables:\n    if t:\n"
                                  "        display(t)"),
        nbformat.v4.new_code_cell("def g():\n    pass\nout = ibc_eval.run(stage, force=force)")])
    assert sorted(logic_in(nb)) == ["FunctionDef at line 7", "Lambda at line 1", "a loop that computes at line 2"]
    assert stage_calls(nb) == ["ibc_eval.run"]
    assert len(code_lines(nb)) == 9
