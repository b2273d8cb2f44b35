"""
relaycall.verify_signature and its request helpers (relaycall/_signature.py, _webhooks.py).

Known answers first (a vector written out literally, and the documented rule computed
here with hmac), then what must be False (wrong key, tampered body, URL or query,
missing or garbled headers: never an exception), then the helpers inside real aiohttp
and uvicorn/Starlette servers on 127.0.0.1, fed by the emulator's signed SWML fetch.
The receiver's verdict is checked to be verify_signature's on any headers.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import socket
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import pytest
import yarl
from aiohttp import web
from aiohttp.test_utils import make_mocked_request
from hypothesis import given
from hypothesis import strategies as st

import relaycall
from relaycall.testing import Emulator

KEY = "PSK_relaycall_example"
URL = "https://app.example.com/swml/?t=s.abc"
BODY = b'{"call":{"call_id":"c-1"}}'
# Computed once with hmac from the documented rule (hex HMAC of URL + body) and
# written out, so that a change of rule in both the code and the test cannot pass.
SHA1 = "d566fede990895aa7c07222433014193ee7a3604"
SHA256 = "6a1ccf6162eefee62bfb46161954280ecd34e9566b7be4115026b7bebfaed5f5"
DOCUMENT = {"version": "1.0.0", "sections": {"main": [{"hangup": {}}]}}


def signed(key: str, url: str, body: bytes) -> dict[str, str]:
    """The two signature headers for *body* posted to *url*, by the documented rule."""
    data = url.encode() + body
    return {
        "X-SignalWire-Signature": hmac.new(key.encode(), data, hashlib.sha1).hexdigest(),
        "X-SignalWire-SHA256-Signature": hmac.new(key.encode(), data, hashlib.sha256).hexdigest(),
    }


# --- known answers --------------------------------------------------------------------------------


def test_the_literal_vector_is_the_documented_rule() -> None:
    """The literal vector is HMAC-SHA1/SHA256 of URL + body: the test's own rule agrees."""
    assert signed(KEY, URL, BODY) == {
        "X-SignalWire-Signature": SHA1,
        "X-SignalWire-SHA256-Signature": SHA256,
    }


@pytest.mark.parametrize(
    "headers",
    [
        {"X-SignalWire-Signature": SHA1, "X-SignalWire-SHA256-Signature": SHA256},
        {"X-SignalWire-Signature": SHA1},
        {"X-SignalWire-SHA256-Signature": SHA256},
        {"x-signalwire-signature": SHA1.upper()},  # header case and hex case do not matter
        {"X-SIGNALWIRE-SHA256-SIGNATURE": f"  {SHA256}  "},
    ],
    ids=["both", "sha1", "sha256", "lowercase-name-uppercase-hex", "spaces"],
)
def test_the_literal_vector_verifies(headers: dict[str, str]) -> None:
    """The vector verifies with either header or both, whatever the case of names and hex."""
    assert relaycall.verify_signature(KEY, URL, BODY, headers) is True


def test_bytes_key_and_bytearray_body_verify() -> None:
    """The key may be bytes and the body a bytearray or memoryview: the same signature."""
    headers = {"X-SignalWire-Signature": SHA1}
    assert relaycall.verify_signature(KEY.encode(), URL, bytearray(BODY), headers)
    assert relaycall.verify_signature(KEY, URL, memoryview(BODY), headers)


@given(
    url=st.text(min_size=1, max_size=80),
    body=st.binary(max_size=200),
    key=st.text(min_size=1, max_size=40),
)
def test_any_request_signed_by_the_rule_verifies(url: str, body: bytes, key: str) -> None:
    """Any URL (non-ASCII included), body and key, signed by the rule, verifies."""
    try:
        url.encode()
        key.encode()
    except UnicodeEncodeError:
        return  # lone surrogates: the test's own rule cannot encode them
    assert relaycall.verify_signature(key, url, body, signed(key, url, body))


