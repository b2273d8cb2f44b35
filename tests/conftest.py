"""
The one test harness: real servers on 127.0.0.1, nothing mocked.

- :class:`WireServer` (fixtures ``server``, ``relay``): a stand-in platform that
  records what arrives on the wire and answers as each test scripts it.
- :class:`EmulatorEnv` (fixtures ``env``, ``signed_env``): the emulator on a
  loopback port, an AsyncRelay on it without a receiver, a
  :class:`CallbackRecorder` for the callbacks, and :class:`RawHttp` for requests
  relaycall would never send.
- :class:`MediaServer`: a WebSocket server for the emulator's audio frames.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import json
import os
import ssl
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import aiohttp
import attrs
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from hypothesis import HealthCheck, settings
from multidict import CIMultiDictProxy

import relaycall
import relaycall.testing
from relaycall.emulator import EmulatedPlatform
from tests._programs import free_port
from tests._services import HAProxy, RedisServer, need_binary

settings.register_profile(
    "ci", max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile("dev", max_examples=50, deadline=None)
settings.register_profile("thorough", max_examples=2000, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci" if os.environ.get("CI") else "dev"))

PROJECT = "a2c2f1d0-0000-4000-8000-00000000beef"
TOKEN = "PTsecret-token-value-0123456789"
CALL_ID = "6f1c1c1e-1111-4222-8333-944444444444"


def call_leg(call_id: str = CALL_ID, **over: Any) -> dict[str, Any]:
    """A complete CallLeg body as the reference declares it."""
    leg: dict[str, Any] = {
        "id": call_id,
        "from": "+15551230000",
        "to": "+15557650000",
        "direction": "outbound-api",
        "source": "realtime_api",
        "url": None,
        "charge": 0,
        "created_at": "2026-11-24T10:00:00Z",
        "charge_details": [],
        "status": "queued",
        "duration": None,
        "duration_ms": None,
        "billing_ms": None,
        "type": "relay_pstn_call",
        "parent_id": None,
    }
    leg.update(over)
    return leg


@attrs.define
class Respond:
    """One scripted reply. *drop* closes the connection after reading the request."""

    status: int = 200
    body: Any = attrs.Factory(call_leg)
    headers: dict[str, str] = attrs.Factory(dict)
    delay: float = 0.0
    drop: bool = False
    raw: bytes | None = None


@attrs.define
class Seen:
    """A request as it arrived."""

    method: str
    path: str
    headers: dict[str, str]
    raw: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.raw)


class WireServer:
    """An aiohttp server on 127.0.0.1 recording requests and replaying a script."""

    def __init__(self) -> None:
        self.seen: list[Seen] = []
        self.script: list[Respond] = []
        self.arrived = asyncio.Event()
        self.in_flight = 0
        self.peak_in_flight = 0
        #: Extra seconds every request is held, to make overlap observable.
        self.hold = 0.0
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._server = TestServer(app, host="127.0.0.1", port=0)

    @property
    def base_url(self) -> str:
        return str(self._server.make_url("")).rstrip("/")

    def reply(self, *responses: Respond) -> None:
        self.script.extend(responses)

    @property
    def bodies(self) -> list[Any]:
        return [s.json for s in self.seen]

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        self.in_flight += 1
        self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
        try:
            if self.hold:
                await asyncio.sleep(self.hold)
            return await self._answer(request)
        finally:
            self.in_flight -= 1

    async def _answer(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        self.seen.append(Seen(request.method, request.path, dict(request.headers), raw))
        self.arrived.set()
        r = self.script.pop(0) if self.script else None
        if r is None:
            body = json.loads(raw) if raw else {}
            call_id = body.get("id") or body.get("params", {}).get("id") or str(uuid.uuid4())
            return web.json_response(call_leg(call_id))
        if r.delay:
            await asyncio.sleep(r.delay)
        if r.drop:
            assert request.transport is not None
            request.transport.close()
            return web.Response()
        if r.raw is not None:
            return web.Response(status=r.status, body=r.raw, headers=r.headers)
        return web.json_response(r.body, status=r.status, headers=r.headers)

    async def start(self) -> None:
        await self._server.start_server()

    async def close(self) -> None:
        await self._server.close()


@pytest.fixture
async def server() -> AsyncIterator[WireServer]:
    s = WireServer()
    await s.start()
    yield s
    await s.close()


class SleepRecorder:
    """The retry backoffs skipped while a test runs (relaycall.testing.instant_retries)."""

    def __init__(self, waits: list[float]) -> None:
        self.waits = waits


@pytest.fixture
def sleeps() -> Iterator[SleepRecorder]:
    with relaycall.testing.instant_retries() as waits:
        yield SleepRecorder(waits)


@pytest.fixture
async def relay(server: WireServer, sleeps: SleepRecorder) -> AsyncIterator[relaycall.AsyncRelay]:
    async with relaycall.AsyncRelay(PROJECT, TOKEN, base_url=server.base_url) as r:
        yield r


@pytest.fixture
def closed_port() -> int:
    """A loopback port nobody listens on: connecting to it is refused."""
    return free_port()


# --- the emulator, a relay on it, the callbacks it sends, raw HTTP --------------------------------

FROM = "+15551230000"
TO = "+15557650000"
#: Keyword arguments of a dial through relaycall (``relay.dial(**DIAL)``).
DIAL: dict[str, Any] = {"from_": FROM, "to": TO, "url": "https://example.test/swml"}
#: Every call state a dial can ask callbacks for.
ALL_EVENTS = ["created", "ringing", "answered", "ended"]


def bare_relay(emu: relaycall.testing.Emulator, **options: Any) -> relaycall.AsyncRelay:
    """An AsyncRelay on *emu* with no receiver: no callback reaches it."""
    return relaycall.AsyncRelay(
        emu.config.project_id, emu.config.token, base_url=emu.base_url, **options
    )


async def answered_call(emu: relaycall.testing.Emulator, **dial: Any) -> relaycall.Call:
    """A call dialled through ``emu.relay`` (to :data:`DIAL` unless told) and answered."""
    call = await emu.relay.dial(**{**DIAL, **dial})
    assert await call.wait_for("answered", timeout=5) == "answered"
    return call


def basic_auth(user: str, password: str) -> dict[str, str]:
    """The Authorization header of HTTP Basic credentials."""
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


def sign(url: str, body: bytes, key: str) -> dict[str, str]:
    """The platform's two signature headers for *body* posted to *url*."""
    signed = url.encode() + body
    return {
        "X-SignalWire-Signature": hmac.new(key.encode(), signed, hashlib.sha1).hexdigest(),
        "X-SignalWire-SHA256-Signature": hmac.new(key.encode(), signed, hashlib.sha256).hexdigest(),
    }


