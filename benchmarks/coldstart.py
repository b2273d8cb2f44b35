"""
Benchmark 6: cold start. What a fresh process pays before and at its first commands.

Each round starts fresh interpreters (``python -c``), alternating the sides, against the
benchmark server process:

- ``relaycall``: ``import relaycall``, open an ``AsyncRelay``, ``relay.dial(...)``,
  ``call.play(tts(...))``, ``pb.stop()``, ``call.end()``, close, exit;
- ``aiohttp``: a bare script posting the same four bodies, byte for byte, with the same
  headers, pool and timeouts (as benchmark 1's bare side), and decoding each reply.

The wall time is the parent's, from spawning the interpreter to its exit: interpreter
start-up, imports, the session, the four round trips and shutdown. Beside it, import times
in fresh interpreters (``import aiohttp`` alone against ``import relaycall``) and the
``-X importtime`` modules that cost the most of their own time.

Bytecode: the children may write ``__pycache__`` (``PYTHONDONTWRITEBYTECODE`` is dropped
from their environment) and one unmeasured warm-up run per side comes first, so every
measured run reads compiled bytecode, as an installed package does.
"""

from __future__ import annotations

import json
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks import throughput
from benchmarks._server import PROJECT, TOKEN
from benchmarks._util import Summary, goal, ratio, table

ROOT = Path(__file__).resolve().parent.parent

#: The cold-start goals of issue 15.
WALL_GOAL = 1.25
IMPORT_GOAL_MS = 60.0

# The child scripts are self-contained: the bare one imports nothing of relaycall or of the
# benchmarks (benchmarks._server alone would import aiohttp.web), and each reports what it
# measured itself as one JSON line.
_RELAYCALL = """
import time
t0 = time.perf_counter()
import asyncio, json, sys
sys.path.insert(0, {root!r})
import relaycall
assert relaycall.__file__.startswith({root!r}), relaycall.__file__
t1 = time.perf_counter()

async def main():
    async with relaycall.AsyncRelay({project!r}, {token!r}, base_url={url!r}) as relay:
        call = await relay.dial(from_={from_!r}, to={to!r}, url={swml!r})
        pb = await call.play(relaycall.tts({text!r}))
        await pb.stop()
        await call.end()

asyncio.run(main())
t2 = time.perf_counter()
print(json.dumps({{"import_ms": (t1 - t0) * 1e3, "work_ms": (t2 - t1) * 1e3,
                  "modules": len(sys.modules)}}))
"""

_BARE = """
import time
t0 = time.perf_counter()
import asyncio, json, secrets, sys
import aiohttp
t1 = time.perf_counter()

HEADERS = {headers!r}

def encode(body):
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()

async def main():
    connector = aiohttp.TCPConnector(limit={limit}, limit_per_host=0, keepalive_timeout=15)
    timeout = aiohttp.ClientTimeout(total=30, connect=5, sock_read=30)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

        async def post(body):
            async with session.post({url!r} + "/api/calling/calls", data=encode(body),
                                    headers=HEADERS, allow_redirects=False) as r:
                data = await r.read()
                if r.status != 200:
                    raise RuntimeError(f"HTTP {{r.status}}: {{data[:200]!r}}")
                return json.loads(data)

        leg = await post({{"command": "dial",
                          "params": {{"from": {from_!r}, "to": {to!r}, "url": {swml!r}}}}})
        call_id = leg["id"]
        play = secrets.token_urlsafe(12)
        await post({{"command": "calling.play", "id": call_id, "params": {{"control_id": play,
                    "play": [{{"type": "tts", "params": {{"text": {text!r}}}}}]}}}})
        await post({{"command": "calling.play.stop", "id": call_id,
                    "params": {{"control_id": play}}}})
        await post({{"command": "calling.end", "id": call_id, "params": {{}}}})

asyncio.run(main())
t2 = time.perf_counter()
print(json.dumps({{"import_ms": (t1 - t0) * 1e3, "work_ms": (t2 - t1) * 1e3,
                  "modules": len(sys.modules)}}))
"""

_IMPORT = """
import sys
sys.path.insert(0, {root!r})
import time
t0 = time.perf_counter()
import {module}
t1 = time.perf_counter()
print((t1 - t0) * 1e3)
"""


def child_env() -> dict[str, str]:
    """The environment of every child: bytecode may be cached (see the module docstring)."""
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


