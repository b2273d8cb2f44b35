"""
Client-side pacing: an in-flight cap and per-second caps.
"""

from __future__ import annotations

import asyncio
import collections


class RateLimiter:
    """
    A GCRA rate limiter: O(1) per acquire, no background task, FIFO by arrival.

    Each caller reserves the next free slot and sleeps until it; *burst*
    callers may go at once after an idle spell.
    """

    __slots__ = ("_interval", "_tat", "_tolerance")

    def __init__(self, per_second: float, burst: int = 1) -> None:
        self._interval = 1.0 / per_second
        self._tolerance = self._interval * (burst - 1)
        self._tat = 0.0

    async def acquire(self) -> None:
        now = asyncio.get_running_loop().time()
        tat = max(self._tat, now)
        self._tat = tat + self._interval
        delay = tat - self._tolerance - now
        if delay > 0:
            # The slot stays reserved if the caller is cancelled here; the
            # limiter errs on the side of sending less, never more.
            await asyncio.sleep(delay)


class Gate:
    """
    A FIFO counting semaphore whose uncontended acquire is a plain call.

    ``asyncio.Semaphore.acquire`` is a coroutine, so every command would
    create one even when a slot is free; here only a caller that must queue
    awaits anything. A slot released to a waiter is handed over directly,
    so a newcomer can never overtake the queue.
    """

    __slots__ = ("_free", "_waiters")

    def __init__(self, slots: int) -> None:
        self._free = slots
        self._waiters: collections.deque[asyncio.Future[None]] = collections.deque()

    def try_acquire(self) -> bool:
        """Take a slot if one is free and nobody is queued."""
        if self._free > 0 and not self._waiters:
            self._free -= 1
            return True
        return False

    async def acquire(self) -> None:
        """Take a slot, queueing (FIFO) until one is handed over."""
        if self.try_acquire():
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(fut)
        try:
            await fut
        except asyncio.CancelledError:
            if fut.done() and not fut.cancelled():
                # Handed a slot just as we were cancelled: pass it on, not lose it.
                self.release()
            elif fut in self._waiters:  # release() may already have dropped it
                self._waiters.remove(fut)
            raise

    def release(self) -> None:
        """Give a slot back, to the first live waiter if there is one."""
        waiters = self._waiters
        while waiters:
            fut = waiters.popleft()
            if not fut.done():
                fut.set_result(None)
                return
        self._free += 1
