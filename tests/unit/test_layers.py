"""Imports go one way (docs/architecture.md): router → handlers → tasks/store → (jobs) →
tasks/store. Walks every module's imports with `ast` and fails on one against the flow."""

from __future__ import annotations

import ast
import pathlib

import pytest

SRC = pathlib.Path(__file__).resolve().parents[2] / "src"
WEB_SIDE = ("src.web", "src.handlers", "src.router")
# package -> the packages it must never import
FORBIDDEN = {
    "src.store": ("src.tasks", "src.metrics", "src.jobs", "src.runners", "src.local", *WEB_SIDE),
    "src.settings": ("src.store", "src.tasks", "src.metrics", "src.jobs", "src.runners", "src.local", *WEB_SIDE),
    "src.tasks": ("src.jobs", "src.runners", "src.local", *WEB_SIDE),
    "src.callbacks": ("src.jobs", "src.runners", "src.local", *WEB_SIDE),
    "src.storage": ("src.store", "src.jobs", "src.runners", "src.local", *WEB_SIDE),
    "src.limits": ("src.jobs", "src.runners", "src.local", *WEB_SIDE),
    "src.store_sharing": ("src.tasks", "src.metrics", "src.jobs", "src.runners", "src.local", *WEB_SIDE),
    "src.metrics": ("src.jobs", "src.runners", "src.local", *WEB_SIDE),
    "src.jobs": ("src.runners", "src.local", *WEB_SIDE),
    "src.runners": ("src.local", *WEB_SIDE),
    "src.handlers": ("src.jobs", "src.runners", "src.local"),
    "src.router": ("src.jobs", "src.runners", "src.local"),
    "src.web": ("src.jobs", "src.runners", "src.local"),
    # local may start the web on sockets it opens itself (src/local/web_processes.py)
    "src.local": ("src.store", "src.tasks", "src.metrics", "src.jobs", "src.runners", "src.handlers", "src.router"),
}


def module_name(path: pathlib.Path) -> str:
    parts = path.relative_to(SRC.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: pathlib.Path) -> set[str]:
    """The `src` modules a file imports, relative imports resolved."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return {module for module in found if module.startswith("src.")}


def within(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


MODULES = sorted(SRC.rglob("*.py"))


@pytest.mark.parametrize("path", MODULES, ids=lambda path: module_name(path))
def test_no_import_against_the_flow(path):
    name = module_name(path)
    rules = [forbidden for package, forbidden in FORBIDDEN.items() if within(name, package)]
    wrong = {module for module in imports(path) for forbidden in rules for package in forbidden
             if within(module, package)}
    assert not wrong, f"{name} imports {sorted(wrong)} against the flow"


def test_the_walk_sees_imports():
    assert "src.store.Store" in imports(SRC / "web" / "context.py")
