"""AsyncRelay against a real aiohttp server on 127.0.0.1: wire, lifecycle, errors, secrets."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import gc
import logging
import math
import socket
import sys
import time
import warnings
from collections.abc import AsyncIterator, Iterator
from typing import Any

import aiohttp
import attrs
import pytest
from aiohttp import web

import relaycall
from relaycall import commands
from tests._command_examples import EXAMPLES
from tests.conftest import CALL_ID, PROJECT, TOKEN, Respond, WireServer, call_leg


async def test_send_puts_exact_body_and_headers_on_the_wire(relay, server):
    """A typed command arrives as the exact JSON body, with auth, JSON and UA headers."""
    leg = await relay.send(commands.End(call_id=CALL_ID, reason="hangup"))
    assert leg.id == CALL_ID
    (seen,) = server.seen
    assert seen.method == "POST"
    assert seen.path == "/api/calling/calls"
    assert seen.json == {"command": "calling.end", "id": CALL_ID, "params": {"reason": "hangup"}}
    expected_auth = "Basic " + base64.b64encode(f"{PROJECT}:{TOKEN}".encode()).decode()
    assert seen.headers["Authorization"] == expected_auth
    assert seen.headers["Content-Type"] == "application/json"
    assert seen.headers["Accept"] == "application/json"
    assert seen.headers["User-Agent"].startswith(f"relaycall/{relaycall.__version__} ")
    assert seen.headers["Relaycall-Attempt"] == "1"


async def test_reply_parses_to_call_leg(relay, server):
    """The 200 body becomes a CallLeg; unknown fields are tolerated and kept in raw."""
    server.reply(Respond(body=call_leg(status="answered", duration=12, new_field={"x": 1})))
    leg = await relay.send(commands.Disconnect(call_id=CALL_ID))
    assert isinstance(leg, relaycall.CallLeg)
    assert (leg.status, leg.duration, leg.from_) == ("answered", 12, "+15551230000")
    assert leg.raw["new_field"] == {"x": 1}
    assert leg.created is not None
    assert leg.created.year == 2026


async def test_fabric_device_leg(relay, server):
    """A fabric_subscriber_device_leg reply parses to FabricDeviceLeg."""
    body = {
        "id": CALL_ID,
        "from": "a",
        "to": "/private/x",
        "direction": "outbound",
        "source": "realtime_api",
        "url": None,
        "charge": 0.01,
        "created_at": "2026-01-01T00:00:00Z",
        "charge_details": [{"description": "x", "charge": 0.01}],
        "status": None,
        "type": "fabric_subscriber_device_leg",
    }
    server.reply(Respond(body=body))
    leg = await relay.send(commands.Disconnect(call_id=CALL_ID))
    assert isinstance(leg, relaycall.FabricDeviceLeg)
    assert leg.charge_details == (relaycall.ChargeDetail("x", 0.01),)
    assert leg.status is None


@pytest.mark.parametrize(
    ("reply", "fragment"),
    [
        (Respond(raw=b"<html>oops</html>", headers={"Content-Type": "text/html"}), "got str"),
        (Respond(body=[1, 2]), "got list"),
        (Respond(body={"status": "queued"}), "not a call leg"),
        (Respond(body=call_leg(duration="long")), "not a call leg"),
        (Respond(raw=b""), "got NoneType"),
    ],
)
async def test_malformed_reply_is_response_validation_error(relay, server, reply, fragment):
    """A 200 that is not a call leg raises ResponseValidationError with the body kept."""
    server.reply(reply)
    with pytest.raises(relaycall.ResponseValidationError, match=fragment) as info:
        await relay.send(commands.Disconnect(call_id=CALL_ID))
    assert info.value.command == "calling.disconnect"
    assert not isinstance(info.value, aiohttp.ClientError)


@pytest.mark.parametrize(
    ("status", "cls"),
    [
        (400, relaycall.BadRequestError),
        (401, relaycall.AuthenticationError),
        (403, relaycall.PermissionDeniedError),
        (404, relaycall.NotFoundError),
        (409, relaycall.ConflictError),
        (422, relaycall.UnprocessableEntityError),
    ],
)
async def test_client_errors_are_typed_and_never_retried(relay, server, sleeps, status, cls):
    """400/401/403/404/409/422 raise their own class after exactly one request."""
    server.reply(Respond(status=status, body={"error": "nope"}, headers={"X-Request-Id": "rq-1"}))
    with pytest.raises(cls) as info:
        await relay.send(commands.PlayStop(call_id=CALL_ID, control_id="c1"))
    assert len(server.seen) == 1
    assert sleeps.waits == []
    err = info.value
    assert err.status_code == status
    assert err.request_id == "rq-1"
    assert err.body == {"error": "nope"}
    assert err.command == "calling.play.stop"
    assert f"HTTP {status}" in str(err)


async def test_422_errors_list_is_parsed(relay, server):
    """A 422 carries the parsed errors list, and the message names the attribute."""
    body = {
        "errors": [
            {
                "type": "validation_error",
                "code": "invalid_parameter",
                "message": "url must be a valid http or https url",
                "attribute": "url",
                "url": "https://signalwire.com/docs/apis/error-codes",
            }
        ],
        "statusCode": 422,
    }
    server.reply(Respond(status=422, body=body))
    with pytest.raises(relaycall.UnprocessableEntityError) as info:
        await relay.send(commands.End(call_id=CALL_ID))
    (item,) = info.value.errors
    assert item.code == "invalid_parameter"
    assert item.attribute == "url"
    assert "url: url must be a valid http or https url" in str(info.value)


async def test_execute_returns_raw_response(relay, server):
    """execute() sends any command by name and returns status, headers, body, retries."""
    server.reply(
        Respond(status=503, body={"error": "busy"}),
        Respond(body={"ok": True}, headers={"X-Thing": "1"}),
    )
    raw = await relay.execute(
        "calling.future_thing", call_id=CALL_ID, params={"a": 1}, idempotent=True
    )
    assert raw.status == 200
    assert raw.body == {"ok": True}
    assert raw.headers["X-Thing"] == "1"
    assert raw.retries_taken == 1
    assert (
        server.bodies
        == [{"command": "calling.future_thing", "id": CALL_ID, "params": {"a": 1}}] * 2
    )
    assert server.seen[1].headers["Relaycall-Attempt"] == "2"


async def test_execute_unknown_command_is_unsafe_by_default(relay, server):
    """An unknown command is not re-sent after a 500: its outcome is ambiguous."""
    server.reply(Respond(status=500, body={"error": "Internal Server Error"}))
    with pytest.raises(relaycall.AmbiguousOutcomeError):
        await relay.execute("calling.future_thing", call_id=CALL_ID)
    assert len(server.seen) == 1


async def test_execute_rejects_non_json_params(relay, server):
    """Params that cannot be JSON raise ValidationError and send nothing."""
    with pytest.raises(relaycall.ValidationError, match=r"calling\.x\.params"):
        await relay.execute("calling.x", params={"a": object()})
    with pytest.raises(relaycall.ValidationError):
        await relay.execute("calling.x", params={"a": float("nan")})
    assert server.seen == []


async def test_execute_names_a_circular_params_as_such(relay, server):
    """Params that contain themselves raise ValidationError saying so, and send nothing."""
    looped: dict[str, object] = {"a": [1]}
    looped["b"] = looped
    with pytest.raises(relaycall.ValidationError, match="Circular reference detected"):
        await relay.execute("calling.x", params=looped)
    assert server.seen == []


async def test_sidecar_status_text_reply(relay, server):
    """calling.ai_sidecar.status's '+OK key=value' text reply is parsed into counters."""
    server.reply(
        Respond(
            raw=b"+OK running=1 ticks=42 in_tokens=1200", headers={"Content-Type": "text/plain"}
        )
    )
    status = await relay.send(commands.AISidecarStatus(call_id=CALL_ID))
    assert status.ok
    assert status["ticks"] == 42
    assert status.running is True


