"""
AsyncRelay: the session every command goes through.
"""

from __future__ import annotations

import base64
import enum
import inspect
import json
import logging
import os
import platform
import re
import secrets
import sys
import typing
import warnings
from collections.abc import AsyncIterator, Callable, Coroutine, Mapping, Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Literal, TypeVar
from urllib.parse import urlsplit

import aiohttp
import attrs

from relaycall import _download, _transport
from relaycall._commands._base import REGISTRY, Command
from relaycall._commands.call import Dial
from relaycall._config import USE_DEFAULT, Limits, RetryPolicy, Timeout, _Default, _seconds
from relaycall._handles._base import Starting
from relaycall._handles.call import Call
from relaycall._idempotency import Idempotency
from relaycall._models import RawResponse, check_leg
from relaycall._probe import QuietCalls
from relaycall._results import RecordingResult
from relaycall._retry import AlreadyProcessed as _AlreadyProcessed
from relaycall._routing import PendingDial, Router
from relaycall._transport import _UNSAFE
from relaycall._validate import is_text, text_check, uuid_check
from relaycall._version import __version__
from relaycall.errors import (
    AmbiguousOutcomeError,
    ClientClosedError,
    MaskedBody,
    MaskedStr,
    RelayError,
    UsageError,
    ValidationError,
    mask_secrets,
    show_value_masked,
)

if TYPE_CHECKING:
    # Types only: see _check_arguments.
    from relaycall._coordinator import RedisCoordinator
    from relaycall._receiver import EventReceiver

R = TypeVar("R")
logger = logging.getLogger("relaycall")

API_PATH = "/api/calling/calls"
_ALL_CALL_EVENTS = ("created", "ringing", "answered", "ended")
_SPACE = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?")


class _State(enum.Enum):
    UNOPENED = "unopened"
    OPEN = "open"
    CLOSED = "closed"


# Module constants for the per-command checks: reading an Enum member off its
# class costs about 70 ns on CPython 3.11, a global about 10.
_OPEN, _CLOSED = _State.OPEN, _State.CLOSED


# Built once: json.dumps with non-default options constructs a new JSONEncoder on
# every call; this one produces the same bytes (benchmarks/RESULTS.md).
_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False)
# The C encoder _ENCODER.encode() makes on every call (a closure and an encoder
# object per body, a third of a small body's cost), made once, with the same
# options, except the markers that detect circular references: None, as a
# shared dict would be shared by threads. So a body it fails on (circular,
# not JSON) is encoded again by _ENCODER, which raises what it always did.
_NO = False  # sort_keys, skipkeys, allow_nan: as _ENCODER's
_make_encoder: Any = json.encoder.c_make_encoder  # type: ignore[attr-defined]
_C_ENCODE = (
    _make_encoder(None, _ENCODER.default, json.encoder.encode_basestring, None, ":", ",",
                  _NO, _NO, _NO)
    if _make_encoder is not None
    else None
)  # fmt: skip


def _json_text(body: Mapping[str, Any]) -> str:
    """``_ENCODER.encode(body)``: the same text, or the same exception."""
    if _C_ENCODE is not None:
        try:
            return "".join(_C_ENCODE(body, 0))
        except Exception:  # noqa: BLE001, S110 - encoded again below, to raise as ever
            pass
    return _ENCODER.encode(body)


def _encode(body: Mapping[str, Any], command: str) -> bytes:
    """
    The JSON bytes of *body*; when it holds a secret, held masked (see below).

    A body with a secret (a SIP password, a SWML ``connect.password``, a
    webhook password) is kept in types whose repr is masked: the bytes in a
    :class:`MaskedBody` and, in the body dict (kept for
    :class:`AmbiguousOutcomeError` when the command must not be sent twice),
    each secret value in a masked str. A traceback with captured locals
    (``data``, ``body``) then shows ``'<redacted>'``. A typed command is
    walked only when it sets a field that can hold a secret; for the rest
    (play, record, stop, a dial without SIP credentials or SWML: nearly every
    command) the check is a dict lookup.
    """
    try:
        data = _json_text(body).encode()
    except (TypeError, ValueError) as exc:
        shown = mask_secrets(body.get("params"))
        del body
        raise ValidationError(f"{command}.params", shown, f"is not JSON: {exc}") from exc
    params = body.get("params")
    if type(body) is dict:  # a typed command's to_wire(); execute() sends an _Untyped
        keys = _SECRET_PARAMS.get(command)
        if keys is None:
            keys = _SECRET_PARAMS[command] = _secret_params(command)
        if not keys or (keys is not _ANY_KEY and keys.isdisjoint(params)):  # type: ignore[arg-type]
            return data
    masked = mask_secrets(params)
    if masked is params:
        return data
    body["params"] = masked  # type: ignore[index]
    return MaskedBody(data)


class _Untyped(dict[str, Any]):
    """The body execute() builds: any command name, any params, so always checked for secrets."""

    __slots__ = ()


