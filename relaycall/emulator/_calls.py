"""
An emulated call: its leg, its lifecycle, the caller's scripted input, and
the callbacks it sends.
"""

from __future__ import annotations

import uuid
from collections import deque
from collections.abc import Callable, Iterable
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from relaycall import commands as c
from relaycall._reading import WireError
from relaycall.emulator._clock import Timer
from relaycall.emulator._config import Scenario

if TYPE_CHECKING:
    from relaycall.emulator._core import EmulatedPlatform
    from relaycall.emulator._ops import Operation

__all__ = ["EmulatedCall", "Refusal", "conflict", "not_found", "refuse"]

#: Statuses before answer (``initiated`` is never used here but accepted).
PRE_ANSWER = frozenset({"queued", "initiated", "created", "ringing"})
#: What a leg says once its call is over.
TERMINAL = frozenset({"completed", "canceled", "failed", "ended"})


class Refusal(Exception):
    """A request the emulator answers with an error status."""

    def __init__(self, status: int, body: Any) -> None:
        super().__init__(status)
        self.status = status
        self.body = body


def not_found() -> Refusal:
    return Refusal(404, {"error": "Not Found"})


def conflict() -> Refusal:
    return Refusal(409, {"error": "Conflict"})


def refuse(attribute: str, message: str) -> Refusal:
    """A 422 naming *attribute*."""
    return Refusal(422, WireError(attribute, message).body())


def _iso(unix: float) -> str:
    return (
        datetime.fromtimestamp(unix, tz=timezone.utc)
        .isoformat(timespec="milliseconds")
        .replace("+00:00", "Z")
    )


_LEG_TYPES = {"phone": "relay_pstn_call", "sip": "relay_sip_call", "webrtc": "relay_webrtc_call"}


def _leg_type(to: str) -> tuple[str, str]:
    """The leg ``type`` and the callback ``device.type`` for a destination."""
    low = to.lower()
    if low.startswith(("sip:", "sips:")):
        return "relay_sip_call", "sip"
    if low.startswith(("verto:", "client:", "/")):
        return "relay_webrtc_call", "webrtc"
    return "relay_pstn_call", "phone"


