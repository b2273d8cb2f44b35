"""
EventReceiver: takes status callbacks over HTTP, checks them, and routes them to handles.

The checks run in order on the raw bytes before anything is parsed: size,
then signature (when a signing key is set), then JSON, then shape, then the
URL token relaycall put in every status_url it generated. Routing is two
dict lookups (call id, then control id), so ingest cost does not grow with
the number of live calls. Nothing the user registered runs inside the
request: callbacks are scheduled, so a slow one cannot delay the 200.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import secrets
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

import attrs
from aiohttp import web

from relaycall._events import (
    CallStateEvent,
    Event,
    EventParseError,
    LiveEvent,
    SidecarEvent,
    TranscriptEvent,
    parse_event,
)
from relaycall._handles._base import _run_callback
from relaycall._validate import http_url_check
from relaycall.errors import UsageError, show_value_masked

if TYPE_CHECKING:
    from relaycall._handles._base import Operation
    from relaycall._handles.call import Call
    from relaycall._session import AsyncRelay

__all__ = ["EventReceiver", "ReceiverStats"]

logger = logging.getLogger("relaycall.events")

#: Commands that take a status_url; the session fills it in when a receiver is set.
STATUS_URL_COMMANDS = frozenset(
    {
        "dial",
        "calling.play",
        "calling.record",
        "calling.collect",
        "calling.detect",
        "calling.tap",
        "calling.stream",
        "calling.transcribe",
        "calling.refer",
        "calling.live_translate",
    }
)
_LIVE_KINDS = {"calling.call.live_transcribe": "live_transcribe",
               "calling.call.live_translate": "live_translate"}  # fmt: skip


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
    rejected_auth: int = 0
    rejected_body: int = 0


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
            one to let several processes accept each other's tokens).
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
    ) -> None:
        _check_arguments(locals())
        self.public_url = public_url  # checked by the setter
        self.path = _with_slash(
            path or (urlsplit(public_url).path if public_url else "") or "/relaycall/events"
        )
        self._signing_key = signing_key.encode() if signing_key else None
        self.require_token = require_token
        self.max_body_size = max_body_size
        self._signature_url = signature_url
        self._secret = secret or secrets.token_bytes(32)
        self.stats = ReceiverStats()
        self._relay: AsyncRelay | None = None
        self._listeners: list[Callable[[Event], Any]] = []
        self._runner: web.AppRunner | None = None
        self._asgi_app: _ASGIApp | None = None

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
        # app.mount(path, ...) matches, so the README's recipe never meets the
        # 307 redirect Starlette answers for the other form (a redirected POST
        # is not something the platform can be relied on to follow).
        self._callback_url = _with_slash(self._public_url) if self._public_url else None

    def __repr__(self) -> str:
        return f"<EventReceiver public_url={self.public_url!r} path={self.path!r}>"

    # --- wiring -----------------------------------------------------------------------

    def _bind(self, relay: AsyncRelay) -> None:
        if self._relay is not None and self._relay is not relay:
            raise UsageError("this EventReceiver already serves another AsyncRelay")
        self._relay = relay

    def on_event(self, callback: Callable[[Event], Any]) -> None:
        """
        Call *callback* with every accepted event, routed or not (inbound calls, say).

        It runs after the request was acknowledged; a coroutine function is
        run as a task. Exceptions are logged.
        """
        self._listeners.append(callback)

    # --- tokens --------------------------------------------------------------------------

    def _mac(self, text: str) -> str:
        digest = hmac.new(self._secret, text.encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest[:18]).decode()

    def status_url(self, call_id: str) -> str:
        """The status_url for operations on *call_id*, with its token."""
        if self._callback_url is None:
            raise UsageError("the receiver has no public_url yet (pass one, or start() it first)")
        return f"{self._callback_url}?t={self._mac('c:' + call_id)}"

    def dial_status_url(self) -> tuple[str, str]:
        """A status_url for a new call (its id is not known yet), and its nonce."""
        if self._callback_url is None:
            raise UsageError("the receiver has no public_url yet (pass one, or start() it first)")
        nonce = secrets.token_urlsafe(12)
        return f"{self._callback_url}?t=d.{nonce}.{self._mac('d:' + nonce)}", nonce

    def _token_ok(self, token: str | None, event: Event, call: Call | None) -> bool:
        if not token:
            return False
        if token.startswith("d."):
            nonce, _, mac = token[2:].partition(".")
            if not hmac.compare_digest(mac, self._mac("d:" + nonce)):
                return False
            # Bound to the call it was issued for, once that call is known here.
            bound = getattr(call, "_nonce", None) if call is not None else None
            return bound is None or hmac.compare_digest(bound, nonce)
        if event.call_id is None:
            return False
        return hmac.compare_digest(token, self._mac("c:" + event.call_id))

    # --- the pipeline ------------------------------------------------------------------------

    def _signature_ok(self, url: str, body: bytes, headers: Mapping[str, str]) -> bool:
        assert self._signing_key is not None
        sha1 = _header(headers, "x-signalwire-signature")
        sha256 = _header(headers, "x-signalwire-sha256-signature")
        if sha1 is None and sha256 is None:
            return False
        signed = url.encode() + body
        if sha1 is not None:
            want = hmac.new(self._signing_key, signed, hashlib.sha1).hexdigest()
            if not hmac.compare_digest(want, sha1.strip().lower()):
                return False
        if sha256 is not None:
            want = hmac.new(self._signing_key, signed, hashlib.sha256).hexdigest()
            if not hmac.compare_digest(want, sha256.strip().lower()):
                return False
        return True

    def _urls_to_sign(self, request_url: str, query: str) -> tuple[str, ...]:
        """The URLs a valid signature may be over, the likeliest first."""
        if self._signature_url is not None:
            return (self._signature_url(request_url),)
        base = self._callback_url
        if base is None:
            return (request_url,)
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
        its query string and headers. It never raises for bad input.
        """
        self.stats.received += 1
        if len(body) > self.max_body_size:
            return self._reject_body(
                f"body of {len(body)} bytes is over the {self.max_body_size} limit"
            )
        if self._signing_key is not None and not any(
            self._signature_ok(signed, body, headers) for signed in self._urls_to_sign(url, query)
        ):
            return self._reject_auth("missing or wrong X-SignalWire-Signature")
        try:
            payload = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            return self._reject_body("body is not JSON")
        try:
            event = parse_event(payload)
        except EventParseError as exc:
            return self._reject_body(str(exc))
        relay = self._relay
        call = relay._calls.get(event.call_id) if relay is not None and event.call_id else None
        if self.require_token:
            token = _token_of(query)
            if not self._token_ok(token, event, call):
                return self._reject_auth("missing or wrong token")
        self._route(event, call)
        for listener in self._listeners:
            _run_callback(listener, event)
        return 200, "ok"

    def _reject_body(self, why: str) -> tuple[int, str]:
        self.stats.rejected_body += 1
        logger.warning("refused a callback: %s", why)
        return 400, why

    def _reject_auth(self, why: str) -> tuple[int, str]:
        self.stats.rejected_auth += 1
        logger.warning("refused a callback: %s", why)
        return 403, "forbidden"

    def _route(self, event: Event, call: Call | None) -> None:
        if call is None:
            self.stats.unknown_call += 1
            return
        if isinstance(event, CallStateEvent) or (
            event.event_type is None and "call_state" in event.params and event.control_id is None
        ):
            call._publish(event, None)
            if not call._apply(event):
                self.stats.duplicate += 1
            self.stats.routed += 1
            return
        op = self._operation_for(event, call)
        call._publish(event, op)
        if op is None:
            if event.control_id is not None:
                self.stats.unknown_operation += 1
            else:
                self.stats.routed += 1  # call-level news (denoise, refer): published only
            return
        if op._apply(event):
            self.stats.routed += 1
        else:
            self.stats.duplicate += 1

    @staticmethod
    def _operation_for(event: Event, call: Call) -> Operation | None:
        if event.control_id is not None:
            return call._ops.get(event.control_id)
        if isinstance(event, TranscriptEvent):
            for op in call._ops.values():
                if op.kind == "transcribe":
                    return op
            return None
        if isinstance(event, SidecarEvent):
            return call._ops.get("ai_sidecar")
        if isinstance(event, LiveEvent) and event.event_type in _LIVE_KINDS:
            return call._ops.get(_LIVE_KINDS[event.event_type])
        return None

    # --- aiohttp ----------------------------------------------------------------------------

    async def handle(self, request: web.Request) -> web.Response:
        """
        An aiohttp handler: ``app.router.add_post(receiver.path, receiver.handle)``.

        That routes only :attr:`path` (ending in ``/``, as the status_urls do);
        :meth:`add_to_app` routes the form without it too.
        """
        if request.content_length is not None and request.content_length > self.max_body_size:
            self.stats.received += 1
            status, text = self._reject_body("body too large")
            return web.Response(status=status, text=text)
        chunks = bytearray()
        async for chunk in request.content.iter_chunked(65536):
            chunks += chunk
            if len(chunks) > self.max_body_size:
                self.stats.received += 1
                status, text = self._reject_body("body too large")
                return web.Response(status=status, text=text)
        # The full URL is only read to check a signature against it (see
        # _urls_to_sign); building it from the request costs more than the rest
        # of this handler, so it is built only when it will be read.
        url = str(request.url) if self._reads_request_url() else ""
        status, text = self.ingest(
            bytes(chunks), url=url, query=request.query_string, headers=request.headers
        )
        return web.Response(status=status, text=text)

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
            for form in (bare, self.path) if bare else (self.path,):
                app.router.add_post(form, self.handle)
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
        for form in (bare, bare + "/") if bare else ("/",):
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
        site = web.TCPSite(runner, host, port)
        await site.start()
        self._runner = runner
        addresses = runner.addresses
        bound = addresses[0][1] if addresses else port
        url = f"http://{host}:{bound}{self.path}"
        if self.public_url is None:
            self.public_url = url
        return url

    async def stop(self) -> None:
        """Stop the standalone server."""
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

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
        chunks = bytearray()
        too_big = False
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunks += message.get("body", b"")
            more = message.get("more_body", False)
            if len(chunks) > self.max_body_size:
                too_big = True
                chunks.clear()
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope.get("headers", [])}
        query = scope.get("query_string", b"").decode("latin-1")
        if too_big:
            self.stats.received += 1
            status, text = self._reject_body("body too large")
        else:
            status, text = self.ingest(
                bytes(chunks), url=_asgi_url(scope, headers, query), query=query, headers=headers
            )
        await _asgi_reply(send, status, text)


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


