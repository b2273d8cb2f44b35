"""
The operations that run on an emulated call, each a small state machine on the
shared scheduler, reporting through the callback shapes of docs/callbacks.md.

Each operation declares the commands it answers: the one that starts it
(``started_by``) and, with :func:`follow_up` on a method, each command that acts
on it once running. The platform dispatches through these declarations.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar, cast

import attrs

from relaycall import commands as c
from relaycall._writing import write
from relaycall.emulator._clock import Timer
from relaycall.emulator._wav import RATE, frames_for, wav_size

if TYPE_CHECKING:
    from relaycall.emulator._calls import EmulatedCall
    from relaycall.emulator._media import MediaLink

__all__ = [
    "OPERATIONS",
    "RUNNING",
    "Collect",
    "Detect",
    "LiveSession",
    "Operation",
    "Play",
    "Record",
    "Running",
    "Sidecar",
    "Stream",
    "Tap",
    "Transcribe",
    "follow_up",
    "play_seconds",
]

F = TypeVar("F", bound=Callable[..., Any])

#: Seconds of speech per character of TTS text, and the shortest TTS item.
TTS_SECONDS_PER_CHAR = 0.075
TTS_MIN_SECONDS = 0.5


# --- declaring follow-ups ------------------------------------------------------------------


def follow_up(command: type[c.Command[Any]], *fields: str) -> Callable[[F], F]:
    """
    Declare that the decorated method carries out *command* on a running instance.

    The platform finds the instance the command names (404 when none is
    running), calls the method with the values of the command's *fields*, in
    order, and answers with the call leg.
    """
    known = attrs.fields_dict(cast("Any", command))
    for name in fields:
        if name not in known:
            raise TypeError(f"{command.__name__} has no field {name!r}")

    def deco(fn: F) -> F:
        fn._follows = (command, fields)  # type: ignore[attr-defined]
        return fn

    return deco


#: Every class with follow-ups, in definition order (filled by Running.__init_subclass__).
RUNNING: list[type[Running]] = []
#: Every operation kind a command starts (filled by Operation.__init_subclass__).
OPERATIONS: list[type[Operation]] = []


class Running:
    """Something running on a call that follow-up commands act on: an operation, the sidecar."""

    #: The commands this class's own methods carry out, declared with :func:`follow_up`:
    #: command class -> (method name, the command's fields it is called with).
    follow_ups: ClassVar[dict[type[c.Command[Any]], tuple[str, tuple[str, ...]]]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.follow_ups = {
            value._follows[0]: (name, value._follows[1])
            for name, value in vars(cls).items()
            if hasattr(value, "_follows")
        }
        if cls.follow_ups:
            RUNNING.append(cls)

    @classmethod
    def running(cls, call: EmulatedCall, cmd: Any) -> Running | None:
        """The instance on *call* that follow-up *cmd* names, None when none is running."""
        raise NotImplementedError


class Operation(Running):
    """
    An operation named by a control id. Subclasses set *kind*, *event_type* and
    *started_by*, implement :meth:`begin` and :meth:`stop`, and declare their
    follow-ups with :func:`follow_up`.
    """

    kind: ClassVar[str]
    event_type: ClassVar[str]
    #: The command that starts it; the operation is built as ``cls(call, command)``.
    started_by: ClassVar[type[c.Command[Any]]]
    #: Whether a second one on the same call is refused (409) while one runs.
    one_per_call: ClassVar[bool] = False
    #: Which scripted input starts flowing when this operation listens.
    wants_digits = False
    wants_speech = False
    #: Which input reaches it at all (a key press, a word).
    accepts_digits = False
    accepts_speech = False

    def __init__(self, call: EmulatedCall, cmd: Any) -> None:
        """One for *cmd*, its ``started_by`` command (subclasses read more of it)."""
        self.call = call
        self.clock = call.emu.clock
        self.control_id: str = cmd.control_id
        self.status_url: str | None = cmd.status_url
        self.state = "starting"
        self.done = False
        self._timers: dict[str, Timer] = {}
        #: Called once the operation is over (a SWML step waiting for it goes on).
        self.on_done: Callable[[Operation], None] | None = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "started_by" in vars(cls):
            OPERATIONS.append(cls)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} control_id={self.control_id} state={self.state}>"

    @classmethod
    def running(cls, call: EmulatedCall, cmd: Any) -> Operation | None:
        op = call.ops.get((cls.kind, cmd.control_id))
        return None if op is None or op.done else op

    # --- helpers -----------------------------------------------------------------------------

    def _set(self, name: str, delay: float, fn: Callable[..., None], *args: Any) -> None:
        """(Re)arm the timer called *name*."""
        self.clock.cancel(self._timers.get(name))
        self._timers[name] = self.clock.after(delay, fn, *args)

    def _unset(self, *names: str) -> None:
        for name in names:
            self.clock.cancel(self._timers.pop(name, None))

    def _left(self, name: str) -> float | None:
        """Emulated seconds until timer *name* fires, or None when it is not armed."""
        t = self._timers.get(name)
        if t is None or t.cancelled:
            return None
        return max(0.0, t.due - self.clock.now())

    def emit(self, params: dict[str, Any]) -> None:
        self.call.emit(
            self.status_url,
            self.event_type,
            {"control_id": self.control_id, **params},
            control_id=self.control_id,
        )

    def finish(self) -> None:
        """Stop every timer and leave the call's active operations."""
        if self.done:
            return
        self.done = True
        for t in self._timers.values():
            self.clock.cancel(t)
        self._timers.clear()
        key = (self.kind, self.control_id)
        if self.call.ops.get(key) is self:
            del self.call.ops[key]
        if self.on_done is not None:
            self.on_done(self)

    # --- lifecycle ---------------------------------------------------------------------------

    def begin(self) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def on_call_end(self) -> None:
        self.stop()

    # --- input (for operations that listen) ----------------------------------------------------

    def on_digit(self, key: str) -> None:
        """A key press reached the operation."""

    def on_speech_start(self) -> None:
        """The caller started speaking."""

    def on_speech_partial(self, text: str) -> None:
        """The caller has said *text* so far."""

    def on_speech_end(self, text: str) -> None:
        """The caller finished saying *text*."""


