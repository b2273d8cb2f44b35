"""
EventReceiver: takes status callbacks over HTTP, checks them, and hands them to the session.

The checks run in order, size and signature (when a signing key is set) on
the raw bytes before anything is parsed: then JSON (bounded depth, standard
numbers), then shape, then the URL token relaycall put in every status_url
it generated, checked against the route the session's :class:`Router` finds
for the callback, then the timestamp window (docs/security.md). The Router
delivers it to its handle (relaycall/_routing.py). Nothing the user
registered runs inside the request: callbacks are scheduled, so a slow one
cannot delay the 200.
"""

from __future__ import annotations

import asyncio
import binascii
import enum
import hashlib
import hmac
import json
import logging
import re
import secrets
import time
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import parse_qs, urlsplit

import attrs
from aiohttp import HttpVersion11, web

from relaycall._coordinator import CoordinatorUnavailable
from relaycall._events import Event, parse_event
from relaycall._handles._base import _run_callback, scheduled_callbacks
from relaycall._incoming import (
    DEFAULT_DOCUMENT,
    FALLBACK_DOCUMENT,
    FetchShapeError,
    IncomingCall,
    document_of,
    read_fetch,
)
from relaycall._routing import (
    CALL_DUPLICATE,
    DUPLICATE,
    NOWHERE,
    ROUTED,
    UNKNOWN_CALL,
    UNKNOWN_OPERATION,
    Outcome,
    Route,
    Router,
)
from relaycall._signature import (
    aiohttp_url,
    asgi_url,
    length_over,
    signature_matches,
    signing_key_bytes,
)
from relaycall._transport import utf8_object
from relaycall._validate import fail, http_url_check, is_number
from relaycall.errors import EventParseError, UsageError, ValidationError, show_value_masked

if TYPE_CHECKING:
    from relaycall._handles._base import Handle

__all__ = ["EventReceiver", "ReceiverStats"]

logger = logging.getLogger("relaycall.events")

#: An ``on_incoming_call`` handler: ``async def handler(call) -> SWML | Mapping | None``.
IncomingHandler = TypeVar(
    "IncomingHandler", bound=Callable[[IncomingCall], Coroutine[Any, Any, Any]]
)


@attrs.define
class ReceiverStats:
    """Counters of what the receiver has seen since it started."""

    received: int = 0
    routed: int = 0
    #: Valid callbacks for calls this process does not hold (acknowledged, not raised).
    unknown_call: int = 0
    #: Valid callbacks for a known call but an operation this process does not hold.
    #: A finished operation leaves the registry, so its late or repeated callbacks
    #: are counted here.
    unknown_operation: int = 0
    #: Events for a handle still held but already final (a repeated ``ended`` for a
    #: call, say): acknowledged, changing nothing.
    duplicate: int = 0
    #: Callbacks that beat their dial's reply: held, then applied in order once
    #: the reply names the call (counted again as routed then).
    held: int = 0
    #: Authentic callbacks issued for an earlier start of an operation (a replay,
    #: or a control_id used again): acknowledged, changing nothing.
    stale: int = 0
    rejected_auth: int = 0
    rejected_body: int = 0
    #: Authentic callbacks refused (403) for a ``timestamp`` older than
    #: ``max_clock_skew``: a replay, or a retry after a long outage.
    rejected_timestamp: int = 0
    #: Connections closed for not sending a request head within ``header_timeout``,
    #: and requests answered 408 for not sending their body within ``body_timeout``.
    rejected_slow: int = 0
    #: Connections closed or refused (503) at ``max_connections`` (standalone server).
    rejected_busy: int = 0
    #: Callbacks whose handling raised inside relaycall (a bug, logged at error
    #: level): answered 400, never 500.
    failed: int = 0
    #: SWML fetches (``swml_url``) answered with the handler's document (or the
    #: default one, for a handler returning None).
    incoming_calls: int = 0
    #: SWML fetches answered with the fallback document: no handler, no
    #: AsyncRelay bound, a handler that raised, ran over its time budget or
    #: returned an invalid document (each logged at error level with the call id).
    fallbacks: int = 0
    #: Authentic callbacks for a call another worker owns, appended to its inbox
    #: in Redis (a :class:`relaycall.RedisCoordinator` is configured) and answered 200.
    forwarded: int = 0
    #: Callbacks another worker forwarded to this one (then counted as routed,
    #: duplicate, held... as if they had arrived here).
    received_forwarded: int = 0
    #: Authentic callbacks for a call no live worker owns (its owner died, or
    #: stopped, or it never was owned): handed to ``on_orphan_event`` (logged at
    #: warning level when no hook is registered).
    orphaned: int = 0
    #: Callbacks that could not be forwarded because Redis was unreachable:
    #: answered 503, so the platform sends them again.
    forward_failed: int = 0
    #: Redis operations of the coordinator that failed (forwards, renewals,
    #: reads of the inbox); the first of an outage is logged.
    coordinator_errors: int = 0