#: Command name -> the keys of its params whose values may hold a secret (none:
#: the empty set). Filled on first use of each name.
_SECRET_PARAMS: dict[str, frozenset[str]] = {}
#: For a name with no typed class: any key may.
_ANY_KEY: frozenset[str] = frozenset({"*"})


def _secret_params(name: str) -> frozenset[str]:
    """The params keys of command *name* that may hold a secret, from its typed class."""
    cls = command_class(name)
    if cls is None:
        return _ANY_KEY
    return frozenset(
        field.metadata.get("wire", field.name)
        for field in attrs.fields(typing.cast("Any", cls))
        if not field.metadata.get("omit") and _field_may_hold_secret(cls, field, set())
    )


def _field_may_hold_secret(cls: type, field: attrs.Attribute[Any], seen: set[type]) -> bool:
    if callable(field.repr) or field.metadata.get("raw"):
        return True  # a secret field (masked repr), or free-form JSON
    hint: Any = field.type  # a str: every command module defers its annotations
    if isinstance(hint, str):
        if _PLAIN_HINT.fullmatch(hint):
            return False  # text, numbers, flags: no nested model
        hint = _field_hint(cls, field.name, hint)
        if hint is None:
            return True  # cannot tell: walk its bodies
    return any(_may_hold_secret(model, seen) for model in _attrs_classes(hint))


#: An annotation naming only plain values (``str | None``, ``Literal["a", "b"] | None``):
#: read without evaluating it, as nearly every field's is.
_PLAIN = r"(?:str|int|float|bool|None|Literal\[[^\]]*\])"
_PLAIN_HINT = re.compile(rf"{_PLAIN}(?: \| {_PLAIN})*")


def _field_hint(cls: type, name: str, hint: str) -> Any:
    # One field's annotation, evaluated in the module of the class that declares it (a
    # command module imports the models its fields name; an inherited field's names are
    # its base's module's): not typing.get_type_hints, which compiles every annotation
    # of the class and its bases, a hundred for the first dial, play and record.
    owner = next((c for c in cls.__mro__ if name in inspect.get_annotations(c)), cls)
    module = sys.modules.get(owner.__module__)
    try:
        return eval(hint, vars(module) if module is not None else {})  # noqa: S307 - our annotation
    except Exception:  # noqa: BLE001 - an annotation that will not evaluate: cannot tell
        return None


def _may_hold_secret(cls: type, seen: set[type]) -> bool:
    """Whether a nested model has a field that may hold a secret."""
    if cls in seen:
        return False
    seen.add(cls)
    return any(_field_may_hold_secret(cls, f, seen) for f in attrs.fields(cls))


def _attrs_classes(hint: Any) -> list[type]:
    """The attrs classes named anywhere in a type hint (``Sequence[PlayAudio | PlayTTS]``)."""
    if isinstance(hint, type) and attrs.has(hint):
        return [hint]
    return [c for arg in typing.get_args(hint) for c in _attrs_classes(arg)]


_TEXT_ARGS = ("project_id", "token", "space", "base_url", "user_agent")


def _check_arguments(args: Mapping[str, Any]) -> None:
    """AsyncRelay's arguments, by type, before anything is built from them."""
    for name in _TEXT_ARGS:
        value = args[name]
        if value is not None and not isinstance(value, str):
            raise UsageError(f"{name} must be a string, not {type(value).__name__}")
    session = args["session"]
    # Duck-typed: a stand-in with post() (a test double, a wrapper) is fine.
    if session is not None and not callable(getattr(session, "post", None)):
        raise UsageError(
            f"session must be an aiohttp.ClientSession or None, not {type(session).__name__}"
        )
    _check_kind("retry", args["retry"], (RetryPolicy, _Default), "a RetryPolicy")
    _check_kind("limits", args["limits"], Limits, "a Limits")
    # Imported only when one is given (and then already imported by the caller): a
    # session without them never loads the receiver (nor aiohttp.web) or the coordinator.
    if args["events"] is not None:
        from relaycall._receiver import EventReceiver  # noqa: PLC0415

        _check_kind("events", args["events"], EventReceiver, "an EventReceiver")
    if args["coordinator"] is not None:
        from relaycall._coordinator import RedisCoordinator  # noqa: PLC0415

        _check_kind("coordinator", args["coordinator"], RedisCoordinator, "a RedisCoordinator")


def _check_kind(name: str, value: Any, kinds: type | tuple[type, ...], what: str) -> None:
    if value is not None and not isinstance(value, kinds):
        raise UsageError(f"{name} must be {what} or None, not {type(value).__name__}")


# Control characters would end the header line (aiohttp refuses them at send time).
_HEADER_UNSAFE = re.compile(r"[\x00-\x1f\x7f]")


def _header_text(name: str, value: str, *, secret: bool = False) -> None:
    """A value that goes into an HTTP header: no control characters, valid Unicode."""
    shown = "" if secret else f": {show_value_masked(value)}"
    if _HEADER_UNSAFE.search(value):
        raise UsageError(f"{name} must not contain control characters or line breaks{shown}")
    if not is_text(value):
        raise UsageError(f"{name} is not valid Unicode text (a lone surrogate){shown}")


