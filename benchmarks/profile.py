"""
Profile relaycall's own client path: ``python -m benchmarks.profile WHAT``.

- ``overhead``: relaycall's CPU per command over a bare client when neither
  touches the network: both post to a stub session that answers a CallLeg at
  once, so what remains is relaycall's own work (commands, validation,
  encoding, the session, handles, reply parsing). Stable to a tenth of a µs
  on an idle machine.
- ``allocations``: GC-tracked allocations per command on the same stub
  session, relaycall and bare: the gen-0 collections counted with the
  threshold at 1 (each collection is about one net GC-tracked allocation).
- ``instructions``: CPU instructions per command (stub session, both sides)
  and per ``receiver.ingest()`` call, counted by ``valgrind --tool=callgrind``:
  repeatable to well under 1% on a machine whose timings move by 10-30% with
  its load. Only the measured loop is counted (after a warm-up); needs
  valgrind's headers and a C compiler (see :func:`instructions`).
- ``instructions-short [FLOWS]``: the same count for a whole short run
  (``benchmarks short``: 400 flows by default at concurrency 50 in a fresh
  process, from the session's creation, first-use work included), both sides.
- ``throughput``: benchmark 2's relaycall side (handles, concurrency 100)
  against the benchmark server, under pyinstrument (``--cprofile`` for cProfile).
- ``ingest``: ``receiver.ingest()`` with 10,000 live calls, under the same.

py-spy works too, from outside: ``py-spy record -r 400 -f raw -o out.txt --
python -m benchmarks.profile throughput --no-profiler``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import ctypes
import functools
import gc
import json
import os
import pstats
import re
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from benchmarks import ingest, throughput
from benchmarks._server import PROJECT, TOKEN, ServerProcess, call_leg
from benchmarks._util import Worker, run_flows

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
    _counting("start")
    cpu0 = time.process_time()
    for _ in range(n):
        await flow()
    _counting("stop")
    return (time.process_time() - cpu0) / (max(n, 1) * throughput.COMMANDS_PER_FLOW) * 1e6


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


_STUB_SIDES: dict[str, Callable[[int], Any]] = {
    "relaycall": _relaycall_stub,
    "aiohttp": _bare_stub,
}


async def _count_collections(side: str, flows: int) -> float:
    """Gen-0 collections per command with the gen-0 threshold at 1, after a warm-up."""
    driver = _STUB_SIDES[side]
    await driver(0)  # the imports and first-use setup, outside the count
    threshold = gc.get_threshold()
    gc.collect()
    gc.set_threshold(1, 1_000_000, 1_000_000)
    try:
        before: int = gc.get_stats()[0]["collections"]
        await driver(flows)
        after: int = gc.get_stats()[0]["collections"]
    finally:
        gc.set_threshold(*threshold)
    # _per_command runs 200 warm-up flows before the *flows* it times.
    return (after - before) / ((flows + 200) * throughput.COMMANDS_PER_FLOW)


def allocations(flows: int = 2000) -> dict[str, float]:
    return {side: asyncio.run(_count_collections(side, flows)) for side in _STUB_SIDES}


def stub(side: str, flows: int) -> None:
    """
    Run *flows* stub flows of *side*: what ``instructions`` counts.

    ``relaycall-http``, ``aiohttp-http`` and ``aiohttp-tuned-http``: benchmark 1's
    flows at concurrency 50 against the benchmark server (in another process),
    after 200 uncounted.
    ``ingest``: that many ``receiver.ingest()`` calls; ``receiver`` and
    ``receiver-bare``: that many callbacks over HTTP into an EventReceiver
    (100 live calls) or a bare aiohttp handler, posted from another process.
    """
    if side == "ingest":
        asyncio.run(_ingest_stub(flows))
    elif side.endswith("-short"):
        with ServerProcess() as server:
            _short_flows(side.removesuffix("-short"), server.base_url, flows)
    elif side.endswith("-http"):
        with ServerProcess() as server:
            _http_flows(side.removesuffix("-http"), server.base_url, flows)
    elif side.startswith("receiver"):
        asyncio.run(_receiver_stub(side == "receiver", flows))
    else:
        asyncio.run(_STUB_SIDES[side](flows))


@contextlib.contextmanager
def _connections_opened() -> Iterator[list[int]]:
    """
    Count the connections event loops open inside (in ``[0]``): each costs about as
    many instructions as a command, which the counts must be read with.
    """
    opened = [0]
    create = asyncio.BaseEventLoop.create_connection

    async def counted(self: Any, *args: Any, **kwargs: Any) -> Any:
        opened[0] += 1
        return await create(self, *args, **kwargs)

    asyncio.BaseEventLoop.create_connection = counted  # type: ignore[method-assign]
    try:
        yield opened
    finally:
        asyncio.BaseEventLoop.create_connection = create  # type: ignore[method-assign]


def _http_flows(side: str, base_url: str, flows: int) -> None:
    opened = [0]

    async def drive(
        flow: Callable[[], Any], concurrency: int, n: int, _: tuple[float, float] | None
    ) -> None:
        nonlocal opened
        await run_flows(flow, concurrency, 200)
        gc.collect()
        # Connections opened inside the count: timings here are ~50x slower than
        # natively, so a keep-alive measured in wall time expires where it would not.
        with _connections_opened() as opened:
            _counting("start")
            await run_flows(flow, concurrency, n)
            _counting("stop")

    if side in {"relaycall", "relaycall-keep"}:
        limits = _kept_alive() if side == "relaycall-keep" else None
        asyncio.run(throughput._relaycall_flows(base_url, 50, flows, drive=drive, limits=limits))
    else:
        headers = throughput.relaycall_headers()
        tuned = side == "aiohttp-tuned"
        asyncio.run(
            throughput._aiohttp_flows(base_url, 50, flows, headers, drive=drive, tuned=tuned)
        )
    print(f"connections opened: {opened[0]}", file=sys.stderr)


def _short_flows(side: str, base_url: str, flows: int) -> None:
    """
    A short run, counted whole: benchmark 1's *flows* at concurrency 50 in this
    fresh process, from before the session (and its event loop) is made to its
    close, no warm-up: what ``benchmarks short`` times, first-use work included.

    relaycall is imported before counting, as the timed short runs import it
    before their clock starts; what it imports on first use is counted. A side
    ending in ``-nogc`` runs with the cyclic collector off (see
    :func:`instructions_short`).
    """
    import relaycall  # noqa: F401, PLC0415 - imported before counting, see above

    if side.startswith("relaycall"):
        # The native connection pattern under the counter (see _kept_alive).
        run = throughput._relaycall_flows(base_url, 50, flows, warm=False, limits=_kept_alive())
    else:
        headers = throughput.relaycall_headers()
        run = throughput._aiohttp_flows(base_url, 50, flows, headers, warm=False)
    if side.endswith("-nogc"):
        gc.disable()
    with _connections_opened() as opened, throughput.collections_watched() as collected:
        _counting("start")
        asyncio.run(run)
        _counting("stop")
    gc.enable()
    print(f"connections opened: {opened[0]}", file=sys.stderr)
    print(f"collections: {collected.count}", file=sys.stderr)


def instructions_short(flows: int = 400) -> dict[str, float]:
    """
    Instructions per command of a whole short run (:func:`_short_flows`), both sides,
    with the cyclic collector on and off.

    Off, because the collector's work under valgrind is not its work natively: the
    count of young objects at each collection depends on how the flows interleave,
    which a 50x slower client changes (natively, a 400-flow run's collections took
    5.8 ms for relaycall and 5.5 ms for bare aiohttp; counted, 53M instructions
    against 5M). The native figure is in the timed runs.
    """
    with tempfile.TemporaryDirectory() as tmp:
        lib = _counter_library(Path(tmp))
        out: dict[str, float] = {}
        opened: dict[str, int] = {}
        for side in (
            "relaycall-short",
            "aiohttp-short",
            "relaycall-nogc-short",
            "aiohttp-nogc-short",
        ):
            count = _callgrind(side, flows, lib, opened)
            out[side] = count / (flows * throughput.COMMANDS_PER_FLOW)
        out.update({f"{side} connections": float(n) for side, n in opened.items()})
    return out


def _counter_library(tmp: Path) -> Path:
    """The two-function C helper that switches callgrind's counting on and off, built in *tmp*."""
    src, lib = tmp / "counter.c", tmp / "counter.so"
    src.write_text(_COUNTER_C)
    subprocess.run(["cc", "-O1", "-shared", "-fPIC", "-o", str(lib), str(src)], check=True)
    return lib


