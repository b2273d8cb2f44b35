"""
Status callbacks over real HTTP into a real receiver on 127.0.0.1: status_url
filling, routing to handles, duplicates and order, refusals (signatures,
tokens, bodies), the stats, and the receiver mounted in other servers.
"""

from __future__ import annotations

import asyncio
import json
import socket
import time
from urllib.parse import urlsplit

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from hypothesis import given
from hypothesis import strategies as st

import relaycall
from relaycall import tts
from tests.conftest import CALL_ID, DIAL, PROJECT, TOKEN, RawHttp, Respond, call_leg, sign
from tests.test_events import json_values

KEY = "PSK_test_signing_key"


def envelope(event_type: str, **params) -> dict:
    return {
        "event_type": event_type,
        "event_channel": f"swml:{params.get('call_id')}",
        "timestamp": time.time(),
        "project_id": PROJECT,
        "space_id": "5b9c0a2e-0000-4000-8000-000000000000",
        "params": params,
    }


@pytest.fixture
async def receiver():
    rx = relaycall.EventReceiver(signing_key=KEY)
    await rx.start("127.0.0.1", 0)
    yield rx
    await rx.stop()


@pytest.fixture
async def erelay(server, sleeps, receiver):
    async with relaycall.AsyncRelay(PROJECT, TOKEN, base_url=server.base_url, events=receiver) as r:
        yield r


@pytest.fixture
async def poster():
    async with aiohttp.ClientSession() as http:
        yield RawHttp(http, signing_key=KEY)


def sent_url(server, control_id: str) -> str:
    """The status_url relaycall gave the platform with the start command of *control_id*."""
    for body in server.bodies:
        if body["params"].get("control_id") == control_id and "status_url" in body["params"]:
            return str(body["params"]["status_url"])
    raise AssertionError(f"no start command with control_id {control_id!r} was sent")


async def dialled(erelay, server) -> relaycall.Call:
    server.reply(Respond(body=call_leg(CALL_ID)))
    return await erelay.dial(**DIAL)


# --- status_url filled in ---------------------------------------------------------------


async def test_status_urls_are_filled_in_with_tokens(erelay, server, receiver):
    """dial and start commands get the receiver's URL with a token; the user's own wins."""
    call = await dialled(erelay, server)
    dial = server.bodies[0]["params"]
    assert dial["status_url"].startswith(receiver.public_url + "?t=d.")
    assert dial["status_events"] == ["created", "ringing", "answered", "ended"]
    pb = await call.play(tts("x"))
    play_url = server.bodies[1]["params"]["status_url"]
    # An operation started with a handle gets a URL bound to this start of it.
    assert play_url == receiver._operation_status_url(CALL_ID, pb._generation)
    assert play_url.startswith(receiver.public_url + "?t=o.")
    await call.record(status_url="https://mine.example.test/cb")
    assert server.bodies[2]["params"]["status_url"] == "https://mine.example.test/cb"
    await call.end()
    assert "status_url" not in server.bodies[3]["params"]
    other = receiver.status_url("0f1c1c1e-1111-4222-8333-944444444444")
    assert other != play_url


async def test_no_status_url_without_receiver(relay, server):
    """Without a receiver nothing is added to the body."""
    await relay.call(CALL_ID).play(tts("x"))
    assert "status_url" not in server.bodies[0]["params"]


# --- routing -------------------------------------------------------------------------------


