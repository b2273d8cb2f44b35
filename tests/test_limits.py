"""The in-flight gate: FIFO, and no slot lost or duplicated when waiters are cancelled."""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import relaycall
from relaycall import commands
from relaycall._limits import Gate
from tests.conftest import CALL_ID, PROJECT, TOKEN


async def _hold(gate: Gate, order: list[int], n: int, release: asyncio.Event) -> None:
    await gate.acquire()
    order.append(n)
    try:
        await release.wait()
    finally:
        gate.release()


async def test_uncontended_acquire_takes_a_slot_without_awaiting():
    """
    try_acquire takes free slots at once up to the limit, fails past it, and succeeds again after a
    release.
    """
    gate = Gate(2)
    assert gate.try_acquire()
    assert gate.try_acquire()
    assert not gate.try_acquire()
    gate.release()
    assert gate.try_acquire()


async def test_waiters_get_slots_in_arrival_order():
    """
    Waiters on a full gate get the slot in the order they arrived, and afterwards every slot is
    back.
    """
    gate = Gate(1)
    assert gate.try_acquire()
    order: list[int] = []
    release = asyncio.Event()
    tasks = [asyncio.create_task(_hold(gate, order, n, release)) for n in range(5)]
    await asyncio.sleep(0)
    assert order == []
    gate.release()
    release.set()
    await asyncio.wait_for(asyncio.gather(*tasks), 5)
    assert order == [0, 1, 2, 3, 4]
    # Every slot came back: one free, and nothing queued behind it.
    assert gate.try_acquire()
    assert not gate.try_acquire()


async def test_a_newcomer_does_not_overtake_the_queue():
    """A slot released to a waiter is handed over, not left for whoever asks first."""
    gate = Gate(1)
    assert gate.try_acquire()
    waiter = asyncio.create_task(gate.acquire())
    await asyncio.sleep(0)
    gate.release()
    assert not gate.try_acquire()
    await asyncio.wait_for(waiter, 5)


async def test_cancelled_after_the_handover_passes_the_slot_on():
    """Handed a slot and cancelled before running: the slot goes to the next waiter."""
    gate = Gate(1)
    assert gate.try_acquire()
    first = asyncio.create_task(gate.acquire())
    second = asyncio.create_task(gate.acquire())
    await asyncio.sleep(0)
    gate.release()  # hands the slot to `first`...
    first.cancel()  # ...which is cancelled before it runs
    with pytest.raises(asyncio.CancelledError):
        await first
    await asyncio.wait_for(second, 5)  # the slot reached `second`
    gate.release()
    assert gate.try_acquire()
    assert not gate.try_acquire()


@settings(max_examples=60, deadline=None)
@given(
    slots=st.integers(1, 4),
    plan=st.lists(st.tuples(st.booleans(), st.integers(0, 3)), min_size=1, max_size=12),
)
def test_slots_are_conserved_whatever_is_cancelled(slots, plan):
    """Any mix of holders and cancelled waiters leaves exactly *slots* free at the end."""

    async def run() -> None:
        gate = Gate(slots)
        release = asyncio.Event()
        order: list[int] = []
        tasks = [asyncio.create_task(_hold(gate, order, n, release)) for n in range(len(plan))]
        for _ in range(3):
            await asyncio.sleep(0)
        for task, (cancel, delay) in zip(tasks, plan, strict=True):
            if cancel:
                for _ in range(delay):
                    await asyncio.sleep(0)
                task.cancel()
        release.set()
        await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 5)
        assert len(order) <= len(plan)
        for _ in range(slots):
            assert gate.try_acquire()
        assert not gate.try_acquire()

    asyncio.run(run())


async def test_cancelled_queued_commands_leave_the_session_usable(server):
    """Cancelling commands queued behind max_concurrency loses no slot."""
    server.hold = 0.05
    async with relaycall.AsyncRelay(
        PROJECT, TOKEN, base_url=server.base_url, limits=relaycall.Limits(max_concurrency=2)
    ) as relay:
        sends = [asyncio.create_task(relay.send(commands.End(call_id=CALL_ID))) for _ in range(6)]
        await asyncio.sleep(0)
        for task in sends[2:]:
            task.cancel()
        results = await asyncio.wait_for(asyncio.gather(*sends, return_exceptions=True), 5)
        assert [isinstance(r, asyncio.CancelledError) for r in results] == [False] * 2 + [True] * 4
        server.hold = 0.0
        await asyncio.wait_for(
            asyncio.gather(*(relay.send(commands.End(call_id=CALL_ID)) for _ in range(4))), 5
        )
    assert len(server.seen) == 6