# --- play ------------------------------------------------------------------------------------


def play_seconds(
    cmd: c.Play, audio_seconds: Callable[[str], float], ringtone: float | None
) -> float:
    """How long a play lasts in total (``inf`` when it plays until stopped)."""
    once = 0.0
    for item in cmd.play:
        if isinstance(item, c.PlaySilence):
            once += item.duration
        elif isinstance(item, c.PlayTTS):
            once += max(TTS_MIN_SECONDS, TTS_SECONDS_PER_CHAR * len(item.text))
        elif isinstance(item, c.PlayAudio):
            once += audio_seconds(item.url)
        elif isinstance(item, c.PlayRingtone):
            d = item.duration if item.duration is not None else ringtone
            once += math.inf if d is None else d
    loop = 1 if cmd.loop is None else cmd.loop
    if loop == 0:
        return math.inf if once > 0 else 0.0
    return once * loop


class Play(Operation):
    """``playing`` -> (``paused`` <-> ``playing``) -> ``finished``."""

    kind = "play"
    event_type = "calling.call.play"
    started_by = c.Play

    def __init__(self, call: EmulatedCall, cmd: c.Play) -> None:
        super().__init__(call, cmd)
        emu = call.emu
        self.total = play_seconds(
            cmd,
            lambda url: emu.audio_durations.get(url, emu.config.audio_seconds),
            emu.config.ringtone_seconds,
        )
        self.volume = cmd.volume or 0.0
        self.played = 0.0
        self._since = 0.0

    def begin(self) -> None:
        self.state = "playing"
        self._since = self.clock.now()
        self.emit({"state": "playing"})
        self._arm()

    def _arm(self) -> None:
        left = self.total - self.played
        if math.isfinite(left):
            self._set("end", left, self._end, "finished")

    def _end(self, state: str) -> None:
        if self.done:
            return
        self.state = state
        self.emit({"state": state})
        self.finish()

    @follow_up(c.PlayPause)
    def pause(self) -> None:
        if self.state != "playing":
            return
        self.played += self.clock.now() - self._since
        self._unset("end")
        self.state = "paused"
        self.emit({"state": "paused"})

    @follow_up(c.PlayResume)
    def resume(self) -> None:
        if self.state != "paused":
            return
        self.state = "playing"
        self._since = self.clock.now()
        self.emit({"state": "playing"})
        self._arm()

    @follow_up(c.PlayVolume, "volume")
    def set_volume(self, volume: float) -> None:
        self.volume = volume

    @follow_up(c.PlayStop)
    def stop(self) -> None:
        self._end("finished")