class EmulatedCall:
    """
    One call the emulator placed. Read its state; drive it through :class:`EmulatedPlatform`.

    Attributes:
        id: The call id.
        status: The leg status: ``queued``, ``created``, ``ringing``,
            ``answered``, then ``completed`` (ended after answer), ``canceled``
            (ended before answer by the API), ``failed`` (scenario ``failed``)
            or ``ended`` (busy, no answer, declined).
        end_reason: Why it ended (``hangup``, ``busy``, ``noAnswer``...).
        answered_as: ``human`` or ``machine`` once answered.
        ops: The operations running now, by ``(kind, control_id)``.
        scenario: How the far end behaves.
        user_events: The ``calling.user_event`` events received, in order.
    """

    def __init__(
        self,
        emu: EmulatedPlatform,
        dial: c.Dial | None,
        scenario: Scenario,
        *,
        from_: str | None = None,
        to: str | None = None,
        direction: str = "outbound",
        device_type: str | None = None,
        ring_timeout: float | None = None,
        url: str | None = None,
        parent: EmulatedCall | None = None,
    ) -> None:
        self.emu = emu
        self.id = str(uuid.uuid4())
        self.node_id = str(uuid.uuid4())
        self.segment_id = str(uuid.uuid4())
        self.from_ = dial.from_ if dial is not None else from_ or ""
        self.to = (dial.to or "") if dial is not None else to or ""
        self.url = dial.url if dial is not None else url
        self.dial = dial
        #: ``outbound`` (dialled, or a SWML connect's peer) or ``inbound`` (placed to the app).
        self.direction = direction
        #: The call whose SWML ``connect`` dialled this one.
        self.parent = parent
        self.scenario = scenario
        self.status = "queued"
        self.type, self.device_type = _leg_type(self.to)
        if device_type is not None:
            self.device_type = device_type
            self.type = _LEG_TYPES[device_type]
        self.ring_timeout = dial.timeout if dial is not None else ring_timeout
        self.status_url = dial.status_url if dial is not None else None
        self.status_events = frozenset(
            (dial.status_events if dial is not None else None) or ("ended",)
        )
        self.created_at = emu.clock.now()
        #: When the call left the new-call queue (emulated seconds; see ``start``).
        self.queued_until = self.created_at
        self.answered_at: float | None = None
        self.ended_at: float | None = None
        self.end_reason: str | None = None
        self.answered_as: str | None = None
        #: What machine detection finds, when :meth:`EmulatedPlatform.answer_as` said so.
        self.detect_override: str | None = None
        self.ops: dict[tuple[str, str], Operation] = {}
        self.dtmf_script: deque[str] = deque(scenario.dtmf)
        self.speech_script: deque[str] = deque(scenario.speech)
        self.faxes: dict[str, str] = {}
        self.denoised = False
        self.ai_held = False
        self.ai_hold_timeout: str | None = None
        self.ai_stopped = False
        self.ai_messages: list[dict[str, Any]] = []
        self.ai_global_data: dict[str, Any] = {}
        self.live: dict[str, Any] = {}
        self.sidecar: Any = None
        self.bridged_to: Any = None
        self.transfers: list[Any] = []
        self.redirects: list[Any] = []
        self.user_events: list[Any] = []
        self._timer: Timer | None = None
        self._hangup_timer: Timer | None = None
        self._input_timers: list[Timer] = []
        self._pumping = False
        #: The SWML document running on the call (``_swml.SwmlRun``), if any.
        self.swml: Any = None
        #: Told ``(call, "answered" | "ended")`` (a SWML connect waits on its peer).
        self.watchers: list[Callable[[EmulatedCall, str], None]] = []

    def __repr__(self) -> str:
        return f"<EmulatedCall id={self.id} to={self.to!r} status={self.status}>"

    # --- state --------------------------------------------------------------------------

    @property
    def is_live(self) -> bool:
        """Whether the call has not ended."""
        return self.ended_at is None

    @property
    def is_answered(self) -> bool:
        return self.status == "answered"

    def leg(self) -> dict[str, Any]:
        """The CallLeg the API answers with: every key present, nulls where unknown."""
        duration = duration_ms = billing_ms = None
        if self.ended_at is not None:
            talk = self.ended_at - self.answered_at if self.answered_at is not None else 0.0
            duration_ms = max(0, round(talk * 1000))
            duration = duration_ms // 1000
            billing_ms = duration_ms
        return {
            "id": self.id,
            "from": self.from_,
            "to": self.to,
            "direction": "inbound" if self.direction == "inbound" else "outbound-api",
            "source": "realtime_api",
            "url": self.url,
            "charge": 0.0,
            "created_at": _iso(self.emu.clock.wall(self.created_at)),
            "charge_details": [],
            "status": self.status,
            "duration": duration,
            "duration_ms": duration_ms,
            "billing_ms": billing_ms,
            "type": self.type,
            "parent_id": None,
        }

    def summary(self) -> dict[str, Any]:
        """The leg plus what the emulator knows about the call (for the control API)."""
        return {
            **self.leg(),
            "end_reason": self.end_reason,
            "answered_as": self.answered_as,
            "queued_seconds": round(self.queued_until - self.created_at, 6),
            "operations": [
                {"kind": kind, "control_id": cid, "state": op.state}
                for (kind, cid), op in self.ops.items()
            ],
            "denoised": self.denoised,
            "ai_held": self.ai_held,
            "live": sorted(self.live),
            "sidecar": self.sidecar is not None,
            "faxes": dict(self.faxes),
            "pending_dtmf": list(self.dtmf_script),
            "pending_speech": list(self.speech_script),
            "user_events": list(self.user_events),
            "direction": self.direction,
            "bridged_to": self.bridged_to if isinstance(self.bridged_to, str) else None,
            "swml": self.swml.summary() if self.swml is not None else None,
        }

    # --- callbacks ------------------------------------------------------------------------

    def envelope(self, event_type: str, params: dict[str, Any]) -> dict[str, Any]:
        """The Relay-style envelope every callback but the transcript's uses."""
        cfg = self.emu.config
        return {
            "event_type": event_type,
            "event_channel": f"swml:{self.id}",
            "timestamp": round(self.emu.clock.wall(), 6),
            "project_id": cfg.project_id,
            "space_id": cfg.space_id,
            "params": params,
        }

    def emit(
        self,
        urls: str | Iterable[str | None] | None,
        event_type: str,
        params: dict[str, Any],
        *,
        control_id: str | None = None,
        with_node: bool = True,
    ) -> None:
        """Send ``event_type`` with *params* (plus call_id, node_id) to each of *urls*."""
        head: dict[str, Any] = {"call_id": self.id}
        if with_node:
            head["node_id"] = self.node_id
        self.post(urls, self.envelope(event_type, {**head, **params}), event_type, control_id)

    def post(
        self,
        urls: str | Iterable[str | None] | None,
        payload: Any,
        event_type: str,
        control_id: str | None = None,
    ) -> None:
        """Send a ready-made *payload* to each of *urls* (deduplicated, in order)."""
        targets: list[str | None]
        if urls is None or isinstance(urls, str):
            targets = [urls]
        else:
            seen: list[str | None] = []
            for u in urls:
                if u is not None and u not in seen:
                    seen.append(u)
            targets = seen or [None]
        for url in targets:
            self.emu.outbox.post(
                url, payload, call_id=self.id, event_type=event_type, control_id=control_id
            )

    def emit_state(self, state: str) -> None:
        if state not in self.status_events:
            return
        params: dict[str, Any] = {
            "segment_id": self.segment_id,
            "call_state": state,
            "direction": self.direction,
            "device": self._device(),
        }
        if state == "ended":
            params["end_reason"] = self.end_reason
        self.emit(self.status_url, "calling.call.state", params)

    def _device(self) -> dict[str, Any]:
        if self.device_type == "phone":
            return {"type": "phone", "params": {"from_number": self.from_, "to_number": self.to}}
        return {"type": self.device_type, "params": {"from": self.from_, "to": self.to}}

    # --- lifecycle ------------------------------------------------------------------------

    def _later(self, delay: float, fn: Callable[..., None], *args: Any) -> None:
        self.emu.clock.cancel(self._timer)
        self._timer = self.emu.clock.after(delay, fn, *args)

    def start(self, queued: float = 0.0) -> None:
        """
        Begin the scripted lifecycle: created, ringing, then the scenario's outcome.

        *queued* is the emulated seconds the call waits in the new-call queue
        (``RateLimits.calls_per_second``) before it is set up.
        """
        self.queued_until = self.emu.clock.now() + queued
        self._later(queued + self.emu.config.setup_seconds, self._created)

    def _created(self) -> None:
        self.status = "created"
        self.emit_state("created")
        if self.scenario.answer == "failed":
            self._later(self.emu.config.setup_seconds, self.end, "error")
        else:
            self._later(self.emu.config.setup_seconds, self._ringing)

    def _ringing(self) -> None:
        self.status = "ringing"
        self.emit_state("ringing")
        sc = self.scenario
        timeout = self.ring_timeout
        ring = sc.ring_seconds
        if sc.answer in ("human", "machine"):
            if timeout is not None and timeout < ring:
                self._later(timeout, self.end, "noAnswer")
            else:
                self._later(ring, self.answer, sc.answer)
        elif sc.answer == "no-answer":
            self._later(timeout if timeout is not None else ring, self.end, "noAnswer")
        else:
            self._later(ring, self.end, "busy" if sc.answer == "busy" else "decline")

    def answer(self, kind: str) -> None:
        """Answer now, as ``human`` or ``machine``, emitting any lifecycle step skipped."""
        if not self.is_live or self.is_answered:
            return
        self.emu.clock.cancel(self._timer)
        self._timer = None
        if self.status == "queued":
            self.status = "created"
            self.emit_state("created")
        if self.status == "created":
            self.status = "ringing"
            self.emit_state("ringing")
        self.status = "answered"
        self.answered_as = kind
        self.answered_at = self.emu.clock.now()
        self.emit_state("answered")
        sc = self.scenario
        if sc.send_fax is not None:
            self.faxes["send"] = sc.send_fax
        if sc.receive_fax is not None:
            self.faxes["receive"] = sc.receive_fax
        if sc.hangup_after is not None:
            self._hangup_timer = self.emu.clock.after(sc.hangup_after, self.end, "hangup")
        self._tell("answered")
        dial = self.dial
        if dial is not None and self.swml is None and (dial.url or dial.swml is not None):
            self.emu.run_dial_swml(self)

    def _tell(self, what: str) -> None:
        for watcher in list(self.watchers):
            watcher(self, what)

    def end(self, reason: str = "hangup", status: str | None = None) -> None:
        """
        End the call: finish every operation (their final callbacks first), then ``ended``.

        *status* is the leg's final status; by default ``completed`` after answer,
        ``failed`` for an error before it, ``canceled`` for a cancel, else ``ended``.
        """
        if not self.is_live:
            return
        clock = self.emu.clock
        clock.cancel(self._timer)
        clock.cancel(self._hangup_timer)
        self._timer = self._hangup_timer = None
        for t in self._input_timers:
            clock.cancel(t)
        self._input_timers.clear()
        was_answered = self.is_answered
        self.end_reason = reason
        self.status = "ending"
        self.emit_state("ending")
        if self.swml is not None:
            self.swml.on_call_end()
        for op in list(self.ops.values()):
            op.on_call_end()
        for session in list(self.live.values()):
            session.on_call_end()
        if self.sidecar is not None:
            self.sidecar.on_call_end()
        self.faxes.clear()
        self.ended_at = clock.now()
        if status is None:
            if was_answered:
                status = "completed"
            elif reason == "error":
                status = "failed"
            elif reason == "cancel":
                status = "canceled"
            else:
                status = "ended"
        self.status = status
        self.emit_state("ended")
        self.emu._call_ended(self)
        self._tell("ended")

    # --- the caller's input ----------------------------------------------------------------

    def listeners(self) -> list[Operation]:
        return [op for op in self.ops.values() if op.accepts_digits or op.accepts_speech]

    def kick(self) -> None:
        """An input operation is listening: start the next scripted answer if one fits."""
        if self._pumping or not self.is_answered:
            return
        listeners = self.listeners()
        if not listeners:
            return
        sc = self.scenario
        delay = sc.input_delay
        if self.dtmf_script and any(op.wants_digits for op in listeners):
            keys = self.dtmf_script.popleft()
            if not keys:
                return
            self._pumping = True
            last = len(keys) - 1
            for i, key in enumerate(keys):
                self._input(delay + i * sc.digit_interval, self._pump_key, key, i == last)
        elif self.speech_script and any(op.wants_speech for op in listeners):
            text = self.speech_script.popleft()
            self._pumping = True
            self._input(delay, self._pump_speech, text)

    def _input(self, delay: float, fn: Callable[..., None], *args: Any) -> None:
        timers = self._input_timers
        if len(timers) > 64:
            timers[:] = [t for t in timers if not t.cancelled]
        timers.append(self.emu.clock.after(delay, fn, *args))

    def _pump_key(self, key: str, last: bool) -> None:
        if last:
            self._pumping = False
        self.feed_digits(key)
        if last:
            self.kick()

    def _pump_speech(self, text: str) -> None:
        if not self.say(text, scripted=True):
            self._pumping = False

    def feed_digits(self, digits: str) -> bool:
        """Deliver key presses to every operation listening for them now."""
        delivered = False
        for key in digits:
            for op in self.listeners():
                if op.accepts_digits and not op.done:
                    op.on_digit(key)
                    delivered = True
        return delivered

    def press(self, digits: str) -> bool:
        """
        The caller presses *digits*: delivered now if something listens (True), else
        kept as the next scripted DTMF answer (False).
        """
        if any(op.accepts_digits for op in self.listeners()):
            return self.feed_digits(digits)
        self.dtmf_script.appendleft(digits)
        return False

    def say(self, text: str, *, scripted: bool = False) -> bool:
        """
        The caller starts saying *text* now: word by word, then silence. Returns
        False (and keeps it as the next scripted utterance) when nothing listens.
        """
        targets = [op for op in self.listeners() if op.accepts_speech]
        if not targets:
            self.speech_script.appendleft(text)
            return False
        words = text.split()
        per = self.scenario.seconds_per_word
        for op in targets:
            op.on_speech_start()
        for k in range(1, len(words)):
            self._input(k * per, self._speech_partial, targets, " ".join(words[:k]))
        self._input(max(1, len(words)) * per, self._speech_end, targets, text, scripted)
        return True

    def _speech_partial(self, targets: list[Operation], text: str) -> None:
        for op in targets:
            if not op.done:
                op.on_speech_partial(text)

    def _speech_end(self, targets: list[Operation], text: str, scripted: bool) -> None:
        if scripted:
            self._pumping = False
        for op in targets:
            if not op.done:
                op.on_speech_end(text)
        if scripted:
            self.kick()