def _kept_alive() -> Any:
    """
    Benchmark 1's limits with ``unsafe_keepalive`` long enough for valgrind.

    The default (0.5 s) is a wall-clock limit: natively, flows at concurrency 50
    reuse the dial pool's connections (none opened in 2,000 flows), but under
    callgrind every dial finds its connection idle for longer and opens a new
    one (and the other commands stop sharing that pool's connections). These
    limits give the native connection pattern under the counter.
    """
    import relaycall  # noqa: PLC0415

    return relaycall.Limits(max_connections=throughput.CONNECTION_LIMIT, unsafe_keepalive=600)


async def _receiver_stub(relaycall_side: bool, count: int) -> None:
    """Serve callbacks (relaycall's receiver, or a bare handler); count *count* of them."""
    from aiohttp import web  # noqa: PLC0415

    import relaycall  # noqa: PLC0415

    app = web.Application()
    receiver = relaycall.EventReceiver(path=ingest.RECEIVER_PATH, max_clock_skew=None)
    session: Any = StubSession()
    relay = relaycall.AsyncRelay(
        PROJECT, TOKEN, base_url="http://127.0.0.1:1", session=session, events=receiver
    )
    if relaycall_side:
        receiver.add_to_app(app)
    else:

        async def bare(request: web.Request) -> web.Response:
            json.loads(await request.read())
            return web.Response(text="ok")

        app.router.add_post(ingest.RECEIVER_PATH, bare)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    base = f"http://127.0.0.1:{runner.addresses[0][1]}"
    receiver.public_url = base + ingest.RECEIVER_PATH
    targets = []
    async with relay:
        # The same callbacks for both sides: tokens the bare handler ignores.
        _live, pairs = await ingest._live_handles(relay, 100)
        for call_id, control_id, play_query in pairs:
            call_query = receiver.status_url(call_id).split("?", 1)[1]
            play, state = ingest.callback_bodies(call_id, control_id)
            targets.append((f"{ingest.RECEIVER_PATH}?{play_query}", play))
            targets.append((f"{ingest.RECEIVER_PATH}?{call_query}", state))
        loop = asyncio.get_running_loop()
        with Worker() as poster:
            post = functools.partial(poster.call, _post_callbacks, base, targets)
            await loop.run_in_executor(None, post, 500)  # not counted: warm-up
            _counting("start")
            await loop.run_in_executor(None, post, count)
            _counting("stop")
        if relaycall_side:
            assert receiver.stats.routed == receiver.stats.received, receiver.stats
    await runner.cleanup()