@attrs.define
class Hit:
    """A callback as it reached the :class:`CallbackRecorder`."""

    url: str
    headers: dict[str, str]
    raw: bytes
    body: Any
    at: float  # time.monotonic() on arrival

    @property
    def event_type(self) -> str | None:
        if "sidecar_event" in self.body:
            return "calling.ai.sidecar"
        event_type: str | None = self.body.get("event_type")
        return event_type

    @property
    def params(self) -> dict[str, Any]:
        """The event's params; for an AI sidecar callback, its ``sidecar_event``."""
        key = "sidecar_event" if "sidecar_event" in self.body else "params"
        params: dict[str, Any] = self.body.get(key, {})
        return params


class CallbackRecorder:
    """
    A server on 127.0.0.1 that records every callback posted to it (any path)
    and answers :attr:`status`; tests await the next one matching a filter.
    """

    def __init__(self) -> None:
        self.hits: list[Hit] = []
        self.status = 200
        self._taken: set[int] = set()
        self._arrived = asyncio.Condition()
        app = web.Application()
        app.router.add_post("/{tail:.*}", self._handle)
        self._server = TestServer(app, host="127.0.0.1", port=0)

    async def __aenter__(self) -> CallbackRecorder:
        await self._server.start_server()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._server.close()

    async def _handle(self, request: web.Request) -> web.Response:
        raw = await request.read()
        hit = Hit(str(request.url), dict(request.headers), raw, json.loads(raw), time.monotonic())
        async with self._arrived:
            self.hits.append(hit)
            self._arrived.notify_all()
        return web.Response(status=self.status)

    def url(self, path: str = "/cb") -> str:
        return str(self._server.make_url(path))

    async def next(
        self,
        event_type: str | None = None,
        *,
        where: Callable[[Hit], bool] | None = None,
        timeout: float = 5.0,
        **params: Any,
    ) -> Hit:
        """The first callback not yet taken matching *event_type*, *params* and *where*."""

        def fits(h: Hit) -> bool:
            if event_type is not None and h.event_type != event_type:
                return False
            if any(h.params.get(k) != v for k, v in params.items()):
                return False
            return where is None or where(h)

        async def find() -> Hit:
            async with self._arrived:
                while True:
                    for i, h in enumerate(self.hits):
                        if i not in self._taken and fits(h):
                            self._taken.add(i)
                            return h
                    await self._arrived.wait()

        return await asyncio.wait_for(find(), timeout)

    def of(self, call_id: str) -> list[Hit]:
        """Every callback about *call_id*, taken or not, in arrival order."""
        return [h for h in self.hits if h.params.get("call_id") == call_id]


Reply = tuple[int, Any, CIMultiDictProxy[str]]


