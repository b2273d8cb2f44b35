r"""
Run examples/multiworker_app.py as a multi-worker deployment on this machine, without
containers: Redis, three uvicorn workers, HAProxy in front of them, and the emulator
standing in for SignalWire, each on a free loopback port.

    pip install 'relaycall[fastapi,redis]' uvicorn
    apt-get install redis-server haproxy     # or: brew install redis haproxy
    python examples/run_multiworker.py       # --workers N, --port P (the balancer's)

It prints where everything is, and how to place a call through the balancer:

    curl -X POST http://127.0.0.1:PORT/calls -H 'content-type: application/json' \
        -d '{"to": "+15557650000", "count": 3}'
    curl http://127.0.0.1:PORT/stats        # one worker's view; again for the next

The emulator posts every status callback to the balancer (the workers' PUBLIC_URL), so
most reach a worker that does not hold the call and travel on through Redis. Ctrl-C or
SIGTERM stops everything, in order: the balancer, the workers (each hangs up the calls it
still holds), then Redis and the emulator; the launcher exits once every child is gone. A
child that dies on its own stops the rest too (exit status 1, its log's end printed).

Each child runs in a session of its own, its output in a log file of a temporary
directory (printed; removed at the end). The workers get the environment of this
script (CALLS_PER_SECOND, HOLD, EVENT_LOG... see examples/multiworker_app.py) plus the
emulator's credentials, REDIS_URL, PUBLIC_URL and a RELAYCALL_SECRET shared by all.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import FrameType
from typing import Protocol

from _local_services import (
    INSTALL_HINTS,
    HAProxy,
    RedisServer,
    Server,
    ServiceError,
    find_binary,
    free_port,
    reap,
    tail,
    terminate,
)

EXAMPLES = Path(__file__).resolve().parent
PROJECT, TOKEN = "test-project", "test-token"


class Child(Protocol):
    """What the launcher needs of a service: its process, where it is, its log."""

    proc: subprocess.Popen[bytes] | None
    log: Path

    @property
    def url(self) -> str: ...

    def start(self, timeout: float = ...) -> object: ...


class Stop(Exception):
    """SIGINT or SIGTERM arrived: stop everything."""


def _on_signal(signum: int, _: FrameType | None) -> None:
    # Once: a second Ctrl-C while the children stop must not cut their shutdown short
    # (each is killed anyway after 10 s).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    raise Stop(signal.Signals(signum).name)


def stop_all(children: Sequence[Sequence[Child]]) -> None:
    """Stop the children group by group: SIGTERM to a whole group, then wait for it."""
    for group in children:
        procs = [c.proc for c in group]
        for proc in procs:
            terminate(proc)
        for proc in procs:
            reap(proc)


@contextlib.contextmanager
def deployment(args: argparse.Namespace, directory: Path) -> Iterator[list[tuple[str, Child]]]:
    """Start everything; yield (name, child) pairs; stop everything on the way out."""
    redis_binary, haproxy_binary = find_binary("redis-server"), find_binary("haproxy")
    for name, found in (("redis-server", redis_binary), ("haproxy", haproxy_binary)):
        if found is None:
            sys.exit(f"{name} not found: {INSTALL_HINTS[name]}")
    assert redis_binary is not None
    assert haproxy_binary is not None
    emulator_port = free_port()
    signing_key = secrets.token_hex(16)
    emulator = Server(
        "emulator",
        [sys.executable, "-m", "relaycall", "emulator", "--port", str(emulator_port),
         "--project", PROJECT, "--token", TOKEN, "--signing-key", signing_key,
         "--time-scale", str(args.time_scale)],
        emulator_port,
        directory,
    )  # fmt: skip
    redis = RedisServer(redis_binary, directory / "redis")
    ports = [free_port() for _ in range(args.workers)]
    balancer = HAProxy(haproxy_binary, directory / "haproxy", ports, port=args.port)
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("SIGNALWIRE_")},
        "SIGNALWIRE_BASE_URL": emulator.url,
        "SIGNALWIRE_PROJECT_ID": PROJECT,
        "SIGNALWIRE_API_TOKEN": TOKEN,
        "SIGNALWIRE_SIGNING_KEY": signing_key,
        "PUBLIC_URL": balancer.url,  # where the emulator sends the callbacks
        "REDIS_URL": redis.url,
        "RELAYCALL_SECRET": secrets.token_hex(32),  # the same for every worker
        "PYTHONUNBUFFERED": "1",
    }

    def worker(i: int, port: int) -> Server:
        argv = [sys.executable, "-m", "uvicorn", "multiworker_app:app", "--app-dir",
                str(EXAMPLES), "--host", "127.0.0.1", "--port", str(port)]  # fmt: skip
        return Server(f"worker {i}", argv, port, directory, env=env)

    workers = [worker(i, port) for i, port in enumerate(ports, 1)]
    started: list[tuple[str, Child]] = []
    try:
        # Each is listed before it starts: stopped even if it only half started.
        first: list[tuple[str, Child]] = [("emulator", emulator), ("redis", redis)]
        for name, child in first:
            started.append((name, child))
            child.start()
        for w in workers:  # side by side: each takes seconds to import its app
            started.append((w.name, w))
            w.launch()
        for w in workers:
            w.wait_ready()
        started.append(("balancer", balancer))
        balancer.start()
        yield started
    finally:
        # The balancer first (no new requests), then the workers, which hang up their calls
        # through the emulator and may still forward through Redis; those two last.
        stop_all([[balancer], workers, [redis, emulator]])


def describe(started: list[tuple[str, Child]], directory: Path) -> str:
    lines = ["relaycall multi-worker deployment (Ctrl-C stops it all):"]
    for name, child in started:
        pid = child.proc.pid if child.proc is not None else None
        lines.append(f"  {name:<10} {child.url:<32} pid {pid}")
    url = started[-1][1].url  # the balancer's
    lines += [
        f"  {'logs':<10} {directory}",
        "try:",
        f"  curl -X POST {url}/calls -H 'content-type: application/json' "
        """-d '{"to": "+15557650000", "count": 3}'""",
        f"  curl {url}/stats",
        "ready",
    ]
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    with (
        tempfile.TemporaryDirectory(prefix="relaycall-multiworker-") as tmp,
        deployment(args, Path(tmp)) as started,
    ):
        print(describe(started, Path(tmp)), flush=True)
        while True:  # until a signal (Stop) or a child's death
            for name, child in started:
                proc = child.proc
                if proc is not None and proc.poll() is not None:
                    print(f"{name} exited with {proc.returncode}; its log ends with:",
                          tail(child.log), "stopping the others", sep="\n", flush=True)  # fmt: skip
                    return 1
            time.sleep(0.2)


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, default=3, help="uvicorn workers (default 3)")
    parser.add_argument("--port", type=int, default=0, help="the balancer's (default: free)")
    parser.add_argument("--time-scale", type=float, default=1.0,
                        help="the emulator's speed-up (default 1: real time)")  # fmt: skip
    args = parser.parse_args(argv)
    if args.workers < 1:
        parser.error("--workers must be at least 1")
    if not 0 <= args.port < 65536:
        parser.error("--port must be 0 (a free one) to 65535")
    if not args.time_scale > 0:
        parser.error("--time-scale must be positive")
    return args


def main(argv: Sequence[str]) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGINT, _on_signal)
    signal.signal(signal.SIGTERM, _on_signal)
    try:
        return run(args)
    except Stop as stop:
        print(f"{stop}: stopped everything", flush=True)
        return 0
    except ServiceError as exc:
        print(f"could not start: {exc}", file=sys.stderr, flush=True)
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