def _base_url_check(base_url: str) -> None:
    """A URL aiohttp can post to, with no credentials of its own."""
    shown = show_value_masked(base_url)
    if _HEADER_UNSAFE.search(base_url) or " " in base_url:
        raise UsageError(f"base_url must not contain spaces or control characters: {shown}")
    try:
        parts = urlsplit(base_url)
        parts.port  # noqa: B018 - raises ValueError for a port that is no port
    except ValueError as exc:
        raise UsageError(f"base_url is not a URL ({exc}): {shown}") from None
    if not parts.hostname:
        raise UsageError(f"base_url has no host: {shown}")
    if parts.username is not None or parts.password is not None:
        # aiohttp would send them as a second Authorization: relaycall's is the one.
        raise UsageError(
            f"base_url must not contain user:password@ (relaycall authenticates with "
            f"project_id and token): {shown}"
        )


def _resolve_url(space: str | None, base_url: str | None) -> str:
    if base_url is not None:
        base = base_url.rstrip("/")
        if not re.match(r"https?://", base_url):
            raise UsageError(
                f"base_url must start with http:// or https://, not {show_value_masked(base_url)}"
            )
        _base_url_check(base_url)
        return base if base.endswith(API_PATH) else base + API_PATH
    if space is None:
        raise UsageError(
            "relaycall needs a space: pass space='example' (or 'example.signalwire.com'), "
            "set SIGNALWIRE_SPACE, or pass base_url= for a local server"
        )
    host = re.sub(r"^https?://", "", space.strip()).rstrip("/")
    name = host.removesuffix(".signalwire.com")
    if not _SPACE.fullmatch(name):
        raise UsageError(
            f"space {show_value_masked(space)} is not a space name; give 'example' or "
            "'example.signalwire.com'"
        )
    return f"https://{name}.signalwire.com{API_PATH}"