def script(side: str, base_url: str, root: Path, headers: dict[str, str]) -> str:
    """The child's source: ``relaycall`` (from the tree at *root*) or ``aiohttp``."""
    values = {
        "root": str(root),
        "project": PROJECT,
        "token": TOKEN,
        "url": base_url,
        "from_": throughput.FROM,
        "to": throughput.TO,
        "swml": throughput.SWML_URL,
        "text": throughput.TEXT,
        "headers": headers,
        "limit": 100,
    }
    if side == "relaycall":
        return _RELAYCALL.format(**values)
    if side == "aiohttp":
        return _BARE.format(**values)
    raise ValueError(side)


def _children_cpu_ms() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (usage.ru_utime + usage.ru_stime) * 1e3


def _python(code: str, cwd: Path, *flags: str) -> tuple[float, subprocess.CompletedProcess[str]]:
    t0 = time.perf_counter()
    done = subprocess.run(
        [sys.executable, *flags, "-c", code],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=child_env(),
        check=False,
        timeout=120,
    )
    wall_ms = (time.perf_counter() - t0) * 1e3
    if done.returncode != 0:
        raise RuntimeError(f"a cold-start child in {cwd} failed:\n{done.stderr[-2000:]}")
    return wall_ms, done


def run_once(code: str, cwd: Path) -> dict[str, float]:
    """
    One fresh interpreter: the parent's wall time, the child's CPU time (user + system, from
    start to exit: less sensitive to a busy machine than the wall time) and what it measured.
    """
    cpu0 = _children_cpu_ms()
    wall_ms, done = _python(code, cwd)
    figures: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    figures["wall_ms"] = wall_ms
    figures["cpu_ms"] = _children_cpu_ms() - cpu0
    return figures


def import_once(module: str, root: Path) -> float:
    """Milliseconds ``import module`` takes in a fresh interpreter (relaycall from *root*)."""
    _, done = _python(_IMPORT.format(root=str(root), module=module), root)
    return float(done.stdout.strip().splitlines()[-1])


_IREFS = re.compile(r"I\s+refs:\s+([\d,]+)")


def valgrind_available() -> bool:
    return shutil.which("valgrind") is not None


def instructions(code: str, cwd: Path) -> int:
    """
    Instructions one fresh interpreter executes, counted by valgrind (cachegrind, no cache
    simulation): the same on a busy machine as on an idle one, where wall and CPU time are not.
    """
    done = subprocess.run(
        ["valgrind", "--tool=cachegrind", "--cache-sim=no", "--cachegrind-out-file=/dev/null",
         sys.executable, "-c", code],
        capture_output=True, text=True, cwd=cwd, env=child_env(), check=False, timeout=600,
    )  # fmt: skip
    found = _IREFS.search(done.stderr)
    if done.returncode != 0 or found is None:
        raise RuntimeError(f"valgrind failed in {cwd}:\n{done.stderr[-2000:]}")
    return int(found[1].replace(",", ""))


_IMPORTTIME = re.compile(r"import time:\s+(\d+) \|\s+(\d+) \|( *)(\S+)")


def importtime(root: Path, runs: int) -> dict[str, dict[str, float]]:
    """
    ``python -X importtime -c "import relaycall"``, *runs* times: per module, the smallest
    own and cumulative time (ms) over the runs; the smallest is the least noisy estimate.
    """
    own: dict[str, list[float]] = {}
    cum: dict[str, list[float]] = {}
    code = f"import sys; sys.path.insert(0, {str(root)!r}); import relaycall"
    for _ in range(runs):
        _, done = _python(code, root, "-X", "importtime")
        for m in _IMPORTTIME.finditer(done.stderr):
            own.setdefault(m[4], []).append(int(m[1]) / 1e3)
            cum.setdefault(m[4], []).append(int(m[2]) / 1e3)
    return {name: {"own_ms": min(own[name]), "cum_ms": min(cum[name])} for name in own}


