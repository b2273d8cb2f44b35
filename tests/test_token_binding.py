"""
Every token relaycall puts in a status_url authorises one call, and an operation's one start.

Token-only mode (no signing key, where the platform does not sign) is where
the token is the only thing between a leaked URL and the calls of this
process, so these tests run there; with a signing key the same rules hold
after the signature check. Callbacks are posted the way the platform would,
to the URLs the emulator's journal shows relaycall gave it.
"""

from __future__ import annotations

import json
import time
from typing import Any

import aiohttp
import pytest

import relaycall
from relaycall import tts
from relaycall.testing import Emulator

TO, FROM = "+15557650000", "+15551230000"
DIAL: dict[str, Any] = {"to": TO, "from_": FROM, "url": "https://example.test/swml"}
OTHER = "0f1c1c1e-1111-4222-8333-944444444444"


def envelope(event_type: str, **params: Any) -> dict[str, Any]:
    return {"event_type": event_type, "timestamp": time.time(), "params": params}


async def post(url: str, payload: dict[str, Any]) -> int:
    async with aiohttp.ClientSession() as http, http.post(url, data=json.dumps(payload)) as resp:
        return resp.status


def status_url_of(emu: Emulator, command: str, **match: Any) -> str:
    """The status_url relaycall sent with the latest *command* whose params match."""
    for entry in reversed(emu.requests):
        params = entry.body.get("params", {})
        if entry.command == command and all(params.get(k) == v for k, v in match.items()):
            return str(params["status_url"])
    raise AssertionError(f"no {command} with {match} was sent")


@pytest.fixture
async def emu():
    # Unsigned callbacks, unchecked: tokens alone guard the receiver.
    async with Emulator(time_scale=50, signing_key=None) as emu:
        yield emu


async def answered(emu: Emulator, **dial: Any) -> relaycall.Call:
    call = await emu.relay.dial(**{**DIAL, **dial})
    assert await call.wait_for("answered", timeout=5) == "answered"
    return call


async def test_a_dial_token_is_refused_for_other_calls(emu):
    """A's dial URL cannot end B (attached by id) or C (dialed with the user's own status_url)."""
    a = await answered(emu)
    b = await answered(emu)
    attached = emu.relay.call(b.id)
    own_url = emu.receiver.status_url("ffffffff-1111-4222-8333-944444444444")
    c = await emu.relay.dial(**DIAL, status_url=own_url)
    leaked = next(
        r.body["params"]["status_url"]
        for r in emu.requests
        if r.command == "dial" and r.call_id == a.id
    )
    before = emu.receiver.stats.rejected_auth
    for victim in (attached, c):
        ended = envelope("calling.call.state", call_id=victim.id, call_state="ended")
        assert await post(leaked, ended) == 403
    assert emu.receiver.stats.rejected_auth == before + 2
    assert attached.state == "answered"
    assert c.state != "ended"
    # A's own events still pass with A's token.
    ended_a = envelope("calling.call.state", call_id=a.id, call_state="ended")
    assert await post(leaked, ended_a) == 200
    assert (await a.wait(timeout=5)).reason == "finished"
    for call in (b, c):
        await call.end()


async def test_an_operation_token_reaches_only_that_operation(emu):
    """Play X's URL cannot finish play Y on the same call (stale) nor touch another call (403)."""
    call = await answered(emu)
    other = await answered(emu)
    x = await call.play(tts("x " * 200), control_id="x")
    y = await call.play(tts("y " * 200), control_id="y")
    z = await other.play(tts("z " * 200), control_id="z")
    x_url = status_url_of(emu, "calling.play", control_id="x")
    stale = emu.receiver.stats.stale
    done_y = envelope("calling.call.play", call_id=call.id, control_id="y", state="finished")
    assert await post(x_url, done_y) == 200
    assert emu.receiver.stats.stale == stale + 1
    done_z = envelope("calling.call.play", call_id=other.id, control_id="z", state="finished")
    assert await post(x_url, done_z) == 403
    assert (x.state, y.state, z.state) == ("playing", "playing", "playing")
    # A call-level token does not reach operations started with a handle either.
    c_url = emu.receiver.status_url(call.id)
    assert await post(c_url, done_y) == 200
    assert y.state == "playing"
    for c in (call, other):
        await c.end()