# --- status_url from the receiver ----------------------------------------------------

RECEIVER_URL = "http://127.0.0.1:9/events"

#: The first example of every command class with a status_url field, sent without one.
STATUS_URL_EXAMPLES = {
    e.command.command_name: attrs.evolve(e.command, status_url=None)  # type: ignore[misc]
    for e in reversed(EXAMPLES)
    if "status_url" in attrs.fields_dict(type(e.command))
}


@pytest.mark.parametrize("name", sorted(STATUS_URL_EXAMPLES))
async def test_a_status_url_field_gets_the_receivers_url_except_on_update(server, sleeps, name):
    """
    Every command with a status_url field, sent without one, gets the receiver's URL;
    ``update`` goes out exactly as built (its status_url would re-point the call's
    state callbacks, which may go to the caller's own URL).
    """
    command = STATUS_URL_EXAMPLES[name]
    receiver = relaycall.EventReceiver(public_url=RECEIVER_URL)
    async with relaycall.AsyncRelay(
        PROJECT, TOKEN, base_url=server.base_url, events=receiver
    ) as relay:
        await relay.send(command)
    (body,) = server.bodies
    if name == "update":
        assert body == command.to_wire()
        assert "status_url" not in body["params"]
    else:
        url = body["params"]["status_url"]
        assert url.startswith(RECEIVER_URL)
        assert "?t=" in url  # the receiver's token