def _token_of(query: str) -> str | None:
    """The ``t`` parameter of a query string, as ``parse_qs(query).get("t", [None])[0]``."""
    # The query relaycall writes is exactly "t=<token>", in URL-safe characters:
    # then parse_qs would return the rest unchanged, and slicing is ~10x cheaper.
    # Anything else (other parameters, escapes, "+") goes through parse_qs.
    if query.startswith("t=") and "&" not in query and "%" not in query and "+" not in query:
        return query[2:] or None
    return parse_qs(query).get("t", [None])[0]


def _header(headers: Mapping[str, str], name: str) -> str | None:
    value = headers.get(name)
    if value is not None:
        return value
    for k, v in headers.items():
        if k.lower() == name:
            return v
    return None


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


def _asgi_url(scope: Mapping[str, Any], headers: Mapping[str, str], query: str) -> str:
    """The URL an ASGI request was made to (for checking a signature over it)."""
    host = headers.get("host") or "{}:{}".format(*scope.get("server") or ("localhost", 80))
    raw = scope.get("raw_path")
    if raw:
        # The request target as the server took it (escapes kept, as signed),
        # which neither a mount nor a root_path changes; some servers leave
        # the query in it.
        path = raw.decode("latin-1").partition("?")[0]
    else:
        # The whole path, root_path included, as the ASGI spec has it (and
        # Starlette >= 0.33 keeps it under a mount); older servers and
        # frameworks left root_path out of it.
        path = scope.get("path", "")
        root = scope.get("root_path", "")
        if root and not (path == root or path.startswith(root.rstrip("/") + "/")):
            path = root + path
    url = f"{scope.get('scheme', 'http')}://{host}{path}"
    return f"{url}?{query}" if query else url


async def _asgi_reply(send: Any, status: int, text: str) -> None:
    body = text.encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"text/plain"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
