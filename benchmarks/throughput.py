"""
Benchmark 2: command throughput and client CPU per command.

N concurrent call flows, each ``dial, play, pause, resume, stop, record,
record stop, end`` (8 commands), against the same server process, through:

- ``relaycall``: the handles (``await relay.dial(...)``, ``await call.play(...)``...);
- ``aiohttp``: a bare ``aiohttp.ClientSession`` posting byte-identical bodies with
  the same headers, the same connection limit and the same timeouts, and
  decoding each JSON reply (the least any client must do);
- ``aiohttp-tuned`` (``benchmarks.compare`` and ``benchmarks.profile instructions``
  only): the same loop with what relaycall does to make aiohttp's own work
  cheaper: timeouts with the same bounds but no read timer that could never fire
  first and no rounding, and the headers as a prebuilt ``CIMultiDict`` (see
  ``relaycall._transport.client_timeout``). relaycall's ratio to it is relaycall's
  own cost, with nothing it saves in aiohttp counted;
- ``sdk``: SignalWire's own ``signalwire.rest.RestClient(...).calling`` (sync,
  requests-based), driven by a ThreadPoolExecutor of the same concurrency.

Each side runs in a client process of its own (not the server's), so
``time.process_time()`` there is the client's CPU alone.

Short runs (:func:`run_short`): 400 and 2,000 flows at concurrency 50, each in a
fresh process, with no warm-up: the clock starts before the session is built,
so first-use costs (lazy setup, the first connections, first-time allocations)
count, as they do for a script or a short-lived worker. Imports do not count
(the cold-start benchmark measures them).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import json
import math
import secrets
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

from benchmarks._server import PROJECT, TOKEN
from benchmarks._util import (
    CONNECTION_LIMIT,
    Sizes,
    Summary,
    Worker,
    compile_package,
    goal,
    in_fresh_process,
    ratio,
    run_flows,
    table,
)

SIDES = ("relaycall", "aiohttp", "sdk")
COMMANDS_PER_FLOW = 8
FROM = "+15551230000"
TO = "+15557650000"
SWML_URL = "https://example.test/swml"
TEXT = "Please leave a message after the tone."


def sdk_available() -> bool:
    try:
        import signalwire.rest  # noqa: F401, PLC0415
    except Exception:
        return False
    return True


# --- the bodies the bare client sends (relaycall's, byte for byte) -----------------------


def encode(body: dict[str, Any]) -> bytes:
    # The options relaycall encodes with (relaycall._session._encode), so the
    # bytes are the same; written the way a bare client would write it.
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()


def dial_body() -> bytes:
    return encode({"command": "dial", "params": {"from": FROM, "to": TO, "url": SWML_URL}})


def play_body(call_id: str, control_id: str) -> bytes:
    return encode(
        {
            "command": "calling.play",
            "id": call_id,
            "params": {
                "control_id": control_id,
                "play": [{"type": "tts", "params": {"text": TEXT}}],
            },
        }
    )


def record_body(call_id: str, control_id: str) -> bytes:
    return encode(
        {
            "command": "calling.record",
            "id": call_id,
            "params": {"control_id": control_id, "record": {"audio": {"format": "wav"}}},
        }
    )


def follow_up_body(command: str, call_id: str, control_id: str) -> bytes:
    return encode({"command": command, "id": call_id, "params": {"control_id": control_id}})


def end_body(call_id: str) -> bytes:
    return encode({"command": "calling.end", "id": call_id, "params": {}})


def relaycall_headers() -> dict[str, str]:
    """The exact headers relaycall sends (taken from an unopened session: no I/O)."""
    import relaycall  # noqa: PLC0415

    relay = relaycall.AsyncRelay(PROJECT, TOKEN, base_url="http://127.0.0.1:1")
    # str(): relaycall holds the Authorization value in a str whose repr is masked;
    # the baseline sends plain strs (and compare.py writes them into code by repr).
    return {name: str(value) for name, value in relay._transport.headers.items()}


# --- the three clients ----------------------------------------------------------------------


async def relaycall_flow(relay: Any) -> tuple[Any, Any, Any]:
    """
    One call flow through relaycall's handles (what every relaycall side measures).

    Returns the call, playback and recording, whose ids the smoke test checks.
    """
    # Imported here: the bare client's process never imports relaycall.
    from relaycall import tts  # noqa: PLC0415

    call = await relay.dial(from_=FROM, to=TO, url=SWML_URL)
    pb = await call.play(tts(TEXT))
    await pb.pause()
    await pb.resume()
    await pb.stop()
    rec = await call.record(format="wav")
    await rec.stop()
    await call.end()
    return call, pb, rec


Drive = Callable[[Callable[[], Any], int, int, "tuple[float, float] | None"], Awaitable[Any]]


async def _relaycall_flows(
    base_url: str,
    concurrency: int,
    flows: int,
    *,
    warm: bool = True,
    drive: Drive | None = None,
    limits: Any = None,
) -> Any:
    """Benchmark 1's relaycall side; *limits* default to the connection limit alone."""
    import relaycall  # noqa: PLC0415

    clock = None if warm else _clock()
    limits = limits or relaycall.Limits(max_connections=CONNECTION_LIMIT)
    async with relaycall.AsyncRelay(PROJECT, TOKEN, base_url=base_url, limits=limits) as relay:
        flow = functools.partial(relaycall_flow, relay)
        return await (drive or _drive)(flow, concurrency, flows, clock)


