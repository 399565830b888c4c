"""The house's shape holds (docs/architecture.md#module-map): a few modules at the root of
`pipeline/`, stage packages that import only what their docstring allows, no import circle (imports
inside functions and under TYPE_CHECKING count), no module importing another's private names, and
a module map that names every module."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import grimp
import pytest

ROOT = Path(__file__).resolve().parents[1]
PIPELINE = ROOT / "pipeline"
PROJECT = ("pipeline", "tests", "bench")


@pytest.fixture(scope="module")
def graph() -> grimp.ImportGraph:
    return grimp.build_graph(*PROJECT, cache_dir=None)  # every import: lazy ones and TYPE_CHECKING too


def test_at_most_six_modules_at_the_root():
    root = sorted(p.name for p in PIPELINE.glob("*.py"))
    assert len(root) <= 6, root


def cycles(graph: grimp.ImportGraph) -> list[list[str]]:
    """Every strongly connected set of more than one module (Tarjan), and modules importing themselves."""
    imports = {m: sorted(graph.find_modules_directly_imported_by(m)) for m in sorted(graph.modules)}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []
    for start in imports:
        if start in index:
            continue
        work = [(start, iter(imports[start]))]
        index[start] = low[start] = len(index)
        stack.append(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is None:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    part = stack[stack.index(node) :]
                    del stack[stack.index(node) :]
                    if len(part) > 1 or node in imports[node]:
                        found.append(sorted(part))
            elif child not in index:
                index[child] = low[child] = len(index)
                stack.append(child)
                work.append((child, iter(imports[child])))
            elif child in stack:
                low[node] = min(low[node], index[child])
    return found


def test_no_import_circles(graph):
    assert cycles(graph) == []


def test_the_circle_check_finds_a_lazy_circle():
    g = grimp.ImportGraph()
    for a, b in (("p.a", "p.b"), ("p.b", "p.c"), ("p.c", "p.a"), ("p.c", "p.d")):
        g.add_import(importer=a, imported=b)
    assert cycles(g) == [["p.a", "p.b", "p.c"]]


def ours(module: str | None, level: int = 0) -> bool:
    return level > 0 or (module or "").split(".")[0] in PROJECT


def private_imports(path: Path) -> list[str]:
    """`from X import _name` (and `import X._name`) of another project module's private names."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and ours(node.module, node.level):
            found += [f"{node.lineno}: {a.name}" for a in node.names if a.name.startswith("_")]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names if ours(a.name)]
            found += [f"{node.lineno}: {n}" for n in names if any(p.startswith("_") for p in n.split("."))]
    return found


def test_no_module_imports_another_modules_private_names():
    bad = {
        str(p.relative_to(ROOT)): found
        for d in PROJECT
        for p in sorted((ROOT / d).rglob("*.py"))
        if (found := private_imports(p))
    }
    assert bad == {}


def test_the_private_name_check_can_fail(tmp_path):
    f = tmp_path / "m.py"
    f.write_text(
        "from .store import _HISTORY, OutputStore\nfrom . import cpu_torch\nimport pipeline._b\n"
        "from granite_speech.loader import _load\n"  # another project's: not ours to rename
    )
    assert private_imports(f) == ["1: _HISTORY", "3: pipeline._b"]


def packages() -> list[str]:
    return sorted(
        ".".join(p.parent.relative_to(ROOT).parts) for p in PIPELINE.rglob("__init__.py") if p.parent != PIPELINE
    )


def allowed(package: str) -> list[str]:
    """What a package's docstring says it may import: `May import: a, b.c, ...`."""
    doc = ast.get_docstring(ast.parse((ROOT / package.replace(".", "/") / "__init__.py").read_text())) or ""
    m = re.search(r"^May import: (.*?)\.?$", doc, re.M)
    assert m, f"{package}/__init__.py's docstring does not say what it may import (`May import: ...`)"
    return [f"pipeline.{name.strip()}" for name in m.group(1).split(",")]


@pytest.mark.parametrize("package", packages())
def test_a_package_imports_only_what_its_docstring_allows(graph, package):
    ok = allowed(package)
    bad = sorted(
        f"{importer} -> {imported}"
        for importer in graph.find_descendants(package) | {package}
        for imported in graph.find_modules_directly_imported_by(importer)
        if imported.startswith("pipeline.")
        and not (imported == package or imported.startswith(package + "."))
        and not any(imported == a or imported.startswith(a + ".") for a in ok)
    )
    assert bad == [], f"{package} imports what its docstring does not list: {bad}"


def test_the_module_map_names_every_module():
    doc = (ROOT / "docs" / "architecture.md").read_text()
    table = doc.split("\n## Module map\n", 1)[1].split("\n## ", 1)[0]
    named = {n for n in re.findall(r"`([\w/]+(?:\.py|/))`", table) if not n.startswith(("tests/", "bench/"))}
    modules = {
        p.relative_to(PIPELINE).as_posix()
        if p.name != "__init__.py"
        else p.parent.relative_to(PIPELINE).as_posix() + "/"
        for p in PIPELINE.rglob("*.py")
        if p.parent != PIPELINE or p.name != "__init__.py"
    }
    assert sorted(modules - named) == [], "docs/architecture.md's module map misses these"
    assert sorted(named - modules - {"data/", "pipeline/", "__init__.py"}) == [], (
        "the map names modules that do not exist"
    )
