"""
The command server every benchmark talks to: a minimal aiohttp app in its own process.

It does what the Calling API does to a client, and nothing more: check Basic
auth, parse the JSON body, and answer 200 with a complete CallLeg carrying the
body's ``id`` (a fresh uuid4 for ``dial``). The leg is rendered from a template
built once, so the server spends as little as it can per request and the client
sides are what differ between runs.
"""

from __future__ import annotations

import asyncio
import base64
import json
import multiprocessing
import os
import signal
import time
import uuid
from collections.abc import Callable
from typing import Any

from aiohttp import web

PROJECT = "a2c2f1d0-0000-4000-8000-00000000beef"
TOKEN = "PTbench-token-0123456789abcdef"
HOST = "127.0.0.1"
PATH = "/api/calling/calls"
AUTHORIZATION = "Basic " + base64.b64encode(f"{PROJECT}:{TOKEN}".encode()).decode("ascii")


def call_leg(call_id: str) -> dict[str, Any]:
    """A complete CallLeg, as tests/conftest.py's ``call_leg`` builds it."""
    return {
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


_MARK = "00000000-0000-4000-8000-00000000cafe"
_PREFIX, _SUFFIX = (part.encode() for part in json.dumps(call_leg(_MARK)).split(_MARK))


class Counters:
    __slots__ = ("bad", "requests")

    def __init__(self) -> None:
        self.requests = 0
        self.bad = 0


def make_app() -> web.Application:
    counters = Counters()

    async def calls(request: web.Request) -> web.Response:
        counters.requests += 1
        if request.headers.get("Authorization") != AUTHORIZATION:
            counters.bad += 1
            return web.json_response({"errors": [{"code": "unauthorized"}]}, status=401)
        try:
            body = json.loads(await request.read())
            command = body["command"]
        except (ValueError, KeyError, TypeError):
            counters.bad += 1
            return web.json_response({"errors": [{"code": "invalid_body"}]}, status=422)
        call_id = str(uuid.uuid4()) if command == "dial" else body.get("id")
        if not isinstance(call_id, str):
            counters.bad += 1
            return web.json_response({"errors": [{"code": "missing_id"}]}, status=422)
        return web.Response(
            body=_PREFIX + call_id.encode() + _SUFFIX, content_type="application/json"
        )

    async def stats(_: web.Request) -> web.Response:
        return web.json_response({"requests": counters.requests, "bad": counters.bad})

    app = web.Application()
    app.router.add_post(PATH, calls)
    app.router.add_get("/_bench/stats", stats)
    return app


def _serve(conn: Any, app_factory: Callable[[], web.Application]) -> None:
    async def main() -> None:
        runner = web.AppRunner(app_factory(), access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, HOST, 0, backlog=1024)
        await site.start()
        port = runner.addresses[0][1]
        conn.send(port)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        await stop.wait()
        await runner.cleanup()

    asyncio.run(main())


class ServerProcess:
    """
    Serve an aiohttp app in a child process; ``base_url`` is where it listens.

    By default the command server (``make_app``); *app_factory* (a module-level
    function, as it is pickled to the child) serves another, e.g. the emulator.
    Use as a context manager; the process is terminated on exit.
    """

    def __init__(
        self,
        app_factory: Callable[[], web.Application] = make_app,
        *,
        name: str = "bench-server",
        start_timeout: float = 30,
    ) -> None:
        self._proc: multiprocessing.process.BaseProcess | None = None
        self._app_factory = app_factory
        self._name = name
        self._start_timeout = start_timeout
        self.port = 0

    @property
    def base_url(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def host(self) -> str:
        return f"{HOST}:{self.port}"

    @property
    def pid(self) -> int:
        assert self._proc is not None
        assert self._proc.pid is not None
        return self._proc.pid

    def start(self) -> ServerProcess:
        ctx = multiprocessing.get_context("spawn")
        parent, child = ctx.Pipe()
        self._proc = ctx.Process(
            target=_serve, args=(child, self._app_factory), name=self._name, daemon=True
        )
        self._proc.start()
        deadline = time.monotonic() + self._start_timeout
        while not parent.poll(0.1):
            if not self._proc.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"the {self._name} process did not start")
        self.port = parent.recv()
        return self

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.is_alive() and proc.pid is not None:
            os.kill(proc.pid, signal.SIGTERM)
        proc.join(10)
        if proc.is_alive():
            proc.kill()
            proc.join(5)

    def __enter__(self) -> ServerProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
