"""
Modules and class attributes loaded on first use, for code that needs them only sometimes.

``ai_cmd = LazyModule("relaycall._commands.ai", globals(), "ai_cmd")`` stands in for the
module in the holder's globals; the first attribute read imports it and puts the module
itself there in its place, so from then on ``ai_cmd.X`` is an ordinary global lookup.
Declare the real import under ``if TYPE_CHECKING:`` beside it, for type checkers.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class LazyModule:
    __slots__ = ("_name", "_namespace", "_variable")

    def __init__(self, name: str, namespace: dict[str, Any], variable: str) -> None:
        self._name = name
        self._namespace = namespace
        self._variable = variable

    def __getattr__(self, attribute: str) -> Any:
        module = importlib.import_module(self._name)
        self._namespace[self._variable] = module
        return getattr(module, attribute)

    def __repr__(self) -> str:
        return f"<LazyModule {self._name!r}, not imported yet>"


class FirstUse(Generic[T]):
    """
    A class attribute computed on its first read, then set on the class in its place.

    ``_stop_command = FirstUse(lambda: ops_cmd.CollectStop)`` names a class of a module
    imported on first use without importing it when the class body runs; type checkers
    see the attribute as what the function returns.
    """

    __slots__ = ("_load", "_name")

    def __init__(self, load: Callable[[], T]) -> None:
        self._load = load
        self._name = ""

    def __set_name__(self, owner: type, name: str) -> None:
        self._name = name

    def __get__(self, instance: object, owner: type) -> T:
        value = self._load()
        setattr(owner, self._name, value)
        return value
