"""
Status callbacks as typed events.

Every event shares ``call_id``, ``control_id``, ``state`` and ``params`` (the
callback's params as received), so the router and the handles can treat any
event alike; the subclasses add typed access to what each kind carries.
Callbacks come in three shapes (docs/callbacks.md): the Relay-style envelope
``{event_type, event_channel, timestamp, project_id, space_id, params}``, the
flat ``{control_id, call_id, node_id, state, ...}`` the reference's prose
describes for play and collect, and the AI sidecar's ``{call_info,
sidecar_event}``. An event type we do not know parses to :class:`UnknownEvent`,
which keeps the whole payload.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, ClassVar

import attrs
import cattrs
from cattrs.strategies import configure_tagged_union

from relaycall._validate import is_text
from relaycall.errors import RelayError

__all__ = [
    "CallStateEvent",
    "CollectEvent",
    "DenoiseEvent",
    "DetectEvent",
    "Event",
    "EventParseError",
    "FaxEvent",
    "LiveEvent",
    "PlayEvent",
    "RecordEvent",
    "ReferEvent",
    "SidecarEvent",
    "StreamEvent",
    "TapEvent",
    "TranscribeEvent",
    "TranscriptEvent",
    "UnknownEvent",
    "parse_event",
]


class EventParseError(RelayError, ValueError):
    """A callback body that is not an event relaycall can read (the receiver answers 400)."""


def _opt_str(value: Any) -> str | None:
    return value if isinstance(value, str) else None


@attrs.frozen(kw_only=True)
class Event:
    """
    A status callback.

    Attributes:
        event_type: e.g. ``calling.call.play``; None for a flat payload that
            does not say (its handle decides what it means).
        call_id: The call it is about.
        control_id: The operation it is about, when it names one.
        state: The state it reports, when it reports one.
        params: The callback's params object, as received.
        timestamp: Seconds since the epoch, when given.
        raw: The whole payload.
    """

    kind: ClassVar[str | None] = None

    event_type: str | None
    call_id: str | None = None
    control_id: str | None = None
    state: str | None = None
    params: Mapping[str, Any] = attrs.field(factory=dict, repr=False)
    timestamp: float | None = None
    raw: Mapping[str, Any] = attrs.field(factory=dict, repr=False, eq=False)

    @property
    def is_final(self) -> bool:
        """Whether this event ends its operation (as far as the event alone can tell)."""
        return False


@attrs.frozen(kw_only=True)
class CallStateEvent(Event):
    """``calling.call.state``: the call moved to *state*; *end_reason* when it ended."""

    kind = "call"

    @property
    def end_reason(self) -> str | None:
        return _opt_str(self.params.get("end_reason"))

    @property
    def is_final(self) -> bool:
        return self.state == "ended"


@attrs.frozen(kw_only=True)
class PlayEvent(Event):
    """``calling.call.play``: ``playing``, ``paused``, ``finished`` or ``error``."""

    kind = "play"

    @property
    def is_final(self) -> bool:
        return self.state in ("finished", "error")


@attrs.frozen(kw_only=True)
class RecordEvent(Event):
    """``calling.call.record``; a ``finished`` one carries *url*, *duration* and *size*."""

    kind = "record"

    @property
    def url(self) -> str | None:
        return _opt_str(self.params.get("url"))

    @property
    def is_final(self) -> bool:
        return self.state in ("finished", "no_input", "error")


_COLLECT_FINAL = {"digit": "finished", "speech": "finished", "no_input": "no_input",
                  "no_match": "no_match", "error": "error"}  # fmt: skip


@attrs.frozen(kw_only=True)
class CollectEvent(Event):
    """
    ``calling.call.collect``: a *result* (``digit``, ``speech``, ``no_input``...).

    ``final`` is False on partial results; *state* is set in continuous mode.
    """

    kind = "collect"

    @property
    def result(self) -> Mapping[str, Any]:
        r = self.params.get("result")
        return r if isinstance(r, Mapping) else {}

    @property
    def result_type(self) -> str | None:
        return _opt_str(self.result.get("type"))

    @property
    def partial(self) -> bool:
        return self.params.get("final") is False

    @property
    def outcome_state(self) -> str | None:
        """The final state this result implies outside continuous mode, if any."""
        if self.partial:
            return None
        return _COLLECT_FINAL.get(self.result_type or "")


@attrs.frozen(kw_only=True)
class DetectEvent(Event):
    """``calling.call.detect``: *detect_event* is ``MACHINE``, ``HUMAN``, ``CNG``, ``finished``."""

    kind = "detect"

    @property
    def detect_type(self) -> str | None:
        d = self.params.get("detect")
        return _opt_str(d.get("type")) if isinstance(d, Mapping) else None

    @property
    def detect_event(self) -> str | None:
        d = self.params.get("detect")
        p = d.get("params") if isinstance(d, Mapping) else None
        return _opt_str(p.get("event")) if isinstance(p, Mapping) else None

    @property
    def is_final(self) -> bool:
        return self.detect_event in ("finished", "error")


@attrs.frozen(kw_only=True)
class TapEvent(Event):
    """``calling.call.tap``: ``tapping`` or ``finished``."""

    kind = "tap"

    @property
    def is_final(self) -> bool:
        return self.state == "finished"


@attrs.frozen(kw_only=True)
class StreamEvent(Event):
    """``calling.call.stream`` (typed by the reference): ``streaming`` or ``finished``."""

    kind = "stream"

    @property
    def is_final(self) -> bool:
        return self.state == "finished"


@attrs.frozen(kw_only=True)
class TranscribeEvent(Event):
    """``calling.call.transcribe``: ``transcribing`` / ``finished`` (the transcript follows)."""

    kind = "transcribe"


@attrs.frozen(kw_only=True)
class TranscriptEvent(Event):
    """
    ``calling.transcript.completed`` or ``.failed`` (typed by the reference).

    It names no control id: it goes to the call's running transcription.
    """

    kind = "transcribe"

    @property
    def text(self) -> str | None:
        return _opt_str(self.params.get("text"))

    @property
    def transcript_id(self) -> str | None:
        return _opt_str(self.params.get("id"))

    @property
    def is_final(self) -> bool:
        return True


@attrs.frozen(kw_only=True)
class ReferEvent(Event):
    """``calling.call.refer``: the REFER's progress."""

    kind = "refer"