# --- record ----------------------------------------------------------------------------------


class Record(Operation):
    """
    ``recording`` -> (``paused`` <-> ``recording``) -> ``finished`` (with url) or ``no_input``.
    """

    kind = "record"
    event_type = "calling.call.record"
    started_by = c.Record
    wants_digits = wants_speech = accepts_digits = accepts_speech = True

    def __init__(self, call: EmulatedCall, cmd: c.Record) -> None:
        super().__init__(call, cmd)
        a = cmd.audio
        self.audio = a
        self.initial_timeout = 4.0 if a.initial_timeout is None else a.initial_timeout
        self.end_silence_timeout = 0.5 if a.end_silence_timeout is None else a.end_silence_timeout
        self.max_length = a.max_length or 0
        self.terminators = "#" if a.terminators is None else a.terminators
        self.heard = False
        self.recorded = 0.0
        self._since = 0.0
        self._counting = False
        self.behavior = "skip"
        self.recording_id = str(uuid.uuid4())

    def _elapsed(self) -> float:
        return self.recorded + (self.clock.now() - self._since if self._counting else 0.0)

    def begin(self) -> None:
        self.state = "recording"
        self._since = self.clock.now()
        self._counting = True
        self.emit({"state": "recording"})
        self._arm_max()
        self._arm_initial()
        self.call.kick()

    def _arm_max(self) -> None:
        if self.max_length > 0:
            self._set("max", max(0.0, self.max_length - self._elapsed()), self._finished)

    def _arm_initial(self) -> None:
        if not self.heard and self.initial_timeout > 0:
            self._set("initial", self.initial_timeout, self._no_input)

    def _no_input(self) -> None:
        if self.done:
            return
        self.state = "no_input"
        self.emit({"state": "no_input"})
        self.finish()

    def recording_url(self) -> str:
        """Where the finished file is served (known from the start, as SWML's record_call_url)."""
        return f"{self.call.emu.public_url}/recordings/{self.recording_id}.wav"

    def _finished(self) -> None:
        if self.done:
            return
        seconds = self._elapsed()
        frames = frames_for(seconds)
        emu = self.call.emu
        emu.store_recording(self.recording_id, frames)
        self.state = "finished"
        self.emit(self.finished_params(frames))
        self.finish()

    def finished_params(self, frames: int) -> dict[str, Any]:
        """The ``finished`` event's params (calling.record's shape)."""
        return {
            "state": "finished",
            "url": self.recording_url(),
            "duration": frames / RATE,
            "size": wav_size(frames),
            "record": {"audio": write(self.audio)},
        }

    def _heard(self) -> None:
        self.heard = True
        self._unset("initial", "silence")

    def on_digit(self, key: str) -> None:
        if self.state != "recording":
            return
        if key.lower() in self.terminators.lower():
            self._finished()
            return
        self._heard()

    def on_speech_start(self) -> None:
        if self.state == "recording":
            self._heard()

    def on_speech_end(self, text: str) -> None:
        if self.state == "recording" and self.end_silence_timeout > 0:
            self._set("silence", self.end_silence_timeout, self._finished)

    @follow_up(c.RecordPause, "behavior")
    def pause(self, behavior: str | None) -> None:
        if self.state != "recording":
            return
        self.behavior = behavior or "skip"
        self._unset("initial", "silence")
        if self.behavior == "skip":
            self.recorded = self._elapsed()
            self._counting = False
            self._unset("max")
        self.state = "paused"
        self.emit({"state": "paused"})

    @follow_up(c.RecordResume)
    def resume(self) -> None:
        if self.state != "paused":
            return
        if not self._counting:
            self._since = self.clock.now()
            self._counting = True
        self.state = "recording"
        self.emit({"state": "recording"})
        self._arm_max()
        self._arm_initial()

    @follow_up(c.RecordStop)
    def stop(self) -> None:
        self._finished()


# --- collect ---------------------------------------------------------------------------------