def _post_callbacks(base: str, targets: list[tuple[str, bytes]], count: int) -> None:
    """Post *count* callbacks (16 at a time, keep-alive) from this process."""

    async def run() -> None:
        import aiohttp  # noqa: PLC0415

        headers = {"Content-Type": "application/json"}
        remaining = count
        async with aiohttp.ClientSession() as http:

            async def poster() -> None:
                nonlocal remaining
                while remaining > 0:
                    remaining -= 1
                    path, body = targets[remaining % len(targets)]
                    async with http.post(base + path, data=body, headers=headers) as r:
                        await r.read()
                        if r.status != 200:
                            raise RuntimeError(f"callback refused: HTTP {r.status}")

            await asyncio.gather(*(poster() for _ in range(16)))

    asyncio.run(run())


async def _ingest_stub(calls: int) -> None:
    """*calls* ``receiver.ingest()`` calls over 100 live calls, each with a Playback."""
    import relaycall  # noqa: PLC0415

    receiver = relaycall.EventReceiver(
        public_url="http://127.0.0.1:9" + ingest.RECEIVER_PATH, max_clock_skew=None
    )
    session: Any = StubSession()
    async with relaycall.AsyncRelay(
        PROJECT, TOKEN, base_url="http://127.0.0.1:1", session=session, events=receiver
    ) as relay:
        _live, pairs = await ingest._live_handles(relay, 100)
        work = []
        for call_id, control_id, play_query in pairs:
            url = receiver.status_url(call_id)
            play, state = ingest.callback_bodies(call_id, control_id)
            work += [(play, url, play_query), (state, url, url.split("?", 1)[1])]
        headers = {"Content-Type": "application/json"}
        for i in range(-2000, calls):  # 2,000 first, not counted
            if i == 0:
                _counting("start")
            body, url, query = work[i % len(work)]
            if receiver.ingest(body, url=url, query=query, headers=headers)[0] != 200:
                raise RuntimeError("ingest refused a callback")
        _counting("stop")


_COUNTER_C = """
#include <valgrind/callgrind.h>
void count_start(void) { CALLGRIND_START_INSTRUMENTATION; CALLGRIND_TOGGLE_COLLECT; }
void count_stop(void) { CALLGRIND_TOGGLE_COLLECT; CALLGRIND_STOP_INSTRUMENTATION; }
"""
_COUNTER_ENV = "RELAYCALL_BENCH_COUNTER"


def _counting(what: str) -> None:
    """Under ``instructions``: ``start`` (or ``stop``) callgrind counting, through a C helper."""
    path = os.environ.get(_COUNTER_ENV)
    if path:
        getattr(ctypes.CDLL(path), f"count_{what}")()


