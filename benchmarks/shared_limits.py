"""
Shared limits over several workers: ``python -m benchmarks.shared_limits``.

A ``redis-server`` (started here on a free loopback port, in a temporary
directory, stopped by its pid) and a counting HTTP server on 127.0.0.1 (this
process) stand in for the coordinator's Redis and the platform. *workers*
worker processes (default 4), each an AsyncRelay with a RedisCoordinator of its
own, push as hard as they can for *seconds*: 32 loops of commands and one loop
of dials each. Two sides, rotated every round:

- ``shared``: ``Limits(commands_per_second=R, calls_per_second=C, burst=B, shared=True)``:
  one budget for all workers, in Redis;
- ``per worker``: the same limits with ``shared=False``: each worker paces
  itself alone (what N workers did before), so they send about N times the limit.

The server counts what arrives between the start signal and *seconds* later:
aggregate commands/s (dials included, as the platform counts POSTs) and
calls/s (dials), against the configured limit; the bound is
``limit + burst / seconds``. Medians over *rounds* with (min-max).

Needs redis-py (``pip install 'relaycall[redis]'``) and ``redis-server``
(``apt-get install redis-server``). About ``rounds * 2 * (seconds + 2)`` s.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from typing import Any

from aiohttp import web

import relaycall
from benchmarks._server import PROJECT, TOKEN
from benchmarks._util import table

HOST = "127.0.0.1"
PATH = "/api/calling/calls"
LOOPS = 32


def _free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        port: int = s.getsockname()[1]
    return port


@contextlib.contextmanager
def redis_server() -> Iterator[str]:
    """A throwaway redis-server on loopback; yields its URL, stops it by pid."""
    binary = shutil.which("redis-server") or "/usr/bin/redis-server"
    if not os.path.exists(binary):
        sys.exit("redis-server not found: apt-get install redis-server (or brew install redis)")
    port = _free_port()
    with tempfile.TemporaryDirectory() as tmp:
        argv = [binary, "--port", str(port), "--bind", HOST, "--save", "", "--appendonly", "no"]
        proc = subprocess.Popen(
            [*argv, "--dir", tmp], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        try:
            deadline = time.monotonic() + 10
            while True:
                with contextlib.suppress(OSError), socket.create_connection((HOST, port), 0.2):
                    break
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError("redis-server did not start")
                time.sleep(0.05)
            yield f"redis://{HOST}:{port}/0"
        finally:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _worker(
    url: str, redis_url: str, limits: dict[str, Any], barrier: Any, seconds: float, out: Any
) -> None:
    """One worker process: push commands and dials until *seconds* after the barrier."""

    async def main() -> dict[str, Any]:
        coordinator = relaycall.RedisCoordinator(redis_url)
        relay = relaycall.AsyncRelay(
            PROJECT,
            TOKEN,
            base_url=url,
            limits=relaycall.Limits(**limits),
            coordinator=coordinator,
            events=relaycall.EventReceiver(),
            retry=None,
        )
        async with relay:
            await asyncio.to_thread(barrier.wait)
            deadline = time.monotonic() + seconds

            async def loop(command: str) -> None:
                while time.monotonic() < deadline:
                    await relay.execute(command, idempotent=command != "dial")

            tasks = [asyncio.create_task(loop("calling.play")) for _ in range(LOOPS)]
            tasks.append(asyncio.create_task(loop("dial")))
            await asyncio.sleep(seconds)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            shared = relay._transport.shared
            return {} if shared is None else shared.stats.as_dict()

    out.put(asyncio.run(main()))


async def _round(
    url: str,
    redis_url: str,
    arrivals: list[tuple[float, str]],
    limits: dict[str, Any],
    workers: int,
    seconds: float,
) -> dict[str, Any]:
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(workers + 1)
    out = ctx.Queue()
    procs = [
        ctx.Process(target=_worker, args=(url, redis_url, limits, barrier, seconds, out))
        for _ in range(workers)
    ]
    for p in procs:
        p.start()
    await asyncio.to_thread(barrier.wait, 60)
    go = time.monotonic()
    arrivals.clear()
    stats = [await asyncio.to_thread(out.get, timeout=60) for _ in procs]
    for p in procs:
        await asyncio.to_thread(p.join, 10)
    window = [name for t, name in arrivals if go <= t <= go + seconds]
    return {
        "commands_per_s": len(window) / seconds,
        "calls_per_s": window.count("dial") / seconds,
        "fallbacks": sum(s.get("local_fallbacks", 0) for s in stats),
    }


async def run(args: argparse.Namespace) -> dict[str, Any]:
    arrivals: list[tuple[float, str]] = []

    async def post(request: web.Request) -> web.Response:
        body = json.loads(await request.read())
        arrivals.append((time.monotonic(), body.get("command", "")))
        return web.json_response({})

    app = web.Application()
    app.router.add_post(PATH, post)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = _free_port()
    await web.TCPSite(runner, HOST, port).start()
    url = f"http://{HOST}:{port}"
    limits = {
        "commands_per_second": args.commands_per_second,
        "calls_per_second": args.calls_per_second,
        "burst": args.burst,
    }
    sides = {"shared": True, "per worker": False}
    results: dict[str, list[dict[str, Any]]] = {side: [] for side in sides}
    try:
        with redis_server() as redis_url:
            for n in range(args.rounds):
                order = list(sides) if n % 2 == 0 else list(reversed(sides))
                for side in order:
                    fig = await _round(
                        url,
                        redis_url,
                        arrivals,
                        {**limits, "shared": sides[side]},
                        args.workers,
                        args.seconds,
                    )
                    results[side].append(fig)
                    print(f"round {n + 1} {side}: {fig}", file=sys.stderr)
    finally:
        await runner.cleanup()
    return {"limits": limits, "workers": args.workers, "seconds": args.seconds, "runs": results}


def _med(values: list[float]) -> str:
    return f"{statistics.median(values):,.1f} ({min(values):,.1f}-{max(values):,.1f})"


def report(res: dict[str, Any]) -> str:
    lim, seconds, workers = res["limits"], res["seconds"], res["workers"]
    rows = []
    for side, runs in res["runs"].items():
        for what, key, limit in (
            ("commands/s", "commands_per_s", lim["commands_per_second"]),
            ("calls/s", "calls_per_s", lim["calls_per_second"]),
        ):
            values = [r[key] for r in runs]
            bound = limit + lim["burst"] / seconds
            rows.append(
                [
                    side,
                    what,
                    f"{limit:g}",
                    f"{bound:,.2f}",
                    _med(values),
                    f"{statistics.median(values) / limit:.2f}x",
                ]
            )
    head = (
        f"{workers} worker processes, {seconds:g} s per round, {len(runs)} rounds, "
        f"burst {lim['burst']}; median (min-max)"
    )
    headers = ["limits", "aggregate", "limit", "bound", "measured", "vs limit"]
    return head + "\n\n" + table(headers, rows)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.shared_limits")
    parser.add_argument("--commands-per-second", type=float, default=1300.0)
    parser.add_argument("--calls-per-second", type=float, default=1.0)
    parser.add_argument("--burst", type=int, default=1)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", help="write the raw figures here")
    args = parser.parse_args(argv)
    res = asyncio.run(run(args))
    print(report(res))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(res, f, indent=2)
    return res


if __name__ == "__main__":
    main()