class RawHttp:
    """
    Requests as they go over the wire, not through relaycall: to an emulator's
    API and control API (with its credentials, none, or others), and callbacks
    to a receiver (signed as the platform signs them when given a key).
    """

    def __init__(
        self,
        session: aiohttp.ClientSession,
        base_url: str = "",
        *,
        credentials: tuple[str, str] | None = None,
        signing_key: str | None = None,
    ) -> None:
        self.session = session
        self.base_url = base_url
        self.auth = basic_auth(*credentials) if credentials else {}
        self.signing_key = signing_key

    async def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        raw: bytes | None = None,
        auth: bool | Mapping[str, str] = True,
    ) -> Reply:
        """
        *body* as JSON (or *raw* bytes) to the base URL + *path*; *auth*: True for
        the credentials, False for none, or the headers to send instead. Returns
        the status, the body (JSON decoded, else text, None if empty) and headers.
        """
        data = raw if raw is not None else None if body is None else json.dumps(body).encode()
        headers = dict(self.auth if auth is True else auth or {})
        async with self.session.request(
            method, self.base_url + path, data=data, headers=headers
        ) as resp:
            if resp.content_type == "application/json":
                return resp.status, await resp.json(), resp.headers
            return resp.status, (await resp.text()) or None, resp.headers

    async def api(
        self, body: Any = None, *, raw: bytes | None = None, auth: bool | Mapping[str, str] = True
    ) -> Reply:
        """A POST to the Calling API endpoint, ``/api/calling/calls``."""
        return await self.request("POST", "/api/calling/calls", body, raw=raw, auth=auth)

    async def callback(
        self,
        url: str,
        payload: Any,
        *,
        raw: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        signed: bool = True,
    ) -> int:
        """Post a callback to *url* as the platform would; returns the status."""
        body = raw if raw is not None else json.dumps(payload).encode()
        sent = {"Content-Type": "application/json"}
        if signed and self.signing_key:
            sent.update(sign(url, body, self.signing_key))
        sent.update(headers or {})
        # Redirects are not followed: the platform may not follow one for a POST.
        async with self.session.post(url, data=body, headers=sent, allow_redirects=False) as resp:
            return resp.status


@attrs.define
class EmulatorEnv:
    """
    A running :class:`relaycall.testing.Emulator`, an AsyncRelay on it with no
    receiver and no retries (callbacks go where each command's status_url says,
    usually :attr:`cb`), a :class:`CallbackRecorder` and :class:`RawHttp`.
    """

    emu: relaycall.testing.Emulator
    relay: relaycall.AsyncRelay
    rx: CallbackRecorder
    http: RawHttp

    @property
    def core(self) -> EmulatedPlatform:
        """The emulated platform itself (clock, calls, scenarios, journal)."""
        return self.emu.core

    @property
    def cb(self) -> str:
        """The recorder's URL, for a command's status_url."""
        return self.rx.url()

    async def dial(self, to: str = TO, **kw: Any) -> str:
        """Dial *to* with every call state reported to :attr:`cb`; returns the call id."""
        kw.setdefault("status_url", self.cb)
        kw.setdefault("status_events", ALL_EVENTS)
        leg = await self.relay.send(
            relaycall.commands.Dial(from_=FROM, to=to, url="https://x.test/swml", **kw)
        )
        assert leg.status == "queued"
        return leg.id

    async def answered(self, to: str = TO, **kw: Any) -> str:
        """Dial *to* and wait for its ``answered`` callback; returns the call id."""
        call_id = await self.dial(to, **kw)
        await self.rx.next("calling.call.state", call_id=call_id, call_state="answered")
        return call_id


#: Emulated time in the env fixtures runs this many times faster than real time.
SCALE = 50.0


@contextlib.asynccontextmanager
async def emulator_env(**options: Any) -> AsyncIterator[EmulatorEnv]:
    """An :class:`EmulatorEnv` around ``relaycall.testing.Emulator(**options)``."""
    async with (
        CallbackRecorder() as rx,
        relaycall.testing.Emulator(**options) as emu,
        bare_relay(emu, retry=None) as relay,
        aiohttp.ClientSession() as session,
    ):
        credentials = (emu.config.project_id, emu.config.token)
        yield EmulatorEnv(emu, relay, rx, RawHttp(session, emu.base_url, credentials=credentials))


@pytest.fixture
async def env() -> AsyncIterator[EmulatorEnv]:
    """The emulator at :data:`SCALE`, its callbacks unsigned."""
    async with emulator_env(time_scale=SCALE, signing_key=None) as e:
        yield e


@pytest.fixture
async def signed_env() -> AsyncIterator[EmulatorEnv]:
    """The emulator at :data:`SCALE`, signing its callbacks with the key ``k3y``."""
    async with emulator_env(time_scale=SCALE, signing_key="k3y") as e:
        yield e


# --- WebSocket media ------------------------------------------------------------------------------