# --- what is refused ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "url", "body", "headers"),
    [
        ("another-key", URL, BODY, {"X-SignalWire-Signature": SHA1}),
        (KEY, URL, BODY + b" ", {"X-SignalWire-Signature": SHA1}),
        (KEY, URL, b'{"call":{"call_id":"c-2"}}', {"X-SignalWire-SHA256-Signature": SHA256}),
        (KEY, URL.replace("/swml/", "/swml"), BODY, {"X-SignalWire-Signature": SHA1}),
        (KEY, URL.replace("t=s.abc", "t=s.abd"), BODY, {"X-SignalWire-Signature": SHA1}),
        (KEY, URL.split("?", maxsplit=1)[0], BODY, {"X-SignalWire-Signature": SHA1}),
        (KEY, URL.replace("https", "http"), BODY, {"X-SignalWire-Signature": SHA1}),
        (KEY, URL.replace(".com/", ".com:443/"), BODY, {"X-SignalWire-Signature": SHA1}),
        (KEY, URL, BODY, {}),
        (KEY, URL, BODY, {"X-SignalWire-Signature": ""}),
        (KEY, URL, BODY, {"X-SignalWire-Signature": SHA1[:-1]}),
        (KEY, URL, BODY, {"X-SignalWire-Signature": SHA1, "X-SignalWire-SHA256-Signature": "0"}),
        (KEY, URL, BODY, {"X-SignalWire-Signature": "0", "X-SignalWire-SHA256-Signature": SHA256}),
        (KEY, URL, BODY, {"X-SignalWire-Signature": SHA256}),  # the wrong algorithm's
    ],
    ids=[
        "wrong-key",
        "tampered-body",
        "other-body",
        "tampered-path",
        "tampered-query",
        "query-dropped",
        "other-scheme",
        "port-written",
        "no-headers",
        "empty",
        "truncated",
        "sha256-wrong",
        "sha1-wrong",
        "swapped",
    ],
)
def test_wrong_or_missing_signatures_are_false(
    key: str, url: str, body: bytes, headers: dict[str, str]
) -> None:
    """A wrong key, a changed body, URL, query, scheme or port, or a missing, empty or wrong
    header (either one, when both are sent) is False."""
    assert relaycall.verify_signature(key, url, body, headers) is False


garbage = (
    st.text(max_size=80)
    | st.binary(max_size=80)
    | st.sampled_from(
        ["é" * 40, "\ud800", SHA1 + "\x00", "\uff24\uff25\uff21\uff24", "\u0660" * 40]
    )
)


@given(sha1=garbage, sha256=garbage | st.none())
def test_garbage_header_values_are_false_never_an_exception(sha1: Any, sha256: Any) -> None:
    """Header values of any text or bytes (non-ASCII, surrogates, NUL) are False, never raise."""
    headers: dict[str, Any] = {"X-SignalWire-Signature": sha1}
    if sha256 is not None:
        headers["X-SignalWire-SHA256-Signature"] = sha256
    assert relaycall.verify_signature(KEY, URL, BODY, headers) is False


@given(headers=st.dictionaries(st.text(max_size=40), st.text(max_size=80), max_size=5))
def test_the_receiver_answers_what_verify_signature_says(headers: dict[str, str]) -> None:
    """
    On any headers, EventReceiver refuses (403) exactly the callbacks verify_signature
    calls unsigned: the receiver runs the same check.
    """
    url = "http://127.0.0.1:9/e/"
    body = b'{"call_id":"c-1","state":"playing","control_id":"x"}'
    if headers and relaycall.verify_signature(KEY, url, body, headers):
        return  # hypothesis does not forge HMACs
    for signature in (None, signed(KEY, url, body)["X-SignalWire-Signature"]):
        given_headers = dict(headers)
        if signature is not None:
            given_headers = {k: v for k, v in headers.items() if "signalwire" not in k.lower()}
            given_headers["X-SignalWire-Signature"] = signature
        rx = relaycall.EventReceiver(public_url=url, signing_key=KEY, require_token=False)
        status, _ = rx.ingest(body, url=url, query="", headers=given_headers)
        ok = relaycall.verify_signature(KEY, url, body, given_headers)
        assert ok is (signature is not None)
        assert (status == 403) is not ok, (status, given_headers)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((None, URL, BODY, {}), "signing_key must be a string"),
        (("", URL, BODY, {}), "signing_key is empty"),
        ((b"", URL, BODY, {}), "signing_key is empty"),
        ((KEY, b"https://x/", BODY, {}), "url must be a string"),
        ((KEY, URL, BODY.decode(), {}), "body must be the raw request body as bytes"),
        ((KEY, URL, BODY, [("X-SignalWire-Signature", SHA1)]), "headers must be a mapping"),
    ],
    ids=["key-none", "key-empty", "key-empty-bytes", "url-bytes", "body-str", "headers-list"],
)
def test_misused_arguments_are_usage_errors(args: tuple[Any, ...], message: str) -> None:
    """A wrong argument type, or an empty key anyone could sign with, is a UsageError naming it."""
    with pytest.raises(relaycall.UsageError, match=message):
        relaycall.verify_signature(*args)