async def test_signed_events_drive_call_and_playback(erelay, server, receiver, poster):
    """Signed callbacks move the call to answered and finish the playback; wait() returns."""
    call = await dialled(erelay, server)
    url = server.bodies[0]["params"]["status_url"]
    for state in ("created", "ringing", "answered"):
        assert (
            await poster.callback(
                url, envelope("calling.call.state", call_id=CALL_ID, call_state=state)
            )
            == 200
        )
    assert await call.wait_for("answered", timeout=5) == "answered"
    pb = await call.play(tts("hello"), control_id="p1")
    purl = sent_url(server, "p1")
    assert (
        await poster.callback(
            purl, envelope("calling.call.play", call_id=CALL_ID, control_id="p1", state="playing")
        )
        == 200
    )
    assert pb.state == "playing"
    assert (
        await poster.callback(
            purl, envelope("calling.call.play", call_id=CALL_ID, control_id="p1", state="finished")
        )
        == 200
    )
    result = await pb.wait(timeout=5)
    assert isinstance(result, relaycall.PlaybackResult)
    assert (result.state, result.reason, result.ok) == ("finished", "finished", True)
    assert call.operations == ()
    assert receiver.stats.routed == 5


async def test_flat_payload_is_routed(erelay, server, receiver, poster):
    """The flat {control_id, call_id, node_id, state} form reaches the playback too."""
    call = await dialled(erelay, server)
    pb = await call.play(tts("x"), control_id="flat")
    payload = {"control_id": "flat", "call_id": CALL_ID, "node_id": "n1", "state": "finished"}
    assert await poster.callback(sent_url(server, "flat"), payload) == 200
    assert (await pb.wait(timeout=5)).state == "finished"


async def test_record_finished_carries_url(erelay, server, receiver, poster):
    """A record finished event fills url, duration and size of the result."""
    call = await dialled(erelay, server)
    rec = await call.record(format="wav", control_id="r1")
    await rec.pause()
    await poster.callback(
        sent_url(server, "r1"),
        envelope(
            "calling.call.record",
            call_id=CALL_ID,
            control_id="r1",
            state="finished",
            url="https://files.test/r1.wav",
            duration=4.5,
            size=72044,
        ),
    )
    result = await rec.wait(timeout=5)
    assert (result.url, result.duration, result.size) == ("https://files.test/r1.wav", 4.5, 72044)


async def test_collect_digits_partial_and_final(erelay, server, receiver, poster):
    """Partial collect results do not finish it; the final digit result does."""
    call = await dialled(erelay, server)
    col = await call.collect(
        digits=relaycall.commands.CollectDigits(max=2), partial_results=True, control_id="c1"
    )
    url = sent_url(server, "c1")
    partial = {"type": "digit", "params": {"digits": "1"}}
    await poster.callback(
        url,
        envelope(
            "calling.call.collect", call_id=CALL_ID, control_id="c1", result=partial, final=False
        ),
    )
    assert col.state == "collecting"
    final = {"type": "digit", "params": {"digits": "12", "terminator": "#"}}
    await poster.callback(
        url,
        envelope(
            "calling.call.collect", call_id=CALL_ID, control_id="c1", result=final, final=True
        ),
    )
    result = await col.wait(timeout=5)
    assert (result.state, result.type, result.digits, result.terminator) == (
        "finished",
        "digit",
        "12",
        "#",
    )


@pytest.mark.parametrize(("rtype", "state"), [("no_input", "no_input"), ("no_match", "no_match")])
async def test_collect_no_input(erelay, server, receiver, poster, rtype, state):
    """no_input / no_match results end the collector in that state."""
    col = await (await dialled(erelay, server)).collect(
        speech=relaycall.commands.CollectSpeech(), control_id="c2"
    )
    await poster.callback(
        sent_url(server, "c2"),
        envelope("calling.call.collect", call_id=CALL_ID, control_id="c2", result={"type": rtype}),
    )
    assert (await col.wait(timeout=5)).state == state


async def test_continuous_collect_ends_only_with_final_state(erelay, server, receiver, poster):
    """In continuous mode results keep coming; the collector ends at state finished."""
    call = await dialled(erelay, server)
    col = await call.collect(
        speech=relaycall.commands.CollectSpeech(), continuous=True, control_id="cc"
    )
    url = sent_url(server, "cc")
    said = {"type": "speech", "params": {"text": "yes", "confidence": 0.9}}
    await poster.callback(
        url,
        envelope(
            "calling.call.collect",
            call_id=CALL_ID,
            control_id="cc",
            result=said,
            state="collecting",
        ),
    )
    assert col.state == "collecting"
    await col.stop()
    await poster.callback(
        url, envelope("calling.call.collect", call_id=CALL_ID, control_id="cc", state="finished")
    )
    result = await col.wait(timeout=5)
    assert (result.state, result.text, result.confidence) == ("finished", "yes", 0.9)


