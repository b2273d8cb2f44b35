"""
The emulated platform: relaycall.emulator driven over HTTP by relaycall itself
(and by raw posts for malformed input), with callbacks caught by the harness's
CallbackRecorder (tests/conftest.py).

No test sleeps to wait for an event: callbacks are awaited with a timeout, and
stretches of emulated time are skipped with ``emu.clock.advance()``.
"""

from __future__ import annotations

import asyncio
import copy
import hashlib
import hmac
import io
import json
import time
import uuid
import wave
from typing import Any

import pytest

import relaycall
from relaycall import commands as c
from relaycall.emulator import (
    EmulatedPlatform,
    EmulatorConfig,
    Scenario,
)
from relaycall.emulator._wire import WireError, parse_request
from tests._command_examples import DELETE, EXAMPLES, INVALID
from tests.conftest import ALL_EVENTS, FROM, SCALE, TO, EmulatorEnv, basic_auth

CID = "6f1c1c1e-1111-4222-8333-944444444444"  # a well-formed call id no call has


def _attribute(exc: relaycall.UnprocessableEntityError) -> str | None:
    assert len(exc.errors) == 1
    return exc.errors[0].attribute


# --- auth and malformed requests ------------------------------------------------------------------


async def test_wrong_credentials_get_401(env: EmulatorEnv) -> None:
    """
    Wrong or missing Basic credentials get 401 {"error": "Unauthorized"}; relaycall with a wrong
    token raises AuthenticationError.
    """
    body = {"command": "calling.end", "id": str(uuid.uuid4()), "params": {}}
    project = env.emu.config.project_id
    wrong = basic_auth(project, "nope")
    assert (await env.http.api(body, auth=wrong))[:2] == (401, {"error": "Unauthorized"})
    assert (await env.http.api(body, auth=False))[:2] == (401, {"error": "Unauthorized"})
    async with relaycall.AsyncRelay(project, "wrong", base_url=env.emu.base_url, retry=None) as bad:
        with pytest.raises(relaycall.AuthenticationError):
            await bad.send(c.End(call_id=str(uuid.uuid4())))


@pytest.mark.parametrize(
    "raw",
    [
        b"{not json",
        b"[1, 2]",
        b'"dial"',
        b'{"params": {}}',
        b'{"command": "calling.dance", "id": "6f1c1c1e-1111-4222-8333-944444444444", "params": {}}',
        b'{"command": 7, "params": {}}',
    ],
)
async def test_malformed_bodies_get_400(env: EmulatorEnv, raw: bytes) -> None:
    """
    Bodies that are not a command (bad JSON, not an object, no command, an unknown or non-string
    one) get the bare 400 {"error": "Bad Request"}.
    """
    assert (await env.http.api(raw=raw))[:2] == (400, {"error": "Bad Request"})


async def test_400_says_why_in_a_header(env: EmulatorEnv) -> None:
    """
    A 400's body stays the platform's bare one; the emulator's reason, naming the bad command, is in
    X-Emulator-Detail.
    """
    body = {"command": "calling.dance\n", "id": CID, "params": {}}
    status, reply, headers = await env.http.api(body)
    assert (status, reply) == (400, {"error": "Bad Request"})
    assert "calling.dance" in headers["X-Emulator-Detail"]


async def test_collect_with_neither_digits_nor_speech_is_400(env: EmulatorEnv) -> None:
    """calling.collect with neither digits nor speech is refused with 400, not 422."""
    body = {"command": "calling.collect", "id": str(uuid.uuid4()), "params": {"control_id": "c"}}
    assert (await env.http.api(body))[:2] == (400, {"error": "Bad Request"})


# --- 422: one rule per command family -------------------------------------------------------------

SWML = {"sections": {"main": [{"hangup": {}}]}}


@pytest.mark.parametrize(
    ("body", "attribute", "code"),
    [
        ({"command": "dial",
          "params": {"from": FROM, "to": TO, "url": "https://a", "swml": SWML}},
         "url", "invalid_parameter"),
        ({"command": "dial", "id": CID, "params": {"from": FROM, "to": TO, "url": "https://a"}},
         "id", "invalid_parameter"),
        ({"command": "dial", "params": {"to": "+15557650000", "url": "https://a"}},
         "from", "missing_required_parameter"),
        ({"command": "update", "params": {"id": CID, "status": "canceled"}},
         "url", "missing_required_parameter"),
        ({"command": "calling.end", "params": {}}, "id", "missing_required_parameter"),
        ({"command": "calling.end", "id": "nope", "params": {}}, "id", "invalid_parameter"),
        ({"command": "calling.end", "id": CID}, "params", "missing_required_parameter"),
        ({"command": "calling.end", "id": CID, "params": {"reason": "noanswer"}},
         "reason", "invalid_parameter"),
        ({"command": "calling.end", "id": CID, "params": {}, "extra": 1},
         "extra", "invalid_parameter"),
        ({"command": "calling.play", "id": CID,
          "params": {"control_id": "p", "play": [{"type": "tts", "params": {"text": "hi"}}],
                     "volume": 99}},
         "volume", "invalid_parameter"),
        ({"command": "calling.play", "id": CID,
          "params": {"play": [{"type": "tts", "params": {"text": "hi"}}]}},
         "control_id", "missing_required_parameter"),
        ({"command": "calling.play", "id": CID,
          "params": {"control_id": "p", "play": [{"type": "tts", "text": "hi"}]}},
         "play[0].text", "invalid_parameter"),
        ({"command": "calling.play", "id": CID,
          "params": {"control_id": "p", "play": [{"type": "silence", "params": {"duration": 0}}]}},
         "play[0].params.duration", "invalid_parameter"),
        ({"command": "calling.play.volume", "id": CID, "params": {"control_id": "p"}},
         "volume", "missing_required_parameter"),
        ({"command": "calling.record", "id": CID,
          "params": {"control_id": "r", "record": {"audio": {"format": "ogg"}}}},
         "record.audio.format", "invalid_parameter"),
        ({"command": "calling.record", "id": CID, "params": {"control_id": "r"}},
         "record", "missing_required_parameter"),
        ({"command": "calling.collect", "id": CID,
          "params": {"control_id": "c", "digits": {"max": 0}}},
         "digits.max", "invalid_parameter"),
        ({"command": "calling.collect", "id": CID,
          "params": {"control_id": "c", "digits": {"max": 2}, "initial_timeout": None}},
         "initial_timeout", "invalid_parameter"),
        ({"command": "calling.detect", "id": CID,
          "params": {"control_id": "d", "detect": {"type": "fax", "params": {"tone": "x"}}}},
         "detect.params.tone", "invalid_parameter"),
        ({"command": "calling.tap", "id": CID,
          "params": {"control_id": "t", "tap": {"type": "audio", "params": {"direction": "in"}},
                     "device": {"type": "ws", "params": {"uri": "wss://t.example"}}}},
         "tap.params.direction", "invalid_parameter"),
        ({"command": "calling.tap", "id": CID,
          "params": {"control_id": "t", "tap": {"type": "audio", "params": {"direction": "both"}},
                     "device": {"type": "rtp", "params": {"addr": "10.0.0.1", "port": 5000}}}},
         "device.params.addr", "invalid_parameter"),
        ({"command": "calling.stream", "id": CID,
          "params": {"control_id": "s", "url": "ws://plain.example"}},
         "url", "invalid_parameter"),
        ({"command": "calling.transcribe", "id": CID, "params": {"control_id": 5}},
         "control_id", "invalid_parameter"),
        ({"command": "calling.ai_hold", "id": CID, "params": {"timeout": 300}},
         "timeout", "invalid_parameter"),
        ({"command": "calling.ai_message", "id": CID, "params": {"role": "tool"}},
         "role", "invalid_parameter"),
        ({"command": "calling.ai_sidecar", "id": CID,
          "params": {"lang": "en", "direction": ["remote-caller"]}},
         "direction", "invalid_parameter"),
        ({"command": "calling.ai_sidecar", "id": CID,
          "params": {"lang": "en", "SWAIG": {"functions": [{"description": "x"}]}}},
         "SWAIG.functions[0].function", "missing_required_parameter"),
        ({"command": "calling.live_transcribe", "id": CID, "params": {"action": "summarize"}},
         "action", "invalid_parameter"),
        ({"command": "calling.live_translate", "id": CID,
          "params": {"action": {"start": {"from_lang": "en", "direction": ["local-caller"]}}}},
         "action.start.to_lang", "missing_required_parameter"),
        ({"command": "calling.refer", "id": CID,
          "params": {"device": {"type": "sip", "params": {"to": "tel:+1"}}}},
         "device.params.to", "invalid_parameter"),
        ({"command": "calling.user_event", "id": CID, "params": {"event": "checkout"}},
         "event", "invalid_parameter"),
        ({"command": "calling.send_fax.stop", "id": CID, "params": {}},
         "control_id", "missing_required_parameter"),
    ],
)  # fmt: skip
async def test_rule_violations_get_422_naming_the_attribute(
    env: EmulatorEnv, body: dict[str, Any], attribute: str, code: str
) -> None:
    """
    One broken rule per command family gets 422 with one validation_error: its code, the dotted path
    of the attribute, the error-codes URL, and a message naming the attribute.
    """
    status, reply, _ = await env.http.api(body)
    assert status == 422, reply
    (item,) = reply["errors"]
    assert item["type"] == "validation_error"
    assert item["code"] == code
    assert item["attribute"] == attribute
    assert item["url"] == "https://signalwire.com/docs/apis/error-codes"
    assert set(item) == {"type", "code", "message", "attribute", "url"}
    assert attribute in item["message"]


