"""
Several workers through Redis (relaycall.RedisCoordinator): callbacks reach the worker
holding their call, orphans reach the hook, and a Redis outage breaks nothing local.

Two "workers" run in this process, each an AsyncRelay with its own EventReceiver (one
shared secret) and coordinator, on one emulator and one real redis-server. Worker B's
receiver takes every callback (both receivers' public_url is B's), as a load balancer
sending everything to the wrong worker would: A's callbacks reach A only through Redis.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import attrs
import pytest
import redis.asyncio as aioredis

import relaycall
from relaycall.testing import Emulator
from tests._services import RedisServer
from tests.conftest import DIAL
from tests.test_inbound import fetch_body

SECRET = b"k" * 32
TTL = 1.5


@attrs.define
class Worker:
    receiver: relaycall.EventReceiver
    relay: relaycall.AsyncRelay
    coordinator: relaycall.RedisCoordinator


async def until(condition: Callable[[], bool | Awaitable[bool]], timeout: float = 10.0) -> None:
    """Poll *condition* (about an external process: Redis) until true, within *timeout*."""

    async def poll() -> None:
        while True:
            value = condition()
            if not isinstance(value, bool):
                value = await value
            if value:
                return
            await asyncio.sleep(0.05)

    await asyncio.wait_for(poll(), timeout)


@contextlib.asynccontextmanager
async def two_workers(
    redis_url: str, emu: Emulator, *, ttl: float = TTL
) -> AsyncIterator[tuple[Worker, Worker]]:
    """Workers A and B; every callback (A's and B's) is posted to B's receiver."""
    rx_b = relaycall.EventReceiver(secret=SECRET)
    url_b = await rx_b.start()
    rx_a = relaycall.EventReceiver(public_url=url_b, secret=SECRET)
    await rx_a.start()
    workers = []
    async with contextlib.AsyncExitStack() as stack:
        for rx in (rx_a, rx_b):
            coordinator = relaycall.RedisCoordinator(redis_url, ownership_ttl=ttl)
            relay = relaycall.AsyncRelay(
                emu.config.project_id,
                emu.config.token,
                base_url=emu.base_url,
                events=rx,
                coordinator=coordinator,
                retry=None,
            )
            await stack.enter_async_context(relay)
            workers.append(Worker(rx, relay, coordinator))
        try:
            yield workers[0], workers[1]
        finally:
            await rx_a.stop()
            await rx_b.stop()


async def answered_call(worker: Worker) -> relaycall.Call:
    """A call *worker* dialed, once it is answered (within 5 s)."""
    call = await worker.relay.dial(**DIAL)
    assert await call.wait_for("answered", timeout=5) == "answered"
    return call


@pytest.fixture
async def emu() -> AsyncIterator[Emulator]:
    async with Emulator(time_scale=20, signing_key=None) as e:
        yield e


def delivered_to(emu: Emulator, call_id: str, event_type: str) -> Any:
    """The last callback of *event_type* about *call_id* the emulator sent (url and body)."""
    entries = [c for c in emu.callbacks if c.call_id == call_id and c.event_type == event_type]
    assert entries, f"no {event_type} callback for {call_id}"
    return entries[-1]


async def post(url: str, body: Any) -> int:
    async with (
        aiohttp.ClientSession() as session,
        session.post(url, data=json.dumps(body).encode()) as resp,
    ):
        return resp.status


async def test_a_callback_posted_to_another_worker_reaches_the_owner_s_handle(
    redis_server: RedisServer, emu: Emulator
) -> None:
    """A's call and its playback get every callback through B's receiver and A's inbox."""
    async with two_workers(redis_server.url, emu) as (a, b):
        call = await answered_call(a)
        playback = await call.play(relaycall.tts("hello"))
        result = await playback.wait(timeout=10)
        assert result.state == "finished"
        assert b.receiver.stats.forwarded >= 3
        assert b.receiver.stats.routed == 0
        assert a.receiver.stats.received == 0  # nothing reached A over HTTP
        # B counts a forward once Redis took it, which may be after A read it.
        await until(lambda: a.receiver.stats.received_forwarded == b.receiver.stats.forwarded)
        assert a.receiver.stats.routed >= 3
        assert b.receiver.stats.orphaned == a.receiver.stats.orphaned == 0


