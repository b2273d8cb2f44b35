"""
Real components for the multi-worker tests and benchmarks: a ``redis-server`` and an
HAProxy round-robin balancer, each started on a free loopback port in a temporary
directory and stopped by its pid (never by name).

Binaries come from the Debian packages (``redis-server``, ``haproxy``); ``.ci/run``
installs them. :func:`need_binary` is the rule the tests follow when one is missing:
skip with a reason saying how to install it, or fail when the environment variable
``RELAYCALL_REQUIRE_SERVICES=1`` says the services must be there (as in CI).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from tests._programs import free_port

#: Set to 1 (``.ci/run`` does) and a missing binary fails the test instead of skipping it.
REQUIRE_SERVICES = "RELAYCALL_REQUIRE_SERVICES"

INSTALL_HINTS = {
    "redis-server": "apt-get install redis-server (Debian) / brew install redis",
    "haproxy": "apt-get install haproxy (Debian) / brew install haproxy",
}

#: Where Debian puts daemons that a non-root PATH may not list.
_SBIN = ("/usr/sbin", "/usr/local/sbin", "/sbin")


def find_binary(name: str) -> str | None:
    """The path of *name* on PATH or in the sbin directories, or None."""
    found = shutil.which(name)
    if found:
        return found
    for directory in _SBIN:
        candidate = Path(directory) / name
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    return None


def services_required() -> bool:
    """Whether a missing service binary is a failure here (``RELAYCALL_REQUIRE_SERVICES=1``)."""
    return os.environ.get(REQUIRE_SERVICES, "") == "1"


def need_binary(name: str) -> str:  # noqa: RET503 - pytest.skip and pytest.fail raise
    """
    The path of *name*; when it is missing, skip the test with a reason saying how to
    install it, or fail it when :data:`REQUIRE_SERVICES` is set to 1.
    """
    import pytest  # noqa: PLC0415 - tests only: benchmarks use find_binary, without pytest

    path = find_binary(name)
    if path is not None:
        return path
    reason = f"{name} not found: {INSTALL_HINTS.get(name, f'install {name}')}"
    if services_required():
        pytest.fail(f"{reason} ({REQUIRE_SERVICES}=1: the services must be installed)")
    pytest.skip(reason)


class ServiceError(RuntimeError):
    """A service did not start (its log is in the message)."""


def _wait_until(ready: Callable[[], bool], proc: subprocess.Popen[bytes], what: str,
                log: Path, timeout: float) -> None:  # fmt: skip
    """Poll *ready* (an external process: no event to await) until true, the process exits,
    or *timeout* seconds pass."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise ServiceError(f"{what} exited with {proc.returncode}:\n{_tail(log)}")
        if ready():
            return
        time.sleep(0.02)
    raise ServiceError(f"{what} not ready within {timeout} s:\n{_tail(log)}")


