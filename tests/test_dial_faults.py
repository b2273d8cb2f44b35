"""
No fault ever places a second call: each fault kind, with and without a receiver.

The emulator counts the calls it placed; a duplicate is a call nobody asked for.
With an EventReceiver every dial carries its own token, so relaycall learns from
the dial's callbacks whether an attempt was processed; without one, the single
case it cannot know is a 429/503 answered *after* the call was placed (the
status says "not processed"), which the reference's retry rules re-send.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

import relaycall
from benchmarks.trust import FAULTS
from relaycall import RetryPolicy
from relaycall.testing import Emulator
from tests.conftest import bare_relay

DIAL: dict[str, Any] = {"to": "+15557650000", "from_": "+15551230000", "url": "https://x.test/s"}
N = 6
#: A real backoff (not instant): callbacks posted right after processing land within it.
POLICY = RetryPolicy(initial_backoff=0.3, max_backoff=0.3, jitter=0, ambiguous_grace=1.0)


async def until(condition: Callable[[], object], timeout: float = 5.0) -> None:
    """Return once *condition()* holds, checking at every loop turn; fail after *timeout*."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        assert loop.time() < deadline, "the condition did not hold in time"
        await asyncio.sleep(0.005)


async def dial_all(relay: relaycall.AsyncRelay) -> list[relaycall.Call | BaseException]:
    return await asyncio.gather(*(relay.dial(**DIAL) for _ in range(N)), return_exceptions=True)


@pytest.mark.parametrize("kind", sorted(FAULTS))
async def test_no_duplicate_calls_with_a_receiver(kind):
    """With a receiver: 0 duplicates, and every dial the emulator placed returns its Call."""
    inject, processed = FAULTS[kind]
    async with Emulator(time_scale=20, retry=POLICY, timeout=relaycall.Timeout(read=0.5)) as emu:
        inject(emu, N)
        outcomes = await dial_all(emu.relay)
        calls = [o for o in outcomes if isinstance(o, relaycall.Call)]
        errors = [o for o in outcomes if not isinstance(o, relaycall.Call)]
        placed = list(emu.core.calls)
        # One call per dial, none twice; a bare 500 placed none (and said nothing).
        assert len(placed) == (0 if kind == "500 not processed" else N)
        assert sorted(c.id for c in calls) == sorted(placed)
        if processed:
            assert errors == []
        else:
            # Not processed: re-sent (503 says so) or, for a bare 500, ambiguous and
            # silent: no callback came, so relaycall reports it and sends nothing more.
            assert all(isinstance(e, relaycall.AmbiguousOutcomeError) for e in errors)
            assert len(errors) == (N if kind == "500 not processed" else 0)


@pytest.mark.parametrize(
    "kind", ["drop_connection", "500 after processing", "503 after processing"]
)
async def test_without_a_receiver_only_the_not_processed_statuses_can_duplicate(kind):
    """Without a receiver: ambiguous failures raise (no re-send); a 503 sent after
    processing is the one case that cannot be known, and is re-sent as the status says."""
    inject, _ = FAULTS[kind]
    async with Emulator(time_scale=20) as emu:
        relay = bare_relay(emu, retry=POLICY)
        async with relay:
            inject(emu, N)
            outcomes = await dial_all(relay)
        placed = len(emu.core.calls)
        if kind == "503 after processing":
            assert placed == 2 * N  # the documented limit: only the callbacks could tell
        else:
            assert placed == N
            assert all(isinstance(o, relaycall.AmbiguousOutcomeError) for o in outcomes)


async def test_a_re_send_that_waited_on_the_rate_limiter_checks_again():
    """A 503 after processing, a re-send queued behind calls_per_second: no second call.

    The callbacks (0.3 s late) arrive while the re-send waits for its turn;
    it is checked again right before it would go out (7 calls for 6 dials before).
    """
    policy = RetryPolicy(initial_backoff=0.05, max_backoff=0.05, jitter=0, ambiguous_grace=1.0)
    async with Emulator(
        time_scale=1, retry=policy, limits=relaycall.Limits(calls_per_second=4)
    ) as emu:
        emu.faults.delay_callbacks(0.3, event_type="calling.call.state")
        emu.faults.fail(503, 1, command="dial", processed=True)
        calls = await asyncio.gather(*(emu.relay.dial(**DIAL) for _ in range(6)))
        assert len(emu.core.calls) == 6
        assert sorted(c.id for c in calls) == sorted(emu.core.calls)


async def test_a_dial_whose_retries_ran_out_is_reconciled():
    """503 after processing on every attempt: the callbacks still give a Call (not an error).

    Callbacks are late, so the re-send goes out and places a second call, which
    nothing can prevent; the dial returns one of them and logs the other.
    """
    policy = RetryPolicy(
        max_attempts=2, initial_backoff=0.05, max_backoff=0.05, jitter=0, ambiguous_grace=2.0
    )
    async with Emulator(time_scale=1, retry=policy) as emu:
        emu.faults.delay_callbacks(0.3, event_type="calling.call.state")
        emu.faults.fail(503, 2, command="dial", processed=True)
        call = await emu.relay.dial(**DIAL)
        assert call.id in emu.core.calls
        assert call.leg is not None
        assert (call.leg.id, call.leg.to) == (call.id, DIAL["to"])


async def test_close_during_a_dial_in_flight_is_client_closed_at_once():
    """close() while a dial waits for its reply: ClientClosedError now, not after the grace."""
    async with Emulator(time_scale=20, retry=POLICY) as emu:
        emu.faults.latency(2.0, 1, command="dial")
        task = asyncio.ensure_future(emu.relay.dial(**DIAL))
        await until(lambda: emu.core.calls)  # carried out; its reply is held 2 s
        started = asyncio.get_running_loop().time()
        await emu.relay.close()
        with pytest.raises(relaycall.ClientClosedError):
            await asyncio.wait_for(task, 5)
        assert asyncio.get_running_loop().time() - started < 1.0