class EventReceiver:
    """
    Receive status callbacks and route them to handles.

    Attach it to a session: ``AsyncRelay(..., events=receiver)``. With a
    *public_url*, every command that takes a ``status_url`` gets one pointing
    here, carrying an unguessable token; callbacks without a token this
    receiver issued are refused (403) even where the platform does not sign.

    Route it in an aiohttp, FastAPI or Starlette app (:meth:`add_to_app`),
    mount it in FastAPI or Starlette (``app.mount(path, receiver.asgi_app())``),
    or run it on its own (:meth:`start` / ``async with receiver.serve(...)``).

    Every status_url it writes has its path ending in ``/``
    (``https://app.example.com/relaycall/events/?t=...``), whichever way
    *public_url* was written: that is the one form a Starlette mount matches,
    and :meth:`add_to_app` and :meth:`start` route both forms.

    Example::

        receiver = EventReceiver(public_url="https://app.example.com/relaycall/events",
                                 signing_key=os.environ["SIGNALWIRE_SIGNING_KEY"])
        async with AsyncRelay(events=receiver) as relay, receiver.serve(port=8080):
            call = await relay.dial(...)
            await call.wait_for("answered")

    Args:
        public_url: The full URL the platform reaches this receiver at (its
            path included, a trailing ``/`` optional). Without it no status_url
            is filled in; it is set by :meth:`start` when unset.
        path: Where the handler is served locally (default: *public_url*'s
            path), kept ending in ``/`` like the status_urls. Behind a proxy
            or a server ``root_path`` that strips a prefix, give the path
            inside the app.
        signing_key: The project's signing key. When set, callbacks must carry
            a valid ``X-SignalWire-Signature`` (and ``X-SignalWire-SHA256-Signature``
            is checked too when present).
        require_token: Refuse callbacks without a token from this receiver.
        max_body_size: Larger bodies are refused (400).
        signature_url: Maps the URL a request arrived at to the URL the
            platform signed; default: *public_url* plus the request's query
            string, which is right behind a proxy that rewrites host or path.
        secret: Key for the URL tokens (random per receiver by default; give
            one to let several processes accept each other's tokens, and to
            keep :attr:`swml_url` the same across restarts: a number's
            configured SWML webhook must not change).
        max_clock_skew: Callbacks whose ``timestamp`` is more than this many
            seconds in the past are refused (403), so that a captured callback
            cannot be replayed later; None turns the check off. Callbacks
            without a timestamp are not checked (docs/security.md).
        header_timeout: The standalone server (:meth:`start`) closes a
            connection that has not sent a complete request head this many
            seconds after it opened or after its previous request.
        body_timeout: A request whose body has not fully arrived this many
            seconds after its head is answered 408 (every adapter).
        max_connections: The standalone server keeps at most this many
            connections open; past it, a new one displaces the oldest still
            waiting for its request head, or is refused (503) when none is.
        incoming_call_timeout: Seconds the ``on_incoming_call`` handler has
            to return its SWML document; past them the fetch is answered with
            *fallback_swml*. The platform waits about 5 s for a document
            (docs/inbound.md), network time included.
        fallback_swml: The document served when the app cannot give one
            (default: ``hangup``, which ends the call rather than leave the
            caller in silence). A dict, or a ``relaycall.swml`` builder.
    """

    def __init__(
        self,
        *,
        public_url: str | None = None,
        path: str | None = None,
        signing_key: str | None = None,
        require_token: bool = True,
        max_body_size: int = 256 * 1024,
        signature_url: Callable[[str], str] | None = None,
        secret: bytes | None = None,
        max_clock_skew: float | None = 300.0,
        header_timeout: float = 10.0,
        body_timeout: float = 10.0,
        max_connections: int = 256,
        incoming_call_timeout: float = 2.0,
        fallback_swml: Any = None,
    ) -> None:
        _check_arguments(locals())
        self.public_url = public_url  # checked by the setter
        self.path = _with_slash(
            path or (urlsplit(public_url).path if public_url else "") or "/relaycall/events"
        )
        self._signing_key = signing_key_bytes(signing_key) if signing_key else None
        self.require_token = require_token
        self.max_body_size = max_body_size
        self._signature_url = signature_url
        self._secret = secret or secrets.token_bytes(32)
        # HMAC-SHA256 keyed once: copying it costs less than keying one per token.
        self._keyed = _keyed_hmac(self._secret)
        self.stats = ReceiverStats()
        self._router: Router | None = None
        self._listeners: list[Callable[[Event], Any]] = []
        self._orphan_hooks: list[Callable[[Event], Any]] = []
        _check_bounds(max_clock_skew, header_timeout, body_timeout, max_connections)
        self.max_clock_skew = max_clock_skew
        self.header_timeout = header_timeout
        self.body_timeout = body_timeout
        self.max_connections = max_connections
        self._runner: web.AppRunner | None = None
        self._connections: _Connections | None = None
        self._asgi_app: _ASGIApp | None = None
        if not (is_number(incoming_call_timeout) and incoming_call_timeout > 0):
            raise UsageError(
                "incoming_call_timeout must be a finite number of seconds > 0, not "
                f"{show_value_masked(incoming_call_timeout)}"
            )
        self.incoming_call_timeout = float(incoming_call_timeout)
        fallback = FALLBACK_DOCUMENT if fallback_swml is None else document_of(fallback_swml)
        try:
            _validate_document("fallback_swml", fallback)
        except ValidationError as exc:
            raise UsageError(f"fallback_swml is not a valid SWML document: {exc}") from None
        self._fallback = _json_bytes(fallback)
        self._incoming_handler: Callable[[IncomingCall], Coroutine[Any, Any, Any]] | None = None

    @property
    def public_url(self) -> str | None:
        """The URL the platform reaches this receiver at, as given (without a query)."""
        return self._public_url

    @public_url.setter
    def public_url(self, url: str | None) -> None:
        if url is not None:
            http_url_check("public_url", url)  # a ValidationError naming it
        self._public_url = url.split("?")[0] if url else None
        # What every status_url starts with (and the URL checked against the
        # signature): the path ending in "/", the only form a Starlette
        # app.mount(path, ...) matches, so the documented recipe never meets the
        # 307 redirect Starlette answers for the other form (a redirected POST
        # is not something the platform can be relied on to follow).
        self._callback_url = _with_slash(self._public_url) if self._public_url else None

    def __repr__(self) -> str:
        return f"<EventReceiver public_url={self.public_url!r} path={self.path!r}>"

    # --- wiring -----------------------------------------------------------------------

    def _bind(self, router: Router) -> None:
        """Serve the AsyncRelay owning *router*: find routes there, count what it delivers."""
        if self._router is not None and self._router is not router:
            raise UsageError("this EventReceiver already serves another AsyncRelay")
        self._router = router
        router.count = self._count

    def on_incoming_call(self, handler: IncomingHandler) -> IncomingHandler:
        """
        Register the handler of SWML fetches: ``@receiver.on_incoming_call`` (or a plain call).

        ``async def handler(call: relaycall.IncomingCall) -> SWML | Mapping | None``
        runs for each fetch of :attr:`swml_url`, within ``incoming_call_timeout``
        seconds; its document is what the platform runs on the call (None:
        answer, then ``sleep`` forever while the app drives the call through
        the Calling API). One handler per receiver; registering another
        replaces it. Returns *handler*, so it still names the function.
        """
        if not asyncio.iscoroutinefunction(handler):
            raise UsageError(
                "on_incoming_call takes an async function (async def handler(call): ...), "
                f"not {handler!r}"
            )
        self._incoming_handler = handler
        return handler

    def on_event(self, callback: Callable[[Event], Any]) -> None:
        """
        Call *callback* with every accepted event, routed or not (inbound calls, say).

        It runs outside the receiver's own code, soon after the event was
        taken, and before the HTTP request is answered (a coroutine function
        is started as a task then, not awaited): a worker killed once it has
        answered 2xx, which the platform does not send again, has run it.
        With :meth:`ingest`, it runs once the caller yields to the event loop.
        Exceptions are logged.
        """
        self._listeners.append(callback)

    def on_orphan_event(self, callback: Callable[[Event], Any]) -> Callable[[Event], Any]:
        """
        Call *callback* with every authentic event no live worker holds the call of.

        Only with a :class:`relaycall.RedisCoordinator`: the call's owner died
        (its ownership expired, or its inbox was claimed after its heartbeat
        expired), stopped, or never existed. The app may carry on with the
        call here: ``relay.call(event.call_id)`` makes this worker its owner.
        Runs before the request is answered, as :meth:`on_event` does; a
        coroutine function is started as a task.
        Without a hook, orphans are counted (``stats.orphaned``) and logged.
        Returns *callback* (usable as a decorator).
        """
        self._orphan_hooks.append(callback)
        return callback

    # --- tokens --------------------------------------------------------------------------

    def _mac(self, text: str) -> str:
        # base64.urlsafe_b64encode, without its two Python-level calls.
        mac = self._keyed.copy()
        mac.update(text.encode())
        return binascii.b2a_base64(mac.digest()[:18], newline=False).translate(_URLSAFE).decode()

    def _verified(self, handle: Handle[Any] | None, token: str, mac: str, text: str) -> bool:
        """
        Whether *mac* (of *token*) is this receiver's MAC of *text*.

        *handle* is the call or operation the callback routes to: a token found
        good for it once is kept there, and the next callback carrying the same
        token is checked against that (still in constant time) instead of
        computing the MAC again. What a token's MAC covers (its call, its
        operation's start, or its dial's nonce) is the same for every callback
        routed to that handle, so the answer is the same.
        """
        if handle is not None:
            known = Router.known_token(handle)
            if known is not None and _same(token, known):
                return True
        if not _same(mac, self._mac(text)):
            return False
        if handle is not None:
            Router.keep_token(handle, token)
        return True

    def _need_url(self) -> str:
        if self._callback_url is None:
            raise UsageError("the receiver has no public_url yet (pass one, or start() it first)")
        return self._callback_url

    def status_url(self, call_id: str) -> str:
        """
        A status_url for callbacks about *call_id*, with a token bound to that call.

        Its callbacks are accepted only for *call_id* (and only for operations
        this process did not start with a handle: those get their own URL).
        """
        return f"{self._need_url()}?t={self._mac('c:' + call_id)}"

    @property
    def swml_path(self) -> str:
        """Where :attr:`swml_url` is served locally: :attr:`path` + ``swml/``."""
        return self.path + "swml/"

    @property
    def swml_url(self) -> str:
        """
        The URL to give as a number's SWML webhook, or as a dial's ``url``.

        ``<public_url>/swml/?t=<token>``: the fetch is answered with the
        document of the :meth:`on_incoming_call` handler. Its token is good for
        fetches only, as a status_url's is for callbacks only: a leaked
        callback URL cannot fetch a document, nor this one post a callback.
        """
        return f"{self._need_url()}swml/?t={self._swml_token()}"

    def _swml_token(self) -> str:
        return "s." + self._mac("s:")

    def _operation_status_url(self, call_id: str, generation: str) -> str:
        """The status_url of one operation: bound to its call and to this start of it."""
        return f"{self._need_url()}?t=o.{generation}.{self._mac(f'o:{call_id}:{generation}')}"

    def dial_status_url(self) -> tuple[str, str]:
        """A status_url for a new call (its id is not known yet), and its nonce."""
        base = self._need_url()
        nonce = secrets.token_urlsafe(12)
        return f"{base}?t=d.{nonce}.{self._mac('d:' + nonce)}", nonce

    def _authorize(self, token: str | None, event: Event, route: Route) -> _Verdict:
        """
        What the URL token allows this callback to do (the table in docs/security.md).

        Every token relaycall issues authorises one call, and an operation's
        token one start of that operation: a leaked URL can act on nothing else.
        The MAC is checked before anything else, in constant time, on bytes.
        """
        if not token:
            return _FORBIDDEN
        call, op, bound, issued = route
        kind, _, rest = token.partition(".")
        if kind == "d":
            nonce, _, mac = rest.partition(".")
            if not self._verified(call, token, mac, "d:" + nonce):
                return _FORBIDDEN
            if call is not None:
                # The call a dial created carries its nonce; any other call
                # (attached by id, or dialed with the user's own status_url) does not.
                if bound is None or not _same(bound, nonce):
                    return _FORBIDDEN
                return _call_wide(route)
            router = self._router
            if router is not None and event.call_id is not None and router.dial_pending(nonce):
                return _HELD  # the dial's reply has not bound its call yet
            return _OK  # a dial this process no longer waits for: counted unknown_call
        if event.call_id is None:
            return _FORBIDDEN
        if kind == "o":
            generation, _, mac = rest.partition(".")
            if not self._verified(op, token, mac, f"o:{event.call_id}:{generation}"):
                return _FORBIDDEN
            if op is not None and issued != generation:
                return _STALE  # issued for an earlier start of this operation
            return _OK
        if self._verified(call, token, token, "c:" + event.call_id):
            return _call_wide(route)
        return _FORBIDDEN

    # --- the pipeline ------------------------------------------------------------------------

    def _signed(
        self, body: bytes, url: str, query: str, headers: Mapping[str, str], sub: str = ""
    ) -> bool:
        """Whether the request is signed with the signing key (the check verify_signature runs)."""
        assert self._signing_key is not None
        return signature_matches(
            self._signing_key, self._urls_to_sign(url, query, sub), body, headers
        )

    def _urls_to_sign(self, request_url: str, query: str, sub: str = "") -> tuple[str, ...]:
        """The URLs a valid signature may be over, the likeliest first (*sub*: ``swml/``)."""
        if self._signature_url is not None:
            return (self._signature_url(request_url),)
        base = self._callback_url
        if base is None:
            return (request_url,)
        base += sub
        # The platform signs the URL it posted to: the status_url relaycall
        # wrote (its path ending in "/"), whatever a proxy made of the path on
        # the way; or public_url without the "/", as a status_url the user
        # wrote may have it (checked only when the first fails).
        bare = base[:-1]
        return (f"{base}?{query}", f"{bare}?{query}") if query else (base, bare)

    def ingest(
        self, body: bytes, *, url: str, query: str, headers: Mapping[str, str]
    ) -> tuple[int, str]:
        """
        Check, parse and route one callback; return the HTTP status and a short text.

        Framework adapters call this with the raw body, the full request URL,
        its query string and headers. It never raises: bad input is answered
        400 or 403, and should handling a callback raise all the same (a bug),
        the error is logged at error level, counted in ``stats.failed`` and
        answered 400 rather than 500. With a :class:`relaycall.RedisCoordinator`,
        a callback for another worker's call is forwarded in the background and
        answered 200 at once: :meth:`ingest_async` (which the adapters use)
        answers once Redis has it, or 503.
        """
        try:
            answer = self._ingest(body, url, query, headers)
        except Exception:
            self.stats.failed += 1
            logger.exception(
                "handling a callback (call_id %s) failed; answered 400", _peek_call_id(body)
            )
            return 400, "malformed callback"
        if isinstance(answer, _Forward):
            # A caller that cannot wait for Redis: forwarded in the background
            # (ingest_async and the framework adapters wait, and answer 503 when
            # Redis cannot take it).
            try:
                task = asyncio.get_running_loop().create_task(self._forward(answer))
            except RuntimeError:  # no event loop runs: nothing could reach Redis
                self.stats.forward_failed += 1
                return 503, "coordinator unavailable"
            _BACKGROUND.add(task)
            task.add_done_callback(_BACKGROUND.discard)
            return 200, "ok"
        return answer

    async def ingest_async(
        self, body: bytes, *, url: str, query: str, headers: Mapping[str, str]
    ) -> tuple[int, str]:
        """
        :meth:`ingest`, waiting for a forward to another worker to be safe in Redis.

        With a :class:`relaycall.RedisCoordinator`, a callback for a call
        another worker owns is answered 200 once it is in that worker's inbox,
        503 when Redis cannot be reached (for the platform to send it again). The
        framework adapters use this; without a coordinator it is :meth:`ingest`.
        """
        answer = self._checked(body, url, query, headers)
        if isinstance(answer, _Forward):
            return await self._forward(answer)
        return answer

    def _checked(
        self, body: bytes, url: str, query: str, headers: Mapping[str, str]
    ) -> tuple[int, str] | _Forward:
        try:
            return self._ingest(body, url, query, headers)
        except Exception:
            self.stats.failed += 1
            logger.exception(
                "handling a callback (call_id %s) failed; answered 400", _peek_call_id(body)
            )
            return 400, "malformed callback"

    def _ingest(
        self, body: bytes, url: str, query: str, headers: Mapping[str, str]
    ) -> tuple[int, str] | _Forward:
        # The order of the checks is documented in docs/security.md.
        self.stats.received += 1
        if len(body) > self.max_body_size:
            return self._reject_body(
                f"body of {len(body)} bytes is over the {self.max_body_size} limit"
            )
        if self._signing_key is not None and not self._signed(body, url, query, headers):
            return self._reject_auth("missing or wrong X-SignalWire-Signature")
        try:
            payload = _decode_json(body)
        except _JSONError as exc:
            return self._reject_body(str(exc))
        try:
            event = parse_event(payload)
        except EventParseError as exc:
            return self._reject_body(str(exc))
        if not _token_is_text(query):
            return self._reject_auth("malformed token")
        router = self._router
        route = router.find(event) if router is not None else NOWHERE
        token = _token_of(query)
        verdict = _OK
        checked = False
        if token is not None or self.require_token:
            verdict = self._authorize(token, event, route)
            if verdict is _FORBIDDEN:
                if self.require_token:
                    return self._reject_auth("missing or wrong token")
                verdict = _OK  # tokens are not required: one that is not ours is ignored
            else:
                checked = True
        if (too_old := self._too_old(event)) is not None:
            return self._reject_timestamp(too_old)
        if (
            route is NOWHERE
            and verdict is _OK
            and router is not None
            and router.coordinator is not None
            and event.call_id
            and (checked or self._signing_key is not None)
        ):
            # Authentic, for a call this worker does not hold: its owner's, if any.
            return _Forward(body, token or "", event)
        if verdict is _STALE:
            self.stats.stale += 1
            return 200, "ok"
        if verdict is _HELD:
            # Kept until the dial's reply names its call, then routed in order.
            assert token is not None
            assert router is not None
            router.hold(token[2:].partition(".")[0], event)
            self.stats.held += 1
        else:
            outcome = router.deliver(event, route) if router is not None else UNKNOWN_CALL
            if outcome is ROUTED:
                self.stats.routed += 1  # the usual case, counted without a call
            else:
                self._count(outcome)
        for listener in self._listeners:
            _run_callback(listener, event)
        return 200, "ok"

    # --- several workers (relaycall.RedisCoordinator) -------------------------------------------

    async def _answer(
        self, body: bytes, url: str, query: str, headers: Mapping[str, str]
    ) -> tuple[int, str]:
        """
        The status and text a callback arriving over HTTP is answered with (both adapters).

        Checked and delivered (:meth:`_checked`), or handed to the worker holding its call;
        then, if that scheduled user callbacks (on_event, on_orphan_event, on_finished),
        one turn of the event loop, which runs what was scheduled before it. A worker
        that dies after answering 2xx has run them; answered first, a callback the
        platform will not send again reached no listener. A coroutine function has been
        started as a task by then, not awaited.
        """
        before = scheduled_callbacks()
        checked = self._checked(body, url, query, headers)
        if isinstance(checked, _Forward):
            checked = await self._forward(checked)
        if scheduled_callbacks() != before:
            await asyncio.sleep(0)
        return checked

    async def _forward(self, forward: _Forward) -> tuple[int, str]:
        """Hand an authentic callback for a call not held here to its owner, or the orphan hook."""
        router = self._router
        assert router is not None
        coordinator = router.coordinator
        assert coordinator is not None
        try:
            where, _owner = await coordinator.forward(forward.body, forward.token, forward.event)
            if where == "sent":
                self.stats.forwarded += 1
            elif where == "self":
                # Owned here, but the Call is no longer held (nobody refers to it).
                self.stats.unknown_call += 1
                self._tell_listeners(forward.event)
            elif forward.token.startswith("d.") and self._signing_key is None:
                # Unsigned, a dial's token is the only proof, and its MAC covers its
                # nonce, not the call: with nobody holding the call to check it, only
                # Redis's record of the call that dial placed binds it.
                placed = await self._dial_placed(forward)
                call_id = forward.event.call_id
                if placed is None:
                    # No record (Redis restarted without persistence, say): the
                    # platform may try again once the owner has written it back.
                    self.stats.rejected_auth += 1
                    logger.warning("refused a callback: no record of the dial of call %s", call_id)
                    return 503, "cannot tell which call this dial placed"
                if not placed:
                    return self._reject_auth(
                        f"a dial token for call {call_id}, which that dial did not place"
                    )
                self._orphan(forward.event)
            else:
                self._orphan(forward.event)
        except CoordinatorUnavailable:
            self.stats.forward_failed += 1
            return 503, "coordinator unavailable"
        except Exception:
            self.stats.failed += 1
            logger.exception(
                "forwarding a callback (call_id %s) failed; answered 400", forward.event.call_id
            )
            return 400, "malformed callback"
        return 200, "ok"

    async def _dial_placed(self, forward: _Forward) -> bool | None:
        """Whether the dial whose token *forward* carries placed its call (None: no record)."""
        coordinator = self._router.coordinator if self._router is not None else None
        assert coordinator is not None
        nonce = forward.token[2:].partition(".")[0]
        recorded = await coordinator.dial_nonce(forward.event.call_id or "")
        return None if recorded is None else _same(recorded, nonce)

    def _forwarded(self, body: bytes, token: str, *, orphan: bool) -> None:
        """
        A callback another worker forwarded here (*orphan*: claimed from a dead worker's inbox).

        It was authenticated where it arrived; here its token is checked again
        against this worker's route (only the owner knows the call's dial
        nonce and its operations' starts), then it is delivered as if local.
        """
        stats = self.stats
        try:
            event = parse_event(_decode_json(body))
        except (_JSONError, EventParseError) as exc:
            stats.rejected_body += 1
            logger.warning("refused a forwarded callback: %s", exc)
            return
        if orphan:
            self._orphan(event)
            return
        stats.received_forwarded += 1
        router = self._router
        route = router.find(event) if router is not None else NOWHERE
        given = token or None
        verdict = _OK
        if given is not None or self.require_token:
            verdict = self._authorize(given, event, route)
            if verdict is _FORBIDDEN:
                if self.require_token:
                    self._reject_auth(
                        f"wrong token for {event.event_type} of call {event.call_id} "
                        "(forwarded by another worker)"
                    )
                    return
                verdict = _OK
        if verdict is _STALE:
            stats.stale += 1
            return
        if verdict is _HELD:
            assert given is not None
            assert router is not None
            router.hold(given[2:].partition(".")[0], event)
            stats.held += 1
        else:
            self._count(router.deliver(event, route) if router is not None else UNKNOWN_CALL)
        self._tell_listeners(event)

    def _orphan(self, event: Event) -> None:
        """An authentic event no live worker holds the call of: the orphan hooks, and on_event."""
        self.stats.orphaned += 1
        if not self._orphan_hooks:
            logger.warning(
                "orphaned callback %s for call %s: no live worker owns it, and no "
                "receiver.on_orphan_event hook is registered",
                event.event_type,
                event.call_id,
            )
        for hook in self._orphan_hooks:
            _run_callback(hook, event)
        self._tell_listeners(event)

    def _tell_listeners(self, event: Event) -> None:
        for listener in self._listeners:
            _run_callback(listener, event)

    # --- the SWML fetch ----------------------------------------------------------------------

    async def fetch(
        self, body: bytes, *, url: str, query: str, headers: Mapping[str, str]
    ) -> tuple[int, str, bytes]:
        """
        Check and answer one SWML fetch; return the HTTP status, content type and body.

        The checks are those of a callback (docs/security.md), with the
        :attr:`swml_url` token: 400 for a body over the size limit or not of
        the documented shape (reference §9.6), 403 for a missing or wrong
        signature (with a signing key) or token. Then the handler's document,
        as ``200 application/json``, within ``incoming_call_timeout``; else the
        fallback document, logged. Never raises.
        """
        try:
            return await self._fetch(body, url, query, headers)
        except Exception:
            self.stats.failed += 1
            self.stats.fallbacks += 1
            logger.exception(
                "handling a SWML fetch (call_id %s) failed; answered with the fallback document",
                _peek_call_id(body),
            )
            return 200, _JSON_TYPE, self._fallback

    async def _fetch(
        self, body: bytes, url: str, query: str, headers: Mapping[str, str]
    ) -> tuple[int, str, bytes]:
        # Size, signature, token, JSON, shape: docs/security.md.
        self.stats.received += 1
        if len(body) > self.max_body_size:
            return _plain(
                self._reject_body(
                    f"body of {len(body)} bytes is over the {self.max_body_size} limit"
                )
            )
        if self._signing_key is not None and not self._signed(body, url, query, headers, "swml/"):
            return _plain(self._reject_auth("missing or wrong X-SignalWire-Signature (SWML fetch)"))
        token = _token_of(query) if _token_is_text(query) else "\x00"
        missing = token is None and self.require_token
        if missing or (token is not None and not _same(token, self._swml_token())):
            return _plain(self._reject_auth("missing or wrong token (SWML fetch)"))
        try:
            fetch = read_fetch(_decode_json(body))
        except (_JSONError, FetchShapeError) as exc:
            return _plain(self._reject_body(f"SWML fetch: {exc}"))
        return 200, _JSON_TYPE, await self._document_for(fetch)

    async def _document_for(self, fetch: Any) -> bytes:
        """The JSON of the document to run on *fetch*'s call: the handler's, or the fallback."""
        call_id = fetch.call_id
        router, handler = self._router, self._incoming_handler
        if router is None or router.session is None:
            return self._fall_back(
                call_id,
                "no AsyncRelay is bound to this receiver (AsyncRelay(events=receiver)), so the "
                "call could not be handed to the app",
            )
        if handler is None:
            return self._fall_back(call_id, "no handler is registered (@receiver.on_incoming_call)")
        # A fetch for a call another worker owns (a dial's url, an execute step, reaching
        # this worker through the load balancer) must not take the call away from it:
        # the owner's handles keep its callbacks, this worker only answers the fetch.
        coordinator = router.coordinator
        own = not (
            coordinator is not None
            and router.get(call_id) is None
            and await coordinator.owned_elsewhere(call_id)
        )
        call = router.incoming(fetch, own=own)
        task: asyncio.Task[Any] = asyncio.get_running_loop().create_task(handler(call))
        done, _ = await asyncio.wait({task}, timeout=self.incoming_call_timeout)
        if not done:
            task.cancel()
            task.add_done_callback(_consume)
            return self._fall_back(
                call_id,
                f"the handler {_name(handler)} did not return within "
                f"incoming_call_timeout={self.incoming_call_timeout:g} s (it was cancelled)",
            )
        if task.cancelled():
            return self._fall_back(call_id, f"the handler {_name(handler)} was cancelled")
        exc = task.exception()
        if exc is not None:
            return self._fall_back(call_id, f"the handler {_name(handler)} raised", exc)
        result = task.result()
        document = DEFAULT_DOCUMENT if result is None else document_of(result)
        try:
            _validate_document("document", document)
            encoded = _json_bytes(document)
        except (ValidationError, TypeError, ValueError) as exc:
            return self._fall_back(
                call_id, f"the handler {_name(handler)} returned an invalid SWML document: {exc}"
            )
        self.stats.incoming_calls += 1
        return encoded

    def _fall_back(self, call_id: str, why: str, exc: BaseException | None = None) -> bytes:
        self.stats.fallbacks += 1
        logger.error(
            "SWML fetch for call %s: %s; answered with the fallback document",
            call_id,
            why,
            exc_info=exc,
        )
        return self._fallback

    def _reject_body(self, why: str) -> tuple[int, str]:
        self.stats.rejected_body += 1
        logger.warning("refused a callback: %s", why)
        return 400, why

    def _reject_auth(self, why: str) -> tuple[int, str]:
        self.stats.rejected_auth += 1
        logger.warning("refused a callback: %s", why)
        return 403, "forbidden"

    def _too_old(self, event: Event) -> str | None:
        """Why *event* is outside the time window (None when it is inside, or carries no time)."""
        skew, stamp = self.max_clock_skew, event.timestamp
        if skew is None or stamp is None:
            return None
        # Only the past is bounded, as Stripe does: a replay is old, while a
        # time ahead of ours is a clock difference (or an emulator whose clock
        # runs faster than real time), which nobody can exploit.
        age = time.time() - stamp
        if age <= skew:
            return None
        return f"its timestamp is {age:.0f} s old (max_clock_skew is {skew:g} s)"

    def _reject_timestamp(self, why: str) -> tuple[int, str]:
        self.stats.rejected_timestamp += 1
        logger.warning("refused a callback: %s", why)
        return 403, "forbidden"

    def _count(self, outcome: Outcome) -> None:
        """Count what delivering an event did."""
        stats = self.stats
        if outcome is ROUTED:
            stats.routed += 1
        elif outcome is UNKNOWN_CALL:
            stats.unknown_call += 1
        elif outcome is DUPLICATE:
            stats.duplicate += 1
        elif outcome is UNKNOWN_OPERATION:
            stats.unknown_operation += 1
        else:
            assert outcome is CALL_DUPLICATE
            stats.routed += 1
            stats.duplicate += 1

    # --- aiohttp ----------------------------------------------------------------------------

    async def handle(self, request: web.Request) -> web.Response:
        """
        An aiohttp handler: ``app.router.add_post(receiver.path, receiver.handle)``.

        That routes only :attr:`path` (ending in ``/``, as the status_urls do);
        :meth:`add_to_app` routes the form without it too, and refuses an
        oversize body before the client sends it (no ``100 Continue``).
        """
        # One coroutine per request (this one): the standalone server's
        # connection guard is told around it, when there is one.
        connections, transport = self._connections, request.transport
        guard = connections.by_transport.get(transport) if connections and transport else None
        if guard is not None:
            guard.busy()  # its head is in: no header deadline while it is served
        try:
            length = request.content_length
            if length is not None and length > self.max_body_size:
                return self._too_large()
            content = request.content
            try:
                if content.is_eof():
                    # The whole body came with the head (the usual case): it is all
                    # buffered, so it is taken as it is, with no timer and no read coroutine.
                    data = content.read_nowait()
                    body = data if len(data) <= self.max_body_size else None
                else:
                    body = await asyncio.wait_for(
                        _read_body(content, self.max_body_size), self.body_timeout
                    )
            except asyncio.TimeoutError:
                self.stats.received += 1
                status, text = self._reject_slow()
                response = web.Response(status=status, text=text)
                response.force_close()
                return response
            except Exception as exc:  # noqa: BLE001 - the client went away, or sent a broken chunk
                self.stats.received += 1
                status, text = self._reject_body(f"body could not be read: {exc!r}")
                return web.Response(status=status, text=text)
            if body is None:
                return self._too_large()
            # The full URL is only read to check a signature against it (see
            # _urls_to_sign); building it from the request costs more than the rest
            # of this handler, so it is built only when it will be read.
            url = aiohttp_url(request) if self._reads_request_url() else ""
            # The query as the client sent it (escapes kept), as the platform signed it and
            # as the ASGI adapter has it: aiohttp's query_string is decoded ("%20" -> " ").
            query = request.raw_path.partition("?")[2]
            if self._is_fetch(request.path):
                status, kind, answer = await self.fetch(
                    body, url=url, query=query, headers=request.headers
                )
                if kind != _JSON_TYPE:  # a refusal, in the same form as a callback's
                    return web.Response(status=status, text=answer.decode())
                return web.Response(status=status, body=answer, content_type=kind)
            status, text = await self._answer(body, url, query, request.headers)
            return web.Response(status=status, text=text)
        finally:
            if guard is not None:
                guard.idle()  # the next request's head is due within header_timeout

    def _is_fetch(self, path: str) -> bool:
        """Whether a request to *path* (the whole path, or the part under a mount) is a fetch."""
        bare = path.rstrip("/")
        return bare.endswith("/swml") and bare != self.path.rstrip("/")

    def _too_large(self) -> web.Response:
        self.stats.received += 1
        status, text = self._reject_body("body too large")
        response = web.Response(status=status, text=text)
        response.force_close()  # the rest of the body is not worth reading
        return response

    def _reject_slow(self) -> tuple[int, str]:
        self.stats.rejected_slow += 1
        logger.warning("refused a callback: its body took over %g s", self.body_timeout)
        return 408, "request body too slow"

    async def _expect(self, request: web.Request) -> web.StreamResponse | None:
        """
        aiohttp's ``Expect: 100-continue`` handling, refusing an oversize body first.

        A client that asks before sending its body is told no at once, instead
        of being invited with ``100 Continue`` to send what will be refused.
        """
        if request.content_length is not None and request.content_length > self.max_body_size:
            return self._too_large()
        expect = request.headers.get("Expect", "")
        if request.version == HttpVersion11:
            if expect.lower() != "100-continue":
                raise web.HTTPExpectationFailed(text=f"unknown Expect: {expect}")
            await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            request.writer.output_size = 0  # the response proper has not started
        return None

    def _reads_request_url(self) -> bool:
        """Whether :meth:`ingest` will look at its *url* (only _urls_to_sign does)."""
        return self._signing_key is not None and (
            self._signature_url is not None or self.public_url is None
        )

    def add_to_app(self, app: Any) -> None:
        """
        Route POST callbacks at :attr:`path` to this receiver, with and without its trailing ``/``.

        *app* is an aiohttp ``web.Application``, or a Starlette or FastAPI
        application (or router): neither framework then answers a callback
        with a redirect to the other form. Starlette routes are matched inside
        the app's ``root_path``: a FastAPI ``root_path`` (``FastAPI(root_path=...)``)
        is taken off the front of :attr:`path`; under a server's root path
        (``uvicorn --root-path``), give the receiver the path inside the app.

        Raises:
            UsageError: *app* is none of these.
        """
        bare = self.path.rstrip("/")
        if isinstance(app, web.Application):
            # The SWML fetch at swml/ under it, in both forms too (the same handler).
            for form in (*((bare,) if bare else ()), self.path, bare + "/swml", self.swml_path):
                app.router.add_post(form, self.handle, expect_handler=self._expect)
            return
        # Starlette and FastAPI are duck-typed: relaycall does not depend on them.
        router = getattr(app, "router", app)
        if not callable(getattr(router, "add_route", None)) or not hasattr(router, "routes"):
            raise UsageError(
                "add_to_app takes an aiohttp web.Application or a Starlette/FastAPI app "
                f"(or router), not {app!r}; for other ASGI frameworks mount receiver.asgi_app() "
                f"at {bare or '/'!r} so that it takes {self.path!r}"
            )
        root = getattr(app, "root_path", "")
        root = root.rstrip("/") if isinstance(root, str) else ""
        if root and (bare == root or bare.startswith(root + "/")):
            bare = bare[len(root) :]
        endpoint = self.asgi_app()
        forms = (bare, bare + "/") if bare else ("/",)
        for form in (*forms, bare + "/swml", bare + "/swml/"):
            # A callable object, not a function, so Starlette serves it as raw ASGI.
            router.add_route(form, endpoint, methods=["POST"], include_in_schema=False)

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """
        Run the receiver on its own aiohttp server; return the URL it listens at.

        When no *public_url* was given, it becomes that URL (fine for local
        testing with the emulator; behind NAT give the public one).
        """
        if self._runner is not None:
            raise UsageError("the receiver is already started")
        app = web.Application(client_max_size=self.max_body_size + 1)
        self.add_to_app(app)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        connections = _Connections(self)
        site = _GuardedSite(runner, host, port, connections)
        try:
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner, self._connections = runner, connections
        addresses = runner.addresses
        bound = addresses[0][1] if addresses else port
        url = f"http://{host}:{bound}{self.path}"
        if self.public_url is None:
            self.public_url = url
        return url

    async def stop(self) -> None:
        """Stop the standalone server."""
        runner, self._runner = self._runner, None
        if self._connections is not None:
            # Connections not inside the handler go first: aiohttp would wait
            # for one still reading off a refused body (up to its lingering time).
            for guard in list(self._connections.by_transport.values()):
                if not guard.serving:
                    guard.close()
        if runner is not None:
            await runner.cleanup()
        self._connections = None

    def serve(self, host: str = "127.0.0.1", port: int = 0) -> _Serving:
        """``async with receiver.serve(host, port):`` runs :meth:`start` / :meth:`stop`."""
        return _Serving(self, host, port)

    # --- ASGI (FastAPI, Starlette) -------------------------------------------------------------

    def asgi_app(self) -> Callable[[Any, Any, Any], Awaitable[None]]:
        """
        An ASGI application taking the callbacks, for FastAPI and Starlette.

        Example::

            app = FastAPI()
            app.mount("/relaycall/events", receiver.asgi_app())

        A mount matches only the path with a ``/`` after it, the form of every
        status_url the receiver writes. As a route it must be given that form,
        ``app.add_route("/relaycall/events/", receiver.asgi_app(), methods=["POST"])``,
        or Starlette redirects each callback (307); :meth:`add_to_app` routes both.
        It is an object, not a function, so Starlette serves it as raw ASGI.
        It needs no ASGI library: relaycall does not depend on FastAPI.
        """
        if self._asgi_app is None:
            self._asgi_app = _ASGIApp(self)
        return self._asgi_app

    async def _asgi(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] != "http":
            return
        if scope.get("method") != "POST":
            await _asgi_reply(send, 405, "method not allowed")
            return
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope.get("headers", [])}
        query = scope.get("query_string", b"").decode("latin-1")
        # Decided before the first receive(): that is when an ASGI server
        # answers "Expect: 100-continue", inviting the body.
        if length_over(headers.get("content-length"), self.max_body_size):
            self.stats.received += 1
            await _asgi_reply(send, *self._reject_body("body too large"), close=True)
            return
        try:
            body = await asyncio.wait_for(
                _asgi_body(receive, self.max_body_size), self.body_timeout
            )
        except asyncio.TimeoutError:
            self.stats.received += 1
            await _asgi_reply(send, *self._reject_slow(), close=True)
            return
        if body is _GONE:
            return
        if body is None:
            self.stats.received += 1
            await _asgi_reply(send, *self._reject_body("body too large"), close=True)
            return
        assert isinstance(body, bytes)
        url = asgi_url(scope, headers, query)
        raw = scope.get("raw_path")
        path = raw.decode("latin-1").partition("?")[0] if raw else scope.get("path", "")
        if self._is_fetch(path):
            status, kind, answer = await self.fetch(body, url=url, query=query, headers=headers)
            await _asgi_reply(send, status, answer, content_type=kind)
            return
        await _asgi_reply(send, *await self._answer(body, url, query, headers))


