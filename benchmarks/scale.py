"""
Benchmark 3: scale.

- ``scale``: 1,000 and 10,000 call flows (the 8-command flow of the throughput
  benchmark) started at once through relaycall; each size runs in a fresh
  client process so its peak RSS is its own. Reported: wall time, client CPU,
  peak RSS, and the per-call cost (wall and CPU per flow), whose ratio between
  the two sizes should stay within 1.2x.
- ``memory``: 10,000 live calls (``relay.call(uuid)``), each holding three
  started operations (play, record, collect), measured with tracemalloc: the
  snapshot difference divided by the number of calls. Goal: < 4 KB per call.
"""

from __future__ import annotations

import asyncio
import functools
import gc
import time
import tracemalloc
import uuid
from typing import Any

from benchmarks._server import PROJECT, TOKEN
from benchmarks._util import (
    CONNECTION_LIMIT,
    Sizes,
    Summary,
    goal,
    in_fresh_process,
    peak_rss_mb,
    ratio,
    rss_mb,
    table,
)
from benchmarks.throughput import COMMANDS_PER_FLOW, TEXT, relaycall_flow


async def _flows_at_once(base_url: str, flows: int) -> dict[str, float]:
    import relaycall  # noqa: PLC0415

    async with relaycall.AsyncRelay(
        PROJECT, TOKEN, base_url=base_url, limits=relaycall.Limits(max_connections=CONNECTION_LIMIT)
    ) as relay:
        flow = functools.partial(relaycall_flow, relay)
        # Warm the connection pool (not measured).
        await asyncio.gather(*(flow() for _ in range(min(flows, CONNECTION_LIMIT))))
        gc.collect()
        rss0 = rss_mb()
        wall0, cpu0 = time.perf_counter(), time.process_time()
        # Every flow is a task from the start: all of them are live at once and
        # queue for the session's in-flight cap.
        await asyncio.gather(*(flow() for _ in range(flows)))
        wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    return {
        "flows": flows,
        "commands": flows * COMMANDS_PER_FLOW,
        "wall_s": wall,
        "cpu_s": cpu,
        "commands_per_s": flows * COMMANDS_PER_FLOW / wall,
        "wall_ms_per_flow": wall / flows * 1e3,
        "cpu_ms_per_flow": cpu / flows * 1e3,
        "rss_before_mb": rss0,
        "peak_rss_mb": peak_rss_mb(),
    }


def scale_run(base_url: str, flows: int) -> dict[str, float]:
    return asyncio.run(_flows_at_once(base_url, flows))


async def _live_calls(base_url: str, calls: int) -> dict[str, Any]:
    import relaycall  # noqa: PLC0415
    from relaycall import commands  # noqa: PLC0415

    tts = relaycall.tts
    digits = commands.CollectDigits(max=1)
    async with relaycall.AsyncRelay(
        PROJECT, TOKEN, base_url=base_url, limits=relaycall.Limits(max_connections=CONNECTION_LIMIT)
    ) as relay:
        ids = [str(uuid.uuid4()) for _ in range(calls)]
        live: list[relaycall.Call] = []

        async def start(call_id: str) -> None:
            call = relay.call(call_id)
            await call.play(tts(TEXT))
            await call.record(format="wav")
            await call.collect(digits=digits, initial_timeout=5)
            live.append(call)

        async def worker(chunk: list[str]) -> None:
            for call_id in chunk:
                await start(call_id)

        # Warm up: the pool's connections and every code path, then drop those calls.
        await asyncio.gather(*(worker([str(uuid.uuid4())]) for _ in range(CONNECTION_LIMIT)))
        live.clear()
        gc.collect()
        rss0 = rss_mb()
        tracemalloc.start()
        before = tracemalloc.take_snapshot()
        chunks = [ids[i::CONNECTION_LIMIT] for i in range(CONNECTION_LIMIT)]
        await asyncio.gather(*(worker(c) for c in chunks))
        del chunks
        gc.collect()
        after = tracemalloc.take_snapshot()
        tracemalloc.stop()
        rss1 = rss_mb()
        assert len(live) == calls
        assert all(len(c.operations) == 3 for c in live)
        diff = after.compare_to(before, "lineno")
        total = sum(d.size_diff for d in diff)
        top = [
            (str(d.traceback[0]), d.size_diff / calls, d.count_diff / calls)
            for d in sorted(diff, key=lambda d: -d.size_diff)[:12]
        ]
        # The call ids were made before the first snapshot; they are the caller's.
        return {
            "calls": calls,
            "bytes_per_call": total / calls,
            "rss_bytes_per_call": (rss1 - rss0) * 2**20 / calls,
            "top": top,
        }


