"""
The documentation site's API reference (docs/reference/*.md) covers every public name.

The reference pages are mkdocstrings ``::: dotted.path`` directives, rendered from the
docstrings by ``mkdocs build --strict`` (``nox -s docs``, and ``.ci/run``). The build
fails on a directive naming nothing; these tests fail on the opposite, a public name
with no directive, so a name added to an ``__all__`` cannot go undocumented, and on a
page under docs/ that mkdocs.yml's nav leaves out. They read the pages as text and need
none of the ``docs`` extra.
"""

from __future__ import annotations

import importlib
import re
import types
from pathlib import Path

import pytest

import relaycall
import relaycall.emulator
import relaycall.pytest_plugin
import relaycall.swml
import relaycall.testing
from relaycall import commands
from tests._programs import REPO

REFERENCE = REPO / "docs" / "reference"
_DIRECTIVE = re.compile(r"^(?:#{1,6} *)?::: ?(?P<path>[\w.]+)\s*$", re.MULTILINE)


def directives(pages: list[Path]) -> set[str]:
    """Every dotted path a ``::: path`` line of *pages* renders."""
    return {m["path"] for page in pages for m in _DIRECTIVE.finditer(page.read_text("utf-8"))}


def undocumented(module: types.ModuleType, documented: set[str]) -> list[str]:
    """The names of ``module.__all__`` that no directive renders, as ``module.name``."""
    missing = []
    for name in module.__all__:
        path = f"{module.__name__}.{name}"
        value = getattr(module, name)
        # A re-exported submodule (relaycall.swml) is documented by its own page.
        if isinstance(value, types.ModuleType):
            path = value.__name__
        if path not in documented:
            missing.append(path)
    return missing


DOCUMENTED = directives(sorted(REFERENCE.glob("*.md")))


@pytest.mark.parametrize(
    "module",
    [relaycall, commands, relaycall.swml, relaycall.testing],
    ids=lambda m: m.__name__,
)
def test_every_public_name_has_a_reference_entry(module: types.ModuleType) -> None:
    """Each name in the module's ``__all__`` has a ``::: module.name`` on a reference page."""
    assert undocumented(module, DOCUMENTED) == []


def test_the_emulators_public_api_has_a_reference_entry() -> None:
    """relaycall.emulator's names are rendered there, or as relaycall.testing's re-exports."""
    missing = [
        path
        for path in undocumented(relaycall.emulator, DOCUMENTED)
        if path.replace("relaycall.emulator.", "relaycall.testing.") not in DOCUMENTED
    ]
    assert missing == []


def test_the_pytest_plugins_fixtures_are_documented() -> None:
    """The plugin's module is rendered and each fixture it installs is named on the page."""
    page = (REFERENCE / "testing.md").read_text("utf-8")
    assert "relaycall.pytest_plugin" in directives([REFERENCE / "testing.md"])
    for fixture in sorted(relaycall.pytest_plugin._FIXTURES):
        assert f"`{fixture}`" in page, fixture


@pytest.mark.parametrize("path", sorted(DOCUMENTED))
def test_every_directive_names_something_that_exists(path: str) -> None:
    """A stale ``:::`` path (a renamed class) fails here as well as in the strict build."""
    module_name, _, attribute = path.rpartition(".")
    try:
        importlib.import_module(path)
    except ImportError:
        assert hasattr(importlib.import_module(module_name), attribute), path


def test_a_missing_entry_is_reported(tmp_path: Path) -> None:
    """The check can fail: a page without AsyncRelay leaves it undocumented."""
    page = tmp_path / "session.md"
    page.write_text("# The session\n\n::: relaycall.Limits\n\n:::relaycall.Timeout\n")
    found = directives([page])
    assert found == {"relaycall.Limits", "relaycall.Timeout"}
    assert "relaycall.AsyncRelay" in undocumented(relaycall, found)


def test_every_page_is_in_the_nav_and_every_nav_entry_exists() -> None:
    """mkdocs.yml's nav lists each page under docs/ once, and no page that is not there."""
    config = (REPO / "mkdocs.yml").read_text("utf-8")
    nav = config[config.index("\nnav:") :]
    # Commented-out entries (a page still to come) are not in the nav.
    listed = re.findall(r"^\s*-\s+(?:[^:#\n]+:\s+)?([\w/.-]+\.md)\s*$", nav, re.MULTILINE)
    pages = sorted(str(p.relative_to(REPO / "docs")) for p in (REPO / "docs").rglob("*.md"))
    assert sorted(listed) == pages