class _ASGIApp:
    """:meth:`EventReceiver.asgi_app`: an object, which Starlette does not take for an endpoint."""

    __slots__ = ("_receiver",)

    def __init__(self, receiver: EventReceiver) -> None:
        self._receiver = receiver

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await self._receiver._asgi(scope, receive, send)

    def __repr__(self) -> str:
        return f"<ASGI app of {self._receiver!r}>"


class _Serving:
    def __init__(self, receiver: EventReceiver, host: str, port: int) -> None:
        self._receiver, self._host, self._port = receiver, host, port

    async def __aenter__(self) -> EventReceiver:
        await self._receiver.start(self._host, self._port)
        return self._receiver

    async def __aexit__(self, *exc: object) -> None:
        await self._receiver.stop()


@attrs.frozen
class _Forward:
    """What :meth:`EventReceiver._ingest` answers for a callback to hand to another worker."""

    body: bytes
    token: str
    event: Event


#: Forwards started by the synchronous ingest(), kept until done.
_BACKGROUND: set[asyncio.Task[Any]] = set()


class _Verdict(enum.Enum):
    OK = "ok"
    FORBIDDEN = "forbidden"
    HELD = "held"
    STALE = "stale"


_OK, _FORBIDDEN, _HELD, _STALE = _Verdict.OK, _Verdict.FORBIDDEN, _Verdict.HELD, _Verdict.STALE