async def test_callbacks_that_beat_the_dial_reply_are_held_on_the_owner(
    redis_server: RedisServer, emu: Emulator
) -> None:
    """A dial's callbacks reaching B before A has its reply find A by the dial's nonce."""
    async with two_workers(redis_server.url, emu) as (a, b):
        emu.faults.latency(1.0, times=1, command="dial")
        call = await a.relay.dial(**DIAL)
        assert a.receiver.stats.held >= 1  # forwarded to A while its dial was unanswered
        assert await call.wait_for("answered", timeout=5) == "answered"
        assert b.receiver.stats.orphaned == 0


async def test_a_forged_token_at_the_non_owner_is_refused_and_not_forwarded(
    redis_server: RedisServer, emu: Emulator
) -> None:
    """403 at B for a callback whose token does not verify; A's inbox stays empty."""
    async with two_workers(redis_server.url, emu) as (a, b):
        call = await answered_call(a)
        real = delivered_to(emu, call.id, "calling.call.state")
        await until(lambda: a.receiver.stats.received_forwarded == b.receiver.stats.forwarded)
        forwarded = b.receiver.stats.forwarded
        base = real.url.partition("?")[0]
        for token in ("c.forged", "d.nonce.AAAAAAAAAAAAAAAAAAAAAAAA", "", "o.x.y"):
            assert await post(f"{base}?t={token}", real.body) == 403
        assert b.receiver.stats.forwarded == forwarded
        client = aioredis.from_url(redis_server.url)
        try:
            await until(lambda: a.receiver.stats.received_forwarded == forwarded)
            assert await client.xlen(a.coordinator.inbox) == 0
        finally:
            await client.aclose()


async def test_a_call_whose_owner_stopped_goes_to_the_orphan_hook(
    redis_server: RedisServer, emu: Emulator
) -> None:
    """After A closes, its call's callbacks reaching B are orphans: B's hook gets the Event."""
    orphans: list[relaycall.Event] = []
    async with two_workers(redis_server.url, emu) as (a, b):
        b.receiver.on_orphan_event(orphans.append)
        call = await answered_call(a)
        await a.relay.close()
        emu.hangup(call.id)
        await until(lambda: any(e.params.get("call_state") == "ended" for e in orphans))
        assert orphans[-1].call_id == call.id
        assert b.receiver.stats.orphaned >= 1
        # The app carries on with the call on B: it becomes B's.
        adopted = b.relay.call(call.id)
        assert adopted.id == call.id


async def test_without_a_hook_an_orphan_is_counted_and_logged(
    redis_server: RedisServer, emu: Emulator, caplog: pytest.LogCaptureFixture
) -> None:
    """No on_orphan_event hook: stats.orphaned and a warning naming the call."""
    async with two_workers(redis_server.url, emu) as (a, b):
        call = await answered_call(a)
        await a.relay.close()
        with caplog.at_level(logging.WARNING, "relaycall.events"):
            emu.hangup(call.id)
            await until(lambda: b.receiver.stats.orphaned >= 1)
        assert call.id in caplog.text


async def test_a_dead_worker_s_inbox_is_claimed_and_handed_to_the_orphan_hook(
    redis_server: RedisServer, emu: Emulator
) -> None:
    """
    Events forwarded to a worker killed -9 (its keys left to expire) are not dropped:
    once its heartbeat expires a survivor claims its inbox and hands them to the hook.
    """
    orphans: list[relaycall.Event] = []
    client = aioredis.from_url(redis_server.url)
    try:
        async with two_workers(redis_server.url, emu) as (a, b):
            b.receiver.on_orphan_event(orphans.append)
            call = await answered_call(a)
            # A "dies": a ghost worker now owns the call, alive for 1 s, and never reads.
            prefix = b.coordinator.key_prefix
            await client.set(f"{prefix}worker:ghost", "1", px=1000)
            await client.sadd(f"{prefix}workers", "ghost")
            await client.set(f"{prefix}owner:{call.id}", "ghost", px=60000)
            await a.relay.close()
            await client.set(f"{prefix}owner:{call.id}", "ghost", px=60000)
            real = delivered_to(emu, call.id, "calling.call.state")
            assert await post(real.url, real.body) == 200
            assert await client.xlen(f"{prefix}inbox:ghost") == 1
            await until(lambda: bool(orphans), timeout=10)
            assert orphans[0].call_id == call.id
            assert await client.exists(f"{prefix}inbox:ghost") == 0
            assert not await client.sismember(f"{prefix}workers", "ghost")
    finally:
        await client.aclose()


