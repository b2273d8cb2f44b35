"""
The public namespaces: ``__all__`` is sorted, complete, and names what is defined.

Both lists follow ruff's RUF022 "isort-style" order, which is what ``ruff check``
keeps them in: SCREAMING_CASE constants first, then CamelCase classes, then
everything else, each group in natural order. (A plain ``sorted()`` would put
``BY_NAME`` between ``AIUnhold`` and ``Collect``.)
"""

from __future__ import annotations

import re
import types
from typing import Any

import pytest

import relaycall
from relaycall import commands

# Names that are public on purpose though the generic rule below would skip them.
INTENDED_EXTRAS = {
    # A dunder and submodules (names loaded on first use are in dir(), see public_names).
    relaycall: {"__version__", "commands", "swml"},
    commands: set(),
}


def isort_key(name: str) -> tuple[int, list[Any]]:
    """RUF022's order: constants, then classes, then the rest; natural order within each."""
    if len(name) > 1 and name.isupper():
        group = 0
    elif name[:1].isupper():
        group = 1
    else:
        group = 2
    natural = [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]
    return group, natural


def public_names(module: types.ModuleType) -> set[str]:
    """
    Names a reader sees on the module (``dir()``, which includes the names its
    ``__getattr__`` imports on first use): no _private, no submodule, no __future__ flag.
    """
    return {
        name
        for name in dir(module)
        if not name.startswith("_")
        and not isinstance(getattr(module, name), types.ModuleType)
        and name != "annotations"
    }


MODULES = pytest.mark.parametrize("module", [relaycall, commands], ids=lambda m: m.__name__)


@MODULES
def test_all_is_sorted(module: types.ModuleType) -> None:
    """``__all__`` is in ruff's RUF022 isort-style order."""
    assert module.__all__ == sorted(module.__all__, key=isort_key)


def test_plain_sorted_is_not_the_order_used() -> None:
    """Documents the choice of key: BY_NAME leads, which plain sorted() would not allow."""
    assert commands.__all__[0] == "BY_NAME"
    assert sorted(commands.__all__) != commands.__all__
    assert relaycall.__all__[0] == "USE_DEFAULT"


@MODULES
def test_all_has_no_duplicates(module: types.ModuleType) -> None:
    """No name appears twice in ``__all__``."""
    assert len(module.__all__) == len(set(module.__all__))


@MODULES
def test_all_equals_the_public_names(module: types.ModuleType) -> None:
    """
    ``__all__`` is exactly the module's public names plus the intended extras: nothing public left
    out, nothing private exported.
    """
    exported = set(module.__all__)
    extras = INTENDED_EXTRAS[module]
    assert extras <= exported
    assert exported - extras == public_names(module)


@MODULES
def test_every_name_in_all_is_defined_under_that_name(module: types.ModuleType) -> None:
    """
    Each exported class or function is relaycall's own and carries the name it is
    exported as: no alias kept for an old name (``Tap = Tapping``), no object of
    another library exported as if it were relaycall's.
    """
    for name in module.__all__:
        value = getattr(module, name)
        if isinstance(value, type | types.FunctionType):
            assert value.__name__ == name, f"{name} is {value.__module__}.{value.__qualname__}"
            assert value.__module__.partition(".")[0] == "relaycall", (name, value.__module__)


@MODULES
def test_star_import_gives_exactly_all(module: types.ModuleType) -> None:
    """``from module import *`` binds exactly the names in ``__all__``."""
    namespace: dict[str, Any] = {}
    exec(f"from {module.__name__} import *", namespace)
    namespace.pop("__builtins__")
    assert set(namespace) == set(module.__all__)


def test_commands_submodule_is_the_exported_one() -> None:
    """``relaycall.commands`` is the commands module itself, and ``__version__`` a string."""
    assert relaycall.commands is commands
    assert isinstance(relaycall.__version__, str)


def test_every_command_class_and_model_is_exported() -> None:
    """What BY_NAME maps to, and the models commands hold, are all importable by name."""
    for name, cls in commands.BY_NAME.items():
        assert getattr(commands, cls.__name__) is cls, name
    for obj in (getattr(commands, name) for name in dir(commands)):
        if isinstance(obj, type) and issubclass(obj, commands.Model):
            assert obj.__name__ in commands.__all__


def test_lazy_ai_names_are_the_ai_modules_all() -> None:
    """
    relaycall.commands lists the AI commands itself (it imports their module on first use):
    the list is exactly relaycall._commands.ai's ``__all__``.
    """
    from relaycall._commands import ai  # noqa: PLC0415

    assert set(ai.__all__) == commands._AI_NAMES


def test_lazy_names_are_exported_and_resolve_to_their_modules() -> None:
    """Every name relaycall imports on first use is in ``__all__`` and comes from its module."""
    assert set(relaycall._LAZY) <= set(relaycall.__all__)
    for name, module in relaycall._LAZY.items():
        value = getattr(relaycall, name)
        assert getattr(value, "__name__", None) == module or value.__module__ == module, name
