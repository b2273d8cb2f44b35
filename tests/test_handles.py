"""Handles against a real server on 127.0.0.1: the follow-ups they send, their states."""

from __future__ import annotations

import asyncio
import gc
import inspect
import json
import typing
import uuid

import pytest

import relaycall
from relaycall import commands, tts
from relaycall._events import EVENT_TYPES
from tests.conftest import CALL_ID, PROJECT, TOKEN, Respond, call_leg

DIAL = {"from_": "+15551230000", "to": "+15557650000", "url": "https://example.test/swml"}


async def new_call(relay, server) -> relaycall.Call:
    call = await relay.dial(**DIAL)
    server.seen.clear()
    return call


def last(server):
    return server.seen[-1].json


# --- dial and call ----------------------------------------------------------------


async def test_dial_returns_call_from_leg(relay, server):
    """dial sends the dial body and returns a Call with the leg's id and state."""
    server.reply(Respond(body=call_leg(CALL_ID, status="queued")))
    call = await relay.dial(**DIAL, status_url="https://hooks.test/s", timeout=30)
    assert isinstance(call, relaycall.Call)
    assert (call.id, call.state) == (CALL_ID, "queued")
    assert call.leg is not None
    assert last(server) == {
        "command": "dial",
        "params": {
            "from": "+15551230000",
            "to": "+15557650000",
            "url": "https://example.test/swml",
            "status_url": "https://hooks.test/s",
            "timeout": 30,
        },
    }
    assert repr(call) == f"<Call id={CALL_ID} state=queued>"
    assert relay.call(CALL_ID) is call


async def test_dial_validation_fails_before_sending(relay, server):
    """A bad dial parameter raises at the call, before anything is awaited or sent."""
    with pytest.raises(relaycall.ValidationError, match=r"dial\.timeout: 0 is outside 1\.\.600"):
        relay.dial(**DIAL, timeout=0)
    assert server.seen == []


async def test_relay_call_attaches_without_request(relay, server):
    """relay.call(id) makes a handle with no request; same id, same handle."""
    call = relay.call(CALL_ID)
    assert call.state == "unknown"
    assert relay.call(CALL_ID) is call
    assert server.seen == []
    with pytest.raises(relaycall.ValidationError, match=r"call\.call_id"):
        relay.call("not-a-uuid")


@pytest.mark.parametrize(
    ("invoke", "expected"),
    [
        (lambda c: c.end(reason="busy"), ("calling.end", {"reason": "busy"})),
        (lambda c: c.transfer("+15550001111"), ("calling.transfer", {"dest": "+15550001111"})),
        (lambda c: c.disconnect(), ("calling.disconnect", {})),
        (
            lambda c: c.refer("sip:bob@example.test", from_="sip:alice@example.test"),
            (
                "calling.refer",
                {
                    "device": {
                        "type": "sip",
                        "params": {"to": "sip:bob@example.test", "from": "sip:alice@example.test"},
                    }
                },
            ),
        ),
        (lambda c: c.user_event({"step": 3}), ("calling.user_event", {"event": {"step": 3}})),
        (lambda c: c.denoise(), ("calling.denoise", {})),
        (lambda c: c.denoise_stop(), ("calling.denoise.stop", {})),
        (
            lambda c: c.ai_hold(timeout=300, prompt="hold on"),
            ("calling.ai_hold", {"timeout": "300", "prompt": "hold on"}),
        ),
        (lambda c: c.ai_unhold(), ("calling.ai_unhold", {})),
        (
            lambda c: c.ai_message("be brief", role="system"),
            ("calling.ai_message", {"role": "system", "message_text": "be brief"}),
        ),
        (lambda c: c.ai_stop(), ("calling.ai.stop", {})),
        (lambda c: c.send_fax_stop("fax-1"), ("calling.send_fax.stop", {"control_id": "fax-1"})),
        (
            lambda c: c.receive_fax_stop("fax-2"),
            ("calling.receive_fax.stop", {"control_id": "fax-2"}),
        ),
    ],
)
async def test_call_commands_send_exact_bodies(relay, server, invoke, expected):
    """Each Call method sends its command with the call's id at the top level."""
    call = relay.call(CALL_ID)
    await invoke(call)
    command, params = expected
    assert last(server) == {"command": command, "id": CALL_ID, "params": params}


async def test_update_carries_id_in_params(relay, server):
    """update puts the call id in params.id and no top-level id."""
    call = relay.call(CALL_ID)
    await call.update(url="https://example.test/next")
    assert last(server) == {
        "command": "update",
        "params": {"id": CALL_ID, "url": "https://example.test/next"},
    }
    assert call.state == "queued"  # what the reply's leg said
    await call.update(url="https://example.test/bye", status="completed")
    assert call.state == "ended"