def _tail(log: Path, lines: int = 30) -> str:
    try:
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _stop(proc: subprocess.Popen[bytes] | None, timeout: float = 10.0) -> None:
    """SIGTERM the process by its pid, SIGKILL it after *timeout*; reap it."""
    if proc is None or proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait()


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def _pong(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
            s.sendall(b"PING\r\n")
            return s.recv(64).startswith(b"+PONG")
    except OSError:
        return False


class RedisServer:
    """
    ``redis-server`` on 127.0.0.1:*port* without persistence (``--save ''
    --appendonly no``), its files in *directory*. :meth:`restart` keeps the port, and
    loses every key, as a Redis restart without persistence does.

    With *appendonly*, every write is in the append-only file before Redis answers
    (``appendfsync always``): a restart keeps every key and stream entry, as a
    deployment that must not lose a forwarded callback across a Redis restart runs it.
    """

    def __init__(
        self, binary: str, directory: Path, port: int | None = None, *, appendonly: bool = False
    ) -> None:
        self.appendonly = appendonly
        self.binary = binary
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.log = self.directory / "redis.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.restarts = 0

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def pid(self) -> int | None:
        return None if self.proc is None else self.proc.pid

    def _argv(self) -> list[str]:
        return [
            self.binary,
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--save", "",
            *(["--appendonly", "yes", "--appendfsync", "always"] if self.appendonly
              else ["--appendonly", "no"]),
            "--dir", str(self.directory),
            "--daemonize", "no",
            "--logfile", str(self.log),
        ]  # fmt: skip

    def start(self, timeout: float = 10.0) -> RedisServer:
        """Start it and return once it answers PING."""
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                self._argv(), stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                cwd=self.directory,
            )  # fmt: skip
        _wait_until(lambda: _pong(self.port), self.proc, "redis-server", self.log, timeout)
        return self

    def stop(self) -> None:
        """Stop it (SIGTERM by pid, then SIGKILL)."""
        _stop(self.proc)

    def kill(self) -> None:
        """Kill it at once (SIGKILL by pid), as a crash would."""
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def restart(self, *, down_for: float = 0.0) -> None:
        """Stop it, stay down *down_for* seconds, start it again on the same port."""
        self.stop()
        if down_for:
            time.sleep(down_for)
        self.start()
        self.restarts += 1

    async def arestart(self, *, down_for: float = 0.0) -> None:
        """:meth:`restart` in a thread, so the event loop (and the emulator on it) runs on."""
        await asyncio.to_thread(self.restart, down_for=down_for)

    def command(self, *args: str) -> str:
        """Run ``redis-cli`` against it (diagnostics); returns its output."""
        cli = find_binary("redis-cli") or "redis-cli"
        out = subprocess.run(
            [cli, "-p", str(self.port), *args], capture_output=True, check=True, timeout=10
        )
        return out.stdout.decode()


HAPROXY_CONFIG = """\
global
    maxconn 4096

defaults
    mode http
    timeout connect 500ms
    # Idle client connections are kept longer than clients keep them (aiohttp: 15 s), so a
    # client never sends a request on a connection HAProxy is closing.
    timeout client 60s
    timeout http-keep-alive 60s
    timeout server 30s
    timeout http-request 10s
    # A request is kept whole, so it can be re-sent: to another worker when the one
    # it went to refuses the connection, dies before answering, or answers 502-504.
    option http-buffer-request
    retries 3
    option redispatch 1
    retry-on conn-failure empty-response junk-response response-timeout 502 503 504

frontend callbacks
    bind 127.0.0.1:{port}
    default_backend workers

backend workers
    balance roundrobin
    # A killed worker's port refuses connections: taken out after one failed check.
    default-server check inter {check_ms}ms fall 1 rise 2
{servers}
"""


class HAProxy:
    """HAProxy on 127.0.0.1:*port*, round-robin over *backends* (loopback ports)."""

    def __init__(
        self, binary: str, directory: Path, backends: Sequence[int], *, check_ms: int = 200
    ) -> None:
        self.binary = binary
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.backends = list(backends)
        self.port = free_port()
        self.check_ms = check_ms
        self.config = self.directory / "haproxy.cfg"
        self.log = self.directory / "haproxy.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        return None if self.proc is None else self.proc.pid

    def render(self) -> str:
        servers = "\n".join(
            f"    server w{i} 127.0.0.1:{port}" for i, port in enumerate(self.backends)
        )
        return HAPROXY_CONFIG.format(port=self.port, check_ms=self.check_ms, servers=servers)

    def start(self, timeout: float = 10.0) -> HAProxy:
        """Write the configuration, start it in the foreground (-db), return once it listens."""
        self.config.write_text(self.render())
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [self.binary, "-db", "-q", "-f", str(self.config)],
                stdin=subprocess.DEVNULL, stdout=log, stderr=log, cwd=self.directory,
            )  # fmt: skip
        _wait_until(lambda: _accepts(self.port), self.proc, "haproxy", self.log, timeout)
        return self

    def stop(self) -> None:
        _stop(self.proc)
