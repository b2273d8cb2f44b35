"""
Ordinary Python habits a new user brings on the first day, against the emulator.

create_task over start methods, cleanup that races the far end, typed states,
and the documented way to make retries instant in tests.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

import relaycall
from relaycall import commands, tts
from relaycall.testing import Emulator, Scenario

TO, FROM = "+15557650000", "+15551230000"
DIAL: dict[str, Any] = {"to": TO, "from_": FROM, "url": "https://example.test/swml"}


async def answered(emu: Emulator) -> relaycall.Call:
    call = await emu.relay.dial(**DIAL)
    assert await call.wait_for("answered", timeout=5) == "answered"
    return call


#: Every start method on a call, as a function of the call and a closed loopback port.
STARTS: dict[str, Callable[[relaycall.Call, int], Any]] = {
    "play": lambda c, _: c.play(tts("hello")),
    "record": lambda c, _: c.record(format="wav"),
    "collect": lambda c, _: c.collect(digits=commands.CollectDigits(max=1)),
    "detect": lambda c, _: c.detect("machine"),
    "tap": lambda c, port: c.tap(f"ws://127.0.0.1:{port}/tap"),
    "stream": lambda c, port: c.stream(f"wss://127.0.0.1:{port}/stream"),
    "transcribe": lambda c, _: c.transcribe(),
    "ai_sidecar": lambda c, _: c.ai_sidecar("en-US", prompt="help"),
    "live_transcribe": lambda c, _: c.live_transcribe("en-US"),
    "live_translate": lambda c, _: c.live_translate("en-US", "fr-FR"),
}


@pytest.mark.parametrize("method", sorted(STARTS))
async def test_create_task_takes_every_start_method(method, closed_port):
    """asyncio.create_task, TaskGroup.create_task and gather take a start method's return value.

    Before, start methods returned an object create_task refused with TypeError
    (leaving a "never awaited" warning, an error under this suite's filterwarnings).
    """
    async with Emulator(time_scale=50) as emu:
        call = await asyncio.create_task(emu.relay.dial(**DIAL))
        assert isinstance(call, relaycall.Call)
        assert await call.wait_for("answered", timeout=5) == "answered"
        async with asyncio.TaskGroup() as tg:
            task = tg.create_task(STARTS[method](call, closed_port))
        handle = task.result()
        assert isinstance(handle, relaycall.Operation)
        assert handle.call is call
        (again,) = await asyncio.gather(asyncio.get_running_loop().create_task(call.play(tts("x"))))
        assert isinstance(again, relaycall.Playback)


async def test_start_methods_still_work_with_async_with():
    """``async with`` on dial and record still stops and hangs up on exit."""
    async with Emulator(time_scale=50) as emu:
        async with emu.relay.dial(**DIAL) as call:
            await call.wait_for("answered", timeout=5)
            async with call.record(format="wav", end_silence_timeout=0) as rec:
                assert rec.state == "recording"
            assert (await rec.wait(timeout=5)).state == "finished"
        assert (await call.wait(timeout=5)).reason == "ended_here"
        sent = [r.command for r in emu.requests]
        assert sent[-2:] == ["calling.record.stop", "calling.end"]


async def test_stop_after_the_recording_ended_by_itself_is_quiet():
    """The README's first flow: a recording that ended on silence (no_input) stops quietly.

    stop() sends nothing and returns the final result; before, it raised InvalidStateError.
    """
    async with Emulator(time_scale=50, scenarios={TO: Scenario()}) as emu:
        call = await answered(emu)
        rec = await call.record(format="wav", initial_timeout=0.5)
        first = await rec.wait(timeout=5)
        assert first.state == "no_input"
        sent = len(emu.requests)
        assert await rec.stop() == first
        assert await rec.stop() == first
        with pytest.raises(relaycall.InvalidStateError, match="nothing was sent"):
            rec.pause()
        assert len(emu.requests) == sent
        await call.end()


async def test_end_after_the_far_end_hung_up_is_quiet():
    """end() on a call the far end already hung up sends nothing and returns quietly."""
    async with Emulator(time_scale=50) as emu:
        call = await answered(emu)
        pb = await call.play(tts("a long message " * 20))
        emu.hangup(call)
        assert (await call.wait(timeout=5)).state == "ended"
        sent = len(emu.requests)
        await call.end()
        assert (await pb.stop()).reason in ("call_ended", "finished")
        assert len(emu.requests) == sent
        with pytest.raises(relaycall.InvalidStateError, match="the call has ended"):
            await call.transfer("+15557650001")


async def test_a_404_to_a_resent_end_is_success():
    """calling.end processed, its reply lost, re-sent, answered 404: the call is ended, no error."""
    async with Emulator(time_scale=50) as emu:
        call = await answered(emu)
        emu.faults.drop_connection(1, command="calling.end")
        with relaycall.testing.instant_retries() as waits:
            assert await call.end() is None
        assert len(waits) == 1
        assert [r.command for r in emu.requests][-2:] == ["calling.end", "calling.end"]
        assert [r.status for r in emu.requests][-1:] == [404]
        result = await call.wait(timeout=1)
        # Ended here, unless the emulator's "ended" callback beat the re-sent end's reply.
        assert (result.state, result.end_reason) == ("ended", "hangup")
        assert result.reason in ("ended_here", "finished")


async def test_a_404_to_a_first_end_is_quiet_and_the_call_is_gone():
    """
    A 404 to an end sent once: the server does not know the call (its caller hung up
    unheard, as an inbound call's hang-up always is), which is what end() asks for:
    it returns None, and the call's wait says ``gone``. Nothing is re-sent.
    """
    async with Emulator(time_scale=50) as emu:
        call = emu.relay.call("9a3c0f4e-0000-4000-8000-000000000404")
        assert await call.end() is None
        assert (await call.wait(timeout=1)).reason == "gone"
        assert [r.command for r in emu.requests] == ["calling.end"]


async def test_collect_result_terminator_is_none_without_one():
    """A digit collect ended by max digits reports terminator None, not ''."""
    async with Emulator(time_scale=50, scenarios={TO: Scenario(dtmf="2")}) as emu:
        call = await answered(emu)
        col = await call.collect(digits=commands.CollectDigits(max=1), start_input_timers=True)
        result = await col.wait(timeout=5)
        assert (result.digits, result.terminator) == ("2", None)
        await call.end()


async def test_set_testing_makes_backoff_instant_for_every_session():
    """relaycall.testing.set_testing(True) skips retry sleeps; False restores them."""
    async with Emulator(time_scale=50) as emu:
        call = await answered(emu)
        emu.faults.fail(429, 1, command="calling.play", retry_after=30)
        relaycall.testing.set_testing(True)
        try:
            pb = await asyncio.wait_for(call.play(tts("hi")), 5)
        finally:
            relaycall.testing.set_testing(False)
        assert pb.state == "playing"
        assert [r.status for r in emu.requests][-2:] == [429, 200]
        await call.end()


def test_async_relay_signature_has_no_private_hooks():
    """AsyncRelay's public signature shows no private test hook such as _sleep."""
    import inspect  # noqa: PLC0415

    params = inspect.signature(relaycall.AsyncRelay).parameters
    assert not [name for name in params if name.startswith("_")]


# --- nested options as plain dicts ---------------------------------------------------------

CID = "9a3c0f4e-0000-4000-8000-000000000001"

#: (typed command, the same command with its nested option as a wire-shaped dict)
SAME_AS_DICT: dict[str, tuple[Callable[[], Any], Callable[[], Any]]] = {
    "collect.digits": (
        lambda: commands.Collect(
            call_id=CID, control_id="c", digits=commands.CollectDigits(max=2, terminators="#")
        ),
        lambda: commands.Collect(
            call_id=CID, control_id="c", digits={"max": 2, "terminators": "#"}
        ),
    ),
    "collect.speech": (
        lambda: commands.Collect(
            call_id=CID, control_id="c", speech=commands.CollectSpeech(engine="Deepgram")
        ),
        lambda: commands.Collect(call_id=CID, control_id="c", speech={"engine": "Deepgram"}),
    ),
    "detect.detect": (
        lambda: commands.Detect(
            call_id=CID, control_id="d", detect=commands.DetectMachine(initial_timeout=3)
        ),
        lambda: commands.Detect(
            call_id=CID,
            control_id="d",
            detect={"type": "machine", "params": {"initial_timeout": 3}},
        ),
    ),
    "tap.device": (
        lambda: commands.Tap(
            call_id=CID, control_id="t", direction="both", device=commands.WsDevice(uri="wss://a.b")
        ),
        lambda: commands.Tap(
            call_id=CID,
            control_id="t",
            direction="both",
            device={"type": "ws", "params": {"uri": "wss://a.b"}},
        ),
    ),
    "refer.device": (
        lambda: commands.Refer(
            call_id=CID, device=commands.SipReferDevice(to="sip:a@b.c", from_="sip:me@b.c")
        ),
        lambda: commands.Refer(
            call_id=CID,
            device={"type": "sip", "params": {"to": "sip:a@b.c", "from": "sip:me@b.c"}},
        ),
    ),
    "play.play": (
        lambda: commands.Play(call_id=CID, control_id="p", play=[tts("a"), relaycall.silence(1)]),
        lambda: commands.Play(
            call_id=CID,
            control_id="p",
            play=[tts("a"), {"type": "silence", "params": {"duration": 1}}],
        ),
    ),
    "record.audio": (
        lambda: commands.Record(
            call_id=CID, control_id="r", audio=commands.RecordAudio(format="wav", beep=True)
        ),
        lambda: commands.Record(call_id=CID, control_id="r", audio={"format": "wav", "beep": True}),
    ),
    "ai_message.reset": (
        lambda: commands.AIMessage(
            call_id=CID, reset=commands.AIReset(system_prompt="be brief", full_reset=True)
        ),
        lambda: commands.AIMessage(
            call_id=CID, reset={"system_prompt": "be brief", "full_reset": True}
        ),
    ),
    "live_transcribe.action": (
        lambda: commands.LiveTranscribe(
            call_id=CID,
            action=commands.LiveTranscribeStart(lang="en-US", direction=["local-caller"]),
        ),
        lambda: commands.LiveTranscribe(
            call_id=CID, action={"start": {"lang": "en-US", "direction": ["local-caller"]}}
        ),
    ),
}


@pytest.mark.parametrize("where", sorted(SAME_AS_DICT))
def test_nested_option_as_dict_builds_the_same_body(where):
    """A nested option given as a dict in its wire shape sends exactly the typed body."""
    typed, as_dict = SAME_AS_DICT[where]
    assert as_dict().to_wire() == typed().to_wire()
    assert as_dict() == typed()


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (
            lambda: commands.Collect(call_id=CID, digits={"max": 0}),
            "collect.digits.max: 0 must be >= 1",
        ),
        (
            lambda: commands.Collect(call_id=CID, digits={"max": 2, "maximum": 3}),
            "collect.digits.maximum: is not an allowed parameter here",
        ),
        (lambda: commands.Collect(call_id=CID, digits={}), "collect.digits.max: is required"),
        (
            lambda: commands.Detect(call_id=CID, detect={"type": "robot"}),
            "detect.detect.type: 'robot' is not one of 'machine', 'fax', 'digit'",
        ),
        (
            lambda: commands.Refer(
                call_id=CID,
                device={"type": "sip", "params": {"to": "sip:a@b", "password": 5}},
            ),
            "refer.device.params.password: <redacted> must be a string",
        ),
    ],
)
def test_nested_dict_errors_name_the_field_path(build, message):
    """A bad nested dict fails before sending, naming the path as the typed classes do."""
    with pytest.raises(relaycall.ValidationError) as info:
        build()
    assert str(info.value) == message