async def test_redis_down_keeps_local_delivery_and_forwarding_resumes(
    redis_server: RedisServer, emu: Emulator
) -> None:
    """
    Redis stopped: B's own call is still delivered locally, a callback for A's call is
    answered 503 (the platform sends it again) and counted; after a restart, ownership is
    written again and forwarding works.
    """
    async with two_workers(redis_server.url, emu) as (a, b):
        call_a = await a.relay.dial(**DIAL)
        assert await call_a.wait_for("answered", timeout=5) == "answered"
        real = delivered_to(emu, call_a.id, "calling.call.state")
        redis_server.stop()
        call_b = await b.relay.dial(**DIAL)  # its dial claim fails: sent all the same
        assert await call_b.wait_for("answered", timeout=5) == "answered"
        assert await post(real.url, real.body) == 503
        assert b.receiver.stats.forward_failed >= 1
        assert b.receiver.stats.coordinator_errors >= 1
        redis_server.start()  # empty: every key was lost
        # Each worker writes its live calls' ownership again within ttl/3.
        before = b.receiver.stats.forwarded

        async def forwarded_again() -> bool:
            return await post(real.url, real.body) == 200 and b.receiver.stats.forwarded > before

        await until(forwarded_again)
        playback = await call_a.play(relaycall.tts("back"))
        assert (await playback.wait(timeout=10)).state == "finished"