class Collect(Operation):
    """
    Digits and/or speech from the caller; one result, or (continuous) a result
    per input until stopped.
    """

    kind = "collect"
    event_type = "calling.call.collect"
    started_by = c.Collect
    accepts_digits = accepts_speech = True

    def __init__(self, call: EmulatedCall, cmd: c.Collect) -> None:
        super().__init__(call, cmd)
        cfg = call.emu.config
        self.cmd = cmd
        self.digits = cmd.digits
        self.speech = cmd.speech
        self.wants_digits = cmd.digits is not None
        self.wants_speech = cmd.speech is not None
        self.initial_timeout = cmd.initial_timeout or cfg.collect_initial_timeout
        d = cmd.digits
        self.digit_timeout = (d.digit_timeout if d else None) or cfg.collect_digit_timeout
        self.terminators = (d.terminators if d else None) or ""
        self.max = d.max if d else 0
        s = cmd.speech
        self.end_silence = (s.end_silence_timeout if s else None) or cfg.collect_end_silence_timeout
        self.continuous = bool(cmd.continuous)
        self.partial = bool(cmd.partial_results)
        self.start_of_input = bool(cmd.send_start_of_input)
        self.timers_started = bool(cmd.start_input_timers)
        self.buffer = ""
        self.heard = False
        self.speaking: str | None = None
        self.last_result: dict[str, Any] | None = None
        #: The last result sent (a SWML prompt reads it once the collect is over).
        self.final_result: dict[str, Any] | None = None

    def emit(self, params: dict[str, Any]) -> None:
        if self.continuous and "state" not in params:
            params = {**params, "state": "collecting"}
        super().emit(params)

    def begin(self) -> None:
        self.state = "collecting"
        if self.timers_started:
            self._set("initial", self.initial_timeout, self._timeout)
        self.call.kick()

    @follow_up(c.CollectStartInputTimers)
    def start_input_timers(self) -> None:
        if self.timers_started:
            return
        self.timers_started = True
        if not self.heard:
            self._set("initial", self.initial_timeout, self._timeout)

    # --- results ---------------------------------------------------------------------------

    def _result(self, kind: str, params: dict[str, Any]) -> None:
        result = {"type": kind, "params": params}
        self.final_result = result
        event: dict[str, Any] = {"result": result}
        if self.partial:
            event["final"] = True
        if self.continuous:
            event["state"] = "collecting"
            self.last_result = result
            self.emit(event)
            self._restart()
            return
        self.state = {"digit": "finished", "speech": "finished"}.get(kind, kind)
        self.emit(event)
        self.finish()

    def _restart(self) -> None:
        self.buffer = ""
        self.heard = False
        self.speaking = None
        self._unset("initial", "digit", "silence")
        if self.timers_started:
            self._set("initial", self.initial_timeout, self._timeout)
        self.call.kick()

    def _timeout(self) -> None:
        if not self.heard:
            self._result("no_input", {})

    def _digits_done(self, terminator: str) -> None:
        if self.buffer:
            self._result("digit", {"digits": self.buffer, "terminator": terminator})
        else:
            self._result("no_match", {})

    def _speech_done(self) -> None:
        text = self.speaking or ""
        if text.strip():
            self._result("speech", {"text": text, "confidence": self.call.scenario.confidence})
        else:
            self._result("no_match", {})

    # --- input -------------------------------------------------------------------------------

    def _first_input(self) -> None:
        if not self.heard:
            self.heard = True
            self._unset("initial")
            if self.start_of_input:
                self.emit({"result": {"type": "start_of_input", "params": {}}})

    def on_digit(self, key: str) -> None:
        if self.done:
            return
        self._first_input()
        if self.digits is None:
            self._result("no_match", {})
            return
        if key.lower() in self.terminators.lower():
            self._unset("digit")
            self._digits_done(key)
            return
        self.buffer += key
        if self.partial:
            self.emit(
                {"result": {"type": "digit", "params": {"digits": self.buffer, "terminator": ""}},
                 "final": False}
            )  # fmt: skip
        if len(self.buffer) >= self.max:
            self._unset("digit")
            self._digits_done("")
            return
        self._set("digit", self.digit_timeout, self._digits_done, "")

    def on_speech_start(self) -> None:
        if self.done:
            return
        self._first_input()
        self._unset("silence", "digit")
        self.speaking = ""

    def on_speech_partial(self, text: str) -> None:
        if self.done or self.speech is None:
            return
        self.speaking = text
        if self.partial:
            self.emit(
                {"result": {"type": "speech",
                            "params": {"text": text, "confidence": self.call.scenario.confidence}},
                 "final": False}
            )  # fmt: skip

    def on_speech_end(self, text: str) -> None:
        if self.done:
            return
        if self.speech is None:
            self._result("no_match", {})
            return
        self.speaking = text
        self._set("silence", self.end_silence, self._speech_done)

    # --- stopping ----------------------------------------------------------------------------

    @follow_up(c.CollectStop)
    def stop(self) -> None:
        if self.done:
            return
        if self.continuous:
            event: dict[str, Any] = {
                "state": "finished",
                "result": self.last_result or {"type": "no_input", "params": {}},
            }
            if self.partial:
                event["final"] = True
            self.state = "finished"
            self.emit(event)
            self.finish()
            return
        if self.buffer:
            self._digits_done("")
        elif self.speaking:
            self._speech_done()
        else:
            self._result("no_input", {})