@attrs.frozen(kw_only=True)
class DenoiseEvent(Event):
    """``calling.call.denoise``: *denoised* tells whether the filter is on."""

    kind = "denoise"

    @property
    def denoised(self) -> bool | None:
        v = self.params.get("denoised")
        return v if isinstance(v, bool) else None


@attrs.frozen(kw_only=True)
class FaxEvent(Event):
    """``calling.call.fax``."""

    kind = "fax"


@attrs.frozen(kw_only=True)
class LiveEvent(Event):
    """
    ``calling.call.live_transcribe`` / ``calling.call.live_translate``.

    The reference documents no payload; these are the emulator's, see docs/callbacks.md.
    """

    kind = "live"

    @property
    def is_final(self) -> bool:
        return self.state == "stopped"


@attrs.frozen(kw_only=True)
class SidecarEvent(Event):
    """
    An AI sidecar callback; *sidecar_type* is ``start``, ``insight``, ``final``...

    *params* holds the ``sidecar_event`` object.
    """

    kind = "ai_sidecar"

    @property
    def sidecar_type(self) -> str | None:
        return _opt_str(self.params.get("type"))

    @property
    def is_final(self) -> bool:
        return self.sidecar_type in ("stop", "final")


@attrs.frozen(kw_only=True)
class UnknownEvent(Event):
    """An event type relaycall does not know; *raw* keeps the whole payload."""


_BY_TYPE: dict[str, type[Event]] = {
    "calling.call.state": CallStateEvent,
    "calling.call.play": PlayEvent,
    "calling.call.record": RecordEvent,
    "calling.call.collect": CollectEvent,
    "calling.call.detect": DetectEvent,
    "calling.call.tap": TapEvent,
    "calling.call.stream": StreamEvent,
    "calling.call.transcribe": TranscribeEvent,
    "calling.transcript.completed": TranscriptEvent,
    "calling.transcript.failed": TranscriptEvent,
    "calling.call.refer": ReferEvent,
    "calling.call.denoise": DenoiseEvent,
    "calling.call.fax": FaxEvent,
    "calling.call.live_transcribe": LiveEvent,
    "calling.call.live_translate": LiveEvent,
    "calling.ai.sidecar": SidecarEvent,
}