def test_every_command_with_a_status_url_field_is_covered():
    """The table above holds each of them (a new one joins it from the examples)."""
    assert set(STATUS_URL_EXAMPLES) == {
        name
        for name, cls in commands.BY_NAME.items()
        if "status_url" in attrs.fields_dict(cls)  # type: ignore[arg-type]
    }
    assert "update" in STATUS_URL_EXAMPLES


async def test_update_sends_its_status_url_only_when_given(server, sleeps):
    """call.update() with a receiver: the exact wire body, with the caller's status_url or none."""
    receiver = relaycall.EventReceiver(public_url=RECEIVER_URL)
    async with relaycall.AsyncRelay(
        PROJECT, TOKEN, base_url=server.base_url, events=receiver
    ) as relay:
        call = relay.call(CALL_ID)
        await call.update(url="https://example.test/next")
        await call.update(url="https://example.test/next", status_url="https://mine.test/cb")
    assert server.bodies == [
        {"command": "update", "params": {"id": CALL_ID, "url": "https://example.test/next"}},
        {
            "command": "update",
            "params": {
                "id": CALL_ID,
                "url": "https://example.test/next",
                "status_url": "https://mine.test/cb",
            },
        },
    ]


# --- configuration ------------------------------------------------------------------


def test_credentials_fall_back_to_environment(monkeypatch):
    """Project, token and space come from SIGNALWIRE_* when not given."""
    monkeypatch.setenv("SIGNALWIRE_PROJECT_ID", PROJECT)
    monkeypatch.setenv("SIGNALWIRE_API_TOKEN", TOKEN)
    monkeypatch.setenv("SIGNALWIRE_SPACE", "example")
    relay = relaycall.AsyncRelay()
    assert relay.url == "https://example.signalwire.com/api/calling/calls"
    assert relay.project_id == PROJECT