async def test_detect_machine_verdict(erelay, server, receiver, poster):
    """MACHINE, READY, finished: the result says MACHINE."""
    det = await (await dialled(erelay, server)).detect("machine", control_id="d1")
    url = sent_url(server, "d1")
    for what in ("MACHINE", "READY", "finished"):
        detect = {"type": "machine", "params": {"event": what}}
        await poster.callback(
            url, envelope("calling.call.detect", call_id=CALL_ID, control_id="d1", detect=detect)
        )
    result = await det.wait(timeout=5)
    assert (result.state, result.type, result.result) == ("finished", "machine", "MACHINE")


async def test_transcript_goes_to_the_calls_transcription(erelay, server, receiver, poster):
    """calling.transcript.completed has no control id; it ends the call's transcription."""
    tr = await (await dialled(erelay, server)).transcribe(control_id="t1")
    payload = {
        "event_type": "calling.transcript.completed",
        "timestamp": time.time(),
        "project_id": PROJECT,
        "space_id": "5b9c0a2e-0000-4000-8000-000000000000",
        "params": {"id": "tr-9", "call_id": CALL_ID, "segment_id": "s", "text": "hello there"},
    }
    await poster.callback(sent_url(server, "t1"), payload)
    result = await tr.wait(timeout=5)
    assert (result.state, result.text, result.transcript_id) == ("finished", "hello there", "tr-9")


async def test_sidecar_final_callback_stops_it(erelay, server, receiver, poster):
    """An AI sidecar final callback ends the Sidecar handle."""
    sc = await (await dialled(erelay, server)).ai_sidecar("en-US")
    payload = {
        "call_info": {
            "call_id": CALL_ID,
            "content_type": "text/json",
            "content_disposition": "post_data",
            "conversation_type": "voice",
        },
        "sidecar_event": {"type": "final", "ts": int(time.time() * 1e6), "tick_id": 7,
                          "channel_data": {}},
    }  # fmt: skip
    await poster.callback(receiver.status_url(CALL_ID), payload)
    assert (await sc.wait(timeout=5)).state == "stopped"


async def test_call_ended_resolves_every_pending_wait(erelay, server, receiver, poster):
    """The call's ended event ends all its operations (reason call_ended) and the call."""
    call = await dialled(erelay, server)
    pb = await call.play(tts("x"))
    rec = await call.record()
    waits = asyncio.gather(pb.wait(), rec.wait(), call.wait())
    url = server.bodies[0]["params"]["status_url"]
    await poster.callback(
        url, envelope("calling.call.state", call_id=CALL_ID, call_state="ended", end_reason="busy")
    )
    pb_result, rec_result, call_result = await asyncio.wait_for(waits, 5)
    assert pb_result.reason == rec_result.reason == "call_ended"
    assert (call_result.end_reason, call_result.reason) == ("busy", "finished")
    assert call.state == "ended"
    with pytest.raises(relaycall.InvalidStateError):
        await pb.pause()


