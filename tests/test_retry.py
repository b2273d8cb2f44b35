"""The retry policy, by table, against a real server on 127.0.0.1."""

from __future__ import annotations

import email.utils
import time

import pytest

import relaycall
from relaycall import commands
from relaycall._idempotency import Idempotency
from relaycall._retry import Decision, classify
from relaycall._retry_after import parse_retry_after
from tests.conftest import CALL_ID, PROJECT, TOKEN, Respond

DIAL = {"from_": "+15551230000", "to": "+15557650000", "url": "https://example.test/swml"}


def dial() -> commands.Dial:
    return commands.Dial(**DIAL)


async def test_429_retry_after_is_honoured(relay, server, sleeps):
    """429 with Retry-After: 2 waits 2 s, then succeeds on attempt 2."""
    server.reply(Respond(status=429, body={"error": "Too Many"}, headers={"Retry-After": "2"}))
    await relay.send(commands.PlayPause(call_id=CALL_ID, control_id="c1"))
    assert sleeps.waits == [2.0]
    assert [s.headers["Relaycall-Attempt"] for s in server.seen] == ["1", "2"]
    assert server.bodies[0] == server.bodies[1]


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"Retry-After": "2"}, 2.0),
        ({"Retry-After": "0"}, 0.0),
        ({"Retry-After": "1.5"}, 1.5),
        ({"retry-after": "3"}, 3.0),
        ({"Retry-After": "-5"}, None),
        ({"Retry-After": "junk"}, None),
        ({"Retry-After": "nan"}, None),
        ({"Retry-After": "inf"}, None),
        ({"retry-after-ms": "1500"}, 1.5),
        ({"retry-after-ms": "x", "Retry-After": "4"}, 4.0),
        ({}, None),
    ],
)
def test_parse_retry_after_table(headers, expected):
    """Retry-After seconds, ms and junk are read as the table says."""
    assert parse_retry_after(headers) == expected


def test_parse_retry_after_http_date():
    """An HTTP date in the future gives the seconds until then; a past one gives 0."""
    future = email.utils.formatdate(time.time() + 30, usegmt=True)
    past = email.utils.formatdate(time.time() - 30, usegmt=True)
    assert 25 <= parse_retry_after({"Retry-After": future}) <= 31
    assert parse_retry_after({"Retry-After": past}) == 0.0


@pytest.mark.parametrize(
    ("retry_after", "lo", "hi"),
    [
        ("3600", 60.0, 60.0),  # capped at max_retry_after
        ("-1", 0.375, 0.5),  # unusable: exponential backoff with jitter instead
        ("soon", 0.375, 0.5),
    ],
)
async def test_retry_after_cap_and_fallback(relay, server, sleeps, retry_after, lo, hi):
    """A huge Retry-After is capped; junk falls back to the backoff schedule."""
    server.reply(Respond(status=503, body={"error": "x"}, headers={"Retry-After": retry_after}))
    no_deadline = relaycall.RetryPolicy(deadline=None)
    await relay.send(commands.PlayStop(call_id=CALL_ID, control_id="c"), retry=no_deadline)
    (wait,) = sleeps.waits
    assert lo <= wait <= hi


async def test_backoff_doubles_until_attempts_run_out(relay, server, sleeps):
    """Three 503s: waits of ~0.5 then ~1.0 s, then the last error with retries_taken=2."""
    server.reply(*[Respond(status=503, body={"error": "Service Unavailable"})] * 3)
    with pytest.raises(relaycall.ServiceUnavailableError) as info:
        await relay.send(commands.PlayStop(call_id=CALL_ID, control_id="c"))
    assert info.value.retries_taken == 2
    assert len(server.seen) == 3
    first, second = sleeps.waits
    assert 0.375 <= first <= 0.5
    assert 0.75 <= second <= 1.0


@pytest.mark.parametrize("status", [500, 502, 503, 504])
async def test_follow_up_retried_on_5xx(relay, server, sleeps, status):
    """A follow-up (safe to repeat) is re-sent after any 5xx."""
    server.reply(Respond(status=status, body={"error": "x"}))
    leg = await relay.send(commands.RecordStop(call_id=CALL_ID, control_id="r1"))
    assert leg.id == CALL_ID
    assert len(server.seen) == 2


async def test_follow_up_retried_after_dropped_connection(relay, server):
    """A follow-up whose connection drops after sending is re-sent."""
    server.reply(Respond(drop=True))
    await relay.send(commands.PlayVolume(call_id=CALL_ID, control_id="c", volume=3))
    assert len(server.seen) == 2


async def test_start_command_resends_the_same_control_id(relay, server):
    """A start command re-sent after a drop carries the identical body and control_id."""
    server.reply(Respond(drop=True), Respond(status=502, body={"error": "x"}))
    play = commands.Play(call_id=CALL_ID, play=[relaycall.tts("hi")])
    await relay.send(play)
    bodies = server.bodies
    assert len(bodies) == 3
    assert bodies[0] == bodies[1] == bodies[2]
    assert {b["params"]["control_id"] for b in bodies} == {play.control_id}


