"""
The receiver's documented mounting recipes, end to end on loopback.

Each test runs the emulator, a real web server (uvicorn serving a FastAPI app,
or aiohttp) with the receiver wired in one of the documented ways, and an
AsyncRelay: a dial must be answered through callbacks the emulator posted to
the status_url relaycall wrote, every one of them taken with a 200 (never a
307 redirect, which the platform may not follow for a POST).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import warnings
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import pytest
import pytest_asyncio
from aiohttp import web
from aiohttp.test_utils import TestServer

import relaycall
from relaycall.emulator import (
    EMULATOR_KEY,
    CallbackEntry,
    EmulatedPlatform,
    EmulatorConfig,
    create_app,
    sign,
)

fastapi = pytest.importorskip("fastapi")
uvicorn = pytest.importorskip("uvicorn")

PROJECT = "test-project"
TOKEN = "test-token"
KEY = "mount-test-signing-key"
CALL_ID = "6f1c1c1e-1111-4222-8333-944444444444"
DIAL = {"from_": "+15551230000", "to": "+15557650000", "url": "https://example.test/swml"}

# One event loop for the module, so that one uvicorn server serves every test
# (starting and stopping one costs ~0.25 s).
pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest_asyncio.fixture(loop_scope="module")
async def emulator() -> AsyncIterator[tuple[str, EmulatedPlatform]]:
    """The emulator on 127.0.0.1, signing its callbacks with KEY, 50x real time."""
    app = create_app(
        EmulatorConfig(project_id=PROJECT, token=TOKEN, time_scale=50, signing_key=KEY)
    )
    async with TestServer(app, host="127.0.0.1", port=0) as server:
        yield str(server.make_url("")).rstrip("/"), app[EMULATOR_KEY]


def _listening_socket() -> socket.socket:
    """A socket bound and listening on loopback: its port is known before the app is built."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    return sock


