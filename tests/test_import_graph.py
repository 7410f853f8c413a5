"""Data flows one way: no two recoverkit modules import each other, directly or around a loop.

Only imports that run when a module is imported count (module level, including ``try`` and ``if`` blocks); an
import inside a function or under ``if TYPE_CHECKING:`` does not, since it cannot leave a module half-initialised.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import recoverkit

_IMPORTS = (ast.Import, ast.ImportFrom)


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _module_level_imports(
    body: list[ast.stmt], *, type_checking: bool = False
) -> Iterator[ast.Import | ast.ImportFrom]:
    for node in body:
        if isinstance(node, _IMPORTS):
            yield node
        elif isinstance(node, ast.If):
            if type_checking or not _is_type_checking(node.test):
                yield from _module_level_imports(node.body, type_checking=type_checking)
            yield from _module_level_imports(node.orelse, type_checking=type_checking)
        elif isinstance(node, ast.Try):
            for block in (node.body, node.orelse, node.finalbody, *(h.body for h in node.handlers)):
                yield from _module_level_imports(block, type_checking=type_checking)


def import_graph(root: Path, package: str, *, type_checking: bool = False) -> dict[str, set[str]]:
    """Module name -> the package's modules it imports at module level, for the package in ``root/package``
    (with ``type_checking``, also those imported under ``if TYPE_CHECKING:``)."""
    files: dict[str, Path] = {}
    for path in (root / package).rglob("*.py"):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        files[".".join(parts)] = path
    graph: dict[str, set[str]] = {}
    for name, path in files.items():
        here = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
        deps: set[str] = set()
        body = ast.parse(path.read_text(encoding="utf-8")).body
        for node in _module_level_imports(body, type_checking=type_checking):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                base = ".".join([*here[: len(here) - node.level + 1], node.module or ""]).strip(".")
                if not node.level:
                    base = node.module or ""
                # `from pkg import sub` needs the submodule; `from mod import name` needs the module.
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in files else base for a in node.names]
            deps.update(t for t in targets if t in files and t != name)
        graph[name] = deps
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected groups of more than one module (Tarjan's algorithm), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for dep in sorted(graph[node]):
            if dep not in index:
                visit(dep)
                low[node] = min(low[node], low[dep])
            elif dep in stack:
                low[node] = min(low[node], index[dep])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return sorted(found)


def test_recoverkit_modules_import_no_cycle() -> None:
    src = Path(recoverkit.__file__).parent.parent
    graph = import_graph(src, "recoverkit")
    assert len(graph) > 50  # the walk found the package, not an empty directory
    assert cycles(graph) == []


def test_types_follow_the_data_too() -> None:
    """Counting the imports made only for the type checker as well: a module's types never point back at a
    module that imports it (the last such loops, privacy -> engine and dispatch's facts writer -> delivery,
    were broken with a small Protocol and by giving StoreCall a home in _store_runner)."""
    src = Path(recoverkit.__file__).parent.parent
    assert cycles(import_graph(src, "recoverkit", type_checking=True)) == []


def test_a_cycle_through_a_relative_import_is_found(tmp_path: Path) -> None:
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from .sub import b\n")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "sub" / "b.py").write_text("try:\n    from ..c import x\nexcept ImportError:\n    pass\n")
    (pkg / "c.py").write_text("import pkg.a\n")
    assert cycles(import_graph(tmp_path, "pkg")) == [["pkg.a", "pkg.c", "pkg.sub.b"]]


def test_imports_inside_functions_and_under_type_checking_do_not_count(tmp_path: Path) -> None:
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from . import b\n")
    (pkg / "b.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .a import x\n\ndef f():\n    from . import a\n"
    )
    assert import_graph(tmp_path, "pkg")["pkg.b"] == set()
    assert cycles(import_graph(tmp_path, "pkg")) == []
    assert import_graph(tmp_path, "pkg", type_checking=True)["pkg.b"] == {"pkg.a"}  # the function's does not
