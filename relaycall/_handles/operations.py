"""
One handle class per long-running operation, each with its states and follow-ups.
"""

from __future__ import annotations

from collections.abc import Coroutine, Mapping
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from relaycall._commands import ai as ai_cmd
from relaycall._commands import media as media_cmd
from relaycall._commands import operations as ops_cmd
from relaycall._handles._base import Operation

if TYPE_CHECKING:
    from relaycall._models import SidecarAskReply, SidecarStatus
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


_COLLECT_FINAL = {"digit": "finished", "speech": "finished", "no_input": "no_input",
                  "no_match": "no_match", "error": "error"}  # fmt: skip


# States that allow one follow-up, checked before anything is sent.
_PLAYING = frozenset({"playing"})
_PAUSED = frozenset({"paused"})
_RECORDING = frozenset({"recording"})


class Playback(Operation):
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
    FINAL = frozenset({"finished", "error"})
    _stop_command = media_cmd.PlayStop

    def pause(self) -> Coroutine[Any, Any, None]:
        """Pause playback (``calling.play.pause``)."""
        self._check("pause", _PLAYING)
        return self._follow_up(media_cmd.PlayPause._of(self.call.id, self.control_id), "paused")

    def resume(self) -> Coroutine[Any, Any, None]:
        """Resume paused playback (``calling.play.resume``)."""
        self._check("resume", _PAUSED)
        return self._follow_up(media_cmd.PlayResume._of(self.call.id, self.control_id), "playing")

    def set_volume(self, db: float) -> Coroutine[Any, Any, None]:
        """Set the volume to *db* decibels, -40 to 40 (``calling.play.volume``)."""
        self._check("set_volume", self.LIVE)
        cmd = media_cmd.PlayVolume(call_id=self.call.id, control_id=self.control_id, volume=db)
        return self._follow_up(cmd, None)

    async def wait(self, timeout: float | None = None) -> PlaybackResult:
        return await self._wait(timeout)  # type: ignore[no-any-return]


class Recording(Operation):
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
    FINAL = frozenset({"finished", "no_input", "error"})
    _stop_command = media_cmd.RecordStop

    def pause(
        self, behavior: Literal["skip", "silence"] | None = None
    ) -> Coroutine[Any, Any, None]:
        """
        Pause recording (``calling.record.pause``).

        *behavior* ``skip`` (the server's default) leaves the pause out of the
        file; ``silence`` fills it with silence so timing is kept.
        """
        self._check("pause", _RECORDING)
        cmd = media_cmd.RecordPause(
            call_id=self.call.id, control_id=self.control_id, behavior=behavior
        )
        return self._follow_up(cmd, "paused")

    def resume(self) -> Coroutine[Any, Any, None]:
        """Resume a paused recording (``calling.record.resume``)."""
        self._check("resume", _PAUSED)
        return self._follow_up(
            media_cmd.RecordResume._of(self.call.id, self.control_id), "recording"
        )

    async def wait(self, timeout: float | None = None) -> RecordingResult:
        return await self._wait(timeout)  # type: ignore[no-any-return]


class Collector(Operation):
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
    FINAL = frozenset({"finished", "no_input", "no_match", "error"})
    _stop_command = ops_cmd.CollectStop

    def __init__(self, call: Any, control_id: str, state: str | None = None) -> None:
        super().__init__(call, control_id, state)
        #: Continuous mode: results keep coming until stop; only a final state ends it.
        self.continuous = False

    def _started(self, command: Any) -> None:
        self.continuous = bool(getattr(command, "continuous", False))

    def _final_state_of(self, event: Any) -> str | None:
        params = event.params
        if self.continuous:
            return event.state if event.state in ("finished", "error") else None
        if params.get("final") is False:
            return None  # a partial result
        result = params.get("result")
        kind = result.get("type") if isinstance(result, Mapping) else None
        mapped = _COLLECT_FINAL.get(kind) if isinstance(kind, str) else None
        return mapped or (event.state if event.state in self.FINAL else None)

    def start_input_timers(self) -> Coroutine[Any, Any, None]:
        """Start the initial-timeout clock (``calling.collect.start_input_timers``)."""
        self._check("start_input_timers", self.LIVE)
        cmd = ops_cmd.CollectStartInputTimers._of(self.call.id, self.control_id)
        return self._follow_up(cmd, None)

    async def wait(self, timeout: float | None = None) -> CollectResult:
        return await self._wait(timeout)  # type: ignore[no-any-return]


class Detector(Operation):
    """
    A ``calling.detect`` in progress (machine, fax tone or digits).

    States: ``detecting``, ``stopped``, and the final ``finished`` and ``error``.
    """

    __slots__ = ()
    kind = "detect"
    RUNNING = "detecting"
    LIVE = frozenset({"detecting"})
    FINAL = frozenset({"finished", "error"})
    _stop_command = ops_cmd.DetectStop

    def _final_state_of(self, event: Any) -> str | None:
        what = _detect_event(event)
        if what in self.FINAL:
            return what
        return event.state if event.state in self.FINAL else None

    def _apply(self, event: Any) -> bool:
        # READY / NOT_READY follow a MACHINE verdict (the greeting ended or not);
        # the verdict is what the result reports.
        previous = self._last
        applied = super()._apply(event)
        if previous is not None and _detect_event(event) in ("READY", "NOT_READY"):
            self._last = previous
        return applied

    async def wait(self, timeout: float | None = None) -> DetectResult:
        return await self._wait(timeout)  # type: ignore[no-any-return]