async def test_422_reaches_relaycall_as_unprocessable_entity(env: EmulatorEnv) -> None:
    """The emulator's 422 reaches relaycall as UnprocessableEntityError naming the attribute."""
    with pytest.raises(relaycall.UnprocessableEntityError) as info:
        await env.relay.execute(
            "calling.play.volume", call_id=CID, params={"control_id": "p", "volume": 41}
        )
    assert _attribute(info.value) == "volume"


def test_every_valid_example_structures_back_to_the_same_command() -> None:
    """Every valid command example the emulator parses gives back the identical wire body."""
    for ex in EXAMPLES:
        assert parse_request(ex.wire).to_wire() == ex.wire, ex.id


def test_every_invalid_body_the_client_refuses_is_refused_by_the_emulator() -> None:
    """
    Every invalid body relaycall refuses (a mutation of a valid example) is refused by the
    emulator's parser too, with 400 or 422; more than 200 are checked.
    """
    checked = 0
    for bad in INVALID:
        if bad.mutation is None:
            continue
        example_id, path, value = bad.mutation
        body = copy.deepcopy(next(e.wire for e in EXAMPLES if e.id == example_id))
        at: Any = body
        for key in path[:-1]:
            at = at[key]
        if value is DELETE:
            del at[path[-1]]
        elif isinstance(at, list) and path[-1] == len(at):
            at.append(value)
        else:
            at[path[-1]] = value
        with pytest.raises(WireError) as info:
            parse_request(body)
        assert info.value.status in (400, 422), bad.id
        checked += 1
    assert checked > 200


# --- 404 and 409 ----------------------------------------------------------------------------------


async def test_unknown_call_and_unknown_operation_are_404(env: EmulatorEnv) -> None:
    """
    An unknown call, an operation never started, a fax never sent and a sidecar never started are
    404 {"error": "Not Found"}.
    """
    with pytest.raises(relaycall.NotFoundError) as info:
        await env.relay.send(c.End(call_id=str(uuid.uuid4())))
    assert info.value.body == {"error": "Not Found"}
    call_id = await env.answered()
    with pytest.raises(relaycall.NotFoundError):
        await env.relay.send(c.PlayStop(call_id=call_id, control_id="never-started"))
    with pytest.raises(relaycall.NotFoundError):
        await env.relay.send(c.SendFaxStop(call_id=call_id, control_id="fax-1"))
    with pytest.raises(relaycall.NotFoundError):
        await env.relay.send(c.AISidecarStatus(call_id=call_id))


async def test_duplicate_control_id_and_second_transcription_are_409(env: EmulatorEnv) -> None:
    """
    A running control_id reused by the same kind, or a second transcription, is 409; another kind
    may share the id, and stopping frees it (its follow-ups are then 404).
    """
    call_id = await env.answered()
    forever = [relaycall.ringtone("us")]
    await env.relay.send(c.Play(call_id=call_id, control_id="p1", play=forever))
    with pytest.raises(relaycall.ConflictError) as info:
        await env.relay.send(c.Play(call_id=call_id, control_id="p1", play=forever))
    assert info.value.body == {"error": "Conflict"}
    # Another kind may use the same control id.
    await env.relay.send(c.Record(call_id=call_id, control_id="p1"))
    await env.relay.send(c.Transcribe(call_id=call_id, control_id="t1"))
    with pytest.raises(relaycall.ConflictError):
        await env.relay.send(c.Transcribe(call_id=call_id, control_id="t2"))
    # Once stopped, the control id is free again; a finished one is 404.
    await env.relay.send(c.PlayStop(call_id=call_id, control_id="p1"))
    with pytest.raises(relaycall.NotFoundError):
        await env.relay.send(c.PlayPause(call_id=call_id, control_id="p1"))
    await env.relay.send(c.Play(call_id=call_id, control_id="p1", play=forever))


