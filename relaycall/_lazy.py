"""
A module imported on its first use, for modules that need one only in some of their code.

``ai_cmd = LazyModule("relaycall._commands.ai", globals(), "ai_cmd")`` stands in for the
module in the holder's globals; the first attribute read imports it and puts the module
itself there in its place, so from then on ``ai_cmd.X`` is an ordinary global lookup.
Declare the real import under ``if TYPE_CHECKING:`` beside it, for type checkers.
"""

from __future__ import annotations

import importlib
from typing import Any


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
