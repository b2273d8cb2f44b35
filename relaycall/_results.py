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
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import attrs

from relaycall._states import CallState, OperationState, ResultReason

if TYPE_CHECKING:
    from relaycall._handles._base import Operation

logger = logging.getLogger("relaycall")


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


@attrs.frozen(kw_only=True)
class PlaybackResult(OperationResult):
    """How a playback ended."""


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


@attrs.frozen(kw_only=True)
class TapResult(OperationResult):
    """How a tap ended."""


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


@attrs.frozen(kw_only=True)
class LiveResult(OperationResult):
    """How a live transcription, live translation or sidecar ended."""


@attrs.frozen(kw_only=True)
class CallResult:
    """How a call ended: *end_reason* (``hangup``, ``busy``, ``noAnswer``...) and *reason*."""

    call_id: str
    state: CallState
    end_reason: str | None
    reason: ResultReason
    event: Any = attrs.field(default=None, repr=False)


def _params(event: Any) -> Mapping[str, Any]:
    params = getattr(event, "params", None)
    return params if isinstance(params, Mapping) else {}


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _num(value: Any) -> float | None:
    """A finite number as a float; None for anything else (``1e999``, NaN, ``10**400``, "3")."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        number = float(value)
    except OverflowError:  # an int beyond a float's range
        return None
    return number if math.isfinite(number) else None


def _int(value: Any) -> int | None:
    """A whole count (a size in bytes): None unless it is finite and fits 64 bits."""
    number = value if isinstance(value, int) and not isinstance(value, bool) else _num(value)
    if number is None or not -_INT64 <= number < _INT64:
        return None
    return int(number)


_INT64 = 2**63


def _recording(base: dict[str, Any], p: Mapping[str, Any]) -> RecordingResult:
    # Relay puts url/duration/size at the top of params; some payloads nest them in record.audio.
    nested = p.get("record")
    audio = nested.get("audio") if isinstance(nested, Mapping) else None
    src: Mapping[str, Any] = audio if isinstance(audio, Mapping) else {}
    return RecordingResult(
        **base,
        url=_str(p.get("url")) or _str(src.get("url")),
        duration=_num(p.get("duration", src.get("duration"))),
        size=_int(p.get("size", src.get("size"))),
    )


def _collect(base: dict[str, Any], p: Mapping[str, Any]) -> CollectResult:
    result = p.get("result")
    result = result if isinstance(result, Mapping) else {}
    rparams = result.get("params")
    rp: Mapping[str, Any] = rparams if isinstance(rparams, Mapping) else {}
    return CollectResult(
        **base,
        type=_str(result.get("type")),
        digits=_str(rp.get("digits")),
        # No terminator is None, whether the callback left it out or sent "".
        terminator=_str(rp.get("terminator")) or None,
        text=_str(rp.get("text")),
        confidence=_num(rp.get("confidence")),
    )


def _detect(base: dict[str, Any], p: Mapping[str, Any]) -> DetectResult:
    detect = p.get("detect")
    detect = detect if isinstance(detect, Mapping) else {}
    dparams = detect.get("params")
    dp: Mapping[str, Any] = dparams if isinstance(dparams, Mapping) else {}
    return DetectResult(
        **base,
        type=_str(detect.get("type")),
        result=_str(dp.get("event")) or _str(dp.get("result")) or _str(dp.get("digits")),
    )


def _detect_done(p: Mapping[str, Any]) -> bool:
    detect = p.get("detect")
    dp = detect.get("params") if isinstance(detect, Mapping) else None
    return isinstance(dp, Mapping) and dp.get("event") in ("finished", "error")


def result_for(op: Operation, reason: str, event: Any, last: Any = None) -> OperationResult:
    """
    Build the result for *op* ending for *reason*, reading fields off *event*.

    *last* is the latest informative event before it: a detect's verdict or a
    continuous collect's result, which the final event need not repeat.

    It never raises, whatever the callback held: a field it cannot read is
    None, and should reading fail all the same, the result has the common
    fields and *event* (the raw payload) only. A wait must end either way.
    """
    from relaycall._handles import operations as ops  # noqa: PLC0415 - avoids a cycle

    base: dict[str, Any] = {
        "call_id": op.call.id,
        "control_id": op.control_id,
        "state": op.state,
        "reason": reason,
        "event": event,
    }
    try:
        return _read(ops, op, base, event, last)
    except Exception:
        logger.exception(
            "relaycall: could not read the result of %r off its callback; "
            "it ends with the common fields (and the raw event) only",
            op,
        )
        # The kind's result class, every field read off nothing: None.
        return _read(ops, op, base, None, None)


def _read(ops: Any, op: Operation, base: dict[str, Any], event: Any, last: Any) -> OperationResult:
    p = _params(event)
    if last is not None and (
        (isinstance(op, ops.Detector) and not isinstance(_params(event).get("detect"), Mapping))
        or _detect_done(p)
        or (isinstance(op, ops.Collector) and not isinstance(p.get("result"), Mapping))
    ):
        p = _params(last)
    if isinstance(op, ops.Recording):
        return _recording(base, p)
    if isinstance(op, ops.Collector):
        return _collect(base, p)
    if isinstance(op, ops.Detector):
        return _detect(base, p)
    if isinstance(op, ops.Stream):
        return StreamResult(**base, url=_str(p.get("url")), name=_str(p.get("name")))
    if isinstance(op, ops.Transcription):
        return TranscriptionResult(
            **base, text=_str(p.get("text")), transcript_id=_str(p.get("id"))
        )
    if isinstance(op, ops.Playback):
        return PlaybackResult(**base)
    if isinstance(op, ops.Tap):
        return TapResult(**base)
    return LiveResult(**base)