# --- replies: what handles check at once, what they read when asked -------------------


async def test_leg_is_read_when_asked_and_kept(relay, server):
    """A start's reply becomes call.leg on first access, the same object afterwards."""
    call = relay.call(CALL_ID)
    server.reply(Respond(body=call_leg(CALL_ID, status="answered", charge=0.25)))
    await call.play(tts("x"))
    leg = call.leg
    assert isinstance(leg, relaycall.CallLeg)
    assert (leg.status, leg.charge, leg.raw["charge"]) == ("answered", 0.25, 0.25)
    assert call.leg is leg
    assert call.state == "answered"


async def test_malformed_leg_field_does_not_fail_an_accepted_command(relay, server):
    """
    A start the server accepted succeeds even if an unused leg field is malformed;
    reading call.leg then raises ResponseValidationError with the reply kept.
    """
    call = relay.call(CALL_ID)
    bad = call_leg(CALL_ID, status="answered", duration="long")
    server.reply(Respond(body=bad))
    pb = await call.play(tts("x"))
    assert (pb.state, call.state) == ("playing", "answered")
    with pytest.raises(relaycall.ResponseValidationError, match="not a call leg") as info:
        _ = call.leg
    assert info.value.body == bad
    server.reply(Respond(body=call_leg(CALL_ID, status="answered")))
    await pb.pause()
    assert pb.state == "paused"
    assert call.leg is not None
    assert call.leg.duration is None


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({"status": "queued"}, "id must be a string"),
        (call_leg(7), "id must be a string"),
        (call_leg(CALL_ID, status=3), "status must be a string"),
        ([call_leg(CALL_ID)], "got list"),
        ("OK", "got str"),
    ],
)
async def test_reply_handles_cannot_act_on_is_an_error(relay, server, body, fragment):
    """A reply without a string id or with a non-string status fails the command, body kept."""
    server.reply(Respond(body=body))
    with pytest.raises(relaycall.ResponseValidationError, match=fragment) as info:
        await relay.dial(**DIAL)
    assert (info.value.command, info.value.body) == ("dial", body)
    call = relay.call(CALL_ID)
    server.reply(Respond(body=body))
    with pytest.raises(relaycall.ResponseValidationError, match=fragment) as info:
        await call.play(tts("x"))
    assert info.value.command == "calling.play"
    assert call.operations == ()


async def test_follow_up_reply_updates_the_call(relay, server):
    """A follow-up's leg is the call's latest; a terminal status there ends the call."""
    call = relay.call(CALL_ID)
    pb = await call.play(tts("x"))
    server.reply(Respond(body=call_leg(CALL_ID, status="completed")))
    await pb.pause()
    assert call.state == "ended"
    assert (await pb.wait(timeout=1)).reason == "call_ended"
    assert call.leg is not None
    assert call.leg.status == "completed"


async def test_result_nobody_waited_for_is_built_once_from_the_end(relay, server):
    """A result first asked for after the end reports the end as it was, the same each time."""
    call = relay.call(CALL_ID)
    pb = await call.play(tts("x"))
    await pb.stop()
    await call.end(reason="busy")
    # Anything that happens after the end does not change what is reported.
    call._mark_ended("error", reason="gone")
    first = await pb.wait(timeout=1)
    assert (first.state, first.reason) == ("finished", "call_ended")
    assert await pb.wait(timeout=1) is first
    ended = await call.wait(timeout=1)
    assert (ended.end_reason, ended.reason) == ("busy", "ended_here")
    seen: asyncio.Future[object] = asyncio.get_running_loop().create_future()
    call.on_finished(seen.set_result)
    assert await asyncio.wait_for(seen, 1) is ended


# --- starting operations ------------------------------------------------------------


