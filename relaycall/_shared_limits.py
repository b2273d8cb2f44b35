"""
Project-wide limits: one budget for every worker sharing a coordinator's Redis.

The platform's limits are per project (13,800 POSTs per 10 s; about one new
call per second), so N workers each pacing locally send N times too much.
With ``Limits(shared=True)`` and a coordinator, the Transport's limiters are
replaced by the ones here, which ask Redis:

- **Rates** (``commands_per_second``, ``calls_per_second``): a GCRA in one Lua
  script, the same algorithm as :class:`relaycall._limits.RateLimiter`, run
  atomically in Redis with the time read from Redis (``TIME``), never from a
  worker's clock. Each caller *reserves* the next slot in one round trip and
  is told how long to wait for it (microseconds); it sleeps that long and
  goes, so there is no retry loop and callers are served in the order Redis
  saw them. The key holds one number (the theoretical arrival time) and
  expires once idle.
- **Concurrency** (``max_concurrency``, only when set): a sorted set of leases,
  ``lease id -> expiry`` (Redis time). A script drops expired leases, and adds
  one if fewer than the cap remain; a full set makes the caller poll with a
  short, jittered backoff (at most 50 ms). Held leases are renewed every
  third of their TTL, so a worker killed with ``kill -9`` frees its share when
  its leases lapse, at most :data:`LEASE_TTL` seconds later. The local gate
  (``Limits.concurrency``, the pool) is taken first, as before.

Redis unreachable (not started, restarting, a network blip, a call slower
than :data:`OP_TIMEOUT`): the acquire uses the local limiter instead, the
outage is logged once and counted (:class:`SharedLimitStats`), and Redis is
not asked again for a while (0.5 s, doubling to 5 s) so a dead Redis costs
nothing per command. Nothing here waits on Redis without a bound.

Keys: ``{key_prefix}limit:{project_id}:{commands|calls|concurrency}``.
redis-py is imported only when shared limits are set up (``import relaycall``
never imports it).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import random
import uuid
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any

from relaycall._limits import Gate, RateLimiter

if TYPE_CHECKING:
    from relaycall._config import Limits

logger = logging.getLogger("relaycall")

#: Seconds a concurrency lease lives unless renewed (a dead worker's lapse after this).
LEASE_TTL = 30.0
#: Bound on one Redis call; past it the acquire falls back to the local limiter.
OP_TIMEOUT = 1.0
#: Seconds Redis is left alone after a failure, first and at most (doubling in between).
RETRY_FIRST, RETRY_MAX = 0.5, 5.0

# All times are integer microseconds of Redis' clock. Numbers go back to Redis
# through string.format: Lua's own number-to-string keeps 14 digits, too few.
_GCRA = """
local interval = tonumber(ARGV[1])
local tolerance = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local tat = tonumber(redis.call('GET', KEYS[1]))
if not tat or tat < now then tat = now end
local new_tat = tat + interval
local ttl_ms = math.ceil((new_tat - now) / 1000) + 1000
redis.call('SET', KEYS[1], string.format('%.0f', new_tat), 'PX', string.format('%.0f', ttl_ms))
local wait = tat - tolerance - now
if wait <= 0 then return 0 end
return wait
"""

_LEASE = """
local cap = tonumber(ARGV[1])
local ttl = tonumber(ARGV[3])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', string.format('%.0f', now))
if redis.call('ZCARD', KEYS[1]) >= cap then return 0 end
redis.call('ZADD', KEYS[1], string.format('%.0f', now + ttl), ARGV[2])
redis.call('PEXPIRE', KEYS[1], string.format('%.0f', math.ceil(ttl / 1000) * 2))
return 1
"""

# XX: only leases still there are renewed; a released one is never brought back.
_RENEW = """
local t = redis.call('TIME')
local expiry = string.format('%.0f', tonumber(t[1]) * 1000000 + tonumber(t[2]) + tonumber(ARGV[1]))
for i = 2, #ARGV do redis.call('ZADD', KEYS[1], 'XX', expiry, ARGV[i]) end
redis.call('PEXPIRE', KEYS[1], string.format('%.0f', math.ceil(tonumber(ARGV[1]) / 1000) * 2))
return 1
"""


class SharedLimitStats:
    """What the shared limiters of one AsyncRelay did (counters since it was made)."""

    __slots__ = ("local_fallbacks", "redis_errors", "shared")

    def __init__(self) -> None:
        #: Acquires Redis decided.
        self.shared = 0
        #: Acquires that used the local limiter because Redis could not answer.
        self.local_fallbacks = 0
        #: Redis calls that failed or timed out.
        self.redis_errors = 0

    def as_dict(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in self.__slots__}

    def __repr__(self) -> str:
        return f"SharedLimitStats({self.as_dict()})"


class SharedLimits:
    """The Redis side of one AsyncRelay's shared limiters: scripts, fallback state, leases."""

    def __init__(self, coordinator: Any, project_id: str) -> None:
        self._coordinator = coordinator
        self.prefix = f"{coordinator.key_prefix}limit:{project_id}:"
        self.stats = SharedLimitStats()
        self._scripts: dict[str, Any] = {}
        self._down_until = 0.0
        self._backoff = RETRY_FIRST
        self._down = False
        worker = getattr(coordinator, "worker_id", None) or f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self._lease_ids = (f"{worker}:{n}" for n in itertools.count())
        #: Concurrency key -> lease ids held here (renewed until released).
        self.held: dict[str, list[str]] = {}
        self._renewer: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    # --- Redis calls -------------------------------------------------------------

    def _script(self, client: Any, source: str) -> Any:
        script = self._scripts.get(source)
        if script is None:
            # EVALSHA, loading the script when Redis does not know it (after a restart).
            script = self._scripts[source] = client.register_script(source)
        return script

    async def run(
        self, source: str, key: str, args: list[Any], *, count: bool = True
    ) -> int | None:
        """
        The script's answer, or None when Redis cannot answer now (use the local limiter).

        *count*: an acquire, counted in :attr:`stats` (a lease renewal is not).
        """
        loop = asyncio.get_running_loop()
        if self._down and loop.time() < self._down_until:
            self.stats.local_fallbacks += count
            return None
        try:
            client = self._coordinator.redis
            if client is None:
                raise ConnectionError("the coordinator has no Redis connection (not started?)")
            script = self._script(client, source)
            result = await asyncio.wait_for(
                script(keys=[key], args=args, client=client), OP_TIMEOUT
            )
        except Exception as exc:  # noqa: BLE001 - any failure of Redis means: decide locally
            self._failed(exc, loop.time())
            self.stats.local_fallbacks += count
            return None
        if self._down:
            self._down = False
            self._backoff = RETRY_FIRST
            logger.warning("relaycall shared limits: Redis answers again; limits are project-wide")
        self.stats.shared += count
        return int(result)

    def _failed(self, exc: BaseException, now: float) -> None:
        self.stats.redis_errors += 1
        if not self._down:
            self._down = True
            logger.warning(
                "relaycall shared limits: Redis unavailable (%s: %s); pacing locally "
                "(per process) until it answers again",
                type(exc).__name__,
                exc,
            )
        elif now >= self._down_until:
            # A probe after the pause failed: wait longer. (Failures of calls that were
            # already in flight when Redis went away do not count.)
            self._backoff = min(self._backoff * 2, RETRY_MAX)
        else:
            return
        self._down_until = now + self._backoff

    # --- concurrency leases ------------------------------------------------------

    async def lease(self, key: str, cap: int) -> str | None:
        """A lease on one of *cap* slots (waiting while all are taken), or None: Redis is down."""
        lease_id = next(self._lease_ids)
        ttl = round(LEASE_TTL * 1_000_000)
        delay = 0.002
        while True:
            try:
                got = await self.run(_LEASE, key, [cap, lease_id, ttl])
            except asyncio.CancelledError:
                # Redis may have granted it before the cancel: give it back now
                # rather than let it hold a slot until it lapses.
                self._spawn(self._zrem(key, lease_id))
                raise
            if got is None:
                return None
            if got:
                self.held.setdefault(key, []).append(lease_id)
                if self._renewer is None:
                    self._renewer = asyncio.get_running_loop().create_task(self._renew())
                return lease_id
            await asyncio.sleep(delay * (0.5 + random.random()))
            delay = min(delay * 2, 0.05)

    def drop(self, key: str) -> None:
        """Release one lease held on *key*: removed here at once, in Redis soon after."""
        self._spawn(self._zrem(key, self.held[key].pop()))

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _zrem(self, key: str, lease_id: str) -> None:
        try:
            client = self._coordinator.redis
            await asyncio.wait_for(client.zrem(key, lease_id), OP_TIMEOUT)
        except Exception:  # noqa: BLE001 - the lease lapses by itself
            self.stats.redis_errors += 1

    async def _renew(self) -> None:
        ttl = round(LEASE_TTL * 1_000_000)
        while True:
            await asyncio.sleep(LEASE_TTL / 3)
            for key, leases in list(self.held.items()):
                if leases:
                    await self.run(_RENEW, key, [ttl, *leases], count=False)

    async def close(self) -> None:
        """Stop renewing, and give back what is still held (bounded)."""
        if self._renewer is not None:
            self._renewer.cancel()
            self._renewer = None
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=OP_TIMEOUT)