# --- detect ----------------------------------------------------------------------------------


class Detect(Operation):
    """Machine, fax or digit detection, ending with the ``finished`` event."""

    kind = "detect"
    event_type = "calling.call.detect"
    started_by = c.Detect

    def __init__(self, call: EmulatedCall, cmd: c.Detect) -> None:
        super().__init__(call, cmd)
        self.config = cmd.detect
        timeout = call.emu.config.detect_timeout if cmd.timeout is None else cmd.timeout
        self.timeout = timeout
        if isinstance(cmd.detect, c.DetectMachine):
            self.type = "machine"
        elif isinstance(cmd.detect, c.DetectFax):
            self.type = "fax"
        else:
            self.type = "digit"
            self.wants_digits = self.accepts_digits = True
        self.verdict: str | None = None

    def _event(self, event: str) -> None:
        self.emit({"detect": {"type": self.type, "params": {"event": event}}})

    def begin(self) -> None:
        self.state = "detecting"
        sc = self.call.scenario
        if self.timeout > 0:
            self._set("timeout", self.timeout, self._timed_out)
        if self.type == "machine":
            self._set("verdict", sc.detect_seconds, self._machine_verdict)
        elif self.type == "fax":
            assert isinstance(self.config, c.DetectFax)
            want = (self.config.tone or "").upper()
            if sc.fax_tone is not None and want in ("", sc.fax_tone):
                self._set("verdict", sc.detect_seconds, self._fax_tone, sc.fax_tone)
        else:
            self.call.kick()

    def _machine_verdict(self) -> None:
        call = self.call
        verdict = call.detect_override or call.scenario.detect_result
        self.verdict = verdict
        self._event(verdict)
        assert isinstance(self.config, c.DetectMachine)
        wait_end = self.config.detect_message_end is not False
        if verdict == "MACHINE" and wait_end:
            self._set("ready", call.scenario.greeting_seconds, self._ready)
        else:
            self._finished()

    def _ready(self) -> None:
        self._event("READY")
        self._finished()

    def _fax_tone(self, tone: str) -> None:
        self._event(tone)
        self._finished()

    def _timed_out(self) -> None:
        if self.type == "machine" and self.verdict is None:
            self._event("UNKNOWN")
        self._finished()

    def _finished(self) -> None:
        if self.done:
            return
        self.state = "finished"
        self._event("finished")
        self.finish()

    def on_digit(self, key: str) -> None:
        if self.done:
            return
        assert isinstance(self.config, c.DetectDigit)
        allowed = self.config.digits or ""
        if not allowed or key.lower() in allowed.lower():
            self._event(key)

    @follow_up(c.DetectStop)
    def stop(self) -> None:
        self._finished()


# --- tap, stream, transcribe -----------------------------------------------------------------


#: Which media tracks a tap direction or a stream track sends (inbound: the far end).
TAP_TRACKS = {"speak": ("inbound",), "listen": ("outbound",), "both": ("inbound", "outbound")}
STREAM_TRACKS = {
    "inbound_track": ("inbound",),
    "outbound_track": ("outbound",),
    "both_tracks": ("inbound", "outbound"),
}


