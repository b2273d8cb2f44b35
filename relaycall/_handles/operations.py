"""
One handle class per long-running operation, each with its states and follow-ups.
"""

from __future__ import annotations

from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any, ClassVar, Literal, cast

from relaycall._commands import media as media_cmd
from relaycall._events import (
    CollectEvent,
    DetectEvent,
    Event,
    LiveEvent,
    PlayEvent,
    RecordEvent,
    SidecarEvent,
    StreamEvent,
    TapEvent,
    TranscriptEvent,
)
from relaycall._handles._base import Operation, guarded
from relaycall._lazy import FirstUse, LazyModule
from relaycall._results import (
    CollectResult,
    DetectResult,
    LiveResult,
    PlaybackResult,
    RecordingResult,
    StreamResult,
    TapResult,
    TranscriptionResult,
)

if TYPE_CHECKING:
    from relaycall._commands import ai as ai_cmd
    from relaycall._commands import operations as ops_cmd
    from relaycall._models import SidecarAskReply, SidecarStatus
else:
    # The AI commands and those of collect, detect, tap, stream, transcribe, denoise and
    # fax are imported on first use: a script that only dials and plays does not pay for
    # their classes (see relaycall/_lazy.py).
    ai_cmd = LazyModule("relaycall._commands.ai", globals(), "ai_cmd")
    ops_cmd = LazyModule("relaycall._commands.operations", globals(), "ops_cmd")


class Playback(Operation[PlaybackResult]):
    """
    A ``calling.play`` in progress.

    States: ``playing``, ``paused``, ``stopped`` (stop acknowledged, final
    event pending), and the final ``finished`` and ``error``.

    Example::

        pb = await call.play(relaycall.tts("Welcome"))
        await pb.pause()
        await pb.resume()
        result = await pb.wait()
    """

    __slots__ = ()
    kind = "play"
    RUNNING = "playing"
    LIVE = frozenset({"playing", "paused"})
    EVENT = PlayEvent
    _stop_command = media_cmd.PlayStop

    @guarded("playing")
    def pause(self) -> Coroutine[Any, Any, None]:
        """Pause playback (``calling.play.pause``)."""
        return self._follow_up(media_cmd.PlayPause._of(self.call.id, self.control_id), "paused")

    @guarded("paused")
    def resume(self) -> Coroutine[Any, Any, None]:
        """Resume paused playback (``calling.play.resume``)."""
        return self._follow_up(media_cmd.PlayResume._of(self.call.id, self.control_id), "playing")

    @guarded()
    def set_volume(self, db: float) -> Coroutine[Any, Any, None]:
        """Set the volume to *db* decibels, -40 to 40 (``calling.play.volume``)."""
        cmd = media_cmd.PlayVolume(call_id=self.call.id, control_id=self.control_id, volume=db)
        return self._follow_up(cmd, None)


class Recording(Operation[RecordingResult]):
    """
    A ``calling.record`` in progress.

    States: ``recording``, ``paused``, ``stopped``, and the final
    ``finished``, ``no_input`` and ``error``. The recording's URL arrives with
    the ``finished`` callback: ``(await rec.wait()).url``.
    """

    __slots__ = ()
    kind = "record"
    RUNNING = "recording"
    LIVE = frozenset({"recording", "paused"})
    EVENT = RecordEvent
    _stop_command = media_cmd.RecordStop

    @guarded("recording")
    def pause(
        self, behavior: Literal["skip", "silence"] | None = None
    ) -> Coroutine[Any, Any, None]:
        """
        Pause recording (``calling.record.pause``).

        *behavior* ``skip`` (the server's default) leaves the pause out of the
        file; ``silence`` fills it with silence so timing is kept.
        """
        cmd = media_cmd.RecordPause(
            call_id=self.call.id, control_id=self.control_id, behavior=behavior
        )
        return self._follow_up(cmd, "paused")

    @guarded("paused")
    def resume(self) -> Coroutine[Any, Any, None]:
        """Resume a paused recording (``calling.record.resume``)."""
        return self._follow_up(
            media_cmd.RecordResume._of(self.call.id, self.control_id), "recording"
        )


class Collector(Operation[CollectResult]):
    """
    A ``calling.collect`` in progress (digits and/or speech).

    States: ``collecting``, ``stopped``, and the final ``finished``,
    ``no_input``, ``no_match`` and ``error``. In continuous mode each result
    arrives as an event and the collector stays ``collecting`` until stopped.
    """

    __slots__ = ("continuous",)
    kind = "collect"
    RUNNING = "collecting"
    LIVE = frozenset({"collecting"})
    EVENT = CollectEvent
    _stop_command = FirstUse(lambda: ops_cmd.CollectStop)

    def __init__(self, call: Any, control_id: str, state: str | None = None) -> None:
        super().__init__(call, control_id, state)
        #: Continuous mode: results keep coming until stop; only a final state ends it.
        self.continuous = False

    def _started(self, command: Any) -> None:
        self.continuous = bool(getattr(command, "continuous", False))

    def _final_state_of(self, event: Event) -> str | None:
        collect = cast("CollectEvent", event)
        return collect.continuous_final_state if self.continuous else collect.final_state

    @guarded()
    def start_input_timers(self) -> Coroutine[Any, Any, None]:
        """Start the initial-timeout clock (``calling.collect.start_input_timers``)."""
        cmd = ops_cmd.CollectStartInputTimers._of(self.call.id, self.control_id)
        return self._follow_up(cmd, None)