@pytest.mark.parametrize(
    ("env", "url"),
    [
        (
            {"SIGNALWIRE_BASE_URL": "http://127.0.0.1:8080"},
            "http://127.0.0.1:8080/api/calling/calls",
        ),
        ({"SIGNALWIRE_SPACE": "http://127.0.0.1:9/"}, "http://127.0.0.1:9/api/calling/calls"),
        (
            {"SIGNALWIRE_SPACE": "example", "SIGNALWIRE_BASE_URL": "http://127.0.0.1:7"},
            "http://127.0.0.1:7/api/calling/calls",
        ),
    ],
)
def test_base_url_from_environment(monkeypatch, env, url):
    """SIGNALWIRE_BASE_URL, or a URL in SIGNALWIRE_SPACE, points the session at a local server."""
    monkeypatch.delenv("SIGNALWIRE_SPACE", raising=False)
    monkeypatch.delenv("SIGNALWIRE_BASE_URL", raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert relaycall.AsyncRelay(PROJECT, TOKEN).url == url
    # An explicit space still wins over the environment.
    assert relaycall.AsyncRelay(PROJECT, TOKEN, "other").url.startswith("https://other.")


@pytest.mark.parametrize(
    ("kwargs", "missing"),
    [
        ({"token": TOKEN, "space": "x"}, "project_id"),
        ({"project_id": PROJECT, "space": "x"}, "token"),
        ({"space": "x"}, "project_id (or SIGNALWIRE_PROJECT_ID) and token"),
        ({"project_id": PROJECT, "token": TOKEN}, "needs a space"),
    ],
)
def test_missing_credentials_name_what_is_missing(kwargs, missing):
    """A missing credential raises UsageError naming it."""
    with pytest.raises(relaycall.UsageError, match=missing.replace("(", r"\(").replace(")", r"\)")):
        relaycall.AsyncRelay(**kwargs)


@pytest.mark.parametrize(
    ("space", "base_url", "url"),
    [
        ("example", None, "https://example.signalwire.com/api/calling/calls"),
        ("example.signalwire.com", None, "https://example.signalwire.com/api/calling/calls"),
        (
            "https://example.signalwire.com/",
            None,
            "https://example.signalwire.com/api/calling/calls",
        ),
        (None, "http://127.0.0.1:8080", "http://127.0.0.1:8080/api/calling/calls"),
        ("ignored", "http://127.0.0.1:8080/", "http://127.0.0.1:8080/api/calling/calls"),
        (
            None,
            "http://127.0.0.1:8080/api/calling/calls",
            "http://127.0.0.1:8080/api/calling/calls",
        ),
    ],
)
def test_space_and_base_url_forms(space, base_url, url):
    """space may be a name or host; base_url overrides it."""
    assert relaycall.AsyncRelay(PROJECT, TOKEN, space, base_url=base_url).url == url


@pytest.mark.parametrize("space", ["exa mple", "a/b", "", "-x"])
def test_bad_space_is_refused(space):
    """A space that is not a host name raises UsageError."""
    with pytest.raises(relaycall.UsageError):
        relaycall.AsyncRelay(PROJECT, TOKEN, space)


# --- lifecycle ---------------------------------------------------------------------------


async def test_use_after_close_raises(server):
    """Commands after close() raise ClientClosedError; close() is idempotent."""
    relay = relaycall.AsyncRelay(PROJECT, TOKEN, base_url=server.base_url)
    async with relay:
        await relay.send(commands.End(call_id=CALL_ID))
    assert relay.closed
    await relay.close()
    with pytest.raises(relaycall.ClientClosedError):
        await relay.send(commands.End(call_id=CALL_ID))
    with pytest.raises(relaycall.ClientClosedError):
        async with relay:
            pass
    assert len(server.seen) == 1


async def test_a_request_aborted_by_close_is_client_closed_and_not_resent(relay, server):
    """close() while a re-sendable command awaits its reply: ClientClosedError, one request."""
    server.reply(Respond(delay=5.0))
    task = asyncio.ensure_future(relay.send(commands.End(call_id=CALL_ID)))
    await asyncio.wait_for(server.arrived.wait(), 5)
    await relay.close()
    with pytest.raises(relaycall.ClientClosedError) as info:
        await asyncio.wait_for(task, 5)
    assert info.value.retries_taken == 0
    assert len(server.seen) == 1


async def test_lazy_open_without_context_manager(server):
    """The first command opens the session when async with was not used."""
    relay = relaycall.AsyncRelay(PROJECT, TOKEN, base_url=server.base_url)
    try:
        await relay.send(commands.End(call_id=CALL_ID))
    finally:
        await relay.close()
    assert len(server.seen) == 1


async def test_caller_session_is_used_and_not_closed(server):
    """A caller-supplied aiohttp session carries the requests and stays open."""
    traced: list[str] = []

    async def on_start(session, ctx, params):
        traced.append(str(params.url))

    trace = aiohttp.TraceConfig()
    trace.on_request_start.append(on_start)
    async with aiohttp.ClientSession(trace_configs=[trace]) as http:
        async with relaycall.AsyncRelay(
            PROJECT, TOKEN, base_url=server.base_url, session=http
        ) as relay:
            await relay.send(commands.End(call_id=CALL_ID))
        assert not http.closed
    assert traced == [server.base_url + "/api/calling/calls"]


async def test_unclosed_relay_warns(server):
    """An AsyncRelay dropped while open warns with ResourceWarning, like aiohttp."""
    relay = relaycall.AsyncRelay(PROJECT, TOKEN, base_url=server.base_url)
    await relay.send(commands.End(call_id=CALL_ID))
    session = relay._transport.session
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        del relay
        gc.collect()
    assert any(
        issubclass(w.category, ResourceWarning) and "unclosed <AsyncRelay" in str(w.message)
        for w in caught
    )
    await session.close()


# --- secrets ----------------------------------------------------------------------------------


async def test_token_never_in_repr_logs_or_errors(server, caplog, sleeps):
    """The API token appears in no repr, log line or exception text, even across retries."""
    caplog.set_level(logging.DEBUG, logger="relaycall")
    server.reply(
        Respond(status=503, body={"error": "x"}),
        Respond(status=401, body={"error": "Unauthorized"}),
    )
    relay = relaycall.AsyncRelay(PROJECT, TOKEN, base_url=server.base_url)
    async with relay:
        assert TOKEN not in repr(relay)
        with pytest.raises(relaycall.AuthenticationError) as info:
            await relay.send(commands.End(call_id=CALL_ID))
    texts = [repr(relay), str(info.value), repr(info.value), caplog.text, str(vars(relay))]
    for text in texts:
        assert TOKEN not in text
    assert "retrying calling.end" in caplog.text


def test_sip_password_hidden_from_repr_and_ambiguous_error():
    """A dial's SIP password is masked in repr and in AmbiguousOutcomeError text."""
    dial = commands.Dial(from_="+1555", to="sip:a@b.c", url="https://x.test/s", password="hunter2")
    assert "hunter2" not in repr(dial)
    err = relaycall.AmbiguousOutcomeError(
        "dial", dial.to_wire(), relaycall.ReadTimeout("timed out")
    )
    assert "hunter2" not in str(err)
    assert err.body["params"]["password"] == "hunter2"


# --- timeouts and transport errors ----------------------------------------------------


async def test_slow_server_hits_read_timeout(server, sleeps):
    """A reply slower than the timeout raises ReadTimeout, a builtin TimeoutError."""
    server.reply(*[Respond(delay=2.0)] * 3)
    async with relaycall.AsyncRelay(PROJECT, TOKEN, base_url=server.base_url, timeout=0.2) as relay:
        started = time.monotonic()
        with pytest.raises(relaycall.ReadTimeout) as info:
            await relay.send(commands.PlayStop(call_id=CALL_ID, control_id="c"))
        assert time.monotonic() - started < 1.9
    assert isinstance(info.value, TimeoutError)
    assert info.value.retries_taken == 2
    assert len(server.seen) == 3


async def test_per_call_timeout_overrides_session(relay, server):
    """timeout= on send() replaces the session's for that command."""
    server.reply(Respond(delay=1.0))
    with pytest.raises(relaycall.ReadTimeout):
        await relay.send(
            commands.PlayStop(call_id=CALL_ID, control_id="c"), timeout=0.1, retry=None
        )
    assert len(server.seen) == 1


@contextlib.asynccontextmanager
async def _relay_on(
    handler: Any, timeout: Any, **options: Any
) -> AsyncIterator[relaycall.AsyncRelay]:
    """An AsyncRelay with *timeout*, on an aiohttp server on 127.0.0.1 answering with *handler*."""
    app = web.Application()
    app.router.add_post("/api/calling/calls", handler)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    base_url = f"http://127.0.0.1:{runner.addresses[0][1]}"
    try:
        async with relaycall.AsyncRelay(
            PROJECT, TOKEN, base_url=base_url, timeout=timeout, **options
        ) as r:
            yield r
    finally:
        await runner.cleanup()


async def test_a_trickling_reply_is_cut_at_the_total_timeout():
    """
    A reply whose bytes keep coming, each well inside the read bound, still ends at the
    total bound: with read == total the read timer is left out (it could never fire
    first), and the total one must then hold on its own.
    """
    release = asyncio.Event()

    async def trickle(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        await response.prepare(request)
        while not release.is_set():
            await response.write(b" ")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(release.wait(), 0.05)
        return response

    async with _relay_on(trickle, timeout=0.5) as relay:
        started = time.monotonic()
        try:
            with pytest.raises(relaycall.ReadTimeout, match="total timeout"):
                await asyncio.wait_for(
                    relay.send(commands.PlayStop(call_id=CALL_ID, control_id="c"), retry=None),
                    10,  # far above 0.5 s: only a missing total bound reaches it
                )
        finally:
            release.set()
        assert 0.45 < time.monotonic() - started < 5


async def test_a_read_bound_shorter_than_the_total_one_still_applies():
    """With read < total, the read timer stays: a reply that stalls fails at the read bound."""
    release = asyncio.Event()

    async def stall(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        await response.prepare(request)
        await release.wait()
        return response

    timeout = relaycall.Timeout(connect=5, read=0.3, total=20)
    async with _relay_on(stall, timeout) as relay:
        started = time.monotonic()
        try:
            with pytest.raises(relaycall.ReadTimeout, match="read timeout"):
                await asyncio.wait_for(
                    relay.send(commands.PlayStop(call_id=CALL_ID, control_id="c"), retry=None),
                    10,
                )
        finally:
            release.set()
        assert time.monotonic() - started < 5


async def test_a_total_timeout_of_seconds_is_not_rounded_up():
    """
    Timeout(total=5) ends the attempt 5 s after it began, not at the next whole second
    of the loop's clock (aiohttp's rounding of timeouts of 5 s or more, left off here).

    The attempt starts just after a whole second, where rounding up would add almost
    a second.
    """
    release = asyncio.Event()

    async def silent(request: web.Request) -> web.Response:
        await release.wait()
        return web.json_response(call_leg())

    loop = asyncio.get_running_loop()
    async with _relay_on(silent, relaycall.Timeout(connect=1, read=None, total=5)) as relay:
        # Not waiting for an event: moving the start to where rounding would show most.
        await asyncio.sleep(math.ceil(loop.time()) - loop.time() + 0.02)
        started = loop.time()
        try:
            with pytest.raises(relaycall.ReadTimeout):
                await relay.send(commands.PlayStop(call_id=CALL_ID, control_id="c"), retry=None)
        finally:
            release.set()
        assert 4.95 < loop.time() - started < 5.5


@contextlib.contextmanager
def _port_that_never_accepts() -> Iterator[int]:
    """
    A loopback port whose accept queue is full: a connection to it never opens.

    ``listen(0)`` queues one connection, which one blocking connect fills; the
    kernel then drops every SYN, and a connect waits until its caller's timeout.
    """
    if not sys.platform.startswith("linux"):
        pytest.skip("needs Linux's full accept queue dropping SYNs (others answer RST)")
    with socket.socket() as server, socket.socket() as filler:
        server.bind(("127.0.0.1", 0))
        server.listen(0)
        port = server.getsockname()[1]
        filler.settimeout(5)
        filler.connect(("127.0.0.1", port))
        yield port


@pytest.mark.parametrize(
    "timeout",
    [1.0, relaycall.Timeout(connect=None, total=1), relaycall.Timeout(connect=3, total=1)],
    ids=["a number", "connect None", "connect over total"],
)
async def test_a_connection_that_never_opens_is_a_connect_timeout(timeout):
    """
    A dial whose connection never opens ends as ConnectTimeout (nothing was sent), not as
    an ambiguous dial, when the connect bound is not shorter than the total one: the total
    timer starts first, so the connect one is ended just before it.
    """
    with _port_that_never_accepts() as port:
        base_url = f"http://127.0.0.1:{port}"
        async with relaycall.AsyncRelay(
            PROJECT, TOKEN, base_url=base_url, timeout=timeout, retry=None
        ) as relay:
            started = time.monotonic()
            with pytest.raises(relaycall.ConnectTimeout, match="not sent"):
                await asyncio.wait_for(
                    relay.dial(from_="+15551230000", to="+15557650000", url="https://x.test/s"),
                    10,  # far above the 1 s bound: only a missing bound reaches it
                )
            assert 0.9 < time.monotonic() - started < 5


async def test_a_dial_that_waits_for_a_pooled_connection_past_the_total_is_not_sent():
    """
    With connect=None, a dial still waiting for a pooled connection when the total bound
    comes is a ConnectTimeout (it never reached the server), not an ambiguous dial.
    """
    release = asyncio.Event()
    seen: list[bytes] = []

    async def hold(request: web.Request) -> web.Response:
        seen.append(await request.read())
        await release.wait()
        return web.json_response(call_leg())

    timeout = relaycall.Timeout(connect=None, read=None, total=1)
    # One connection, and room for two commands in flight: the second waits for it.
    limits = relaycall.Limits(max_connections=1, max_concurrency=2)
    dial = {"from_": "+15551230000", "to": "+15557650000", "url": "https://x.test/s"}
    async with _relay_on(hold, timeout, limits=limits, retry=None) as relay:
        try:
            first, second = await asyncio.wait_for(
                asyncio.gather(relay.dial(**dial), relay.dial(**dial), return_exceptions=True),
                10,
            )
        finally:
            release.set()
    assert isinstance(first, relaycall.AmbiguousOutcomeError)  # sent, no reply in time
    assert isinstance(second, relaycall.ConnectTimeout)
    assert len(seen) == 1


async def test_connection_refused_is_connect_error(closed_port, sleeps):
    """Nobody listening: ConnectError after every attempt, and it says nothing was sent."""
    async with relaycall.AsyncRelay(
        PROJECT, TOKEN, base_url=f"http://127.0.0.1:{closed_port}"
    ) as relay:
        with pytest.raises(relaycall.ConnectError, match="not sent") as info:
            await relay.send(commands.Dial(from_="+1555", to="+1666", url="https://x.test/swml"))
    assert info.value.retries_taken == 2
    assert len(sleeps.waits) == 2
    assert not isinstance(info.value, aiohttp.ClientError)


# --- limits --------------------------------------------------------------------------


async def test_max_concurrency_bounds_in_flight_requests(server):
    """No more than max_concurrency requests are in flight at once."""
    server.hold = 0.02
    async with relaycall.AsyncRelay(
        PROJECT, TOKEN, base_url=server.base_url, limits=relaycall.Limits(max_concurrency=3)
    ) as relay:
        await asyncio.gather(*(relay.send(commands.End(call_id=CALL_ID)) for _ in range(12)))
    assert server.peak_in_flight == 3
    assert len(server.seen) == 12


async def test_rate_limit_spaces_commands(server):
    """commands_per_second spaces sends: 6 commands at 50/s take at least 0.1 s."""
    async with relaycall.AsyncRelay(
        PROJECT,
        TOKEN,
        base_url=server.base_url,
        limits=relaycall.Limits(commands_per_second=50),
    ) as relay:
        started = time.monotonic()
        await asyncio.gather(*(relay.send(commands.End(call_id=CALL_ID)) for _ in range(6)))
        elapsed = time.monotonic() - started
    assert elapsed >= 0.1 - 0.005
    assert len(server.seen) == 6


def test_the_receiver_given_as_events_is_relay_receiver():
    """
    ``AsyncRelay(events=receiver)`` keeps it as ``relay.receiver`` and binds it to that session.

    ``relay.events`` (a receiver, while ``call.events()`` iterates) and
    ``call.ended()`` (the same as ``call.wait()``) are gone.
    """
    receiver = relaycall.EventReceiver()
    relay = relaycall.AsyncRelay(PROJECT, TOKEN, base_url="http://127.0.0.1:9", events=receiver)
    assert relay.receiver is receiver
    assert relaycall.AsyncRelay(PROJECT, TOKEN, base_url="http://127.0.0.1:9").receiver is None
    assert not hasattr(relay, "events")
    assert not hasattr(relay.call(CALL_ID), "ended")
    with pytest.raises(relaycall.UsageError, match="already serves another AsyncRelay"):
        relaycall.AsyncRelay(PROJECT, TOKEN, base_url="http://127.0.0.1:9", events=receiver)


def test_bad_limits_and_timeouts_are_usage_errors():
    """Nonsense limits or timeouts fail at construction with UsageError."""
    with pytest.raises(relaycall.UsageError):
        relaycall.Limits(max_concurrency=0)
    with pytest.raises(relaycall.UsageError):
        relaycall.Limits(commands_per_second=-1)
    with pytest.raises(relaycall.UsageError):
        relaycall.Timeout(total=-1)
    with pytest.raises(relaycall.UsageError):
        relaycall.RetryPolicy(jitter=2)


async def test_wire_server_sanity(server: WireServer):
    """The fixture server itself answers a default call leg (guards the harness)."""
    async with (
        aiohttp.ClientSession() as http,
        http.post(server.base_url + "/api/calling/calls", json={"id": CALL_ID}) as r,
    ):
        assert (await r.json())["id"] == CALL_ID