async def test_a_replayed_final_callback_cannot_finish_a_later_start(emu):
    """A genuine 'finished' for an earlier play, replayed after its control_id was reused.

    Before, it finished the new, still-playing operation.
    """
    call = await answered(emu)
    first = await call.play(relaycall.silence(0.01), control_id="again")
    assert (await first.wait(timeout=5)).state == "finished"
    await emu.idle()  # the journal records a callback once its delivery is complete
    (genuine,) = [
        c
        for c in emu.callbacks
        if c.control_id == "again" and c.body["params"].get("state") == "finished"
    ]
    second = await call.play(tts("a long one " * 100), control_id="again")
    assert second is not first
    stale = emu.receiver.stats.stale
    assert await post(genuine.url, genuine.body) == 200
    assert emu.receiver.stats.stale == stale + 1
    assert second.state == "playing"
    await call.end()


async def test_tokens_this_receiver_never_issued_are_refused(emu):
    """Forged, truncated or non-ASCII tokens: 403, counted, nothing applied."""
    call = await answered(emu)
    base = emu.receiver.status_url(call.id).split("?")[0]
    ended = envelope("calling.call.state", call_id=call.id, call_state="ended")
    before = emu.receiver.stats.rejected_auth
    for token in ("", "x", "d.", "d.abc.def", "o.g.", "o.gen.forged", "c." + "A" * 24, "é"):
        assert await post(f"{base}?t={token}", ended) == 403
    assert emu.receiver.stats.rejected_auth == before + 8
    assert call.state == "answered"
    await call.end()


async def test_a_dial_token_does_not_reach_the_calls_operations(emu):
    """The dial's URL (every call-state callback's) cannot finish a playback on that call."""
    call = await answered(emu)
    pb = await call.play(tts("x " * 200), control_id="p1")
    dial_url = status_url_of(emu, "dial", to=TO)
    stale = emu.receiver.stats.stale
    done = envelope("calling.call.play", call_id=call.id, control_id="p1", state="finished")
    assert await post(dial_url, done) == 200
    assert emu.receiver.stats.stale == stale + 1
    assert pb.state == "playing"
    await call.end()


async def test_a_call_attached_again_by_id_takes_its_dial_callbacks(emu):
    """A dialed call whose handle was let go, or one sent with relay.send(Dial), attached by id.

    Its callbacks carry the dial's token; the session remembers which call that
    token belongs to, so relay.call(id) gets them (before, every one was a 403).
    """
    import gc  # noqa: PLC0415

    call = await emu.relay.dial(**DIAL)
    call_id = call.id
    del call
    gc.collect()
    again = emu.relay.call(call_id)
    assert await again.wait_for("answered", timeout=5) == "answered"
    leg = await emu.relay.send(relaycall.commands.Dial(**DIAL))
    sent = emu.relay.call(leg.id)
    assert await sent.wait_for("answered", timeout=5) == "answered"
    assert emu.receiver.stats.rejected_auth == 0
    for c in (again, sent):
        await c.end()


def _altered(url: str) -> str:
    """*url* with the last character of its token's MAC changed (still URL-safe base64)."""
    return url[:-1] + ("A" if url[-1] != "A" else "B")


async def test_a_token_accepted_before_does_not_let_a_near_copy_through(emu):
    """
    The receiver keeps the last good token of each handle (to skip its MAC next time): a copy of
    that token with one MAC character changed is still refused, for the call and the operation,
    and the genuine one still passes.
    """
    call = await answered(emu)  # the dial's token has been found good for the call
    pb = await call.play(tts("x " * 200), control_id="p1")
    dial_url = status_url_of(emu, "dial", to=TO)
    play_url = status_url_of(emu, "calling.play", control_id="p1")
    playing = envelope("calling.call.play", call_id=call.id, control_id="p1", state="playing")
    assert await post(play_url, playing) == 200  # and now for the playback
    before = emu.receiver.stats.rejected_auth
    finished = envelope("calling.call.play", call_id=call.id, control_id="p1", state="finished")
    assert await post(_altered(play_url), finished) == 403
    ended = envelope("calling.call.state", call_id=call.id, call_state="ended")
    assert await post(_altered(dial_url), ended) == 403
    assert emu.receiver.stats.rejected_auth == before + 2
    assert (call.state, pb.state) == ("answered", "playing")
    assert await post(play_url, finished) == 200
    assert (await pb.wait(timeout=5)).state == "finished"
    await call.end()