def _call_wide(route: Route) -> _Verdict:
    """
    What a token for a whole call (a dial's, or a call command's) may reach.

    Its call, but not an operation started here with a handle: that one has a
    token of its own, bound to the one start of it.
    """
    _, _, _, generation = route
    return _STALE if generation is not None else _OK


_URLSAFE = bytes.maketrans(b"+/", b"-_")


def _keyed_hmac(secret: bytes) -> Any:
    """HMAC-SHA256 keyed with *secret*, to ``copy()`` for each message."""
    try:
        # OpenSSL's own HMAC object: copy(), update() and digest() are C calls,
        # where hmac.HMAC wraps each in Python.
        from _hashlib import hmac_new  # noqa: PLC0415

        return hmac_new(secret, digestmod="sha256")
    except (ImportError, ValueError):  # a Python without OpenSSL's HMAC
        return hmac.new(secret, digestmod=hashlib.sha256)


def _same(given: str, expected: str) -> bool:
    """Constant-time equality that cannot raise: compare_digest refuses non-ASCII str."""
    return hmac.compare_digest(given.encode("utf-8", "surrogatepass"), expected.encode())


def _check_bounds(
    max_clock_skew: Any, header_timeout: Any, body_timeout: Any, max_connections: Any
) -> None:
    """EventReceiver's time window and slow-client bounds."""
    if max_clock_skew is not None and not (is_number(max_clock_skew) and max_clock_skew >= 0):
        raise UsageError(
            "max_clock_skew must be a finite number of seconds >= 0, or None to turn the "
            f"check off, not {show_value_masked(max_clock_skew)}"
        )
    for name, value in (("header_timeout", header_timeout), ("body_timeout", body_timeout)):
        if not (is_number(value) and value > 0):
            raise UsageError(
                f"{name} must be a finite number of seconds > 0, not {show_value_masked(value)}"
            )
    whole = isinstance(max_connections, int) and not isinstance(max_connections, bool)
    if not whole or max_connections < 1:
        raise UsageError(
            f"max_connections must be a positive integer, not {show_value_masked(max_connections)}"
        )