async def test_call_methods_take_plain_dicts_on_the_wire():
    """call.collect(digits={...}) and call.detect({...}) put the typed bodies on the wire."""
    async with Emulator(time_scale=50, scenarios={TO: Scenario(dtmf="42#")}) as emu:
        call = await answered(emu)
        col = await call.collect(
            digits={"max": 2, "terminators": "#"}, start_input_timers=True, control_id="c1"
        )
        assert (await col.wait(timeout=5)).digits == "42"
        det = await call.detect({"type": "machine", "params": {"initial_timeout": 3}})
        await det.stop()
        bodies = {r.command: r.body["params"] for r in emu.requests}
        assert bodies["calling.collect"]["digits"] == {"max": 2, "terminators": "#"}
        assert bodies["calling.detect"]["detect"] == {
            "type": "machine",
            "params": {"initial_timeout": 3},
        }
        await call.end()


# --- addresses ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("to", "rule"),
    [
        ("hello", "is not an address the API takes"),
        ("12345", "write it with + and the country code"),
        ("+1 (555) 765-0000", "write it as +15557650000, with no spaces or punctuation"),
        ("+0123", "+ then 2-15 digits, the first not 0"),
        ("+1234567890123456", "+ then 2-15 digits, the first not 0"),
        ("sip:", "is not an address the API takes"),
        ("sip:a b@c", "is not an address the API takes"),
    ],
)
async def test_bad_destinations_fail_on_client_and_emulator(to, rule):
    """dial.to must be E.164 or a URI form the reference lists: client and emulator agree."""
    with pytest.raises(relaycall.ValidationError, match=r"dial\.to: ") as info:
        commands.Dial(from_=FROM, to=to, url="https://x.test/s")
    assert rule in str(info.value)
    async with Emulator(time_scale=50) as emu:
        with pytest.raises(relaycall.UnprocessableEntityError) as refused:
            await emu.relay.execute(
                "dial", params={"from": FROM, "to": to, "url": "https://x.test/s"}
            )
        (item,) = refused.value.errors
        assert item.attribute == "to"
        assert rule in item.message