async def test_play_returns_playback_and_follow_ups_carry_its_ids(relay, server):
    """play -> Playback; pause/resume/volume/stop send the same call id and control id."""
    call = relay.call(CALL_ID)
    pb = await call.play(tts("Welcome"), relaycall.silence(1), volume=-3, control_id="pb-1")
    assert last(server) == {
        "command": "calling.play",
        "id": CALL_ID,
        "params": {
            "control_id": "pb-1",
            "play": [
                {"type": "tts", "params": {"text": "Welcome"}},
                {"type": "silence", "params": {"duration": 1}},
            ],
            "volume": -3,
        },
    }
    assert (pb.call_id, pb.control_id, pb.state) == (CALL_ID, "pb-1", "playing")
    await pb.pause()
    assert pb.state == "paused"
    await pb.set_volume(6)
    await pb.resume()
    assert pb.state == "playing"
    await pb.stop()
    assert pb.state == "stopped"
    assert [(b["command"], b["id"], b["params"]) for b in server.bodies[1:]] == [
        ("calling.play.pause", CALL_ID, {"control_id": "pb-1"}),
        ("calling.play.volume", CALL_ID, {"control_id": "pb-1", "volume": 6}),
        ("calling.play.resume", CALL_ID, {"control_id": "pb-1"}),
        ("calling.play.stop", CALL_ID, {"control_id": "pb-1"}),
    ]
    assert repr(pb) == f"<Playback call_id={CALL_ID} control_id=pb-1 state=stopped>"


async def test_record_pause_resume_stop(relay, server):
    """record wraps audio params; pause(behavior) / resume / stop follow."""
    rec = await relay.call(CALL_ID).record(format="wav", beep=True, control_id="rec-1")
    assert last(server)["params"] == {
        "control_id": "rec-1",
        "record": {"audio": {"format": "wav", "beep": True}},
    }
    await rec.pause(behavior="silence")
    assert last(server)["params"] == {"control_id": "rec-1", "behavior": "silence"}
    assert rec.state == "paused"
    await rec.resume()
    assert rec.state == "recording"
    await rec.stop()
    assert [b["command"] for b in server.bodies] == [
        "calling.record", "calling.record.pause", "calling.record.resume", "calling.record.stop",
    ]  # fmt: skip


async def test_generated_control_id_is_reused(relay, server):
    """Without a control_id one is generated, and every follow-up reuses it."""
    rec = await relay.call(CALL_ID).record()
    assert len(rec.control_id) == 16
    await rec.stop()
    ids = {b["params"]["control_id"] for b in server.bodies}
    assert ids == {rec.control_id}


@pytest.mark.parametrize(
    ("start", "kind", "params", "stop_command"),
    [
        (
            lambda c: c.collect(
                digits=commands.CollectDigits(max=4, terminators="#"), control_id="k"
            ),
            relaycall.Collector,
            {"control_id": "k", "digits": {"max": 4, "terminators": "#"}},
            "calling.collect.stop",
        ),
        (
            lambda c: c.detect("machine", timeout=10, control_id="k"),
            relaycall.Detector,
            {"control_id": "k", "detect": {"type": "machine"}, "timeout": 10},
            "calling.detect.stop",
        ),
        (
            lambda c: c.detect(commands.DetectFax(tone="CED"), control_id="k"),
            relaycall.Detector,
            {"control_id": "k", "detect": {"type": "fax", "params": {"tone": "CED"}}},
            "calling.detect.stop",
        ),
        (
            lambda c: c.tap("wss://tap.example.test/a", direction="listen", control_id="k"),
            relaycall.Tapping,
            {
                "control_id": "k",
                "tap": {"type": "audio", "params": {"direction": "listen"}},
                "device": {"type": "ws", "params": {"uri": "wss://tap.example.test/a"}},
            },
            "calling.tap.stop",
        ),
        (
            lambda c: c.stream("wss://stream.example.test/s", name="s1", control_id="k"),
            relaycall.AudioStream,
            {"control_id": "k", "url": "wss://stream.example.test/s", "name": "s1"},
            "calling.stream.stop",
        ),
        (
            lambda c: c.transcribe(control_id="k"),
            relaycall.Transcription,
            {"control_id": "k"},
            "calling.transcribe.stop",
        ),
    ],
)
async def test_operation_start_and_stop_bodies(relay, server, start, kind, params, stop_command):
    """Each start method sends its body and returns a handle whose stop names it."""
    handle = await start(relay.call(CALL_ID))
    assert isinstance(handle, kind)
    assert last(server)["params"] == params
    await handle.stop()
    assert last(server) == {"command": stop_command, "id": CALL_ID, "params": {"control_id": "k"}}
    assert handle.state == "stopped"


async def test_collector_start_input_timers(relay, server):
    """start_input_timers sends the collector's control id."""
    col = await relay.call(CALL_ID).collect(speech=commands.CollectSpeech(), control_id="c9")
    await col.start_input_timers()
    assert last(server) == {
        "command": "calling.collect.start_input_timers",
        "id": CALL_ID,
        "params": {"control_id": "c9"},
    }


