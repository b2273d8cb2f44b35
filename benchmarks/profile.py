"""
Profile relaycall's own client path: ``python -m benchmarks.profile {overhead,throughput,ingest}``.

- ``overhead``: relaycall's CPU per command over a bare client when neither
  touches the network: both post to a stub session that answers a CallLeg at
  once, so what remains is relaycall's own work (commands, validation,
  encoding, the session, handles, reply parsing). Stable to a tenth of a µs.
- ``throughput``: benchmark 2's relaycall side (handles, concurrency 100)
  against the benchmark server, under pyinstrument (``--cprofile`` for cProfile).
- ``ingest``: ``receiver.ingest()`` with 10,000 live calls, under the same.

py-spy works too, from outside: ``py-spy record -r 400 -f raw -o out.txt --
python -m benchmarks.profile throughput --no-profiler``.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import functools
import gc
import json
import pstats
import secrets
import statistics
import time
import uuid
from collections.abc import Callable
from typing import Any

from benchmarks import ingest, throughput
from benchmarks._server import PROJECT, TOKEN, ServerProcess, call_leg

_PREFIX, _SUFFIX = (p.encode() for p in json.dumps(call_leg("X-ID")).split("X-ID"))


class _StubResponse:
    __slots__ = ("_body", "headers", "status")

    def __init__(self, body: bytes) -> None:
        self.status = 200
        self.headers = {"Content-Type": "application/json"}
        self._body = body

    async def read(self) -> bytes:
        return self._body

    async def __aenter__(self) -> _StubResponse:
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None


class StubSession:
    """Stands in for aiohttp.ClientSession: answers every POST with a CallLeg, no I/O."""

    closed = False

    def post(self, url: str, *, data: bytes, **_: Any) -> _StubResponse:
        body = json.loads(data)
        call_id = str(uuid.uuid4()) if body["command"] == "dial" else body["id"]
        return _StubResponse(_PREFIX + call_id.encode() + _SUFFIX)

    async def close(self) -> None:
        return None


async def _per_command(flow: Callable[[], Any], n: int) -> float:
    for _ in range(200):
        await flow()
    gc.collect()
    cpu0 = time.process_time()
    for _ in range(n):
        await flow()
    return (time.process_time() - cpu0) / (n * throughput.COMMANDS_PER_FLOW) * 1e6


async def _relaycall_stub(n: int) -> float:
    import relaycall  # noqa: PLC0415

    session: Any = StubSession()
    async with relaycall.AsyncRelay(
        PROJECT, TOKEN, base_url="http://127.0.0.1:1", session=session
    ) as relay:
        return await _per_command(functools.partial(throughput.relaycall_flow, relay), n)


async def _bare_stub(n: int) -> float:
    session = StubSession()
    url = "http://127.0.0.1:1/api/calling/calls"
    headers = throughput.relaycall_headers()

    async def post(data: bytes) -> Any:
        async with session.post(url, data=data, headers=headers, allow_redirects=False) as r:
            body = await r.read()
            if r.status != 200:
                raise RuntimeError(r.status)
            return json.loads(body)

    async def flow() -> None:
        call_id = (await post(throughput.dial_body()))["id"]
        play = secrets.token_urlsafe(12)
        await post(throughput.play_body(call_id, play))
        for cmd in ("calling.play.pause", "calling.play.resume", "calling.play.stop"):
            await post(throughput.follow_up_body(cmd, call_id, play))
        rec = secrets.token_urlsafe(12)
        await post(throughput.record_body(call_id, rec))
        await post(throughput.follow_up_body("calling.record.stop", call_id, rec))
        await post(throughput.end_body(call_id))

    return await _per_command(flow, n)


def overhead(rounds: int = 5, flows: int = 3000) -> dict[str, float]:
    rc = [asyncio.run(_relaycall_stub(flows)) for _ in range(rounds)]
    bare = [asyncio.run(_bare_stub(flows)) for _ in range(rounds)]
    return {"relaycall": statistics.median(rc), "aiohttp": statistics.median(bare)}


def _profiled(fn: Callable[[], Any], mode: str) -> None:
    if mode == "none":
        fn()
        return
    if mode == "cprofile":
        prof = cProfile.Profile()
        prof.enable()
        fn()
        prof.disable()
        pstats.Stats(prof).sort_stats("tottime").print_stats(40)
        return
    from pyinstrument import Profiler  # noqa: PLC0415

    profiler = Profiler(interval=0.0005)
    profiler.start()
    fn()
    profiler.stop()
    print(profiler.output_text(unicode=True, color=False))


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m benchmarks.profile", description=__doc__)
    p.add_argument("what", choices=("overhead", "throughput", "ingest"))
    g = p.add_mutually_exclusive_group()
    g.add_argument("--cprofile", action="store_const", const="cprofile", dest="mode")
    g.add_argument("--no-profiler", action="store_const", const="none", dest="mode")
    p.set_defaults(mode="pyinstrument")
    args = p.parse_args()
    if args.what == "overhead":
        o = overhead()
        rc, bare = o["relaycall"], o["aiohttp"]
        print(
            f"client CPU per command, stub session (no network): relaycall {rc:.1f} µs, "
            f"bare {bare:.1f} µs; relaycall's own work {rc - bare:.1f} µs"
        )
        return
    with ServerProcess() as server:
        url = server.base_url

        def run() -> None:
            if args.what == "throughput":
                print(asyncio.run(throughput._relaycall_flows(url, 100, 2000)))
            else:
                print(ingest.ingest_cost(url, 10_000, 100_000, 1))

        _profiled(run, args.mode)


if __name__ == "__main__":
    main()
