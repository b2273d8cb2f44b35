"""
Every wait finishes: at close, after close, without a receiver, and when the
platform drops a call's final ``ended`` callback (callbacks are best-effort).

Against real servers on 127.0.0.1: the recording WireServer (conftest) and
the emulator, whose fault rules lose callbacks. Nothing sleeps to wait for an
event: waits are awaited with timeouts.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import pytest

import relaycall
from relaycall import EventReceiver, Playback
from relaycall.testing import Emulator

from .conftest import PROJECT, TOKEN, WireServer

DIAL = {"from_": "+15551230000", "to": "+15557650000", "url": "https://example.test/swml"}
PROBE = {"type": "relaycall.probe"}


async def drain(events: Any) -> list[Any]:
    return [event async for event in events]


# --- close ---------------------------------------------------------------------------------------


async def test_waits_pending_at_close_all_finish(server: WireServer) -> None:
    """
    200 wait_for() pending at close raise ClientClosedError; call.wait() resolves
    with session_closed and events() iterations end, all at once.
    """
    relay = relaycall.AsyncRelay(PROJECT, TOKEN, base_url=server.base_url, events=EventReceiver())
    calls = [relay.call(str(uuid.uuid4())) for _ in range(200)]
    wait_fors = [asyncio.create_task(call.wait_for("answered")) for call in calls]
    call_waits = [asyncio.create_task(call.wait()) for call in calls[:50]]
    streams = [asyncio.create_task(drain(call.events())) for call in calls[:50]]
    await asyncio.sleep(0)  # let every wait start
    await relay.close()
    done = await asyncio.wait_for(
        asyncio.gather(*wait_fors, *call_waits, *streams, return_exceptions=True), 5
    )
    closed = done[:200]
    assert all(isinstance(e, relaycall.ClientClosedError) for e in closed)
    assert "closed before the call reached 'answered'" in str(closed[0])
    assert {r.reason for r in done[200:250]} == {"session_closed"}
    assert done[250:] == [[]] * 50
    assert server.seen == []


async def test_waits_started_after_close_answer_at_once(server: WireServer) -> None:
    """
    After close, on a call known before or attached after: wait_for() raises
    ClientClosedError, events() ends, call.wait() and an operation's wait()
    resolve with session_closed; nothing is sent.
    """
    relay = relaycall.AsyncRelay(PROJECT, TOKEN, base_url=server.base_url, events=EventReceiver())
    before = [relay.call(str(uuid.uuid4())) for _ in range(50)]
    await relay.close()
    after = [relay.call(str(uuid.uuid4())) for _ in range(50)]

    async def every_wait(call: relaycall.Call) -> None:
        with pytest.raises(relaycall.ClientClosedError):
            await call.wait_for("ended")
        assert await drain(call.events()) == []
        assert (await call.wait()).reason == "session_closed"
        playback = call.attach(Playback, "p1")
        assert (await playback.wait()).reason == "session_closed"
        assert await drain(playback.events()) == []

    await asyncio.wait_for(asyncio.gather(*(every_wait(c) for c in before + after)), 5)
    assert server.seen == []


# --- without a receiver --------------------------------------------------------------------------


async def test_without_a_receiver_a_wait_without_timeout_is_refused_at_once(
    relay: relaycall.AsyncRelay, server: WireServer
) -> None:
    """No EventReceiver, no timeout: every kind of wait raises UsageError, sending nothing."""
    call = relay.call(str(uuid.uuid4()))
    playback = call.attach(Playback, "p1")
    waits = [
        call.wait(),
        call.wait(),
        call.wait_for("answered"),
        drain(call.events()),
        playback.wait(),
        drain(playback.events()),
    ]
    for wait in waits:
        with pytest.raises(relaycall.UsageError, match="no EventReceiver") as info:
            await asyncio.wait_for(wait, 1)
        assert "timeout=" in str(info.value)
    assert server.seen == []


async def test_without_a_receiver_known_outcomes_and_timeouts_still_work(
    relay: relaycall.AsyncRelay,
) -> None:
    """
    Without a receiver, call.wait() after this process's end() resolves, a state
    already reached is returned, and a wait with a timeout times out.
    """
    call = await relay.dial(**DIAL)
    await call.end()
    assert (await call.wait()).reason == "ended_here"
    assert await call.wait_for("answered") == "ended"
    other = relay.call(str(uuid.uuid4()))
    with pytest.raises(relaycall.WaitTimeoutError):
        await other.wait(timeout=0.05)
    with pytest.raises(relaycall.WaitTimeoutError):
        await other.wait_for("answered", timeout=0.05)


# --- a lost ended callback ------------------------------------------------------------------------


async def test_a_call_whose_ended_callback_is_lost_is_probed_and_ends() -> None:
    """
    The far end hangs up and every callback is dropped: after 0.3 s
    of quiet the call is probed, the 404 ends it here (reason ``gone``), and
    call.wait(), wait_for(), events() and an operation's wait() all finish.
    """
    async with Emulator(time_scale=50, probe_quiet_calls_after=0.3) as emu:
        call = await emu.relay.dial(**DIAL)
        assert await call.wait_for("answered", timeout=5) == "answered"
        playback = await call.play(relaycall.silence(600))
        waits = [
            asyncio.create_task(call.wait()),
            asyncio.create_task(call.wait_for("ended")),
            asyncio.create_task(drain(call.events())),
            asyncio.create_task(playback.wait()),
        ]
        emu.faults.drop_callbacks(times=None, call_id=call.id)  # the play's too
        emu.hangup(call)
        hung_up = time.monotonic()
        ended, state, _, played = await asyncio.wait_for(asyncio.gather(*waits), 5)
        lag = time.monotonic() - hung_up
        assert (ended.reason, ended.state, state) == ("gone", "ended", "ended")
        assert played.reason == "call_ended"
        assert lag < 0.3 + 2.0
        probes = [r for r in emu.requests if r.command == "calling.user_event"]
        assert probes[-1].status == 404
        assert probes[-1].body == {
            "command": "calling.user_event",
            "id": call.id,
            "params": {"event": PROBE},
        }
        await emu.idle()
        (lost,) = [c for c in emu.callbacks if c.body["params"].get("call_state") == "ended"]
        assert lost.outcome == "dropped"


async def test_a_quiet_live_call_is_probed_and_left_as_it_was() -> None:
    """
    A live call quiet for longer than the interval while something waits on
    it gets probes answered 200, nothing else, and stays answered.
    """
    async with Emulator(time_scale=50, probe_quiet_calls_after=0.2) as emu:
        call = await emu.relay.dial(**DIAL)
        assert await call.wait_for("answered", timeout=5) == "answered"
        sent = len(emu.requests)
        with pytest.raises(relaycall.WaitTimeoutError):
            await call.wait(timeout=1.0)
        later = emu.requests[sent:]
        assert len(later) >= 2
        assert {(r.command, r.status) for r in later} == {("calling.user_event", 200)}
        assert call.state == "answered"
        assert emu.call(call).is_live
        assert emu.call(call).user_events == [PROBE] * len(later)


async def test_no_probe_when_probing_is_off() -> None:
    """``probe_quiet_calls_after=None``: a quiet call someone waits on gets no request."""
    async with Emulator(time_scale=50, probe_quiet_calls_after=None) as emu:
        call = await emu.relay.dial(**DIAL)
        assert await call.wait_for("answered", timeout=5) == "answered"
        sent = len(emu.requests)
        with pytest.raises(relaycall.WaitTimeoutError):
            await call.wait(timeout=0.5)
        assert emu.requests[sent:] == []


@pytest.mark.parametrize("bad", [0, -1, "5", True])
def test_probe_interval_must_be_a_duration(bad: Any) -> None:
    """A probe interval that is not a positive duration (or None) is refused, by name."""
    with pytest.raises(relaycall.UsageError, match="probe_quiet_calls_after"):
        relaycall.AsyncRelay(
            PROJECT, TOKEN, base_url="http://127.0.0.1:1", probe_quiet_calls_after=bad
        )
