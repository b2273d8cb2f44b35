"""
RedisCoordinator: several workers (processes, hosts) sharing one public URL, through Redis.

A load balancer hands each status callback to any worker, while the handle it
is for lives in one. Each worker records which calls it holds (ownership keys
with a TTL it renews while the call lives); a worker whose receiver
authenticates a callback for a call it does not hold appends it to the owner's
Redis Stream (its inbox), and the owner reads its inbox with blocking reads,
checks the token against its own route and delivers the event as if it had
arrived there. docs/deployment.md says why these structures, what Redis holds
and for how long, and what happens when a worker or Redis goes away.

redis-py is imported when a coordinator is made, never by ``import relaycall``.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import random
import time
import uuid
from typing import TYPE_CHECKING, Any

from relaycall.errors import UsageError

if TYPE_CHECKING:
    from relaycall._events import Event
    from relaycall._receiver import EventReceiver
    from relaycall._routing import Router

__all__ = ["CoordinatorUnavailable", "RedisCoordinator"]

logger = logging.getLogger("relaycall.coordinator")

#: Redis errors and timeouts answer a forward within this many seconds (then 503).
FORWARD_TIMEOUT = 2.0
#: How long a live worker may take to read what was forwarded to its inbox (its
#: event loop busy, the read loop backing off): what was forwarded this long
#: before Redis went down may have gone unread with it, and is sent again.
UNREAD_WINDOW = 2.0
#: Longest wait between two attempts to reach Redis again.
MAX_BACKOFF = 5.0


class _Backoff:
    """A loop's wait between attempts while Redis fails: jittered, doubling up to MAX_BACKOFF."""

    __slots__ = ("delay",)
    FIRST = 0.05

    def __init__(self) -> None:
        self.delay = self.FIRST

    async def wait(self) -> None:
        await asyncio.sleep(self.delay * (1 + random.random()))
        self.delay = min(self.delay * 2, MAX_BACKOFF)

    def reset(self) -> None:
        self.delay = self.FIRST


# Forward one callback, atomically: the owner (by call id, else by the dial's
# nonce), whether it is alive (its heartbeat key), and the append to its inbox.
# Atomic with CLAIM below: once a worker's heartbeat has expired nothing is
# appended to its inbox any more, so a claimed inbox is never written to again.
# KEYS: owner:<call_id>, owner:dial:<nonce> (or the same key again)
# ARGV: key_prefix, stream_maxlen, body, token, this worker's id
_FORWARD = """
local owner = redis.call('GET', KEYS[1])
if not owner then owner = redis.call('GET', KEYS[2]) end
if not owner then return {'none'} end
if owner == ARGV[5] then return {'self', owner} end
if redis.call('EXISTS', ARGV[1] .. 'worker:' .. owner) == 0 then return {'dead', owner} end
local id = redis.call('XADD', ARGV[1] .. 'inbox:' .. owner, 'MAXLEN', '~', ARGV[2], '*',
                      'b', ARGV[3], 't', ARGV[4])
return {'sent', owner, id}
"""

# Take over a dead worker's inbox (its heartbeat expired): everything in it,
# then the stream and the worker's registration go. Nothing if it is alive.
# ARGV: key_prefix, the dead worker's id
_CLAIM = """
if redis.call('EXISTS', ARGV[1] .. 'worker:' .. ARGV[2]) == 1 then return {} end
local inbox = ARGV[1] .. 'inbox:' .. ARGV[2]
local entries = redis.call('XRANGE', inbox, '-', '+')
redis.call('DEL', inbox)
redis.call('SREM', ARGV[1] .. 'workers', ARGV[2])
return entries
"""

# A worker stopping: its inbox and registration go, unless callbacks are left in it.
# ARGV: key_prefix, its id
_LEAVE = """
local inbox = ARGV[1] .. 'inbox:' .. ARGV[2]
if redis.call('XLEN', inbox) > 0 then return 0 end
redis.call('DEL', inbox)
redis.call('SREM', ARGV[1] .. 'workers', ARGV[2])
return 1
"""