@attrs.define
class Connection:
    """One WebSocket connection to the :class:`MediaServer`: its headers and JSON frames."""

    headers: dict[str, str]
    frames: list[dict[str, Any]] = attrs.Factory(list)
    closed: bool = False

    def of(self, event: str) -> list[dict[str, Any]]:
        return [f for f in self.frames if f["event"] == event]


class MediaServer:
    """
    A WebSocket server on 127.0.0.1 recording every connection's frames (TLS with
    a self-signed certificate if given one). With *hang_up_after*, it answers
    the frame of that event with a ``mark`` and closes the connection.
    """

    def __init__(
        self, ssl_context: ssl.SSLContext | None = None, *, hang_up_after: str | None = None
    ) -> None:
        self.ssl_context = ssl_context
        self.hang_up_after = hang_up_after
        self.connections: list[Connection] = []
        self._changed = asyncio.Condition()
        self._runner: web.AppRunner | None = None
        self.port = 0

    async def __aenter__(self) -> MediaServer:
        app = web.Application()
        app.router.add_get("/media", self._ws)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0, ssl_context=self.ssl_context)
        await site.start()
        self.port = self._runner.addresses[0][1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._runner is not None
        await self._runner.cleanup()

    def url(self, scheme: str) -> str:
        return f"{scheme}://127.0.0.1:{self.port}/media"

    async def _ws(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        conn = Connection(dict(request.headers))
        async with self._changed:
            self.connections.append(conn)
            self._changed.notify_all()
        async for msg in ws:
            if msg.type == aiohttp.WSMsgType.TEXT:
                frame = json.loads(msg.data)
                async with self._changed:
                    conn.frames.append(frame)
                    self._changed.notify_all()
                if frame["event"] == self.hang_up_after:
                    await ws.send_str('{"event":"mark"}')
                    break
        await ws.close()
        async with self._changed:
            conn.closed = True
            self._changed.notify_all()
        return ws

    async def until(self, predicate: Callable[[], bool], timeout: float = 5.0) -> None:
        """Wait until *predicate* holds (checked on every change), at most *timeout* s."""

        async def wait() -> None:
            async with self._changed:
                await self._changed.wait_for(predicate)

        await asyncio.wait_for(wait(), timeout)


@pytest.fixture(autouse=True)
async def _loop_errors_fail_the_test() -> AsyncIterator[None]:
    """A test fails if its event loop saw an exception nobody retrieved (asyncpg's habit)."""
    loop = asyncio.get_running_loop()
    seen: list[dict[str, Any]] = []
    loop.set_exception_handler(lambda _loop, context: seen.append(context))
    yield
    loop.set_exception_handler(None)
    assert not seen, f"unretrieved exceptions in the event loop: {seen}"


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No test sees the developer's real SignalWire credentials."""
    for name in (
        "SIGNALWIRE_PROJECT_ID",
        "SIGNALWIRE_API_TOKEN",
        "SIGNALWIRE_SPACE",
        "SIGNALWIRE_BASE_URL",
        "SIGNALWIRE_SIGNING_KEY",
    ):
        monkeypatch.delenv(name, raising=False)


# --- real services: redis-server and HAProxy on loopback (tests/_services.py) ---------------------


def _running_redis(directory: Path, *, appendonly: bool = False) -> Iterator[RedisServer]:
    server = RedisServer(need_binary("redis-server"), directory, appendonly=appendonly)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """
    A real ``redis-server`` on a free loopback port, no persistence, in a temporary
    directory (``.url``, ``.port``, ``.restart()`` keeping the port); stopped by its pid.
    Skips when the binary is missing, fails instead with RELAYCALL_REQUIRE_SERVICES=1.
    """
    yield from _running_redis(tmp_path_factory.mktemp("redis"))


@pytest.fixture
def redis_server_aof(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """:func:`redis_server` with every write in its append-only file before Redis answers:
    ``restart()`` keeps the keys and stream entries."""
    yield from _running_redis(tmp_path_factory.mktemp("redis-aof"), appendonly=True)


@pytest.fixture
def haproxy_balancer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., HAProxy]]:
    """
    ``haproxy_balancer(backends)``: HAProxy round-robin over the loopback *backends*
    ports, started on a free port (``.url``); health-checked, and a request whose worker
    died is re-sent to another. Every one started is stopped by its pid. Skips when
    haproxy is missing, fails instead with RELAYCALL_REQUIRE_SERVICES=1.
    """
    binary = need_binary("haproxy")
    started: list[HAProxy] = []

    def start(backends: list[int], **options: Any) -> HAProxy:
        balancer = HAProxy(binary, tmp_path_factory.mktemp("haproxy"), backends, **options)
        started.append(balancer)
        return balancer.start()

    try:
        yield start
    finally:
        for balancer in started:
            balancer.stop()