async def _aiohttp_flows(
    base_url: str,
    concurrency: int,
    flows: int,
    headers: dict[str, str],
    *,
    warm: bool = True,
    drive: Drive | None = None,
    tuned: bool = False,
) -> Any:
    import aiohttp  # noqa: PLC0415

    clock = None if warm else _clock()
    url = base_url + "/api/calling/calls"
    # Same pool and timeouts as relaycall's own session (relaycall._transport).
    connector = aiohttp.TCPConnector(limit=CONNECTION_LIMIT, limit_per_host=0, keepalive_timeout=15)
    timeout = aiohttp.ClientTimeout(total=30, connect=5, sock_read=30)
    sent: Any = headers
    if tuned:
        # The same bounds as relaycall sets them (see the module docstring).
        from multidict import CIMultiDict  # noqa: PLC0415

        timeout = aiohttp.ClientTimeout(total=30, connect=5, ceil_threshold=math.inf)
        sent = CIMultiDict(headers)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

        async def post(data: bytes) -> Any:
            async with session.post(url, data=data, headers=sent, allow_redirects=False) as r:
                body = await r.read()
                if r.status != 200:
                    raise RuntimeError(f"HTTP {r.status}: {body[:200]!r}")
                return json.loads(body)

        async def flow() -> None:
            leg = await post(dial_body())
            call_id = leg["id"]
            play = secrets.token_urlsafe(12)
            await post(play_body(call_id, play))
            await post(follow_up_body("calling.play.pause", call_id, play))
            await post(follow_up_body("calling.play.resume", call_id, play))
            await post(follow_up_body("calling.play.stop", call_id, play))
            rec = secrets.token_urlsafe(12)
            await post(record_body(call_id, rec))
            await post(follow_up_body("calling.record.stop", call_id, rec))
            await post(end_body(call_id))

        return await (drive or _drive)(flow, concurrency, flows, clock)


def _clock() -> tuple[float, float]:
    return time.perf_counter(), time.process_time()


async def _drive(
    flow: Callable[[], Any], concurrency: int, flows: int, clock: tuple[float, float] | None
) -> dict[str, float]:
    """
    Run *flows* flows on *concurrency* tasks, timed from *clock* (wall, CPU).

    Without *clock*: warm the pool first (one flow per connection), collect,
    and time only the flows.
    """
    if clock is None:
        await asyncio.gather(*(flow() for _ in range(min(concurrency, CONNECTION_LIMIT))))
        gc.collect()
        clock = _clock()
    wall0, cpu0 = clock
    with collections_watched() as collected:
        await run_flows(flow, concurrency, flows)
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    figures = _figures(flows, wall, cpu)
    figures["gc_us_per_command"] = collected.seconds / figures["commands"] * 1e6
    return figures


class Collections:
    """What the cyclic collector did while :func:`collections_watched` was open."""

    __slots__ = ("_began", "count", "seconds")

    def __init__(self) -> None:
        self.count = 0
        self.seconds = 0.0
        self._began = 0.0

    def __call__(self, phase: str, _: dict[str, Any]) -> None:
        if phase == "start":
            self.count += 1
            self._began = time.perf_counter()
        else:
            self.seconds += time.perf_counter() - self._began


@contextlib.contextmanager
def collections_watched() -> Iterator[Collections]:
    """
    The collections made inside, and the wall time they took (a gc callback).

    Counted apart because valgrind cannot count the collector fairly (see
    ``benchmarks.profile.instructions_short``). A collection never waits, so
    its time is nearly all CPU time.
    """
    seen = Collections()
    gc.callbacks.append(seen)
    try:
        yield seen
    finally:
        gc.callbacks.remove(seen)