class _Connections:
    """
    The standalone server's connections: which are open, and which wait for a request head.

    *waiting* keeps the order in which connections started waiting, so that
    the first one is the one a new connection displaces when the server is full.
    """

    __slots__ = ("by_transport", "receiver", "waiting")

    def __init__(self, receiver: EventReceiver) -> None:
        self.receiver = receiver
        self.by_transport: dict[asyncio.BaseTransport, _Guard] = {}
        self.waiting: dict[_Guard, None] = {}

    def admit(self) -> bool:
        """Make room for one more connection if need be; False if none can be made."""
        receiver = self.receiver
        if len(self.by_transport) < receiver.max_connections:
            return True
        receiver.stats.rejected_busy += 1
        if not self.waiting:
            logger.warning("refused a connection: %d open, all serving", len(self.by_transport))
            return False
        # The oldest idle or slow connection goes: a client that sends its
        # request at once (the platform) is never the oldest one waiting.
        oldest = next(iter(self.waiting))
        logger.info("closed the longest-waiting of %d connections", len(self.by_transport))
        oldest.close()
        return True


class _Guard(asyncio.Protocol):
    """
    One connection of the standalone server: aiohttp's protocol inside, a deadline around it.

    While the connection waits for a request head (from when it opens, and
    again after each request the receiver served) a timer runs, which closes
    it at ``header_timeout``. aiohttp has no such bound: a client trickling a
    header a byte at a time holds its connection for as long as it likes.
    """

    __slots__ = ("_connections", "_inner", "_served", "_tail", "_timer", "serving", "transport")

    def __init__(self, inner: asyncio.Protocol, connections: _Connections) -> None:
        self._inner: asyncio.Protocol | None = inner
        self._connections = connections
        self._timer: asyncio.TimerHandle | None = None
        self._served = 0
        #: Whether the receiver's handler is serving a request of it.
        self.serving = False
        #: The last bytes received while waiting for a head (None once its end came).
        self._tail: bytes | None = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        if not self._connections.admit():
            self._inner = None
            transport.write(_BUSY)
            transport.close()
            return
        self._connections.by_transport[transport] = self
        assert self._inner is not None
        self._inner.connection_made(transport)
        self.idle()

    def idle(self) -> None:
        """Wait for a request head, for at most header_timeout from now."""
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        self.serving = False
        self._cancel_timer()
        waiting = self._connections.waiting
        waiting.pop(self, None)
        waiting[self] = None  # now the newest
        self._tail = b""
        self._timer = asyncio.get_running_loop().call_later(
            self._connections.receiver.header_timeout, self._expired
        )

    def busy(self) -> None:
        """A request head arrived, and the receiver is serving the request."""
        self._served += 1
        self.serving = True
        self._tail = None
        self._cancel_timer()
        self._connections.waiting.pop(self, None)

    def close(self) -> None:
        self._forget()
        if self.transport is not None:
            self.transport.close()

    def _expired(self) -> None:
        self._timer = None
        receiver = self._connections.receiver
        receiver.stats.rejected_slow += 1
        logger.info("closed a connection: no request head within %g s", receiver.header_timeout)
        if not self._served and self.transport is not None:
            # Said only before any request was served: to a client about to
            # reuse an idle connection it would read as its request's answer.
            self.transport.write(_TIMED_OUT)
        self.close()

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _forget(self) -> None:
        self._cancel_timer()
        self._connections.waiting.pop(self, None)
        if self.transport is not None:
            self._connections.by_transport.pop(self.transport, None)

    # The rest of the protocol goes to aiohttp's.

    def data_received(self, data: bytes) -> None:
        tail = self._tail
        if tail is not None:
            # A head has ended (aiohttp will serve it): no longer the first to
            # be displaced, though the deadline holds until the receiver serves
            # it (a request to another path never is, and is closed on time).
            seen = tail + data
            if b"\r\n\r\n" in seen:
                self._tail = None
                self._connections.waiting.pop(self, None)
            else:
                self._tail = seen[-3:]
        if self._inner is not None:
            self._inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self._inner.eof_received() if self._inner is not None else None

    def pause_writing(self) -> None:
        if self._inner is not None:
            self._inner.pause_writing()

    def resume_writing(self) -> None:
        if self._inner is not None:
            self._inner.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        self._forget()
        inner, self._inner = self._inner, None
        if inner is not None:
            inner.connection_lost(exc)


