"""
Before and after: ``python -m benchmarks.compare REV [--rounds 9] [--concurrency 100] [--short]``.

``--coldstart``: the cold-start benchmark (``benchmarks/coldstart.py``) instead, for
relaycall at *REV*, in this tree, and bare aiohttp, alternating in fresh interpreters.

Runs benchmark 1's flows at one concurrency for relaycall as of git revision
*REV* (checked out in a temporary worktree), for relaycall in this tree, and
for the bare aiohttp client (and the same loop tuned as relaycall tunes its
aiohttp: ``aiohttp-tuned`` in ``benchmarks/throughput.py``), against one server
process, in fresh client processes every round (rotating the order), and prints
medians, ranges and every draw. For judging a change to the hot path when the
machine's noise is larger than the change: the sides share the same minutes of
the same machine.

Every side is driven by this tree's benchmark code (``benchmarks/throughput.py``);
only ``relaycall`` comes from *REV*'s tree. ``--short`` times each run from
before the session is built, with no warm-up (the short runs of
``throughput.run_short``): ``--short --flows 400 --concurrency 50``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from benchmarks import coldstart, throughput
from benchmarks._server import ServerProcess
from benchmarks._util import compile_package, ratio, table

ROOT = Path(__file__).resolve().parent.parent

# Run in a fresh interpreter: the benchmark code from this tree (imported first;
# it imports relaycall only inside its functions), then `relaycall` from *root*
# (put first on sys.path after that), so every revision is driven alike.
_CHILD = """
import json, sys
sys.path.insert(0, {here!r})
from benchmarks import throughput
assert throughput.__file__.startswith({here!r}), throughput.__file__
if {side!r} == "relaycall":
    sys.path.insert(0, {root!r})
    import relaycall
    assert relaycall.__file__.startswith({root!r}), relaycall.__file__