def _sdk_flows(host: str, concurrency: int, flows: int) -> dict[str, float]:
    import requests.adapters  # noqa: PLC0415
    from signalwire.rest import RestClient  # noqa: PLC0415

    client = RestClient(PROJECT, TOKEN, host=host)
    calling = client.calling
    # The SDK's requests.Session keeps 10 pooled connections and opens (then
    # discards) more beyond that; give it the same limit as the other sides.
    adapter = requests.adapters.HTTPAdapter(
        pool_connections=1, pool_maxsize=CONNECTION_LIMIT, pool_block=True
    )
    client._http._session.mount("http://", adapter)
    play_items = [{"type": "tts", "params": {"text": TEXT}}]

    def flow(_: object = None) -> None:
        leg = calling.dial(from_=FROM, to=TO, url=SWML_URL)
        call_id = leg["id"]
        play = secrets.token_urlsafe(12)
        calling.play(call_id, play=play_items, control_id=play)
        calling.play_pause(call_id, control_id=play)
        calling.play_resume(call_id, control_id=play)
        calling.play_stop(call_id, control_id=play)
        rec = secrets.token_urlsafe(12)
        calling.record(call_id, control_id=rec, audio={"format": "wav"})
        calling.record_stop(call_id, control_id=rec)
        calling.end(call_id)

    from concurrent.futures import ThreadPoolExecutor  # noqa: PLC0415

    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        list(pool.map(flow, range(min(concurrency, CONNECTION_LIMIT))))
        gc.collect()
        wall0, cpu0 = time.perf_counter(), time.process_time()
        for f in [pool.submit(flow) for _ in range(flows)]:
            f.result()
        wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    adapter.close()
    return _figures(flows, wall, cpu)


def _figures(flows: int, wall: float, cpu: float) -> dict[str, float]:
    commands = flows * COMMANDS_PER_FLOW
    return {
        "commands": commands,
        "wall_s": wall,
        "cpu_s": cpu,
        "commands_per_s": commands / wall,
        "cpu_us_per_command": cpu / commands * 1e6,
    }


def run_side(
    side: str,
    base_url: str,
    concurrency: int,
    flows: int,
    headers: dict[str, str] | None = None,
    warm: bool = True,
) -> dict[str, float]:
    """
    Run one measured batch of one side (in that side's own client process).

    *warm* False: a short run, timed from before the session is built, with no
    warm-up (see the module docstring); relaycall and aiohttp only.
    """
    if side == "relaycall":
        return asyncio.run(_relaycall_flows(base_url, concurrency, flows, warm=warm))
    if side in {"aiohttp", "aiohttp-tuned"}:
        # Headers come from the caller: the bare client's process never imports relaycall.
        return asyncio.run(
            _aiohttp_flows(
                base_url,
                concurrency,
                flows,
                headers or relaycall_headers(),
                warm=warm,
                tuned=side == "aiohttp-tuned",
            )
        )
    if side == "sdk":
        return _sdk_flows(base_url.removeprefix("http://"), concurrency, flows)
    raise ValueError(side)


# --- orchestration ------------------------------------------------------------------------------


def run(base_url: str, sizes: Sizes, *, sdk: bool = True) -> dict[str, Any]:
    sides = [s for s in SIDES if s != "sdk" or (sdk and sdk_available())]
    headers = relaycall_headers()
    runs: dict[str, dict[str, list[dict[str, float]]]] = {
        str(conc): {s: [] for s in sides} for conc in sizes.concurrencies
    }
    for r in range(sizes.rounds):
        # Fresh client processes every round, one per side, so a side's figures never
        # pay for another's imports, heap or threads. Fresh because one process's
        # memory layout (address-space and hash randomisation) moved CPU per command
        # by up to 13% for every run inside it, bare aiohttp's as much as relaycall's:
        # the rounds must sample several processes, not repeat one.
        workers = {side: Worker() for side in sides}
        try:
            for conc in sizes.concurrencies:
                # Rotate the order each round so drift in machine load hits every side alike.
                for side in sides[r % len(sides) :] + sides[: r % len(sides)]:
                    flows = (
                        max(sizes.sdk_flows, 2 * conc)
                        if side == "sdk"
                        else max(sizes.flows, 4 * conc)
                    )
                    runs[str(conc)][side].append(
                        workers[side].call(run_side, side, base_url, conc, flows, headers)
                    )
        finally:
            for w in workers.values():
                w.close()
    return {"sides": sides, "runs": runs, "headline": sizes.headline_concurrency}


def summarize(result: dict[str, Any]) -> dict[str, Any]:
    """Medians (with min and max) per side and concurrency, and the ratios."""
    out: dict[str, Any] = {}
    for conc, per_side in result["runs"].items():
        row: dict[str, Any] = {}
        for side, runs in per_side.items():
            row[side] = {
                "commands_per_s": Summary.of([r["commands_per_s"] for r in runs]),
                "cpu_us_per_command": Summary.of([r["cpu_us_per_command"] for r in runs]),
            }
        out[conc] = row
    return out