def run(
    base_url: str,
    rounds: int,
    trees: list[tuple[str, Path]] | None = None,
    importtime_runs: int = 3,
    count_instructions: bool = False,
) -> dict[str, Any]:
    """
    *rounds* rounds of every side in fresh interpreters, the order rotated each round.

    *trees*: the relaycall sides, ``(name, root)`` (default: this tree, named
    ``relaycall``); the bare aiohttp side is always measured too. *count_instructions*:
    also one run of each side under valgrind (:func:`instructions`).
    """
    trees = trees or [("relaycall", ROOT)]
    headers = throughput.relaycall_headers()
    sides: list[tuple[str, str, Path]] = [(name, "relaycall", root) for name, root in trees]
    sides.append(("aiohttp", "aiohttp", ROOT))
    codes = {name: script(kind, base_url, root, headers) for name, kind, root in sides}
    roots = {name: root for name, _, root in sides}
    modules = {name: "aiohttp" if kind == "aiohttp" else "relaycall" for name, kind, _ in sides}
    # Unmeasured: writes bytecode and warms the page cache for every side.
    for name, _, root in sides:
        run_once(codes[name], root)
    runs: dict[str, list[dict[str, float]]] = {name: [] for name, _, _ in sides}
    imports: dict[str, list[float]] = {name: [] for name, _, _ in sides}
    n = len(sides)
    for r in range(rounds):
        order = sides[r % n :] + sides[: r % n]
        for name, _, _ in order:
            runs[name].append(run_once(codes[name], roots[name]))
        for name, _, _ in order:
            imports[name].append(import_once(modules[name], roots[name]))
    offenders = {name: importtime(root, importtime_runs) for name, root in trees}
    counted = {}
    if count_instructions:
        counted = {name: instructions(codes[name], roots[name]) for name, _, _ in sides}
    return {
        "sides": [name for name, _, _ in sides],
        "rounds": rounds,
        "runs": runs,
        "imports": imports,
        "importtime": offenders,
        "instructions": counted,
    }


def report(res: dict[str, Any], top: int = 12) -> str:
    bare_wall = statistics.median(r["wall_ms"] for r in res["runs"]["aiohttp"])
    bare_cpu = statistics.median(r["cpu_ms"] for r in res["runs"]["aiohttp"])
    bare_import = statistics.median(res["imports"]["aiohttp"])
    rows = []
    for name in res["sides"]:
        runs = res["runs"][name]
        wall = Summary.of([r["wall_ms"] for r in runs])
        cpu = Summary.of([r["cpu_ms"] for r in runs])
        imp = Summary.of(res["imports"][name])
        rows.append(
            [
                name,
                wall.fmt(),
                f"{ratio(wall.median, bare_wall):.2f}x",
                cpu.fmt(),
                f"{ratio(cpu.median, bare_cpu):.2f}x",
                Summary.of([r["work_ms"] for r in runs]).fmt(),
                imp.fmt(),
                f"{imp.median - bare_import:+,.0f}",
                f"{statistics.median(r['modules'] for r in runs):.0f}",
            ]
        )
    lines = [
        "## Cold start: a fresh process sends dial, play, play.stop, end",
        "",
        f"{res['rounds']} rounds; medians (min-max), in ms.",
        "",
        table(
            [
                "client",
                "process wall ms",
                "vs aiohttp",
                "process CPU ms",
                "vs aiohttp",
                "session + 4 commands ms",
                "`import` ms (alone)",
                "vs import aiohttp",
                "modules loaded",
            ],
            rows,
        ),
    ]
    for name in res["sides"]:
        if name == "aiohttp":
            continue
        w = ratio(statistics.median(r["wall_ms"] for r in res["runs"][name]), bare_wall)
        c = ratio(statistics.median(r["cpu_ms"] for r in res["runs"][name]), bare_cpu)
        extra = statistics.median(res["imports"][name]) - bare_import
        lines += [
            "",
            f"Goals ({name}): wall {w:.2f}x aiohttp (<= {WALL_GOAL}x: {goal(w <= WALL_GOAL)}; "
            f"CPU {c:.2f}x); "
            f"import {extra:+.0f} ms over aiohttp (<= {IMPORT_GOAL_MS:.0f} ms: "
            f"{goal(extra <= IMPORT_GOAL_MS)})",
        ]
    counted = res.get("instructions") or {}
    if counted:
        bare = counted["aiohttp"]
        lines += [
            "",
            "Instructions executed, one run of each under valgrind (the same on a busy machine): "
            + ", ".join(
                f"{name} {n / 1e6:,.0f} M ({ratio(n, bare):.2f}x)" for name, n in counted.items()
            ),
        ]
    for name, modules in res["importtime"].items():
        worst = sorted(modules.items(), key=lambda kv: -kv[1]["own_ms"])[:top]
        lines += [
            "",
            f"`python -X importtime -c 'import relaycall'` ({name}): the {top} modules with "
            "the most time of their own (smallest over the runs)",
            "",
            table(
                ["module", "own ms", "cumulative ms"],
                [[m, f"{f['own_ms']:.1f}", f"{f['cum_ms']:.1f}"] for m, f in worst],
            ),
        ]
    return "\n".join(lines)