class Tap(Operation):
    """``tapping`` -> ``finished``; audio frames to a loopback ``ws`` device."""

    kind = "tap"
    event_type = "calling.call.tap"
    started_by = c.Tap

    def __init__(self, call: EmulatedCall, cmd: c.Tap) -> None:
        super().__init__(call, cmd)
        self.direction = cmd.direction
        self.tap = {"type": "audio", "params": {"direction": cmd.direction}}
        self.device = write(cmd.device)
        self.uri = cmd.device.uri if isinstance(cmd.device, c.WsDevice) else None
        self.media: MediaLink | None = None

    def _event(self, state: str) -> None:
        self.state = state
        self.emit({"state": state, "tap": self.tap, "device": self.device})

    def begin(self) -> None:
        self._event("tapping")
        if self.uri is not None:
            self.media = self.call.emu.media.open(
                self.call, "tap", self.control_id, self.uri, TAP_TRACKS[self.direction]
            )

    @follow_up(c.TapStop)
    def stop(self) -> None:
        if not self.done:
            if self.media is not None:
                self.media.stop()
            self._event("finished")
            self.finish()


class Stream(Operation):
    """
    ``streaming`` -> ``finished``, in the shape the reference types (§9.3); audio
    frames to a loopback URL.
    """

    kind = "stream"
    event_type = "calling.call.stream"
    started_by = c.Stream

    def __init__(self, call: EmulatedCall, cmd: c.Stream) -> None:
        super().__init__(call, cmd)
        self.url = cmd.url
        self.name = cmd.name
        self.tracks = STREAM_TRACKS[cmd.track or "inbound_track"]
        self.headers = (
            {"Authorization": f"Bearer {cmd.authorization_bearer_token}"}
            if cmd.authorization_bearer_token
            else {}
        )
        self.custom_parameters = dict(cmd.custom_parameters or {})
        self.media: MediaLink | None = None

    def emit(self, params: dict[str, Any]) -> None:
        full = {"segment_id": self.call.segment_id, "control_id": self.control_id, **params}
        self.call.emit(self.status_url, self.event_type, full, control_id=self.control_id)

    def _event(self, state: str) -> None:
        self.state = state
        params: dict[str, Any] = {"state": state, "url": self.url}
        if self.name is not None:
            params["name"] = self.name
        self.emit(params)

    def begin(self) -> None:
        self._event("streaming")
        self.media = self.call.emu.media.open(
            self.call, "stream", self.control_id, self.url, self.tracks,
            headers=self.headers, custom_parameters=self.custom_parameters,
        )  # fmt: skip

    @follow_up(c.StreamStop)
    def stop(self) -> None:
        if not self.done:
            if self.media is not None:
                self.media.stop()
            self._event("finished")
            self.finish()


class Transcribe(Operation):
    """``transcribing`` -> ``finished``, then ``calling.transcript.completed`` (§9.4)."""

    kind = "transcribe"
    event_type = "calling.call.transcribe"
    started_by = c.Transcribe
    one_per_call = True

    def __init__(self, call: EmulatedCall, cmd: c.Transcribe) -> None:
        super().__init__(call, cmd)

    def begin(self) -> None:
        self.state = "transcribing"
        self.emit({"state": "transcribing"})

    @follow_up(c.TranscribeStop)
    def stop(self) -> None:
        if self.done:
            return
        self.state = "finished"
        self.emit({"state": "finished"})
        call = self.call
        params: dict[str, Any] = {
            "id": str(uuid.uuid4()),
            "call_id": call.id,
            "segment_id": call.segment_id,
        }
        text = call.scenario.transcript
        if text:
            params["text"] = text
        cfg = call.emu.config
        payload = {
            "event_type": "calling.transcript.completed",
            "timestamp": round(self.clock.wall(), 6),
            "project_id": cfg.project_id,
            "space_id": cfg.space_id,
            "params": params,
        }
        call.post(self.status_url, payload, "calling.transcript.completed")
        self.finish()


# --- live transcription and translation ------------------------------------------------------


class LiveSession:
    """
    A live transcription or translation: ``started``, ``summarized``,
    ``injected``, ``stopped`` (relaycall's naming, docs/callbacks.md).
    """

    def __init__(self, call: EmulatedCall, kind: str, start: Any, status_url: str | None) -> None:
        self.call = call
        self.kind = kind
        self.start = start
        self.webhook: str | None = start.webhook
        self.status_url = status_url
        self.state = "started"

    @property
    def event_type(self) -> str:
        return f"calling.call.{self.kind}"

    def emit(self, params: dict[str, Any], *, extra: str | None = None) -> None:
        self.call.emit([self.status_url, self.webhook, extra], self.event_type, params)

    def begin(self) -> None:
        self.emit({"state": "started"})

    def summarize(self, action: c.Summarize) -> None:
        text = self.call.scenario.transcript or ""
        self.emit({"state": "summarized", "summary": f"Summary: {text}"}, extra=action.webhook)

    def inject(self, action: c.LiveTranslateInject) -> None:
        self.emit({"state": "injected", "message": action.message, "direction": action.direction})

    def stop(self) -> None:
        self.state = "stopped"
        self.emit({"state": "stopped"})
        self.call.live.pop(self.kind, None)

    def on_call_end(self) -> None:
        self.stop()


