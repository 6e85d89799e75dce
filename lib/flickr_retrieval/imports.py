"""The package's own import graph, read from its code (never by importing it): which package modules
each module imports, at module level or inside functions, subpackages included.

A module is named by its dotted path inside the package (``train``, ``search.searcher``); a
subpackage's ``__init__`` by the subpackage's name (``search``). Used by the run cache (the modules
training reaches), the package map (docs/package.md) and the tests of the layering.
"""

from __future__ import annotations

import ast
import functools
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent


def file_of(name: str) -> Path:
    """The source file of module ``name`` (a subpackage's ``__init__.py`` for a subpackage)."""
    base = PACKAGE.joinpath(*name.split("."))
    return base / "__init__.py" if base.is_dir() else base.with_suffix(".py")


def modules() -> list[str]:
    """Every module of the package (the package's own ``__init__`` left out), sorted."""
    out = []
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        if parts and "__pycache__" not in parts:
            out.append(".".join(parts))
    return sorted(out)


def _is_module(parts: list[str]) -> bool:
    return bool(parts) and file_of(".".join(parts)).is_file()


@functools.cache
def imports(name: str) -> tuple[str, ...]:
    """The package modules that module ``name`` imports, anywhere in its code, sorted."""
    path = file_of(name)
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if not isinstance(node, ast.ImportFrom) or node.level == 0:
            continue
        if node.level - 1 > len(package):
            continue
        base = package[: len(package) - (node.level - 1)]
        target = base + (node.module.split(".") if node.module else [])
        submodules = [target + [a.name] for a in node.names if _is_module(target + [a.name])]
        if submodules:  # ``from .search import collection``: the module, not the package
            found.update(".".join(m) for m in submodules)
        elif _is_module(target):
            found.add(".".join(target))
    found.discard(name)
    return tuple(sorted(found))


def reach(roots: tuple[str, ...] | list[str]) -> tuple[str, ...]:
    """``roots`` and every package module they reach through imports, sorted."""
    seen, todo = set(), list(roots)
    while todo:
        name = todo.pop()
        if name not in seen:
            seen.add(name)
            todo.extend(set(imports(name)) - seen)
    return tuple(sorted(seen))