async def test_media_on_an_unanswered_call_is_409(env: EmulatorEnv) -> None:
    """Playing on a call that is still ringing is 409."""
    env.core.scenarios["+1999"] = Scenario(ring_seconds=600)
    call_id = await env.dial("+1999")
    with pytest.raises(relaycall.ConflictError):
        await env.relay.send(c.Play(call_id=call_id, play=[relaycall.tts("hi")]))


# --- the call lifecycle ---------------------------------------------------------------------------


LEG_KEYS = {
    "id", "from", "to", "direction", "source", "url", "charge", "created_at", "charge_details",
    "status", "duration", "duration_ms", "billing_ms", "type", "parent_id",
}  # fmt: skip


async def test_answered_call_reports_each_state_then_ends(env: EmulatorEnv) -> None:
    """
    A dial reports created, ringing and answered (swml: event channel, outbound, a phone device, no
    end_reason); calling.end returns the completed leg with its duration, the call reports
    ended/hangup, and a second end is 404.
    """
    call_id = await env.dial()
    states = []
    for state in ("created", "ringing", "answered"):
        hit = await env.rx.next("calling.call.state", call_id=call_id, call_state=state)
        states.append(hit.params["call_state"])
        assert hit.body["event_channel"] == f"swml:{call_id}"
        assert hit.params["direction"] == "outbound"
        assert hit.params["device"]["type"] == "phone"
    assert "end_reason" not in hit.params
    env.core.clock.advance(3.0)
    leg = await env.relay.send(c.End(call_id=call_id, reason="hangup"))
    assert leg.status == "completed"
    assert set(leg.raw) == LEG_KEYS
    assert (leg.duration or 0) >= 3
    assert (leg.duration_ms or 0) >= 3000
    ended = await env.rx.next("calling.call.state", call_id=call_id, call_state="ended")
    assert ended.params["end_reason"] == "hangup"
    with pytest.raises(relaycall.NotFoundError):
        await env.relay.send(c.End(call_id=call_id))


async def test_dial_reply_is_a_complete_queued_leg(env: EmulatorEnv) -> None:
    """
    The dial reply is a complete CallLeg: every key, queued, relay_sip_call for a SIP address, and
    no duration, billing or parent yet.
    """
    status, leg, _ = await env.http.api(
        {"command": "dial", "params": {"from": "+15551230000", "to": "sip:bob@example.com",
                                       "url": "https://x.test/swml"}}
    )  # fmt: skip
    assert status == 200
    assert set(leg) == LEG_KEYS
    assert leg["status"] == "queued"
    assert leg["type"] == "relay_sip_call"
    assert leg["source"] == "realtime_api"
    assert leg["duration"] is leg["duration_ms"] is leg["billing_ms"] is leg["parent_id"] is None


async def test_default_status_events_is_only_ended(env: EmulatorEnv) -> None:
    """A dial without status_events gets the ended callback and no other."""
    call_id = await env.dial(status_events=None)
    await env.relay.send(c.End(call_id=call_id))
    hit = await env.rx.next("calling.call.state", call_id=call_id)
    assert hit.params["call_state"] == "ended"
    assert hit.params["end_reason"] == "hangup"
    assert [h.params["call_state"] for h in env.rx.of(call_id)] == ["ended"]


@pytest.mark.parametrize(
    ("answer", "end_reason"),
    [("busy", "busy"), ("no-answer", "noAnswer"), ("declined", "decline"), ("failed", "error")],
)
async def test_unanswered_scenarios_end_the_call(
    env: EmulatorEnv, answer: Any, end_reason: str
) -> None:
    """
    A busy, unanswered, declining or failing far end ends the call with the matching end_reason,
    never answered; the call then takes no command (404).
    """
    env.core.scenarios["+1666"] = Scenario(answer=answer, ring_seconds=2)
    call_id = await env.dial("+1666")
    ended = await env.rx.next("calling.call.state", call_id=call_id, call_state="ended")
    assert ended.params["end_reason"] == end_reason
    seen = [h.params["call_state"] for h in env.rx.of(call_id)]
    assert "answered" not in seen
    assert env.core.calls[call_id].status == ("failed" if answer == "failed" else "ended")
    with pytest.raises(relaycall.NotFoundError):
        await env.relay.send(c.Play(call_id=call_id, play=[relaycall.tts("hi")]))


async def test_dial_timeout_shorter_than_the_ring_is_no_answer(env: EmulatorEnv) -> None:
    """A dial timeout shorter than the ring ends the call noAnswer, that timeout after ringing."""
    env.core.scenarios["+1777"] = Scenario(ring_seconds=30)
    call_id = await env.dial("+1777", timeout=2)
    ringing = await env.rx.next("calling.call.state", call_id=call_id, call_state="ringing")
    ended = await env.rx.next("calling.call.state", call_id=call_id, call_state="ended")
    assert ended.params["end_reason"] == "noAnswer"
    assert ended.body["timestamp"] - ringing.body["timestamp"] == pytest.approx(2.0, abs=0.3)


async def test_scenario_hangup_after(env: EmulatorEnv) -> None:
    """Scenario.hangup_after: the far end hangs up that many emulated seconds after answering."""
    env.core.scenarios["+1888"] = Scenario(ring_seconds=0.5, hangup_after=4)
    call_id = await env.dial("+1888")
    answered = await env.rx.next("calling.call.state", call_id=call_id, call_state="answered")
    ended = await env.rx.next("calling.call.state", call_id=call_id, call_state="ended")
    assert ended.params["end_reason"] == "hangup"
    assert ended.body["timestamp"] - answered.body["timestamp"] == pytest.approx(4.0, abs=0.3)


async def test_update_follows_the_state_rules(env: EmulatorEnv) -> None:
    """
    update on a ringing call takes only status canceled (the call ends with cancel); on an answered
    call a redirect or completed, not canceled; on an ended call it is 404.
    """
    env.core.scenarios["+1999"] = Scenario(ring_seconds=600)
    ringing_id = await env.dial("+1999")
    await env.rx.next("calling.call.state", call_id=ringing_id, call_state="ringing")
    url = "https://x.test/next"
    for status in ("completed", None):
        with pytest.raises(relaycall.UnprocessableEntityError) as info:
            await env.relay.send(c.Update(call_id=ringing_id, url=url, status=status))
        assert _attribute(info.value) == "status"
    leg = await env.relay.send(c.Update(call_id=ringing_id, url=url, status="canceled"))
    assert leg.status == "canceled"
    ended = await env.rx.next("calling.call.state", call_id=ringing_id, call_state="ended")
    assert ended.params["end_reason"] == "cancel"

    call_id = await env.answered()
    with pytest.raises(relaycall.UnprocessableEntityError) as info:
        await env.relay.send(c.Update(call_id=call_id, url=url, status="canceled"))
    assert _attribute(info.value) == "status"
    leg = await env.relay.send(c.Update(call_id=call_id, url=url))  # a redirect
    assert leg.status == "answered"
    assert leg.url == url
    leg = await env.relay.send(c.Update(call_id=call_id, url=url, status="completed"))
    assert leg.status == "completed"
    with pytest.raises(relaycall.NotFoundError):
        await env.relay.send(c.Update(call_id=call_id, url=url))


