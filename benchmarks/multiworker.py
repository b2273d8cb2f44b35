"""
``python -m benchmarks.multiworker``: several workers sharing one Redis, for real.

A real ``redis-server`` and HAProxy on loopback ports (tests/_services.py), the example
app examples/multiworker_app.py as 3 uvicorn processes behind HAProxy, and the emulator
in this process. Worker 0 dials every call; the other workers hold none, so a callback
the balancer gives them is forwarded to worker 0 through Redis.

Measured:

- callbacks/s through the balancer and 3 workers (2 of 3 callbacks forwarded), against
  the same callbacks posted to worker 0 directly (each delivered locally), counted until
  worker 0 has applied the last one;
- the latency of one callback, posted to worker 1 (forwarded) or to worker 0 (local),
  from the POST to worker 0 printing it applied: p50 and p99;
- Redis keys, Redis memory and worker 0's RSS per live call; the keys left once every
  call ended and the ownership TTL passed.

Callbacks are authentic copies of each call's ``answered`` callback (its status_url
token, signed with the emulator's key) with a fresh timestamp, so each has a digest of
its own; the app prints every event it applies (EVENT_LOG=1, on both sides).

Needs redis-server and haproxy (``apt-get install redis-server haproxy``) and
``pip install -e '.[bench]'``.
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import hashlib
import json
import secrets
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import redis.asyncio as aioredis

from relaycall.emulator._outbox import sign
from relaycall.testing import Emulator, Scenario
from tests._programs import PYTHON, REPO, SIGNING_KEY, Program, free_port, program_env
from tests._services import HAProxy, RedisServer, find_binary

TO = "+15557650000"


def digest(payload: Any) -> str:
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:24]


class Applied:
    """Digest -> when the worker printed the event applied (the first time), read as it comes."""

    def __init__(self, program: Program) -> None:
        self.program = program
        self.seen: dict[str, float] = {}
        self._offset = 0

    def update(self) -> dict[str, float]:
        output = self.program.output
        end = output.rfind("\n") + 1
        for line in output[self._offset : end].splitlines():
            if line.startswith("EVENT "):
                event = json.loads(line[6:])
                self.seen.setdefault(event["digest"], event["at"])
        self._offset = end
        return self.seen


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


class Worker:
    def __init__(self, program: Program, port: int) -> None:
        self.program = program
        self.port = port
        self.url = f"http://127.0.0.1:{port}"

    @property
    def pid(self) -> int:
        assert self.program._proc is not None
        return self.program._proc.pid

    async def stats(self, session: aiohttp.ClientSession) -> dict[str, Any]:
        async with session.get(self.url + "/stats") as resp:
            result: dict[str, Any] = await resp.json()
            return result


async def start_worker(port: int, env: dict[str, str]) -> Worker:
    argv = [PYTHON, "-m", "uvicorn", "examples.multiworker_app:app", "--host", "127.0.0.1"]
    argv += ["--port", str(port), "--no-access-log", "--log-level", "warning"]
    program = await Program(argv, env=env, cwd=REPO).start()
    await program.wait_for_output(r"WORKER ", timeout=30)
    return Worker(program, port)


async def until(predicate: Any, timeout: float, what: str) -> None:
    """Poll *predicate* (other processes: nothing to await) until true or *timeout*."""
    deadline = time.monotonic() + timeout
    while not await predicate():
        if time.monotonic() > deadline:
            raise RuntimeError(f"not within {timeout} s: {what}")
        await asyncio.sleep(0.05)


class Poster:
    """Authentic copies of the calls' ``answered`` callbacks, each with its own timestamp."""

    def __init__(self, emu: Emulator, call_ids: list[str]) -> None:
        self.templates: list[tuple[str, dict[str, Any]]] = []
        answered = {
            c.call_id: c.body
            for c in emu.callbacks
            if c.event_type == "calling.call.state" and c.body["params"]["call_state"] == "answered"
        }
        for call_id in call_ids:
            if emu.call(call_id).ended_at is not None:
                continue  # its flow is over: its callbacks go to the orphan hook
            url = emu.call(call_id).status_url
            assert url is not None
            self.templates.append((url, answered[call_id]))
        self.n = 0

    def next(self) -> tuple[str, bytes, dict[str, str], str]:
        """(the path and query, the body, the headers, the payload's digest)."""
        url, template = self.templates[self.n % len(self.templates)]
        self.n += 1
        payload = copy.deepcopy(template)
        payload["timestamp"] = time.time() + self.n * 1e-6
        body = json.dumps(payload).encode()
        headers = {"Content-Type": "application/json", **sign(SIGNING_KEY, url, body)}
        parts = urlsplit(url)
        return f"{parts.path}?{parts.query}", body, headers, digest(payload)