# --- the helpers in real servers -------------------------------------------------------------


class Seen:
    """What a handler using a helper found: its verdicts and the JSON it read afterwards."""

    def __init__(self) -> None:
        self.verdicts: list[bool] = []
        self.documents: list[Any] = []
        self.arrived = asyncio.Event()


def _make_aiohttp_app(seen: Seen, **options: Any) -> web.Application:
    async def swml(request: web.Request) -> web.Response:
        ok = await relaycall.verify_aiohttp_request(KEY, request, **options)
        seen.verdicts.append(ok)
        seen.arrived.set()
        if not ok:
            raise web.HTTPForbidden()
        seen.documents.append(await request.json())  # still readable after the check
        return web.json_response(DOCUMENT)

    app = web.Application(client_max_size=4096)
    app.router.add_post("/hooks/swml", swml)
    return app


async def _serve_aiohttp(seen: Seen, **options: Any) -> tuple[web.AppRunner, str]:
    runner = web.AppRunner(_make_aiohttp_app(seen, **options), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    return runner, f"http://127.0.0.1:{port}/hooks/swml"


def _make_starlette_app(seen: Seen, **options: Any) -> Any:
    from starlette.applications import Starlette  # noqa: PLC0415
    from starlette.requests import Request  # noqa: PLC0415
    from starlette.responses import JSONResponse, Response  # noqa: PLC0415
    from starlette.routing import Route  # noqa: PLC0415

    async def swml(request: Request) -> Response:
        ok = await relaycall.verify_starlette_request(KEY, request, **options)
        seen.verdicts.append(ok)
        seen.arrived.set()
        if not ok:
            return Response(status_code=403)
        seen.documents.append(await request.json())  # still readable after the check
        return JSONResponse(DOCUMENT)

    return Starlette(routes=[Route("/hooks/swml", swml, methods=["POST"])])


class Uvicorn:
    """A uvicorn server in this event loop on a loopback socket bound before it starts."""

    def __init__(self, app: Any) -> None:
        import uvicorn  # noqa: PLC0415

        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen()  # connections wait in the backlog until uvicorn accepts them
        self.port = self.sock.getsockname()[1]
        self.server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
        self.task = asyncio.create_task(self.server.serve(sockets=[self.sock]))

    async def close(self) -> None:
        self.server.should_exit = True
        await asyncio.wait_for(self.task, 10)
        self.sock.close()


Served = Callable[..., Any]


@pytest.fixture(params=["aiohttp", "starlette"])
async def serve(request: pytest.FixtureRequest) -> AsyncIterator[Served]:
    """Start a server of the parametrised kind whose handler uses the helper; yield its URL."""
    stops: list[Callable[[], Any]] = []

    async def start(seen: Seen, **options: Any) -> str:
        if request.param == "aiohttp":
            runner, url = await _serve_aiohttp(seen, **options)
            stops.append(runner.cleanup)
            return url
        server = Uvicorn(_make_starlette_app(seen, **options))
        stops.append(server.close)
        return f"http://127.0.0.1:{server.port}/hooks/swml"

    yield start
    for stop in stops:
        await stop()


async def test_the_emulators_signed_swml_fetch_verifies(serve: Served) -> None:
    """
    The emulator's SWML fetch (reference §9.6), signed with the project's key, verifies in
    a handler using the helper, which then reads the fetch's JSON and answers a document
    the emulator runs (the call hangs up). Under another key the same fetch is False.
    """
    for emulator_key, verified in ((KEY, True), ("not-the-key", False)):
        seen = Seen()
        url = await serve(seen)
        async with Emulator(time_scale=100, signing_key=emulator_key) as emu:
            call_id = await emu.incoming_call("+15551230000", "+15557650000", url=url)
            assert seen.verdicts == [verified]
            if verified:
                (fetch,) = seen.documents
                assert fetch["call"]["call_id"] == call_id


async def _post(url: str, body: bytes, headers: dict[str, str]) -> int:
    # encoded=True: sent exactly as written (yarl would otherwise requote "%2F" to "/").
    target = yarl.URL(url, encoded=True)
    async with aiohttp.ClientSession() as http, http.post(target, data=body, headers=headers) as r:
        await r.read()
        return r.status


async def test_tampered_and_unsigned_requests_are_refused_by_the_helper(serve: Served) -> None:
    """Through the server: a signed request passes; its body, query or signature changed, or
    unsigned, the helper says False (the handler answers 403)."""
    seen = Seen()
    url = await serve(seen)
    body = json.dumps({"call": {"call_id": "c-9"}}).encode()
    good = signed(KEY, url + "?t=1", body)
    assert await _post(url + "?t=1", body, good) == 200
    assert await _post(url + "?t=1", body + b" ", good) == 403
    assert await _post(url + "?t=2", body, good) == 403
    assert await _post(url + "?t=1", body, {}) == 403
    assert await _post(url + "?t=1", body, {"X-SignalWire-Signature": "é" * 40}) == 403
    assert seen.verdicts == [True, False, False, False, False]


async def test_escaped_paths_are_checked_as_the_client_sent_them(serve: Served) -> None:
    """A URL with escapes (%20, %2F) is signed as sent; the helper checks that form, not a
    decoded one."""
    seen = Seen()
    base = await serve(seen)
    url = base.replace("/swml", "/sw%6dl") + "?name=a%20b&x=%2F"
    body = b'{"call":{}}'
    assert await _post(url, body, signed(KEY, url, body)) == 200
    assert seen.verdicts == [True]


async def test_behind_a_proxy_the_url_option_names_the_public_url(serve: Served) -> None:
    """
    Signed over the public URL (as a proxy's clients see it), a request is False with the
    default (the URL the server saw) and True when ``url=`` maps it to the public one, as a
    string or as a function of the URL the server saw.
    """
    public = "https://app.example.com/hooks/swml?t=1"
    body = b'{"call":{"call_id":"c-3"}}'
    headers = signed(KEY, public, body)
    local_base = ""

    def to_public(received: str) -> str:
        assert received == local_base + "?t=1"  # the URL the request arrived at
        return received.replace(local_base, "https://app.example.com/hooks/swml")

    verdicts: list[bool] = []
    for option in (None, public, to_public):
        seen = Seen()
        local_base = await serve(seen, url=option) if option is not None else await serve(seen)
        await _post(local_base + "?t=1", body, headers)
        verdicts += seen.verdicts
    assert verdicts == [False, True, True]


async def test_forwarded_headers_are_not_trusted(serve: Served) -> None:
    """X-Forwarded-Host/-Proto do not change the URL checked: a request signed over the
    forwarded URL is False unless ``url=`` says so."""
    seen = Seen()
    url = await serve(seen)
    body = b'{"call":{}}'
    public = "https://app.example.com/hooks/swml"
    headers = {
        **signed(KEY, public, body),
        "X-Forwarded-Host": "app.example.com",
        "X-Forwarded-Proto": "https",
        "Forwarded": "host=app.example.com;proto=https",
    }
    assert await _post(url, body, headers) == 403
    assert seen.verdicts == [False]


async def test_a_body_over_the_limit_is_false_unread(serve: Served) -> None:
    """A body over ``max_body_size`` is False, announced (Content-Length) or chunked."""
    seen = Seen()
    url = await serve(seen, max_body_size=100)
    body = b'{"call":{"pad":"' + b"x" * 200 + b'"}}'
    assert await _post(url, body, signed(KEY, url, body)) == 403

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(4):
            yield b"x" * 60

    async with (
        aiohttp.ClientSession() as http,
        http.post(url, data=chunks(), headers=signed(KEY, url, b"x" * 240)) as resp,
    ):
        assert resp.status == 403
    assert seen.verdicts == [False, False]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"url": 5}, "url must be the signed URL"),
        ({"max_body_size": 0}, "max_body_size must be a positive integer"),
        ({"max_body_size": True}, "max_body_size must be a positive integer"),
    ],
    ids=["url-int", "size-zero", "size-bool"],
)
async def test_helpers_refuse_misused_arguments(options: dict[str, Any], message: str) -> None:
    """The helpers check their arguments before reading anything, naming each."""
    from starlette.requests import Request  # noqa: PLC0415

    aiohttp_request = make_mocked_request("POST", "/hooks/swml")
    starlette_request = Request({"type": "http", "method": "POST", "headers": []})
    with pytest.raises(relaycall.UsageError, match=message):
        await relaycall.verify_aiohttp_request(KEY, aiohttp_request, **options)
    with pytest.raises(relaycall.UsageError, match=message):
        await relaycall.verify_starlette_request(KEY, starlette_request, **options)
    with pytest.raises(relaycall.UsageError, match="signing_key is empty"):
        await relaycall.verify_aiohttp_request("", aiohttp_request)