result = throughput.run_side({side!r}, {url!r}, {concurrency}, {flows}, {headers!r}, {warm!r})
print(json.dumps(result))
"""


def _run(
    root: Path, side: str, url: str, concurrency: int, flows: int, warm: bool
) -> dict[str, float]:
    code = _CHILD.format(
        here=str(ROOT),
        root=str(root),
        side=side,
        url=url,
        concurrency=concurrency,
        flows=flows,
        headers=throughput.relaycall_headers(),
        warm=warm,
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"{side} in {root} failed:\n{done.stderr[-2000:]}")
    figures: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return figures


@contextlib.contextmanager
def checkout(rev: str) -> Iterator[Path]:
    """*rev* checked out in a temporary git worktree, removed afterwards."""
    with tempfile.TemporaryDirectory(prefix="relaycall-compare-") as tmp:
        old = Path(tmp) / "tree"
        subprocess.run(
            ["git", "-C", str(ROOT), "worktree", "add", "--detach", "-q", str(old), rev],
            check=True,
        )
        try:
            yield old
        finally:
            subprocess.run(
                ["git", "-C", str(ROOT), "worktree", "remove", "--force", str(old)], check=False
            )


def compare(
    rev: str, rounds: int, concurrency: int, flows: int, *, short: bool = False
) -> dict[str, list[Any]]:
    with checkout(rev) as old:
        sides = [(f"relaycall {rev}", old, "relaycall"), ("relaycall (this tree)", ROOT,
                 "relaycall"), ("aiohttp", ROOT, "aiohttp"),
                 ("aiohttp, tuned", ROOT, "aiohttp-tuned")]  # fmt: skip
        runs: dict[str, list[Any]] = {name: [] for name, _, _ in sides}
        for root in (old, ROOT):  # first-use imports must not compile inside a short run
            compile_package(root / "relaycall")
        with ServerProcess() as server:
            for r in range(rounds):
                turn = r % len(sides)
                for name, root, side in sides[turn:] + sides[:turn]:
                    runs[name].append(
                        _run(root, side, server.base_url, concurrency, flows, not short)
                    )
        return runs


def compare_coldstart(rev: str, rounds: int, instructions: bool = False) -> dict[str, Any]:
    """The cold-start benchmark for relaycall at *rev*, in this tree, and bare aiohttp."""
    with checkout(rev) as old, ServerProcess() as server:
        trees = [(f"relaycall {rev}", old), ("relaycall (this tree)", ROOT)]
        return coldstart.run(
            server.base_url,
            rounds,
            trees,
            importtime_runs=min(rounds, 5),
            count_instructions=instructions,
        )


def report(runs: dict[str, list[Any]], concurrency: int, *, short: bool = False) -> str:
    bare, tuned = runs["aiohttp"], runs["aiohttp, tuned"]
    bare_cpu = statistics.median(r["cpu_us_per_command"] for r in bare)
    bare_tput = statistics.median(r["commands_per_s"] for r in bare)
    rows = []
    for name, rs in runs.items():
        cpu = [r["cpu_us_per_command"] for r in rs]
        tput = [r["commands_per_s"] for r in rs]
        gc_us = [r.get("gc_us_per_command", math.nan) for r in rs]
        # Each round ran every side back to back: its ratio shares that round's load.
        pairs = list(zip(rs, bare, strict=True))
        paired_cpu = [a["cpu_us_per_command"] / b["cpu_us_per_command"] for a, b in pairs]
        paired_tput = [a["commands_per_s"] / b["commands_per_s"] for a, b in pairs]
        to_tuned = list(zip(rs, tuned, strict=True))
        tuned_cpu = [a["cpu_us_per_command"] / b["cpu_us_per_command"] for a, b in to_tuned]
        tuned_tput = [a["commands_per_s"] / b["commands_per_s"] for a, b in to_tuned]
        rows.append(
            [
                name,
                f"{statistics.median(cpu):,.1f} ({min(cpu):,.1f}-{max(cpu):,.1f})",
                f"{ratio(statistics.median(cpu), bare_cpu):.2f}x",
                f"{statistics.median(paired_cpu):.2f}x",
                f"{statistics.median(tput):,.0f} ({min(tput):,.0f}-{max(tput):,.0f})",
                f"{ratio(statistics.median(tput), bare_tput):.2f}x",
                f"{statistics.median(paired_tput):.2f}x",
                f"{statistics.median(tuned_cpu):.2f}x, {statistics.median(tuned_tput):.2f}x",
                f"{statistics.median(gc_us):.1f}",
                ", ".join(f"{c:.1f}" for c in sorted(cpu)),
            ]
        )
    head = [
        "client",
        "CPU µs/command",
        "vs aiohttp",
        "per round",
        "commands/s",
        "vs aiohttp",
        "per round",
        "per round vs tuned: CPU, commands/s",
        "in the collector, µs/command",
        "every draw, µs/command",
    ]
    flows = bare[0]["commands"] // throughput.COMMANDS_PER_FLOW
    kind = "short runs (no warm-up, timed from the session's creation)" if short else "warm"
    title = f"## Concurrency {concurrency}, {flows} flows, {kind}, {len(bare)} rounds"
    note = (
        '"vs aiohttp": ratio of the medians; "per round": median of each round\'s ratio '
        "(the sides of a round run back to back, so a slow minute slows them alike). "
        '"vs tuned": the same, against aiohttp tuned as relaycall tunes it.'
    )
    return f"{title}\n\n" + table(head, rows) + f"\n\n{note}"


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m benchmarks.compare", description=__doc__)
    p.add_argument("rev", help="the git revision to compare this tree with")
    p.add_argument("--rounds", type=int, default=9)
    p.add_argument("--concurrency", type=int, default=100)
    p.add_argument("--flows", type=int, default=1500)
    p.add_argument(
        "--short",
        action="store_true",
        help="no warm-up: time each fresh process from the session's creation",
    )
    p.add_argument(
        "--coldstart", action="store_true", help="compare cold starts (benchmarks/coldstart.py)"
    )
    p.add_argument(
        "--instructions",
        action="store_true",
        help="with --coldstart: also count each side's instructions under valgrind",
    )
    args = p.parse_args()
    if args.coldstart:
        print(coldstart.report(compare_coldstart(args.rev, args.rounds, args.instructions)))
        return
    runs = compare(args.rev, args.rounds, args.concurrency, args.flows, short=args.short)
    print(report(runs, args.concurrency, short=args.short))


if __name__ == "__main__":
    main()
