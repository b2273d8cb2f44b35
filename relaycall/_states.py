"""
The states and reasons handles and results report, as Literal types.

A leaf module: handles, results and the public API import from here, so a
typo such as ``call.wait_for("answerd")`` is a type error, not a wait that
never ends.
"""

from __future__ import annotations

from typing import Literal

__all__ = ["CallState", "OperationState", "ResultReason"]

#: A call's lifecycle, in order; ``unknown`` is a call attached by id
#: (``relay.call(call_id)``) before anything was heard of it.
CallState = Literal[
    "unknown", "queued", "initiated", "created", "ringing", "answered", "ending", "ended"
]

#: Every state an operation handle can be in (each kind uses some of them:
#: a Playback is ``playing``, ``paused``, ``stopped``, then ``finished`` or ``error``).
OperationState = Literal[
    "running",
    "playing",
    "paused",
    "recording",
    "collecting",
    "detecting",
    "tapping",
    "streaming",
    "transcribing",
    "stopped",
    "finished",
    "no_input",
    "no_match",
    "failed",
    "error",
]

#: Why a wait ended (see relaycall._results).
ResultReason = Literal["finished", "stopped", "call_ended", "ended_here", "gone", "session_closed"]