async def post_many(
    session: aiohttp.ClientSession, base: str, poster: Poster, count: int, concurrency: int
) -> tuple[float, list[str]]:
    """Post *count* callbacks to *base*, *concurrency* at a time; (seconds, digests)."""
    items = [poster.next() for _ in range(count)]
    queue = iter(items)
    statuses: list[int] = []

    async def worker() -> None:
        for path, body, headers, _ in queue:
            async with session.post(base + path, data=body, headers=headers) as resp:
                await resp.read()
                statuses.append(resp.status)

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - start
    bad = [s for s in statuses if s != 200]
    if bad:
        raise RuntimeError(f"{len(bad)} callbacks refused: {sorted(set(bad))}")
    return elapsed, [d for *_, d in items]


async def keys(redis: Any) -> dict[str, int]:
    """Keys by kind (the part of the name after the prefix, ids cut off)."""
    kinds: dict[str, int] = {}
    async for key in redis.scan_iter(count=1000):
        name = key.decode()
        parts = name.split(":")
        kind = ":".join(parts[:2]) if len(parts) > 1 else name
        kinds[kind] = kinds.get(kind, 0) + 1
    return kinds


async def run(args: argparse.Namespace) -> dict[str, Any]:
    redis_bin, haproxy_bin = find_binary("redis-server"), find_binary("haproxy")
    if redis_bin is None or haproxy_bin is None:
        sys.exit("needs redis-server and haproxy: apt-get install redis-server haproxy")
    tmp = Path(tempfile.mkdtemp(prefix="relaycall-bench-"))
    redis_server = RedisServer(redis_bin, tmp / "redis").start()
    ports = [free_port() for _ in range(3)]
    balancer = HAProxy(haproxy_bin, tmp / "haproxy", ports).start()
    results: dict[str, Any] = {"calls": args.calls, "events": args.events}
    workers: list[Worker] = []
    client = aioredis.Redis.from_url(redis_server.url)
    try:
        scenario = Scenario(ring_seconds=0.1)
        async with (
            Emulator(time_scale=50, signing_key=SIGNING_KEY, default_scenario=scenario) as emu,
            aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=256, keepalive_timeout=1.0)
            ) as session,
        ):
            env = program_env(
                emu,
                PUBLIC_URL=balancer.url,
                REDIS_URL=redis_server.url,
                RELAYCALL_SECRET=secrets.token_hex(32),
                OWNERSHIP_TTL=str(args.ttl),
                EVENT_LOG="1",
                CALLS_PER_SECOND="10000",
                HOLD="600",  # every call stays up until the far end hangs up
            )
            workers = list(await asyncio.gather(*(start_worker(p, env) for p in ports)))
            owner = workers[0]

            # --- memory and keys per live call ------------------------------------------
            keys_before = await keys(client)
            memory_before = (await client.info("memory"))["used_memory"]
            rss_before = rss_kib(owner.pid)
            async with session.post(
                owner.url + "/calls", json={"to": TO, "count": args.calls}
            ) as resp:
                call_ids: list[str] = (await resp.json())["call_ids"]

            async def all_answered() -> bool:
                return all(emu.call(c).answered_at is not None for c in call_ids)

            await until(all_answered, 120, "every call answered")
            await emu.idle()

            keys_live = await keys(client)
            memory_live = (await client.info("memory"))["used_memory"]
            rss_live = rss_kib(owner.pid)
            added = sum(keys_live.values()) - sum(keys_before.values())
            results["memory"] = {
                "keys_before": keys_before,
                "keys_live": keys_live,
                "redis_keys_per_call": added / args.calls,
                "redis_bytes_per_call": (memory_live - memory_before) / args.calls,
                "worker_rss_bytes_per_call": (rss_live - rss_before) * 1024 / args.calls,
            }

            poster = Poster(emu, call_ids)
            results["calls_posted_to"] = len(poster.templates)
            tracker = Applied(owner.program)

            async def applied(digests: list[str]) -> float:
                want = set(digests)

                async def done() -> bool:
                    return want <= tracker.update().keys()

                try:
                    await until(done, args.wait, "every callback applied")
                except RuntimeError:
                    missing = want - tracker.seen.keys()
                    stats = [await w.stats(session) for w in workers]
                    print(f"{len(missing)} of {len(want)} not applied; {stats}", file=sys.stderr)
                    raise
                seen = tracker.seen
                return max(seen[d] for d in want)

            # --- throughput ---------------------------------------------------------------
            rates: dict[str, list[float]] = {"balancer_3_workers": [], "owner_direct": []}
            for _ in range(args.rounds):
                for side, base in (
                    ("balancer_3_workers", balancer.url),
                    ("owner_direct", owner.url),
                ):
                    wall0 = time.time()
                    _, digests = await post_many(
                        session, base, poster, args.events, args.concurrency
                    )
                    last = await applied(digests)
                    rates[side].append(args.events / (last - wall0))
            results["throughput"] = {k: statistics.median(v) for k, v in rates.items()}
            results["throughput_rounds"] = rates

            # --- latency, one callback at a time ------------------------------------------
            latency: dict[str, list[float]] = {"forwarded": [], "local": []}
            for i in range(2 * args.latency_samples):
                side, target = ("forwarded", workers[1]) if i % 2 else ("local", owner)
                path, body, headers, d = poster.next()
                sent = time.time()
                async with session.post(target.url + path, data=body, headers=headers) as resp:
                    assert resp.status == 200, resp.status
                try:
                    latency[side].append(await applied([d]) - sent)
                except RuntimeError:
                    print(side, i, [await w.stats(session) for w in workers], file=sys.stderr)
                    print(owner.program.output[-3000:], file=sys.stderr)
                    raise
            results["latency_ms"] = {
                side: {"p50": 1000 * pct(v, 0.5), "p99": 1000 * pct(v, 0.99)}
                for side, v in latency.items()
            }

            # --- every call ends: what is left in Redis -----------------------------------
            for c in call_ids:
                if emu.call(c).ended_at is None:
                    emu.hangup(c)

            async def flows_done() -> bool:
                running: int = (await owner.stats(session))["running"]
                return running == 0

            await until(flows_done, 60, "every flow over")
            await emu.idle()
            results["keys_at_end"] = await keys(client)
            await asyncio.sleep(args.ttl + 1)  # the ownership TTL runs out: nothing to await
            results["keys_after_ttl"] = await keys(client)
            results["stats"] = [await w.stats(session) for w in workers]
            for w in workers:
                await w.program.stop()
            workers = []
            results["keys_after_workers_stopped"] = await keys(client)
    finally:
        for w in workers:
            await w.program.kill()
        await client.aclose()
        balancer.stop()
        redis_server.stop()
    return results