@pytest.mark.parametrize("status", [429, 503])
async def test_dial_retried_when_server_said_not_processed(relay, server, sleeps, status):
    """dial is re-sent after 429 or 503: the server says it did nothing."""
    server.reply(Respond(status=status, body={"error": "x"}, headers={"Retry-After": "1"}))
    leg = await relay.send(dial())
    assert leg.status == "queued"
    assert [b["command"] for b in server.bodies] == ["dial", "dial"]
    assert sleeps.waits == [1.0]


@pytest.mark.parametrize("status", [500, 502, 504])
async def test_dial_5xx_is_ambiguous(relay, server, status):
    """dial after 500/502/504 raises AmbiguousOutcomeError; exactly one dial was sent."""
    server.reply(Respond(status=status, body={"error": "x"}))
    cmd = dial()
    with pytest.raises(relaycall.AmbiguousOutcomeError) as info:
        await relay.send(cmd)
    assert len(server.seen) == 1
    assert info.value.body == cmd.to_wire()
    assert isinstance(info.value.__cause__, relaycall.ServerError)
    assert info.value.__cause__.status_code == status


async def test_dial_connection_reset_after_receipt_is_ambiguous(relay, server):
    """The server reads the dial then drops the connection: one dial, AmbiguousOutcomeError."""
    server.reply(Respond(drop=True))
    with pytest.raises(relaycall.AmbiguousOutcomeError) as info:
        await relay.send(dial())
    assert len(server.seen) == 1
    assert server.bodies[0]["command"] == "dial"
    assert isinstance(info.value.__cause__, relaycall.ConnectionLostError)
    assert "may or may not" in str(info.value)


async def test_dial_read_timeout_is_ambiguous(server, sleeps):
    """A dial whose reply is too slow raises AmbiguousOutcomeError, not a second dial."""
    server.reply(Respond(delay=1.0))
    async with relaycall.AsyncRelay(PROJECT, TOKEN, base_url=server.base_url, timeout=0.1) as relay:
        with pytest.raises(relaycall.AmbiguousOutcomeError) as info:
            await relay.send(dial())
    assert isinstance(info.value.__cause__, relaycall.ReadTimeout)
    assert len(server.seen) == 1


async def test_unsafe_command_ambiguous_after_a_retry(relay, server):
    """503 (retry) then a drop: AmbiguousOutcomeError after one retry, two dials seen."""
    server.reply(Respond(status=503, body={"error": "x"}), Respond(drop=True))
    with pytest.raises(relaycall.AmbiguousOutcomeError) as info:
        await relay.send(dial())
    assert info.value.retries_taken == 1
    assert len(server.seen) == 2


@pytest.mark.parametrize(
    "cmd",
    [
        commands.Transfer(call_id=CALL_ID, dest="+15550001111"),
        commands.UserEvent(call_id=CALL_ID, event={"k": 1}),
        commands.AIMessage(call_id=CALL_ID, role="system", message_text="hi"),
    ],
)
async def test_other_unsafe_commands_not_resent_after_500(relay, server, cmd):
    """Non-idempotent commands besides dial are also never blindly re-sent."""
    server.reply(Respond(status=500, body={"error": "x"}))
    with pytest.raises(relaycall.AmbiguousOutcomeError):
        await relay.send(cmd)
    assert len(server.seen) == 1


async def test_deadline_stops_a_retry_that_would_cross_it(server, sleeps):
    """No retry starts when its wait would pass the overall deadline."""
    server.reply(Respond(status=429, body={"error": "x"}, headers={"Retry-After": "5"}))
    policy = relaycall.RetryPolicy(deadline=2.0)
    async with relaycall.AsyncRelay(
        PROJECT, TOKEN, base_url=server.base_url, retry=policy
    ) as relay:
        with pytest.raises(relaycall.RateLimitError) as info:
            await relay.send(commands.End(call_id=CALL_ID))
    assert info.value.retry_after == 5.0
    assert sleeps.waits == []
    assert len(server.seen) == 1


async def test_retry_none_sends_once(relay, server):
    """retry=None on a call disables retries for it."""
    server.reply(Respond(status=503, body={"error": "x"}))
    with pytest.raises(relaycall.ServiceUnavailableError):
        await relay.send(commands.End(call_id=CALL_ID), retry=None)
    assert len(server.seen) == 1


async def test_real_sleep_backoff_elapses(server):
    """Without an injected sleep the backoff really waits (small policy, lower bound only)."""
    server.reply(Respond(status=503, body={"error": "x"}))
    policy = relaycall.RetryPolicy(initial_backoff=0.05, jitter=0)
    async with relaycall.AsyncRelay(PROJECT, TOKEN, base_url=server.base_url, retry=policy) as r:
        started = time.monotonic()
        await r.send(commands.End(call_id=CALL_ID))
        assert time.monotonic() - started >= 0.05
    assert len(server.seen) == 2