def report(result: dict[str, Any]) -> str:
    s = summarize(result)
    lines = ["## Command throughput and client CPU (8-command call flows)", ""]
    rows = []
    for conc, row in s.items():
        bare = row.get("aiohttp")
        for side in result["sides"]:
            fig = row[side]
            tput, cpu = fig["commands_per_s"], fig["cpu_us_per_command"]
            rows.append(
                [
                    conc,
                    side,
                    tput.fmt(),
                    f"{ratio(tput.median, bare['commands_per_s'].median):.2f}x" if bare else "",
                    cpu.fmt(",.1f"),
                    f"{ratio(cpu.median, bare['cpu_us_per_command'].median):.2f}x" if bare else "",
                ]
            )
    lines.append(
        table(
            [
                "concurrency",
                "client",
                "commands/s median (min-max)",
                "vs aiohttp",
                "client CPU µs/command",
                "vs aiohttp",
            ],
            rows,
        )
    )
    head = s.get(str(result["headline"]))
    if head and "aiohttp" in head:
        rc, bare = head["relaycall"], head["aiohttp"]
        t = ratio(rc["commands_per_s"].median, bare["commands_per_s"].median)
        c = ratio(rc["cpu_us_per_command"].median, bare["cpu_us_per_command"].median)
        lines += [
            "",
            f"Goals at concurrency {result['headline']}: throughput {t:.2f}x aiohttp "
            f"(>= 0.85x: {goal(t >= 0.85)}); CPU/command {c:.2f}x aiohttp "
            f"(<= 1.3x: {goal(c <= 1.3)})",
        ]
        if "sdk" in head:
            k = ratio(rc["commands_per_s"].median, head["sdk"]["commands_per_s"].median)
            lines.append(f"relaycall vs SDK throughput: {k:.1f}x (>= 4x: {goal(k >= 4)})")
    return "\n".join(lines)


# --- short runs in fresh processes -------------------------------------------------------------

SHORT_SIDES = ("relaycall", "aiohttp")


def run_short(base_url: str, sizes: Sizes) -> dict[str, Any]:
    """
    Short runs: each size's flows at ``sizes.short_concurrency``, every run in a fresh process.

    No warm-up: timed from before the session is built (see the module
    docstring). The sides alternate, the first side changing every round.
    """
    import relaycall  # noqa: PLC0415

    # Modules relaycall imports on first use are then read, not compiled, inside the window.
    compile_package(Path(relaycall.__file__).parent)
    headers = relaycall_headers()
    conc = sizes.short_concurrency
    short = functools.partial(run_side, warm=False)
    runs: dict[str, dict[str, list[dict[str, float]]]] = {
        str(n): {s: [] for s in SHORT_SIDES} for n in sizes.short_flows
    }
    for r in range(sizes.short_rounds):
        for n in sizes.short_flows:
            for side in SHORT_SIDES[r % 2 :] + SHORT_SIDES[: r % 2]:
                runs[str(n)][side].append(in_fresh_process(short, side, base_url, conc, n, headers))
    return {"sides": list(SHORT_SIDES), "runs": runs, "concurrency": conc}


def report_short(result: dict[str, Any]) -> str:
    conc = result["concurrency"]
    lines = [
        f"## Short runs: N flows at concurrency {conc}, each run in a fresh process, no warm-up",
        "",
    ]
    rows = []
    goals = []
    for flows, per_side in result["runs"].items():
        bare = per_side["aiohttp"]
        bare_tput = Summary.of([r["commands_per_s"] for r in bare])
        bare_cpu = Summary.of([r["cpu_us_per_command"] for r in bare])
        for side in result["sides"]:
            tput = Summary.of([r["commands_per_s"] for r in per_side[side]])
            cpu = Summary.of([r["cpu_us_per_command"] for r in per_side[side]])
            t, c = ratio(tput.median, bare_tput.median), ratio(cpu.median, bare_cpu.median)
            rows.append([flows, side, tput.fmt(), f"{t:.2f}x", cpu.fmt(",.1f"), f"{c:.2f}x"])
            if side == "relaycall":
                goals.append(
                    f"{flows} flows: throughput {t:.2f}x aiohttp (>= 0.90x: {goal(t >= 0.90)}); "
                    f"CPU/command {c:.2f}x (<= 1.1x: {goal(c <= 1.1)})"
                )
    head = [
        "flows",
        "client",
        "commands/s median (min-max)",
        "vs aiohttp",
        "client CPU µs/command",
        "vs aiohttp",
    ]
    return "\n".join([*lines, table(head, rows), "", *goals])