# --- play -----------------------------------------------------------------------------------------


async def test_play_finishes_after_its_duration(env: EmulatorEnv) -> None:
    """
    A play of silence and TTS looped twice finishes their total duration after it started; its
    finished event carries exactly call_id, node_id, control_id and state.
    """
    call_id = await env.answered()
    items = [relaycall.silence(1.5), relaycall.tts("x" * 20)]  # 1.5 s + 1.5 s of TTS
    await env.relay.send(
        c.Play(call_id=call_id, control_id="p", play=items, loop=2, status_url=env.cb)
    )
    playing = await env.rx.next("calling.call.play", control_id="p", state="playing")
    finished = await env.rx.next("calling.call.play", control_id="p", state="finished")
    assert finished.body["timestamp"] - playing.body["timestamp"] == pytest.approx(6.0, abs=0.3)
    assert finished.params["call_id"] == call_id
    assert set(finished.params) == {"call_id", "node_id", "control_id", "state"}


async def test_pause_and_resume_move_the_finish_time(env: EmulatorEnv) -> None:
    """
    Paused time does not count: a play finishes its audio's length plus the time it was paused after
    it started, a volume change on the way.
    """
    call_id = await env.answered()
    # Emulated time also runs with the loop's clock (50x): 30 s of audio is 0.6 s of
    # real time, so it cannot end before the pause arrives on a loaded machine.
    await env.relay.send(
        c.Play(call_id=call_id, control_id="p", play=[relaycall.silence(30)], status_url=env.cb)
    )
    started = await env.rx.next("calling.call.play", control_id="p", state="playing")
    before_pause = env.core.clock.now()
    await env.relay.send(c.PlayPause(call_id=call_id, control_id="p"))
    await env.rx.next("calling.call.play", control_id="p", state="paused")
    env.core.clock.advance(10.0)  # ten emulated seconds pass while paused
    await env.relay.send(c.PlayVolume(call_id=call_id, control_id="p", volume=-6))
    await env.relay.send(c.PlayResume(call_id=call_id, control_id="p"))
    # The requests add to the 10 s paused: at most this much emulated time passed.
    paused_at_most = env.core.clock.now() - before_pause
    await env.rx.next("calling.call.play", control_id="p", state="playing")
    env.core.clock.advance(30.0)  # past the end of the audio
    finished = await env.rx.next("calling.call.play", control_id="p", state="finished")
    took = finished.body["timestamp"] - started.body["timestamp"]
    assert 40.0 <= took <= 30.0 + paused_at_most + 1e-3  # 30 s of audio + the time paused


async def test_ringtone_without_duration_plays_until_stopped(env: EmulatorEnv) -> None:
    """
    A ringtone without a duration is still playing an emulated hour later, with no
    finished event; PlayStop finishes it.
    """
    call_id = await env.answered()
    await env.relay.send(
        c.Play(call_id=call_id, control_id="r", play=[relaycall.ringtone("uk")], status_url=env.cb)
    )
    playing = await env.rx.next("calling.call.play", control_id="r", state="playing")
    env.core.clock.advance(3600)
    await env.core.idle()  # a finished event, had there been one, has arrived
    assert env.core.calls[call_id].ops[("play", "r")].state == "playing"
    plays = [h.params["state"] for h in env.rx.of(call_id) if h.event_type == "calling.call.play"]
    assert plays == ["playing"]
    await env.relay.send(c.PlayStop(call_id=call_id, control_id="r"))
    finished = await env.rx.next("calling.call.play", control_id="r", state="finished")
    assert finished.body["timestamp"] - playing.body["timestamp"] >= 3600


async def test_time_scale_runs_the_clock_faster(env: EmulatorEnv) -> None:
    """At time_scale 50 a 10 s play finishes in about a fiftieth of that in real time."""
    call_id = await env.answered()
    started = time.monotonic()
    await env.relay.send(
        c.Play(call_id=call_id, control_id="p", play=[relaycall.silence(10)], status_url=env.cb)
    )
    finished = await env.rx.next("calling.call.play", control_id="p", state="finished")
    real = finished.at - started
    assert 10 / SCALE * 0.9 <= real < 10 / SCALE + 0.5  # 0.2 s of real time for 10 s


# --- record ---------------------------------------------------------------------------------------


async def _wav(env: EmulatorEnv, url: str) -> tuple[int, float]:
    async with env.http.session.get(url) as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"] == "audio/wav"
        data = await resp.read()
    with wave.open(io.BytesIO(data)) as w:
        assert (w.getnchannels(), w.getsampwidth(), w.getframerate()) == (1, 2, 8000)
        assert w.readframes(w.getnframes()) == bytes(w.getnframes() * 2)  # silence
        return len(data), w.getnframes() / w.getframerate()


async def test_record_finishes_with_a_wav_url_of_the_recorded_length(env: EmulatorEnv) -> None:
    """
    A record ends after the scripted speech and its end_silence_timeout; its url serves a silent 8
    kHz mono WAV of the reported size and duration.
    """
    env.core.scenarios["+1555"] = Scenario(speech="leave a message please", input_delay=0.5)
    call_id = await env.answered("+1555")
    audio = c.RecordAudio(format="wav", end_silence_timeout=1.0)
    await env.relay.send(c.Record(call_id=call_id, control_id="r", audio=audio, status_url=env.cb))
    await env.rx.next("calling.call.record", control_id="r", state="recording")
    done = await env.rx.next("calling.call.record", control_id="r", state="finished")
    p = done.params
    # 0.5 s before speaking, 4 words at 0.3 s, then 1 s of trailing silence.
    assert p["duration"] == pytest.approx(2.7, abs=0.2)
    assert p["record"] == {"audio": {"format": "wav", "end_silence_timeout": 1.0}}
    size, seconds = await _wav(env, p["url"])
    assert size == p["size"]
    assert seconds == pytest.approx(p["duration"], abs=1e-9)


