"""
The emulator's faults, rate limits and WebSocket media, piece by piece: the
rules and their validation, the control API, the token bucket and the call
queue, and the media connections' failure paths. tests/test_e2e.py shows the
same features through relaycall.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp
import pytest
from aiohttp import web

import relaycall
from relaycall.emulator import EmulatorConfig, Faults, RateLimits
from relaycall.emulator.__main__ import build_parser, config_from
from relaycall.emulator._media import pcmu, tone
from relaycall.emulator._ratelimit import CallQueue, PostBucket
from relaycall.testing import Emulator, Scenario
from tests.conftest import (
    DIAL,
    FROM,
    TO,
    EmulatorEnv,
    MediaServer,
    answered_call,
    bare_relay,
)

DIAL_BODY = {
    "command": "dial",
    "params": {"from": FROM, "to": TO, "url": "https://x.test/s"},
}


# --- rules ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda f: f.fail(200), "status must be an error status"),
        (lambda f: f.fail(503, times=0), "times must be a positive integer"),
        (lambda f: f.fail(503, probability=1.5), "probability must be between 0 and 1"),
        (lambda f: f.fail(429, retry_after=-1), "retry_after must be"),
        (lambda f: f.fail(503, command=""), "command must be a non-empty string"),
        (lambda f: f.fail(500, processed="yes"), "processed must be true or false"),
        (lambda f: f.drop_connection(seed="x"), "seed must be an integer"),
        (lambda f: f.duplicate_callbacks(times=None, call_id=7), "call_id must be"),
        (lambda f: f.latency(-0.1), "seconds must be"),
        (lambda f: f.delay_callbacks(float("nan")), "seconds must be"),
        (lambda f: f.reorder_callbacks(window=-1), "window must be"),
        (lambda f: f.add({"fault": "explode"}), "'fault' must be one of"),
        (lambda f: f.add({"fault": "fail", "status": 500, "color": "red"}), "fail:"),
    ],
)
def test_bad_rules_are_refused(call: Any, message: str) -> None:
    """
    Each malformed rule (a status that is not an error, bad times, probability, retry_after,
    command, processed, seed, call_id, seconds or window, an unknown fault or key) raises ValueError
    saying what is wrong, and adds no rule.
    """
    faults = Faults()
    with pytest.raises(ValueError, match=message):
        call(faults)
    assert faults.rules == []


def test_times_defaults_to_once_or_always_with_a_probability() -> None:
    """
    A fail rule without times applies once; with a probability, or for latency, always. A spent rule
    leaves the list, hits are counted, remove() succeeds once, and to_json shows the rule.
    """
    faults = Faults()
    once = faults.fail(503)
    always = faults.drop_callbacks(probability=0.5)
    late = faults.latency(0.1)
    assert (once.times, always.times, late.times) == (1, None, None)
    assert faults.for_request("dial") == (once, late)
    assert faults.rules == [always, late]  # a spent rule is removed
    assert faults.for_request("dial") == (None, late)
    assert late.hits == 2
    assert faults.remove(late.id)
    assert not faults.remove(late.id)
    assert once.to_json() == {
        "id": once.id, "fault": "fail", "hits": 1, "times": 1, "status": 503, "processed": False
    }  # fmt: skip


def test_filters_and_seeded_probability() -> None:
    """
    A callback rule matches only its event_type and call_id; the same seed picks the same callbacks,
    about half at probability 0.5, and hits counts the picks.
    """
    faults = Faults()
    rule = faults.duplicate_callbacks(
        probability=0.5, seed=3, event_type="calling.call.play", call_id="c1"
    )
    assert faults.for_callback("calling.call.record", "c1") is None
    assert faults.for_callback("calling.call.play", "c2") is None
    picks = [faults.for_callback("calling.call.play", "c1") is rule for _ in range(40)]
    again = Faults()
    again.duplicate_callbacks(probability=0.5, seed=3)
    assert picks == [again.for_callback("x", None) is not None for _ in range(40)]
    assert 5 < sum(picks) < 35
    assert rule.hits == sum(picks)


# --- the control API -----------------------------------------------------------------------------


async def test_faults_over_the_control_api(env: EmulatorEnv) -> None:
    """
    /__emulator/faults (credentials required) adds a rule (201), refuses an incomplete one (400),
    lists them, deletes one (then 404) or all; a fail rule answers 503 with its Retry-After and the
    rate-limit headers, and places no call.
    """
    assert (await env.http.request("GET", "/__emulator/faults", auth=False))[0] == 401
    status, fault, _ = await env.http.request(
        "POST", "/__emulator/faults", {"fault": "fail", "status": 503, "retry_after": 2}
    )
    assert status == 201
    assert fault["fault"] == "fail"
    status, bad, _ = await env.http.request("POST", "/__emulator/faults", {"fault": "fail"})
    assert status == 400
    assert "status" in bad["error"]
    assert (await env.http.request("GET", "/__emulator/faults"))[1] == [fault]

    status, body, headers = await env.http.api(DIAL_BODY)
    assert (status, body) == (503, {"error": "Service Unavailable"})
    assert headers["Retry-After"] == "2"
    assert "X-RateLimit-Limit" in headers
    assert env.emu.core.calls == {}
    assert (await env.http.request("GET", "/__emulator/faults"))[1] == []

    _, second, _ = await env.http.request("POST", "/__emulator/faults", {"fault": "latency",
                                                                      "seconds": 0.05})  # fmt: skip
    assert (await env.http.request("DELETE", f"/__emulator/faults/{second['id']}"))[0] == 200
    assert (await env.http.request("DELETE", f"/__emulator/faults/{second['id']}"))[0] == 404
    await env.http.request("POST", "/__emulator/faults", {"fault": "drop_callbacks", "times": 3})
    assert (await env.http.request("DELETE", "/__emulator/faults"))[0] == 200
    assert len(env.emu.faults) == 0


async def test_rate_limits_over_the_control_api(env: EmulatorEnv) -> None:
    """
    /__emulator/rate_limits reads and sets the limits: an enforced limit of 2 answers the third dial
    429 with Retry-After and Remaining 0, journaled rate_limit; bad values are 400; reset restores
    the configured limits and drops the faults.
    """
    status, limits, _ = await env.http.request("GET", "/__emulator/rate_limits")
    assert (status, limits) == (200, RateLimits().to_json())
    status, limits, _ = await env.http.request(
        "PUT", "/__emulator/rate_limits",
        {"enforce_post_limit": True, "post_limit": 2, "post_window": 100},
    )  # fmt: skip
    assert status == 200
    assert limits["post_limit"] == 2
    assert [(await env.http.api(DIAL_BODY))[0] for _ in range(3)] == [200, 200, 429]
    status, body, headers = await env.http.api(DIAL_BODY)
    assert (status, body) == (429, {"error": "Too Many Requests"})
    assert int(headers["Retry-After"]) == pytest.approx(50, abs=1)
    assert headers["X-RateLimit-Remaining"] == "0"
    assert len(env.emu.core.calls) == 2
    assert [r.fault for r in env.emu.requests][-2:] == ["rate_limit", "rate_limit"]
    for bad in ({"post_limit": 0}, {"post_limit": 1.5}, {"enforce_post_limit": "yes"},
                {"speed": 1}):  # fmt: skip
        assert (await env.http.request("PUT", "/__emulator/rate_limits", bad))[0] == 400
    # reset() restores the configured limits and removes the faults.
    env.emu.faults.fail(500)
    assert (await env.http.request("POST", "/__emulator/reset"))[0] == 200
    assert env.emu.rate_limits == RateLimits()
    assert env.emu.faults.rules == []


async def test_unauthenticated_requests_are_not_counted(env: EmulatorEnv) -> None:
    """A 401 takes no token from the bucket; with headers off, no X-RateLimit-* is sent."""
    env.emu.set_rate_limits(post_limit=10, post_window=1000)
    status, _, headers = await env.http.api(DIAL_BODY, auth=False)
    assert (status, headers["X-RateLimit-Remaining"]) == (401, "10")
    status, _, headers = await env.http.api(DIAL_BODY)
    assert (status, headers["X-RateLimit-Remaining"]) == (200, "9")
    env.emu.set_rate_limits(headers=False)
    assert "X-RateLimit-Limit" not in (await env.http.api(DIAL_BODY))[2]


async def test_a_request_hook_answer_gets_the_headers(env: EmulatorEnv) -> None:
    """A request hook's own answer (a 418) still carries the rate-limit headers."""

    async def teapot(request: web.Request, body: Any) -> web.Response:
        return web.json_response({"error": "teapot"}, status=418)

    env.emu.core.request_hooks.append(teapot)
    status, body, headers = await env.http.api(DIAL_BODY)
    assert (status, body) == (418, {"error": "teapot"})
    assert "X-RateLimit-Remaining" in headers


