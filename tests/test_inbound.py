"""
The receiver side of inbound calls: the SWML fetch at ``receiver.swml_url``, from the outside.

Every test posts reference §9.6 bodies over HTTP to a real server on loopback
(the receiver's own aiohttp server, or FastAPI under uvicorn) and checks the
exact status, content type and body; the adopted call is driven against the
emulator.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import relaycall
from relaycall import commands
from relaycall.emulator import Scenario
from relaycall.testing import Emulator
from tests.conftest import DIAL, answered_call, sign

KEY = "inbound-test-signing-key"
CALL_ID = "0d6b5a62-7d1e-4a5c-9d2e-5f1a2b3c4d5e"
PROJECT_ID = "b4d2c6c0-6a34-4f0e-9a3b-1c2d3e4f5a6b"
SPACE_ID = "0e1f2a3b-4c5d-4e6f-8a9b-0c1d2e3f4a5b"

DEFAULT = {"version": "1.0.0", "sections": {"main": [{"answer": {}}, {"sleep": {"duration": -1}}]}}
FALLBACK = {"version": "1.0.0", "sections": {"main": [{"hangup": {}}]}}
SIP_DATA = {
    "sip_req_host": "example.sip.signalwire.com",
    "sip_req_uri": "sip:alice@example.sip.signalwire.com",
    "sip_req_user": "alice",
    "sip_from_host": "client.example.com",
    "sip_from_uri": "sip:bob@client.example.com",
    "sip_from_user": "bob",
    "sip_to_host": "example.sip.signalwire.com",
    "sip_to_uri": "sip:alice@example.sip.signalwire.com",
    "sip_to_user": "alice",
    "sip_contact_user": "bob",
    "sip_contact_port": "5060",
    "sip_contact_uri": "sip:bob@198.51.100.7:5060",
    "sip_contact_host": "198.51.100.7",
    "sip_contact_params": {"transport": "udp"},
}


def fetch_body(call_id: str = CALL_ID, **call: Any) -> dict[str, Any]:
    """A §9.6 SWML fetch body for *call_id*: an inbound phone call unless *call* says otherwise."""
    return {
        "call": {
            "call_id": call_id,
            "node_id": "node-1",
            "segment_id": "segment-1",
            "call_state": "created",
            "direction": "inbound",
            "type": "phone",
            "from": "+15551230000",
            "to": "+15557650000",
            "from_number": "+15551230000",
            "to_number": "+15557650000",
            "headers": [{"name": "X-Campaign", "value": "spring"}],
            "project_id": PROJECT_ID,
            "space_id": SPACE_ID,
            **call,
        },
        "vars": {},
        "envs": {"REGION": "eu"},
        "params": {},
    }


async def post(
    url: str, body: bytes | dict[str, Any], *, key: str | None = KEY, headers: Any = None
) -> tuple[int, str, bytes]:
    """POST *body* (JSON-encoded when a dict) to *url*, signed with *key*: status, type, body."""
    raw = json.dumps(body).encode() if isinstance(body, dict) else body
    sent = {"Content-Type": "application/json", **(sign(url, raw, key) if key else {})}
    sent.update(headers or {})
    async with aiohttp.ClientSession() as http, http.post(url, data=raw, headers=sent) as resp:
        return resp.status, resp.headers.get("Content-Type", ""), await resp.read()


class Served:
    """A receiver on its own server, bound to an AsyncRelay (of an unreachable platform)."""

    def __init__(self, receiver: relaycall.EventReceiver, relay: relaycall.AsyncRelay) -> None:
        self.receiver, self.relay = receiver, relay


@pytest.fixture
async def served() -> AsyncIterator[Served]:
    receiver = relaycall.EventReceiver(signing_key=KEY, incoming_call_timeout=0.5)
    async with (
        receiver.serve(),
        relaycall.AsyncRelay("p", "t", base_url="http://127.0.0.1:9", events=receiver) as relay,
    ):
        yield Served(receiver, relay)


# --- the document ------------------------------------------------------------------------------


async def test_a_handler_returning_none_gets_the_default_document(served: Served) -> None:
    """
    A signed fetch reaches the handler with an IncomingCall whose fields are the
    body's, typed; None answers 200 ``application/json`` with answer + sleep -1,
    and the call is the session's handle for that id (reachable by its callbacks).
    """
    seen: list[relaycall.IncomingCall] = []

    @served.receiver.on_incoming_call
    async def incoming(call: relaycall.IncomingCall) -> None:
        seen.append(call)

    body = fetch_body(type="sip", sip_data=SIP_DATA, tag="t1", dial_winner="true")
    body["params"] = {"step": 2}
    status, kind, answer = await post(served.receiver.swml_url, body)
    assert (status, kind, json.loads(answer)) == (200, "application/json", DEFAULT)
    (call,) = seen
    assert isinstance(call, relaycall.Call)
    assert served.relay.call(CALL_ID) is call
    assert (call.id, call.from_, call.to, call.direction, call.type) == (
        CALL_ID, "+15551230000", "+15557650000", "inbound", "sip",
    )  # fmt: skip
    assert (call.node_id, call.segment_id, call.project_id, call.space_id) == (
        "node-1", "segment-1", PROJECT_ID, SPACE_ID,
    )  # fmt: skip
    assert call.headers == (("X-Campaign", "spring"),)
    assert call.header("x-campaign") == "spring"
    assert call.sip_data == relaycall.SipData(**SIP_DATA)
    assert (call.vars, call.envs, call.params) == ({}, {"REGION": "eu"}, {"step": 2})
    assert (call.tag, call.dial_winner, call.state, call.call_state) == (
        "t1", True, "created", "created",
    )  # fmt: skip
    assert call.raw == body
    stats = served.receiver.stats
    assert (stats.incoming_calls, stats.fallbacks, stats.rejected_body) == (1, 0, 0)


async def test_a_key_the_reference_does_not_define_or_an_absent_envs_is_no_400(
    served: Served,
) -> None:
    """
    A fetch with a field §9.6 does not define (the platform may add one) and no
    ``envs`` (one of SignalWire's own examples omits it) still reaches the handler:
    a 400 would fail a real caller's call. The unknown field is kept in ``raw``.
    """
    seen: list[relaycall.IncomingCall] = []

    @served.receiver.on_incoming_call
    async def incoming(call: relaycall.IncomingCall) -> None:
        seen.append(call)

    body = fetch_body(future_field={"x": 1})
    body["also_new"] = True
    del body["envs"]
    status, _, answer = await post(served.receiver.swml_url, body)
    assert (status, json.loads(answer)) == (200, DEFAULT)
    (call,) = seen
    assert call.envs == {}
    assert call.raw["call"]["future_field"] == {"x": 1}
    assert served.receiver.stats.rejected_body == 0


async def test_the_handler_s_document_is_served_as_given(served: Served) -> None:
    """A dict the handler returns is what the platform gets, byte for byte as JSON."""
    doc = {"version": "1.0.0", "sections": {"main": [{"play": {"url": "say:Hi"}}, "hangup"]}}
    doc["sections"]["main"][1] = {"hangup": {}}

    @served.receiver.on_incoming_call
    async def incoming(call: relaycall.IncomingCall) -> dict[str, Any]:
        return doc

    status, kind, answer = await post(served.receiver.swml_url, fetch_body())
    assert (status, kind, json.loads(answer)) == (200, "application/json", doc)


async def test_registering_as_a_plain_call_returns_the_handler() -> None:
    """``receiver.on_incoming_call(handler)`` works undecorated; a sync function is refused."""
    receiver = relaycall.EventReceiver(public_url="https://app.example.com/events")

    async def handler(call: relaycall.IncomingCall) -> None:
        return None

    assert receiver.on_incoming_call(handler) is handler
    with pytest.raises(relaycall.UsageError, match="async function"):
        receiver.on_incoming_call(lambda call: None)  # type: ignore[arg-type,return-value]


def test_swml_url_is_under_public_url_with_its_own_token() -> None:
    """swml_url is ``<public_url>/swml/?t=s.<mac>``: one per secret, never a status_url's token."""
    receiver = relaycall.EventReceiver(
        public_url="https://app.example.com/events", secret=b"k" * 32
    )
    url = receiver.swml_url
    assert url.startswith("https://app.example.com/events/swml/?t=s.")
    again = relaycall.EventReceiver(public_url="https://app.example.com/events/", secret=b"k" * 32)
    assert again.swml_url == url
    assert receiver.swml_path == "/events/swml/"
    assert url.partition("?")[2] != receiver.status_url(CALL_ID).partition("?")[2]


# --- time budget, failures, fallback -----------------------------------------------------------


async def test_a_slow_handler_gets_the_fallback_within_its_budget(
    served: Served, caplog: pytest.LogCaptureFixture
) -> None:
    """
    A handler still running at incoming_call_timeout is cancelled; the fetch is
    answered at once with the fallback (hangup), logged with the call id.
    """
    cancelled = asyncio.Event()

    @served.receiver.on_incoming_call
    async def incoming(call: relaycall.IncomingCall) -> None:
        try:
            await asyncio.Event().wait()
        finally:
            cancelled.set()

    loop = asyncio.get_running_loop()
    began = loop.time()
    with caplog.at_level(logging.ERROR, logger="relaycall.events"):
        status, kind, answer = await post(served.receiver.swml_url, fetch_body())
    took = loop.time() - began
    assert (status, kind, json.loads(answer)) == (200, "application/json", FALLBACK)
    assert 0.5 <= took < 2.0
    await asyncio.wait_for(cancelled.wait(), 5)
    assert f"SWML fetch for call {CALL_ID}" in caplog.text
    assert "did not return within incoming_call_timeout=0.5 s" in caplog.text
    assert served.receiver.stats.fallbacks == 1


async def test_a_raising_handler_gets_the_fallback_and_a_traceback(
    served: Served, caplog: pytest.LogCaptureFixture
) -> None:
    """A handler that raises: fallback, and an error log with the call id and the traceback."""

    @served.receiver.on_incoming_call
    async def incoming(call: relaycall.IncomingCall) -> None:
        raise LookupError("no such customer")

    with caplog.at_level(logging.ERROR, logger="relaycall.events"):
        status, kind, answer = await post(served.receiver.swml_url, fetch_body())
    assert (status, kind, json.loads(answer)) == (200, "application/json", FALLBACK)
    (record,) = [r for r in caplog.records if r.name == "relaycall.events"]
    assert CALL_ID in record.getMessage()
    assert "raised" in record.getMessage()
    assert record.exc_info is not None
    assert "no such customer" in caplog.text


@pytest.mark.parametrize(
    ("doc", "names"),
    [
        ({"sections": {"main": [{"dance": {}}]}}, "main[0]"),
        ({"sections": {"other": []}}, "main"),
        ({"version": "2", "sections": {"main": []}}, "version"),
        ({"sections": {"main": [{"play": {}, "hangup": {}}]}}, "main[0]"),
        ("answer", "document"),
    ],
    ids=["unknown-method", "no-main", "version", "two-keys", "a-string"],
)
async def test_an_invalid_document_is_refused_before_it_is_returned(
    served: Served, caplog: pytest.LogCaptureFixture, doc: Any, names: str
) -> None:
    """A document that fails validation is not served: fallback, and a log naming the step."""

    @served.receiver.on_incoming_call
    async def incoming(call: relaycall.IncomingCall) -> Any:
        return doc

    with caplog.at_level(logging.ERROR, logger="relaycall.events"):
        status, _, answer = await post(served.receiver.swml_url, fetch_body())
    assert (status, json.loads(answer)) == (200, FALLBACK)
    assert "returned an invalid SWML document" in caplog.text
    assert names in caplog.text
    assert served.receiver.stats.fallbacks == 1


async def test_no_handler_and_no_relay_get_the_fallback(caplog: pytest.LogCaptureFixture) -> None:
    """Before an AsyncRelay is bound, and with no handler, the fetch gets the fallback, logged."""
    receiver = relaycall.EventReceiver(signing_key=KEY)
    async with receiver.serve():
        with caplog.at_level(logging.ERROR, logger="relaycall.events"):
            status, kind, answer = await post(receiver.swml_url, fetch_body())
        assert (status, kind, json.loads(answer)) == (200, "application/json", FALLBACK)
        assert "no AsyncRelay is bound to this receiver" in caplog.text
        async with relaycall.AsyncRelay("p", "t", base_url="http://127.0.0.1:9", events=receiver):
            status, _, answer = await post(receiver.swml_url, fetch_body())
        assert (status, json.loads(answer)) == (200, FALLBACK)
        assert "no handler is registered" in caplog.text
        assert receiver.stats.fallbacks == 2


async def test_a_configured_fallback_is_served_and_checked_at_construction() -> None:
    """fallback_swml replaces the hangup; an invalid one is refused when the receiver is made."""
    say_sorry = {"sections": {"main": [{"answer": {}}, {"play": {"url": "say:Sorry"}}]}}
    receiver = relaycall.EventReceiver(signing_key=KEY, fallback_swml=say_sorry)
    async with receiver.serve():
        status, _, answer = await post(receiver.swml_url, fetch_body())
    assert (status, json.loads(answer)) == (200, say_sorry)
    with pytest.raises(relaycall.UsageError, match="fallback_swml"):
        relaycall.EventReceiver(fallback_swml={"sections": {}})
    with pytest.raises(relaycall.UsageError, match="incoming_call_timeout"):
        relaycall.EventReceiver(incoming_call_timeout=0)


# --- authentication ------------------------------------------------------------------------------


async def test_forged_unsigned_and_wrongly_tokened_fetches_are_refused(served: Served) -> None:
    """
    With a signing key: an unsigned or forged fetch is 403, as is a signed one
    at the swml path with a callback's token (or none); a callback at the
    events path with the swml token is 403 too. The handler never runs.
    """
    ran: list[Any] = []

    @served.receiver.on_incoming_call
    async def incoming(call: relaycall.IncomingCall) -> None:
        ran.append(call)

    receiver = served.receiver
    url = receiver.swml_url
    swml_base, _, token = url.partition("?")
    body = fetch_body()
    assert await post(url, body, key=None) == (403, "text/plain; charset=utf-8", b"forbidden")
    assert (await post(url, body, key="another-key"))[0] == 403
    callback_token = receiver.status_url(CALL_ID).partition("?")[2]
    assert (await post(f"{swml_base}?{callback_token}", body))[0] == 403
    assert (await post(swml_base, body))[0] == 403
    event = {"call_id": CALL_ID, "call_state": "ended"}
    events_base = receiver.status_url(CALL_ID).partition("?")[0]
    assert (await post(f"{events_base}?{token}", event))[0] == 403
    assert ran == []
    assert receiver.stats.rejected_auth == 5
    assert receiver.stats.incoming_calls == receiver.stats.fallbacks == 0


async def test_without_a_signing_key_the_token_alone_guards() -> None:
    """No signing key: a fetch with the swml_url token is served, one without it is 403."""
    receiver = relaycall.EventReceiver()
    async with (
        receiver.serve(),
        relaycall.AsyncRelay("p", "t", base_url="http://127.0.0.1:9", events=receiver),
    ):
        receiver.on_incoming_call(_answer_none)
        assert (await post(receiver.swml_url, fetch_body(), key=None))[0] == 200
        base = receiver.swml_url.partition("?")[0]
        assert (await post(base + "?t=s.forged", fetch_body(), key=None))[0] == 403


async def _answer_none(call: relaycall.IncomingCall) -> None:
    return None


# --- bad input ----------------------------------------------------------------------------------


def _broken_bodies() -> st.SearchStrategy[Any]:
    """Bodies that are not of the §9.6 shape: a valid one with one thing wrong, or any JSON."""
    good = fetch_body()
    call_keys = sorted(good["call"])

    def drop(key: str) -> dict[str, Any]:
        body = fetch_body()
        del body["call"][key]
        return body

    def retype(key: str, value: Any) -> dict[str, Any]:
        body = fetch_body()
        body["call"][key] = value
        return body

    json_values = st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(max_size=5),
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner),
        max_leaves=8,
    )
    return st.one_of(
        st.sampled_from(["call_id", "from", "to", "headers", "direction", "project_id"]).map(drop),
        st.tuples(
            st.sampled_from(call_keys), st.integers() | st.lists(st.integers(), min_size=1)
        ).map(lambda kv: retype(*kv)),
        st.sampled_from(["direction", "type"]).map(lambda k: retype(k, "sideways")),
        st.sampled_from(["vars", "envs", "params"]).map(lambda k: {**good, k: []}),
        json_values.filter(lambda v: not (isinstance(v, dict) and "call" in v)),
    )


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(body=_broken_bodies())
def test_a_body_not_of_the_documented_shape_is_400_and_counted(body: Any) -> None:
    """Any signed, tokened fetch whose body breaks §9.6 is answered 400 and counted; never 500."""

    async def run() -> None:
        receiver = relaycall.EventReceiver(signing_key=KEY)
        ran: list[Any] = []

        async def incoming(call: relaycall.IncomingCall) -> None:
            ran.append(call)

        receiver.on_incoming_call(incoming)
        async with (
            receiver.serve(),
            relaycall.AsyncRelay("p", "t", base_url="http://127.0.0.1:9", events=receiver),
        ):
            raw = json.dumps(body).encode()
            status, kind, answer = await post(receiver.swml_url, raw)
        assert (status, kind) == (400, "text/plain; charset=utf-8")
        assert answer.startswith(b"SWML fetch: ")
        assert receiver.stats.rejected_body == 1
        assert ran == []

    asyncio.run(run())


