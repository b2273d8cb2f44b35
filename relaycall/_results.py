"""
What ``await handle.wait()`` returns: one frozen result class per handle kind.

Every result says *why* the wait ended (*reason*):

- ``finished``: the operation's final status callback arrived (see *state*).
- ``stopped``: a stop was acknowledged and the kind has no final callback.
- ``call_ended``: the call ended first; the operation ended with it.
- ``ended_here``: this process ended the call (``call.end()`` / ``update``).
- ``gone``: the server answered 404: the operation or call was already over.
- ``session_closed``: the AsyncRelay closed before anything else happened.

Status callbacks are best-effort on the platform, so a result with a reason
other than ``finished`` may lack the fields a callback would have carried.
Those fields (a recording's *url*, a collect's *digits*...) are read off the
callback by its event class, in relaycall._events; these classes only hold them.
"""

from __future__ import annotations

from typing import Any

import attrs

from relaycall._states import CallState, OperationState, ResultReason


# A result that adds no field (PlaybackResult, TapResult, LiveResult) is a plain subclass
# with ``__slots__ = ()``: see FollowUp in relaycall/_commands/_base.py for why.
@attrs.frozen(kw_only=True)
class OperationResult:
    """
    The common part of every operation result.

    *event* is the status event that ended the operation, when one did.
    """

    call_id: str
    control_id: str
    state: OperationState
    reason: ResultReason
    event: Any = attrs.field(default=None, repr=False)

    @property
    def ok(self) -> bool:
        """Whether the operation ran to its normal end (or was stopped as asked)."""
        return self.reason in ("finished", "stopped") and self.state in ("finished", "stopped")


class PlaybackResult(OperationResult):
    """How a playback ended."""

    __slots__ = ()


@attrs.frozen(kw_only=True)
class RecordingResult(OperationResult):
    """
    How a recording ended: its *url* (from the ``finished`` callback), *duration*
    in seconds and *size* in bytes.
    """

    url: str | None = None
    duration: float | None = None
    size: int | None = None


@attrs.frozen(kw_only=True)
class CollectResult(OperationResult):
    """
    What a collect gathered.

    *type* is ``digit`` or ``speech``; *digits* and *terminator* come with
    digits, *text* and *confidence* with speech.
    """

    type: str | None = None
    digits: str | None = None
    terminator: str | None = None
    text: str | None = None
    confidence: float | None = None


@attrs.frozen(kw_only=True)
class DetectResult(OperationResult):
    """
    What a detection found: *type* (``machine``, ``fax``, ``digit``) and *result*.

    *result* is e.g. ``HUMAN``, ``MACHINE``, ``READY``, ``CNG``, or the digits.
    """

    type: str | None = None
    result: str | None = None


class TapResult(OperationResult):
    """How a tap ended."""

    __slots__ = ()


@attrs.frozen(kw_only=True)
class StreamResult(OperationResult):
    """How a stream ended, with its *url* and *name* as the callback reported them."""

    url: str | None = None
    name: str | None = None


@attrs.frozen(kw_only=True)
class TranscriptionResult(OperationResult):
    """A transcription's *text* (None when nothing was transcribed) and transcript id."""

    text: str | None = None
    transcript_id: str | None = None


class LiveResult(OperationResult):
    """How a live transcription, live translation or sidecar ended."""

    __slots__ = ()


@attrs.frozen(kw_only=True)
class CallResult:
    """How a call ended: *end_reason* (``hangup``, ``busy``, ``noAnswer``...) and *reason*."""

    call_id: str
    state: CallState
    end_reason: str | None
    reason: ResultReason
    event: Any = attrs.field(default=None, repr=False)
