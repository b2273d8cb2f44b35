"""
``python -m benchmarks [--quick] [names...]``: run the benchmarks, print medians and ratios.

Names: throughput, short, scale, memory, ingest, emulator, coldstart (default: all). See
benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

import attrs

from benchmarks import coldstart, emulator, ingest, scale, throughput
from benchmarks._server import ServerProcess
from benchmarks._util import SIZES, Summary
from benchmarks.plot import matplotlib_available, plot

NAMES = ("throughput", "short", "scale", "memory", "ingest", "emulator", "coldstart")
HERE = Path(__file__).resolve().parent


def machine() -> dict[str, Any]:
    cpu = platform.processor() or "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    versions: dict[str, str | None] = {}
    for dist in ("relaycall", "aiohttp", "attrs", "cattrs", "signalwire-sdk", "requests"):
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            versions[dist] = None
    return {
        "cores": os.cpu_count(),
        "cpu": cpu,
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "versions": versions,
    }


def machine_text(m: dict[str, Any]) -> str:
    v = ", ".join(f"{k} {ver}" for k, ver in m["versions"].items() if ver)
    return (
        f"Machine: {m['cores']} cores ({m['cpu']}), {m['implementation']} {m['python']}, "
        f"{m['platform']}\nPackages: {v}"
    )


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    p.add_argument("names", nargs="*", metavar="name", help=f"any of {', '.join(NAMES)}")
    p.add_argument("--quick", action="store_true", help="small sizes: a smoke test")
    p.add_argument("--tiny", action="store_true", help=argparse.SUPPRESS)  # the test suite's size
    p.add_argument("--rounds", type=int, help="repeat each measurement this many times")
    p.add_argument("--no-sdk", action="store_true", help="skip the signalwire-sdk side")
    p.add_argument(
        "--plot",
        type=Path,
        help="where to write the throughput plot (default: benchmarks/throughput.png on a "
        "full run; none with --quick)",
    )
    p.add_argument("--no-plot", action="store_true", help="do not write the plot")
    p.add_argument(
        "--instructions",
        action="store_true",
        help="coldstart: also count each side's instructions under valgrind (about a minute)",
    )
    p.add_argument("--json", type=Path, help="also write every raw figure to this file")
    return p


def run(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = parser().parse_args(argv)
    unknown = [n for n in args.names if n not in NAMES]
    if unknown:
        parser().error(f"unknown benchmark(s): {', '.join(unknown)}; choose from {NAMES}")
    names = [n for n in NAMES if n in args.names] if args.names else list(NAMES)
    sizes = SIZES["tiny" if args.tiny else "quick" if args.quick else "full"]
    if args.rounds:
        sizes = attrs.evolve(
            sizes,
            rounds=args.rounds,
            scale_rounds=args.rounds,
            short_rounds=args.rounds,
            coldstart_rounds=args.rounds,
        )
    m = machine()
    out: dict[str, Any] = {"machine": m, "sizes": attrs.asdict(sizes), "argv": sys.argv}
    print(machine_text(m))
    print(f"Sizes: {sizes.name}; rounds: {sizes.rounds}; benchmarks: {', '.join(names)}\n")
    started = time.perf_counter()
    needs_server = any(n != "emulator" for n in names)
    server = ServerProcess().start() if needs_server else None
    try:
        for name in names:
            t0 = time.perf_counter()
            if name == "throughput":
                assert server is not None
                res = throughput.run(server.base_url, sizes, sdk=not args.no_sdk)
                text = throughput.report(res)
                if "sdk" not in res["sides"] and not args.no_sdk:
                    text += "\n(signalwire-sdk is not installed: `pip install signalwire-sdk`)"
                path = args.plot or (HERE / "throughput.png" if sizes.name == "full" else None)
                if path is not None and not args.no_plot:
                    if matplotlib_available():
                        text += f"\n\nPlot: {plot(res, path)}"
                    else:
                        text += "\n\n(no plot: matplotlib is not installed)"
            elif name == "short":
                assert server is not None
                res = throughput.run_short(server.base_url, sizes)
                text = throughput.report_short(res)
            elif name == "scale":
                assert server is not None
                res = scale.run_scale(server.base_url, sizes)
                text = scale.report_scale(res)
            elif name == "memory":
                assert server is not None
                res = scale.run_memory(server.base_url, sizes)
                text = scale.report_memory(res)
            elif name == "ingest":
                assert server is not None
                res = ingest.run(server.base_url, sizes)
                text = ingest.report(res)
            elif name == "coldstart":
                assert server is not None
                res = coldstart.run(
                    server.base_url,
                    sizes.coldstart_rounds,
                    importtime_runs=min(sizes.coldstart_rounds, 5),
                    count_instructions=args.instructions,
                )
                text = coldstart.report(res)
            else:
                res = emulator.run(sizes)
                text = emulator.report(res)
            out[name] = res
            print(text)
            print(f"\n({name}: {time.perf_counter() - t0:.0f} s)\n", flush=True)
    finally:
        if server is not None:
            server.stop()
    out["total_s"] = time.perf_counter() - started
    print(f"Total: {out['total_s']:.0f} s")
    if args.json:
        args.json.write_text(json.dumps(out, indent=1, default=_jsonable))
    return out


def _jsonable(o: Any) -> Any:
    if isinstance(o, Summary):
        return attrs.asdict(o)
    return str(o)


def main() -> None:
    run()


if __name__ == "__main__":
    main()