async def test_live_transcription_and_translation(relay, server):
    """live_* start with action start; summarize/inject/stop follow; stop is final."""
    call = relay.call(CALL_ID)
    lt = await call.live_transcribe("en-US", ["remote-caller"], ai_summary=True)
    assert last(server)["params"] == {
        "action": {"start": {"lang": "en-US", "direction": ["remote-caller"], "ai_summary": True}}
    }
    await lt.summarize(prompt="short")
    assert last(server)["params"] == {"action": {"summarize": {"prompt": "short"}}}
    await lt.stop()
    assert last(server)["params"] == {"action": "stop"}
    assert lt.state == "stopped"
    assert (await lt.wait(timeout=1)).reason == "stopped"

    tr = await call.live_translate("en-US", "es-ES", status_url="https://hooks.test/t")
    await tr.inject("Un momento", "remote-caller")
    assert last(server) == {
        "command": "calling.live_translate",
        "id": CALL_ID,
        "params": {"action": {"inject": {"message": "Un momento", "direction": "remote-caller"}}},
    }
    await tr.stop()
    with pytest.raises(relaycall.InvalidStateError):
        await tr.inject("again", "local-caller")


async def test_sidecar_follow_ups(relay, server):
    """ai_sidecar -> Sidecar; poke/ask/status/stop address the call id alone."""
    sc = await relay.call(CALL_ID).ai_sidecar("en-US", prompt="watch for churn")
    await sc.poke("anything?")
    server.reply(Respond(body={"ask_id": "ask-1"}))
    reply = await sc.ask("what is the mood?")
    assert reply.ask_id == "ask-1"
    server.reply(Respond(raw=b"+OK running=1 ticks=3", headers={"Content-Type": "text/plain"}))
    status = await sc.status()
    assert status["ticks"] == 3
    await sc.stop()
    assert [(b["command"], b["params"]) for b in server.bodies] == [
        ("calling.ai_sidecar", {"lang": "en-US", "prompt": "watch for churn"}),
        ("calling.ai_sidecar.poke", {"text": "anything?"}),
        ("calling.ai_sidecar.ask", {"text": "what is the mood?"}),
        ("calling.ai_sidecar.status", {}),
        ("calling.ai_sidecar.stop", {}),
    ]


# --- state guards --------------------------------------------------------------------------


async def test_impossible_follow_ups_raise_and_send_nothing(relay, server):
    """resume while playing, pause while paused, pause/resume after stop: InvalidStateError.

    A second stop() is not impossible, only late: it returns quietly, sending nothing.
    """
    pb = await relay.call(CALL_ID).play(tts("hi"), control_id="p")
    sent = len(server.seen)
    with pytest.raises(relaycall.InvalidStateError, match=r"cannot resume\(\) while playing"):
        await pb.resume()
    await pb.pause()
    with pytest.raises(relaycall.InvalidStateError, match=r"cannot pause\(\) while paused"):
        await pb.pause()
    await pb.stop()
    for method in (pb.pause, pb.resume):
        # Raised at the call, like a bad parameter: nothing to await, nothing sent.
        with pytest.raises(relaycall.InvalidStateError, match="nothing was sent"):
            method()
    with pytest.raises(relaycall.InvalidStateError):
        pb.set_volume(1)
    assert await pb.stop() is None  # stopped, final callback pending: no result yet
    assert len(server.seen) == sent + 2


def _operation_kinds() -> list[type[relaycall.Operation]]:
    return [
        cls
        for name in relaycall.__all__
        if isinstance(cls := getattr(relaycall, name), type)
        and issubclass(cls, relaycall.Operation)
        and cls is not relaycall.Operation
    ]


# What each guarded follow-up is called with; one left out here is called with nothing.
_FOLLOW_UP_ARGS = {"set_volume": (3,), "inject": ("hola", "remote-caller"), "poke": ("hi",),
                   "ask": ("why?",)}  # fmt: skip


@pytest.mark.parametrize("kind", _operation_kinds(), ids=lambda k: k.__name__)
async def test_every_guarded_follow_up_names_itself_and_sends_nothing(relay, server, kind):
    """
    Once an operation is stopped, each of its follow-ups raises InvalidStateError
    at the call, naming that method itself, and sends nothing.
    """
    handle = relay.call(CALL_ID).attach(kind)
    await handle.stop()
    sent = len(server.seen)
    public = [name for name in dir(kind) if not name.startswith("_")]
    guarded = [name for name in public if hasattr(getattr(kind, name), "__wrapped__")]
    for name in guarded:
        with pytest.raises(
            relaycall.InvalidStateError,
            match=rf"cannot {name}\(\) while {handle.state}; nothing was sent",
        ):
            getattr(handle, name)(*_FOLLOW_UP_ARGS.get(name, ()))
    assert len(server.seen) == sent
    assert handle.state in ("stopped", *kind.FINAL)