@pytest.mark.parametrize(
    ("exc", "safe", "unsafe"),
    [
        (relaycall.ConnectError("x"), Decision.RETRY, Decision.RETRY),
        (relaycall.ConnectTimeout("x"), Decision.RETRY, Decision.RETRY),
        (relaycall.TLSError("x"), Decision.FINAL, Decision.FINAL),
        (relaycall.ReadTimeout("x"), Decision.RETRY, Decision.AMBIGUOUS),
        (relaycall.ConnectionLostError("x"), Decision.RETRY, Decision.AMBIGUOUS),
        (
            relaycall.errors.make_status_error(429, {}, None, command="c"),
            Decision.RETRY,
            Decision.RETRY,
        ),
        (
            relaycall.errors.make_status_error(503, {}, None, command="c"),
            Decision.RETRY,
            Decision.RETRY,
        ),
        (
            relaycall.errors.make_status_error(500, {}, None, command="c"),
            Decision.RETRY,
            Decision.AMBIGUOUS,
        ),
        (
            relaycall.errors.make_status_error(599, {}, None, command="c"),
            Decision.RETRY,
            Decision.AMBIGUOUS,
        ),
        (
            relaycall.errors.make_status_error(408, {}, None, command="c"),
            Decision.RETRY,
            Decision.AMBIGUOUS,
        ),
        (
            relaycall.errors.make_status_error(409, {}, None, command="c"),
            Decision.FINAL,
            Decision.FINAL,
        ),
        (
            relaycall.errors.make_status_error(418, {}, None, command="c"),
            Decision.FINAL,
            Decision.FINAL,
        ),
    ],
)
def test_classification_table(exc, safe, unsafe):
    """What each failure means for safe/start and for unsafe commands."""
    assert classify(exc, Idempotency.SAFE) is safe
    assert classify(exc, Idempotency.START) is safe
    assert classify(exc, Idempotency.UNSAFE) is unsafe


def test_idempotency_of_every_command_is_deliberate():
    """Each command's retry class matches the policy table in docs/retries.md."""
    unsafe = {
        "dial", "update", "calling.transfer", "calling.refer", "calling.user_event",
        "calling.ai_message", "calling.ai_sidecar", "calling.ai_sidecar.poke",
        "calling.ai_sidecar.ask", "calling.live_transcribe", "calling.live_translate",
    }  # fmt: skip
    start = {
        "calling.play", "calling.record", "calling.collect", "calling.detect", "calling.tap",
        "calling.stream", "calling.transcribe",
    }  # fmt: skip
    for name, cls in commands.BY_NAME.items():
        expected = (
            Idempotency.UNSAFE
            if name in unsafe
            else Idempotency.START
            if name in start
            else Idempotency.SAFE
        )
        assert cls._idempotency is expected, name
    # Every listed name is a real command, so a misspelt one cannot pass as SAFE unnoticed.
    assert unsafe | start <= set(commands.BY_NAME)


async def test_deadline_counts_from_the_first_attempt(server, sleeps):
    """The deadline includes attempt 1's own time: a slow first 503 leaves no room to retry."""
    server.reply(Respond(status=503, body={"error": "x"}, delay=0.6))
    policy = relaycall.RetryPolicy(deadline=1.0, initial_backoff=0.5, jitter=0)
    async with relaycall.AsyncRelay(PROJECT, TOKEN, base_url=server.base_url, retry=policy) as r:
        with pytest.raises(relaycall.ServiceUnavailableError) as info:
            await r.send(commands.End(call_id=CALL_ID))
    # 0.6 s spent and a 0.5 s wait would cross 1.0 s; counted from the failure, it would not.
    assert info.value.retries_taken == 0
    assert sleeps.waits == []
    assert len(server.seen) == 1


async def test_each_retry_is_logged_at_debug_level(relay, server, sleeps, caplog):
    """Every retry logs, at debug level, the command, the next attempt, the wait and the cause."""
    server.reply(*[Respond(status=503, body={"error": "x"})] * 2)
    no_jitter = relaycall.RetryPolicy(jitter=0)
    with caplog.at_level("DEBUG", logger="relaycall"):
        await relay.send(commands.PlayStop(call_id=CALL_ID, control_id="c"), retry=no_jitter)
    retries = [r for r in caplog.records if r.getMessage().startswith("retrying")]
    assert [r.levelname for r in retries] == ["DEBUG", "DEBUG"]
    assert [r.getMessage().split(" after ")[0] for r in retries] == [
        "retrying calling.play.stop (attempt 2 of 3) in 0.500s",
        "retrying calling.play.stop (attempt 3 of 3) in 1.000s",
    ]
    assert all("503" in r.getMessage() for r in retries)