async def test_record_pause_skip_and_silence_and_max_length(env: EmulatorEnv) -> None:
    """
    A paused recording leaves the pause out by default and records it as silence with
    behavior=silence; max_length ends a recording at that length.
    """
    call_id = await env.answered()
    audio = c.RecordAudio(initial_timeout=0, end_silence_timeout=0)
    # Emulated time also runs with the loop's clock (50x), so a slow machine adds to
    # the advances below: bound the durations by the emulated time that really passed.
    started = env.core.clock.now()
    for cid in ("skip", "silence"):
        await env.relay.send(
            c.Record(call_id=call_id, control_id=cid, audio=audio, status_url=env.cb)
        )
        await env.rx.next("calling.call.record", control_id=cid, state="recording")
    env.core.clock.advance(2.0)
    await env.relay.send(c.RecordPause(call_id=call_id, control_id="skip"))
    await env.relay.send(c.RecordPause(call_id=call_id, control_id="silence", behavior="silence"))
    await env.rx.next("calling.call.record", control_id="skip", state="paused")
    env.core.clock.advance(5.0)
    for cid in ("skip", "silence"):
        await env.relay.send(c.RecordResume(call_id=call_id, control_id=cid))
        await env.relay.send(c.RecordStop(call_id=call_id, control_id=cid))
    passed = env.core.clock.now() - started
    skip = await env.rx.next("calling.call.record", control_id="skip", state="finished")
    silence = await env.rx.next("calling.call.record", control_id="silence", state="finished")
    assert 2.0 <= skip.params["duration"] <= passed - 5.0 + 1e-3  # the pause is skipped
    assert 7.0 <= silence.params["duration"] <= passed + 1e-3  # the pause is recorded as silence
    assert (await _wav(env, silence.params["url"]))[1] == silence.params["duration"]

    capped = c.RecordAudio(initial_timeout=0, end_silence_timeout=0, max_length=3)
    await env.relay.send(
        c.Record(call_id=call_id, control_id="cap", audio=capped, status_url=env.cb)
    )
    done = await env.rx.next("calling.call.record", control_id="cap", state="finished")
    assert done.params["duration"] == pytest.approx(3.0, abs=0.01)


async def test_record_terminator_and_no_input(env: EmulatorEnv) -> None:
    """
    A DTMF terminator ends a recording; with nothing heard within initial_timeout it ends no_input,
    without a url.
    """
    env.core.scenarios["+1444"] = Scenario(dtmf="5#")
    call_id = await env.answered("+1444")
    await env.relay.send(c.Record(call_id=call_id, control_id="t", status_url=env.cb))
    done = await env.rx.next("calling.call.record", control_id="t", state="finished")
    assert done.params["duration"] == pytest.approx(0.7, abs=0.2)  # 0.5 s delay + one key gap

    await env.relay.send(
        c.Record(call_id=call_id, control_id="quiet", status_url=env.cb,
                 audio=c.RecordAudio(initial_timeout=2))
    )  # fmt: skip
    quiet = await env.rx.next("calling.call.record", control_id="quiet", state="no_input")
    assert "url" not in quiet.params


# --- collect --------------------------------------------------------------------------------------


def _collect(call_id: str, cb: str, cid: str = "k", **kw: Any) -> c.Collect:
    kw.setdefault("start_input_timers", True)
    return c.Collect(call_id=call_id, control_id=cid, status_url=cb, **kw)


async def test_collect_scripted_dtmf_terminator_and_max(env: EmulatorEnv) -> None:
    """
    Scripted DTMF is collected up to the terminator, or up to max digits with an empty terminator; a
    digit result carries neither final nor state.
    """
    env.core.scenarios["+1333"] = Scenario(dtmf=("12#", "987654"))
    call_id = await env.answered("+1333")
    digits = c.CollectDigits(max=4, terminators="#")
    await env.relay.send(_collect(call_id, env.cb, "a", digits=digits))
    a = await env.rx.next("calling.call.collect", control_id="a")
    assert a.params["result"] == {"type": "digit", "params": {"digits": "12", "terminator": "#"}}
    assert "final" not in a.params
    assert "state" not in a.params
    await env.relay.send(_collect(call_id, env.cb, "b", digits=digits))
    b = await env.rx.next("calling.call.collect", control_id="b")
    assert b.params["result"] == {"type": "digit", "params": {"digits": "9876", "terminator": ""}}


async def test_collect_digit_timeout_and_no_input(env: EmulatorEnv) -> None:
    """
    digit_timeout ends a digit collect with the digits pressed; no press within initial_timeout is
    no_input.
    """
    env.core.scenarios["+1222"] = Scenario(dtmf="42")
    call_id = await env.answered("+1222")
    digits = c.CollectDigits(max=6, digit_timeout=2)
    await env.relay.send(_collect(call_id, env.cb, "a", digits=digits))
    a = await env.rx.next("calling.call.collect", control_id="a")
    assert a.params["result"]["params"]["digits"] == "42"

    await env.relay.send(_collect(call_id, env.cb, "b", digits=digits, initial_timeout=1.5))
    b = await env.rx.next("calling.call.collect", control_id="b")
    assert b.params["result"]["type"] == "no_input"


async def test_collect_waits_for_start_input_timers_by_default(env: EmulatorEnv) -> None:
    """
    Without start_input_timers the initial timeout does not run (a minute passes without a callback)
    until CollectStartInputTimers; then it ends no_input.
    """
    call_id = await env.answered()
    await env.relay.send(
        c.Collect(call_id=call_id, control_id="k", status_url=env.cb, initial_timeout=2,
                  digits=c.CollectDigits(max=2))
    )  # fmt: skip
    env.core.clock.advance(60.0)
    await env.core.idle()
    assert not [h for h in env.rx.of(call_id) if h.event_type == "calling.call.collect"]
    await env.relay.send(c.CollectStartInputTimers(call_id=call_id, control_id="k"))
    hit = await env.rx.next("calling.call.collect", control_id="k")
    assert hit.params["result"]["type"] == "no_input"


async def test_collect_speech_with_partial_results(env: EmulatorEnv) -> None:
    """
    A speech collect reports start_of_input, a partial result per word (final false), then the final
    result with the scenario's confidence.
    """
    env.core.scenarios["+1111"] = Scenario(speech="yes please thanks", confidence=0.8)
    call_id = await env.answered("+1111")
    await env.relay.send(
        _collect(call_id, env.cb, speech=c.CollectSpeech(end_silence_timeout=0.5),
                 partial_results=True, send_start_of_input=True)
    )  # fmt: skip
    start = await env.rx.next("calling.call.collect", control_id="k")
    assert start.params["result"]["type"] == "start_of_input"
    partials = [await env.rx.next("calling.call.collect", control_id="k") for _ in range(2)]
    assert [p.params["result"]["params"]["text"] for p in partials] == ["yes", "yes please"]
    assert all(p.params["final"] is False for p in partials)
    final = await env.rx.next("calling.call.collect", control_id="k")
    assert final.params["final"] is True
    assert final.params["result"] == {
        "type": "speech",
        "params": {"text": "yes please thanks", "confidence": 0.8},
    }