class _GuardedSite(web.BaseSite):
    """aiohttp's TCPSite, with each connection inside a :class:`_Guard`."""

    __slots__ = ("_connections", "_host", "_port")

    def __init__(
        self, runner: web.BaseRunner, host: str, port: int, connections: _Connections
    ) -> None:
        # An accept queue as long as the connections it may hold: a burst of
        # them is accepted (and judged) rather than reset by the kernel.
        super().__init__(runner, backlog=max(128, connections.receiver.max_connections))
        self._host, self._port, self._connections = host, port, connections

    @property
    def name(self) -> str:
        return f"http://{self._host}:{self._port}"

    async def start(self) -> None:
        await super().start()
        server = self._runner.server
        assert server is not None
        connections = self._connections
        self._server = await asyncio.get_running_loop().create_server(
            lambda: _Guard(server(), connections), self._host, self._port, backlog=self._backlog
        )


_CLOSING = b"\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
_BUSY = b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1" + _CLOSING
_TIMED_OUT = b"HTTP/1.1 408 Request Timeout" + _CLOSING


async def _read_body(content: Any, limit: int) -> bytes | None:
    """A request's body, or None once it is over *limit* bytes (the rest is not read)."""
    chunks = bytearray()
    async for chunk in content.iter_chunked(65536):
        chunks += chunk
        if len(chunks) > limit:
            return None
    return bytes(chunks)


