"""
The EmulatedPlatform: the state behind the endpoint, the command dispatcher,
and the Python control API tests drive it with.

Every command has one emulated behaviour, declared where it lives: a method
here marked :func:`handles`, the operation kind it starts (``started_by`` in
``_ops``), or a method of what it acts on marked ``follow_up``.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import math
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Literal, TypeVar

import attrs
from aiohttp import web

from relaycall import commands as c
from relaycall.emulator._calls import (
    PRE_ANSWER,
    EmulatedCall,
    Refusal,
    conflict,
    not_found,
    refuse,
)
from relaycall.emulator._clock import Scheduler
from relaycall.emulator._config import EmulatorConfig, Scenario
from relaycall.emulator._faults import Faults, format_seconds
from relaycall.emulator._journal import Journal, NoteEntry, RequestEntry
from relaycall.emulator._media import MediaHub
from relaycall.emulator._ops import OPERATIONS, RUNNING, LiveSession, Operation, Running, Sidecar
from relaycall.emulator._outbox import DeliveryHook, Outbox
from relaycall.emulator._ratelimit import CallQueue, PostBucket, RateLimits
from relaycall.emulator._swml import SwmlRun
from relaycall.emulator._wire import WireError, parse_request
from relaycall.errors import redact

__all__ = ["EmulatedPlatform", "Reply", "RequestHook", "handles", "request_call_id"]

logger = logging.getLogger("relaycall.emulator")

#: Runs after authentication and the POST rate limit, before request faults and dispatch,
#: with the request and its decoded JSON body (None when it was not JSON). Return a
#: response to answer with it instead.
RequestHook = Callable[[web.Request, Any], Awaitable[web.StreamResponse | None]]

F = TypeVar("F", bound=Callable[..., Any])

_MAX_RECORDINGS = 100_000
#: The commands whose bodies can carry a secret (masked in the journal).
_SECRET_COMMANDS = frozenset({"dial", "calling.refer", "calling.stream", "calling.ai_sidecar"})


def _sip_data(from_: str, to: str) -> dict[str, Any]:
    """The fetch's ``sip_data`` for a SIP call from *from_* to *to* (URIs or bare users)."""

    def parts(uri: str) -> tuple[str, str, str]:
        bare = uri.split(":", 1)[1] if uri.lower().startswith(("sip:", "sips:")) else uri
        user, _, host = bare.partition("@")
        host = host or "sip.example.com"
        return user, host, f"{user}@{host}"

    fu, fh, furi = parts(from_)
    tu, th, turi = parts(to)
    return {
        "sip_req_host": th, "sip_req_uri": turi, "sip_req_user": tu,
        "sip_from_host": fh, "sip_from_uri": furi, "sip_from_user": fu,
        "sip_to_host": th, "sip_to_uri": turi, "sip_to_user": tu,
        "sip_contact_user": fu, "sip_contact_port": "5060",
        "sip_contact_uri": furi, "sip_contact_host": fh, "sip_contact_params": {},
    }  # fmt: skip


def request_call_id(body: Any) -> str | None:
    """The call a request body names (``id``, or ``params.id`` for ``update``)."""
    if not isinstance(body, dict):
        return None
    params = body.get("params")
    call_id = body.get("id") or (params.get("id") if isinstance(params, dict) else None)
    return call_id if isinstance(call_id, str) else None


#: The commands the platform carries out with a method of its own: command -> method name.
_HANDLED: dict[type[c.Command[Any]], str] = {}


def handles(command: type[c.Command[Any]]) -> Callable[[F], F]:
    """Declare that the decorated method, ``(self, cmd) -> Reply``, carries out *command*."""

    def deco(fn: F) -> F:
        if command in _HANDLED:
            raise TypeError(f"{command.command_name} is already handled by {_HANDLED[command]}")
        _HANDLED[command] = fn.__name__
        return fn

    return deco


@attrs.frozen
class Reply:
    """What the endpoint answers: a status and a JSON body (or text, for sidecar status)."""

    status: int
    body: Any
    content_type: str = "application/json"
    #: Why a 400 was given (sent as the X-Emulator-Detail header; the body stays as declared).
    detail: str | None = None
    #: Extra reply headers (``Retry-After``).
    headers: Mapping[str, str] | None = None
    #: Journaled as the request entry's ``fault`` (``call_queue_full``).
    fault: str | None = None


