"""The docs keep up with the code (datasette's habit): every setting is in the README's
table with its default, every module is in the file map, and the README stays short."""

from __future__ import annotations

import pathlib
import re

import pytest

from src.settings import declarations

ROOT = pathlib.Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()
ARCHITECTURE = (ROOT / "docs" / "architecture.md").read_text()
ROWS = {match[0]: match[1].strip() for match in re.findall(r"^\| `([A-Z0-9_]+)` \| ([^|]+) \|", README, re.M)}


def shown(declared) -> str:
    """The default as the README writes it."""
    meta, default = declared.metadata, declared.default
    if meta["shown"]:
        return meta["shown"]
    return f"{default:g}" if isinstance(default, float) else str(default)


@pytest.mark.parametrize("declared", declarations(), ids=lambda declared: declared.metadata["env"])
def test_every_setting_is_in_the_readme_with_its_default(declared):
    name = declared.metadata["env"]
    assert name in ROWS, f"{name} is missing from the README's settings table"
    assert ROWS[name] == shown(declared), f"{name}: the README says {ROWS[name]!r}, the code {shown(declared)!r}"


def test_the_readme_names_no_setting_the_code_lacks():
    assert set(ROWS) <= {declared.metadata["env"] for declared in declarations()}


def file_map() -> str:
    section = ARCHITECTURE[ARCHITECTURE.index("## The file map"):]
    return section[section.index("```"):section.index("```", section.index("```") + 3)]


@pytest.mark.parametrize("path", sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / "src").rglob("*.py")
                                        if p.name != "__init__.py"))
def test_every_module_is_in_the_file_map(path):
    folder, name = path.rpartition("/")[0], path.rpartition("/")[2]
    map_text = file_map()
    assert re.search(rf"\b{re.escape(name)}\b", map_text), f"{path} is missing from docs/architecture.md"
    assert folder == "src" or folder.rpartition("/")[2] + "/" in map_text


def test_the_readme_is_for_first_readers():
    assert len(README.splitlines()) <= 200
