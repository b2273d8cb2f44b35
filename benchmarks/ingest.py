"""
Benchmark 4: status callbacks into relaycall's EventReceiver.

Receivers, each in a process of its own, mounted the same way in an aiohttp
app (``receiver.add_to_app(app)``, access log off):

- ``relaycall/N``: an EventReceiver bound to an AsyncRelay holding N live calls,
  each with a running Playback (started against the benchmark server, so each
  play carried a status_url the receiver filled in). The receiver keeps its
  default ``require_token=True``: every callback carries its token (the
  play's own status_url for play events, ``receiver.status_url(call_id)`` for
  the call's), which the receiver checks (an HMAC per callback). Callbacks
  alternate between a ``calling.call.play`` (``playing``, routed to the
  Playback) and a ``calling.call.state`` (``answered``, routed to the Call);
  neither is final, so the handles stay live round after round.
- ``aiohttp``: a bare aiohttp handler that reads the body and ``json.loads`` it.

A load generator in another process (an aiohttp client, keep-alive, a fixed
number of concurrent posters) posts a bounded number of callbacks per round.
Reported: callbacks/s, and the receiving process's CPU per callback, read by
the load generator from a control route before and after the round.

Also measured in-process: the CPU cost of one ``receiver.ingest()`` call (no
HTTP) with few and with many live handles.
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import os
import signal
import time
import uuid
from typing import Any

from benchmarks._server import PROJECT, TOKEN
from benchmarks._util import CONNECTION_LIMIT, Sizes, Summary, Worker, goal, ratio, table
from benchmarks.throughput import TEXT

RECEIVER_PATH = "/relaycall/events"
SPACE_ID = "5b9c0a2e-0000-4000-8000-000000000000"


def callback_bodies(call_id: str, control_id: str) -> list[bytes]:
    """The two callbacks posted for one live call: a play event and a call-state event."""
    base = {
        "event_channel": f"swml:{call_id}",
        # Now: the receiver refuses callbacks older than its max_clock_skew.
        "timestamp": round(time.time(), 3),
        "project_id": PROJECT,
        "space_id": SPACE_ID,
    }
    play = {
        **base,
        "event_type": "calling.call.play",
        "params": {"call_id": call_id, "node_id": call_id, "control_id": control_id,
                   "state": "playing"},
    }  # fmt: skip
    state = {
        **base,
        "event_type": "calling.call.state",
        "params": {"call_id": call_id, "node_id": call_id, "call_state": "answered",
                   "direction": "outbound"},
    }  # fmt: skip
    return [json.dumps(play).encode(), json.dumps(state).encode()]


async def _live_handles(relay: Any, n: int) -> tuple[list[Any], list[tuple[str, str, str]]]:
    """
    Start *n* calls, each with a running Playback.

    Returns the calls (the relay holds them weakly: keep them) and, for each,
    (call_id, control_id, the query of the play's own status_url): a play's
    callbacks carry the token of that one start of it.
    """
    import relaycall  # noqa: PLC0415

    out: list[tuple[str, str, str]] = []
    ids = [str(uuid.uuid4()) for _ in range(n)]
    live = []

    async def worker(chunk: list[str]) -> None:
        for call_id in chunk:
            call = relay.call(call_id)
            pb = await call.play(relaycall.tts(TEXT))
            live.append(call)
            url = relay.receiver._operation_status_url(call_id, pb._generation)
            out.append((call_id, pb.control_id, url.split("?", 1)[1]))

    await asyncio.gather(*(worker(ids[i::CONNECTION_LIMIT]) for i in range(CONNECTION_LIMIT)))
    return live, out


# --- the receiving process ---------------------------------------------------------------------


def _serve_receiver(mode: str, server_url: str, handles: int, conn: Any) -> None:
    """Run one receiver (``relaycall`` or ``aiohttp``) until SIGTERM."""
    from aiohttp import web  # noqa: PLC0415

    async def main() -> None:
        import attrs  # noqa: PLC0415

        import relaycall  # noqa: PLC0415

        app = web.Application()
        receiver = relay = None
        if mode == "relaycall":
            # The bodies are built once, before rounds that can outlast the
            # timestamp window: the window's own cost is a few float operations.
            receiver = relaycall.EventReceiver(path=RECEIVER_PATH, max_clock_skew=None)
            relay = relaycall.AsyncRelay(PROJECT, TOKEN, base_url=server_url, events=receiver)
            receiver.add_to_app(app)
        else:

            async def bare(request: web.Request) -> web.Response:
                json.loads(await request.read())
                return web.Response(text="ok")

            app.router.add_post(RECEIVER_PATH, bare)

        async def cpu(_: web.Request) -> web.Response:
            stats = {} if receiver is None else attrs.asdict(receiver.stats)
            return web.json_response({"cpu": time.process_time(), "stats": stats})

        app.router.add_get("/_bench/cpu", cpu)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0, backlog=1024)
        await site.start()
        port = runner.addresses[0][1]
        base = f"http://127.0.0.1:{port}"
        targets: list[tuple[str, bytes]] = []
        if receiver is not None and relay is not None:
            # Set before the plays, so each carries a status_url pointing here.
            receiver.public_url = base + RECEIVER_PATH
            async with relay:
                _live, pairs = await _live_handles(relay, handles)
                for call_id, control_id, play_query in pairs:
                    call_query = receiver.status_url(call_id).split("?", 1)[1]
                    play, state = callback_bodies(call_id, control_id)
                    targets.append((f"{RECEIVER_PATH}?{play_query}", play))
                    targets.append((f"{RECEIVER_PATH}?{call_query}", state))
                conn.send((base, targets))
                await _until_sigterm()
        else:
            conn.send((base, targets))
            await _until_sigterm()
        await runner.cleanup()

    asyncio.run(main())


async def _until_sigterm() -> None:
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()


class ReceiverProcess:
    def __init__(self, mode: str, server_url: str, handles: int) -> None:
        ctx = multiprocessing.get_context("spawn")
        parent, child = ctx.Pipe()
        self._conn = parent
        self.proc = ctx.Process(
            target=_serve_receiver, args=(mode, server_url, handles, child), daemon=True
        )
        self.proc.start()
        self.base = ""
        self.targets: list[tuple[str, bytes]] = []

    def wait_ready(self, timeout: float = 300) -> None:
        deadline = time.monotonic() + timeout
        while not self._conn.poll(0.1):
            if not self.proc.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("a receiver process did not start")
        self.base, self.targets = self._conn.recv()

    def stop(self) -> None:
        if self.proc.is_alive() and self.proc.pid is not None:
            os.kill(self.proc.pid, signal.SIGTERM)
        self.proc.join(10)
        if self.proc.is_alive():
            self.proc.kill()
            self.proc.join(5)


# --- the load generator (its own process) ------------------------------------------------------


async def _load(
    base: str, targets: list[tuple[str, bytes]], count: int, conc: int
) -> dict[str, Any]:
    import aiohttp  # noqa: PLC0415

    headers = {"Content-Type": "application/json", "User-Agent": "bench-loadgen"}
    connector = aiohttp.TCPConnector(limit=conc, limit_per_host=0)
    async with aiohttp.ClientSession(connector=connector) as http:

        async def cpu() -> dict[str, Any]:
            async with http.get(base + "/_bench/cpu") as r:
                return await r.json()  # type: ignore[no-any-return]

        async def post(i: int) -> None:
            path, body = targets[i % len(targets)]
            async with http.post(base + path, data=body, headers=headers) as r:
                await r.read()
                if r.status != 200:
                    raise RuntimeError(f"callback refused: HTTP {r.status}")

        # Warm up every connection.
        await asyncio.gather(*(post(i) for i in range(conc)))
        nxt = conc

        async def poster() -> None:
            nonlocal nxt
            while nxt < conc + count:
                i = nxt
                nxt += 1
                await post(i)

        before = await cpu()
        wall0 = time.perf_counter()
        await asyncio.gather(*(poster() for _ in range(conc)))
        wall = time.perf_counter() - wall0
        after = await cpu()
    return {
        "events": count,
        "wall_s": wall,
        "events_per_s": count / wall,
        "receiver_cpu_us_per_event": (after["cpu"] - before["cpu"]) / count * 1e6,
        "stats": after["stats"],
    }


def load(base: str, targets: list[tuple[str, bytes]], count: int, conc: int) -> dict[str, Any]:
    return asyncio.run(_load(base, targets, count, conc))


# --- in-process ingest() cost ------------------------------------------------------------------


async def _ingest_cost(server_url: str, handles: int, calls: int, rounds: int) -> list[float]:
    import relaycall  # noqa: PLC0415

    receiver = relaycall.EventReceiver(
        public_url="http://127.0.0.1:9" + RECEIVER_PATH, max_clock_skew=None
    )
    async with relaycall.AsyncRelay(PROJECT, TOKEN, base_url=server_url, events=receiver) as relay:
        _live, pairs = await _live_handles(relay, handles)
        work = []
        for call_id, control_id, play_query in pairs:
            url = receiver.status_url(call_id)
            call_query = url.split("?", 1)[1]
            play, state = callback_bodies(call_id, control_id)
            work += [(play, url, play_query), (state, url, call_query)]
        headers = {"Content-Type": "application/json"}
        ingest = receiver.ingest
        out = []
        for _ in range(rounds):
            n = 0
            cpu0 = time.process_time()
            while n < calls:
                for body, url, query in work:
                    status, _ = ingest(body, url=url, query=query, headers=headers)
                    if status != 200:
                        raise RuntimeError(f"ingest refused a callback: {status}")
                    n += 1
                    if n == calls:
                        break
            out.append((time.process_time() - cpu0) / calls * 1e6)
        assert receiver.stats.rejected_auth == receiver.stats.rejected_body == 0
    return out


def ingest_cost(server_url: str, handles: int, calls: int, rounds: int) -> list[float]:
    return asyncio.run(_ingest_cost(server_url, handles, calls, rounds))


# --- orchestration -----------------------------------------------------------------------------


def run(server_url: str, sizes: Sizes) -> dict[str, Any]:
    small, large = sizes.ingest_handles
    modes = [("relaycall", large), ("relaycall", small), ("aiohttp", 0)]
    names = [f"relaycall/{large}", f"relaycall/{small}", "aiohttp"]
    procs = [ReceiverProcess(mode, server_url, n) for mode, n in modes]
    runs: dict[str, list[dict[str, Any]]] = {n: [] for n in names}
    try:
        for p in procs:
            p.wait_ready()
        # The bare handler gets the same requests (paths, tokens, bodies) as the big receiver.
        procs[2].targets = procs[0].targets
        with Worker() as loadgen:
            for r in range(sizes.rounds):
                order = list(range(len(procs)))
                order = order[r % 3 :] + order[: r % 3]
                for i in order:
                    res = loadgen.call(
                        load,
                        procs[i].base,
                        procs[i].targets,
                        sizes.ingest_events,
                        sizes.ingest_concurrency,
                    )
                    runs[names[i]].append(res)
    finally:
        for p in procs:
            p.stop()
    inproc: dict[str, list[float]] = {}
    with Worker() as w:
        for n in (small, large):
            inproc[str(n)] = w.call(ingest_cost, server_url, n, sizes.ingest_calls, sizes.rounds)
    return {"names": names, "runs": runs, "inprocess": inproc, "handles": [small, large]}


def report(result: dict[str, Any]) -> str:
    small, large = result["handles"]
    names = result["names"]
    s = {
        n: (
            Summary.of([r["events_per_s"] for r in result["runs"][n]]),
            Summary.of([r["receiver_cpu_us_per_event"] for r in result["runs"][n]]),
        )
        for n in names
    }
    bare_t, bare_c = s["aiohttp"]
    rows = [
        [
            n,
            t.fmt(),
            f"{ratio(t.median, bare_t.median):.2f}x",
            c.fmt(",.1f"),
            f"{ratio(c.median, bare_c.median):.2f}x",
        ]
        for n, (t, c) in s.items()
    ]
    big_t = s[f"relaycall/{large}"][0].median
    flat = ratio(s[f"relaycall/{large}"][1].median, s[f"relaycall/{small}"][1].median)
    ip_small = Summary.of(result["inprocess"][str(small)])
    ip_large = Summary.of(result["inprocess"][str(large)])
    flat_ip = ratio(ip_large.median, ip_small.median)
    lines = [
        "## Event ingest: status callbacks into EventReceiver over HTTP",
        "",
        table(
            [
                "receiver (live calls)",
                "callbacks/s median (min-max)",
                "vs aiohttp",
                "receiver CPU µs/callback",
                "vs aiohttp",
            ],
            rows,
        ),
        "",
        f"relaycall with {large:,} live calls: {ratio(big_t, bare_t.median):.2f}x the bare "
        f"handler's callbacks/s (>= 0.7x: {goal(ratio(big_t, bare_t.median) >= 0.7)}); "
        f"CPU per callback at {large:,} vs {small:,} live calls: {flat:.2f}x",
        "",
        table(
            [
                "in-process receiver.ingest()",
                f"{small:,} live calls",
                f"{large:,} live calls",
                "ratio",
            ],
            [["CPU µs per call", ip_small.fmt(",.1f"), ip_large.fmt(",.1f"), f"{flat_ip:.2f}x"]],
        ),
    ]
    return "\n".join(lines)