async def test_latency_is_added_after_the_command_is_carried_out() -> None:
    """A reply later than the client's timeout: a dial that is ambiguous, and placed.

    The emulator carried the dial out before holding its reply: its callbacks
    arrive meanwhile, so relaycall (with the Emulator's receiver) returns the
    Call instead of raising; a session without a receiver raises.
    """
    async with Emulator(time_scale=50, timeout=relaycall.Timeout(read=0.2, total=0.2)) as emu:
        rule = emu.faults.latency(0.5, times=1, command="dial")
        call = await emu.relay.dial(**DIAL)
        (dial,) = emu.requests
        assert (dial.status, dial.delay) == (200, 0.5)
        assert list(emu.core.calls) == [call.id]
        assert rule.hits == 1
        assert emu.faults.rules == []
        bare = bare_relay(emu, timeout=relaycall.Timeout(read=0.2, total=0.2))
        async with bare:
            emu.faults.latency(0.5, times=1, command="dial")
            with pytest.raises(relaycall.AmbiguousOutcomeError) as info:
                await bare.dial(**DIAL)
        assert isinstance(info.value.cause, relaycall.ReadTimeout)
        assert len(emu.core.calls) == 2
        assert rule.hits == 1
        assert emu.faults.rules == []


async def test_non_json_bodies_still_meet_faults(env: EmulatorEnv) -> None:
    """
    A body that is not JSON still meets a fail rule (502) and latency (then its 400), both
    journaled.
    """
    env.emu.faults.fail(502)
    assert (await env.http.api(raw=b"{oops"))[0] == 502
    env.emu.faults.latency(0.01, times=1)
    assert (await env.http.api(raw=b"{oops"))[0] == 400
    assert [(r.status, r.fault, r.delay) for r in env.emu.requests] == [
        (502, "fail", None), (400, None, 0.01)
    ]  # fmt: skip