class AsyncRelay:
    """
    A session with the SignalWire Calling API.

    Example::

        async with AsyncRelay("project-id", "api-token", "example") as relay:
            leg = await relay.send(commands.End(call_id=call_id, reason="hangup"))

    Construction does no I/O. ``async with`` (or the first command) opens the
    HTTP session; :meth:`close` releases it. Credentials fall back to
    ``SIGNALWIRE_PROJECT_ID``, ``SIGNALWIRE_API_TOKEN`` and ``SIGNALWIRE_SPACE``.

    Args:
        project_id: The project id (Basic auth user).
        token: The API token (Basic auth password); it needs the Voice scope.
            It never appears in ``repr``, logs or exception text.
        space: ``example`` or ``example.signalwire.com``.
        base_url: Overrides *space*, e.g. ``http://127.0.0.1:8080`` for the
            emulator or a test server.
        session: An ``aiohttp.ClientSession`` to use; relaycall will not close it.
            Every command then goes through it, so relaycall's guard against
            stale keep-alive connections (:attr:`Limits.unsafe_keepalive`)
            is yours to keep: give its connector a ``keepalive_timeout``
            below the server's, or an unanswered ``dial`` on a connection
            the server was closing raises AmbiguousOutcomeError.
        timeout: Per-attempt :class:`Timeout` (or seconds).
        retry: The :class:`RetryPolicy`; None sends each command once.
        limits: Pool size, in-flight and per-second caps (:class:`Limits`).
        user_agent: Appended to relaycall's own ``User-Agent``.
        events: An :class:`EventReceiver` that routes status callbacks to this
            session's handles, kept as :attr:`receiver`. With its *public_url*
            set, commands that take a ``status_url`` get one pointing at it
            unless you give your own.
        probe_quiet_calls_after: While something waits on a call (``wait()``,
            ``wait_for()``, ``events()``, an operation's ``wait()``) and
            nothing has been heard of it for this many seconds, ask the
            server whether it still exists, with a request that leaves a
            live call as it is (``calling.user_event``, event
            ``{"type": "relaycall.probe"}``). A 404 ends it here with reason
            ``gone``, so a wait finishes even when the platform drops the
            call's ``ended`` callback (callbacks are best-effort). None:
            never probe. See ``relaycall/_probe.py`` for the choice.
    """

    def __init__(
        self,
        project_id: str | None = None,
        token: str | None = None,
        space: str | None = None,
        *,
        base_url: str | None = None,
        session: aiohttp.ClientSession | None = None,
        timeout: Timeout | float | timedelta | None = None,
        retry: RetryPolicy | _Default | None = USE_DEFAULT,
        limits: Limits | None = None,
        user_agent: str | None = None,
        events: EventReceiver | None = None,
        probe_quiet_calls_after: float | timedelta | None = 5.0,
        coordinator: RedisCoordinator | None = None,
    ) -> None:
        _check_arguments(locals())
        project_id = project_id or os.environ.get("SIGNALWIRE_PROJECT_ID")
        # Held masked from here on: if this constructor raises, a traceback with
        # captured locals shows '<redacted>', not the token.
        token = MaskedStr(token or os.environ.get("SIGNALWIRE_API_TOKEN") or "") or None
        if base_url is None and space is None:
            # A URL in either variable points the session at a local server (the
            # emulator) without editing code: SIGNALWIRE_BASE_URL wins, and a
            # SIGNALWIRE_SPACE that is a URL is taken as one.
            base_url = os.environ.get("SIGNALWIRE_BASE_URL") or None
            space = os.environ.get("SIGNALWIRE_SPACE") or None
            if base_url is None and space is not None and "://" in space:
                base_url, space = space, None
        missing = [
            what
            for what, value in (
                ("project_id (or SIGNALWIRE_PROJECT_ID)", project_id),
                ("token (or SIGNALWIRE_API_TOKEN)", token),
            )
            if not value
        ]
        if missing:
            raise UsageError("relaycall needs credentials: missing " + " and ".join(missing))
        assert project_id is not None
        assert token is not None
        if ":" in project_id:
            raise UsageError("project_id cannot contain ':' (it is the Basic auth user name)")
        _header_text("project_id", project_id)
        _header_text("token", token, secret=True)
        if user_agent:
            _header_text("user_agent", user_agent)
        self._url = _resolve_url(space, base_url)
        self.project_id = project_id
        ua = (
            f"relaycall/{__version__} aiohttp/{aiohttp.__version__} "
            f"python/{platform.python_version()}"
        )
        if user_agent:
            ua = f"{ua} {user_agent}"
        headers = {
            # Only the encoded header is kept, so the token itself is in no
            # attribute; its repr is masked, so no traceback, log of the headers
            # or debugger shows it. aiohttp sends the str as it is.
            "Authorization": MaskedStr(
                "Basic " + base64.b64encode(f"{project_id}:{token}".encode()).decode("ascii")
            ),
            "Content-Type": "application/json",
            "Accept": "application/json",
            "User-Agent": ua,
            # Which attempt this is, so a server (or its logs) can tell a retry apart.
            "Relaycall-Attempt": "1",
        }
        self._transport = _transport.Transport(
            self._url,
            headers,
            Timeout() if timeout is None else Timeout.of(timeout),
            limits or Limits(),
            session,
        )
        self._retry = RetryPolicy() if retry is USE_DEFAULT else (retry or RetryPolicy.disabled())
        try:
            probe_after = _seconds(probe_quiet_calls_after)
        except UsageError:
            raise UsageError(
                "probe_quiet_calls_after must be a positive number of seconds, a timedelta "
                f"or None, not {probe_quiet_calls_after!r}"
            ) from None
        self._quiet = QuietCalls(self, probe_after) if probe_after is not None else None
        # What Call._publish stamps on every callback; empty while nobody waits.
        self._last_heard: dict[Call, float] = self._quiet.heard if self._quiet is not None else {}
        self._state = _State.UNOPENED
        # The calls and dials status callbacks can reach (relaycall/_routing.py).
        self._router = Router()
        self._router.session = self
        #: The :class:`EventReceiver` given as *events*, if any.
        self.receiver = events
        if events is not None:
            events._bind(self._router)
        #: The :class:`RedisCoordinator` given as *coordinator*, if any.
        self.coordinator = coordinator
        if coordinator is not None:
            if events is None:
                raise UsageError(
                    "coordinator= needs events=: an EventReceiver, whose callbacks it "
                    "forwards between workers"
                )
            coordinator._attach(self._router, events)
            self._router.coordinator = coordinator
            self._transport.share_limits(coordinator, self.project_id)

    # --- lifecycle ------------------------------------------------------------------

    @property
    def url(self) -> str:
        """The endpoint commands are posted to."""
        return self._url

    @property
    def closed(self) -> bool:
        return self._state is _State.CLOSED

    def __repr__(self) -> str:
        return f"<AsyncRelay project_id={self.project_id!r} url={self._url!r} {self._state.value}>"

    async def __aenter__(self) -> AsyncRelay:
        self._ensure_open()
        if self.coordinator is not None:
            await self.coordinator.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    def _ensure_open(self) -> None:
        if self._state is _OPEN:
            return
        if self._state is _CLOSED:
            raise ClientClosedError("this AsyncRelay is closed; create a new one")
        self._transport.open()
        self._state = _OPEN

    async def close(self) -> None:
        """
        Release the HTTP session (unless it was given by the caller). Idempotent.

        Every pending ``wait()`` resolves with reason ``session_closed``, every
        ``events()`` iteration ends, and a pending ``wait_for()`` raises
        ClientClosedError; so do those started afterwards, at once.
        """
        if self._state is _State.CLOSED:
            return
        self._state = _State.CLOSED
        # From here on every send raises ClientClosedError, and so does every
        # request the closing below aborts.
        self._transport.closed = True
        self._router.close()
        if self.coordinator is not None:
            await self.coordinator.stop()
        if self._quiet is not None:
            await self._quiet.close()
        await self._transport.close()

    def _watch(self, call: Call, timeout: float | None, what: str) -> bool:
        """
        Somebody is about to wait on *call* (or one of its operations) for *what*.

        False if the session is closed (the wait must answer at once). Raises
        UsageError for a wait without a timeout that nothing could ever end:
        with no EventReceiver, no callback reaches this session.
        """
        if self._state is _CLOSED:
            return False
        if self.receiver is None and timeout is None:
            raise UsageError(
                f"{what} would wait without end: this AsyncRelay has no EventReceiver "
                "(AsyncRelay(events=...)), so no status callback can reach it. Give a "
                "timeout= to wait anyway (for this process's own end() or stop()), or "
                "configure a receiver"
            )
        if self._quiet is not None:
            self._quiet.watch(call)
        return True

    # --- handles ------------------------------------------------------------------------

    def call(self, call_id: str) -> Call:
        """
        Return the :class:`Call` handle for *call_id*, without any request.

        For an inbound call or one placed by another process. The same id
        gives the same handle while it is in use here.
        """
        try:
            existing = self._router.get(call_id)
        except TypeError:  # unhashable (a list): no id, as uuid_check says next
            existing = None
        if existing is not None:
            return existing
        uuid_check("call.call_id", call_id)
        call = Call(self, call_id)
        self._router.add(call)
        return call

    def _adopt(self, leg: Mapping[str, Any]) -> Call:
        """The Call for a dial's reply (already checked: its id is a string)."""
        call_id: str = leg["id"]
        call = self._router.get(call_id)
        if call is None:
            call = Call(self, call_id, "queued")
            self._router.add(call)
        call._observe_leg(leg)
        return call

    def dial(
        self,
        *,
        from_: str,
        to: str | None = None,
        url: str | None = None,
        swml: Mapping[str, Any] | None = None,
        to_script: str | Mapping[str, Any] | None = None,
        caller_id: str | None = None,
        status_url: str | None = None,
        status_events: Sequence[Literal["created", "ringing", "answered", "ended"]] | None = None,
        timeout: int | None = None,
        username: str | None = None,
        password: str | None = None,
        fallback_url: str | None = None,
        url_method: Literal["GET", "POST"] | None = None,
        codecs: Sequence[str] | str | None = None,
        max_price_per_minute: float | None = None,
        send_digits: str | None = None,
        region: str | Sequence[str] | None = None,
        custom_variables: Mapping[str, str] | None = None,
    ) -> Starting[Call]:
        """
        Place an outbound call and return its :class:`Call` once the server accepts it.

        Give *url* (where SWML is fetched) or *swml* (an inline document), and
        *to* unless *to_script* is given. Await it, or use ``async with`` to
        hang up when the block exits. A ``dial`` whose outcome is unknown is
        never re-sent: see :class:`relaycall.AmbiguousOutcomeError`.

        Example::

            call = await relay.dial(from_="+15551230000", to="+15557650000", url=swml_url)
        """
        cmd = Dial(
            from_=from_, to=to, url=url, swml=swml, to_script=to_script, caller_id=caller_id,
            status_url=status_url, status_events=status_events, timeout=timeout,
            username=username, password=password, fallback_url=fallback_url,
            url_method=url_method, codecs=codecs, max_price_per_minute=max_price_per_minute,
            send_digits=send_digits, region=region, custom_variables=custom_variables,
        )  # fmt: skip
        return Starting(self._dial(cmd))

    async def _dial(self, cmd: Dial) -> Call:
        tokened = self._with_dial_token(cmd)
        if tokened is None:
            try:
                return self._adopt(await self._send_dial(cmd))
            except AmbiguousOutcomeError as exc:
                raise AmbiguousOutcomeError(
                    exc.command, exc.body, exc.cause, hint=_NO_RECONCILE
                ).with_traceback(exc.__traceback__) from exc.cause
        cmd, nonce = tokened
        pending = self._router.open_dial(nonce)
        coordinator = self.coordinator
        if coordinator is not None:
            # Before it is sent: a callback beating the reply to another worker finds us.
            await coordinator.claim_dial(nonce)
        try:
            try:
                leg = await self._send_dial(cmd, pending)
            except _AlreadyProcessed as exc:
                # A re-send after 429/503 was about to go out, but the first
                # attempt's callbacks had arrived: it was processed.
                return self._bind_held(nonce, pending, None, cmd, exc)
            except RelayError as exc:
                # Ambiguous (dropped, 5xx, read timeout), or a failure after a
                # re-send went out: an attempt may have placed the call, and its
                # own callbacks say whether one did. Wait a little for one.
                if (
                    self._state is _CLOSED
                    or not (isinstance(exc, AmbiguousOutcomeError) or exc.retries_taken)
                    or not await pending.heard_within(self._retry.ambiguous_grace)
                ):
                    if self._state is _CLOSED:
                        raise ClientClosedError("dial: the AsyncRelay was closed") from exc
                    raise
                logger.info("dial failed (%s), but its callbacks show it placed a call", exc)
                return self._bind_held(nonce, pending, None, cmd, exc)
            return self._bind_held(nonce, pending, leg, cmd)
        finally:
            self._router.close_dial(nonce)
            if coordinator is not None:
                coordinator.dial_done(nonce)

    def _bind_held(
        self,
        nonce: str,
        pending: PendingDial,
        leg: Mapping[str, Any] | None,
        cmd: Dial,
        failure: RelayError | None = None,
    ) -> Call:
        """
        The Call a dial placed, from its reply's leg or else from its callbacks.

        Callbacks that beat the reply were held; they are applied now, in the
        order they came, before anything else can reach the call (no await
        between binding and applying). Without a reply, the call is the one a
        held call-state callback names, its leg built from what the callback
        carries.
        """
        if leg is None:
            assert failure is not None
            leg = _leg_from_callbacks(pending.events, cmd)
            if self._router.bound_elsewhere(leg["id"], nonce):
                # Another dial's call: a forged callback cannot rebind it.
                raise AmbiguousOutcomeError("dial", cmd.to_wire(), failure, hint=_FORGED)
        call = self._adopt(leg)
        self._router.bind_dial(call, nonce, pending)
        return call

    def __del__(self, _warn: Callable[..., None] = warnings.warn) -> None:
        if getattr(self, "_state", None) is _State.OPEN and self._transport.unclosed:
            _warn(
                f"unclosed {self!r}: use 'async with AsyncRelay(...)' or 'await relay.close()'",
                ResourceWarning,
                source=self,
                stacklevel=2,
            )

    # --- sending ----------------------------------------------------------------------

    async def send(
        self,
        command: Command[R],
        *,
        timeout: Timeout | float | timedelta | _Default | None = USE_DEFAULT,
        retry: RetryPolicy | _Default | None = USE_DEFAULT,
    ) -> R:
        """
        Send a typed command and return its parsed reply (a call leg for most commands).

        Args:
            command: Any command from :mod:`relaycall.commands`.
            timeout: Per-attempt timeout for this command; None disables it.
            retry: Retry policy for this command; None sends it once.

        Raises:
            APIStatusError: The server refused it (a subclass per status).
            TransportError: It could not be delivered (after retries).
            AmbiguousOutcomeError: A non-idempotent command may or may not have run.
            ResponseValidationError: The 2xx reply was not what the API declares.
        """
        if not isinstance(command, Command):
            raise UsageError(
                "send() takes a command from relaycall.commands, not " + show_value_masked(command)
            )
        name = command.command_name
        nonce = None
        if isinstance(command, Dial):
            tokened = self._with_dial_token(command)
            if tokened is not None:
                # Kept for the call the reply names: relay.call(id) then takes its callbacks.
                command, nonce = tokened  # type: ignore[assignment]
        elif command._receiver_status_url and self.receiver is not None:
            command = self._with_status_url(command)
        wire, idempotency = command.to_wire(), command.idempotency
        parse = type(command)._parse_reply
        result: R = await self._request(name, wire, idempotency, timeout, retry, parse)
        if nonce is not None:
            call_id = getattr(result, "id", None)
            if isinstance(call_id, str):
                self._router.dialed(call_id, nonce)
        return result

    def _send_leg(
        self, command: Command[Any], watch: Any = None
    ) -> Coroutine[Any, Any, Mapping[str, Any]]:
        """
        What the handles send through: :meth:`send` for a command answered with a call leg.

        The reply body is checked only for what a handle acts on
        (:func:`check_leg`) and kept as it is; the handle reads the whole leg
        when ``call.leg`` is asked for. Most commands' replies are never read,
        and building a CallLeg for each was a measurable share of a command's
        cost. A plain function returning the request's coroutine: one
        coroutine less per command.
        """
        if command._receiver_status_url and self.receiver is not None:
            command = self._with_status_url(command, watch)
        return self._request(
            command.command_name, command.to_wire(), command.idempotency, USE_DEFAULT,
            USE_DEFAULT, check_leg, watch,
        )  # fmt: skip

    def _send_dial(
        self, cmd: Dial, pending: PendingDial | None = None
    ) -> Coroutine[Any, Any, Mapping[str, Any]]:
        """Send a dial whose status_url is settled (its token written, the caller's, or none)."""
        return self._request(
            "dial", cmd.to_wire(), cmd.idempotency, USE_DEFAULT, USE_DEFAULT, check_leg, pending
        )

    def _with_dial_token(self, cmd: Dial) -> tuple[Dial, str] | None:
        """
        *cmd* with a status_url carrying a fresh dial token, asking for every call state,
        and the token's nonce; None when the receiver writes no URL or *cmd* has its own.
        """
        receiver = self.receiver
        if receiver is None or receiver.public_url is None or cmd.status_url is not None:
            return None
        url, nonce = receiver.dial_status_url()
        events: list[Any] = list(cmd.status_events or _ALL_CALL_EVENTS)
        return attrs.evolve(cmd, status_url=url, status_events=events), nonce

    def _with_status_url(self, command: Command[R], watch: Any = None) -> Command[R]:
        """
        Point an unset status_url of a command on a call at the receiver.

        An operation started with a handle (*watch*) gets a URL bound to that
        start of it; other commands one bound to their call. (A dial gets its
        token from :meth:`_with_dial_token`, before it is sent.)
        """
        receiver = self.receiver
        if receiver is None or receiver.public_url is None:
            return command
        if getattr(command, "status_url", None) is not None:
            return command
        call_id: str = command.call_id  # type: ignore[attr-defined]
        if watch is None:
            url = receiver.status_url(call_id)
        else:
            # Named where its URL is written: the token binds this one start.
            generation = watch._generation = secrets.token_urlsafe(6)
            url = receiver._operation_status_url(call_id, generation)
        updated: Command[R] = attrs.evolve(command, status_url=url)  # type: ignore[misc]
        return updated

    # --- recordings -------------------------------------------------------------------

    async def download_recording(
        self,
        recording: RecordingResult | str,
        path: str | os.PathLike[str],
        *,
        max_bytes: int | None = _download.DEFAULT_MAX_BYTES,
        timeout: Timeout | float | timedelta | _Default | None = USE_DEFAULT,
        retry: RetryPolicy | _Default | None = USE_DEFAULT,
    ) -> int:
        """
        Download a recording's audio to the file *path*; return its size in bytes.

        Example::

            result = await rec.wait()
            size = await relay.download_recording(result, "voicemail.wav")

        The file appears only complete: the audio goes to a temporary file
        beside *path* (``.NAME.*.part``, readable by its owner only), which
        replaces *path* once the whole body is in, and is deleted on any
        failure. Failures the retry policy calls transient (connect errors,
        5xx, 429/503 after their ``Retry-After``, a connection dropped
        mid-body) are retried from the start, through the session's
        :class:`RetryPolicy` (or *retry*).

        The session's credentials are sent only to the API's own origin
        (the scheme, host and port of ``base_url``, or the space's); a URL
        or a redirect elsewhere is fetched without them. Only http(s) URLs
        are fetched.

        Args:
            recording: A :class:`RecordingResult` (its ``url``) or a URL.
            path: The file to write (its directory must exist); replaced if
                it exists.
            max_bytes: Refuse a recording larger than this (None: no limit),
                by its ``Content-Length`` before reading, else while reading.
            timeout: Per attempt, as for commands; the *total* bound covers
                the whole body, so give a longer one for long recordings.
            retry: The retry policy for this download.

        Raises:
            RecordingTooLargeError: Over *max_bytes*.
            APIStatusError: An error status (NotFoundError for 404...), once
                retries are over for those that are retried.
            TransportError: The network failed, once retries are over.
            UsageError: A result without a URL, a URL that is not http(s),
                a *path* whose directory does not exist.
        """
        fetch = self._fetch(recording, max_bytes, timeout, retry)
        return await fetch.download(_download.check_path(path))

    def stream_recording(
        self,
        recording: RecordingResult | str,
        *,
        max_bytes: int | None = _download.DEFAULT_MAX_BYTES,
        timeout: Timeout | float | timedelta | _Default | None = USE_DEFAULT,
        retry: RetryPolicy | _Default | None = USE_DEFAULT,
    ) -> AsyncIterator[bytes]:
        """
        The recording's audio as it arrives: ``async for chunk in relay.stream_recording(...)``.

        As :meth:`download_recording` (credentials, redirects, *max_bytes*,
        *timeout*, *retry*), except that only the request is retried: once
        the body has begun, a failure is raised. Chunks are at most 64 KiB;
        no more than *max_bytes* is ever handed out (the chunk that would
        cross it raises :class:`RecordingTooLargeError` instead).
        Arguments are checked at the call, before iterating. To stop early,
        close the iterator (``contextlib.aclosing``) so that the connection
        is released at once.
        """
        return self._fetch(recording, max_bytes, timeout, retry).stream()

    def _fetch(
        self,
        recording: object,
        max_bytes: object,
        timeout: Timeout | float | timedelta | _Default | None,
        retry: RetryPolicy | _Default | None,
    ) -> _download.Fetch:
        url = _download.recording_url(recording)
        _download.check_max_bytes(max_bytes)
        assert max_bytes is None or isinstance(max_bytes, int)
        _check_kind("retry", retry, (RetryPolicy, _Default), "a RetryPolicy")
        transport = self._transport
        client = (
            transport._client_timeout
            if isinstance(timeout, _Default)
            else _transport.client_timeout(Timeout.of(timeout))
        )
        self._ensure_open()
        assert transport.session is not None  # opened by _ensure_open
        return _download.Fetch(
            url,
            transport.session,
            self._url,
            transport.headers,
            client,
            self._retry if isinstance(retry, _Default) else (retry or RetryPolicy.disabled()),
            max_bytes,
            lambda: transport.closed,
        )

    async def execute(
        self,
        command: str,
        *,
        call_id: str | None = None,
        params: Mapping[str, Any] | None = None,
        idempotent: bool | None = None,
        timeout: Timeout | float | timedelta | _Default | None = USE_DEFAULT,
        retry: RetryPolicy | _Default | None = USE_DEFAULT,
    ) -> RawResponse:
        """
        Send any command by name, for commands relaycall does not type yet.

        Nothing is validated but JSON-ness. *idempotent* tells the retry policy
        whether a repeat is harmless; by default a known command keeps its own
        class and an unknown one is treated as unsafe (re-sent only when it
        provably was not processed).

        Returns the status, headers, parsed body and retries taken. Error
        statuses raise as in :meth:`send`.
        """
        if not isinstance(command, str) or not command:
            raise ValidationError("execute.command", command, "must be a non-empty string")
        text_check("execute.command", command)
        if call_id is not None and not isinstance(call_id, str):
            raise ValidationError("execute.call_id", call_id, "must be a string or None")
        if params is not None and not isinstance(params, Mapping):
            raise ValidationError(
                "execute.params", params, "must be a dict (a JSON object) or None"
            )
        if idempotent is not None and not isinstance(idempotent, bool):
            raise ValidationError("execute.idempotent", idempotent, "must be True, False or None")
        _check_kind("retry", retry, (RetryPolicy, _Default), "a RetryPolicy")
        body: dict[str, Any] = _Untyped(command=command)
        if call_id is not None:
            body["id"] = call_id
        body["params"] = dict(params or {})
        # The caller's dict: this frame holds it while it awaits the reply, and a
        # traceback's captured locals would show a secret in it. The body is
        # masked when it is encoded.
        del params
        if idempotent is None:
            known = command_class(command)
            idem = known._idempotency if known is not None else Idempotency.UNSAFE
        else:
            idem = Idempotency.SAFE if idempotent else Idempotency.UNSAFE
        reply: _transport.Reply = await self._request(command, body, idem, timeout, retry, None)
        return RawResponse(
            status=reply.status,
            headers=dict(reply.headers),
            body=reply.body,
            retries_taken=reply.retries,
        )

    def _request(  # noqa: PLR0917 - private; positional on the hot path
        self,
        name: str,
        body: Mapping[str, Any],
        idempotency: Idempotency,
        timeout: Timeout | float | timedelta | _Default | None,
        retry: RetryPolicy | _Default | None,
        parse: Callable[[Any], Any] | None,
        watch: Any = None,
    ) -> Coroutine[Any, Any, Any]:
        """
        Encode *body* and return the coroutine that sends it (and retries it if needed).

        *watch* is the handle (or pending dial) the command starts: before a
        re-send, its callbacks are checked, and an attempt they show was
        processed is not sent again.
        """
        self._ensure_open()
        data = _encode(body, name)
        policy = self._retry if retry is USE_DEFAULT else (retry or RetryPolicy.disabled())
        # Only a command that must not be sent twice can end in AmbiguousOutcomeError, the
        # one reader of the body sent; the others' dicts are dropped once encoded. Held
        # across the await, the dicts of thousands of commands in flight made the cyclic
        # collector run more often (benchmarks/RESULTS.md, "Fifth round").
        held = body if idempotency is _UNSAFE else None
        return self._transport.send(name, data, held, idempotency, policy, parse, watch, timeout)


