"""
Rate limits: a token bucket over POSTs (real time) and a queue for new calls
(emulated time).

The platform documents 13,800 POSTs per 10 seconds per project and queues new
calls at about one per second. The emulator counts POSTs in a token bucket
that holds *post_limit* tokens and refills ``post_limit / post_window`` per
second of real time, and reports it on every reply (``X-RateLimit-*``, the
emulator's own header names). Enforcing it (a 429 with ``Retry-After``) and
queueing calls are off unless configured.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import attrs

__all__ = ["CallQueue", "PostBucket", "RateLimits"]


def _positive(_: object, attribute: attrs.Attribute[Any], value: Any) -> None:
    if value is None and attribute.name in ("calls_per_second", "call_queue_size"):
        return
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise ValueError(f"RateLimits.{attribute.name} must be > 0, not {value!r}")
    if attribute.name in ("post_limit", "call_queue_size") and not isinstance(value, int):
        raise ValueError(f"RateLimits.{attribute.name} must be an integer, not {value!r}")


def _bool(_: object, attribute: attrs.Attribute[Any], value: Any) -> None:
    if not isinstance(value, bool):
        raise ValueError(f"RateLimits.{attribute.name} must be true or false, not {value!r}")


@attrs.frozen(kw_only=True)
class RateLimits:
    """
    The emulator's rate limits. Change them at run time with
    ``emu.set_rate_limits(...)`` (or ``PUT /__emulator/rate_limits``).

    Attributes:
        post_limit: POSTs allowed per *post_window* (the bucket's size).
        post_window: Seconds (real time) the bucket takes to refill from empty.
        enforce_post_limit: Answer 429 with ``Retry-After`` when the bucket is
            empty. Off: the headers still count, nothing is refused.
        headers: Send ``X-RateLimit-Limit``, ``X-RateLimit-Remaining`` and
            ``X-RateLimit-Reset`` on every reply of the API endpoint.
        calls_per_second: New calls created per emulated second. A ``dial``
            beyond the rate is answered (``queued``) at once, and its
            ``created`` waits for its turn. None: no queue.
        call_queue_size: How many dials may wait for their turn; one more is
            refused with 429 and a ``Retry-After``. None: no bound.
    """

    post_limit: int = attrs.field(default=13_800, validator=_positive)
    post_window: float = attrs.field(default=10.0, validator=_positive)
    enforce_post_limit: bool = attrs.field(default=False, validator=_bool)
    headers: bool = attrs.field(default=True, validator=_bool)
    calls_per_second: float | None = attrs.field(default=None, validator=_positive)
    call_queue_size: int | None = attrs.field(default=None, validator=_positive)

    def to_json(self) -> dict[str, Any]:
        return attrs.asdict(self)


class PostBucket:
    """The POST token bucket. :meth:`take` counts one POST."""

    def __init__(self, limits: RateLimits, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self.configure(limits)

    def configure(self, limits: RateLimits) -> None:
        """Apply new limits; the bucket starts full."""
        self.limits = limits
        self._capacity = float(limits.post_limit)
        self._rate = limits.post_limit / limits.post_window
        self._tokens = self._capacity
        self._at = self._clock()

    def _refill(self) -> float:
        now = self._clock()
        self._tokens = min(self._capacity, self._tokens + (now - self._at) * self._rate)
        self._at = now
        return self._tokens

    def take(self) -> tuple[bool, dict[str, str]]:
        """
        Count one POST. Returns whether it may go on and the headers of its reply
        (``Retry-After`` when it may not).
        """
        tokens = self._refill()
        allowed = True
        extra: dict[str, str] = {}
        if tokens >= 1:
            self._tokens = tokens - 1
        elif self.limits.enforce_post_limit:
            allowed = False
            extra["Retry-After"] = str(max(1, math.ceil((1 - tokens) / self._rate)))
        else:
            self._tokens = 0.0
        return allowed, {**self.headers(), **extra}

    def headers(self) -> dict[str, str]:
        """The ``X-RateLimit-*`` headers for the bucket as it is now (none if disabled)."""
        if not self.limits.headers:
            return {}
        tokens = self._tokens
        reset = math.ceil((self._capacity - tokens) / self._rate) if tokens < self._capacity else 0
        return {
            "X-RateLimit-Limit": str(self.limits.post_limit),
            "X-RateLimit-Remaining": str(math.floor(tokens)),
            "X-RateLimit-Reset": str(reset),
        }


class CallQueue:
    """When each new call may be created, at *calls_per_second* (emulated time)."""

    def __init__(self) -> None:
        self._slots: deque[float] = deque()  # the turns of calls still waiting, in order
        self._next = -math.inf

    def clear(self) -> None:
        self._slots.clear()
        self._next = -math.inf

    def waiting(self, now: float) -> int:
        """How many accepted calls still wait for their turn."""
        slots = self._slots
        while slots and slots[0] <= now:
            slots.popleft()
        return len(slots)

    def admit(self, now: float, limits: RateLimits) -> float | None:
        """
        The emulated seconds a new call waits before its turn, or None when the
        queue is full (see :meth:`retry_after`).
        """
        rate = limits.calls_per_second
        if rate is None:
            return 0.0
        turn = max(now, self._next)
        if turn > now:
            waiting = self.waiting(now)
            size = limits.call_queue_size
            if size is not None and waiting >= size:
                return None
            self._slots.append(turn)
        self._next = turn + 1.0 / rate
        return turn - now

    def retry_after(self, now: float, limits: RateLimits) -> float:
        """Emulated seconds until a full queue has room for one more call."""
        size = limits.call_queue_size or 0
        waiting = self.waiting(now)
        if waiting < size or not self._slots:
            return 0.0
        return max(0.0, self._slots[waiting - size] - now)