def memory_run(base_url: str, calls: int) -> dict[str, Any]:
    return asyncio.run(_live_calls(base_url, calls))


def run_scale(base_url: str, sizes: Sizes) -> dict[str, Any]:
    runs: dict[str, list[dict[str, float]]] = {str(n): [] for n in sizes.scale}
    for _ in range(sizes.scale_rounds):
        for n in sizes.scale:
            runs[str(n)].append(in_fresh_process(scale_run, base_url, n))
    return {"runs": runs, "sizes": list(sizes.scale)}


def run_memory(base_url: str, sizes: Sizes) -> dict[str, Any]:
    return in_fresh_process(memory_run, base_url, sizes.memory_calls)


def report_scale(result: dict[str, Any]) -> str:
    rows = []
    med: dict[int, dict[str, float]] = {}
    for n in result["sizes"]:
        runs = result["runs"][str(n)]

        def s(key: str, runs: list[dict[str, float]] = runs) -> Summary:
            return Summary.of([r[key] for r in runs])

        med[n] = {k: s(k).median for k in ("wall_ms_per_flow", "cpu_ms_per_flow")}
        rows.append(
            [
                f"{n:,}",
                s("wall_s").fmt(",.2f"),
                s("commands_per_s").fmt(),
                s("wall_ms_per_flow").fmt(",.3f"),
                s("cpu_ms_per_flow").fmt(",.3f"),
                s("peak_rss_mb").fmt(",.0f"),
                s("rss_before_mb").fmt(",.0f"),
            ]
        )
    lines = [
        "## Scale: N concurrent call flows through relaycall (8 commands each)",
        "",
        table(
            [
                "flows at once",
                "wall s",
                "commands/s",
                "wall ms/flow",
                "client CPU ms/flow",
                "peak RSS MiB",
                "RSS before MiB",
            ],
            rows,
        ),
    ]
    sizes = result["sizes"]
    if len(sizes) >= 2:
        small, large = sizes[0], sizes[-1]
        w = ratio(med[large]["wall_ms_per_flow"], med[small]["wall_ms_per_flow"])
        c = ratio(med[large]["cpu_ms_per_flow"], med[small]["cpu_ms_per_flow"])
        lines += [
            "",
            f"Per-call cost at {large:,} vs {small:,}: wall {w:.2f}x, CPU {c:.2f}x "
            f"(within 1.2x: {goal(max(w, c) <= 1.2)})",
        ]
    return "\n".join(lines)


def report_memory(result: dict[str, Any]) -> str:
    per = result["bytes_per_call"]
    lines = [
        "## Memory per live call holding three live operations (play, record, collect)",
        "",
        f"{result['calls']:,} calls: {per:,.0f} bytes/call by tracemalloc "
        f"(< 4 KB: {goal(per < 4096)}); {result['rss_bytes_per_call']:,.0f} bytes/call by RSS",
        "",
        "Largest allocation sites (bytes and blocks per call):",
        "",
        table(
            ["site", "bytes/call", "blocks/call"],
            [[site, f"{b:,.0f}", f"{n:.2f}"] for site, b, n in result["top"][:8]],
        ),
    ]
    return "\n".join(lines)