@pytest.mark.parametrize("adapter", ["aiohttp", "asgi"])
async def test_the_receiver_checks_the_query_as_the_client_sent_it(adapter: str) -> None:
    """
    A status_url of your own with an escaped query (``?who=a%20b&x=%2F``), signed as the
    platform signs it, is accepted by EventReceiver under aiohttp as under ASGI: the query
    checked is the one sent, not aiohttp's decoded ``query_string``.
    """
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    public = f"http://127.0.0.1:{port}/e"
    rx = relaycall.EventReceiver(public_url=public, signing_key=KEY, require_token=False)
    body = b'{"call_id":"c-1","control_id":"x","state":"playing"}'
    url = public + "/?who=a%20b&x=%2F"
    server: Any
    if adapter == "aiohttp":
        sock.close()
        await rx.start("127.0.0.1", port)
    else:
        from starlette.applications import Starlette  # noqa: PLC0415
        from starlette.routing import Mount  # noqa: PLC0415

        sock.close()
        server = Uvicorn(Starlette(routes=[Mount("/e", rx.asgi_app())]))
        url = url.replace(str(port), str(server.port))
        rx.public_url = public.replace(str(port), str(server.port))
    try:
        assert await _post(url, body, signed(KEY, url, body)) == 200
        assert await _post(url, body, signed(KEY, url.replace("%20", "+"), body)) == 403
    finally:
        if adapter == "aiohttp":
            await rx.stop()
        else:
            await server.close()