@pytest.mark.parametrize(
    "to",
    [
        "+15557650000",
        "+44",
        "sip:alice@example.com",
        "sips:alice@example.com;transport=tls",
        "verto:alice@example.com",
        "client:alice",
        "/private/alice",
    ],
)
def test_every_documented_destination_form_is_accepted(to):
    """Each destination form of reference §4.1 builds a dial."""
    assert commands.Dial(from_=FROM, to=to, url="https://x.test/s").to_wire()["params"]["to"] == to


@pytest.mark.parametrize(
    ("field", "value", "ok"),
    [
        ("from_", "alice", True),
        ("from_", "sip:me@example.com", True),
        ("from_", "5551230000", False),
        ("caller_id", "Acme_Support", True),
        ("caller_id", "+1-555-123-0000", False),
    ],
)
def test_caller_addresses(field, value, ok):
    """from and caller_id take E.164, a SIP URI or a caller-id name, never a loose number."""
    build = {"from_": FROM, "to": TO, "url": "https://x.test/s", field: value}
    if ok:
        commands.Dial(**build)
    else:
        with pytest.raises(relaycall.ValidationError, match=f"dial.{field}: .*E.164"):
            commands.Dial(**build)


@pytest.mark.parametrize(
    ("dest", "ok"),
    [
        ("+15557650000", True),
        ("sip:desk@example.com", True),
        ("https://example.com/next.swml", True),
        ({"version": "1.0.0", "sections": {"main": [{"hangup": {}}]}}, True),
        ("sales", False),
        ("555-0100", False),
    ],
)
def test_transfer_destinations(dest, ok):
    """transfer.dest: a SIP URI, an E.164 number, an SWML URL or an SWML object (§4.4)."""
    if ok:
        commands.Transfer(call_id=CID, dest=dest)
    else:
        with pytest.raises(relaycall.ValidationError, match=r"transfer\.dest"):
            commands.Transfer(call_id=CID, dest=dest)
