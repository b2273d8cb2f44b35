"""
Shared plumbing: sizes, worker processes, statistics and table printing.
"""

from __future__ import annotations

import asyncio
import compileall
import concurrent.futures
import multiprocessing
import os
import resource
import statistics
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import attrs

T = TypeVar("T")


@attrs.frozen(kw_only=True)
class Sizes:
    """How big each benchmark runs; ``FULL``, ``QUICK`` (``--quick``) and ``TINY`` (tests)."""

    name: str
    rounds: int
    #: Concurrencies of the throughput sweep; the first in HEADLINE order is the headline.
    concurrencies: tuple[int, ...]
    headline_concurrency: int
    #: Flows per measured run (at least ``4 * concurrency``) for relaycall and bare: 1,500
    #: flows are 12,000 commands, a second or two, long enough to average out GC and noise.
    flows: int
    #: Flows per measured run for the SDK (at least ``2 * concurrency``).
    sdk_flows: int
    #: Short runs (throughput.run_short): flows per fresh process, their concurrency, rounds.
    short_flows: tuple[int, ...]
    short_concurrency: int
    short_rounds: int
    #: Concurrent call flows of the scale benchmark.
    scale: tuple[int, ...]
    scale_rounds: int
    #: Live calls, each with three operations, for the memory figure.
    memory_calls: int
    #: Live handles for the ingest benchmark: (small, large).
    ingest_handles: tuple[int, int]
    #: Callbacks posted per measured round.
    ingest_events: int
    ingest_concurrency: int
    #: In-process receiver.ingest() calls per measured round.
    ingest_calls: int
    emulator_calls: int
    emulator_commands: int
    #: Fresh-interpreter rounds of the cold-start benchmark (each side once per round).
    coldstart_rounds: int


FULL = Sizes(
    name="full",
    rounds=5,
    concurrencies=(1, 10, 50, 100, 200),
    headline_concurrency=100,
    flows=1500,
    sdk_flows=120,
    short_flows=(400, 2000),
    short_concurrency=50,
    short_rounds=9,
    scale=(1_000, 10_000),
    scale_rounds=3,
    memory_calls=10_000,
    ingest_handles=(100, 10_000),
    ingest_events=20_000,
    ingest_concurrency=32,
    ingest_calls=50_000,
    emulator_calls=10_000,
    emulator_commands=20_000,
    coldstart_rounds=11,
)
QUICK = Sizes(
    name="quick",
    rounds=2,
    concurrencies=(1, 10, 100),
    headline_concurrency=100,
    flows=120,
    sdk_flows=40,
    short_flows=(100, 400),
    short_concurrency=50,
    short_rounds=2,
    scale=(100, 1_000),
    scale_rounds=1,
    memory_calls=1_000,
    ingest_handles=(100, 1_000),
    ingest_events=2_000,
    ingest_concurrency=16,
    ingest_calls=5_000,
    emulator_calls=1_000,
    emulator_commands=2_000,
    coldstart_rounds=3,
)
TINY = Sizes(
    name="tiny",
    rounds=1,
    concurrencies=(1, 4),
    headline_concurrency=4,
    flows=4,
    sdk_flows=2,
    short_flows=(4,),
    short_concurrency=2,
    short_rounds=1,
    scale=(4, 8),
    scale_rounds=1,
    memory_calls=8,
    ingest_handles=(4, 8),
    ingest_events=40,
    ingest_concurrency=4,
    ingest_calls=100,
    emulator_calls=4,
    emulator_commands=16,
    coldstart_rounds=1,
)
SIZES = {s.name: s for s in (FULL, QUICK, TINY)}

#: Connection pool size on every client side (relaycall's default ``Limits``).
CONNECTION_LIMIT = 100


class Worker:
    """
    A client process separate from the server (and from the orchestrating process).

    ``process_time()`` inside it measures only the client. ``call`` runs a
    module-level function there and returns its (picklable) result.
    """

    def __init__(self) -> None:
        self._pool = concurrent.futures.ProcessPoolExecutor(
            max_workers=1, mp_context=multiprocessing.get_context("spawn")
        )

    def call(self, fn: Callable[..., T], *args: Any, timeout: float = 600) -> T:
        return self._pool.submit(fn, *args).result(timeout=timeout)

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> Worker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


async def run_flows(flow: Callable[[], Awaitable[Any]], tasks: int, flows: int) -> None:
    """Run *flow* *flows* times on *tasks* concurrent tasks, each taking the next as it ends."""
    remaining = flows

    async def worker() -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            await flow()

    await asyncio.gather(*(worker() for _ in range(tasks)))


def compile_package(package_dir: Path) -> None:
    """
    Write *package_dir*'s bytecode, as an installed package has it.

    A module imported on first use (relaycall imports several lazily) inside a
    timed window would otherwise be compiled from source there, on every run,
    wherever bytecode is not written (PYTHONDONTWRITEBYTECODE, a fresh checkout).
    """
    compileall.compile_dir(str(package_dir), quiet=1)


def in_fresh_process(fn: Callable[..., T], *args: Any, timeout: float = 600) -> T:
    """Run *fn* in a process of its own (for peak RSS, which only grows)."""
    with Worker() as w:
        return w.call(fn, *args, timeout=timeout)


def peak_rss_mb() -> float:
    """This process's peak resident set size, in MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def rss_mb() -> float:
    """This process's current resident set size, in MiB."""
    try:
        with open("/proc/self/statm") as f:
            pages = int(f.read().split()[1])
    except (OSError, ValueError, IndexError):
        return float("nan")
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


@attrs.frozen
class Summary:
    min: float
    median: float
    max: float
    n: int

    @classmethod
    def of(cls, values: Sequence[float]) -> Summary:
        if not values:
            return cls(float("nan"), float("nan"), float("nan"), 0)
        return cls(min(values), statistics.median(values), max(values), len(values))

    def fmt(self, spec: str = ",.0f") -> str:
        if self.n == 0:
            return "n/a"
        if self.n == 1:
            return format(self.median, spec)
        return f"{self.median:{spec}} ({self.min:{spec}}-{self.max:{spec}})"


def ratio(a: float, b: float) -> float:
    return a / b if b else float("nan")


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A Markdown table (readable as is in a terminal)."""
    cols = [list(map(str, col)) for col in zip(headers, *rows, strict=False)]
    widths = [max(len(c) for c in col) for col in cols]
    lines = [
        "| " + " | ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)) + " |",
        "|" + "|".join("-" * (w + 2) for w in widths) + "|",
    ]
    lines += [
        "| " + " | ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)) + " |"
        for row in rows
    ]
    return "\n".join(lines)


def goal(ok: bool) -> str:
    return "met" if ok else "MISSED"