async def test_events_iteration(erelay, server, receiver, poster):
    """call.events() yields each event in order and ends when the call ends."""
    call = await dialled(erelay, server)
    pb = await call.play(tts("x"), control_id="it")
    seen: list[str] = []

    async def consume():
        async for ev in call.events():
            seen.append(f"{ev.event_type}:{ev.state}")

    task = asyncio.create_task(consume())
    op_seen: list[str] = []

    async def consume_op():
        async for ev in pb.events():
            op_seen.append(ev.state)

    op_task = asyncio.create_task(consume_op())
    await asyncio.sleep(0)
    url = sent_url(server, "it")
    await poster.callback(
        url, envelope("calling.call.play", call_id=CALL_ID, control_id="it", state="playing")
    )
    await poster.callback(
        url, envelope("calling.call.play", call_id=CALL_ID, control_id="it", state="finished")
    )
    curl = server.bodies[0]["params"]["status_url"]
    await poster.callback(curl, envelope("calling.call.state", call_id=CALL_ID, call_state="ended"))
    await asyncio.wait_for(asyncio.gather(task, op_task), 5)
    assert seen == [
        "calling.call.play:playing",
        "calling.call.play:finished",
        "calling.call.state:ended",
    ]
    assert op_seen == ["playing", "finished"]


async def test_transcript_failed_ends_transcription(erelay, server, receiver, poster):
    """calling.transcript.failed reaches the transcription and ends it as failed."""
    tr = await (await dialled(erelay, server)).transcribe(control_id="tf")
    payload = {
        "event_type": "calling.transcript.failed",
        "timestamp": time.time(),
        "project_id": PROJECT,
        "space_id": "5b9c0a2e-0000-4000-8000-000000000000",
        "params": {"id": "tr-1", "call_id": CALL_ID, "segment_id": "s"},
    }
    await poster.callback(sent_url(server, "tf"), payload)
    assert (await tr.wait(timeout=5)).state == "failed"


async def test_live_translate_stopped_event_ends_handle(erelay, server, receiver, poster):
    """A calling.call.live_translate stopped callback ends the LiveTranslation."""
    lt = await (await dialled(erelay, server)).live_translate("en-US", "fr-FR")
    await poster.callback(
        server.bodies[-1]["params"]["status_url"],
        envelope("calling.call.live_translate", call_id=CALL_ID, state="stopped"),
    )
    assert (await lt.wait(timeout=5)).state == "stopped"


# --- duplicates, order --------------------------------------------------------------------


async def test_duplicate_final_event_resolves_once(erelay, server, receiver, poster):
    """A repeated finished event is acknowledged, counted, and resolves nothing twice."""
    pb = await (await dialled(erelay, server)).play(tts("x"), control_id="dup")
    done: list = []
    pb.on_finished(done.append)
    url = sent_url(server, "dup")
    body = envelope("calling.call.play", call_id=CALL_ID, control_id="dup", state="finished")
    assert await poster.callback(url, body) == 200
    first = await pb.wait(timeout=5)
    assert (
        await poster.callback(
            url, envelope("calling.call.play", call_id=CALL_ID, control_id="dup", state="error")
        )
        == 200
    )
    await asyncio.sleep(0)
    assert await pb.wait() is first
    assert pb.state == "finished"
    assert len(done) == 1
    assert receiver.stats.unknown_operation == 1  # the finished handle left the registry


async def test_out_of_order_events_never_leave_a_final_state(erelay, server, receiver, poster):
    """playing after finished, or paused after a local stop, changes nothing."""
    call = await dialled(erelay, server)
    pb = await call.play(tts("x"), control_id="ooo")
    await pb.stop()
    url = sent_url(server, "ooo")
    await poster.callback(
        url, envelope("calling.call.play", call_id=CALL_ID, control_id="ooo", state="paused")
    )
    assert pb.state == "stopped"
    await poster.callback(
        url, envelope("calling.call.play", call_id=CALL_ID, control_id="ooo", state="finished")
    )
    assert pb.state == "finished"
    curl = server.bodies[0]["params"]["status_url"]
    await poster.callback(curl, envelope("calling.call.state", call_id=CALL_ID, call_state="ended"))
    await poster.callback(
        curl, envelope("calling.call.state", call_id=CALL_ID, call_state="ringing")
    )
    assert call.state == "ended"


