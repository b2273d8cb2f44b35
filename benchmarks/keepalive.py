"""
Stale keep-alive connections: ``python -m benchmarks.keepalive [--timeouts 1 2 3 5]``.

For each server keep-alive timeout T, a server process on 127.0.0.1 closes
every connection left idle for T seconds, and *workers* loops each send
*rounds* dials, idling T seconds after each reply: the gap at which a pooled
connection is most likely to be closed by the server just as a dial is
written on it. Two clients run side by side, each against a server of its own:

- ``relaycall``: the defaults (dials never take a connection idle for longer
  than ``Limits.unsafe_keepalive``, 0.5 s);
- ``one pool``: ``Limits(unsafe_keepalive=15)``, dials reusing idle
  connections as long as the other commands do (15 s): what relaycall did
  before, when every command shared one pool.

Reported per side and T: dials sent, placed, AmbiguousOutcomeError, other
errors, dials the server received, duplicates (a dial body received twice;
each carries a unique marker in ``custom_variables``) and the connections
the server saw (the cost: each is a TCP handshake, and a TLS one in real use).

It takes about ``rounds * sum(timeouts)`` seconds (55 s with the defaults).
Tests pin the same property at sub-second timeouts (tests/test_keepalive.py).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import signal
import time
import uuid
from collections import Counter
from typing import Any

from aiohttp import web

import relaycall
from benchmarks._server import PROJECT, TOKEN, call_leg
from benchmarks._util import table

HOST = "127.0.0.1"
PATH = "/api/calling/calls"


def _serve(conn: Any, keepalive: float) -> None:
    """The server process: answer dials, count markers and client connections."""
    markers: Counter[str] = Counter()
    ports: set[int] = set()

    async def calls(request: web.Request) -> web.Response:
        body = json.loads(await request.read())
        assert request.transport is not None
        ports.add(request.transport.get_extra_info("peername")[1])
        markers[body["params"]["custom_variables"]["n"]] += 1
        return web.json_response(call_leg(str(uuid.uuid4())))

    async def stats(_: web.Request) -> web.Response:
        return web.json_response(
            {
                "received": sum(markers.values()),
                "duplicates": sum(n - 1 for n in markers.values()),
                "connections": len(ports),
            }
        )

    async def main() -> None:
        app = web.Application()
        app.router.add_post(PATH, calls)
        app.router.add_get("/_bench/stats", stats)
        runner = web.AppRunner(app, keepalive_timeout=keepalive, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, HOST, 0).start()
        conn.send(runner.addresses[0][1])
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        await stop.wait()
        await runner.cleanup()

    asyncio.run(main())


class _Server:
    def __init__(self, keepalive: float) -> None:
        ctx = multiprocessing.get_context("spawn")
        parent, child = ctx.Pipe()
        self.proc = ctx.Process(target=_serve, args=(child, keepalive), daemon=True)
        self.proc.start()
        if not parent.poll(30):
            raise RuntimeError("the keep-alive server did not start")
        self.base_url = f"http://{HOST}:{parent.recv()}"

    def stop(self) -> None:
        if self.proc.pid is not None and self.proc.is_alive():
            os.kill(self.proc.pid, signal.SIGTERM)
        self.proc.join(10)


async def _side(
    base_url: str, limits: relaycall.Limits, gap: float, workers: int, rounds: int
) -> dict[str, Any]:
    counts = Counter[str]()

    async with relaycall.AsyncRelay(PROJECT, TOKEN, base_url=base_url, limits=limits) as relay:

        async def worker(w: int) -> None:
            for r in range(rounds):
                try:
                    await relay.dial(
                        from_="+15551230000",
                        to="+15557650000",
                        url="https://example.test/swml",
                        custom_variables={"n": f"{w}-{r}"},
                    )
                    counts["placed"] += 1
                except relaycall.AmbiguousOutcomeError:
                    counts["ambiguous"] += 1
                except relaycall.RelayError:
                    counts["errors"] += 1
                await asyncio.sleep(gap)

        await asyncio.gather(*(worker(w) for w in range(workers)))
        async with relay._ensure_open().get(base_url + "/_bench/stats") as resp:
            server = await resp.json()
    return {"sent": workers * rounds, **counts, **server}


SIDES = {
    "relaycall": relaycall.Limits(),
    "one pool": relaycall.Limits(unsafe_keepalive=15),
}


async def sweep(timeouts: list[float], workers: int, rounds: int) -> list[dict[str, Any]]:
    rows = []
    for keepalive in timeouts:
        servers = {name: _Server(keepalive) for name in SIDES}
        try:
            began = time.monotonic()
            results = await asyncio.gather(
                *(
                    _side(servers[name].base_url, limits, keepalive, workers, rounds)
                    for name, limits in SIDES.items()
                )
            )
            took = time.monotonic() - began
        finally:
            for server in servers.values():
                server.stop()
        for name, result in zip(SIDES, results, strict=True):
            rows.append({"keepalive": keepalive, "side": name, "seconds": round(took, 1), **result})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--timeouts", type=float, nargs="+", default=[1.0, 2.0, 3.0, 5.0])
    parser.add_argument("--workers", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--json", help="write every figure to this file")
    args = parser.parse_args()
    rows = asyncio.run(sweep(args.timeouts, args.workers, args.rounds))
    columns = ["sent", "placed", "ambiguous", "errors", "received", "duplicates", "connections"]
    print(
        table(
            ["server keep-alive", "client", *columns],
            [
                [f"{row['keepalive']:g} s", row["side"], *(row.get(c, 0) for c in columns)]
                for row in rows
            ],
        )
    )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
