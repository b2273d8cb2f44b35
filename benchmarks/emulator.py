"""
Benchmark 5: emulator capacity.

``relaycall.emulator`` runs in a process of its own (``create_app``, time x10,
so calls answer quickly). A relaycall client in another process dials N calls,
which stay up (answered, no hang-up), then drives ``play`` (a ringtone, which
plays until stopped), ``pause``, ``resume`` and ``stop`` on them, round-robin,
at the same concurrency as the other benchmarks. Reported: commands/s as the
client sees them, and the emulator process's CPU per command (read from
``/proc/<pid>/stat``; 1e6 divided by it is what one core of the emulator
could serve). If ``relaycall.emulator`` cannot be imported (or has no
``create_app``), the benchmark prints ``emulator not available``.
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

from benchmarks._server import PROJECT, TOKEN, ServerProcess
from benchmarks._util import CONNECTION_LIMIT, Sizes, Summary, Worker, run_flows, table

TIME_SCALE = 10.0


def available() -> str | None:
    """None if the emulator can be benchmarked, else why not."""
    try:
        from relaycall.emulator import create_app  # noqa: F401, PLC0415
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"
    return None


def _emulator_app() -> Any:
    from relaycall.emulator import EmulatorConfig, create_app  # noqa: PLC0415

    return create_app(EmulatorConfig(project_id=PROJECT, token=TOKEN, time_scale=TIME_SCALE))


def _cpu_seconds(pid: int) -> float:
    """user + system CPU of another process, from /proc (clock-tick resolution)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def _drive(base_url: str, pid: int, calls: int, commands: int, rounds: int) -> dict[str, Any]:
    import relaycall  # noqa: PLC0415

    tone = relaycall.ringtone("us")
    async with relaycall.AsyncRelay(
        PROJECT, TOKEN, base_url=base_url, limits=relaycall.Limits(max_connections=CONNECTION_LIMIT)
    ) as relay:
        live: list[relaycall.Call] = []

        async def dial(n: int) -> None:
            for _ in range(n):
                live.append(
                    await relay.dial(from_="+15551230000", to="+15557650000",
                                     url="https://example.test/swml")
                )  # fmt: skip

        per = [calls // CONNECTION_LIMIT + (i < calls % CONNECTION_LIMIT) for i in range(100)]
        wall0 = time.perf_counter()
        await asyncio.gather(*(dial(n) for n in per if n))
        dial_s = time.perf_counter() - wall0
        # Wait until every call is answered (the emulator refuses media before).
        await asyncio.sleep(2.0 / TIME_SCALE + 0.5)
        cursor = 0

        async def flow() -> None:
            nonlocal cursor
            call = live[cursor % len(live)]
            cursor += 1
            pb = await call.play(tone)
            await pb.pause()
            await pb.resume()
            await pb.stop()

        out = []
        for _ in range(rounds):
            flows = max(1, commands // 4)
            emu0, cpu0, wall0 = _cpu_seconds(pid), time.process_time(), time.perf_counter()
            await run_flows(flow, CONNECTION_LIMIT, flows)
            wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
            emu = _cpu_seconds(pid) - emu0
            n = flows * 4
            out.append(
                {
                    "commands": n,
                    "commands_per_s": n / wall,
                    "emulator_cpu_us_per_command": emu / n * 1e6,
                    "client_cpu_us_per_command": cpu / n * 1e6,
                }
            )
        live_calls = sum(1 for c in live if not c.done)
    return {"calls": calls, "live_calls": live_calls, "dial_s": dial_s, "rounds": out}


def drive(base_url: str, pid: int, calls: int, commands: int, rounds: int) -> dict[str, Any]:
    return asyncio.run(_drive(base_url, pid, calls, commands, rounds))


def run(sizes: Sizes) -> dict[str, Any]:
    why = available()
    if why is not None:
        return {"available": False, "why": why}
    server = ServerProcess(_emulator_app, name="bench-emulator", start_timeout=60)
    try:
        server.start()
    except RuntimeError:
        return {"available": False, "why": "the emulator process did not start"}
    try:
        with Worker() as w:
            result = w.call(
                drive,
                server.base_url,
                server.pid,
                sizes.emulator_calls,
                sizes.emulator_commands,
                sizes.rounds,
            )
    finally:
        server.stop()
    return {"available": True, **result}


def report(result: dict[str, Any]) -> str:
    title = "## Emulator capacity"
    if not result.get("available"):
        return f"{title}\n\nemulator not available ({result.get('why')})"
    rounds = result["rounds"]
    tput = Summary.of([r["commands_per_s"] for r in rounds])
    emu = Summary.of([r["emulator_cpu_us_per_command"] for r in rounds])
    cli = Summary.of([r["client_cpu_us_per_command"] for r in rounds])
    # /proc counts CPU in clock ticks: a tiny run may not last one.
    capacity = f"{1e6 / emu.median:,.0f}" if emu.median > 0 else "n/a (run too short)"
    return "\n".join(
        [
            title,
            "",
            f"{result['calls']:,} calls dialled in {result['dial_s']:.1f} s; "
            f"{result['live_calls']:,} still live after the run.",
            "",
            table(
                [
                    "commands/s (relaycall client)",
                    "emulator CPU µs/command",
                    "one emulator core's capacity, commands/s",
                    "client CPU µs/command",
                ],
                [[tput.fmt(), emu.fmt(",.0f"), capacity, cli.fmt(",.0f")]],
            ),
        ]
    )