async def test_collect_continuous_mode(env: EmulatorEnv) -> None:
    """A continuous collect reports each press while collecting; only CollectStop finishes it."""
    call_id = await env.answered()
    await env.relay.send(
        _collect(call_id, env.cb, digits=c.CollectDigits(max=1), continuous=True,
                 initial_timeout=1000)
    )  # fmt: skip
    assert env.core.press(call_id, "7")
    first = await env.rx.next("calling.call.collect", control_id="k")
    assert first.params["state"] == "collecting"
    assert first.params["result"]["params"]["digits"] == "7"
    env.core.press(call_id, "8")
    second = await env.rx.next("calling.call.collect", control_id="k")
    assert second.params["result"]["params"]["digits"] == "8"
    await env.relay.send(c.CollectStop(call_id=call_id, control_id="k"))
    last = await env.rx.next("calling.call.collect", control_id="k")
    assert last.params["state"] == "finished"


async def test_collect_no_match_on_a_bare_terminator(env: EmulatorEnv) -> None:
    """A terminator with no digit before it is no_match."""
    call_id = await env.answered()
    await env.relay.send(_collect(call_id, env.cb, digits=c.CollectDigits(max=3, terminators="#")))
    env.core.press(call_id, "#")
    hit = await env.rx.next("calling.call.collect", control_id="k")
    assert hit.params["result"]["type"] == "no_match"


async def test_press_before_the_collect_is_kept_for_it(env: EmulatorEnv) -> None:
    """Digits pressed while no collect runs are kept (press returns False) for the next one."""
    call_id = await env.answered()
    assert env.core.press(call_id, "55") is False
    await env.relay.send(_collect(call_id, env.cb, digits=c.CollectDigits(max=2)))
    hit = await env.rx.next("calling.call.collect", control_id="k")
    assert hit.params["result"]["params"]["digits"] == "55"


# --- detect ---------------------------------------------------------------------------------------


async def test_detect_machine_then_ready_then_finished(env: EmulatorEnv) -> None:
    """Machine detection on a machine reports MACHINE, READY, then finished right after READY."""
    env.core.scenarios["+1600"] = Scenario(answer="machine", detect_seconds=1, greeting_seconds=2)
    call_id = await env.answered("+1600")
    await env.relay.send(
        c.Detect(call_id=call_id, control_id="d", detect=c.DetectMachine(), status_url=env.cb)
    )
    events = [await env.rx.next("calling.call.detect", control_id="d") for _ in range(3)]
    assert [e.params["detect"] for e in events] == [
        {"type": "machine", "params": {"event": e}} for e in ("MACHINE", "READY", "finished")
    ]
    assert events[2].body["timestamp"] - events[1].body["timestamp"] < 0.2


async def test_detect_human_and_answer_as(env: EmulatorEnv) -> None:
    """
    Machine detection on a human reports HUMAN then finished; after answer_as('machine') it reports
    MACHINE then finished, not waiting for the message end.
    """
    call_id = await env.answered()
    await env.relay.send(
        c.Detect(call_id=call_id, control_id="d", detect=c.DetectMachine(), status_url=env.cb)
    )
    first = await env.rx.next("calling.call.detect", control_id="d")
    assert first.params["detect"]["params"]["event"] == "HUMAN"
    last = await env.rx.next("calling.call.detect", control_id="d")
    assert last.params["detect"]["params"]["event"] == "finished"

    env.core.answer_as(call_id, "machine")
    await env.relay.send(
        c.Detect(call_id=call_id, control_id="d2", status_url=env.cb,
                 detect=c.DetectMachine(detect_message_end=False))
    )  # fmt: skip
    verdict = await env.rx.next("calling.call.detect", control_id="d2")
    assert verdict.params["detect"]["params"]["event"] == "MACHINE"
    done = await env.rx.next("calling.call.detect", control_id="d2")
    assert done.params["detect"]["params"]["event"] == "finished"


async def test_detect_fax_digits_and_timeout(env: EmulatorEnv) -> None:
    """
    Fax detection reports the scenario's CED tone; digit detection reports the scripted digit, then
    finished when its timeout runs out.
    """
    env.core.scenarios["+1700"] = Scenario(fax_tone="CED", dtmf="1")
    call_id = await env.answered("+1700")
    await env.relay.send(
        c.Detect(call_id=call_id, control_id="f", detect=c.DetectFax(), status_url=env.cb)
    )
    tone = await env.rx.next("calling.call.detect", control_id="f")
    assert tone.params["detect"] == {"type": "fax", "params": {"event": "CED"}}
    await env.relay.send(
        c.Detect(call_id=call_id, control_id="g", detect=c.DetectDigit(), timeout=5,
                 status_url=env.cb)
    )  # fmt: skip
    digit = await env.rx.next("calling.call.detect", control_id="g")
    assert digit.params["detect"] == {"type": "digit", "params": {"event": "1"}}
    done = await env.rx.next("calling.call.detect", control_id="g")
    assert done.params["detect"]["params"]["event"] == "finished"
    assert done.body["timestamp"] - digit.body["timestamp"] == pytest.approx(4.5, abs=0.3)


# --- ending a call ends its operations first ------------------------------------------------------