async def test_unknown_call_and_control_are_acknowledged_and_counted(
    erelay, server, receiver, poster
):
    """Callbacks for calls or operations this process does not hold: 200, counted."""
    call = await dialled(erelay, server)  # held: a dropped Call leaves the weak registry
    other = "0f1c1c1e-1111-4222-8333-944444444444"
    assert (
        await poster.callback(
            receiver.status_url(other),
            envelope("calling.call.play", call_id=other, control_id="x", state="finished"),
        )
        == 200
    )
    assert (
        await poster.callback(
            receiver.status_url(CALL_ID),
            envelope("calling.call.play", call_id=CALL_ID, control_id="nope", state="finished"),
        )
        == 200
    )
    assert receiver.stats.unknown_call == 1
    assert receiver.stats.unknown_operation == 1
    assert call.state == "queued"


async def test_unknown_event_type_is_kept(erelay, server, receiver, poster):
    """An event type relaycall does not know arrives as UnknownEvent with its payload."""
    await dialled(erelay, server)
    got: asyncio.Queue = asyncio.Queue()
    receiver.on_event(got.put_nowait)
    payload = envelope("calling.call.hologram", call_id=CALL_ID, shape="cube")
    assert await poster.callback(receiver.status_url(CALL_ID), payload) == 200
    ev = await asyncio.wait_for(got.get(), 5)
    assert isinstance(ev, relaycall.UnknownEvent)
    assert ev.raw == payload
    assert ev.params["shape"] == "cube"


# --- refusals ------------------------------------------------------------------------------------


async def test_forged_and_missing_signatures_are_403(erelay, server, receiver, poster):
    """Wrong key, tampered body, missing headers, one bad header of two: 403, not applied."""
    pb = await (await dialled(erelay, server)).play(tts("x"), control_id="sig")
    url = sent_url(server, "sig")
    body = json.dumps(
        envelope("calling.call.play", call_id=CALL_ID, control_id="sig", state="finished")
    ).encode()
    assert (
        await poster.callback(
            url, None, raw=body, signed=False, headers=sign(url, body, "wrong-key")
        )
        == 403
    )
    assert (
        await poster.callback(
            url, None, raw=body, signed=False, headers=sign(url, body + b" ", KEY)
        )
        == 403
    )
    assert await poster.callback(url, None, raw=body, signed=False) == 403
    mixed = sign(url, body, KEY)
    mixed["X-SignalWire-SHA256-Signature"] = "0" * 64
    assert await poster.callback(url, None, raw=body, signed=False, headers=mixed) == 403
    assert pb.state == "playing"
    assert receiver.stats.rejected_auth == 4
    only_sha256 = {
        "X-SignalWire-SHA256-Signature": sign(url, body, KEY)["X-SignalWire-SHA256-Signature"]
    }
    assert await poster.callback(url, None, raw=body, signed=False, headers=only_sha256) == 200
    assert pb.state == "finished"


async def test_missing_or_wrong_token_is_403(erelay, server, receiver, poster):
    """Without our token, with a made-up one, or another call's: 403."""
    pb = await (await dialled(erelay, server)).play(tts("x"), control_id="tok")
    payload = envelope("calling.call.play", call_id=CALL_ID, control_id="tok", state="finished")
    base = receiver.public_url
    other = receiver.status_url("0f1c1c1e-1111-4222-8333-944444444444")
    for url in (base, base + "?t=forged", other, base + "?t=d.nonce.forged"):
        assert await poster.callback(url, payload) == 403
    assert pb.state == "playing"


async def test_dial_token_bound_to_its_call(erelay, server, receiver, poster):
    """A dial's status_url token cannot be reused for another dialled call."""
    first = await dialled(erelay, server)
    first_url = server.bodies[0]["params"]["status_url"]
    second_id = "0f1c1c1e-1111-4222-8333-944444444444"
    server.reply(Respond(body=call_leg(second_id)))
    second = await erelay.dial(**DIAL)
    payload = envelope("calling.call.state", call_id=second_id, call_state="ended")
    assert await poster.callback(first_url, payload) == 403
    assert second.state == "queued"
    assert first.state == "queued"