@pytest.mark.parametrize(
    "raw",
    [b"", b"{", b'{"call": NaN}', b"[" * 100 + b"]" * 100, b"\xff\xfe\x00"],
    ids=["empty", "truncated", "nan", "deep", "bad-utf"],
)
async def test_a_body_that_is_not_json_is_400(served: Served, raw: bytes) -> None:
    """Bytes that are not a JSON document the receiver reads: 400, counted in rejected_body."""
    status, _, answer = await post(served.receiver.swml_url, raw)
    assert status == 400
    assert answer.startswith(b"SWML fetch: body ")
    assert served.receiver.stats.rejected_body == 1


# --- the adopted call ---------------------------------------------------------------------------


async def test_a_dial_s_fetch_hands_the_dial_s_own_handle_to_the_handler() -> None:
    """
    The fetch of a call dialed with ``url=receiver.swml_url`` gives the handler
    the very Call the dial returned (one handle per call id), now an
    IncomingCall; operations the app starts on it from the handler's task are
    routed to their handles (a play finishes, a collect gets the digit the
    emulated far end presses), and call.wait() ends when the app hangs up.
    """
    async with Emulator(time_scale=50) as emu:
        receiver = emu.receiver
        tasks: list[asyncio.Task[Any]] = []
        got: list[Any] = []

        async def drive(call: relaycall.IncomingCall) -> None:
            await call.answered()
            pb = await call.play(relaycall.tts("Press one"))
            got.append((await pb.wait(timeout=5)).state)
            col = await call.collect(digits=commands.CollectDigits(max=1), start_input_timers=True)
            emu.press(call, "1")
            got.append((await col.wait(timeout=5)).digits)
            await call.end()
            got.append((await call.wait(timeout=5)).state)

        @receiver.on_incoming_call
        async def incoming(call: relaycall.IncomingCall) -> None:
            tasks.append(asyncio.create_task(drive(call)))

        # The document runs inline (answer, sleep): the fetch a dial's url=swml_url
        # makes once answered is posted here, as the platform posts it.
        dialed = await answered_call(emu, url=None, swml=DEFAULT)
        body = fetch_body(dialed.id, direction="outbound", call_state="answered")
        status, _, answer = await post(receiver.swml_url, body, key=emu.config.signing_key)
        assert (status, json.loads(answer)) == (200, DEFAULT)
        assert isinstance(dialed, relaycall.IncomingCall)
        assert dialed.direction == "outbound"
        await asyncio.wait_for(tasks[0], 10)
        assert got == ["finished", "1", "ended"]
        assert receiver.stats.rejected_auth == receiver.stats.rejected_body == 0


