"""
Shared fixtures: a real aiohttp server on 127.0.0.1 that records what arrives
on the wire and answers as each test scripts it.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import attrs
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from hypothesis import HealthCheck, settings

import relaycall
import relaycall.testing

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


def bare_relay(emu: relaycall.testing.Emulator, **options: Any) -> relaycall.AsyncRelay:
    """An AsyncRelay on *emu* with no receiver: no callback reaches it."""
    return relaycall.AsyncRelay(
        relaycall.testing.DEFAULT_PROJECT,
        relaycall.testing.DEFAULT_TOKEN,
        base_url=emu.base_url,
        **options,
    )


@pytest.fixture
def closed_port() -> int:
    """A loopback port nobody listens on: connecting to it is refused."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


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