# --- the bucket and the queue ---------------------------------------------------------------------


def test_post_bucket_refills_and_enforces() -> None:
    """
    The POST bucket allows its limit, refuses the next with Retry-After, refills limit/window tokens
    per second, and reports Remaining as of the last POST counted.
    """
    now = [0.0]
    bucket = PostBucket(
        RateLimits(post_limit=2, post_window=1.0, enforce_post_limit=True), lambda: now[0]
    )
    assert bucket.take() == (True, {"X-RateLimit-Limit": "2", "X-RateLimit-Remaining": "1",
                                    "X-RateLimit-Reset": "1"})  # fmt: skip
    assert bucket.take()[0]
    allowed, headers = bucket.take()
    assert not allowed
    assert headers["Retry-After"] == "1"
    now[0] = 0.5  # one token back
    assert bucket.take()[0]
    assert not bucket.take()[0]
    now[0] = 10.0
    assert bucket.headers()["X-RateLimit-Remaining"] == "0"  # not refilled until counted
    assert bucket.take()[1]["X-RateLimit-Remaining"] == "1"


def test_post_bucket_not_enforced_counts_but_allows() -> None:
    """A bucket that is not enforced lets every POST through and still counts Remaining down."""
    bucket = PostBucket(RateLimits(post_limit=1, post_window=100.0), lambda: 0.0)
    assert [bucket.take()[0] for _ in range(3)] == [True, True, True]
    assert bucket.headers()["X-RateLimit-Remaining"] == "0"