def _callgrind(side: str, n: int, lib: Path, opened: dict[str, int] | None = None) -> int:
    """Instructions of the measured part of a ``stub`` run of *side* (nothing else is counted)."""
    done = subprocess.run(
        [
            "valgrind", "--tool=callgrind", "--instr-atstart=no", "--collect-atstart=no",
            "--callgrind-out-file=/dev/null",
            sys.executable, "-m", "benchmarks.profile", "stub", side, str(n),
        ],
        capture_output=True, text=True, check=True, env={**os.environ, _COUNTER_ENV: str(lib)},
    )  # fmt: skip
    conns = re.search(r"connections opened: (\d+)", done.stderr)
    if conns is not None and opened is not None:
        opened[side] = int(conns.group(1))
    found = re.search(r"Collected : (\d+)", done.stderr)
    if found is None:
        raise RuntimeError(f"no instruction count from callgrind:\n{done.stderr[-2000:]}")
    return int(found.group(1))


def instructions(flows: int = 300, calls: int = 5000, callbacks: int = 2000) -> dict[str, float]:
    """
    Instructions per command (stub flows, after 200 uncounted) and per ingest() call.

    Needs valgrind, its headers (``valgrind/callgrind.h``) and a C compiler: a
    two-function helper turns counting on around the measured loop only, and
    valgrind does not even instrument the imports and the warm-up, so a run
    takes seconds, not minutes.
    """
    with tempfile.TemporaryDirectory() as tmp:
        lib = _counter_library(Path(tmp))
        out: dict[str, float] = {}
        opened: dict[str, int] = {}
        for side in (
            *_STUB_SIDES,
            "relaycall-http",
            "relaycall-keep-http",
            "aiohttp-http",
            "aiohttp-tuned-http",
        ):
            count = _callgrind(side, flows, lib, opened)
            out[side] = count / (flows * throughput.COMMANDS_PER_FLOW)
        out.update({f"{side} connections": float(n) for side, n in opened.items()})
        out["ingest"] = _callgrind("ingest", calls, lib) / calls
        for side in ("receiver", "receiver-bare"):
            out[side] = _callgrind(side, callbacks, lib) / callbacks
    return out


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
    p.add_argument(
        "what",
        choices=(
            "overhead",
            "allocations",
            "instructions",
            "instructions-short",
            "throughput",
            "ingest",
            "stub",
        ),
    )
    p.add_argument("args", nargs="*", help=argparse.SUPPRESS)  # stub: SIDE FLOWS
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
    if args.what == "allocations":
        a = allocations()
        print(
            "GC-tracked allocations per command, stub session: "
            f"relaycall {a['relaycall']:.1f}, bare {a['aiohttp']:.1f}"
        )
        return
    if args.what == "instructions":
        i = instructions()
        print(
            f"instructions per command, stub session: relaycall {i['relaycall']:,.0f}, "
            f"bare {i['aiohttp']:,.0f} (relaycall's own {i['relaycall'] - i['aiohttp']:,.0f}); "
            f"per command over HTTP (concurrency 50): relaycall {i['relaycall-http']:,.0f}, "
            f"bare {i['aiohttp-http']:,.0f} ({i['relaycall-http'] / i['aiohttp-http']:.2f}x; "
            f"connections opened while counting: relaycall "
            f"{i['relaycall-http connections']:.0f}, bare {i['aiohttp-http connections']:.0f}); "
            f"relaycall with unsafe_keepalive=600 {i['relaycall-keep-http']:,.0f} "
            f"({i['relaycall-keep-http'] / i['aiohttp-http']:.2f}x, "
            f"{i['relaycall-keep-http connections']:.0f} opened); bare aiohttp tuned as "
            f"relaycall tunes it {i['aiohttp-tuned-http']:,.0f} (relaycall with "
            f"unsafe_keepalive=600: {i['relaycall-keep-http'] / i['aiohttp-tuned-http']:.2f}x); "
            f"per receiver.ingest() call: {i['ingest']:,.0f}; per callback over HTTP: "
            f"EventReceiver {i['receiver']:,.0f}, bare handler {i['receiver-bare']:,.0f} "
            f"({i['receiver'] / i['receiver-bare']:.2f}x)"
        )
        return
    if args.what == "instructions-short":
        flows = int(args.args[0]) if args.args else 400
        i = instructions_short(flows)
        rc, bare = i["relaycall-short"], i["aiohttp-short"]
        rc_off, bare_off = i["relaycall-nogc-short"], i["aiohttp-nogc-short"]
        print(
            f"instructions per command, a whole short run of {flows} flows at concurrency 50 "
            f"(session made, first use included): relaycall {rc:,.0f}, bare {bare:,.0f} "
            f"({rc / bare:.3f}x); with the cyclic collector off: relaycall {rc_off:,.0f}, "
            f"bare {bare_off:,.0f} ({rc_off / bare_off:.3f}x); connections opened: relaycall "
            f"{i['relaycall-short connections']:.0f}, bare {i['aiohttp-short connections']:.0f}"
        )
        return
    if args.what == "stub":
        stub(args.args[0], int(args.args[1]))
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