async def test_ending_a_call_finishes_every_operation_before_ended(env: EmulatorEnv) -> None:
    """
    When the far end hangs up, every running operation's final event (play, record, collect
    no_input, detect, tap, stream, transcribe and its transcript, live translate) is sent before the
    call's ended, each with its documented payload.
    """
    call_id = await env.answered()
    cb = env.cb
    send = env.relay.send
    await send(
        c.Play(call_id=call_id, control_id="p", play=[relaycall.ringtone("us")], status_url=cb)
    )
    before_record = env.core.clock.now()
    await send(c.Record(call_id=call_id, control_id="r", status_url=cb,
                        audio=c.RecordAudio(initial_timeout=0)))  # fmt: skip
    await send(_collect(call_id, cb, "k", digits=c.CollectDigits(max=4), initial_timeout=100))
    await send(c.Detect(call_id=call_id, control_id="d", detect=c.DetectDigit(), status_url=cb))
    await send(c.Tap(call_id=call_id, control_id="t", direction="both", status_url=cb,
                     device=c.WsDevice(uri="wss://tap.example")))  # fmt: skip
    await send(c.Stream(call_id=call_id, control_id="s", url="wss://s.example", name="n",
                        status_url=cb))  # fmt: skip
    await send(c.Transcribe(call_id=call_id, control_id="x", status_url=cb))
    await env.relay.send(c.LiveTranslate(
        call_id=call_id, status_url=cb,
        action=c.LiveTranslateStart(from_lang="en", to_lang="es", direction=["remote-caller"]),
    ))  # fmt: skip
    await env.rx.next("calling.call.tap", control_id="t", state="tapping")
    await env.rx.next("calling.call.stream", control_id="s", state="streaming")
    await env.rx.next("calling.call.transcribe", control_id="x", state="transcribing")
    env.core.clock.advance(4.0)
    env.core.hangup(call_id)  # the far end hangs up
    # Emulated time also runs with the event loop's clock (50x), so a slow machine adds
    # to the 4 s: the recording lasts from its start to the hang-up, read just after it.
    recorded_for = env.core.clock.now() - before_record
    ended = await env.rx.next("calling.call.state", call_id=call_id, call_state="ended")
    await env.core.idle()
    order = env.rx.hits
    last = order.index(ended)
    finals = {
        "play": await env.rx.next("calling.call.play", control_id="p", state="finished"),
        "record": await env.rx.next("calling.call.record", control_id="r", state="finished"),
        "collect": await env.rx.next("calling.call.collect", control_id="k"),
        "detect": await env.rx.next(
            "calling.call.detect",
            control_id="d",
            where=lambda h: h.params["detect"]["params"]["event"] == "finished",
        ),
        "tap": await env.rx.next("calling.call.tap", control_id="t", state="finished"),
        "stream": await env.rx.next("calling.call.stream", control_id="s", state="finished"),
        "transcribe": await env.rx.next(
            "calling.call.transcribe", control_id="x", state="finished"
        ),
        "transcript": await env.rx.next("calling.transcript.completed"),
        "live": await env.rx.next("calling.call.live_translate", state="stopped"),
    }
    for kind, hit in finals.items():
        assert order.index(hit) < last, kind
    assert finals["collect"].params["result"]["type"] == "no_input"
    assert 4.0 <= finals["record"].params["duration"] <= recorded_for + 1e-3
    assert finals["record"].params["url"].endswith(".wav")
    transcript = finals["transcript"].body
    assert set(transcript) == {"event_type", "timestamp", "project_id", "space_id", "params"}
    assert set(transcript["params"]) == {"id", "call_id", "segment_id", "text"}
    stream = finals["stream"].params
    assert set(stream) == {"call_id", "node_id", "segment_id", "control_id", "state", "url", "name"}
    tap = finals["tap"].params
    assert tap["tap"] == {"type": "audio", "params": {"direction": "both"}}
    assert tap["device"] == {"type": "ws", "params": {"uri": "wss://tap.example"}}
    assert env.core.calls[call_id].ops == {}


# --- the rest of the commands ---------------------------------------------------------------------


async def test_other_commands_keep_state(env: EmulatorEnv) -> None:
    """
    Denoise, AI hold/unhold/message/stop, user events, transfer, disconnect, fax stop and live
    transcribe change the emulated call's state; a second start is 409 and stopping nothing 404;
    live transcribe reports started, summarized, stopped.
    """
    env.core.scenarios["+1800"] = Scenario(send_fax="fax-1")
    call_id = await env.answered("+1800")
    send = env.relay.send
    call = env.core.calls[call_id]
    await send(c.Denoise(call_id=call_id))
    assert call.denoised
    await send(c.DenoiseStop(call_id=call_id))
    assert not call.denoised
    await send(c.AIHold(call_id=call_id, timeout=30, prompt="one moment"))
    assert call.ai_held
    assert call.ai_hold_timeout == "30"
    await send(c.AIUnhold(call_id=call_id))
    await send(c.AIMessage(call_id=call_id, role="system", message_text="be brief",
                           global_data={"tier": "gold"}))  # fmt: skip
    assert call.ai_global_data == {"tier": "gold"}
    await send(c.AIStop(call_id=call_id))
    await send(c.UserEvent(call_id=call_id, event={"step": 1}))
    assert call.user_events == [{"step": 1}]
    await send(c.Transfer(call_id=call_id, dest="sip:agent@example.com"))
    await send(c.Disconnect(call_id=call_id))
    await send(c.SendFaxStop(call_id=call_id, control_id="fax-1"))
    with pytest.raises(relaycall.NotFoundError):
        await send(c.SendFaxStop(call_id=call_id, control_id="fax-1"))
    await send(c.LiveTranscribe(call_id=call_id, action=c.LiveTranscribeStart(
        lang="en", direction=["remote-caller"], webhook=env.rx.url("/live"))))  # fmt: skip
    with pytest.raises(relaycall.ConflictError):
        await send(c.LiveTranscribe(call_id=call_id, action=c.LiveTranscribeStart(
            lang="en", direction=["remote-caller"])))  # fmt: skip
    await send(c.LiveTranscribe(call_id=call_id, action=c.Summarize(prompt="short")))
    await send(c.LiveTranscribe(call_id=call_id, action="stop"))
    with pytest.raises(relaycall.NotFoundError):
        await send(c.LiveTranscribe(call_id=call_id, action="stop"))
    states = [(await env.rx.next("calling.call.live_transcribe")).params["state"] for _ in range(3)]
    assert states == ["started", "summarized", "stopped"]


async def test_sidecar(env: EmulatorEnv) -> None:
    """
    An AI sidecar starts once (409 the second time), posts start and ask_answer, counts ticks and
    insights in its status, stops, and is then 404.
    """
    call_id = await env.answered()
    side_url = env.rx.url("/sidecar")
    await env.relay.send(c.AISidecar(call_id=call_id, lang="en-US", url=side_url))
    with pytest.raises(relaycall.ConflictError):
        await env.relay.send(c.AISidecar(call_id=call_id, lang="en-US"))
    start = await env.rx.next("calling.ai.sidecar", type="start")
    assert start.body["call_info"]["call_id"] == call_id
    await env.relay.send(c.AISidecarPoke(call_id=call_id, text="customer sounds upset"))
    await env.relay.send(c.AISidecarAsk(call_id=call_id, text="what now?"))
    answer = await env.rx.next("calling.ai.sidecar", type="ask_answer")
    assert answer.params["triggered_by"] == "ask"
    status = await env.relay.send(c.AISidecarStatus(call_id=call_id))
    assert status.ok
    assert status.running
    assert status["ticks"] == 2
    assert status["insights"] == 1
    await env.relay.send(c.AISidecarStop(call_id=call_id))
    await env.rx.next("calling.ai.sidecar", type="stop")
    with pytest.raises(relaycall.NotFoundError):
        await env.relay.send(c.AISidecarPoke(call_id=call_id, text="hi"))


async def test_refer_moves_the_call_on(env: EmulatorEnv) -> None:
    """
    A SIP refer reports inProgress with sip_refer_to, then success, and the call ends with hangup.
    """
    call_id = await env.answered()
    await env.relay.send(
        c.Refer(call_id=call_id, device=c.SipReferDevice(to="sip:bob@example.com"),
                status_url=env.cb)
    )  # fmt: skip
    first = await env.rx.next("calling.call.refer")
    assert first.params["state"] == "inProgress"
    assert first.params["sip_refer_to"] == "sip:bob@example.com"
    second = await env.rx.next("calling.call.refer")
    assert second.params["state"] == "success"
    ended = await env.rx.next("calling.call.state", call_id=call_id, call_state="ended")
    assert ended.params["end_reason"] == "hangup"