async def test_answered_asks_the_platform_and_times_out() -> None:
    """
    answered() returns at once for a call known answered, reads the leg the
    probe's reply carries otherwise, and raises WaitTimeoutError while the
    far end has not answered; a timeout that is not a finite number > 0 is a
    ValidationError naming it, before anything is sent.
    """
    async with Emulator(
        time_scale=1, scenarios={"+15550001111": Scenario(ring_seconds=3600)}
    ) as emu:
        receiver = emu.receiver
        calls: list[relaycall.IncomingCall] = []

        @receiver.on_incoming_call
        async def incoming(call: relaycall.IncomingCall) -> None:
            calls.append(call)

        ringing = await emu.relay.dial(**{**DIAL, "to": "+15550001111"})
        await post(receiver.swml_url, fetch_body(ringing.id), key=emu.config.signing_key)
        with pytest.raises(relaycall.WaitTimeoutError, match=r"not answered within 0\.3 s"):
            await calls[0].answered(timeout=0.3)
        assert emu.call(ringing.id).user_events  # it asked
        sent = len(emu.requests)
        for bad in (0, -1, float("nan"), float("inf"), 10**400, "1", True):
            with pytest.raises(relaycall.ValidationError, match=r"answered\.timeout"):
                await calls[0].answered(timeout=bad)  # type: ignore[arg-type]
        assert len(emu.requests) == sent  # refused before asking
        await ringing.end()