def test_import_relaycall_does_not_import_redis() -> None:
    """`import relaycall` (and naming RedisCoordinator) loads no redis module."""
    code = (
        "import sys, relaycall; relaycall.RedisCoordinator; "
        "assert not [m for m in sys.modules if m == 'redis' or m.startswith('redis.')]"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_arguments_are_checked() -> None:
    """Bad arguments raise UsageError naming them; coordinator= needs events=."""
    with pytest.raises(relaycall.UsageError, match="ownership_ttl"):
        relaycall.RedisCoordinator("redis://127.0.0.1:1", ownership_ttl=0)
    with pytest.raises(relaycall.UsageError, match="stream_maxlen"):
        relaycall.RedisCoordinator("redis://127.0.0.1:1", stream_maxlen=0)
    with pytest.raises(relaycall.UsageError, match="Redis URL"):
        relaycall.RedisCoordinator(42)
    coordinator = relaycall.RedisCoordinator("redis://127.0.0.1:1")
    with pytest.raises(relaycall.UsageError, match="events="):
        relaycall.AsyncRelay("p", "t", base_url="http://127.0.0.1:1", coordinator=coordinator)
    with pytest.raises(relaycall.UsageError, match="coordinator"):
        relaycall.AsyncRelay("p", "t", base_url="http://127.0.0.1:1", coordinator="redis://")  # type: ignore[arg-type]


async def test_ingest_and_ingest_async_forward_too(
    redis_server: RedisServer, emu: Emulator
) -> None:
    """Called directly: ingest_async answers once Redis has it; ingest() forwards in background."""
    async with two_workers(redis_server.url, emu) as (a, b):
        call = await answered_call(a)
        real = delivered_to(emu, call.id, "calling.call.state")
        body = json.dumps(real.body).encode()
        query = real.url.partition("?")[2]
        # B counts a forward once Redis took it, which may be after A read it.
        await until(lambda: a.receiver.stats.received_forwarded == b.receiver.stats.forwarded)
        before = b.receiver.stats.forwarded
        answer = await b.receiver.ingest_async(body, url=real.url, query=query, headers={})
        assert answer == (200, "ok")
        assert b.receiver.stats.forwarded == before + 1
        assert b.receiver.ingest(body, url=real.url, query=query, headers={}) == (200, "ok")
        await until(lambda: b.receiver.stats.forwarded == before + 2)
        await until(lambda: a.receiver.stats.received_forwarded == before + 2)
        assert b.receiver.stats.forwarded == before + 2


async def test_redis_holds_ownership_while_a_call_lives_and_nothing_after(
    redis_server: RedisServer, emu: Emulator
) -> None:
    """
    owner:<call> names the worker (with a TTL) while the call lives, goes within ttl/3 of
    its end; the dial's key goes with its reply; no key is left once the workers stopped.
    A new coordinator is a new worker (a uuid4 of its own).
    """
    client = aioredis.from_url(redis_server.url)
    try:
        async with two_workers(redis_server.url, emu) as (a, b):
            assert a.coordinator.worker_id != b.coordinator.worker_id
            call = await answered_call(a)
            key = f"relaycall:owner:{call.id}"
            await until(lambda: _exists(client, key))
            assert await client.get(key) == a.coordinator.worker_id.encode()
            assert 0 < await client.pttl(key) <= TTL * 1000
            await until(lambda: _no_dial_keys(client))
            await call.end()
            assert (await call.wait(timeout=5)).state == "ended"
            await until(lambda: _missing(client, key), timeout=TTL * 2)
        assert await client.keys("relaycall:*") == []
    finally:
        await client.aclose()


async def _owned_by(client: Any, prefix: str, call_id: str, worker: str) -> None:
    """Make *worker* (a name with no process behind it) alive and *call_id*'s owner for 60 s."""
    await client.set(f"{prefix}worker:{worker}", "1", px=60000)
    await client.set(f"{prefix}owner:{call_id}", worker, px=60000)


async def _exists(client: Any, key: str) -> bool:
    return bool(await client.exists(key))


async def _missing(client: Any, key: str) -> bool:
    return not await client.exists(key)


async def _no_dial_keys(client: Any) -> bool:
    return not await client.keys("relaycall:owner:dial:*")


async def test_callbacks_in_an_inbox_lost_with_a_redis_restart_are_sent_again(
    redis_server: RedisServer, emu: Emulator
) -> None:
    """
    A worker killed -9, then Redis restarted without persistence (its inbox lost): the
    worker that forwarded the callback sends it again once Redis is back, and with no
    live owner left it reaches the orphan hook there.
    """
    orphans: list[relaycall.Event] = []
    client = aioredis.from_url(redis_server.url)
    try:
        async with two_workers(redis_server.url, emu) as (a, b):
            b.receiver.on_orphan_event(orphans.append)
            call = await answered_call(a)
            await a.relay.close()
            prefix = b.coordinator.key_prefix
            await _owned_by(client, prefix, call.id, "ghost")
            real = delivered_to(emu, call.id, "calling.call.state")
            assert await post(real.url, real.body) == 200
            assert await client.xlen(f"{prefix}inbox:ghost") == 1
            await client.aclose()
            redis_server.stop()
            redis_server.start()  # empty: the ghost's inbox is gone
            await until(lambda: bool(orphans), timeout=10)
            assert orphans[0].call_id == call.id
    finally:
        await client.aclose()


async def test_a_callback_forwarded_to_a_live_worker_just_before_a_restart_is_sent_again(
    redis_server: RedisServer, emu: Emulator
) -> None:
    """
    A callback forwarded to a live worker that had not read it yet when Redis restarted
    without persistence (its inbox lost): the forwarding worker sends it again, once the
    owner's heartbeat and ownership are back, into that owner's new inbox (at least once).
    """
    client = aioredis.from_url(redis_server.url)
    try:
        async with two_workers(redis_server.url, emu) as (a, b):
            call = await answered_call(a)
            await a.relay.close()
            prefix = b.coordinator.key_prefix
            # "sleepy": a live worker (its heartbeat is there) that reads nothing.
            await _owned_by(client, prefix, call.id, "sleepy")
            real = delivered_to(emu, call.id, "calling.call.state")
            # Not a copy of what B forwarded to A before (A is gone: those are sent again).
            body = {**real.body, "timestamp": real.body["timestamp"] + 0.001}
            assert await post(real.url, body) == 200
            assert await client.xlen(f"{prefix}inbox:sleepy") == 1
            await client.aclose()
            redis_server.stop()
            redis_server.start()  # empty: the unread entry is gone
            client = aioredis.from_url(redis_server.url)
            # Still alive after the restart: it writes its heartbeat and ownership again.
            await _owned_by(client, prefix, call.id, "sleepy")
            await until(lambda: _exists(client, f"{prefix}inbox:sleepy"), timeout=10)
            [(_, entries)] = await client.xread({f"{prefix}inbox:sleepy": "0-0"})
            assert body in [json.loads(fields[b"b"]) for _, fields in entries]
    finally:
        await client.aclose()


def test_a_client_decoding_responses_is_refused() -> None:
    """Callback bodies are bytes: a redis client with decode_responses=True is refused."""
    with pytest.raises(relaycall.UsageError, match="decode_responses"):
        relaycall.RedisCoordinator(aioredis.Redis(decode_responses=True))


async def test_a_call_taken_over_accepts_its_dial_s_callbacks(
    redis_server: RedisServer, emu: Emulator
) -> None:
    """
    A dead worker's call taken over elsewhere (relay.call(id) from the orphan hook) gets
    its later call-state callbacks, which carry the dead worker's dial token: the dial's
    nonce is in Redis.
    """
    async with two_workers(redis_server.url, emu) as (a, b):
        call = await answered_call(a)
        client = aioredis.from_url(redis_server.url)
        try:
            await until(lambda: _exists(client, f"relaycall:nonce:{call.id}"))
        finally:
            await client.aclose()
        await a.relay.close()
        adopted = b.relay.call(call.id)
        await until(lambda: adopted.id in b.relay._router.nonces)
        emu.hangup(call.id)
        assert (await adopted.wait(timeout=5)).state == "ended"
        assert b.receiver.stats.rejected_auth == 0


async def test_a_taken_over_call_whose_dial_nonce_was_lost_refuses_its_dial_s_callbacks(
    redis_server: RedisServer, emu: Emulator
) -> None:
    """
    Redis lost the dial's nonce (a restart): the taken-over call cannot tell which dial
    placed it, and a dial token's MAC does not name the call, so its dial-token
    callbacks are refused (403), not applied nor handed to the orphan hook.
    """
    orphans: list[relaycall.Event] = []
    async with two_workers(redis_server.url, emu) as (a, b):
        b.receiver.on_orphan_event(orphans.append)
        call = await answered_call(a)
        await a.relay.close()
        client = aioredis.from_url(redis_server.url)
        try:
            await client.delete(f"relaycall:nonce:{call.id}")
        finally:
            await client.aclose()
        adopted = b.relay.call(call.id)
        emu.hangup(call.id)
        await until(lambda: b.receiver.stats.rejected_auth >= 1)
        assert orphans == []
        assert adopted.state != "ended"


async def test_a_leaked_dial_url_cannot_reach_the_orphan_hook_for_another_call(
    redis_server: RedisServer, emu: Emulator
) -> None:
    """
    Without a signing key, a dial's status_url re-posted with another call's id: no
    worker holds that call and Redis records no dial for it, so it is refused (503:
    unverifiable, not an orphan) and the orphan hook never sees it; re-posted with the id
    of a call another dial placed, it is refused 403.
    """
    orphans: list[relaycall.Event] = []
    async with two_workers(redis_server.url, emu) as (a, b):
        b.receiver.on_orphan_event(orphans.append)
        call = await answered_call(a)
        real = delivered_to(emu, call.id, "calling.call.state")
        forged = json.loads(json.dumps(real.body))
        forged["params"]["call_id"] = "99999999-aaaa-4bbb-8ccc-000000000000"
        rejected = b.receiver.stats.rejected_auth
        assert await post(real.url, forged) == 503
        other = await a.relay.dial(**DIAL)
        assert await other.wait_for("answered", timeout=5) == "answered"
        await a.relay.close()  # no live owner: the callbacks would be orphans
        forged["params"]["call_id"] = other.id
        assert await post(real.url, forged) == 403
        assert b.receiver.stats.rejected_auth == rejected + 2
        assert orphans == []


async def test_a_swml_fetch_at_another_worker_leaves_the_call_with_its_owner(
    redis_server: RedisServer, emu: Emulator
) -> None:
    """
    The platform's SWML fetch for A's answered call reaches worker B (a dial's url or
    an execute step, through the load balancer): B's handler gets the call and answers
    the fetch, but A keeps the call's ownership, so its playback's callbacks (posted to
    B) still reach A's handle and A's wait finishes.
    """
    seen: list[relaycall.IncomingCall] = []
    async with two_workers(redis_server.url, emu) as (a, b):

        @b.receiver.on_incoming_call
        async def incoming(call: relaycall.IncomingCall) -> None:
            seen.append(call)

        call = await answered_call(a)
        client = aioredis.from_url(redis_server.url)
        try:
            owner_key = f"relaycall:owner:{call.id}"
            await until(lambda: _is(client, owner_key, a.coordinator.worker_id))
            body = fetch_body(call.id, direction="outbound", call_state="answered")
            assert await post(b.receiver.swml_url, body) == 200
            assert [c.id for c in seen] == [call.id]
            pb = await call.play(relaycall.tts("hello"))
            assert (await pb.wait(timeout=8)).state == "finished"
            assert await _is(client, owner_key, a.coordinator.worker_id)
        finally:
            await client.aclose()


async def _is(client: Any, key: str, value: str) -> bool:
    got = await client.get(key)
    return got is not None and got.decode() == value