# The tagged union. The tag is the class name, looked up from the wire
# event_type, because several event types share a class (a transcript
# completed or failed, live transcribe or translate); an unknown event_type
# (or None, for a flat payload) structures into UnknownEvent.
_converter = cattrs.Converter(forbid_extra_keys=False)
# params and raw stay the dicts they came as: no copy, nothing dropped.
_converter.register_structure_hook_func(lambda t: t == Mapping[str, Any], lambda v, _: v)
_union = CallStateEvent | PlayEvent | RecordEvent | CollectEvent | DetectEvent | TapEvent | \
    StreamEvent | TranscribeEvent | TranscriptEvent | ReferEvent | DenoiseEvent | FaxEvent | \
    LiveEvent | SidecarEvent | UnknownEvent  # fmt: skip
configure_tagged_union(
    _union,
    _converter,
    tag_generator=lambda cls: cls.__name__,
    tag_name="_tag",
    default=UnknownEvent,
)


def parse_event(payload: Any) -> Event:
    """
    Turn a decoded callback body into an :class:`Event`.

    Raises EventParseError for anything that is not a callback: not an
    object, a params that is not an object, ids that are not strings.
    """
    if not isinstance(payload, Mapping):
        raise EventParseError(
            f"a callback body must be a JSON object, not {type(payload).__name__}"
        )
    if "sidecar_event" in payload or "call_info" in payload:
        return _sidecar(payload)
    event_type = payload.get("event_type")
    if event_type is not None:
        if not isinstance(event_type, str):
            raise EventParseError("event_type must be a string")
        params = payload.get("params")
        if not isinstance(params, Mapping):
            raise EventParseError(f"{event_type}: params must be a JSON object")
    else:
        params = payload
    call_id = params.get("call_id")
    control_id = params.get("control_id")
    state = params.get("state")
    if event_type == "calling.call.state":
        state = params.get("call_state", state)
    for name, value in (("call_id", call_id), ("control_id", control_id), ("state", state)):
        if value is not None and not (isinstance(value, str) and value.isascii()):
            _check_text(name, value)
    timestamp = _seconds("timestamp", payload.get("timestamp"), 1)
    fields = {
        "_tag": _BY_TYPE.get(event_type, UnknownEvent).__name__ if event_type else "UnknownEvent",
        "event_type": event_type,
        "call_id": call_id,
        "control_id": control_id,
        "state": state,
        "params": params,
        "timestamp": timestamp,
    }
    try:
        event: Event = _converter.structure(fields, _union)  # type: ignore[arg-type]
    except (cattrs.BaseValidationError, TypeError, ValueError) as exc:  # pragma: no cover
        raise EventParseError(f"unreadable callback: {exc}") from exc
    object.__setattr__(event, "raw", payload)
    return event


def _sidecar(payload: Mapping[str, Any]) -> SidecarEvent:
    info = payload.get("call_info")
    ev = payload.get("sidecar_event")
    if not isinstance(info, Mapping) or not isinstance(ev, Mapping):
        raise EventParseError("a sidecar callback needs call_info and sidecar_event objects")
    call_id = info.get("call_id")
    if not isinstance(call_id, str):
        raise EventParseError("call_info.call_id must be a string")
    _check_text("call_info.call_id", call_id)
    kind = ev.get("type")
    if isinstance(kind, str):
        _check_text("sidecar_event.type", kind)
    return SidecarEvent(
        event_type="calling.ai.sidecar",
        call_id=call_id,
        state=kind if isinstance(kind, str) else None,
        params=ev,
        # Microseconds, an integer in the reference's schema.
        timestamp=_seconds("sidecar_event.ts", ev.get("ts"), 1_000_000),
        raw=payload,
    )


def _check_text(name: str, value: Any) -> None:
    if not isinstance(value, str):
        raise EventParseError(f"{name} must be a string, not {type(value).__name__}")
    if not is_text(value):
        # An id goes into HMACs, logs and URLs: all need real text.
        raise EventParseError(f"{name} is not valid Unicode (a lone surrogate)")


def _seconds(name: str, value: Any, per_second: int) -> float | None:
    """
    A callback's time as seconds since the epoch; None when it carries none.

    A value that is not a number counts as absent (the receiver's time window
    then does not apply to the callback); a number that is not finite
    (``1e999``) or does not fit a float (``10**400``) makes the callback
    unreadable.
    """
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        seconds = value / per_second
    except OverflowError:  # an int too large for a float
        raise EventParseError(f"{name} is an integer too large for a time") from None
    if not math.isfinite(seconds):
        raise EventParseError(f"{name} is not a finite number ({seconds!r})")
    return float(seconds)
