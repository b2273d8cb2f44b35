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

Each class declares the event types it parses from (``@_event_type``) and
what such a callback means for its operation: which kind it is about, the
final state it ends it in, the result fields it carries. The handles act on
that and read no payload themselves.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any, ClassVar, TypeVar

import attrs

from relaycall._validate import is_text
from relaycall.errors import EventParseError

E = TypeVar("E", bound="Event")

#: Every event type relaycall knows, and the class parse_event makes of it;
#: filled in by the @_event_type declarations below.
EVENT_TYPES: dict[str, type[Event]] = {}


def _event_type(*event_types: str) -> Callable[[type[E]], type[E]]:
    """Declare the decorated class as what parse_event makes of each of *event_types*."""

    def register(cls: type[E]) -> type[E]:
        for event_type in event_types:
            EVENT_TYPES[event_type] = cls
        return cls

    return register


def _opt_str(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _finite(value: Any) -> float | None:
    """A finite number as a float; None for anything else (``1e999``, NaN, ``10**400``, "3")."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        number = float(value)
    except OverflowError:  # an int beyond a float's range
        return None
    return number if math.isfinite(number) else None


def _whole(value: Any) -> int | None:
    """A whole count (a size in bytes): None unless it is finite and fits 64 bits."""
    number = value if isinstance(value, int) and not isinstance(value, bool) else _finite(value)
    if number is None or not -_INT64 <= number < _INT64:
        return None
    return int(number)


_INT64 = 2**63


# The subclasses add meaning, not fields: each is a plain subclass with ``__slots__ = ()``,
# not an attrs class of its own. attrs would generate the same __init__, __repr__ and
# __eq__ again for each (they read the instance's class, so they behave the same), and
# generating them was most of what importing this module cost.
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

    What a callback means for its operation is said here, by its class, and
    the handles act on that: :attr:`operation_kind`, :attr:`final_state`, and
    the result fields it carries.
    """

    #: The states an event of this type can end its operation in.
    FINAL: ClassVar[frozenset[str]] = frozenset()
    #: Whether the outcome can come before the final event (a detect's verdict,
    #: a collect's result), which then need not repeat it.
    _EARLY_OUTCOME: ClassVar[bool] = False
    _OPERATION_KIND: ClassVar[str | None] = None

    event_type: str | None
    call_id: str | None = None
    control_id: str | None = None
    state: str | None = None
    params: Mapping[str, Any] = attrs.field(factory=dict, repr=False)
    timestamp: float | None = None
    raw: Mapping[str, Any] = attrs.field(factory=dict, repr=False, eq=False)

    @property
    def operation_kind(self) -> str | None:
        """
        The ``kind`` of the operation handle it is about (``play``, ``record``...).

        None for news about the call itself: its state, a refer, denoise, fax.
        """
        return self._OPERATION_KIND

    @property
    def final_state(self) -> str | None:
        """The final state this event ends its operation in; None if it does not end it."""
        state = self.state
        return state if state in self.FINAL else None

    @property
    def _carries_outcome(self) -> bool:
        """
        Whether its operation's result is read off this event.

        When not, the result reports the latest earlier event that did: a
        detect's MACHINE verdict outlives the READY and ``finished`` after it.
        """
        return True

    def _result_fields(self) -> dict[str, Any]:
        """The fields it gives its operation's result, beyond the common ones."""
        return {}

    @classmethod
    def _read_as(cls: type[E], event: Event) -> E:
        """
        *event* as an event of this class: itself if it is one.

        A flat callback names no event type, so it parsed to UnknownEvent;
        the handle it reaches knows what it is about and reads it as its kind.
        """
        if isinstance(event, cls):
            return event
        return cls(
            event_type=event.event_type,
            call_id=event.call_id,
            control_id=event.control_id,
            state=event.state,
            params=event.params,
            timestamp=event.timestamp,
            raw=event.raw,
        )


@_event_type("calling.call.state")
class CallStateEvent(Event):
    """``calling.call.state``: the call moved to *state*; *end_reason* when it ended."""

    __slots__ = ()

    @property
    def call_state(self) -> str | None:
        """The state the call moved to: *state*, else the ``call_state`` a flat callback names."""
        return self.state or _opt_str(self.params.get("call_state"))

    @property
    def end_reason(self) -> str | None:
        return _opt_str(self.params.get("end_reason"))


@_event_type("calling.call.play")
class PlayEvent(Event):
    """``calling.call.play``: ``playing``, ``paused``, ``finished`` or ``error``."""

    __slots__ = ()

    FINAL = frozenset({"finished", "error"})
    _OPERATION_KIND = "play"


@_event_type("calling.call.record")
class RecordEvent(Event):
    """``calling.call.record``; a ``finished`` one carries *url*, *duration* and *size*."""

    __slots__ = ()

    FINAL = frozenset({"finished", "no_input", "error"})
    _OPERATION_KIND = "record"

    @property
    def _audio(self) -> Mapping[str, Any]:
        # Relay puts url/duration/size at the top of params; some payloads nest them here.
        return _mapping(_mapping(self.params.get("record")).get("audio"))

    @property
    def url(self) -> str | None:
        return _opt_str(self.params.get("url")) or _opt_str(self._audio.get("url"))

    @property
    def duration(self) -> float | None:
        """In seconds; None unless it is a finite number."""
        return _finite(self.params.get("duration", self._audio.get("duration")))

    @property
    def size(self) -> int | None:
        """In bytes; None unless it is a whole number that fits 64 bits."""
        return _whole(self.params.get("size", self._audio.get("size")))

    def _result_fields(self) -> dict[str, Any]:
        return {"url": self.url, "duration": self.duration, "size": self.size}


# What a collect result's type ends the collect in (outside continuous mode).
_COLLECT_FINAL = {"digit": "finished", "speech": "finished", "no_input": "no_input",
                  "no_match": "no_match", "error": "error"}  # fmt: skip


@_event_type("calling.call.collect")
class CollectEvent(Event):
    """
    ``calling.call.collect``: a *result* (``digit``, ``speech``, ``no_input``...).

    ``final`` is False on partial results; *state* is set in continuous mode.
    """

    __slots__ = ()

    FINAL = frozenset(_COLLECT_FINAL.values())
    _EARLY_OUTCOME = True
    _OPERATION_KIND = "collect"

    @property
    def result(self) -> Mapping[str, Any]:
        return _mapping(self.params.get("result"))

    @property
    def result_type(self) -> str | None:
        return _opt_str(self.result.get("type"))

    @property
    def partial(self) -> bool:
        return self.params.get("final") is False

    @property
    def final_state(self) -> str | None:
        """What its result ends the collect in (a partial result ends nothing), else its state."""
        if self.partial:
            return None
        return _COLLECT_FINAL.get(self.result_type or "") or super().final_state

    @property
    def continuous_final_state(self) -> str | None:
        """The final state it puts a continuous collect in: only ``finished`` or ``error``."""
        state = self.state
        return state if state in ("finished", "error") else None

    @property
    def _carries_outcome(self) -> bool:
        return isinstance(self.params.get("result"), Mapping)

    def _result_fields(self) -> dict[str, Any]:
        result = self.result
        rp = _mapping(result.get("params"))
        return {
            "type": _opt_str(result.get("type")),
            "digits": _opt_str(rp.get("digits")),
            # No terminator is None, whether the callback left it out or sent "".
            "terminator": _opt_str(rp.get("terminator")) or None,
            "text": _opt_str(rp.get("text")),
            "confidence": _finite(rp.get("confidence")),
        }


@_event_type("calling.call.detect")
class DetectEvent(Event):
    """``calling.call.detect``: *detect_event* is ``MACHINE``, ``HUMAN``, ``CNG``, ``finished``."""

    __slots__ = ()

    FINAL = frozenset({"finished", "error"})
    _EARLY_OUTCOME = True
    _OPERATION_KIND = "detect"

    @property
    def _detect(self) -> Mapping[str, Any]:
        return _mapping(self.params.get("detect"))

    @property
    def detect_type(self) -> str | None:
        return _opt_str(self._detect.get("type"))

    @property
    def detect_event(self) -> str | None:
        return _opt_str(_mapping(self._detect.get("params")).get("event"))

    @property
    def final_state(self) -> str | None:
        what = self.detect_event
        return what if what in self.FINAL else super().final_state

    @property
    def _carries_outcome(self) -> bool:
        # A verdict; READY / NOT_READY only say whether the machine's greeting ended.
        return isinstance(self.params.get("detect"), Mapping) and self.detect_event not in (
            "finished", "error", "READY", "NOT_READY"
        )  # fmt: skip

    def _result_fields(self) -> dict[str, Any]:
        dp = _mapping(self._detect.get("params"))
        return {
            "type": self.detect_type,
            "result": _opt_str(dp.get("event"))
            or _opt_str(dp.get("result"))
            or _opt_str(dp.get("digits")),
        }


@_event_type("calling.call.tap")
class TapEvent(Event):
    """``calling.call.tap``: ``tapping`` or ``finished``."""

    __slots__ = ()

    FINAL = frozenset({"finished"})
    _OPERATION_KIND = "tap"


@_event_type("calling.call.stream")
class StreamEvent(Event):
    """``calling.call.stream`` (typed by the reference): ``streaming`` or ``finished``."""

    __slots__ = ()

    FINAL = frozenset({"finished"})
    _OPERATION_KIND = "stream"

    @property
    def url(self) -> str | None:
        return _opt_str(self.params.get("url"))

    @property
    def name(self) -> str | None:
        return _opt_str(self.params.get("name"))

    def _result_fields(self) -> dict[str, Any]:
        return {"url": self.url, "name": self.name}


@_event_type("calling.call.transcribe")
class TranscribeEvent(Event):
    """
    ``calling.call.transcribe``: ``transcribing`` / ``finished``.

    It only reports progress: the transcript event that follows ends the transcription.
    """

    __slots__ = ()

    _OPERATION_KIND = "transcribe"


# The transcript event types, and the final state each ends its transcription in.
_TRANSCRIPT_FINAL = {"calling.transcript.completed": "finished",
                     "calling.transcript.failed": "failed"}  # fmt: skip


@_event_type(*_TRANSCRIPT_FINAL)
class TranscriptEvent(Event):
    """
    ``calling.transcript.completed`` or ``.failed`` (typed by the reference).

    It names no control id: it goes to the call's running transcription.
    """

    __slots__ = ()

    FINAL = frozenset(_TRANSCRIPT_FINAL.values())
    _OPERATION_KIND = "transcribe"

    @property
    def text(self) -> str | None:
        return _opt_str(self.params.get("text"))

    @property
    def transcript_id(self) -> str | None:
        return _opt_str(self.params.get("id"))

    @property
    def final_state(self) -> str | None:
        return _TRANSCRIPT_FINAL.get(self.event_type or "")

    def _result_fields(self) -> dict[str, Any]:
        return {"text": self.text, "transcript_id": self.transcript_id}


@_event_type("calling.call.refer")
class ReferEvent(Event):
    """``calling.call.refer``: the REFER's progress."""

    __slots__ = ()


@_event_type("calling.call.denoise")
class DenoiseEvent(Event):
    """``calling.call.denoise``: *denoised* tells whether the filter is on."""

    __slots__ = ()

    @property
    def denoised(self) -> bool | None:
        v = self.params.get("denoised")
        return v if isinstance(v, bool) else None


@_event_type("calling.call.fax")
class FaxEvent(Event):
    """``calling.call.fax``."""

    __slots__ = ()


# The live event types, each named after the kind of operation it is about.
_LIVE_KINDS = {"calling.call.live_transcribe": "live_transcribe",
               "calling.call.live_translate": "live_translate"}  # fmt: skip


@_event_type(*_LIVE_KINDS)
class LiveEvent(Event):
    """
    ``calling.call.live_transcribe`` / ``calling.call.live_translate``.

    The reference documents no payload; these are the emulator's, see docs/callbacks.md.
    """

    __slots__ = ()

    FINAL = frozenset({"stopped"})

    @property
    def operation_kind(self) -> str | None:
        return _LIVE_KINDS.get(self.event_type or "")


@_event_type("calling.ai.sidecar")
class SidecarEvent(Event):
    """
    An AI sidecar callback; *sidecar_type* is ``start``, ``insight``, ``final``...

    *params* holds the ``sidecar_event`` object.
    """

    __slots__ = ()

    FINAL = frozenset({"stopped"})
    _OPERATION_KIND = "ai_sidecar"

    @property
    def sidecar_type(self) -> str | None:
        return _opt_str(self.params.get("type"))

    @property
    def final_state(self) -> str | None:
        return "stopped" if self.sidecar_type in ("stop", "final") else None


class UnknownEvent(Event):
    """An event type relaycall does not know (or a flat callback); *raw* keeps the whole payload."""

    __slots__ = ()


def parse_event(payload: Any) -> Event:
    """
    Turn a decoded callback body into an :class:`Event`.

    Raises EventParseError for anything that is not a callback: not an
    object, a params that is not an object, ids that are not strings.
    """
    # type() first: isinstance() against the Mapping ABC costs several times a type check,
    # and a decoded body is a dict.
    if type(payload) is not dict and not isinstance(payload, Mapping):
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
        if type(params) is not dict and not isinstance(params, Mapping):
            raise EventParseError(f"{event_type}: params must be a JSON object")
    else:
        params = payload
    call_id = params.get("call_id")
    control_id = params.get("control_id")
    state = params.get("state")
    if event_type == "calling.call.state":
        state = params.get("call_state", state)
    # Written out rather than looped over: this runs for every callback.
    if call_id is not None and not (isinstance(call_id, str) and call_id.isascii()):
        _check_text("call_id", call_id)
    if control_id is not None and not (isinstance(control_id, str) and control_id.isascii()):
        _check_text("control_id", control_id)
    if state is not None and not (isinstance(state, str) and state.isascii()):
        _check_text("state", state)
    cls = EVENT_TYPES.get(event_type, UnknownEvent) if event_type else UnknownEvent
    stamp = payload.get("timestamp")
    # A finite float (x - x is NaN for inf and NaN) is its own time in seconds.
    if type(stamp) is not float or stamp - stamp != 0:
        stamp = _seconds("timestamp", stamp, 1)
    if cls in _PLAIN:
        return _event(cls, event_type, call_id, control_id, state, params, stamp, payload)
    return cls(
        event_type=event_type,
        call_id=call_id,
        control_id=control_id,
        state=state,
        params=params,
        timestamp=stamp,
        raw=payload,
    )


#: The Event fields, in order, as the setters of their slots.
_FIELDS = tuple(field.name for field in attrs.fields(Event))
(_set_event_type, _set_call_id, _set_control_id, _set_state, _set_params, _set_timestamp,
 _set_raw) = (getattr(Event, name).__set__ for name in _FIELDS)  # fmt: skip
_new = object.__new__

#: The event classes with exactly Event's fields (every one relaycall has), which
#: :func:`_event` can build.
_PLAIN = frozenset(
    cls
    for cls in (*EVENT_TYPES.values(), UnknownEvent)
    if tuple(field.name for field in attrs.fields(cls)) == _FIELDS
)


def _event(  # noqa: PLR0917 - one positional call per callback
    cls: type[Event],
    event_type: str | None,
    call_id: str | None,
    control_id: str | None,
    state: str | None,
    params: Mapping[str, Any],
    timestamp: float | None,
    raw: Mapping[str, Any],
) -> Event:
    """
    ``cls(event_type=..., ...)``, for a class in _PLAIN, for about half the cost.

    attrs' frozen ``__init__`` sets each field through ``object.__setattr__``
    (a generic attribute lookup and an argument tuple per field); setting the
    slots through their descriptors directly gives the same object. No field
    has a validator or converter to skip.
    """
    event = _new(cls)
    _set_event_type(event, event_type)
    _set_call_id(event, call_id)
    _set_control_id(event, control_id)
    _set_state(event, state)
    _set_params(event, params)
    _set_timestamp(event, timestamp)
    _set_raw(event, raw)
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
