"""The package's imports point down: no module of lib/bitlens reaches itself through its imports, counting the
imports inside function bodies too (a lazy import hides a circle; it does not remove it)."""
import ast

from conftest import ROOT

LIB = ROOT / "lib"


def import_graph(lib=LIB) -> dict[str, set[str]]:
    """{module: modules of bitlens it imports}, read from the source."""
    mods = {}
    for path in (lib / "bitlens").rglob("*.py"):
        parts = path.relative_to(lib).with_suffix("").parts
        mods[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    graph = {m: set() for m in mods}
    for mod, path in mods.items():
        package = mod if path.name == "__init__.py" else mod.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                graph[mod] |= {a.name for a in node.names if a.name in mods}
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    up = package.split(".")[:len(package.split(".")) - node.level + 1]
                    base = ".".join(up + ([base] if base else []))
                for a in node.names:
                    target = f"{base}.{a.name}"
                    if target in mods:
                        graph[mod].add(target)
                    elif base in mods and base != mod:
                        graph[mod].add(base)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (or a module importing itself)."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1 or v in graph[v]:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_the_import_graph_of_the_package_has_no_circle():
    found = cycles(import_graph())
    assert found == [], "import circles: " + "; ".join(" ↔ ".join(c) for c in found)


def test_the_circle_finder_sees_a_circle_through_a_function_level_import(tmp_path):
    pkg = tmp_path / "bitlens"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from bitlens.sub import b\n")
    (pkg / "sub" / "b.py").write_text("def f():\n    from ..c import g\n")
    (pkg / "c.py").write_text("import bitlens.a\n")
    (pkg / "d.py").write_text("from bitlens import c\n")
    graph = import_graph(tmp_path)
    assert graph["bitlens.sub.b"] == {"bitlens.c"} and graph["bitlens.d"] == {"bitlens.c"}
    assert cycles(graph) == [["bitlens.a", "bitlens.c", "bitlens.sub.b"]]


def test_the_module_map_in_docs_lists_every_module_and_nothing_else():
    import re

    listed = set(re.findall(r"^\| `(bitlens[\w.]*)` \|", (ROOT / "docs" / "design.md").read_text(), re.M))
    modules = set(import_graph())
    assert modules - listed == set(), "modules missing from docs/design.md's module map"
    assert listed - modules == set(), "docs/design.md's module map names modules that do not exist"


def test_the_science_never_imports_the_stage_layer():
    """Params become plain arguments in the stage modules only: nothing below them reaches up to a stage module,
    the notebook helpers, the pipeline or the report (docs/design.md, Architecture)."""
    top = ("bitlens.stage", "bitlens.stages.", "bitlens.pipeline", "bitlens.report", "bitlens.preflight")
    science = ("bitlens.bebr", "bitlens.ibc", "bitlens.dissect", "bitlens.search", "bitlens.data", "bitlens.codes",
               "bitlens.metrics", "bitlens.encoders", "bitlens.checkpoint", "bitlens.figures", "bitlens.widgets")
    graph = import_graph()
    up = {m: sorted(t for t in graph[m] if t.startswith(top) and t != "bitlens.stages")
          for m in graph if m.startswith(science)}
    assert {m: t for m, t in up.items() if t} == {}