def report(r: dict[str, Any]) -> str:
    t, lat, mem = r["throughput"], r["latency_ms"], r["memory"]
    lines = [
        f"calls {r['calls']} ({r['calls_posted_to']} live), callbacks per round {r['events']}",
        f"callbacks/s, HAProxy + 3 workers (2/3 forwarded): {t['balancer_3_workers']:,.0f}",
        f"callbacks/s, owner worker directly (all local):   {t['owner_direct']:,.0f}",
        f"latency forwarded: p50 {lat['forwarded']['p50']:.2f} ms, "
        f"p99 {lat['forwarded']['p99']:.2f} ms",
        f"latency local:     p50 {lat['local']['p50']:.2f} ms, p99 {lat['local']['p99']:.2f} ms",
        f"Redis keys per live call: {mem['redis_keys_per_call']:.2f} "
        f"(live: {mem['keys_live']}, before: {mem['keys_before']})",
        f"Redis memory per live call: {mem['redis_bytes_per_call']:,.0f} bytes",
        f"worker RSS per live call: {mem['worker_rss_bytes_per_call']:,.0f} bytes",
        f"keys when every call ended: {r['keys_at_end']}",
        f"keys after the ownership TTL: {r['keys_after_ttl']}",
        f"keys after the workers stopped: {r['keys_after_workers_stopped']}",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.multiworker")
    parser.add_argument("--calls", type=int, default=300, help="live calls (default 300)")
    parser.add_argument("--events", type=int, default=3000, help="callbacks per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--latency-samples", type=int, default=300)
    parser.add_argument("--ttl", type=float, default=5.0, help="ownership TTL, seconds")
    parser.add_argument("--wait", type=float, default=60, help="seconds to wait for an event")
    parser.add_argument("--json", type=Path, help="write every figure here")
    args = parser.parse_args(argv)
    results = asyncio.run(run(args))
    print(report(results))
    if args.json:
        args.json.write_text(json.dumps(results, indent=1, default=str))


if __name__ == "__main__":
    main()