@pytest.mark.parametrize(
    "raw",
    [
        b"{not json",
        b"\xff\xfe",
        b"[1, 2]",
        b'{"event_type": 5}',
        b'{"event_type": "x", "params": []}',
        b'{"call_id": 12}',
        b'"text"',
    ],
)
async def test_malformed_bodies_are_400(erelay, server, receiver, poster, raw):
    """Bodies that are not callbacks get 400 and the receiver keeps working."""
    await dialled(erelay, server)
    assert await poster.callback(receiver.status_url(CALL_ID), None, raw=raw) == 400
    assert receiver.stats.rejected_body == 1


async def test_oversize_body_is_400(server, poster):
    """A body over max_body_size is refused without being parsed."""
    rx = relaycall.EventReceiver(signing_key=KEY, max_body_size=1024)
    async with rx.serve():
        raw = json.dumps({"call_id": CALL_ID, "pad": "x" * 4096}).encode()
        assert await poster.callback(rx.public_url, None, raw=raw) == 400
    assert rx.stats.rejected_body == 1


async def test_slow_listener_does_not_delay_acknowledgement(erelay, server, receiver, poster):
    """A listener that takes seconds does not hold up the 200."""
    release = asyncio.Event()

    async def slow(event):
        await release.wait()

    receiver.on_event(slow)
    await dialled(erelay, server)
    started = time.monotonic()
    assert (
        await poster.callback(
            receiver.status_url(CALL_ID), envelope("calling.call.tap", call_id=CALL_ID)
        )
        == 200
    )
    assert time.monotonic() - started < 2
    release.set()


@pytest.mark.parametrize("adapter", ["aiohttp", "asgi"])
async def test_listeners_have_run_before_the_callback_is_answered(server, sleeps, poster, adapter):
    """
    on_event, on_orphan_event and a handle's on_finished callbacks have been called by the
    time the 200 goes out (through add_to_app under aiohttp, and the ASGI adapter under
    uvicorn): a worker killed right after answering, which the platform does not call
    again, has run them. A coroutine listener has been started by then.
    """
    order: list[str] = []
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    port = sock.getsockname()[1]
    rx = relaycall.EventReceiver(public_url=f"http://127.0.0.1:{port}/sw/events")
    rx.on_event(lambda event: order.append(f"on_event {event.state}"))
    if adapter == "aiohttp":
        app = web.Application()
        rx.add_to_app(app)

        async def answering(request, response):
            order.append("answered")

        app.on_response_prepare.append(answering)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.SockSite(runner, sock)
        await site.start()
        stop = runner.cleanup
    else:
        inner = rx.asgi_app()

        async def app(scope, receive, send):
            async def sending(message):
                if message["type"] == "http.response.start":
                    order.append("answered")
                await send(message)

            await inner(scope, receive, sending)

        uvicorn = pytest.importorskip("uvicorn")
        srv = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
        task = asyncio.create_task(srv.serve(sockets=[sock]))

        async def stop():
            srv.should_exit = True
            await asyncio.wait_for(task, 10)

    try:
        async with relaycall.AsyncRelay(
            PROJECT, TOKEN, base_url=server.base_url, events=rx
        ) as relay:
            pb = await relay.call(CALL_ID).play(tts("x"), control_id="lr")
            pb.on_finished(lambda result: order.append(f"on_finished {result.state}"))
            payload = envelope(
                "calling.call.play", call_id=CALL_ID, control_id="lr", state="finished"
            )
            assert await poster.callback(sent_url(server, "lr"), payload, signed=False) == 200
    finally:
        await stop()
        sock.close()
    assert order == ["on_finished finished", "on_event finished", "answered"], order


