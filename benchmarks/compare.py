"""
Before and after: ``python -m benchmarks.compare REV [--rounds 9] [--concurrency 100]``.

``--coldstart``: the cold-start benchmark (``benchmarks/coldstart.py``) instead, for
relaycall at *REV*, in this tree, and bare aiohttp, alternating in fresh interpreters.

Runs benchmark 1's flows at one concurrency for relaycall as of git revision
*REV* (checked out in a temporary worktree), for relaycall in this tree, and
for the bare aiohttp client, against one server process, in fresh client
processes every round (rotating the order), and prints medians, ranges and
every draw. For judging a change to the hot path when the machine's noise is
larger than the change: the sides share the same minutes of the same machine.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from benchmarks import coldstart, throughput
from benchmarks._server import ServerProcess
from benchmarks._util import ratio, table

ROOT = Path(__file__).resolve().parent.parent

# Run in a fresh interpreter whose sys.path starts with *root*, so `relaycall`
# (and the benchmark code driving it) come from that tree.
_CHILD = """
import json, sys
sys.path.insert(0, {root!r})
import relaycall
assert relaycall.__file__.startswith({root!r}), relaycall.__file__
from benchmarks import throughput
result = throughput.run_side({side!r}, {url!r}, {concurrency}, {flows}, {headers!r})
print(json.dumps(result))
"""


def _run(root: Path, side: str, url: str, concurrency: int, flows: int) -> dict[str, float]:
    code = _CHILD.format(
        root=str(root),
        side=side,
        url=url,
        concurrency=concurrency,
        flows=flows,
        headers=throughput.relaycall_headers(),
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=root, check=False
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


def compare(rev: str, rounds: int, concurrency: int, flows: int) -> dict[str, list[Any]]:
    with checkout(rev) as old:
        sides = [(f"relaycall {rev}", old, "relaycall"), ("relaycall (this tree)", ROOT,
                 "relaycall"), ("aiohttp", ROOT, "aiohttp")]  # fmt: skip
        runs: dict[str, list[Any]] = {name: [] for name, _, _ in sides}
        with ServerProcess() as server:
            for r in range(rounds):
                for name, root, side in sides[r % 3 :] + sides[: r % 3]:
                    runs[name].append(_run(root, side, server.base_url, concurrency, flows))
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


def report(runs: dict[str, list[Any]], concurrency: int) -> str:
    bare = runs["aiohttp"]
    bare_cpu = statistics.median(r["cpu_us_per_command"] for r in bare)
    bare_tput = statistics.median(r["commands_per_s"] for r in bare)
    rows = []
    for name, rs in runs.items():
        cpu = [r["cpu_us_per_command"] for r in rs]
        tput = [r["commands_per_s"] for r in rs]
        rows.append(
            [
                name,
                f"{statistics.median(cpu):,.1f} ({min(cpu):,.1f}-{max(cpu):,.1f})",
                f"{ratio(statistics.median(cpu), bare_cpu):.2f}x",
                f"{statistics.median(tput):,.0f} ({min(tput):,.0f}-{max(tput):,.0f})",
                f"{ratio(statistics.median(tput), bare_tput):.2f}x",
                ", ".join(f"{c:.1f}" for c in sorted(cpu)),
            ]
        )
    head = [
        "client",
        "CPU µs/command",
        "vs aiohttp",
        "commands/s",
        "vs aiohttp",
        "every draw, µs/command",
    ]
    return f"## Concurrency {concurrency}, {len(bare)} rounds\n\n" + table(head, rows)


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m benchmarks.compare", description=__doc__)
    p.add_argument("rev", help="the git revision to compare this tree with")
    p.add_argument("--rounds", type=int, default=9)
    p.add_argument("--concurrency", type=int, default=100)
    p.add_argument("--flows", type=int, default=1500)
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
    runs = compare(args.rev, args.rounds, args.concurrency, args.flows)
    print(report(runs, args.concurrency))


if __name__ == "__main__":
    main()