# --- signatures, delivery failures, journal, control API ------------------------------------------


async def test_signed_callbacks_verify(signed_env: EmulatorEnv) -> None:
    """
    With a signing key, each callback carries the HMAC-SHA1 and HMAC-SHA256 of its full URL (query
    included) followed by its body.
    """
    env = signed_env
    call_id = await env.answered()
    await env.relay.send(
        c.Play(call_id=call_id, control_id="p", play=[relaycall.silence(0.5)],
               status_url=env.cb + "?token=abc&x=1")
    )  # fmt: skip
    hit = await env.rx.next("calling.call.play", control_id="p", state="finished")
    assert hit.url.endswith("?token=abc&x=1")
    signed = hit.url.encode() + hit.raw
    assert (
        hit.headers["X-SignalWire-Signature"] == hmac.new(b"k3y", signed, hashlib.sha1).hexdigest()
    )
    assert (
        hit.headers["X-SignalWire-SHA256-Signature"]
        == hmac.new(b"k3y", signed, hashlib.sha256).hexdigest()
    )


async def test_delivery_failures_and_foreign_hosts_are_journaled(env: EmulatorEnv) -> None:
    """
    A callback answered 500 is journaled failed with that status; one to a host that is not loopback
    is journaled blocked, never sent.
    """
    env.rx.status = 500
    call_id = await env.dial(status_url=env.cb, status_events=["created"])
    await env.rx.next("calling.call.state", call_id=call_id, call_state="created")
    await env.relay.send(c.End(call_id=call_id))
    other = await env.dial(status_url="https://hooks.example.com/cb", status_events=["ended"])
    env.core.hangup(other)
    await env.core.idle()
    outcomes = {(e.call_id, e.outcome, e.status) for e in env.core.journal.callbacks}
    assert (call_id, "failed", 500) in outcomes
    assert (other, "blocked", None) in outcomes


async def test_journal_jsonl(env: EmulatorEnv) -> None:
    """
    /__emulator/journal.jsonl needs the credentials, and lists each request with its status and
    every delivered call-state callback.
    """
    call_id = await env.answered()
    await env.http.api({"command": "calling.end", "id": call_id, "params": {"reason": "bad"}})
    await env.relay.send(c.End(call_id=call_id))
    await env.core.idle()
    assert (await env.http.request("GET", "/__emulator/journal.jsonl", auth=False))[0] == 401
    status, text, _ = await env.http.request("GET", "/__emulator/journal.jsonl")
    assert status == 200
    lines = [json.loads(line) for line in text.splitlines()]
    requests = [(e["command"], e["status"]) for e in lines if e["kind"] == "request"]
    assert requests == [("dial", 200), ("calling.end", 422), ("calling.end", 200)]
    delivered = [e for e in lines if e["kind"] == "callback" and e["outcome"] == "delivered"]
    assert {e["body"]["params"]["call_state"] for e in delivered} == set(ALL_EVENTS)
    assert [e.kind for e in env.core.journal][:1] == ["request"]


async def test_control_api_press_say_and_calls(env: EmulatorEnv) -> None:
    """
    The control API (credentials required) presses digits and says text into collects, lists the
    calls, is 404 for an unknown call, sets scenarios, and resets everything.
    """
    call_id = await env.answered()
    press, say = f"/__emulator/calls/{call_id}/press", f"/__emulator/calls/{call_id}/say"
    assert (await env.http.request("POST", press, {"digits": "12"}, auth=False))[0] == 401
    await env.relay.send(_collect(call_id, env.cb, "k", digits=c.CollectDigits(max=2)))
    status, reply, _ = await env.http.request("POST", press, {"digits": "12"})
    assert status == 200
    assert reply["result"] is True
    hit = await env.rx.next("calling.call.collect", control_id="k")
    assert hit.params["result"]["params"]["digits"] == "12"

    await env.relay.send(_collect(call_id, env.cb, "s", speech=c.CollectSpeech()))
    assert (await env.http.request("POST", say, {"text": "hello"}))[0] == 200
    hit = await env.rx.next("calling.call.collect", control_id="s")
    assert hit.params["result"]["params"]["text"] == "hello"

    _, calls, _ = await env.http.request("GET", "/__emulator/calls")
    assert [call["id"] for call in calls] == [call_id]
    assert calls[0]["status"] == "answered"
    unknown = f"/__emulator/calls/{uuid.uuid4()}/press"
    assert (await env.http.request("POST", unknown, {"digits": "1"}))[0] == 404
    scenario = {"answer": "busy"}
    assert (await env.http.request("PUT", "/__emulator/scenarios/+1900", scenario))[0] == 200
    assert env.core.scenarios["+1900"].answer == "busy"
    assert (await env.http.request("POST", "/__emulator/reset"))[0] == 200
    assert env.core.calls == {}
    assert env.core.scenarios == {}
    assert len(env.core.journal) == 0


# --- capacity -------------------------------------------------------------------------------------


async def test_ten_thousand_concurrent_calls_with_running_operations() -> None:
    """
    10,000 answered calls with a play and a collect each hold one timer per operation, use no CPU
    while they wait, and ending them leaves no timer.
    """
    emu = EmulatedPlatform(
        EmulatorConfig(
            time_scale=1.0, setup_seconds=0.0, default_scenario=Scenario(ring_seconds=0.0)
        )
    )
    await emu.start()
    try:
        n = 10_000
        ids = []
        for i in range(n):
            reply = emu.handle(
                {"command": "dial",
                 "params": {"from": "+15551230000", "to": f"+1555{i:07d}", "url": "https://x.test/s"}}
            )  # fmt: skip
            ids.append(reply.body["id"])
        emu.clock.advance(0)  # the lifecycle steps due now run
        assert all(call.is_answered for call in emu.calls.values())
        for call_id in ids:
            play = {"control_id": "p", "play": [{"type": "silence", "params": {"duration": 600}}]}
            assert (
                emu.handle({"command": "calling.play", "id": call_id, "params": play}).status == 200
            )
            collect = {"control_id": "k", "digits": {"max": 4}, "start_input_timers": True,
                       "initial_timeout": 600}  # fmt: skip
            assert (
                emu.handle({"command": "calling.collect", "id": call_id, "params": collect}).status
                == 200
            )
        assert sum(len(call.ops) for call in emu.calls.values()) == 2 * n
        assert len(emu.clock) == 2 * n  # one timer per operation, none for the calls
        cpu = time.process_time()
        await asyncio.sleep(0.2)
        assert time.process_time() - cpu < 0.1  # nothing spins while they all run
        for call_id in ids:
            emu.handle({"command": "calling.end", "id": call_id, "params": {}})
        assert len(emu.clock) == 0
        assert all(not call.ops for call in emu.calls.values())
    finally:
        await emu.close()