async def test_signature_over_public_url_behind_a_proxy(server, sleeps, poster):
    """Behind a proxy the platform signs the public URL, not the one the app sees."""
    public = "https://hooks.example.test/sw/events"
    rx = relaycall.EventReceiver(public_url=public, path="/events", signing_key=KEY)
    async with (
        rx.serve(),
        relaycall.AsyncRelay(PROJECT, TOKEN, base_url=server.base_url, events=rx) as relay,
    ):
        port = rx._runner.addresses[0][1]
        local = f"http://127.0.0.1:{port}/events"
        pb = await relay.call(CALL_ID).play(tts("x"), control_id="px")
        signed_url = sent_url(server, "px")
        query = urlsplit(signed_url).query
        body = json.dumps(
            envelope("calling.call.play", call_id=CALL_ID, control_id="px", state="finished")
        ).encode()
        status = await poster.callback(
            f"{local}?{query}", None, raw=body, signed=False, headers=sign(signed_url, body, KEY)
        )
        assert status == 200
        assert pb.state == "finished"


# --- adapters -----------------------------------------------------------------------------------


async def test_aiohttp_app_mount(server, sleeps, poster):
    """add_to_app mounts the handler in an existing aiohttp application."""
    rx = relaycall.EventReceiver(path="/hooks/sw")
    app = web.Application()
    rx.add_to_app(app)
    ts = TestServer(app, host="127.0.0.1", port=0)
    await ts.start_server()
    try:
        rx.public_url = str(ts.make_url("/hooks/sw"))
        async with relaycall.AsyncRelay(
            PROJECT, TOKEN, base_url=server.base_url, events=rx
        ) as relay:
            pb = await relay.call(CALL_ID).play(tts("x"), control_id="am")
            payload = envelope(
                "calling.call.play", call_id=CALL_ID, control_id="am", state="finished"
            )
            assert await poster.callback(sent_url(server, "am"), payload, signed=False) == 200
            assert pb.state == "finished"
    finally:
        await ts.close()


async def test_fastapi_adapter_through_uvicorn(server, poster):
    """
    The ASGI adapter mounted in FastAPI as docs/receiver.md shows, served by uvicorn,
    routes a signed callback posted to the status_url with no redirect.
    """
    fastapi = pytest.importorskip("fastapi")
    uvicorn = pytest.importorskip("uvicorn")
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()  # connections wait in the backlog until uvicorn accepts them
    port = sock.getsockname()[1]
    rx = relaycall.EventReceiver(public_url=f"http://127.0.0.1:{port}/sw/events", signing_key=KEY)
    app = fastapi.FastAPI()
    app.mount("/sw/events", rx.asgi_app())
    config = uvicorn.Config(app, log_level="warning", lifespan="off")
    srv = uvicorn.Server(config)
    task = asyncio.create_task(srv.serve(sockets=[sock]))
    try:
        async with relaycall.AsyncRelay(
            PROJECT, TOKEN, base_url=server.base_url, events=rx
        ) as relay:
            pb = await relay.call(CALL_ID).play(tts("x"), control_id="fa")
            url = sent_url(server, "fa")
            payload = envelope(
                "calling.call.play", call_id=CALL_ID, control_id="fa", state="finished"
            )
            assert await poster.callback(url, payload) == 200
            assert (await pb.wait(timeout=5)).state == "finished"
            assert await poster.callback(url, payload, signed=False) == 403
            assert await poster.callback(url, None, raw=b"nope") == 400
    finally:
        srv.should_exit = True
        await asyncio.wait_for(task, 10)
        sock.close()


# --- any bytes ------------------------------------------------------------------------------------


@given(body=st.binary(max_size=300) | json_values.map(lambda v: json.dumps(v).encode()))
def test_ingest_never_raises(body):
    """Any bytes into the receiver give 200, 400 or 403, never an exception."""
    rx = relaycall.EventReceiver(public_url="http://127.0.0.1:9/e", require_token=False)
    status, _ = rx.ingest(body, url="http://127.0.0.1:9/e", query="", headers={})
    assert status in (200, 400)
