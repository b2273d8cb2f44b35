"""
Typed commands: one frozen attrs class per command of ``POST /api/calling/calls``.

Build one and ``await relay.send(cmd)``; or let the handles (``relay.dial``,
``call.play`` ...) build them for you. Construction validates every rule of
the API reference and raises :class:`relaycall.ValidationError` naming the
field, so a bad command is never sent. ``cmd.to_wire()`` shows the exact body.

Example::

    from relaycall import commands, tts

    cmd = commands.Play(call_id=call_id, play=[tts("Hello")], volume=-3)
    await relay.send(cmd)
"""

from __future__ import annotations

import importlib as _importlib
import typing as _typing  # private alias: keeps typing's names out of this namespace

from relaycall._commands import call as _call
from relaycall._commands import media as _media
from relaycall._commands import operations as _operations
from relaycall._commands._base import REGISTRY as _REGISTRY
from relaycall._commands._base import Command, Model, new_control_id

# Each module declares what it adds here in its own __all__, next to the classes.
from relaycall._commands.call import *  # noqa: F403
from relaycall._commands.media import *  # noqa: F403
from relaycall._commands.operations import *  # noqa: F403
from relaycall._idempotency import Idempotency

if _typing.TYPE_CHECKING:
    from relaycall._commands.ai import *  # noqa: F403

    #: Every typed command class by its wire name (``"calling.play"`` -> :class:`Play`).
    BY_NAME: dict[str, type[Command[_typing.Any]]]

# First the AI commands: relaycall._commands.ai's __all__ (tests/test_exports.py checks
# they agree), whose module is imported on first use (see __getattr__).
__all__ = ["AIHold", "AIMessage", "AIReset", "AISidecar", "AISidecarAsk"]  # noqa: F405
__all__ += ["AISidecarPoke", "AISidecarStatus", "AISidecarStop", "AIStop"]  # noqa: F405
__all__ += ["AIUnhold", "LiveTranscribe", "LiveTranscribeStart", "LiveTranslate"]  # noqa: F405
__all__ += ["LiveTranslateInject", "LiveTranslateStart", "SidecarParams"]  # noqa: F405
__all__ += ["SidecarPermissions", "Summarize"]  # noqa: F405
_AI_NAMES = frozenset(__all__)
__all__ += ["BY_NAME", "Command", "Idempotency", "Model", "new_control_id"]
__all__ += _call.__all__
__all__ += _media.__all__
__all__ += _operations.__all__
# In ruff's RUF022 order, as a literal __all__ would be kept: constants, classes, the rest.
__all__.sort(key=lambda name: (not name.isupper(), not name[:1].isupper(), name))


def __getattr__(name: str) -> _typing.Any:
    # BY_NAME: each class registers itself where it is defined (@command), so the
    # registry is complete once every command module is imported; the AI commands are
    # imported here, the first time BY_NAME or one of them is asked for.
    if name == "BY_NAME" or name in _AI_NAMES:
        ai = _importlib.import_module("relaycall._commands.ai")
        namespace = globals()
        namespace.update((n, getattr(ai, n)) for n in _AI_NAMES)
        namespace["BY_NAME"] = _REGISTRY
        return namespace[name]
    raise AttributeError(f"module 'relaycall.commands' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