async def test_a_follow_up_is_the_requests_own_coroutine(relay, server):
    """
    A follow-up returns the coroutine that sends it, with no coroutine wrapped
    around it (one frame less per command), and its guard keeps the method's
    name and docstring.
    """
    pb = await relay.call(CALL_ID).play(tts("hi"))
    coro = pb.pause()
    assert inspect.iscoroutine(coro)
    assert coro.cr_code.co_name == "_follow_up"
    await coro
    assert pb.state == "paused"
    assert relaycall.Playback.pause.__name__ == "pause"
    assert "calling.play.pause" in (relaycall.Playback.pause.__doc__ or "")


async def test_nothing_goes_to_an_ended_call(relay, server):
    """After end(), call and operation methods raise InvalidStateError and send nothing.

    end() and stop() are the exceptions: they return quietly (still sending nothing).
    """
    call = relay.call(CALL_ID)
    rec = await call.record(control_id="r")
    await call.end()
    assert call.state == "ended"
    assert rec.state == "finished"
    assert (await rec.wait(timeout=1)).reason == "call_ended"
    sent = len(server.seen)
    with pytest.raises(relaycall.InvalidStateError, match="the call has ended"):
        call.play(tts("x"))
    # Ending or stopping what is over is cleanup, not a mistake: quiet, and nothing is sent.
    assert await call.end() is not None  # the leg the first end() was answered with
    result = await rec.stop()
    assert result.reason == "call_ended"
    assert result.state == "finished"
    assert len(server.seen) == sent
    assert (await call.wait(timeout=1)).end_reason == "hangup"


async def test_404_on_follow_up_marks_operation_finished(relay, server):
    """A 404 to stop() means the playback already ended: the handle says so."""
    pb = await relay.call(CALL_ID).play(tts("x"), control_id="gone")
    server.reply(Respond(status=404, body={"error": "Not Found"}))
    with pytest.raises(relaycall.NotFoundError, match="no longer running on the server") as info:
        await pb.stop()
    assert info.value.status_code == 404
    assert pb.state == "finished"
    assert (await pb.wait(timeout=1)).reason == "gone"


async def test_404_on_call_command_marks_call_ended(relay, server):
    """A 404 to a call command means the call is gone: the handle becomes ended."""
    call = relay.call(CALL_ID)
    server.reply(Respond(status=404, body={"error": "Not Found"}))
    with pytest.raises(relaycall.NotFoundError, match="already over"):
        await call.disconnect()
    assert call.state == "ended"


async def test_second_start_on_same_control_id_is_refused(relay, server):
    """Starting an operation whose control id is still running raises, sends nothing."""
    call = relay.call(CALL_ID)
    await call.play(tts("a"), control_id="same")
    with pytest.raises(relaycall.InvalidStateError, match="already running"):
        await call.play(tts("b"), control_id="same")
    assert len(server.seen) == 1


async def test_failed_start_leaves_no_handle_registered(relay, server):
    """A start the server refuses leaves nothing in the registry."""
    call = relay.call(CALL_ID)
    server.reply(Respond(status=422, body={"errors": []}))
    with pytest.raises(relaycall.UnprocessableEntityError):
        await call.play(tts("a"), control_id="x")
    assert call.operations == ()


async def test_start_409_after_retry_counts_as_started(relay, server):
    """A start re-sent after a dropped reply that gets 409 had started: handle returned."""
    server.reply(Respond(drop=True), Respond(status=409, body={"error": "Conflict"}))
    pb = await relay.call(CALL_ID).play(tts("a"), control_id="dup")
    assert pb.state == "playing"
    assert [b["params"]["control_id"] for b in server.bodies] == ["dup", "dup"]


async def test_ids_reused_on_follow_up_retry(relay, server):
    """A follow-up retried after 503 carries the same control id and call id."""
    pb = await relay.call(CALL_ID).play(tts("a"), control_id="r1")
    server.reply(Respond(status=503, body={"error": "x"}))
    await pb.pause()
    assert (
        server.bodies[-1]
        == server.bodies[-2]
        == {
            "command": "calling.play.pause",
            "id": CALL_ID,
            "params": {"control_id": "r1"},
        }
    )


# --- async with ---------------------------------------------------------------------------------


async def test_async_with_stops_on_exit(relay, server):
    """Leaving the block stops a running operation."""
    async with relay.call(CALL_ID).play(tts("x"), control_id="cm") as pb:
        assert pb.state == "playing"
    assert last(server)["command"] == "calling.play.stop"
    assert pb.state == "stopped"


