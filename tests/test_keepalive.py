"""
Stale keep-alive connections: a command that must not be sent twice is never
written on a pooled connection the server may be closing.

A real aiohttp server on 127.0.0.1 with a short keep-alive timeout closes
every connection left idle that long. A ``dial`` written on one just as it
closes gets no reply and, unanswered, is AmbiguousOutcomeError although the
server never read it. The server here counts the dials it received and
notes which client connection (port) each request came on.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import attrs
import pytest
from aiohttp import web

import relaycall
from relaycall import Limits, commands

from .conftest import PROJECT, TOKEN, call_leg

DIAL: dict[str, Any] = {"from_": "+15551230000", "to": "+15557650000", "url": "https://x.test/s"}


@attrs.define
class KeepAliveServer:
    """Answers every command with a call leg; closes connections idle for *keepalive* s."""

    keepalive: float
    dials: int = 0
    #: (command, client port) per request, in arrival order.
    seen: list[tuple[str, int]] = attrs.Factory(list)
    runner: web.AppRunner | None = None
    base_url: str = ""

    async def _handle(self, request: web.Request) -> web.Response:
        body = json.loads(await request.read())
        assert request.transport is not None
        self.seen.append((body["command"], request.transport.get_extra_info("peername")[1]))
        if body["command"] == "dial":
            self.dials += 1
        return web.json_response(call_leg(body.get("id") or str(uuid.uuid4())))

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/api/calling/calls", self._handle)
        self.runner = web.AppRunner(app, keepalive_timeout=self.keepalive, access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.base_url = f"http://127.0.0.1:{self.runner.addresses[0][1]}"

    def ports(self, command: str) -> list[int]:
        return [port for name, port in self.seen if name == command]


@pytest.fixture
async def make_server() -> AsyncIterator[Any]:
    servers: list[KeepAliveServer] = []

    async def make(keepalive: float) -> KeepAliveServer:
        server = KeepAliveServer(keepalive)
        await server.start()
        servers.append(server)
        return server

    yield make
    for server in servers:
        assert server.runner is not None
        await server.runner.cleanup()


async def dial_after_gaps(
    relay: relaycall.AsyncRelay, gap: float, workers: int, rounds: int
) -> tuple[int, int]:
    """*workers* loops of dial-then-idle-*gap*; returns (placed, ambiguous)."""
    placed = ambiguous = 0

    async def worker() -> None:
        nonlocal placed, ambiguous
        for _ in range(rounds):
            try:
                await relay.dial(**DIAL)
                placed += 1
            except relaycall.AmbiguousOutcomeError:
                ambiguous += 1
            # The idle gap is what is under test, not a wait for an event.
            await asyncio.sleep(gap)

    await asyncio.gather(*(worker() for _ in range(workers)))
    return placed, ambiguous


@pytest.mark.parametrize("keepalive", [0.2, 0.3])
async def test_dials_after_idle_gaps_equal_to_the_keepalive_are_never_ambiguous(
    make_server: Any, keepalive: float
) -> None:
    """
    150 dials, each after an idle gap equal to the server's keep-alive timeout:
    none is ambiguous, and the server received each exactly once. (With a
    dial pool kept as long as the other, about one dial in six to one in two
    raised AmbiguousOutcomeError here.)
    """
    server = await make_server(keepalive)
    limits = Limits(unsafe_keepalive=0.1)
    async with relaycall.AsyncRelay(PROJECT, TOKEN, base_url=server.base_url, limits=limits) as r:
        placed, ambiguous = await dial_after_gaps(r, keepalive, workers=30, rounds=5)
    assert (placed, ambiguous) == (150, 0)
    assert server.dials == 150


async def test_only_unsafe_commands_skip_connections_idle_past_the_bound(
    make_server: Any,
) -> None:
    """
    A follow-up right after a dial rides the dial's connection (fresh, so one a
    dial could take too). After an idle spell longer than ``unsafe_keepalive``
    (but shorter than the server's keep-alive) follow-ups go to the long-lived
    pool and reuse its connection after another spell; a dial then opens a
    fresh connection, and a dial right after it reuses that one.
    """
    server = await make_server(5.0)
    # Bounds wide enough that a loaded machine's pauses between back-to-back
    # commands stay well inside the 0.5 s.
    limits = Limits(unsafe_keepalive=0.5)
    stop = commands.PlayStop(call_id=str(uuid.uuid4()), control_id="p1")
    async with relaycall.AsyncRelay(PROJECT, TOKEN, base_url=server.base_url, limits=limits) as r:
        await r.dial(**DIAL)
        await r.send(stop)
        await asyncio.sleep(0.8)  # the idle spell under test
        await r.send(stop)
        await asyncio.sleep(0.8)
        await r.send(stop)
        await r.dial(**DIAL)
        await r.dial(**DIAL)
    first, second, third = server.ports("dial")
    assert second != first
    assert third == second
    after_dial, *kept = server.ports("calling.play.stop")
    assert after_dial == first
    assert kept[0] == kept[1]
    assert kept[0] not in (first, second)


async def test_concurrent_flows_share_one_connection_each_across_both_pools(
    make_server: Any,
) -> None:
    """
    20 flows at once, each a dial then three follow-ups: each follow-up takes a
    connection a dial just released, so the server sees 20 connections, not 40
    (one per flow in each pool, as before).
    """
    server = await make_server(5.0)
    stop = commands.PlayStop

    async def flow(r: relaycall.AsyncRelay) -> None:
        call = await r.dial(**DIAL)
        for _ in range(3):
            await r.send(stop(call_id=call.id, control_id="p1"))

    async with relaycall.AsyncRelay(PROJECT, TOKEN, base_url=server.base_url) as r:
        await asyncio.gather(*(flow(r) for _ in range(20)))
    ports = {port for _, port in server.seen}
    assert len(server.seen) == 80
    assert len(ports) == 20
    assert ports == set(server.ports("dial"))


async def test_follow_ups_take_a_dial_pool_connection_only_when_one_is_idle(
    make_server: Any,
) -> None:
    """
    Follow-ups ride the dial pool only on a connection a dial released less than
    ``unsafe_keepalive`` ago: a burst after an idle spell reuses the long-lived
    pool's connections and opens none, and a burst right after a dial takes the
    one connection that dial released and reuses the long-lived pool for the
    rest. 12 connections in all: 10 for the first burst and one per dial.
    """
    server = await make_server(5.0)
    call_id = str(uuid.uuid4())
    stops = [commands.PlayStop(call_id=call_id, control_id=f"p{i}") for i in range(10)]
    async with relaycall.AsyncRelay(PROJECT, TOKEN, base_url=server.base_url) as r:
        await asyncio.gather(*(r.send(stop) for stop in stops))
        await r.dial(**DIAL)
        await asyncio.sleep(0.8)  # past unsafe_keepalive: the dial's connection is stale
        await asyncio.gather(*(r.send(stop) for stop in stops))
        await r.dial(**DIAL)
        await asyncio.gather(*(r.send(stop) for stop in stops))
    first_dial, second_dial = server.ports("dial")
    stop_ports = server.ports("calling.play.stop")
    first, after_spell, after_dial = stop_ports[:10], stop_ports[10:20], stop_ports[20:]
    assert len(set(first)) == 10
    assert set(after_spell) <= set(first)
    assert second_dial != first_dial
    assert after_dial.count(second_dial) == 1
    assert set(after_dial) - {second_dial} <= set(first)
    assert len({port for _, port in server.seen}) == 12


async def test_a_dial_held_by_a_limiter_when_the_relay_closes_is_not_sent(
    make_server: Any,
) -> None:
    """
    A session's first dial, waiting on the per-second limit when ``close()`` runs,
    raises ClientClosedError once the limiter lets it go: it is never sent, and no
    session is opened for it after the close (none would be closed).
    """
    server = await make_server(5.0)
    limits = Limits(commands_per_second=1)
    relay = relaycall.AsyncRelay(PROJECT, TOKEN, base_url=server.base_url, limits=limits)
    async with relay:
        await relay.send(commands.PlayStop(call_id=str(uuid.uuid4()), control_id="p1"))
        dial = asyncio.create_task(relay.dial(**DIAL))
        await asyncio.sleep(0)  # one loop turn: the dial runs up to the limiter's wait
        assert not dial.done()
    with pytest.raises(relaycall.ClientClosedError):
        await asyncio.wait_for(dial, 5)
    assert server.dials == 0
    assert relay._transport.unsafe_session is None


async def test_unsafe_keepalive_zero_opens_a_connection_per_dial(make_server: Any) -> None:
    """``unsafe_keepalive=0``: every dial on a new connection, even back to back."""
    server = await make_server(5.0)
    limits = Limits(unsafe_keepalive=0)
    async with relaycall.AsyncRelay(PROJECT, TOKEN, base_url=server.base_url, limits=limits) as r:
        for _ in range(3):
            await r.dial(**DIAL)
    assert len(set(server.ports("dial"))) == 3


async def test_a_session_given_by_the_caller_carries_every_command(make_server: Any) -> None:
    """With ``session=``, dials go through the caller's session too, which stays open."""
    server = await make_server(5.0)
    started: list[str] = []

    async def on_start(_: Any, __: Any, params: aiohttp.TraceRequestStartParams) -> None:
        started.append(str(params.url))

    trace = aiohttp.TraceConfig()
    trace.on_request_start.append(on_start)
    async with aiohttp.ClientSession(trace_configs=[trace]) as session:
        relay = relaycall.AsyncRelay(PROJECT, TOKEN, base_url=server.base_url, session=session)
        async with relay:
            await relay.dial(**DIAL)
            await relay.send(commands.PlayStop(call_id=str(uuid.uuid4()), control_id="p1"))
        assert not session.closed
    assert len(started) == 2


@pytest.mark.parametrize("bad", [-1, "0.5", True])
def test_unsafe_keepalive_must_be_a_duration(bad: Any) -> None:
    """A negative, non-numeric or boolean bound is refused when Limits is built."""
    with pytest.raises(relaycall.UsageError, match=r"unsafe_keepalive|duration"):
        Limits(unsafe_keepalive=bad)
