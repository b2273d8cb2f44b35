"""
Call: a handle on one call, with a method for every command the API has for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar, Literal, TypeVar, cast

from relaycall._commands import call as call_cmd
from relaycall._commands import media as media_cmd
from relaycall._commands._base import Command, _control_id_check, new_control_id
from relaycall._events import CallStateEvent, Event
from relaycall._handles._base import Handle, Operation, Starting, wait_timeout_check
from relaycall._handles.operations import (
    AudioStream,
    Collector,
    Detector,
    LiveTranscription,
    LiveTranslation,
    Playback,
    Recording,
    Sidecar,
    Tapping,
    Transcription,
)
from relaycall._lazy import LazyModule
from relaycall._models import CallLeg, FabricDeviceLeg, parse_leg
from relaycall._results import CallResult
from relaycall._retry import AlreadyProcessed as _AlreadyProcessed
from relaycall._states import CallState, ResultReason
from relaycall._validate import fail
from relaycall.errors import (
    ClientClosedError,
    ConflictError,
    InvalidStateError,
    NotFoundError,
    ResponseValidationError,
    WaitTimeoutError,
)

if TYPE_CHECKING:
    from relaycall._commands import ai as ai_cmd
    from relaycall._commands import operations as ops_cmd
    from relaycall._session import AsyncRelay
else:
    # The AI commands and those of collect, detect, tap, stream, transcribe, denoise and
    # fax are imported on first use: a script that only dials and plays does not pay for
    # their classes (see relaycall/_lazy.py).
    ai_cmd = LazyModule("relaycall._commands.ai", globals(), "ai_cmd")
    ops_cmd = LazyModule("relaycall._commands.operations", globals(), "ops_cmd")

OpT = TypeVar("OpT", bound=Operation[Any])
Leg = CallLeg | FabricDeviceLeg
_LEGS = (CallLeg, FabricDeviceLeg)
Direction = Literal["remote-caller", "local-caller"]

# Lifecycle order; a state only moves forward. "unknown" is a call attached by id.
_ORDER = {
    "unknown": -1,
    "queued": 0,
    "initiated": 0,
    "created": 1,
    "ringing": 2,
    "answered": 3,
    "ending": 4,
    "ended": 5,
}
# Leg statuses that mean the call is over, with the end reason they imply.
_TERMINAL_STATUS = {
    "ended": None,
    "completed": "hangup",
    "failed": "error",
    "canceled": "cancel",
    "busy": "busy",
    "no-answer": "noAnswer",
}


class Call(Handle[CallResult]):
    """
    A call, by id. Get one from ``await relay.dial(...)`` or ``relay.call(call_id)``.

    *state* is ``unknown`` (attached by id), ``queued``, ``created``,
    ``ringing``, ``answered``, ``ending`` or ``ended``; *end_reason* says why
    it ended (``hangup``, ``busy``, ``noAnswer``, ``cancel``...). Every start
    method returns a handle that you can await or use with ``async with``.
    Commands on an ended call raise :class:`relaycall.InvalidStateError` and
    send nothing.

    Example::

        call = await relay.dial(to="+15557650000", from_="+15551230000", url=swml_url)
        async with call.record(format="wav") as rec:
            await call.play(relaycall.tts("Leave a message after the beep"))
        await call.end()
    """

    __slots__ = (
        "_incoming", "_leg", "_listeners", "_nonce", "_ops", "_relay", "end_reason", "id",
    )  # fmt: skip

    FINAL: ClassVar[frozenset[str]] = frozenset({"ended"})
    kind: ClassVar[str] = "call"

    def __init__(self, relay: AsyncRelay, call_id: str, state: str = "unknown") -> None:
        super().__init__(state)
        self._relay = relay
        self.id = call_id
        self.end_reason: str | None = None
        # The latest call leg the server answered with: the checked reply body
        # until somebody reads ``leg``, then the parsed leg.
        self._leg: Leg | Mapping[str, Any] | None = None
        self._ops: dict[str, Operation[Any]] = {}
        self._listeners: list[tuple[Operation[Any] | None, asyncio.Queue[Any]]] | None = None
        # The dial's status_url token nonce: callbacks for this call must carry it.
        self._nonce: str | None = None
        # The SWML fetch that made this an IncomingCall (relaycall/_incoming.py), if any.
        self._incoming: Any = None

    def __repr__(self) -> str:
        return f"<Call id={self.id} state={self._state}>"

    @property
    def state(self) -> CallState:
        """The latest state known here, from what was sent, answered and called back."""
        return self._state  # type: ignore[return-value]

    @property
    def call_id(self) -> str:
        return self.id

    @property
    def leg(self) -> Leg | None:
        """
        The latest call leg the server answered with, if any.

        Read from the reply when first asked for. Raises
        :class:`relaycall.ResponseValidationError` (with the reply as *body*)
        if that reply has a field of the wrong kind; the command itself
        succeeded, as the server accepted it.
        """
        leg = self._leg
        if leg is None or isinstance(leg, _LEGS):
            return leg
        parsed = self._leg = parse_leg(leg)
        return parsed

    @property
    def _ended(self) -> bool:
        return self._state in ("ending", "ended")

    @property
    def operations(self) -> tuple[Operation[Any], ...]:
        """The operations on this call that have not finished."""
        return tuple(self._ops.values())

    # --- state --------------------------------------------------------------------

    def _advance(self, state: str) -> None:
        """Move forward in the lifecycle; never back, never out of ended."""
        if self._state == "ended":
            return
        if _ORDER.get(state, -1) > _ORDER.get(self._state, -1):
            self._state = state
            self._notify_state()

    def _observe_leg(self, leg: Leg | Mapping[str, Any]) -> None:
        """Take a call leg (or its checked reply body) the server answered with."""
        self._leg = leg
        status = leg.status if isinstance(leg, _LEGS) else leg.get("status")
        if status is None:
            return
        if status in _TERMINAL_STATUS:
            self._mark_ended(_TERMINAL_STATUS[status] or self.end_reason, reason="call_ended")
        else:
            self._advance(status)

    def _mark_ended(self, end_reason: str | None, *, reason: str, event: Any = None) -> None:
        """The call is over: finish every operation on it, resolve every wait."""
        if self._state == "ended":
            if self.end_reason is None and end_reason is not None:
                self.end_reason = end_reason
            return
        self._state = "ended"
        self.end_reason = end_reason
        for op in list(self._ops.values()):
            op._set_final(op._state, reason="call_ended", event=None)
        self._ops.clear()
        self._notify_state()
        self._resolve(_call_result, "ended", end_reason, reason, event)
        self._close_listeners()

    def _before_wait(self, timeout: float | None) -> None:
        if not self._relay._watch(self, timeout, f"{self!r}.wait()"):
            self._session_closed()

    def _session_closed(self) -> None:
        for op in list(self._ops.values()):
            op._session_closed()
        self._resolve(_call_result, self._state, self.end_reason, "session_closed", None)
        self._close_listeners()

    def _apply(self, event: Event) -> bool:
        """Take a call-state event; False if the call had already ended (a duplicate)."""
        typed = CallStateEvent._read_as(event)  # a flat one names its call_state
        if self._state == "ended":
            if self.end_reason is None:
                self.end_reason = typed.end_reason
            return False
        state = typed.call_state
        if state == "ended":
            self._mark_ended(typed.end_reason, reason="finished", event=event)
        elif state is not None:
            self._advance(state)
        return True

    def _forget(self, op: Operation[Any]) -> None:
        if self._ops.get(op.control_id) is op:
            del self._ops[op.control_id]
        self._close_listeners(op)

    def _check(self, method: str) -> None:
        if self._ended:
            raise InvalidStateError(
                f"{self!r} cannot {method}(): the call has ended; nothing was sent"
            )

    # --- sending ---------------------------------------------------------------------

    def _gone(self, command: Command[Any], exc: NotFoundError) -> NotFoundError:
        """A 404 to a command on this call: the call is over; mark it and say so."""
        self._mark_ended(self.end_reason, reason="gone")
        return NotFoundError(
            f"{command.command_name}: call {self.id} is unknown to the server or already "
            "over (HTTP 404); the handle is now marked ended",
            status_code=exc.status_code,
            headers=exc.headers,
            body=exc.body,
            command=exc.command,
        )

    def _latest_leg(self) -> Leg | None:
        """The latest leg, or None when there is none or it cannot be read."""
        try:
            return self.leg
        except ResponseValidationError:
            return None

    async def _command(self, method: str, command: Command[Any], *, observe: bool = True) -> Leg:
        """Send a call command whose leg is returned to the caller (so it is read at once)."""
        self._check(method)
        try:
            body = await self._relay._send_leg(command)
        except NotFoundError as exc:
            raise self._gone(command, exc) from exc
        try:
            leg = parse_leg(body)
        except ResponseValidationError as exc:
            exc.command = command.command_name
            raise
        if observe:
            self._observe_leg(leg)
        else:
            self._leg = leg
        return leg

    def _start(self, method: str, handle_cls: type[OpT], command: Command[Any]) -> Starting[OpT]:
        self._check(method)
        return Starting(self._run_start(handle_cls, command))

    async def _run_start(self, handle_cls: type[OpT], command: Command[Any]) -> OpT:
        key = getattr(command, "control_id", None) or handle_cls.kind
        existing = self._ops.get(key)
        if existing is not None and existing.running:
            raise InvalidStateError(
                f"{existing!r} is already running on this call; stop it first or use another "
                "control_id; nothing was sent"
            )
        # Registered before sending: a status callback can beat the HTTP reply.
        handle = handle_cls(self, key)
        self._ops[key] = handle
        try:
            self._observe_leg(await self._relay._send_leg(command, handle))
        except _AlreadyProcessed:
            pass  # a re-send was due, but its callbacks show the first attempt started it
        except NotFoundError as exc:
            gone = self._gone(command, exc)
            self._drop_failed(handle)
            raise gone from exc
        except ConflictError as exc:
            if exc.retries_taken == 0:
                self._drop_failed(handle)
                raise
            # A 409 on a re-sent start means an earlier attempt got through.
        except BaseException:
            self._drop_failed(handle)
            raise
        handle._started(command)
        return handle

    def _drop_failed(self, handle: Operation[Any]) -> None:
        handle._state = "error"
        if self._ops.get(handle.control_id) is handle:
            del self._ops[handle.control_id]

    async def _close_on_exit(self) -> None:
        if not self._ended:
            with contextlib.suppress(NotFoundError):
                await self.end()

    # --- call commands -------------------------------------------------------------------

    async def update(
        self,
        *,
        url: str | None = None,
        swml: Mapping[str, Any] | None = None,
        status: Literal["canceled", "completed"] | None = None,
        fallback_url: str | None = None,
        status_url: str | None = None,
    ) -> Leg:
        """
        Redirect the call to new SWML (*url* or *swml*), optionally changing its *status*.

        ``status="completed"`` ends an answered call; ``"canceled"`` one not yet answered.
        """
        cmd = call_cmd.Update(
            call_id=self.id, url=url, swml=swml, status=status,
            fallback_url=fallback_url, status_url=status_url,
        )  # fmt: skip
        # The document may hold a password: not kept in this frame while it waits
        # (tracebacks with captured locals would show it).
        del swml
        # With a status, this process ends the call: that is the reason its waits
        # report, whatever the reply's leg says.
        leg = await self._command("update", cmd, observe=status is None)
        if status is not None:
            self._mark_ended("hangup" if status == "completed" else "cancel", reason="ended_here")
        return leg

    async def end(
        self,
        reason: Literal["hangup", "cancel", "busy", "noAnswer", "decline", "error"] | None = None,
    ) -> Leg | None:
        """
        Hang up (``calling.end``). Once accepted the call is ``ended`` here.

        Its operations resolve with reason ``call_ended``. Returns the leg the
        server answered with. Ending a call that is already over is not an
        error: known here to be over, it sends nothing and returns the latest
        leg known (None if none); answered 404 (the server no longer knows the
        call: the far end hung up, or a re-sent ``end`` whose first attempt got
        through), it returns None and the call is ended with reason ``gone``.
        """
        if self._ended:
            # Over already (hung up by the far end, or by an earlier end()): a
            # race cleanup code cannot avoid, so it is not an error.
            return self._latest_leg()
        cmd = call_cmd.End(call_id=self.id, reason=reason)
        try:
            leg = await self._command("end", cmd, observe=False)
        except NotFoundError:
            # Over on the server, which is what end() asks for. An inbound call's
            # hang-up is never called back (docs/inbound.md): this is how an app
            # that hangs up at the end of its flow usually learns it.
            return None
        self._mark_ended(reason or "hangup", reason="ended_here")
        return leg

    async def transfer(self, dest: str | Mapping[str, Any]) -> Leg:
        """Transfer to a SIP URI, a phone number, a SWML URL or an inline SWML object."""
        cmd = call_cmd.Transfer(call_id=self.id, dest=dest)
        del dest  # an SWML dest may hold a password: not kept in this frame while it waits
        return await self._command("transfer", cmd)

    async def disconnect(self) -> Leg:
        """Unbridge connected legs without hanging up either (``calling.disconnect``)."""
        return await self._command("disconnect", call_cmd.Disconnect(call_id=self.id))

    async def refer(
        self,
        to: str,
        *,
        from_: str | None = None,
        username: str | None = None,
        password: str | None = None,
        status_url: str | None = None,
    ) -> Leg:
        """Send a SIP REFER to *to* (a ``sip:`` URI)."""
        device = call_cmd.SipReferDevice(to=to, from_=from_, username=username, password=password)
        cmd = call_cmd.Refer(call_id=self.id, device=device, status_url=status_url)
        del password, device  # not kept in this frame while it waits for the reply
        return await self._command("refer", cmd)

    async def user_event(self, event: Mapping[str, Any]) -> Leg:
        """Fire a custom event (any JSON object) on the call."""
        return await self._command("user_event", call_cmd.UserEvent(call_id=self.id, event=event))

    # --- media -----------------------------------------------------------------------------

    def play(
        self,
        *media: media_cmd.PlayItem | Mapping[str, Any],
        volume: float | None = None,
        direction: Literal["listen", "speak", "both"] | None = None,
        loop: int | None = None,
        language: str | None = None,
        voice: str | None = None,
        gender: Literal["male", "female"] | None = None,
        status_url: str | None = None,
        control_id: str | None = None,
    ) -> Starting[Playback]:
        """
        Play media items in order (``calling.play``); returns a :class:`Playback`.

        Build items with :func:`relaycall.tts`, :func:`~relaycall.audio`,
        :func:`~relaycall.silence` and :func:`~relaycall.ringtone`.
        """
        cmd = media_cmd.Play(
            call_id=self.id, control_id=control_id or new_control_id(),
            play=cast("Any", list(media)),
            volume=volume, direction=direction, loop=loop, language=language, voice=voice,
            gender=gender, status_url=status_url,
        )  # fmt: skip
        return self._start("play", Playback, cmd)

    def record(
        self,
        *,
        format: Literal["mp3", "wav", "mp4"] | None = None,
        beep: bool | None = None,
        stereo: bool | None = None,
        direction: Literal["listen", "speak", "both"] | None = None,
        initial_timeout: float | None = None,
        end_silence_timeout: float | None = None,
        max_length: int | None = None,
        terminators: str | None = None,
        input_sensitivity: float | None = None,
        status_url: str | None = None,
        control_id: str | None = None,
    ) -> Starting[Recording]:
        """Record the call (``calling.record``); returns a :class:`Recording`."""
        audio = media_cmd.RecordAudio(
            format=format, beep=beep, stereo=stereo, direction=direction,
            initial_timeout=initial_timeout, end_silence_timeout=end_silence_timeout,
            max_length=max_length, terminators=terminators, input_sensitivity=input_sensitivity,
        )  # fmt: skip
        cmd = media_cmd.Record(
            call_id=self.id, control_id=control_id or new_control_id(), audio=audio,
            status_url=status_url,
        )  # fmt: skip
        return self._start("record", Recording, cmd)

    # --- input and detection ----------------------------------------------------------------

    def collect(
        self,
        *,
        digits: ops_cmd.CollectDigits | Mapping[str, Any] | None = None,
        speech: ops_cmd.CollectSpeech | Mapping[str, Any] | None = None,
        initial_timeout: float | None = None,
        continuous: bool | None = None,
        partial_results: bool | None = None,
        send_start_of_input: bool | None = None,
        start_input_timers: bool | None = None,
        status_url: str | None = None,
        control_id: str | None = None,
    ) -> Starting[Collector]:
        """
        Collect DTMF digits and/or speech (``calling.collect``); returns a :class:`Collector`.

        Example::

            col = await call.collect(digits=commands.CollectDigits(max=1), initial_timeout=5)
            result = await col.wait()
        """
        cmd = ops_cmd.Collect(
            call_id=self.id, control_id=control_id or new_control_id(),
            digits=cast("Any", digits),
            speech=cast("Any", speech), initial_timeout=initial_timeout, continuous=continuous,
            partial_results=partial_results, send_start_of_input=send_start_of_input,
            start_input_timers=start_input_timers, status_url=status_url,
        )  # fmt: skip
        return self._start("collect", Collector, cmd)

    def detect(
        self,
        detect: ops_cmd.DetectMachine
        | ops_cmd.DetectFax
        | ops_cmd.DetectDigit
        | Mapping[str, Any]
        | Literal["machine", "fax", "digit"] = "machine",
        *,
        timeout: float | None = None,
        status_url: str | None = None,
        control_id: str | None = None,
    ) -> Starting[Detector]:
        """
        Detect an answering machine, a fax tone or digits (``calling.detect``).

        *detect* is ``"machine"``, ``"fax"`` or ``"digit"`` for the server's
        defaults, or a :class:`~relaycall.commands.DetectMachine` /
        ``DetectFax`` / ``DetectDigit`` with parameters.
        """
        config: Any = detect
        if isinstance(detect, str):
            default = _DETECT_DEFAULTS.get(detect)
            if default is None:
                fail(
                    "detect.detect", detect, "is not 'machine', 'fax', 'digit' or a Detect* object"
                )
            config = getattr(ops_cmd, default)()
        cmd = ops_cmd.Detect(
            call_id=self.id, control_id=control_id or new_control_id(), detect=config,
            timeout=timeout, status_url=status_url,
        )  # fmt: skip
        return self._start("detect", Detector, cmd)

    # --- media out ------------------------------------------------------------------------------

    def tap(
        self,
        device: ops_cmd.RtpDevice | ops_cmd.WsDevice | Mapping[str, Any] | str,
        *,
        direction: Literal["listen", "speak", "both"] = "both",
        status_url: str | None = None,
        control_id: str | None = None,
    ) -> Starting[Tapping]:
        """
        Copy the call's audio to a device (``calling.tap``); returns a :class:`Tapping`.

        *device* is an :class:`~relaycall.commands.RtpDevice`, a
        :class:`~relaycall.commands.WsDevice`, or a ``ws://``/``wss://`` URI string.
        """
        dev = ops_cmd.WsDevice(uri=device) if isinstance(device, str) else device
        cmd = ops_cmd.Tap(
            call_id=self.id, control_id=control_id or new_control_id(), direction=direction,
            device=cast("Any", dev), status_url=status_url,
        )  # fmt: skip
        return self._start("tap", Tapping, cmd)

    def stream(
        self,
        url: str,
        *,
        name: str | None = None,
        codec: str | None = None,
        track: Literal["inbound_track", "outbound_track", "both_tracks"] | None = None,
        authorization_bearer_token: str | None = None,
        custom_parameters: Mapping[str, Any] | None = None,
        status_url: str | None = None,
        status_url_method: Literal["GET", "POST"] | None = None,
        control_id: str | None = None,
    ) -> Starting[AudioStream]:
        """Stream the call's audio to a ``wss://`` endpoint (``calling.stream``)."""
        cmd = ops_cmd.Stream(
            call_id=self.id, control_id=control_id or new_control_id(), url=url, name=name,
            codec=codec, track=track, authorization_bearer_token=authorization_bearer_token,
            custom_parameters=custom_parameters, status_url=status_url,
            status_url_method=status_url_method,
        )  # fmt: skip
        return self._start("stream", AudioStream, cmd)

    def transcribe(
        self, *, status_url: str | None = None, control_id: str | None = None
    ) -> Starting[Transcription]:
        """Transcribe the whole call in the background (``calling.transcribe``); one per call."""
        cmd = ops_cmd.Transcribe(
            call_id=self.id, control_id=control_id or new_control_id(), status_url=status_url
        )
        return self._start("transcribe", Transcription, cmd)

    async def denoise(self) -> Leg:
        """Turn on noise reduction (``calling.denoise``)."""
        return await self._command("denoise", ops_cmd.Denoise(call_id=self.id))

    async def denoise_stop(self) -> Leg:
        """Turn off noise reduction (``calling.denoise.stop``)."""
        return await self._command("denoise_stop", ops_cmd.DenoiseStop(call_id=self.id))

    # --- AI ----------------------------------------------------------------------------------

    async def ai_hold(self, *, timeout: int | str | None = None, prompt: str | None = None) -> Leg:
        """Put the AI agent on hold; *timeout* in seconds (sent as a string)."""
        cmd = ai_cmd.AIHold(call_id=self.id, timeout=timeout, prompt=prompt)
        return await self._command("ai_hold", cmd)

    async def ai_unhold(self) -> Leg:
        """Take the AI agent off hold."""
        return await self._command("ai_unhold", ai_cmd.AIUnhold(call_id=self.id))

    async def ai_message(
        self,
        message_text: str | None = None,
        *,
        role: Literal["system", "user", "assistant"] | None = None,
        reset: ai_cmd.AIReset | Mapping[str, Any] | None = None,
        global_data: Mapping[str, Any] | None = None,
    ) -> Leg:
        """Inject a message into the AI agent's conversation (``calling.ai_message``)."""
        cmd = ai_cmd.AIMessage(
            call_id=self.id, role=role, message_text=message_text, reset=cast("Any", reset),
            global_data=global_data,
        )  # fmt: skip
        return await self._command("ai_message", cmd)

    async def ai_stop(self) -> Leg:
        """Stop the AI agent on the call (``calling.ai.stop``)."""
        return await self._command("ai_stop", ai_cmd.AIStop(call_id=self.id))

    def ai_sidecar(
        self,
        lang: str,
        *,
        prompt: str | Mapping[str, Any] | None = None,
        model: str | None = None,
        direction: Sequence[Direction] | None = None,
        customer_role: Direction | None = None,
        url: str | None = None,
        swaig: Mapping[str, Any] | None = None,
        permissions: ai_cmd.SidecarPermissions | Mapping[str, Any] | None = None,
        global_data: Mapping[str, Any] | None = None,
        hints: Sequence[str] | None = None,
        params: ai_cmd.SidecarParams | Mapping[str, Any] | None = None,
        action: ai_cmd.Summarize | Mapping[str, Any] | None = None,
    ) -> Starting[Sidecar]:
        """Attach an AI sidecar that listens and advises your webhook (a :class:`Sidecar`)."""
        cmd = ai_cmd.AISidecar(
            call_id=self.id, lang=lang, prompt=prompt, model=model, direction=direction,
            customer_role=customer_role, url=url, swaig=swaig,
            permissions=cast("Any", permissions),
            global_data=global_data, hints=hints, params=cast("Any", params),
            action=cast("Any", action),
        )  # fmt: skip
        return self._start("ai_sidecar", Sidecar, cmd)

    def live_transcribe(
        self,
        lang: str,
        direction: Sequence[Direction] = ("remote-caller", "local-caller"),
        **options: Any,
    ) -> Starting[LiveTranscription]:
        """
        Start live transcription; returns a :class:`LiveTranscription`.

        *options* are the other fields of
        :class:`~relaycall.commands.LiveTranscribeStart` (``webhook``,
        ``live_events``, ``ai_summary``, ``speech_engine``...).
        """
        start = ai_cmd.LiveTranscribeStart(lang=lang, direction=list(direction), **options)
        return self._start(
            "live_transcribe",
            LiveTranscription,
            ai_cmd.LiveTranscribe(call_id=self.id, action=start),
        )

    def live_translate(
        self,
        from_lang: str,
        to_lang: str,
        direction: Sequence[Direction] = ("remote-caller", "local-caller"),
        *,
        status_url: str | None = None,
        **options: Any,
    ) -> Starting[LiveTranslation]:
        """
        Start live translation; returns a :class:`LiveTranslation`.

        *options* are the other fields of
        :class:`~relaycall.commands.LiveTranslateStart` (voices, filters, ``webhook``...).
        """
        start = ai_cmd.LiveTranslateStart(
            from_lang=from_lang, to_lang=to_lang, direction=list(direction), **options
        )
        cmd = ai_cmd.LiveTranslate(call_id=self.id, action=start, status_url=status_url)
        return self._start("live_translate", LiveTranslation, cmd)

    # --- fax -------------------------------------------------------------------------------------

    async def send_fax_stop(self, control_id: str) -> Leg:
        """Stop a fax send started elsewhere (SWML ``send_fax``) by its control id."""
        cmd = ops_cmd.SendFaxStop(call_id=self.id, control_id=control_id)
        return await self._command("send_fax_stop", cmd)

    async def receive_fax_stop(self, control_id: str) -> Leg:
        """Stop a fax receive started elsewhere (SWML ``receive_fax``) by its control id."""
        cmd = ops_cmd.ReceiveFaxStop(call_id=self.id, control_id=control_id)
        return await self._command("receive_fax_stop", cmd)

    # --- handles for operations started elsewhere --------------------------------------------

    def attach(self, kind: type[OpT], control_id: str | None = None) -> OpT:
        """
        Return the handle for an operation already running on this call, without a request.

        For an operation started by another process or a SWML script: the
        handle sends follow-ups with this call's id and *control_id*. If this
        process already has a handle for it, that same handle is returned.

        Example::

            pb = relay.call(call_id).attach(relaycall.Playback, control_id)
            await pb.stop()
        """
        if not (isinstance(kind, type) and issubclass(kind, Operation)):
            raise TypeError(f"attach() takes an operation handle class, not {kind!r}")
        key = control_id or kind.kind

        _control_id_check(f"{kind.kind}.control_id", key)
        existing = self._ops.get(key)
        if isinstance(existing, kind):
            return existing
        handle = kind(self, key)
        if not self._ended:
            self._ops[key] = handle
        return handle

    def playback(self, control_id: str) -> Playback:
        """The :class:`Playback` handle for *control_id* (see :meth:`attach`)."""
        return self.attach(Playback, control_id)

    def recording(self, control_id: str) -> Recording:
        """The :class:`Recording` handle for *control_id* (see :meth:`attach`)."""
        return self.attach(Recording, control_id)

    def collector(self, control_id: str) -> Collector:
        """The :class:`Collector` handle for *control_id* (see :meth:`attach`)."""
        return self.attach(Collector, control_id)

    def detector(self, control_id: str) -> Detector:
        """The :class:`Detector` handle for *control_id* (see :meth:`attach`)."""
        return self.attach(Detector, control_id)

    def transcription(self, control_id: str) -> Transcription:
        """The :class:`Transcription` handle for *control_id* (see :meth:`attach`)."""
        return self.attach(Transcription, control_id)

    # --- awaiting ------------------------------------------------------------------------------

    async def wait(self, timeout: float | None = None) -> CallResult:
        """
        Wait until the call has ended and return how.

        Resolves on the ``ended`` callback, on a successful :meth:`end`, when
        the AsyncRelay closes (reason ``session_closed``), or when the call,
        quiet for ``probe_quiet_calls_after`` seconds, turns out to be unknown
        to the server (reason ``gone``: its ``ended`` callback was lost).
        Without an EventReceiver and without *timeout* it raises UsageError at
        once, unless the outcome is known already: nothing could end the wait.
        """
        return await self._wait(timeout)

    async def wait_for(self, state: CallState, timeout: float | None = None) -> CallState:
        """
        Wait until the call reaches *state* (or a later one) and return the state reached.

        ``await call.wait_for("answered")`` returns ``"ended"`` if the call
        ended without being answered: check the result.

        Raises ClientClosedError if the AsyncRelay closes first (or is closed
        already): the state was not reached, and there is no state to return
        that says so. Without an EventReceiver and without *timeout* it
        raises UsageError at once unless the state is reached already.
        """
        wait_timeout_check("wait_for.timeout", timeout)
        if not isinstance(state, str) or state not in _ORDER:
            fail("wait_for.state", state, f"is not a call state ({', '.join(_ORDER)})")
        target = _ORDER[state]

        def reached() -> bool:
            return _ORDER.get(self._state, -1) >= target or self._state == "ended"

        if reached():
            return self.state
        if not self._relay._watch(self, timeout, f"{self!r}.wait_for({state!r})"):
            raise self._closed_before(state)
        queue: asyncio.Queue[Any] = asyncio.Queue()
        entry: tuple[Operation[Any] | None, asyncio.Queue[Any]] = (None, queue)
        if self._listeners is None:
            self._listeners = []
        self._listeners.append(entry)

        async def until() -> None:
            while not reached():
                # _CLOSE without the call having ended: the session closed.
                if await queue.get() is _CLOSE and not reached():
                    raise self._closed_before(state)

        try:
            await asyncio.wait_for(until(), timeout)
        except asyncio.TimeoutError:
            raise WaitTimeoutError(f"{self!r} did not reach {state!r} within {timeout} s") from None
        finally:
            if self._listeners is not None and entry in self._listeners:
                self._listeners.remove(entry)
        return self.state

    def _closed_before(self, state: str) -> ClientClosedError:
        return ClientClosedError(
            f"{self!r}: the AsyncRelay was closed before the call reached {state!r}"
        )

    def events(self) -> AsyncIterator[Any]:
        """
        Iterate over every status event of this call and its operations until it ends.

        The iteration also ends when the AsyncRelay closes (at once if it is
        closed). Without an EventReceiver it raises UsageError: no event
        could ever come.
        """
        return self._event_stream(None)

    async def _event_stream(self, op: Operation[Any] | None) -> AsyncIterator[Any]:
        target: Handle[Any] = op if op is not None else self
        if target.done or not self._relay._watch(self, None, f"{target!r}.events()"):
            return
        queue: asyncio.Queue[Any] = asyncio.Queue()
        if self._listeners is None:
            self._listeners = []
        entry = (op, queue)
        self._listeners.append(entry)
        try:
            while True:
                item = await queue.get()
                if item is _CLOSE:
                    return
                if item is _STATE:
                    continue
                yield item
        finally:
            if self._listeners is not None and entry in self._listeners:
                self._listeners.remove(entry)

    def _publish(self, event: Any, op: Operation[Any] | None) -> None:
        """Hand an event to everyone iterating this call, or that operation."""
        heard = self._relay._last_heard
        if heard and self in heard:
            heard[self] = time.monotonic()  # not quiet: no liveness probe due
        for who, queue in self._listeners or ():
            if who is None or who is op:
                queue.put_nowait(event)

    def _notify_state(self) -> None:
        for who, queue in self._listeners or ():
            if who is None:
                queue.put_nowait(_STATE)

    def _close_listeners(self, op: Operation[Any] | None = None) -> None:
        for who, queue in self._listeners or ():
            if op is None or who is op:
                queue.put_nowait(_CLOSE)


_CLOSE = object()
_STATE = object()

#: detect("machine") etc.: the config class (its defaults) in relaycall._commands.operations.
_DETECT_DEFAULTS: dict[str, str] = {
    "machine": "DetectMachine",
    "fax": "DetectFax",
    "digit": "DetectDigit",
}

__all__ = ["Call"]


def _call_result(
    call: Call, state: CallState, end_reason: str | None, reason: ResultReason, event: Any
) -> CallResult:
    return CallResult(
        call_id=call.id, state=state, end_reason=end_reason, reason=reason, event=event
    )