async def test_async_with_does_not_stop_twice(relay, server):
    """An operation stopped inside the block is not stopped again."""
    async with relay.call(CALL_ID).record(control_id="cm") as rec:
        await rec.stop()
    assert [b["command"] for b in server.bodies] == ["calling.record", "calling.record.stop"]


async def test_async_with_stops_on_exception_without_masking_it(relay, server):
    """An exception in the block still stops the operation and propagates unchanged."""
    with pytest.raises(KeyError, match="boom"):
        async with relay.call(CALL_ID).record(control_id="cm"):
            raise KeyError("boom")
    assert last(server)["command"] == "calling.record.stop"


async def test_async_with_stop_failure_does_not_mask_exception(relay, server):
    """If the stop on exit fails too, the block's exception is the one raised."""
    server.reply(Respond(), Respond(status=400, body={"error": "Bad Request"}))
    with pytest.raises(KeyError):
        async with relay.call(CALL_ID).record(control_id="cm"):
            raise KeyError("boom")


async def test_async_with_stops_on_cancellation(relay, server):
    """Cancelling the task inside the block still stops the operation."""
    entered = asyncio.Event()

    async def flow():
        async with relay.call(CALL_ID).play(tts("x"), control_id="cx"):
            entered.set()
            await asyncio.sleep(3600)

    task = asyncio.create_task(flow())
    await asyncio.wait_for(entered.wait(), 5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert last(server) == {
        "command": "calling.play.stop",
        "id": CALL_ID,
        "params": {"control_id": "cx"},
    }


async def test_async_with_dial_hangs_up(relay, server):
    """async with relay.dial(...) ends the call on exit."""
    server.reply(Respond(body=call_leg(CALL_ID)))
    async with relay.dial(**DIAL) as call:
        assert call.id == CALL_ID
    assert last(server) == {"command": "calling.end", "id": CALL_ID, "params": {}}
    assert call.state == "ended"


# --- reconstruction, waits ------------------------------------------------------------------------


async def test_handles_reconstructed_from_ids(relay, server):
    """relay.call(id).playback(cid) sends follow-ups as if this process had started it."""
    pb = relay.call(CALL_ID).playback("from-elsewhere")
    assert relay.call(CALL_ID).playback("from-elsewhere") is pb
    await pb.pause()
    assert last(server) == {
        "command": "calling.play.pause",
        "id": CALL_ID,
        "params": {"control_id": "from-elsewhere"},
    }
    rec = relay.call(CALL_ID).attach(relaycall.Recording, "r-else")
    await rec.stop()
    tap = relay.call(CALL_ID).attach(relaycall.Tapping, "t-else")
    await tap.stop()
    assert last(server)["command"] == "calling.tap.stop"
    with pytest.raises(TypeError):
        relay.call(CALL_ID).attach(str, "x")  # type: ignore[type-var]


async def test_wait_timeout_raises_and_operation_goes_on(relay, server):
    """wait(timeout) raises WaitTimeoutError (a TimeoutError); the handle is unchanged."""
    pb = await relay.call(CALL_ID).play(tts("x"))
    with pytest.raises(TimeoutError):
        await pb.wait(timeout=0.01)
    with pytest.raises(relaycall.WaitTimeoutError):
        await pb.wait(timeout=0.01)
    assert pb.state == "playing"


async def test_session_close_resolves_pending_waits(server):
    """Closing the AsyncRelay resolves every pending wait with reason session_closed."""
    relay = relaycall.AsyncRelay("p", "t", base_url=server.base_url)
    call = relay.call(CALL_ID)
    pb = await call.play(tts("x"))
    # With a timeout: without a receiver a wait with none is refused at once.
    waits = [asyncio.create_task(pb.wait(timeout=30)), asyncio.create_task(call.wait(timeout=30))]
    await asyncio.sleep(0)
    await relay.close()
    pb_result, call_result = await asyncio.wait_for(asyncio.gather(*waits), 5)
    assert pb_result.reason == call_result.reason == "session_closed"
    assert pb_result.state == "playing"
    assert (await pb.wait()).reason == "session_closed"


async def test_cancelling_a_wait_does_not_stop_the_operation(relay, server):
    """A cancelled wait sends nothing: the operation keeps running."""
    pb = await relay.call(CALL_ID).play(tts("x"))
    task = asyncio.create_task(pb.wait(timeout=30))
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert pb.state == "playing"
    assert len(server.seen) == 1


# --- scale ---------------------------------------------------------------------------------------


async def test_1000_concurrent_flows_no_cross_talk(relay, server):
    """1,000 call flows at once through one session each send exactly their own ids."""

    async def flow(i: int) -> tuple[str, str]:
        call = await relay.dial(**DIAL)
        pb = await call.play(tts(f"hello {i}"))
        await pb.pause()
        await pb.resume()
        rec = await call.record()
        await rec.stop()
        await pb.stop()
        await call.end()
        return call.id, pb.control_id

    results = await asyncio.gather(*(flow(i) for i in range(1000)))
    by_call: dict[str, list] = {}
    for body in server.bodies:
        if body["command"] == "dial":
            continue
        by_call.setdefault(body["id"], []).append(body)
    assert len(by_call) == 1000
    for call_id, control_id in results:
        bodies = by_call[call_id]
        assert [b["command"] for b in bodies if b["command"].startswith("calling.play")] == [
            "calling.play", "calling.play.pause", "calling.play.resume", "calling.play.stop",
        ]  # fmt: skip
        play_ids = {
            b["params"]["control_id"] for b in bodies if b["command"].startswith("calling.play")
        }
        assert play_ids == {control_id}
        rec_ids = {
            b["params"]["control_id"] for b in bodies if b["command"].startswith("calling.record")
        }
        assert len(rec_ids) == 1
        assert rec_ids != play_ids


async def test_registry_empties_when_handles_finish(relay, server):
    """Ended calls drop their operations; unreferenced calls leave the registry."""
    calls = []
    for _ in range(50):
        call = await relay.dial(**DIAL)
        await call.play(tts("x"))
        await call.record()
        calls.append(call)
    assert len(relay._router.calls) == 50
    assert sum(len(c.operations) for c in calls) == 100
    await asyncio.gather(*(c.end() for c in calls))
    assert sum(len(c.operations) for c in calls) == 0
    del calls, call
    gc.collect()
    assert len(relay._router.calls) == 0


async def test_call_flows_leave_no_reference_cycles(relay, server):
    """
    Handles, results and replies are freed by reference counting as flows end.

    Anything of relaycall's left in a reference cycle waits for the cyclic
    garbage collector, whose passes a process driving thousands of calls
    pays for on every command.
    """

    async def flow() -> None:
        call = await relay.dial(**DIAL)
        pb = await call.play(tts("x"))
        await pb.pause()
        await pb.resume()
        await pb.stop()
        rec = await call.record()
        await rec.stop()
        await call.end()
        assert call.leg is not None
        assert (await pb.wait(timeout=1)).reason == "call_ended"

    await flow()
    gc.collect()
    gc.disable()
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        await asyncio.gather(*(flow() for _ in range(5)))
        gc.collect()
        ours = sorted(
            {type(o).__qualname__ for o in gc.garbage if type(o).__module__.startswith("relaycall")}
        )
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        gc.enable()
    assert ours == []


def test_handles_are_slotted():
    """Handles have no per-instance __dict__, so tens of thousands stay cheap."""
    relay = relaycall.AsyncRelay("p", "t", base_url="http://127.0.0.1:1")
    call = relay.call(str(uuid.uuid4()))
    pb = call.playback("x")
    assert not hasattr(call, "__dict__")
    assert not hasattr(pb, "__dict__")


async def test_end_reports_ended_here_even_when_leg_says_completed(relay, server):
    """end()'s own reason wins over the terminal status in the reply's leg."""
    call = relay.call(CALL_ID)
    pb = await call.play(tts("x"))
    server.reply(Respond(body=call_leg(CALL_ID, status="completed")))
    await call.end()
    assert (await call.wait(timeout=1)).reason == "ended_here"
    assert (await pb.wait(timeout=1)).reason == "call_ended"
    assert call.leg is not None
    assert call.leg.status == "completed"


async def test_update_with_status_reports_ended_here(relay, server):
    """update(status=...) ends the call here, reason ended_here, end_reason from the status."""
    call = relay.call(CALL_ID)
    server.reply(Respond(body=call_leg(CALL_ID, status="canceled")))
    await call.update(url="https://example.test/x", status="canceled")
    result = await call.wait(timeout=1)
    assert (result.reason, result.end_reason) == ("ended_here", "cancel")


async def test_stop_resent_after_drop_and_404_is_success(relay, server):
    """A stop whose first attempt went unanswered and whose re-send gets 404 took effect."""
    pb = await relay.call(CALL_ID).play(tts("x"), control_id="s404")
    server.reply(Respond(drop=True), Respond(status=404, body={"error": "Not Found"}))
    await pb.stop()
    assert pb.state == "finished"
    assert (await pb.wait(timeout=1)).reason == "gone"
    assert [b["command"] for b in server.bodies[1:]] == ["calling.play.stop"] * 2


async def test_first_attempt_404_on_stop_still_raises(relay, server):
    """Without a retry, a 404 on stop is news and is raised."""
    pb = await relay.call(CALL_ID).play(tts("x"), control_id="s404b")
    server.reply(Respond(status=404, body={"error": "Not Found"}))
    with pytest.raises(relaycall.NotFoundError):
        await pb.stop()


# --- what callbacks mean to handles -----------------------------------------------------------


def test_every_event_type_names_the_kind_of_handle_it_is_about():
    """
    Each event type's operation_kind is the kind of a handle class (or None:
    news about the call), every handle kind is named by one, and each handle
    reads callbacks as an event class that names its kind.
    """
    handles = {kind.kind: kind for kind in _operation_kinds()}
    addressing: dict[str, set[type[relaycall.Event]]] = {}
    for event_type, cls in EVENT_TYPES.items():
        event = relaycall.parse_event({"event_type": event_type, "params": {"call_id": CALL_ID}})
        if event.operation_kind is not None:
            addressing.setdefault(event.operation_kind, set()).add(cls)
    assert set(addressing) == set(handles)
    for kind, handle in handles.items():
        assert handle.EVENT in addressing[kind], kind


def test_every_state_a_handle_declares_is_an_operation_state():
    """
    relaycall.OperationState (the Literal users type against) lists every state an
    operation kind declares: its running, live and final states, and ``stopped``.
    """
    listed = set(typing.get_args(relaycall.OperationState))
    for kind in _operation_kinds():
        declared = {kind.RUNNING, *kind.LIVE, *kind.FINAL}
        assert declared <= listed, (kind.__name__, declared - listed)
    assert "stopped" in listed


@pytest.mark.parametrize(
    ("params", "final_state", "continuous_final_state"),
    [
        ({"result": {"type": "digit"}, "final": False}, None, None),
        ({"result": {"type": "digit"}}, "finished", None),
        ({"result": {"type": "speech"}, "state": "collecting"}, "finished", None),
        ({"result": {"type": "no_match"}}, "no_match", None),
        ({"result": {"type": "no_input"}}, "no_input", None),
        ({"state": "error"}, "error", "error"),
        ({"state": "finished"}, "finished", "finished"),
        ({"state": "collecting"}, None, None),
    ],
)
def test_a_collect_event_says_which_final_state_it_implies(
    params, final_state, continuous_final_state
):
    """
    A collect event's final_state is what its result ends a collect in (a
    partial ends nothing); in continuous mode only a finished or error state
    ends one.
    """
    event = relaycall.parse_event(
        {"event_type": "calling.call.collect", "params": {"call_id": CALL_ID, **params}}
    )
    assert isinstance(event, relaycall.CollectEvent)
    assert (event.final_state, event.continuous_final_state) == (
        final_state, continuous_final_state
    )  # fmt: skip


async def _flat_callbacks(server, payloads, start):
    """Start an operation on a relay with a receiver, feed it flat callbacks, await its result."""
    rx = relaycall.EventReceiver(public_url="http://127.0.0.1:9/e", require_token=False)
    async with relaycall.AsyncRelay(PROJECT, TOKEN, base_url=server.base_url, events=rx) as relay:
        handle = await start(relay.call(CALL_ID))
        for payload in payloads:
            body = json.dumps({"call_id": CALL_ID, **payload}).encode()
            assert rx.ingest(body, url="http://127.0.0.1:9/e", query="", headers={})[0] == 200
        return await handle.wait(timeout=1)


async def test_a_flat_callback_is_read_as_its_handles_kind(server):
    """
    A flat callback names no event type; the handle its control id names reads
    it as its own kind: a flat collect result ends a collector with its digits,
    a flat detect verdict is what the detector's result reports.
    """
    digits = {"type": "digit", "params": {"digits": "42", "terminator": "#"}}
    result = await _flat_callbacks(
        server,
        [{"control_id": "c", "result": digits}],
        lambda call: call.collect(digits=commands.CollectDigits(max=2), control_id="c"),
    )
    assert (result.state, result.reason, result.digits, result.terminator) == (
        "finished", "finished", "42", "#"
    )  # fmt: skip
    assert isinstance(result.event, relaycall.UnknownEvent)  # as it was received

    verdicts = [
        {"type": "machine", "params": {"event": e}} for e in ("MACHINE", "READY", "finished")
    ]
    result = await _flat_callbacks(
        server,
        [{"control_id": "d", "detect": d} for d in verdicts],
        lambda call: call.detect("machine", control_id="d"),
    )
    assert (result.state, result.type, result.result) == ("finished", "machine", "MACHINE")