async def _raw_post(port: int, target: str, host: str, body: bytes, headers: dict[str, str]) -> int:
    """POST with the request target and Host header exactly as given; the status answered."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    head = f"POST {target} HTTP/1.1\r\nHost: {host}\r\nContent-Length: {len(body)}\r\n"
    head += "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    writer.write(head.encode() + b"Connection: close\r\n\r\n" + body)
    await writer.drain()
    status_line = await asyncio.wait_for(reader.readline(), 10)
    writer.close()
    return int(status_line.split()[1])


async def test_the_url_checked_is_the_host_and_target_as_sent(serve: Served) -> None:
    """
    The default URL is the Host header and request target as the client sent them: a
    signature over ``http://LocalHost:PORT/hooks/swml?q=%7E`` verifies; one over the
    normalised form (host lowercased, ``~`` unescaped) does not.
    """
    seen = Seen()
    port = int(yarl.URL(await serve(seen)).port or 0)
    body = b'{"call":{}}'
    host = f"LocalHost:{port}"
    sent = f"http://{host}/hooks/swml?q=%7E"
    normalised = f"http://localhost:{port}/hooks/swml?q=~"
    assert await _raw_post(port, "/hooks/swml?q=%7E", host, body, signed(KEY, sent, body)) == 200
    assert (
        await _raw_post(port, "/hooks/swml?q=%7E", host, body, signed(KEY, normalised, body)) == 403
    )
    assert seen.verdicts == [True, False]