_GONE = object()


async def _asgi_body(receive: Any, limit: int) -> bytes | object | None:
    """An ASGI request's body; None once it is over *limit*; _GONE if the client left."""
    chunks = bytearray()
    more = True
    while more:
        message = await receive()
        if message["type"] == "http.disconnect":
            return _GONE
        chunks += message.get("body", b"")
        more = message.get("more_body", False)
        if len(chunks) > limit:
            return None
    return bytes(chunks)


#: How deep a callback's JSON may nest. The platform's deepest is a handful of
#: levels; Python's parser would go on to ~1,000 and then raise RecursionError,
#: and every later walk over a deep value (a repr, a log line) pays for it.
MAX_JSON_DEPTH = 64


class _JSONError(ValueError):
    """A body that is not a JSON document the receiver reads (answered 400)."""


def _refuse_constant(name: str) -> Any:
    raise _JSONError(f"body is not JSON: {name} is not a JSON value")


_DECODER = json.JSONDecoder(parse_constant=_refuse_constant)


def _decode_json(body: bytes) -> Any:
    """
    Parse a callback body as ``json.loads`` does, with bounded depth and standard numbers.

    ``NaN`` and ``Infinity`` (which Python writes but JSON has not) are refused;
    ``1e999`` and ``10**400`` are JSON and parse (to inf, and an int), for the
    readers to judge.
    """
    try:
        encoding = "utf-8" if utf8_object(body) else json.detect_encoding(body)
        text = body.decode(encoding, "surrogatepass")
        payload = _DECODER.decode(text)
    except RecursionError:
        raise _JSONError(f"body is nested deeper than {MAX_JSON_DEPTH} levels") from None
    except _JSONError:
        raise
    except ValueError as exc:  # UnicodeDecodeError and over-long integers included
        raise _JSONError(f"body is not JSON: {exc}") from None
    # Only a body with that many brackets can be that deep: the walk is rare.
    if body.count(b"[") + body.count(b"{") > MAX_JSON_DEPTH and _too_deep(payload):
        raise _JSONError(f"body is nested deeper than {MAX_JSON_DEPTH} levels")
    return payload