class CoordinatorUnavailable(Exception):
    """Redis could not be reached (or answered an error) for a forward."""


class RedisCoordinator:
    """
    Deliver callbacks to the worker holding their call, across processes and hosts.

    Give every worker one, on the same Redis, with one :class:`EventReceiver`
    configuration (the same ``secret=``, so tokens verify everywhere, and the
    same public URL)::

        coordinator = relaycall.RedisCoordinator("redis://redis.internal:6379/0")
        receiver = relaycall.EventReceiver(public_url=URL, secret=SECRET)
        async with relaycall.AsyncRelay(events=receiver, coordinator=coordinator) as relay:
            ...

    The AsyncRelay starts it (and stops it) with itself. docs/deployment.md
    describes what it stores and what happens when a worker or Redis dies.

    Args:
        url_or_client: A Redis URL (``redis://host:6379/0``, ``rediss://``,
            ``unix://``) or a ``redis.asyncio.Redis`` client of your own (not
            closed by the coordinator; its ``socket_timeout``, if any, must be
            longer than the blocking read, ``ownership_ttl / 3`` capped at 5 s).
        worker_id: This worker's identity (default: a new uuid4 per start of
            the process: a restarted worker is a new worker).
        ownership_ttl: Seconds a worker's ownership of a call, and its
            heartbeat, outlive it: renewed every third of it while it runs, so
            a dead worker's calls are orphans (delivered to
            ``receiver.on_orphan_event``) after at most this long.
        stream_maxlen: About how many forwarded callbacks a worker's inbox
            keeps while it is not read (older ones are trimmed).
        key_prefix: Prefixes every key, so several applications can share a Redis.
    """

    def __init__(
        self,
        url_or_client: Any,
        *,
        worker_id: str | None = None,
        ownership_ttl: float = 30.0,
        stream_maxlen: int = 10000,
        key_prefix: str = "relaycall:",
    ) -> None:
        try:
            import redis.asyncio as aioredis  # noqa: PLC0415 - the optional extra, on first use
        except ImportError:
            raise UsageError(
                "RedisCoordinator needs redis-py: pip install 'relaycall[redis]'"
            ) from None
        if not (isinstance(ownership_ttl, int | float) and 1 <= ownership_ttl <= 86400):
            raise UsageError(f"ownership_ttl must be seconds in [1, 86400], not {ownership_ttl!r}")
        whole = isinstance(stream_maxlen, int) and not isinstance(stream_maxlen, bool)
        if not whole or stream_maxlen < 1:
            raise UsageError(f"stream_maxlen must be a positive integer, not {stream_maxlen!r}")
        if not isinstance(key_prefix, str):
            raise UsageError(f"key_prefix must be a string, not {type(key_prefix).__name__}")
        if worker_id is not None and (not isinstance(worker_id, str) or not worker_id):
            raise UsageError("worker_id must be a non-empty string")
        self.worker_id = worker_id or uuid.uuid4().hex
        self.ownership_ttl = float(ownership_ttl)
        self.stream_maxlen = stream_maxlen
        self.key_prefix = key_prefix
        #: Seconds one blocking read of the inbox waits for news.
        self._block = min(self.ownership_ttl / 3, 5.0)
        if isinstance(url_or_client, str):
            self.redis: Any = aioredis.from_url(
                url_or_client,
                decode_responses=False,
                socket_connect_timeout=FORWARD_TIMEOUT,
                socket_timeout=self._block + FORWARD_TIMEOUT,
                health_check_interval=0,
            )
            self._own_client = True
        elif isinstance(url_or_client, aioredis.Redis):
            if url_or_client.connection_pool.connection_kwargs.get("decode_responses"):
                raise UsageError(
                    "RedisCoordinator needs a client with decode_responses=False: callback "
                    "bodies are bytes"
                )
            self.redis = url_or_client
            self._own_client = False
        else:
            raise UsageError(
                "RedisCoordinator takes a Redis URL or a redis.asyncio.Redis client, not "
                f"{type(url_or_client).__name__}"
            )
        self._errors: tuple[type[BaseException], ...] = (
            aioredis.RedisError,
            OSError,
            asyncio.TimeoutError,
        )
        self._forward_script = self.redis.register_script(_FORWARD)
        self._claim_script = self.redis.register_script(_CLAIM)
        self._leave_script = self.redis.register_script(_LEAVE)
        self._router: Router | None = None
        self._receiver: EventReceiver | None = None
        #: Call ids this worker owns (renewed), and dial nonces claimed for dials in flight.
        self._calls: dict[str, None] = {}
        self._dials: dict[str, None] = {}
        #: Ownership to write as soon as possible (call ids), and keys to delete.
        self._to_own: dict[str, None] = {}
        self._to_drop: dict[str, None] = {}
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[Any]] = []
        self._running = False
        #: Since when Redis has been failing (None while it answers).
        self._down_since: float | None = None
        #: When the last outage this worker saw began (the restart it noticed, if any).
        self._outage_began: float | None = None
        self._down_errors = 0
        self._last_id = b"0-0"
        self._rewrite = False
        #: Callbacks this worker forwarded lately, (when, owner, body, token, keys):
        #: those whose owner is gone are sent again if Redis restarts (an inbox in
        #: a Redis without persistence is lost with it).
        self._recent: collections.deque[tuple[float, str, bytes, str, list[str]]] = (
            collections.deque(maxlen=stream_maxlen)
        )
        #: The Redis server's run_id when last seen (a new one: it restarted), and when.
        self._run_id: str | None = None
        self._seen_at = 0.0
        self._replay_task: asyncio.Task[None] | None = None

    def __repr__(self) -> str:
        return f"<RedisCoordinator worker_id={self.worker_id!r} key_prefix={self.key_prefix!r}>"

    # --- keys ------------------------------------------------------------------------------

    def _owner_key(self, call_id: str) -> str:
        return f"{self.key_prefix}owner:{call_id}"

    def _dial_key(self, nonce: str) -> str:
        return f"{self.key_prefix}owner:dial:{nonce}"

    def _nonce_key(self, call_id: str) -> str:
        return f"{self.key_prefix}nonce:{call_id}"

    @property
    def _nonce_ttl(self) -> int:
        """Milliseconds a call's dial nonce outlives its owner: it must outlast the orphan."""
        return int(max(10 * self.ownership_ttl, 3600.0) * 1000)

    @property
    def inbox(self) -> str:
        """This worker's Redis Stream of callbacks forwarded to it."""
        return f"{self.key_prefix}inbox:{self.worker_id}"

    @property
    def _heartbeat(self) -> str:
        return f"{self.key_prefix}worker:{self.worker_id}"

    @property
    def _registry(self) -> str:
        return f"{self.key_prefix}workers"

    # --- lifecycle (the AsyncRelay's) ------------------------------------------------------

    def _attach(self, router: Router, receiver: EventReceiver) -> None:
        if self._router is not None and self._router is not router:
            raise UsageError("this RedisCoordinator already serves another AsyncRelay")
        self._router, self._receiver = router, receiver

    async def start(self) -> None:
        """Register this worker and start reading its inbox (the AsyncRelay calls it)."""
        if self._running:
            return
        self._running = True
        try:
            await self._beat()
        except self._errors as exc:
            self._failed("registering the worker", exc)
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self._read_loop(), name="relaycall-coordinator-inbox"),
            loop.create_task(self._renew_loop(), name="relaycall-coordinator-renew"),
            loop.create_task(self._write_loop(), name="relaycall-coordinator-write"),
        ]

    async def stop(self) -> None:
        """
        Stop reading and renewing; give up this worker's calls and its heartbeat.

        Callbacks for its calls then go to ``on_orphan_event`` on the workers
        receiving them; what is left in its inbox is claimed by a surviving
        worker at its next renewal and handed to its orphan hook too.
        """
        if not self._running:
            return
        self._running = False
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        # Each loop also ends by itself on seeing _running false: redis-py may
        # turn a cancellation inside a command into a connection error.
        await asyncio.wait(tasks, timeout=FORWARD_TIMEOUT)
        keys = [self._owner_key(c) for c in self._calls] + [self._dial_key(n) for n in self._dials]
        keys += self._to_drop
        try:
            pipe = self.redis.pipeline(transaction=False)
            for start in range(0, len(keys), 1000):
                pipe.delete(*keys[start : start + 1000])
            pipe.delete(self._heartbeat)
            await asyncio.wait_for(pipe.execute(), FORWARD_TIMEOUT)
            # An empty inbox goes with its worker; one with callbacks left in it
            # is claimed by a survivor, which hands them to its orphan hook.
            await asyncio.wait_for(
                self._leave_script(args=[self.key_prefix, self.worker_id]), FORWARD_TIMEOUT
            )
        except self._errors as exc:
            logger.info("could not release this worker's keys in Redis (%r): they expire", exc)
        self._calls.clear()
        self._dials.clear()
        self._to_own.clear()
        self._to_drop.clear()
        if self._own_client:
            with contextlib.suppress(*self._errors):
                await self.redis.aclose()

    def _stopped(self) -> bool:
        return not self._running

    # --- ownership (the Router's hooks) ----------------------------------------------------

    def own(self, call_id: str) -> None:
        """This worker holds *call_id*: record it in Redis at once, and renew it while it lives."""
        self._calls[call_id] = None
        self._to_drop.pop(self._owner_key(call_id), None)
        self._to_own[call_id] = None
        self._wake.set()

    async def claim_dial(self, nonce: str) -> None:
        """
        A dial with this token nonce is about to be sent: its callbacks come to this worker.

        Awaited before the dial goes out, so a callback beating the reply to
        another worker finds its owner; when Redis is unreachable the dial is
        sent all the same (its callbacks reaching other workers are orphans).
        """
        self._dials[nonce] = None
        try:
            await asyncio.wait_for(
                self.redis.set(
                    self._dial_key(nonce), self.worker_id, px=int(self.ownership_ttl * 1000)
                ),
                FORWARD_TIMEOUT,
            )
        except self._errors as exc:
            self._failed("claiming a dial", exc)
        else:
            self._recovered()

    def dial_done(self, nonce: str) -> None:
        """
        The dial with *nonce* is answered (its call is owned by id now) or failed.

        Its key goes in the same pipeline as, and after, the call's own.
        """
        self._dials.pop(nonce, None)
        self._to_drop[self._dial_key(nonce)] = None
        self._wake.set()

    # --- forwarding (the receiver's) ------------------------------------------------------

    async def owned_elsewhere(self, call_id: str) -> bool:
        """
        Whether another live worker owns *call_id* (its owner key names it, its heartbeat lives).

        Redis unreachable or slow: False (this worker may then take the call, as
        it would with no coordinator). Bounded at 0.5 s per read: it is asked
        inside a SWML fetch, which the platform waits for about 5 s.
        """
        try:
            owner = await asyncio.wait_for(self.redis.get(self._owner_key(call_id)), 0.5)
            if not isinstance(owner, bytes) or owner.decode() == self.worker_id:
                return False
            alive = await asyncio.wait_for(
                self.redis.exists(f"{self.key_prefix}worker:{owner.decode()}"), 0.5
            )
        except self._errors as exc:
            self._failed("reading a call's owner", exc)
            return False
        return bool(alive)

    async def dial_nonce(self, call_id: str) -> str | None:
        """
        The token nonce of the dial that placed *call_id*, as its dialing worker recorded it.

        None when no worker recorded one (the call was not dialed with a
        receiver's status_url, or Redis lost it). Raises
        :class:`CoordinatorUnavailable` when Redis cannot be reached.
        """
        try:
            value = await asyncio.wait_for(
                self.redis.get(self._nonce_key(call_id)), FORWARD_TIMEOUT
            )
        except self._errors as exc:
            self._failed("reading a dial's nonce", exc)
            raise CoordinatorUnavailable(repr(exc)) from exc
        return value.decode() if isinstance(value, bytes) else None

    async def forward(self, body: bytes, token: str, event: Event) -> tuple[str, str | None]:
        """
        Append a callback for a call this worker does not hold to its owner's inbox.

        Returns ``("sent", owner)``, ``("none", None)`` (no owner: an orphan),
        ``("dead", owner)`` (its owner's heartbeat expired: an orphan) or
        ``("self", owner)`` (owned here, but no longer held). Raises
        :class:`CoordinatorUnavailable` when Redis cannot be reached.
        """
        call_id = event.call_id or ""
        dial = self._owner_key(call_id)
        if token.startswith("d."):
            dial = self._dial_key(token[2:].partition(".")[0])
        args = [self.key_prefix, self.stream_maxlen, body, token, self.worker_id]
        keys = [self._owner_key(call_id), dial]
        # Tried again for up to FORWARD_TIMEOUT (a Redis restart, a failover):
        # the platform's retries of a callback answered 503 are not documented.
        loop = asyncio.get_running_loop()
        deadline = loop.time() + FORWARD_TIMEOUT
        pause = 0.05
        while True:
            try:
                answer = await asyncio.wait_for(
                    self._forward_script(keys=keys, args=args),
                    max(deadline - loop.time(), 0.1),
                )
                break
            except self._errors as exc:
                self._failed("forwarding a callback", exc)
                if loop.time() + pause >= deadline:
                    raise CoordinatorUnavailable(repr(exc)) from exc
                await asyncio.sleep(pause)
                pause = min(pause * 2, 0.5)
        self._recovered()
        verdict = answer[0].decode()
        owner = answer[1].decode() if len(answer) > 1 else None
        if verdict == "sent" and owner is not None:
            now = time.monotonic()
            recent = self._recent
            recent.append((now, owner, body, token, keys))
            while recent[0][0] < now - 10 * self.ownership_ttl:
                recent.popleft()
        return verdict, owner

    # --- the loops -------------------------------------------------------------------------

    async def _beat(self) -> None:
        """The heartbeat, the registration, and every live call's and dial's ownership."""
        router = self._router
        ttl = int(self.ownership_ttl * 1000)
        for call_id in list(self._calls):
            call = router.get(call_id) if router is not None else None
            if call is None or call.state == "ended":
                del self._calls[call_id]
                self._to_drop[self._owner_key(call_id)] = None
                self._to_drop[self._nonce_key(call_id)] = None
        pipe = self.redis.pipeline(transaction=False)
        pipe.set(self._heartbeat, str(time.time()), px=ttl)
        pipe.sadd(self._registry, self.worker_id)
        nonces = router.nonces if router is not None else {}
        for call_id in self._calls:
            pipe.set(self._owner_key(call_id), self.worker_id, px=ttl)
            if (nonce := nonces.get(call_id)) is not None:
                pipe.set(self._nonce_key(call_id), nonce, px=self._nonce_ttl)
        for nonce in self._dials:
            pipe.set(self._dial_key(nonce), self.worker_id, px=ttl)
        await pipe.execute()
        self._to_own.clear()  # all written just now
        run_id = (await self.redis.info("server")).get("run_id")
        if self._run_id is not None and run_id != self._run_id and self._recent:
            self._replay_soon(self._seen_at)
        self._run_id, self._seen_at = run_id, time.monotonic()

    def _replay_soon(self, seen_at: float) -> None:
        """
        Redis restarted: what this worker forwarded may be lost with it.

        A dead worker's inbox would have been claimed by a survivor, but went
        with Redis; a live owner reads its inbox as it comes, but what reached
        it just before the restart may not have been read yet. Once every live
        worker has written its heartbeat again (one renewal period), each
        callback this worker forwarded to a worker that has none, within the
        time a claim takes before the restart (*seen_at*: Redis last seen up),
        and each it forwarded to a live worker within :data:`UNREAD_WINDOW` of
        the outage, is forwarded again: to the call's owner if it has one now,
        else to the orphan hook here. At least once: a callback its reader had
        read comes again (the owner's handle takes it as a duplicate).
        """
        if self._replay_task is None or self._replay_task.done():
            task = asyncio.get_running_loop().create_task(self._replay(seen_at))
            self._replay_task = task
            self._tasks.append(task)

    async def _replay(self, seen_at: float) -> None:
        await asyncio.sleep(self.ownership_ttl / 3 + 0.5)
        cutoff = seen_at - 2 * self.ownership_ttl
        # Redis went down after seen_at, and no later than this worker noticed.
        unread_since = max(seen_at, self._outage_began or 0.0) - UNREAD_WINDOW
        entries = [e for e in self._recent if e[0] >= cutoff]
        self._recent.clear()
        alive: dict[str, bool] = {}
        again = 0
        for when, owner, body, token, keys in entries:
            if owner not in alive:
                try:
                    alive[owner] = bool(await self.redis.exists(f"{self.key_prefix}worker:{owner}"))
                except self._errors as exc:
                    self._failed("checking a worker after a Redis restart", exc)
                    alive[owner] = False
            if alive[owner] and when < unread_since:
                continue  # read long before the restart
            again += 1
            args = [self.key_prefix, self.stream_maxlen, body, token, self.worker_id]
            try:
                answer = await asyncio.wait_for(
                    self._forward_script(keys=keys, args=args), FORWARD_TIMEOUT
                )
            except self._errors as exc:
                self._failed("forwarding a callback again", exc)
                self._deliver({b"b": body, b"t": token.encode()}, orphan=True)
                continue
            verdict = answer[0].decode()
            if verdict != "sent":  # "self": ours now; "none", "dead": nobody's
                self._deliver({b"b": body, b"t": token.encode()}, orphan=verdict != "self")
        if again:
            logger.warning(
                "Redis restarted: %d callbacks it may have lost (forwarded to workers gone since, "
                "or just before) were sent again",
                again,
            )

    async def _renew_loop(self) -> None:
        """Every ttl/3: renew, release what ended, and claim dead workers' inboxes."""
        period = self.ownership_ttl / 3
        while self._running:
            try:
                await asyncio.sleep(period)
                await asyncio.wait_for(self._beat(), period)
                self._wake.set()  # drops found just now
                # Not under a timeout: a claim cancelled after Redis ran it would
                # lose the entries it took (the client's socket timeout bounds it).
                await self._claim_dead()
                self._recovered()
            except asyncio.CancelledError:  # noqa: PERF203 - once per ttl/3
                raise
            except self._errors as exc:
                if self._stopped():
                    return  # stopped: a cancellation redis-py turned into an error
                self._failed("renewing ownership", exc)
            except Exception:
                logger.exception("the coordinator's renewal failed")

    async def _write_loop(self) -> None:
        """Write new ownership and delete ended calls' as soon as they happen, in pipelines."""
        backoff = _Backoff()
        while self._running:
            await self._wake.wait()
            self._wake.clear()
            # Redis is back, maybe empty (a restart): the heartbeat and every
            # ownership are written again now, not at the next renewal.
            rewrite, self._rewrite = self._rewrite, False
            own, drop = list(self._to_own), list(self._to_drop)
            if not own and not drop and not rewrite:
                continue
            ttl = int(self.ownership_ttl * 1000)
            try:
                if rewrite:
                    await asyncio.wait_for(self._beat(), FORWARD_TIMEOUT)
                pipe = self.redis.pipeline(transaction=False)
                nonces = self._router.nonces if self._router is not None else {}
                learn = []
                for call_id in own:
                    pipe.set(self._owner_key(call_id), self.worker_id, px=ttl)
                    if (nonce := nonces.get(call_id)) is not None:
                        pipe.set(self._nonce_key(call_id), nonce, px=self._nonce_ttl)
                    else:
                        learn.append(call_id)
                for start in range(0, len(drop), 1000):
                    pipe.delete(*drop[start : start + 1000])
                await asyncio.wait_for(pipe.execute(), FORWARD_TIMEOUT)
                if learn:
                    await self._learn_nonces(learn)
            except asyncio.CancelledError:
                raise
            except self._errors as exc:
                if self._stopped():
                    return  # stopped: a cancellation redis-py turned into an error
                self._failed("recording ownership", exc)
                self._rewrite = self._rewrite or rewrite
                await backoff.wait()
                self._wake.set()  # try again
                continue
            backoff.reset()
            self._recovered()
            for call_id in own:
                self._to_own.pop(call_id, None)
            for key in drop:
                self._to_drop.pop(key, None)

    async def _learn_nonces(self, call_ids: list[str]) -> None:
        """
        Calls taken over here (``relay.call(id)``) that another worker dialed: their dial's nonce.

        Their call-state callbacks carry that dial's token, which binds only to
        the call the dial placed: the nonce, kept in Redis by the dialing worker,
        lets this worker accept them (Router.dialed), as the dialing worker would.
        """
        values = await asyncio.wait_for(
            self.redis.mget([self._nonce_key(c) for c in call_ids]), FORWARD_TIMEOUT
        )
        router = self._router
        for call_id, value in zip(call_ids, values, strict=True):
            if value is not None and router is not None:
                router.dialed(call_id, value.decode())

    async def _read_loop(self) -> None:
        """Read this worker's inbox from the last id read: a reconnect misses nothing."""
        backoff = _Backoff()
        block = int(self._block * 1000)
        while self._running:
            try:
                answer = await self.redis.xread({self.inbox: self._last_id}, count=256, block=block)
            except asyncio.CancelledError:
                raise
            except self._errors as exc:
                if self._stopped():
                    return  # stopped: a cancellation redis-py turned into an error
                self._failed("reading the inbox", exc)
                await backoff.wait()
                continue
            backoff.reset()
            self._recovered()
            for _stream, entries in answer or ():
                done = []
                for entry_id, fields in entries:
                    self._last_id = entry_id
                    done.append(entry_id)
                    self._deliver(fields, orphan=False)
                # The listeners (on_event) run first: an entry is acknowledged once
                # everything it was for has run.
                await asyncio.sleep(0)
                with contextlib.suppress(*self._errors):
                    await self.redis.xdel(self.inbox, *done)

    async def _claim_dead(self) -> None:
        """Hand what is in the inbox of each worker whose heartbeat expired to the orphan hook."""
        members = await self.redis.smembers(self._registry)
        for member in members:
            worker = member.decode()
            if worker == self.worker_id:
                continue
            if await self.redis.exists(f"{self.key_prefix}worker:{worker}"):
                continue
            entries = await self._claim_script(args=[self.key_prefix, worker])
            if entries:
                logger.warning(
                    "worker %s is gone: %d callbacks from its inbox go to on_orphan_event",
                    worker,
                    len(entries),
                )
            for _entry_id, flat in entries:
                self._deliver(dict(zip(flat[::2], flat[1::2], strict=True)), orphan=True)

    def _deliver(self, fields: Any, *, orphan: bool) -> None:
        receiver = self._receiver
        if receiver is None:
            return
        body, token = fields.get(b"b", b""), fields.get(b"t", b"").decode()
        try:
            receiver._forwarded(body, token, orphan=orphan)
        except Exception:
            logger.exception("delivering a forwarded callback failed")

    # --- Redis's health --------------------------------------------------------------------

    def _failed(self, doing: str, exc: BaseException) -> None:
        """Count a Redis failure; log the first of an outage only."""
        if self._receiver is not None:
            self._receiver.stats.coordinator_errors += 1
        self._down_errors += 1
        if self._down_since is None:
            self._down_since = time.monotonic()
            logger.warning(
                "Redis is unreachable (%s: %r): callbacks for other workers' calls are "
                "answered 503 until it is back; local delivery goes on",
                doing,
                exc,
            )

    def _recovered(self) -> None:
        if self._down_since is not None:
            logger.warning(
                "Redis is reachable again after %.1f s (%d failed operations)",
                time.monotonic() - self._down_since,
                self._down_errors,
            )
            self._outage_began = self._down_since
            self._down_since, self._down_errors = None, 0
            self._rewrite = True
            self._wake.set()