# --- AI sidecar ------------------------------------------------------------------------------


class Sidecar(Running):
    """
    The call's AI sidecar: counters for ``status``, callbacks to its ``url``.

    ``ask`` and ``status`` answer with more than the call leg, so the platform
    carries those out itself.
    """

    def __init__(self, call: EmulatedCall, cmd: c.AISidecar) -> None:
        self.call = call
        self.url = cmd.url
        self.model = cmd.model or "gpt-4o-mini"
        self.global_data = dict(cmd.global_data or {})
        self.ticks = 0
        self.insights = 0
        self.in_tokens = 0
        self.out_tokens = 0
        self.history: list[dict[str, Any]] = []
        self.event_log_bytes = 0
        self.started_at = call.emu.clock.wall()

    def send(self, kind: str, fields: dict[str, Any], *, url: str | None = None) -> None:
        call = self.call
        cfg = call.emu.config
        event = {
            "type": kind,
            "ts": int(call.emu.clock.wall() * 1_000_000),
            "tick_id": self.ticks,
            "channel_data": {
                "call_id": call.id,
                "caller_id_number": call.from_,
                "destination_number": call.to,
            },
            **fields,
        }
        self.event_log_bytes += len(str(event))
        payload = {
            "call_info": {
                "call_id": call.id,
                "content_type": "text/json",
                "content_disposition": "post_data",
                "conversation_type": "voice",
                "project_id": cfg.project_id,
                "space_id": cfg.space_id,
            },
            "sidecar_event": event,
        }
        call.post(url or self.url, payload, "calling.ai.sidecar")

    @classmethod
    def running(cls, call: EmulatedCall, cmd: Any) -> Sidecar | None:
        sidecar: Sidecar | None = call.sidecar
        return sidecar

    def begin(self) -> None:
        self.send("start", {"model": self.model, "tools": [], "global_data": self.global_data})

    def _tick(self, text: str) -> None:
        self.ticks += 1
        self.in_tokens += len(text.split()) + 10
        self.out_tokens += 12
        self.history.append({"role": "user", "content": text})

    @follow_up(c.AISidecarPoke, "text")
    def poke(self, text: str) -> None:
        self._tick(text)
        self.insights += 1
        self.send("insight", {"raw": f"Noted: {text}", "iter": 1, "total_iters": 1})

    def ask(self, text: str) -> str:
        self._tick(text)
        ask_id = str(uuid.uuid4())
        self.send("ask_request", {"question": text, "ask_id": ask_id})
        self.send(
            "ask_answer",
            {"raw": f"Answer to: {text}", "iter": 1, "total_iters": 1, "ask_id": ask_id,
             "triggered_by": "ask"},
        )  # fmt: skip
        return ask_id

    def status_line(self) -> str:
        return (
            f"+OK running=1 ticks={self.ticks} insights={self.insights} skips=0 tools=0 "
            f"errors=0 in_tokens={self.in_tokens} out_tokens={self.out_tokens} "
            f"history_size={len(self.history)} event_log_bytes={self.event_log_bytes}"
        )

    @follow_up(c.AISidecarStop)
    def stop(self, reason: str = "api_stop") -> None:
        ended = self.call.emu.clock.wall()
        self.send("stop", {"stop_reason": reason})
        self.send(
            "final",
            {"stop_reason": reason, "history": self.history, "event_log": [],
             "stats": {"ticks": self.ticks, "insights": self.insights},
             "metrics": {"in_tokens": self.in_tokens, "out_tokens": self.out_tokens},
             "global_data": self.global_data, "model": self.model,
             "started_at": self.started_at, "ended_at": ended,
             "duration_ms": round((ended - self.started_at) * 1000)},
        )  # fmt: skip
        self.call.sidecar = None

    def on_call_end(self) -> None:
        self.stop("hung_up")