def _too_deep(value: Any) -> bool:
    """Whether containers nest more than MAX_JSON_DEPTH deep in *value* (without recursing)."""
    stack = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > MAX_JSON_DEPTH:
            return True
        children = node.values() if isinstance(node, dict) else node
        stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return False


def _token_is_text(query: str) -> bool:
    """Whether the query's token, if any, is ASCII, as every token relaycall writes is."""
    if query.isascii() and "%" not in query:  # then the token, decoded, is ASCII too
        return True
    token = _token_of(query)
    return token is None or token.isascii()


_CALL_ID = re.compile(rb'"call_id"\s*:\s*"([^"\\]{1,100})"')


def _peek_call_id(body: Any) -> str | None:
    """The call id a body names, for a log line about a body that could not be handled."""
    if not isinstance(body, bytes | bytearray):
        return None
    found = _CALL_ID.search(body)
    return found.group(1).decode("utf-8", "replace") if found else None


def _token_of(query: str) -> str | None:
    """The ``t`` parameter of a query string, as ``parse_qs(query).get("t", [None])[0]``."""
    # The query relaycall writes is exactly "t=<token>", in URL-safe characters:
    # then parse_qs would return the rest unchanged, and slicing is ~10x cheaper.
    # Anything else (other parameters, escapes, "+") goes through parse_qs.
    if query.startswith("t=") and "&" not in query and "%" not in query and "+" not in query:
        return query[2:] or None
    return parse_qs(query).get("t", [None])[0]


def _check_arguments(args: Mapping[str, Any]) -> None:
    """EventReceiver's arguments (public_url is checked by its setter)."""
    path = args.get("path")
    if path is not None and (not isinstance(path, str) or not path.startswith("/")):
        raise UsageError(f"path must be a string starting with '/', not {show_value_masked(path)}")
    key = args.get("signing_key")
    if key is not None and not isinstance(key, str):
        raise UsageError(f"signing_key must be a string, not {type(key).__name__}")
    secret = args.get("secret")
    if secret is not None and not isinstance(secret, bytes):
        raise UsageError(f"secret must be bytes, not {type(secret).__name__}")
    if not isinstance(args.get("require_token", True), bool):
        raise UsageError("require_token must be True or False")
    url_of = args.get("signature_url")
    if url_of is not None and not callable(url_of):
        raise UsageError(
            f"signature_url must be a function of the URL, not {type(url_of).__name__}"
        )
    size = args.get("max_body_size")
    if not isinstance(size, int) or isinstance(size, bool) or size < 1:
        raise UsageError(f"max_body_size must be a positive integer, not {show_value_masked(size)}")


def _with_slash(url: str) -> str:
    return url if url.endswith("/") else url + "/"


async def _asgi_reply(
    send: Any,
    status: int,
    text: str | bytes,
    *,
    close: bool = False,
    content_type: str = "text/plain",
) -> None:
    """Answer with *text*; *close* the connection when the body was left unread."""
    body = text.encode() if isinstance(text, str) else text
    headers = [
        (b"content-type", content_type.encode()),
        (b"content-length", str(len(body)).encode()),
    ]
    if close:
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


_JSON_TYPE = "application/json"


def _plain(answer: tuple[int, str]) -> tuple[int, str, bytes]:
    status, text = answer
    return status, "text/plain", text.encode()


def _json_bytes(document: Any) -> bytes:
    """A document as the JSON the platform reads (standard JSON: NaN refused)."""
    return json.dumps(document, allow_nan=False, separators=(",", ":")).encode()


def _validate_document(path: str, document: Any) -> None:
    """
    Refuse (ValidationError naming the step and field) a document the platform would not run.

    Checked by ``relaycall.swml.validate``, the same rules as the builder's
    (SignalWire's published SWML schema). *path* names the document in the
    message of what is not a document at all.
    """
    # Imported on the first fetch: relaycall.swml loads on first use (import cost).
    from relaycall.swml import validate  # noqa: PLC0415

    if not isinstance(document, Mapping):
        fail(path, document, "must be a SWML document (a dict with 'sections')")
    validate(document)


def _consume(task: asyncio.Task[Any]) -> None:
    """Retrieve a cancelled handler's outcome, so that asyncio does not log it as lost."""
    if not task.cancelled() and task.exception() is not None:
        logger.debug("a cancelled on_incoming_call handler raised", exc_info=task.exception())


def _name(handler: Any) -> str:
    return getattr(handler, "__qualname__", None) or repr(handler)