def test_call_queue_turns_and_retry_after() -> None:
    """
    The call queue gives new calls turns 1/calls_per_second apart, refuses one beyond
    call_queue_size with the wait until there is room, and admits at once without a rate.
    """
    limits = RateLimits(calls_per_second=2, call_queue_size=2)
    queue = CallQueue()
    assert [queue.admit(0.0, limits) for _ in range(3)] == [0.0, 0.5, 1.0]
    assert queue.waiting(0.0) == 2
    assert queue.admit(0.0, limits) is None
    assert queue.retry_after(0.0, limits) == 0.5
    assert queue.admit(0.6, limits) == pytest.approx(0.9)
    assert queue.admit(10.0, RateLimits()) == 0.0


def test_rate_limit_fields_are_checked() -> None:
    """RateLimits refuses calls_per_second 0 and a call_queue_size that is not an integer."""
    with pytest.raises(ValueError, match="calls_per_second"):
        RateLimits(calls_per_second=0)
    with pytest.raises(ValueError, match="call_queue_size must be an integer"):
        RateLimits(call_queue_size=2.5)


def test_cli_flags_set_the_rate_limits() -> None:
    """The emulator CLI's rate-limit flags and --no-media end up in its config."""
    args = build_parser().parse_args(
        ["--enforce-post-limit", "--post-limit", "50", "--post-window", "5",
         "--calls-per-second", "1", "--call-queue-size", "10", "--no-rate-limit-headers",
         "--no-media"]
    )  # fmt: skip
    config = config_from(args)
    assert config.rate_limits == RateLimits(
        post_limit=50, post_window=5, enforce_post_limit=True, headers=False,
        calls_per_second=1, call_queue_size=10,
    )  # fmt: skip
    assert not config.media_websockets


# --- callbacks held back ------------------------------------------------------------------------


async def test_reset_forgets_held_callbacks_and_idle_returns() -> None:
    """
    reset() drops the callbacks a delay rule holds: idle() returns at once and none is ever sent.
    """
    async with Emulator(time_scale=1, scenarios={TO: Scenario(ring_seconds=600)}) as emu:
        emu.faults.delay_callbacks(600, times=None, event_type="calling.call.state")
        call = await emu.relay.dial(**DIAL)
        emu.advance(1)
        emu.faults.reorder_callbacks(event_type="calling.call.play", window=600)
        assert emu.core.outbox.pending == 2  # created and ringing, held for 600 s
        emu.reset()
        assert emu.core.outbox.pending == 0
        await asyncio.wait_for(emu.idle(), 1)
        assert emu.callbacks == []
        assert call.state == "queued"


async def test_two_reordered_callbacks_in_a_row_swap() -> None:
    """
    Two reordered call-state callbacks in a row arrive swapped (ringing, then created), both
    journaled reordered.
    """
    async with Emulator(time_scale=50, scenarios={TO: Scenario(ring_seconds=600)}) as emu:
        emu.faults.reorder_callbacks(times=2, event_type="calling.call.state", window=600)
        call = await emu.relay.dial(**DIAL)
        await call.wait_for("ringing", timeout=5)
        await emu.idle()
        order = [c.body["params"]["call_state"] for c in emu.callbacks]
        assert order == ["ringing", "created"]
        assert [c.fault for c in emu.callbacks] == ["reordered", "reordered"]


# --- media --------------------------------------------------------------------------------------