_NO_RECONCILE = (
    " With an EventReceiver that has a public_url, relaycall reconciles this itself: the"
    " dial's own callbacks show whether it was placed (RetryPolicy.ambiguous_grace)."
)


_FORGED = (
    " A callback with this dial's token named a call that another dial placed: it was"
    " not taken as proof (a forged callback cannot rebind a call)."
)


def _leg_from_callbacks(events: Sequence[Any], cmd: Dial) -> dict[str, Any]:
    """
    A call leg from what a dial's held callbacks carry: id, state, direction, numbers.

    A call-state callback is preferred (it is what a dial's status_url gets);
    the dial's own from and to fill in what the callback leaves out.
    """
    states = [e for e in events if e.params.get("call_state") is not None]
    event = (states or events)[-1]
    params = event.params
    device = params.get("device")
    numbers = device.get("params") if isinstance(device, Mapping) else None
    numbers = numbers if isinstance(numbers, Mapping) else {}
    leg: dict[str, Any] = {
        "id": event.call_id,
        "from": numbers.get("from_number") or cmd.from_,
        "to": numbers.get("to_number") or cmd.to,
    }
    if isinstance(params.get("call_state"), str):
        leg["status"] = params["call_state"]
    if isinstance(params.get("direction"), str):
        leg["direction"] = params["direction"]
    return {k: v for k, v in leg.items() if isinstance(v, str)}


def command_class(name: str) -> type[Command[Any]] | None:
    """The typed command class for a wire command name, if relaycall has one."""
    # The class of a command built here is registered already (its module is imported):
    # the complete registry, which imports the AI commands, is asked only for other names.
    cls = REGISTRY.get(name)
    if cls is None:
        from relaycall.commands import BY_NAME  # noqa: PLC0415 - imports every command

        cls = BY_NAME.get(name)
    return cls
