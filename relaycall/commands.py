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

import typing as _typing  # private alias: keeps typing's names out of this namespace

from relaycall._commands import ai as _ai
from relaycall._commands import call as _call
from relaycall._commands import media as _media
from relaycall._commands import operations as _operations
from relaycall._commands._base import REGISTRY as _REGISTRY
from relaycall._commands._base import Command, Model, new_control_id

# Each module declares what it adds here in its own __all__, next to the classes.
from relaycall._commands.ai import *  # noqa: F403
from relaycall._commands.call import *  # noqa: F403
from relaycall._commands.media import *  # noqa: F403
from relaycall._commands.operations import *  # noqa: F403
from relaycall._idempotency import Idempotency

__all__ = ["BY_NAME", "Command", "Idempotency", "Model", "new_control_id"]
__all__ += _ai.__all__
__all__ += _call.__all__
__all__ += _media.__all__
__all__ += _operations.__all__
# In ruff's RUF022 order, as a literal __all__ would be kept: constants, classes, the rest.
__all__.sort(key=lambda name: (not name.isupper(), not name[:1].isupper(), name))

#: Every typed command class by its wire name (``"calling.play"`` -> :class:`Play`):
#: each class registers itself where it is defined (``@command``), so with every
#: command module imported above this is all of them.
BY_NAME: dict[str, type[Command[_typing.Any]]] = _REGISTRY