class Recorder:
    """ASGI middleware noting (method, path, status) of every HTTP request it passes on."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.seen: list[tuple[str, str, int]] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        method, path = scope["method"], scope["path"]

        async def noting(message: Any) -> None:
            if message["type"] == "http.response.start":
                self.seen.append((method, path, message["status"]))
            await send(message)

        await self.app(scope, receive, noting)


class Switch:
    """
    The ASGI app the module's uvicorn serves: it hands each request to the app
    of the test running (a FastAPI app in a Recorder), unchanged.
    """

    def __init__(self) -> None:
        self.app: Any = None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        await self.app(scope, receive, send)


@contextlib.asynccontextmanager
async def uvicorn_serving(root_path: str = "") -> AsyncIterator[tuple[int, Switch]]:
    """A real uvicorn (lifespan on) on a loopback port: the port and the Switch it serves."""
    sock = _listening_socket()
    switch = Switch()
    config = uvicorn.Config(switch, log_level="warning", lifespan="on", root_path=root_path)
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        # Connections made before uvicorn accepts wait in the socket's backlog,
        # so nothing needs to poll for "started".
        yield sock.getsockname()[1], switch
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 10)
        sock.close()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def uvicorn_server() -> AsyncIterator[tuple[int, Switch]]:
    async with uvicorn_serving() as served:
        yield served


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def behind_proxy() -> AsyncIterator[tuple[int, Switch]]:
    """
    ``uvicorn --root-path /api`` behind a reverse proxy on loopback that takes
    ``/api/...`` and forwards it as ``/...`` (headers and body unchanged, no
    redirects followed): the port of the proxy, and the Switch uvicorn serves.
    """
    async with (
        uvicorn_serving(root_path="/api") as (upstream, switch),
        aiohttp.ClientSession(f"http://127.0.0.1:{upstream}") as http,
    ):

        async def forward(request: web.Request) -> web.Response:
            async with http.post(
                request.path_qs.removeprefix("/api"),
                data=await request.read(),
                headers={k: v for k, v in request.headers.items() if k.lower() != "host"},
                allow_redirects=False,
            ) as resp:
                return web.Response(status=resp.status, body=await resp.read())

        app = web.Application()
        app.router.add_post("/api/{tail:.*}", forward)
        async with TestServer(app, host="127.0.0.1", port=0) as proxy:
            yield proxy.port, switch


async def answered_through(receiver: relaycall.EventReceiver, emulator_url: str) -> None:
    """Dial through the emulator and see the call answered, which only callbacks can tell."""
    async with relaycall.AsyncRelay(
        PROJECT, TOKEN, base_url=emulator_url, events=receiver
    ) as relay:
        call = await relay.dial(**DIAL)
        assert await call.wait_for("answered", timeout=5) == "answered"


def callbacks(core: EmulatedPlatform) -> list[CallbackEntry]:
    return [e for e in core.journal if isinstance(e, CallbackEntry)]


def assert_all_delivered(core: EmulatedPlatform, path: str) -> None:
    """Every callback went to *path* (the slash form) and was answered 200."""
    sent = callbacks(core)
    assert sent, "the emulator sent no callbacks"
    assert {(urlsplit(e.url or "").path, e.status, e.outcome) for e in sent} == {
        (path, 200, "delivered")
    }


def fastapi_app(root_path: str) -> Any:
    if not root_path:
        return fastapi.FastAPI()
    # FastAPI deprecates its own root_path (for the server's); it still works
    # and users have it, so it is what these tests pin.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fastapi.FastAPI(root_path=root_path)


def wire(form: str, app: Any, receiver: relaycall.EventReceiver) -> None:
    """Wire *receiver* into the FastAPI *app* the way docs/receiver.md documents for *form*."""
    if form == "mount":
        app.mount("/relaycall/events", receiver.asgi_app())
    elif form == "add_route":
        app.add_route("/relaycall/events/", receiver.asgi_app(), methods=["POST"])
    else:
        receiver.add_to_app(app)


# --- FastAPI under uvicorn ---------------------------------------------------------------------


@pytest.mark.parametrize("root_path", ["", "/api"])
@pytest.mark.parametrize("form", ["mount", "add_route", "add_to_app"])
@pytest.mark.parametrize("slash", ["", "/"], ids=["no_slash", "slash"])
async def test_fastapi_recipes_take_every_callback(
    emulator, uvicorn_server, form, slash, root_path
):
    """
    docs/receiver.md's FastAPI recipes work as written under uvicorn, whichever form of
    public_url is given and under a FastAPI root_path: the status_url relaycall
    writes ends its path in "/", which a Starlette mount, a route at the slash
    form and add_to_app all take without a redirect, and the emulator posts it
    with the root_path in it.
    """
    (emulator_url, core), (port, switch) = emulator, uvicorn_server
    receiver = relaycall.EventReceiver(
        public_url=f"http://127.0.0.1:{port}{root_path}/relaycall/events{slash}", signing_key=KEY
    )
    app = fastapi_app(root_path)
    wire(form, app, receiver)
    switch.app = recorder = Recorder(app)
    await answered_through(receiver, emulator_url)
    await core.idle()
    want = f"{root_path}/relaycall/events/"
    assert_all_delivered(core, want)
    assert set(recorder.seen) == {("POST", want, 200)}
    assert receiver.stats.received == len(recorder.seen) > 0
    assert receiver.stats.rejected_auth == receiver.stats.rejected_body == 0


@pytest.mark.parametrize("root_path", ["", "/api"])
@pytest.mark.parametrize("form", ["mount", "add_route", "add_to_app"])
async def test_asgi_adapter_rebuilds_the_url_as_requested(
    emulator, uvicorn_server, form, root_path
):
    """
    With ``signature_url`` mapping the request's own URL (no proxy), the ASGI
    adapter rebuilds the URL the emulator posted to and signed: under a mount
    and a root_path, Starlette keeps the full path in ``path`` and the prefix in
    ``root_path``, so adding them would double the prefix (and refuse all 403).
    """
    (emulator_url, core), (port, switch) = emulator, uvicorn_server
    requested: list[str] = []

    def as_requested(url: str) -> str:
        requested.append(url)
        return url

    receiver = relaycall.EventReceiver(
        public_url=f"http://127.0.0.1:{port}{root_path}/relaycall/events",
        signing_key=KEY,
        signature_url=as_requested,
    )
    switch.app = fastapi_app(root_path)
    wire(form, switch.app, receiver)
    await answered_through(receiver, emulator_url)
    await core.idle()
    assert_all_delivered(core, f"{root_path}/relaycall/events/")
    assert requested == [e.url for e in callbacks(core)]


@pytest.mark.parametrize("form", ["mount", "add_route", "add_to_app"])
async def test_behind_a_proxy_and_uvicorn_root_path(emulator, behind_proxy, form):
    """
    Behind a proxy that strips /api, with ``uvicorn --root-path /api`` (what
    FastAPI now recommends over its own root_path): the prefix goes in
    public_url, the app mounts or routes at its own path, and add_to_app is
    given the path inside the app.
    """
    (emulator_url, core), (port, switch) = emulator, behind_proxy
    receiver = relaycall.EventReceiver(
        public_url=f"http://127.0.0.1:{port}/api/relaycall/events",
        path="/relaycall/events" if form == "add_to_app" else None,
        signing_key=KEY,
    )
    app = fastapi.FastAPI()
    wire(form, app, receiver)
    switch.app = recorder = Recorder(app)
    await answered_through(receiver, emulator_url)
    await core.idle()
    assert_all_delivered(core, "/api/relaycall/events/")
    # uvicorn puts its root_path back in front of the path the proxy forwarded.
    assert set(recorder.seen) == {("POST", "/api/relaycall/events/", 200)}


@pytest.mark.parametrize("form", ["mount", "add_to_app"])
async def test_starlette_app(emulator, uvicorn_server, form):
    """A plain Starlette app (no FastAPI) takes the callbacks mounted or via add_to_app."""
    starlette_applications = pytest.importorskip("starlette.applications")
    (emulator_url, core), (port, switch) = emulator, uvicorn_server
    receiver = relaycall.EventReceiver(
        public_url=f"http://127.0.0.1:{port}/relaycall/events", signing_key=KEY
    )
    switch.app = starlette_applications.Starlette()
    wire(form, switch.app, receiver)
    await answered_through(receiver, emulator_url)
    await core.idle()
    assert_all_delivered(core, "/relaycall/events/")


@pytest.mark.parametrize(
    ("path", "root_path"),
    [
        ("/api/relaycall/events/", "/api/relaycall/events"),  # the ASGI spec, Starlette 1.x
        ("/", "/api/relaycall/events"),  # servers and frameworks before the spec said so
        ("/api/relaycall/events/", ""),
    ],
)
async def test_asgi_url_without_raw_path(path, root_path):
    """
    For a server that sets no ``raw_path``, the ASGI adapter rebuilds the
    request URL from ``path`` and ``root_path`` whether or not ``path`` already
    holds the prefix: a signature over the URL requested is accepted.
    """
    url = "http://127.0.0.1:8000/api/relaycall/events/?t=x"
    receiver = relaycall.EventReceiver(
        public_url="http://127.0.0.1:8000/api/relaycall/events",
        signing_key=KEY,
        signature_url=lambda requested: requested,
        require_token=False,
    )
    body = (
        b'{"event_type": "calling.call.state", "params": {"call_id": "c1", "call_state": "ended"}}'
    )
    headers = [(k.lower().encode(), v.encode()) for k, v in sign(KEY, url, body).items()]
    scope = {
        "type": "http",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "root_path": root_path,
        "query_string": b"t=x",
        "headers": [(b"host", b"127.0.0.1:8000"), *headers],
    }
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await receiver.asgi_app()(scope, receive, send)
    assert sent[0]["status"] == 200
    assert receiver.stats.unknown_call == 1


@pytest.mark.parametrize("form", ["mount", "add_route", "add_to_app"])
async def test_other_methods_are_405(uvicorn_server, form):
    """
    A GET to the receiver, in each FastAPI form, is answered 405 (by the
    adapter under a mount, by the POST-only route otherwise), never a 500:
    ``asgi_app()`` is an object, so Starlette's ``add_route`` serves it as raw
    ASGI instead of calling it as ``endpoint(request)``.
    """
    port, switch = uvicorn_server
    receiver = relaycall.EventReceiver(public_url=f"http://127.0.0.1:{port}/relaycall/events")
    switch.app = fastapi.FastAPI()
    wire(form, switch.app, receiver)
    async with aiohttp.ClientSession() as http:
        async with http.get(receiver.status_url(CALL_ID), allow_redirects=False) as resp:
            assert resp.status == 405
        async with http.post(receiver.status_url(CALL_ID), data=b"nope") as resp:
            assert resp.status == 400  # reached the receiver: not JSON
    assert receiver.stats.rejected_body == 1


async def test_add_to_app_refuses_what_it_cannot_route():
    """add_to_app fails with a clear UsageError for an object that is no app it knows."""
    receiver = relaycall.EventReceiver(public_url="http://127.0.0.1:9/relaycall/events")
    with pytest.raises(relaycall.UsageError, match=r"aiohttp web\.Application or a Starlette"):
        receiver.add_to_app(object())


async def test_non_slash_route_form_is_still_redirected_by_starlette(emulator, uvicorn_server):
    """
    The one form that cannot work, pinned so the docs stay honest: a Starlette
    route at the path without "/" does not match the status_url relaycall
    writes, and Starlette answers 307; add_to_app or the slash form is needed.
    """
    (emulator_url, core), (port, switch) = emulator, uvicorn_server
    receiver = relaycall.EventReceiver(
        public_url=f"http://127.0.0.1:{port}/relaycall/events", signing_key=KEY
    )
    switch.app = fastapi.FastAPI()
    switch.app.add_route("/relaycall/events", receiver.asgi_app(), methods=["POST"])
    async with relaycall.AsyncRelay(
        PROJECT, TOKEN, base_url=emulator_url, events=receiver
    ) as relay:
        await relay.dial(**DIAL)
        core.clock.advance(5)  # past the ring: the call's callbacks are queued now
        await core.idle()
    assert {e.status for e in callbacks(core)} == {307}
    assert receiver.stats.received == 0


# --- aiohttp ---------------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def aiohttp_serving(app: web.Application, sock: socket.socket) -> AsyncIterator[None]:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        await web.SockSite(runner, sock).start()
        yield
    finally:
        await runner.cleanup()
        sock.close()


@pytest.mark.parametrize("form", ["add_to_app", "handle"])
@pytest.mark.parametrize("slash", ["", "/"], ids=["no_slash", "slash"])
async def test_aiohttp_app_takes_every_callback(emulator, form, slash):
    """
    In an aiohttp app, ``add_to_app`` and the documented
    ``add_post(receiver.path, receiver.handle)`` take the status_url relaycall
    writes, whichever form of public_url was given.
    """
    emulator_url, core = emulator
    sock = _listening_socket()
    receiver = relaycall.EventReceiver(
        public_url=f"http://127.0.0.1:{sock.getsockname()[1]}/relaycall/events{slash}",
        signing_key=KEY,
    )
    app = web.Application()
    if form == "add_to_app":
        receiver.add_to_app(app)
    else:
        app.router.add_post(receiver.path, receiver.handle)
    async with aiohttp_serving(app, sock):
        await answered_through(receiver, emulator_url)
        await core.idle()
    assert_all_delivered(core, "/relaycall/events/")
    assert receiver.stats.received > 0


@pytest.mark.parametrize("slash", ["", "/"], ids=["no_slash", "slash"])
async def test_standalone_server_takes_every_callback(emulator, slash):
    """
    The standalone server (``receiver.start()``) takes the callbacks whichever
    form its path and public_url were given in; the URL it returns, and the
    public_url it sets when none was given, end in "/".
    """
    emulator_url, core = emulator
    receiver = relaycall.EventReceiver(path=f"/relaycall/events{slash}", signing_key=KEY)
    url = await receiver.start()
    try:
        assert url == receiver.public_url
        assert url.endswith("/relaycall/events/")
        receiver.public_url = url.rstrip("/") + slash
        await answered_through(receiver, emulator_url)
        await core.idle()
    finally:
        await receiver.stop()
    assert_all_delivered(core, "/relaycall/events/")


async def test_own_status_url_without_slash_is_signed_as_posted(emulator):
    """
    A status_url the user wrote as public_url without the trailing "/" is
    signed by the platform as posted: when the signature over relaycall's
    slash form fails, the form without "/" is checked too. Token checks are
    off, as they must be for a URL relaycall did not write.
    """
    emulator_url, core = emulator
    sock = _listening_socket()
    public = f"http://127.0.0.1:{sock.getsockname()[1]}/relaycall/events"
    receiver = relaycall.EventReceiver(public_url=public, signing_key=KEY, require_token=False)
    app = web.Application()
    receiver.add_to_app(app)
    async with aiohttp_serving(app, sock):
        async with relaycall.AsyncRelay(
            PROJECT, TOKEN, base_url=emulator_url, events=receiver
        ) as relay:
            call = await relay.dial(
                **DIAL, status_url=public, status_events=["created", "ringing", "answered"]
            )
            assert await call.wait_for("answered", timeout=5) == "answered"
        await core.idle()
    assert_all_delivered(core, "/relaycall/events")
    assert receiver.stats.rejected_auth == 0


# --- the SWML fetch, in every mounting -----------------------------------------------------------

FETCH_CALL_ID = "5b0f4c1e-2f3a-4b5c-8d6e-7f8091a2b3c4"
DEFAULT_SWML = {
    "version": "1.0.0",
    "sections": {"main": [{"answer": {}}, {"sleep": {"duration": -1}}]},
}


def swml_fetch_body(call_id: str = FETCH_CALL_ID) -> bytes:
    """A §9.6 fetch body for an inbound phone call."""
    call = {
        "call_id": call_id, "node_id": "n", "segment_id": "s", "call_state": "created",
        "direction": "inbound", "type": "phone", "from": "+15551230000", "to": "+15557650000",
        "headers": [], "project_id": "b4d2c6c0-6a34-4f0e-9a3b-1c2d3e4f5a6b",
        "space_id": "0e1f2a3b-4c5d-4e6f-8a9b-0c1d2e3f4a5b",
    }  # fmt: skip
    return json.dumps({"call": call, "vars": {}, "envs": {}, "params": {}}).encode()


async def fetched_through(
    receiver: relaycall.EventReceiver, emulator_url: str
) -> tuple[int, str, Any, list[str]]:
    """POST a signed fetch to receiver.swml_url: status, content type, JSON body, handled ids."""
    handled: list[str] = []

    @receiver.on_incoming_call
    async def incoming(call: relaycall.IncomingCall) -> None:
        handled.append(call.id)

    body = swml_fetch_body()
    url = receiver.swml_url
    async with (
        relaycall.AsyncRelay(PROJECT, TOKEN, base_url=emulator_url, events=receiver),
        aiohttp.ClientSession() as http,
        http.post(url, data=body, headers=sign(KEY, url, body), allow_redirects=False) as resp,
    ):
        answer = await resp.read()
        return resp.status, resp.headers["Content-Type"], json.loads(answer), handled


@pytest.mark.parametrize("root_path", ["", "/api"])
@pytest.mark.parametrize("form", ["mount", "add_route", "add_to_app"])
async def test_fastapi_recipes_serve_the_swml_fetch(emulator, uvicorn_server, form, root_path):
    """
    receiver.swml_url (``<public_url>/swml/?t=...``) is served under uvicorn in
    every FastAPI recipe, a FastAPI root_path included: a mount covers it, a
    route needs ``receiver.swml_path`` routed too (as docs/inbound.md says),
    add_to_app routes it. 200, ``application/json``, the document; no redirect.
    """
    (emulator_url, _), (port, switch) = emulator, uvicorn_server
    receiver = relaycall.EventReceiver(
        public_url=f"http://127.0.0.1:{port}{root_path}/relaycall/events", signing_key=KEY
    )
    app = fastapi_app(root_path)
    wire(form, app, receiver)
    if form == "add_route":
        app.add_route("/relaycall/events/swml/", receiver.asgi_app(), methods=["POST"])
    switch.app = recorder = Recorder(app)
    status, kind, document, handled = await fetched_through(receiver, emulator_url)
    assert (status, kind, document, handled) == (
        200, "application/json", DEFAULT_SWML, [FETCH_CALL_ID],
    )  # fmt: skip
    assert recorder.seen == [("POST", f"{root_path}/relaycall/events/swml/", 200)]
    assert receiver.stats.incoming_calls == 1


@pytest.mark.parametrize("form", ["add_to_app", "handle", "standalone"])
async def test_aiohttp_and_standalone_serve_the_swml_fetch(emulator, form):
    """
    In an aiohttp app (add_to_app, or ``add_post(receiver.swml_path,
    receiver.handle)``) and on the standalone server, swml_url is served:
    200 ``application/json`` with the document.
    """
    emulator_url, _ = emulator
    if form == "standalone":
        receiver = relaycall.EventReceiver(signing_key=KEY)
        async with receiver.serve():
            got = await fetched_through(receiver, emulator_url)
    else:
        sock = _listening_socket()
        receiver = relaycall.EventReceiver(
            public_url=f"http://127.0.0.1:{sock.getsockname()[1]}/relaycall/events",
            signing_key=KEY,
        )
        app = web.Application()
        if form == "add_to_app":
            receiver.add_to_app(app)
        else:
            app.router.add_post(receiver.path, receiver.handle)
            app.router.add_post(receiver.swml_path, receiver.handle)
        async with aiohttp_serving(app, sock):
            got = await fetched_through(receiver, emulator_url)
    assert got == (200, "application/json", DEFAULT_SWML, [FETCH_CALL_ID])