class Tap(Operation):
    """
    A ``calling.tap`` in progress, copying audio to an RTP or WebSocket device.

    States: ``tapping``, ``stopped``, and the final ``finished``.
    """

    __slots__ = ()
    kind = "tap"
    RUNNING = "tapping"
    LIVE = frozenset({"tapping"})
    FINAL = frozenset({"finished"})
    _stop_command = ops_cmd.TapStop

    async def wait(self, timeout: float | None = None) -> TapResult:
        return await self._wait(timeout)  # type: ignore[no-any-return]


class Stream(Operation):
    """
    A ``calling.stream`` in progress, sending audio to a ``wss://`` endpoint.

    States: ``streaming``, ``stopped``, and the final ``finished``.
    """

    __slots__ = ()
    kind = "stream"
    RUNNING = "streaming"
    LIVE = frozenset({"streaming"})
    FINAL = frozenset({"finished"})
    _stop_command = ops_cmd.StreamStop

    async def wait(self, timeout: float | None = None) -> StreamResult:
        return await self._wait(timeout)  # type: ignore[no-any-return]


class Transcription(Operation):
    """
    A ``calling.transcribe`` in progress; its transcript arrives when it ends.

    States: ``transcribing``, ``stopped``, and the final ``finished`` and
    ``failed``. Only one can run per call.
    """

    __slots__ = ()
    kind = "transcribe"
    RUNNING = "transcribing"
    LIVE = frozenset({"transcribing"})
    FINAL = frozenset({"finished", "failed"})
    _stop_command = ops_cmd.TranscribeStop

    def _final_state_of(self, event: Any) -> str | None:
        # The transcript callback ends it; calling.call.transcribe events only report progress.
        if event.event_type == "calling.transcript.completed":
            return "finished"
        if event.event_type == "calling.transcript.failed":
            return "failed"
        return None

    async def wait(self, timeout: float | None = None) -> TranscriptionResult:
        return await self._wait(timeout)  # type: ignore[no-any-return]


class _Singleton(Operation):
    """
    An operation the API addresses by call id alone (one per call).

    Its *control_id* is a fixed key naming the kind, so it sits in the same
    registry as the others. A stop is final as soon as it is acknowledged:
    the reference documents no final callback for these.
    """

    __slots__ = ()
    RUNNING = "running"
    LIVE = frozenset({"running"})
    FINAL = frozenset({"stopped"})

    async def _stop_final(self, command: Any) -> None:
        await self._follow_up(command, None)
        self._set_final("stopped", reason="stopped")

    async def wait(self, timeout: float | None = None) -> LiveResult:
        return await self._wait(timeout)  # type: ignore[no-any-return]


class _LiveAI(_Singleton):
    """
    Live transcription or translation: one command whose *action* starts,
    summarizes or stops it, and a ``stopped`` state callback at the end.
    """

    __slots__ = ()
    #: The command that carries the action (LiveTranscribe or LiveTranslate).
    _action_command: ClassVar[Any]

    def _final_state_of(self, event: Any) -> str | None:
        return "stopped" if event.state == "stopped" else None

    def _act(self, action: Any) -> Any:
        return self._action_command(call_id=self.call.id, action=action)

    def summarize(
        self, *, webhook: str | None = None, prompt: str | None = None
    ) -> Coroutine[Any, Any, None]:
        """Ask for a summary so far (a translation's covers both languages), sent to *webhook*."""
        self._check("summarize", self.LIVE)
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
    _action_command = ai_cmd.LiveTranscribe


class LiveTranslation(_LiveAI):
    """Live translation on a call (``calling.live_translate``)."""

    __slots__ = ()
    kind = "live_translate"
    _action_command = ai_cmd.LiveTranslate

    def inject(
        self, message: str, direction: Literal["remote-caller", "local-caller"]
    ) -> Coroutine[Any, Any, None]:
        """Translate *message* and speak it toward one side of the call."""
        self._check("inject", self.LIVE)
        action = ai_cmd.LiveTranslateInject(message=message, direction=direction)
        return self._follow_up(self._act(action), None)


class Sidecar(_Singleton):
    """An AI sidecar listening to the call (``calling.ai_sidecar``)."""

    __slots__ = ()
    kind = "ai_sidecar"

    def _final_state_of(self, event: Any) -> str | None:
        return "stopped" if event.params.get("type") in ("stop", "final") else None

    def poke(self, text: str) -> Coroutine[Any, Any, None]:
        """Send the sidecar a message it answers right away (``calling.ai_sidecar.poke``)."""
        self._check("poke", self.LIVE)
        return self._follow_up(ai_cmd.AISidecarPoke(call_id=self.call.id, text=text), None)

    def ask(self, text: str) -> Coroutine[Any, Any, SidecarAskReply]:
        """Ask a one-off question; the answer arrives as an ``ask_answer`` callback."""
        self._check("ask", self.LIVE)
        return self.call._relay.send(ai_cmd.AISidecarAsk(call_id=self.call.id, text=text))

    def status(self) -> Coroutine[Any, Any, SidecarStatus]:
        """Read the sidecar's counters (``calling.ai_sidecar.status``)."""
        self._check("status", self.LIVE)
        return self.call._relay.send(ai_cmd.AISidecarStatus(call_id=self.call.id))

    def stop(self) -> Coroutine[Any, Any, Any]:
        """Detach the sidecar (``calling.ai_sidecar.stop``); quiet if it is already over."""
        if self._state not in self.LIVE or self.call._ended:
            return self._already_over()
        return self._stop_final(ai_cmd.AISidecarStop(call_id=self.call.id))


def _detect_event(event: Any) -> str | None:
    detect = event.params.get("detect")
    params = detect.get("params") if isinstance(detect, Mapping) else None
    what = params.get("event") if isinstance(params, Mapping) else None
    return what if isinstance(what, str) else None
