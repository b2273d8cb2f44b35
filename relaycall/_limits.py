"""
Client-side pacing: an in-flight cap and per-second caps.
"""

from __future__ import annotations

import asyncio


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