def test_pcmu_encoding() -> None:
    """
    μ-law encodes silence, full positive and full negative as 0xFF, 0x80 and 0x00; a tone frame is
    160 bytes of something other than silence.
    """
    assert pcmu(0) == 0xFF
    assert pcmu(32767) == 0x80
    assert pcmu(-32768) == 0x00
    assert len(tone(400)) == 160
    assert tone(400) != bytes([0xFF]) * 160


async def link_tasks(emu: Emulator) -> None:
    """Wait for every WebSocket connection of the emulator to end."""
    tasks = [link.task for link in emu.core.media.links if link.task is not None]
    assert tasks
    await asyncio.wait_for(asyncio.gather(*tasks), 5)


async def test_media_to_other_hosts_is_skipped_and_failures_are_journaled(
    closed_port: int,
) -> None:
    """
    Media to a host that is not loopback is skipped, a refused connection journaled media.failed;
    the tap keeps running and stopping it drops the link.
    """
    async with Emulator(time_scale=50) as emu:
        call = await answered_call(emu)
        await call.stream("wss://media.example.com/in")
        tap = await call.tap(f"ws://127.0.0.1:{closed_port}/tap")
        await link_tasks(emu)
        notes = {n.what: n.data for n in emu.notes}
        assert notes["media.skipped"]["url"] == "wss://media.example.com/in"
        assert "ClientConnectorError" in notes["media.failed"]["error"]
        assert tap.state == "tapping"  # the operation goes on
        await tap.stop()
        assert emu.core.media.links == []


async def test_media_can_be_turned_off() -> None:
    """With media_websockets off, a stream opens no connection and journals no media note."""
    config = EmulatorConfig(
        project_id="test-project", token="test-token", time_scale=50, media_websockets=False
    )
    async with Emulator(config=config) as emu:
        call = await answered_call(emu)
        await call.stream("wss://127.0.0.1:9/in")
        await call.end()
        assert [n for n in emu.notes if n.what.startswith("media.")] == []


async def test_a_receiver_that_closes_ends_the_frames() -> None:
    """The WebSocket server hangs up after the start frame: journaled, the stream runs on."""
    async with MediaServer(hang_up_after="start") as media, Emulator(time_scale=50) as emu:
        call = await answered_call(emu)
        tap = await call.tap(media.url("ws"))
        await link_tasks(emu)
        (data,) = [n.data for n in emu.notes if n.what == "media.closed"]
        assert data["peer_closed"] is True
        assert [f["event"] for f in media.connections[0].frames] == ["connected", "start"]
        assert data["control_id"] == tap.control_id
        assert tap.state == "tapping"
        started = time.monotonic()
        await tap.stop()
        assert time.monotonic() - started < 5


async def test_closing_the_emulator_closes_open_media() -> None:
    """Leaving the Emulator with a tap still streaming sends `stop` and closes the WebSocket."""
    async with MediaServer() as media:
        async with Emulator(time_scale=50) as emu:
            call = await answered_call(emu)
            await call.tap(media.url("ws"))
            (link,) = emu.core.media.links
            await media.until(lambda: bool(media.connections and media.connections[0].frames))
        conn = media.connections[0]
        await media.until(lambda: conn.closed)
        assert link.task is not None
        assert link.task.done()
        events = [f["event"] for f in conn.frames]
        assert events[:2] == ["connected", "start"]
        assert events[-1] == "stop"


async def test_a_dropped_connection_on_a_body_that_is_not_json(env: EmulatorEnv) -> None:
    """
    drop_connection applies to a body that is not JSON too: the client sees the server disconnect,
    and the journal says 400, drop_connection.
    """
    env.emu.faults.drop_connection()
    with pytest.raises(aiohttp.ServerDisconnectedError):
        await env.http.api(raw=b"{oops")
    (entry,) = env.emu.requests
    assert (entry.status, entry.fault) == (400, "drop_connection")