class SharedRateLimiter:
    """A per-second cap shared through Redis; the local :class:`RateLimiter` while it is down."""

    __slots__ = ("_args", "_key", "_local", "_shared")

    def __init__(self, shared: SharedLimits, name: str, per_second: float, burst: int) -> None:
        self._shared = shared
        self._key = shared.prefix + name
        interval = 1_000_000 / per_second
        self._args = [round(interval), round(interval * (burst - 1))]
        self._local = RateLimiter(per_second, burst)

    async def acquire(self) -> None:
        wait = await self._shared.run(_GCRA, self._key, self._args)
        if wait is None:
            await self._local.acquire()
        elif wait > 0:
            # Like the local limiter: the slot stays reserved if cancelled here.
            await asyncio.sleep(wait / 1_000_000)


class SharedGate:
    """
    The in-flight cap: the local :class:`Gate` first, then a lease in Redis.

    ``try_acquire`` always fails, so the Transport awaits :meth:`acquire`.
    """

    __slots__ = ("_cap", "_key", "_local", "_shared", "_unleased")

    def __init__(self, shared: SharedLimits, cap: int, local: Gate) -> None:
        self._shared = shared
        self._key = shared.prefix + "concurrency"
        self._cap = cap
        self._local = local
        # Holders that went ahead without a lease (Redis down). Released first,
        # so Redis never counts fewer of this process' commands than hold leases.
        self._unleased = 0

    def try_acquire(self) -> bool:
        return False

    async def acquire(self) -> None:
        local = self._local
        if not local.try_acquire():
            await local.acquire()
        try:
            lease = await self._shared.lease(self._key, self._cap)
        except BaseException:
            local.release()
            raise
        if lease is None:
            self._unleased += 1

    def release(self) -> None:
        if self._unleased:
            self._unleased -= 1
        else:
            self._shared.drop(self._key)
        self._local.release()


def share(
    coordinator: Any, project_id: str, limits: Limits
) -> tuple[SharedLimits, SharedGate | None, SharedRateLimiter | None, SharedRateLimiter | None]:
    """
    The shared limiters for *limits*: (state, gate, commands rate, calls rate).

    None for a limit that is not set (the Transport keeps its local one).
    """
    shared = SharedLimits(coordinator, project_id)
    local_gate = Gate(limits.concurrency)
    return (
        shared,
        SharedGate(shared, limits.max_concurrency, local_gate) if limits.max_concurrency else None,
        SharedRateLimiter(shared, "commands", limits.commands_per_second, limits.burst)
        if limits.commands_per_second
        else None,
        SharedRateLimiter(shared, "calls", limits.calls_per_second, limits.burst)
        if limits.calls_per_second
        else None,
    )
