"""
How safe a command is to send twice: what the retry policy may do with it.

A leaf: each command class declares its class (``relaycall._commands``), and
the retry policy (``relaycall._retry``) and the transport read it.
"""

from __future__ import annotations

import enum

__all__ = ["Idempotency"]


class Idempotency(enum.Enum):
    """How safe a command is to send twice; decides what the retry policy may do."""

    #: Repeating it has the same effect as sending it once (pause, stop, volume, end...).
    SAFE = "safe"
    #: Starts an operation named by a client-chosen control_id; a repeat carries the
    #: same control_id, so the server can recognise it.
    START = "start"
    #: Repeating it could do the thing twice (dial, transfer, user_event...). Re-sent
    #: only when the first attempt provably was not processed.
    UNSAFE = "unsafe"
