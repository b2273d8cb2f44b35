"""
The one scheduler every timed behaviour goes through.

A heap of ``(due, seq, timer)`` in emulated seconds, driven by a single
``loop.call_at`` handle armed for the earliest entry: no task, no polling.
Emulated time runs *time_scale* times faster than the event loop's clock.
Cancelling a timer marks it; marked entries are dropped when they surface
(and the heap is rebuilt when they outnumber the live ones), so pause and
resume cost O(log n).
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import logging
import time
from collections.abc import Callable, Iterator
from typing import Any

__all__ = ["Scheduler", "Timer"]

logger = logging.getLogger("relaycall.emulator")


class Timer:
    """A scheduled callback; :meth:`cancel` it to keep it from running."""

    __slots__ = ("args", "cancelled", "due", "fn")

    def __init__(self, due: float, fn: Callable[..., None], args: tuple[Any, ...]) -> None:
        self.due = due
        self.fn = fn
        self.args = args
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class Scheduler:
    """
    Emulated time, and callbacks at points of it.

    ``now()`` is emulated seconds since the scheduler was made; ``wall()`` is
    the matching Unix time (what callbacks and legs report), so intervals
    between reported timestamps are emulated durations.
    """

    def __init__(self, time_scale: float = 1.0) -> None:
        if not time_scale > 0:
            raise ValueError("time_scale must be > 0")
        self.time_scale = time_scale
        self._loop: asyncio.AbstractEventLoop | None = None
        self._t0 = 0.0
        self._wall0 = time.time()
        self._offset = 0.0
        self._heap: list[tuple[float, int, Timer]] = []
        self._seq = 0
        self._cancelled_guess = 0
        self._handle: asyncio.TimerHandle | None = None
        self._armed_for: float | None = None
        self._running: float | None = None

    # --- time -------------------------------------------------------------------------------

    def _get_loop(self) -> asyncio.AbstractEventLoop:
        loop = asyncio.get_running_loop()
        if self._loop is None:
            self._loop = loop
            self._t0 = loop.time()
            self._wall0 = time.time()
        elif loop is not self._loop:
            # A new event loop (a test framework's next test): loop clocks are all
            # time.monotonic(), so emulated time carries on; move the wake-up over.
            self._loop = loop
            if self._handle is not None:
                self._handle.cancel()
                self._handle = None
                self._armed_for = None
                self._arm()
        return loop

    def now(self) -> float:
        """
        Emulated seconds since the scheduler started.

        Inside a timer's callback it is that timer's due time exactly, so a
        chain of timers keeps exact emulated durations however late the event
        loop runs them.
        """
        if self._running is not None:
            return self._running
        loop = self._get_loop()
        return (loop.time() - self._t0) * self.time_scale + self._offset

    @contextlib.contextmanager
    def instant(self) -> Iterator[None]:
        """
        Within the block, :meth:`now` stands still (as inside a timer's callback), so
        what a block of work does happens at one emulated instant.
        """
        if self._running is not None:
            yield
            return
        self._running = self.now()
        try:
            yield
        finally:
            self._running = None

    def wall(self, at: float | None = None) -> float:
        """The Unix time of emulated instant *at* (default: now)."""
        return self._wall0 + (self.now() if at is None else at)

    def advance(self, seconds: float) -> None:
        """
        Jump emulated time forward by *seconds*, running every timer that falls
        due on the way (in order) before returning.
        """
        if seconds < 0:
            raise ValueError("time only moves forward")
        self._get_loop()
        self._offset += seconds
        self._armed_for = None
        self._fire()

    def _real(self, due: float) -> float:
        return self._t0 + (due - self._offset) / self.time_scale

    # --- timers -----------------------------------------------------------------------------

    def after(self, delay: float, fn: Callable[..., None], *args: Any) -> Timer:
        """Run ``fn(*args)`` *delay* emulated seconds from now."""
        return self.at(self.now() + max(0.0, delay), fn, *args)

    def at(self, due: float, fn: Callable[..., None], *args: Any) -> Timer:
        """Run ``fn(*args)`` at emulated instant *due*."""
        timer = Timer(due, fn, args)
        self._seq += 1
        heapq.heappush(self._heap, (due, self._seq, timer))
        if self._armed_for is None or due < self._armed_for:
            self._arm()
        return timer

    def cancel(self, timer: Timer | None) -> None:
        """Cancel *timer* (None is fine)."""
        if timer is not None and not timer.cancelled:
            timer.cancelled = True
            self._cancelled_guess += 1
            if self._cancelled_guess > 1024 and self._cancelled_guess > len(self._heap) // 2:
                self._compact()

    def _compact(self) -> None:
        self._heap = [e for e in self._heap if not e[2].cancelled]
        heapq.heapify(self._heap)
        self._cancelled_guess = 0

    def __len__(self) -> int:
        return sum(1 for e in self._heap if not e[2].cancelled)

    def _arm(self) -> None:
        loop = self._get_loop()
        while self._heap and self._heap[0][2].cancelled:
            heapq.heappop(self._heap)
            self._cancelled_guess = max(0, self._cancelled_guess - 1)
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        if not self._heap:
            self._armed_for = None
            return
        due = self._heap[0][0]
        self._armed_for = due
        self._handle = loop.call_at(self._real(due), self._fire)

    def _fire(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        limit = max(self.now(), self._armed_for or 0.0)
        self._armed_for = None
        heap = self._heap
        while heap and heap[0][0] <= limit:
            _, _, timer = heapq.heappop(heap)
            if timer.cancelled:
                self._cancelled_guess = max(0, self._cancelled_guess - 1)
                continue
            timer.cancelled = True  # it ran; cancelling it later is a no-op
            self._running = timer.due
            try:
                timer.fn(*timer.args)
            except Exception:
                logger.exception("emulator timer %r failed", timer.fn)
            finally:
                self._running = None
        self._arm()

    def clear(self) -> None:
        """Drop every timer."""
        for _, _, timer in self._heap:
            timer.cancelled = True
        self._heap.clear()
        self._cancelled_guess = 0
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        self._armed_for = None
