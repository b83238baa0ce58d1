"""No import cycle between geobench's modules, function-level imports included.

A cycle hidden inside a function still ties two modules together: neither can be read,
tested or moved alone. Shared pieces go downwards, into a module both sides import.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "geobench"


def module_names(root: Path = PACKAGE) -> dict[str, Path]:
    """Dotted module name -> file, for every .py file under the package."""
    names = {}
    for path in sorted(root.rglob("*.py")):
        parts = list(path.relative_to(root.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        names[".".join(parts)] = path
    return names


def imports_of(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The geobench modules `name` imports anywhere in its file (module or function level).

    `from P import x` counts as importing P.x when that is a module, else P; the parent
    packages Python initialises on the way are not counted (a package's __init__ importing
    its own submodules is the normal face of a package, not a cycle).
    """
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - node.level + 1]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            for alias in node.names:
                sub = f"{source}.{alias.name}"
                found.add(sub if sub in modules else source)
    return {m for m in found if m in modules and m != name}


def import_graph(root: Path = PACKAGE) -> dict[str, set[str]]:
    modules = module_names(root)
    return {name: imports_of(name, path, modules) for name, path in modules.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(found)


def test_no_import_cycle_in_geobench():
    found = cycles(import_graph())
    assert not found, "import cycles (put what both sides use in a module both import):\n" + \
        "\n".join(" <-> ".join(c) for c in found)


def _write(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root / "pkg"


@pytest.mark.parametrize("files,expected", [
    # a function-level import closes the loop
    ({"pkg/__init__.py": "", "pkg/a.py": "from pkg.b import f\n",
      "pkg/b.py": "def f():\n    from pkg.a import g\n"}, [["pkg.a", "pkg.b"]]),
    # relative imports, three modules round
    ({"pkg/__init__.py": "", "pkg/sub/__init__.py": "", "pkg/sub/a.py": "from . import b\n",
      "pkg/sub/b.py": "from ..c import x\n", "pkg/c.py": "import pkg.sub.a\n"},
     [["pkg.c", "pkg.sub.a", "pkg.sub.b"]]),
    # a package face importing its submodules, which import a sibling: no cycle
    ({"pkg/__init__.py": "from pkg.a import f\n", "pkg/a.py": "from pkg.b import g\n",
      "pkg/b.py": "g = 1\n"}, []),
    # importing the package itself from its submodule is a cycle with its face
    ({"pkg/__init__.py": "from pkg.a import f\n", "pkg/a.py": "def f():\n    from pkg import b\n"
      "    from pkg import g\n", "pkg/b.py": ""}, [["pkg", "pkg.a"]]),
])
def test_cycle_finder(tmp_path, files, expected):
    assert cycles(import_graph(_write(tmp_path, files))) == expected