class Detector(Operation[DetectResult]):
    """
    A ``calling.detect`` in progress (machine, fax tone or digits).

    States: ``detecting``, ``stopped``, and the final ``finished`` and ``error``.
    """

    __slots__ = ()
    kind = "detect"
    RUNNING = "detecting"
    LIVE = frozenset({"detecting"})
    EVENT = DetectEvent
    _stop_command = FirstUse(lambda: ops_cmd.DetectStop)


class Tapping(Operation[TapResult]):
    """
    A ``calling.tap`` in progress, copying audio to an RTP or WebSocket device.

    States: ``tapping``, ``stopped``, and the final ``finished``.
    """

    __slots__ = ()
    kind = "tap"
    RUNNING = "tapping"
    LIVE = frozenset({"tapping"})
    EVENT = TapEvent
    _stop_command = FirstUse(lambda: ops_cmd.TapStop)


class AudioStream(Operation[StreamResult]):
    """
    A ``calling.stream`` in progress, sending audio to a ``wss://`` endpoint.

    States: ``streaming``, ``stopped``, and the final ``finished``.
    """

    __slots__ = ()
    kind = "stream"
    RUNNING = "streaming"
    LIVE = frozenset({"streaming"})
    EVENT = StreamEvent
    _stop_command = FirstUse(lambda: ops_cmd.StreamStop)


class Transcription(Operation[TranscriptionResult]):
    """
    A ``calling.transcribe`` in progress; its transcript arrives when it ends.

    States: ``transcribing``, ``stopped``, and the final ``finished`` and
    ``failed``. Only one can run per call.
    """

    __slots__ = ()
    kind = "transcribe"
    RUNNING = "transcribing"
    LIVE = frozenset({"transcribing"})
    # The transcript callback ends it; calling.call.transcribe events only report progress.
    EVENT = TranscriptEvent
    _stop_command = FirstUse(lambda: ops_cmd.TranscribeStop)


class _Singleton(Operation[LiveResult]):
    """
    An operation the API addresses by call id alone (one per call).

    Its *control_id* is a fixed key naming the kind, so it sits in the same
    registry as the others. A stop is final as soon as it is acknowledged:
    the reference documents no final callback for these.
    """

    __slots__ = ()
    RUNNING = "running"
    LIVE = frozenset({"running"})

    async def _stop_final(self, command: Any) -> None:
        await self._follow_up(command, None)
        self._set_final("stopped", reason="stopped")


class _LiveAI(_Singleton):
    """
    Live transcription or translation: one command whose *action* starts,
    summarizes or stops it, and a ``stopped`` state callback at the end.
    """

    __slots__ = ()
    EVENT = LiveEvent
    #: The command that carries the action (LiveTranscribe or LiveTranslate), by its
    #: name in relaycall._commands.ai: that module is imported on first use.
    _action_command: ClassVar[str]

    def _act(self, action: Any) -> Any:
        command = getattr(ai_cmd, self._action_command)
        return command(call_id=self.call.id, action=action)

    @guarded()
    def summarize(
        self, *, webhook: str | None = None, prompt: str | None = None
    ) -> Coroutine[Any, Any, None]:
        """Ask for a summary so far (a translation's covers both languages), sent to *webhook*."""
        action = ai_cmd.Summarize(webhook=webhook, prompt=prompt)
        return self._follow_up(self._act(action), None)

    def stop(self) -> Coroutine[Any, Any, Any]:
        """Stop it (``action: "stop"``); quiet if it is already over (see Operation.stop)."""
        if self._state not in self.LIVE or self.call._ended:
            return self._already_over()
        return self._stop_final(self._act("stop"))


class LiveTranscription(_LiveAI):
    """Live transcription on a call (``calling.live_transcribe``)."""

    __slots__ = ()
    kind = "live_transcribe"
    _action_command = "LiveTranscribe"


class LiveTranslation(_LiveAI):
    """Live translation on a call (``calling.live_translate``)."""

    __slots__ = ()
    kind = "live_translate"
    _action_command = "LiveTranslate"

    @guarded()
    def inject(
        self, message: str, direction: Literal["remote-caller", "local-caller"]
    ) -> Coroutine[Any, Any, None]:
        """Translate *message* and speak it toward one side of the call."""
        action = ai_cmd.LiveTranslateInject(message=message, direction=direction)
        return self._follow_up(self._act(action), None)


class Sidecar(_Singleton):
    """An AI sidecar listening to the call (``calling.ai_sidecar``)."""

    __slots__ = ()
    kind = "ai_sidecar"
    EVENT = SidecarEvent

    @guarded()
    def poke(self, text: str) -> Coroutine[Any, Any, None]:
        """Send the sidecar a message it answers right away (``calling.ai_sidecar.poke``)."""
        return self._follow_up(ai_cmd.AISidecarPoke(call_id=self.call.id, text=text), None)

    @guarded()
    def ask(self, text: str) -> Coroutine[Any, Any, SidecarAskReply]:
        """Ask a one-off question; the answer arrives as an ``ask_answer`` callback."""
        return self.call._relay.send(ai_cmd.AISidecarAsk(call_id=self.call.id, text=text))

    @guarded()
    def status(self) -> Coroutine[Any, Any, SidecarStatus]:
        """Read the sidecar's counters (``calling.ai_sidecar.status``)."""
        return self.call._relay.send(ai_cmd.AISidecarStatus(call_id=self.call.id))

    def stop(self) -> Coroutine[Any, Any, Any]:
        """Detach the sidecar (``calling.ai_sidecar.stop``); quiet if it is already over."""
        if self._state not in self.LIVE or self.call._ended:
            return self._already_over()
        return self._stop_final(ai_cmd.AISidecarStop(call_id=self.call.id))
