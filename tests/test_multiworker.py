"""
Several workers, for real: a ``redis-server`` and HAProxy started on loopback ports
(tests/_services.py, the ``redis_server`` and ``haproxy_balancer`` fixtures), the
example app examples/multiworker_app.py as 3 uvicorn processes behind the balancer,
and the emulator posting its callbacks to the balancer.

When redis-server or haproxy is missing the tests that need them skip, saying how to
install it; with ``RELAYCALL_REQUIRE_SERVICES=1`` (``.ci/run``) they fail instead.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import secrets
import signal
import time
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import pytest
import redis.asyncio as aioredis
from aiohttp import web

from examples._local_services import accepts
from relaycall.testing import Emulator, Scenario
from tests import _services
from tests._programs import PYTHON, REPO, SIGNING_KEY, Program, free_port, program_env

TO = "+15557650000"


async def until(predicate: Callable[[], Awaitable[bool] | bool], timeout: float, what: str) -> None:
    """Wait until *predicate* holds, polling: what it watches is other processes."""
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if not isinstance(result, bool):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout} s: {what}")
        await asyncio.sleep(0.05)


# --- the rule for a missing binary ---------------------------------------------------------------


@pytest.fixture
def no_binaries(monkeypatch, tmp_path):
    """A PATH and sbin list where nothing is found."""
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(_services, "_SBIN", ())


def test_missing_binary_skips_saying_how_to_install(no_binaries, monkeypatch):
    """Without RELAYCALL_REQUIRE_SERVICES a missing redis-server or haproxy skips the test,
    and the reason names the package to install."""
    monkeypatch.delenv("RELAYCALL_REQUIRE_SERVICES", raising=False)
    with pytest.raises(pytest.skip.Exception) as skipped:
        _services.need_binary("redis-server")
    assert str(skipped.value) == (
        "redis-server not found: apt-get install redis-server (Debian) / brew install redis"
    )
    with pytest.raises(pytest.skip.Exception) as skipped:
        _services.need_binary("haproxy")
    assert "apt-get install haproxy" in str(skipped.value)


def test_missing_binary_fails_when_services_are_required(no_binaries, monkeypatch):
    """With RELAYCALL_REQUIRE_SERVICES=1 (as .ci/run sets it) a missing binary fails the
    test instead of skipping it: CI cannot pass by skipping the real-component tests."""
    monkeypatch.setenv("RELAYCALL_REQUIRE_SERVICES", "1")
    with pytest.raises(pytest.fail.Exception) as failed:
        _services.need_binary("redis-server")
    assert "apt-get install redis-server" in str(failed.value)
    assert "RELAYCALL_REQUIRE_SERVICES=1" in str(failed.value)


def test_binary_found_in_sbin_when_path_lacks_it(monkeypatch, tmp_path):
    """A daemon in an sbin directory (haproxy is /usr/sbin/haproxy on Debian) is found
    even when PATH, as for a non-root user, does not list it."""
    sbin = tmp_path / "sbin"
    sbin.mkdir()
    binary = sbin / "haproxy"
    binary.write_text("#!/bin/sh\n")
    binary.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    monkeypatch.setattr(_services, "_SBIN", (str(sbin),))
    assert _services.need_binary("haproxy") == str(binary)


# --- the fixtures themselves ---------------------------------------------------------------------


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


async def test_redis_server_fixture_is_real_and_restarts_on_its_port(redis_server):
    """redis_server is a redis-server on its own loopback port (not 6379), without
    persistence: a restart keeps the port and the process changes, and the keys are gone."""
    assert redis_server.port != 6379
    async with aioredis.Redis.from_url(redis_server.url) as client:
        assert await client.ping()
        await client.set("k", "v")
        first = redis_server.pid
        assert first is not None
    await redis_server.arestart()
    assert redis_server.pid != first
    assert not _alive(first)
    async with aioredis.Redis.from_url(redis_server.url) as client:
        assert await client.get("k") is None
        info = await client.info("persistence")
        assert info["aof_enabled"] == 0
        assert await client.config_get("save") == {"save": ""}


async def test_redis_server_aof_keeps_keys_and_streams_across_a_restart(redis_server_aof):
    """redis_server_aof writes every change to its append-only file before answering: a
    restart (a new process, the same port) finds the keys and stream entries again."""
    async with aioredis.Redis.from_url(redis_server_aof.url) as client:
        await client.set("k", "v")
        await client.xadd("s", {"f": "1"})
        first = redis_server_aof.pid
    await redis_server_aof.arestart()
    assert redis_server_aof.pid != first
    async with aioredis.Redis.from_url(redis_server_aof.url) as client:
        assert await client.get("k") == b"v"
        assert await client.xlen("s") == 1


async def _named_server(name: str, port: int) -> web.AppRunner:
    async def answer(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(text=name)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", answer)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner


async def test_haproxy_balancer_round_robins_and_skips_a_dead_backend(haproxy_balancer):
    """haproxy_balancer(ports) spreads requests round-robin over the backends; once one
    is gone, every request (a POST with a body, as a callback is) is answered by the other,
    none fails: a refused connection is re-sent to the live backend."""
    ports = [free_port(), free_port()]
    runners = [await _named_server(f"w{i}", port) for i, port in enumerate(ports)]
    try:
        balancer = haproxy_balancer(ports)
        async with aiohttp.ClientSession() as session:

            async def post() -> tuple[int, str]:
                async with session.post(balancer.url + "/cb", data=b'{"a":1}') as resp:
                    return resp.status, await resp.text()

            answers = [await post() for _ in range(6)]
            assert {status for status, _ in answers} == {200}
            assert sorted(name for _, name in answers) == ["w0"] * 3 + ["w1"] * 3
            await runners[1].cleanup()
            answers = [await post() for _ in range(10)]
            assert answers == [(200, "w0")] * 10
    finally:
        for runner in runners:
            await runner.cleanup()


# --- three workers behind HAProxy, one killed, Redis restarted ----------------------------------


def digest(payload: Any) -> str:
    """What examples/multiworker_app.py prints for an event with this payload."""
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def lines(output: str, kind: str) -> list[dict[str, Any]]:
    prefix = kind + " "
    return [
        json.loads(line[len(prefix) :]) for line in output.splitlines() if line.startswith(prefix)
    ]


class Worker:
    """One uvicorn process of the example app."""

    def __init__(self, program: Program, port: int) -> None:
        self.program = program
        self.port = port
        self.url = f"http://127.0.0.1:{port}"

    async def get(self, session: aiohttp.ClientSession, path: str) -> Any:
        async with session.get(self.url + path) as resp:
            assert resp.status == 200, await resp.text()
            return await resp.json()

    async def dial(self, session: aiohttp.ClientSession, count: int) -> list[str]:
        body = {"to": TO, "count": count}
        async with session.post(self.url + "/calls", json=body) as resp:
            assert resp.status == 202, await resp.text()
            ids: list[str] = (await resp.json())["call_ids"]
            return ids


async def start_worker(port: int, env: dict[str, str]) -> Worker:
    argv = [PYTHON, "-m", "uvicorn", "examples.multiworker_app:app", "--host", "127.0.0.1"]
    program = Program([*argv, "--port", str(port)], env=env, cwd=REPO)
    await program.start()
    try:
        await program.wait_for_output(r"Uvicorn running on", timeout=30)
    except BaseException:
        await program.kill()
        raise
    return Worker(program, port)


@pytest.mark.timeout(180)
@pytest.mark.parametrize("persistence", ["aof", "none"])
async def test_three_workers_lose_no_callback_through_a_kill_and_a_redis_restart(
    persistence, request, haproxy_balancer
):
    """
    The example app as 3 uvicorn workers behind HAProxy, one Redis, the emulator posting
    every callback to the balancer (so most reach a worker that does not hold the call).
    Each worker dials calls; mid-run one worker is killed (-9), Redis is restarted, and
    the killed worker is started again (a new identity) and dials calls too.

    Pinned: 0 lost callbacks. Every callback the emulator's journal shows as delivered
    (answered 2xx) reached the handle of the worker holding its call, or the orphan hook
    of a surviving worker (the killed worker's calls, once their ownership expired);
    the survivors keep working, and their receivers count what was forwarded.
    """
    # Redis with its append-only file (a callback forwarded to the killed worker's inbox just
    # before the restart is still there after it, to be claimed as an orphan), and without
    # persistence (what Redis held is gone: the workers send their recent forwards again).
    fixture = "redis_server_aof" if persistence == "aof" else "redis_server"
    redis_server = request.getfixturevalue(fixture)
    ports = [free_port() for _ in range(3)]
    balancer = haproxy_balancer(ports)
    scenario = Scenario(ring_seconds=1, hangup_after=12)
    async with (
        Emulator(time_scale=4, signing_key=SIGNING_KEY, default_scenario=scenario) as emu,
        aiohttp.ClientSession() as session,
    ):
        env = program_env(
            emu,
            PUBLIC_URL=balancer.url,
            REDIS_URL=redis_server.url,
            RELAYCALL_SECRET=secrets.token_hex(32),
            OWNERSHIP_TTL="2",
            EVENT_LOG="1",
            CALLS_PER_SECOND="100",
        )
        workers = list(await asyncio.gather(*(start_worker(port, env) for port in ports)))
        try:
            # Every worker places calls; their callbacks come back through the balancer.
            per_worker = 4
            dialled = list(await asyncio.gather(*(w.dial(session, per_worker) for w in workers)))
            call_ids = [c for ids in dialled for c in ids]
            assert len(set(call_ids)) == 3 * per_worker

            def answered() -> bool:
                return all(emu.call(c).answered_at is not None for c in call_ids)

            await until(answered, 30, "every call answered")

            # Mid-run: one worker dies without a word, its port now refuses connections.
            victim = workers[1]
            assert victim.program._proc is not None
            os.kill(victim.program._proc.pid, signal.SIGKILL)
            await victim.program.wait(10)
            assert not accepts(victim.port)  # its port refuses connections
            # Redis goes away for half a second and comes back (empty, or from its AOF).
            await redis_server.arestart(down_for=0.5)
            # The killed worker is started again on its port (HAProxy's checks take it back),
            # under a new identity, and places calls of its own.
            reborn = await start_worker(victim.port, env)
            workers.append(reborn)
            dialled.append(await reborn.dial(session, 2))
            call_ids += dialled[-1]

            def ended() -> bool:
                return all(emu.call(c).ended_at is not None for c in call_ids)

            await until(ended, 60, "every call ended")
            await emu.idle()
            survivors = [w for w in workers if w is not victim]
            identities = [lines(w.program.output, "WORKER")[0]["worker_id"] for w in workers]
            assert len(set(identities)) == 4, identities

            async def settled() -> bool:
                stats = [await w.get(session, "/stats") for w in survivors]
                return all(s["running"] == 0 for s in stats)

            await until(settled, 30, "the surviving workers idle")
            stats = [await w.get(session, "/stats") for w in survivors]
        finally:
            for w in workers:
                if w.program.returncode is None:
                    await w.program.stop()
        outputs = [w.program.output for w in workers]

    applied = {e["digest"] for out in outputs for e in lines(out, "EVENT") if e["owned"]}
    orphaned = {e["digest"] for out in outputs for e in lines(out, "ORPHAN")}
    delivered = [c for c in emu.callbacks if c.outcome == "delivered"]
    lost = [c for c in delivered if digest(c.body) not in applied | orphaned]
    not_delivered = [c for c in emu.callbacks if c.outcome != "delivered"]
    summary = {
        "callbacks": len(emu.callbacks),
        "delivered": len(delivered),
        "not_delivered": [(c.event_type, c.status, c.error) for c in not_delivered],
        "applied": len(applied),
        "orphaned": len(orphaned),
        "stats": stats,
    }
    print(json.dumps(summary, indent=1, default=str))
    owner = {c: i for i, ids in enumerate(dialled) for c in ids}
    described = [
        (c.call_id, c.event_type, c.body["params"].get("call_id"), c.body["params"].get("state")
         or c.body["params"].get("call_state"), f"dialled by worker {owner.get(c.call_id or '')}")
        for c in lost
    ]  # fmt: skip
    assert not lost, f"{len(lost)} lost callbacks (worker 1 was killed): {described}\n{summary}"
    # Callbacks reached the balancer for every call.
    assert {c.call_id for c in delivered} == set(call_ids)
    # The killed worker's calls went on without it: their later callbacks were orphans.
    victim_calls = set(dialled[1])
    assert {e["call_id"] for out in outputs for e in lines(out, "ORPHAN")} & victim_calls
    for out in outputs[0], outputs[2], outputs[3]:
        assert "Traceback" not in out, out