class EmulatedPlatform:
    """
    The emulated Calling API platform: its calls, clock, callbacks and journal.
    Build it with :func:`relaycall.emulator.create_app` (it is
    ``app[EMULATOR_KEY]``) or directly, and drive it from tests;
    ``relaycall.testing.Emulator`` runs one as ``emu.core``.

    Attributes:
        config: The :class:`EmulatorConfig`.
        scenarios: How each destination behaves, by the dial's ``to``.
        calls: Every live call, and the last ``keep_ended_calls`` ended ones, by id.
        journal: Every request, callback and control action.
        audio_durations: How long an ``audio`` play item at a URL lasts.
        clock: The scheduler (emulated time: ``clock.now()``, ``clock.advance()``).
        request_hooks: Run between authentication and dispatch (see :data:`RequestHook`).
        delivery_hooks: Run before each callback delivery (see ``DeliveryHook``).
        faults: Failures on demand for requests and callbacks (:class:`Faults`).
        rate_limits: The limits in force (:class:`RateLimits`; see :meth:`set_rate_limits`).
        media: The WebSocket audio connections of streams and taps.
    """

    def __init__(self, config: EmulatorConfig | None = None) -> None:
        self.config = config or EmulatorConfig()
        self.clock = Scheduler(self.config.time_scale)
        self.journal = Journal(self.config.journal_size)
        self.faults = Faults()
        self.outbox = Outbox(self.config, self.journal, self.clock, self.faults)
        self.rate_limits: RateLimits = self.config.rate_limits
        self.post_bucket = PostBucket(self.rate_limits)
        self.call_queue = CallQueue()
        self.media = MediaHub(self)
        self.scenarios: dict[str, Scenario] = {}
        self.calls: dict[str, EmulatedCall] = {}
        self.audio_durations: dict[str, float] = {}
        self.request_hooks: list[RequestHook] = []
        #: The base URL recording links use (config.public_url, else each request's Host).
        self.public_url = self.config.public_url or "http://127.0.0.1"
        self._recordings: OrderedDict[str, int] = OrderedDict()
        self._ended: deque[str] = deque()
        #: SWML fetches in flight (cancelled by close and reset).
        self.swml_tasks: set[asyncio.Task[None]] = set()
        self._handlers: dict[type[Any], Callable[[Any], Reply]] = self._build_handlers()

    def __repr__(self) -> str:
        live = sum(1 for call in self.calls.values() if call.is_live)
        return f"<EmulatedPlatform calls={live} live/{len(self.calls)} journal={len(self.journal)}>"

    @property
    def delivery_hooks(self) -> list[DeliveryHook]:
        return self.outbox.hooks

    # --- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        """Open the callback session (the app does this on startup)."""
        await self.outbox.start()

    async def close(self) -> None:
        """Stop every timer, close the WebSocket connections and the callback session."""
        self.clock.clear()
        await self._cancel_swml()
        await self.media.close()
        await self.outbox.close()

    async def _cancel_swml(self) -> None:
        tasks = list(self.swml_tasks)
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def idle(self) -> None:
        """Return once every queued callback has been delivered (or has failed)."""
        await self.outbox.idle()

    def reset(self) -> None:
        """
        Forget everything: calls, timers, queued callbacks, WebSocket connections,
        scenarios, faults, journal, recordings; the rate limits go back to the config's.
        """
        self.clock.clear()
        for task in list(self.swml_tasks):
            task.cancel()
        self.outbox.clear()
        self.media.clear()
        self.calls.clear()
        self._ended.clear()
        self.scenarios.clear()
        self.audio_durations.clear()
        self._recordings.clear()
        self.journal.clear()
        self.faults.clear()
        self.set_rate_limits(self.config.rate_limits)

    def set_rate_limits(self, limits: RateLimits | None = None, **changes: Any) -> RateLimits:
        """
        Change the rate limits in force: give a whole :class:`RateLimits`, or
        fields to change (``emu.set_rate_limits(enforce_post_limit=True, post_limit=5)``).
        The POST bucket starts full and the call queue empty. Returns the new limits.
        """
        base = limits if limits is not None else self.rate_limits
        new = attrs.evolve(base, **changes) if changes else base
        self.rate_limits = new
        self.post_bucket.configure(new)
        self.call_queue.clear()
        return new

    # --- the Python control API ------------------------------------------------------------------

    def call(self, call_id: str) -> EmulatedCall:
        """The call with *call_id* (KeyError when unknown)."""
        try:
            return self.calls[call_id]
        except KeyError:
            raise KeyError(f"the emulator has no call {call_id!r}") from None

    def _live_call(self, call_id: str) -> EmulatedCall:
        call = self.call(call_id)
        if not call.is_live:
            raise KeyError(f"call {call_id} has ended")
        return call

    def press(self, call_id: str, digits: str) -> bool:
        """
        The caller presses *digits* on *call_id*. Delivered at once to whatever listens
        (returns True); with nothing listening, kept for the next input operation.
        """
        self.note(call_id, "press", digits)
        return self._live_call(call_id).press(digits)

    def say(self, call_id: str, text: str) -> bool:
        """The caller says *text* on *call_id* (like :meth:`press`, for speech)."""
        self.note(call_id, "say", text)
        return self._live_call(call_id).say(text)

    def answer_as(self, call_id: str, kind: Literal["human", "machine"]) -> None:
        """
        Answer *call_id* now as a ``human`` or a ``machine``; on an answered call,
        change what machine detection finds from now on.
        """
        if kind not in ("human", "machine"):
            raise ValueError("answer_as takes 'human' or 'machine'")
        self.note(call_id, "answer_as", kind)
        call = self._live_call(call_id)
        call.detect_override = "MACHINE" if kind == "machine" else "HUMAN"
        if call.is_answered:
            call.answered_as = kind
        else:
            call.answer(kind)

    def hangup(self, call_id: str, reason: str = "hangup") -> None:
        """The far end hangs up *call_id*."""
        self.note(call_id, "hangup", reason)
        self._live_call(call_id).end(reason)

    def incoming_call(
        self,
        from_: str,
        to: str,
        url: str,
        *,
        type: Literal["phone", "sip", "webrtc"] = "phone",
        headers: Mapping[str, str] | list[dict[str, str]] | None = None,
        sip_data: Mapping[str, Any] | None = None,
        envs: Mapping[str, Any] | None = None,
        scenario: Scenario | None = None,
        method: Literal["GET", "POST"] = "POST",
    ) -> EmulatedCall:
        """
        A call comes in from *from_* to *to*: the call is created (direction
        ``inbound``, ringing), the signed SWML fetch (reference §9.6) is POSTed to
        *url*, and the document it answers is run. Returns the call at once; await
        ``call.swml.loaded()`` for the fetch to be over.

        *scenario* is how the caller behaves (their key presses, speech,
        ``hangup_after``); by default ``scenarios[from_]``, else the default
        scenario. *headers* are the call's SIP headers (a mapping or
        ``[{"name", "value"}]``); *sip_data* the fetch's ``sip_data`` for a ``sip``
        call (built from *from_* and *to* when left out).
        """
        if type not in ("phone", "sip", "webrtc"):
            raise ValueError("type is 'phone', 'sip' or 'webrtc'")
        if method not in ("GET", "POST"):
            raise ValueError("method is 'GET' or 'POST'")
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            raise ValueError(f"the SWML URL must be http(s), not {url!r}")
        chosen = scenario or self.scenarios.get(from_, self.config.default_scenario)
        call = EmulatedCall(
            self, None, chosen, from_=from_, to=to, direction="inbound", device_type=type, url=url
        )
        listed = (
            [{"name": str(k), "value": str(v)} for k, v in headers.items()]
            if isinstance(headers, Mapping)
            else [dict(h) for h in headers or []]
        )
        if type == "sip" and sip_data is None:
            sip_data = _sip_data(from_, to)
        call.swml = SwmlRun(call, envs=envs, headers=listed, sip_data=sip_data)
        self.calls[call.id] = call
        call.status = "ringing"
        self.note(call.id, "incoming_call", {"from": from_, "to": to, "type": type, "url": url})
        call.swml.fetch(url, method=method)
        return call

    def run_dial_swml(self, call: EmulatedCall) -> None:
        """A dialled call was answered: run its inline ``swml``, or fetch its ``url``."""
        dial = call.dial
        assert dial is not None
        envs = dict(dial.custom_variables or {})
        if dial.swml is not None:
            call.swml = SwmlRun(call, envs=envs)
            call.swml.run(dict(dial.swml))
            return
        if dial.url is None:
            return
        if not self.outbox.reachable(dial.url):
            self.note(call.id, "swml.skipped", {"url": dial.url})
            return
        call.swml = SwmlRun(call, envs=envs)
        call.swml.fetch(dial.url, method=dial.url_method or "POST", fallback=dial.fallback_url)

    def dial_peer(
        self, parent: EmulatedCall, *, to: str, from_: str, timeout: float
    ) -> EmulatedCall:
        """The far leg a SWML ``connect`` dials, behaving as ``scenarios[to]`` says."""
        scenario = self.scenarios.get(to, self.config.default_scenario)
        peer = EmulatedCall(
            self, None, scenario, from_=from_, to=to, ring_timeout=timeout, parent=parent
        )
        self.calls[peer.id] = peer
        self.note(parent.id, "swml.dial", {"to": to, "peer": peer.id})
        peer.start()
        return peer

    def _redirect(self, call: EmulatedCall, dest: Any) -> bool:
        """Run *dest* (a SWML object or a reachable URL) on *call*, replacing its SWML."""
        if isinstance(dest, Mapping):
            run = self._new_run(call)
            run.run(dict(dest))
            return True
        if isinstance(dest, str) and dest.startswith(("http://", "https://")):
            if not self.outbox.reachable(dest):
                self.note(call.id, "swml.skipped", {"url": dest})
                return False
            self._new_run(call).fetch(dest)
            return True
        return False

    def _new_run(self, call: EmulatedCall) -> SwmlRun:
        old = call.swml
        if old is not None:
            old.replace()
        run = SwmlRun(
            call,
            envs=old.envs if old is not None else None,
            headers=old.headers if old is not None else None,
            sip_data=old.sip_data if old is not None else None,
        )
        if old is not None:
            run.vars.update(old.vars)
        call.swml = run
        return run

    def start_fax(self, call_id: str, kind: Literal["send", "receive"], control_id: str) -> None:
        """Mark a fax operation as running on *call_id* (as SWML would start one)."""
        if kind not in ("send", "receive"):
            raise ValueError("start_fax takes 'send' or 'receive'")
        self._live_call(call_id).faxes[kind] = control_id

    def note(self, call_id: str | None, what: str, data: Any = None) -> None:
        """Add a note to the journal."""
        self.journal.add(
            NoteEntry(
                seq=self.journal.next_seq(),
                time=self.clock.wall(),
                call_id=call_id,
                what=what,
                data=data,
            )
        )

    # --- recordings ---------------------------------------------------------------------------

    def store_recording(self, recording_id: str, frames: int) -> None:
        self._recordings[recording_id] = frames
        while len(self._recordings) > _MAX_RECORDINGS:
            self._recordings.popitem(last=False)

    def recording_frames(self, recording_id: str) -> int | None:
        """How many 8 kHz frames recording *recording_id* holds (None when unknown)."""
        return self._recordings.get(recording_id)

    def _call_ended(self, call: EmulatedCall) -> None:
        self._ended.append(call.id)
        while len(self._ended) > self.config.keep_ended_calls:
            self.calls.pop(self._ended.popleft(), None)

    # --- requests ------------------------------------------------------------------------------

    def handle(
        self,
        body: Any,
        *,
        fault: str | None = None,
        answer: Reply | None = None,
        delay: float | None = None,
    ) -> Reply:
        """
        Answer one decoded request body, and journal it.

        The endpoint passes *fault* (journaled) and, for a fault that answers
        an error after carrying the command out, the *answer* sent instead of
        the real reply (which is then returned).
        """
        command = body.get("command") if isinstance(body, dict) else None
        try:
            cmd = parse_request(body)
            reply = self.execute(cmd)
        except WireError as exc:
            reply = Reply(exc.status, exc.body(), detail=exc.text if exc.status == 400 else None)
            if exc.status == 400:
                logger.info("emulator: 400 %s", exc.text)
        call_id = request_call_id(body)
        if reply.status == 200 and command == "dial" and isinstance(reply.body, dict):
            call_id = reply.body.get("id")
        sent = answer or reply
        self.log_request(
            command, call_id, sent.status, body, sent.body, fault=fault or reply.fault, delay=delay
        )
        return sent

    def log_request(
        self,
        command: Any,
        call_id: Any,
        status: int,
        body: Any,
        response: Any,
        *,
        fault: str | None = None,
        delay: float | None = None,
    ) -> None:
        self.journal.add(
            RequestEntry(
                seq=self.journal.next_seq(),
                time=self.clock.wall(),
                command=command if isinstance(command, str) else None,
                call_id=call_id if isinstance(call_id, str) else None,
                status=status,
                body=redact(body) if command in _SECRET_COMMANDS or command is None else body,
                response=response,
                fault=fault,
                delay=delay,
            )
        )

    def execute(self, cmd: c.Command[Any]) -> Reply:
        """Carry out a parsed command."""
        handler = self._handlers[type(cmd)]
        try:
            reply = handler(cmd)
        except Refusal as exc:
            return Reply(exc.status, exc.body)
        if reply.status == 200 and not isinstance(cmd, c.UserEvent | c.Update | c.Dial):
            call = self.calls.get(getattr(cmd, "call_id", None) or "")
            if call is not None and call.swml is not None and call.swml.take_over():
                self.note(call.id, "swml.taken_over", {"command": cmd.command_name})
        return reply

    def _build_handlers(self) -> dict[type[Any], Callable[[Any], Reply]]:
        """Bind every command's declared behaviour; each command has exactly one."""
        handlers: dict[type[Any], Callable[[Any], Reply]] = {}

        def add(command: type[c.Command[Any]], handler: Callable[[Any], Reply]) -> None:
            if command in handlers:
                raise TypeError(f"{command.command_name} has two emulated behaviours")
            handlers[command] = handler

        for command, method in _HANDLED.items():
            add(command, getattr(self, method))
        for kind in OPERATIONS:
            add(kind.started_by, functools.partial(self._start, kind))
        for running in RUNNING:
            for command, (method, fields) in running.follow_ups.items():
                add(command, functools.partial(self._follow_up, running, method, fields))
        missing = sorted(cls.command_name for cls in c.BY_NAME.values() if cls not in handlers)
        if missing:
            raise TypeError(f"no emulated behaviour for {', '.join(missing)}")
        return handlers

    # --- helpers -------------------------------------------------------------------------------

    def _target(self, call_id: str) -> EmulatedCall:
        """The live call a command names, else 404."""
        call = self.calls.get(call_id)
        if call is None or not call.is_live:
            raise not_found()
        return call

    def _answered(self, call_id: str) -> EmulatedCall:
        """The live, answered call a media command names: 404 if unknown, 409 if not answered."""
        call = self._target(call_id)
        if not call.is_answered:
            raise conflict()
        return call

    def _leg(self, call: EmulatedCall) -> Reply:
        return Reply(200, call.leg())

    def _start(self, kind: type[Operation], cmd: Any) -> Reply:
        call = self._answered(cmd.call_id)
        if kind.one_per_call and any(running == kind.kind for running, _ in call.ops):
            raise conflict()
        op = kind(call, cmd)
        key = (op.kind, op.control_id)
        if key in call.ops:
            raise conflict()
        call.ops[key] = op
        op.begin()
        return self._leg(call)

    def _follow_up(
        self, kind: type[Running], method: str, fields: tuple[str, ...], cmd: Any
    ) -> Reply:
        call = self._target(cmd.call_id)
        running = kind.running(call, cmd)
        if running is None:
            raise not_found()
        getattr(running, method)(*[getattr(cmd, name) for name in fields])
        return self._leg(call)

    # --- the call itself -----------------------------------------------------------------------

    @handles(c.Dial)
    def _dial(self, cmd: c.Dial) -> Reply:
        now = self.clock.now()
        limits = self.rate_limits
        wait = self.call_queue.admit(now, limits)
        if wait is None:
            emulated = self.call_queue.retry_after(now, limits)
            real = max(1, math.ceil(emulated / self.clock.time_scale))
            return Reply(
                429,
                {"error": "Too Many Requests"},
                headers={"Retry-After": format_seconds(real)},
                fault="call_queue_full",
            )
        scenario = self.scenarios.get(cmd.to or "", self.config.default_scenario)
        call = EmulatedCall(self, cmd, scenario)
        self.calls[call.id] = call
        call.start(wait)
        return self._leg(call)

    @handles(c.Update)
    def _update(self, cmd: c.Update) -> Reply:
        call = self._target(cmd.call_id)
        if cmd.status == "canceled" and call.status not in PRE_ANSWER:
            raise refuse(
                "status",
                f"'canceled' applies only to a queued or ringing call; this one is {call.status}",
            )
        if cmd.status == "completed" and not call.is_answered:
            raise refuse(
                "status", f"'completed' applies only to an answered call; this one is {call.status}"
            )
        if cmd.status is None and not call.is_answered:
            raise refuse(
                "status",
                f"a call can be redirected (url or swml) only once answered; this one is "
                f"{call.status}",
            )
        if cmd.status_url is not None:
            call.status_url = cmd.status_url
        if cmd.status == "canceled":
            call.end("cancel", status="canceled")
        elif cmd.status == "completed":
            call.end("hangup", status="completed")
        else:
            call.redirects.append(cmd.url if cmd.url is not None else cmd.swml)
            if cmd.url is not None:
                call.url = cmd.url
            self._redirect(call, cmd.url if cmd.url is not None else cmd.swml)
        return self._leg(call)

    @handles(c.End)
    def _end(self, cmd: c.End) -> Reply:
        call = self._target(cmd.call_id)
        call.end(cmd.reason or "hangup", status="completed" if call.is_answered else "canceled")
        return self._leg(call)

    @handles(c.Transfer)
    def _transfer(self, cmd: c.Transfer) -> Reply:
        call = self._answered(cmd.call_id)
        call.transfers.append(cmd.dest)
        self.note(call.id, "transfer", cmd.dest)
        if not self._redirect(call, cmd.dest):
            call.bridged_to = cmd.dest
        return self._leg(call)

    @handles(c.Disconnect)
    def _disconnect(self, cmd: c.Disconnect) -> Reply:
        call = self._answered(cmd.call_id)
        call.bridged_to = None
        self.note(call.id, "disconnect")
        return self._leg(call)

    @handles(c.Refer)
    def _refer(self, cmd: c.Refer) -> Reply:
        call = self._answered(cmd.call_id)
        to = cmd.device.to
        url = cmd.status_url

        def progress(state: str, notify: str | None) -> None:
            if not call.is_live:
                return
            call.emit(
                url,
                "calling.call.refer",
                {"state": state, "sip_refer_to": to, "sip_refer_response_code": "202",
                 "sip_notify_response_code": notify},
            )  # fmt: skip
            if state == "success":
                call.end("hangup")

        progress("inProgress", None)
        self.clock.after(1.0, progress, "success", "200")
        return self._leg(call)

    @handles(c.UserEvent)
    def _user_event(self, cmd: c.UserEvent) -> Reply:
        call = self._target(cmd.call_id)
        call.user_events.append(cmd.event)
        self.note(call.id, "user_event", cmd.event)
        return self._leg(call)

    # --- operations without a generic shape ------------------------------------------------------

    @handles(c.Denoise)
    def _denoise_on(self, cmd: c.Denoise) -> Reply:
        return self._denoise(cmd, on=True)

    @handles(c.DenoiseStop)
    def _denoise_off(self, cmd: c.DenoiseStop) -> Reply:
        return self._denoise(cmd, on=False)

    def _denoise(self, cmd: c.Denoise | c.DenoiseStop, *, on: bool) -> Reply:
        call = self._answered(cmd.call_id)
        call.denoised = on
        call.emit(None, "calling.call.denoise", {"denoised": on})
        return self._leg(call)

    @handles(c.AIHold)
    def _ai_hold(self, cmd: c.AIHold) -> Reply:
        call = self._answered(cmd.call_id)
        call.ai_held = True
        call.ai_hold_timeout = cmd.timeout
        self.note(call.id, "ai_hold", {"timeout": cmd.timeout, "prompt": cmd.prompt})
        return self._leg(call)

    @handles(c.AIUnhold)
    def _ai_unhold(self, cmd: c.AIUnhold) -> Reply:
        call = self._answered(cmd.call_id)
        call.ai_held = False
        self.note(call.id, "ai_unhold")
        return self._leg(call)

    @handles(c.AIMessage)
    def _ai_message(self, cmd: c.AIMessage) -> Reply:
        call = self._answered(cmd.call_id)
        if cmd.reset is not None:
            call.ai_messages.clear()
        if cmd.message_text is not None:
            call.ai_messages.append({"role": cmd.role or "system", "text": cmd.message_text})
        if cmd.global_data:
            call.ai_global_data.update(cmd.global_data)
        self.note(call.id, "ai_message", {"role": cmd.role, "message_text": cmd.message_text})
        return self._leg(call)

    @handles(c.AIStop)
    def _ai_stop(self, cmd: c.AIStop) -> Reply:
        call = self._answered(cmd.call_id)
        call.ai_stopped = True
        self.note(call.id, "ai.stop")
        return self._leg(call)

    @handles(c.AISidecar)
    def _sidecar(self, cmd: c.AISidecar) -> Reply:
        call = self._answered(cmd.call_id)
        if cmd.action is not None:
            # A one-off summary: nothing attaches; the summary goes to the action's webhook.
            once = Sidecar(call, cmd)
            text = call.scenario.transcript or ""
            once.send(
                "insight",
                {"raw": f"Summary: {text}", "iter": 1, "total_iters": 1},
                url=cmd.action.webhook,
            )
            return self._leg(call)
        if call.sidecar is not None:
            raise conflict()
        call.sidecar = Sidecar(call, cmd)
        call.sidecar.begin()
        return self._leg(call)

    def _sidecar_of(self, call_id: str) -> tuple[EmulatedCall, Sidecar]:
        call = self._target(call_id)
        if call.sidecar is None:
            raise not_found()
        sidecar: Sidecar = call.sidecar
        return call, sidecar

    @handles(c.AISidecarAsk)
    def _sidecar_ask(self, cmd: c.AISidecarAsk) -> Reply:
        call, sidecar = self._sidecar_of(cmd.call_id)
        ask_id = sidecar.ask(cmd.text)
        body = call.leg()
        if self.config.sidecar_ask_id_in_reply:
            body["ask_id"] = ask_id
        return Reply(200, body)

    @handles(c.AISidecarStatus)
    def _sidecar_status(self, cmd: c.AISidecarStatus) -> Reply:
        _, sidecar = self._sidecar_of(cmd.call_id)
        return Reply(200, sidecar.status_line(), "text/plain")

    @handles(c.LiveTranscribe)
    def _live_transcribe(self, cmd: c.LiveTranscribe) -> Reply:
        return self._live_action(cmd, "live_transcribe", None)

    @handles(c.LiveTranslate)
    def _live_translate(self, cmd: c.LiveTranslate) -> Reply:
        return self._live_action(cmd, "live_translate", cmd.status_url)

    def _live_action(
        self, cmd: c.LiveTranscribe | c.LiveTranslate, kind: str, status_url: str | None
    ) -> Reply:
        call = self._answered(cmd.call_id)
        action = cmd.action
        session: LiveSession | None = call.live.get(kind)
        if isinstance(action, c.LiveTranscribeStart | c.LiveTranslateStart):
            if session is not None:
                raise conflict()
            session = LiveSession(call, kind, action, status_url)
            call.live[kind] = session
            session.begin()
            return self._leg(call)
        if session is None:
            raise not_found()
        if status_url is not None:
            session.status_url = status_url
        if action == "stop":
            session.stop()
        elif isinstance(action, c.Summarize):
            session.summarize(action)
        elif isinstance(action, c.LiveTranslateInject):
            session.inject(action)
        return self._leg(call)

    @handles(c.SendFaxStop)
    def _send_fax_stop(self, cmd: c.SendFaxStop) -> Reply:
        return self._fax_stop(cmd, "send")

    @handles(c.ReceiveFaxStop)
    def _receive_fax_stop(self, cmd: c.ReceiveFaxStop) -> Reply:
        return self._fax_stop(cmd, "receive")

    def _fax_stop(self, cmd: c.SendFaxStop | c.ReceiveFaxStop, kind: str) -> Reply:
        call = self._target(cmd.call_id)
        if call.faxes.get(kind) != cmd.control_id:
            raise not_found()
        del call.faxes[kind]
        call.emit(
            None,
            "calling.call.fax",
            {"control_id": cmd.control_id,
             "fax": {"type": "finished", "params": {"direction": kind, "success": False,
                                                    "result": "stopped"}}},
            control_id=cmd.control_id,
        )  # fmt: skip
        return self._leg(call)