async def test_an_inbound_call_placed_by_the_emulator_is_driven_through_its_handle() -> None:
    """
    The emulator's incoming_call posts the signed fetch to receiver.swml_url;
    the handler's IncomingCall, answered by the default document, plays and is
    ended through its handle, every callback routed (no refusal, no fallback).
    """
    async with Emulator(time_scale=50) as emu:
        got: list[Any] = []
        tasks: list[asyncio.Task[None]] = []

        async def drive(call: relaycall.IncomingCall) -> None:
            await call.answered()
            got.append((await (await call.play(relaycall.tts("Hi"))).wait(timeout=5)).state)
            await call.end()
            got.append((await call.wait(timeout=5)).state)

        @emu.receiver.on_incoming_call
        async def incoming(call: relaycall.IncomingCall) -> None:
            got.append((call.direction, call.from_, call.to))
            tasks.append(asyncio.create_task(drive(call)))

        call_id = await emu.incoming_call(from_="+15551230000", to="+15557650000")
        await asyncio.wait_for(tasks[0], 10)
        assert got == [("inbound", "+15551230000", "+15557650000"), "finished", "ended"]
        assert emu.relay.call(call_id).state == "ended"
        stats = emu.receiver.stats
        assert (stats.incoming_calls, stats.fallbacks, stats.rejected_auth) == (1, 0, 0)
        assert stats.rejected_body == stats.failed == 0
