"""
Real components of a multi-worker deployment, started on loopback ports for a local
run: ``redis-server``, HAProxy (round-robin), and any server command (the emulator, a
uvicorn worker). Each runs in the foreground as a child process of its own session (a
Ctrl-C in the terminal reaches only the parent, which stops them in order), its output
in a log file, and is stopped by its pid, never by name.

examples/run_multiworker.py runs a deployment with these; the tests (tests/_services.py)
and benchmarks/multiworker.py start the same ones. Binaries come from the Debian packages
(``redis-server``, ``haproxy``): see :data:`INSTALL_HINTS`.
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
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

INSTALL_HINTS = {
    "redis-server": "apt-get install redis-server (Debian) / brew install redis",
    "haproxy": "apt-get install haproxy (Debian) / brew install haproxy",
}

#: Where Debian puts daemons that a non-root PATH may not list.
SBIN = ("/usr/sbin", "/usr/local/sbin", "/sbin")


def free_port() -> int:
    """A loopback port that was free a moment ago (for servers that need one given)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


def find_binary(name: str, sbin: Sequence[str] = SBIN) -> str | None:
    """The path of *name* on PATH or in the *sbin* directories, or None."""
    found = shutil.which(name)
    if found:
        return found
    for directory in sbin:
        candidate = Path(directory) / name
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    return None


class ServiceError(RuntimeError):
    """A service did not start (its log is in the message)."""


def _wait_until(ready: Callable[[], bool], proc: subprocess.Popen[bytes], what: str,
                log: Path, timeout: float) -> None:  # fmt: skip
    """Poll *ready* (an external process: no event to await) until true, the process exits,
    or *timeout* seconds pass."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise ServiceError(f"{what} exited with {proc.returncode}:\n{tail(log)}")
        if ready():
            return
        time.sleep(0.02)
    raise ServiceError(f"{what} not ready within {timeout} s:\n{tail(log)}")


def tail(log: Path, lines: int = 30) -> str:
    """The last *lines* of a log file."""
    try:
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _spawn(
    argv: Sequence[str], log: Path, cwd: Path, env: Mapping[str, str] | None = None
) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        # A session of its own: the terminal's Ctrl-C reaches the parent alone, which
        # stops the children in order (the balancer before the workers before Redis).
        return subprocess.Popen(
            list(argv), stdin=subprocess.DEVNULL, stdout=out, stderr=out, cwd=cwd,
            env=None if env is None else dict(env), start_new_session=True,
        )  # fmt: skip


def terminate(proc: subprocess.Popen[bytes] | None) -> None:
    """Send SIGTERM to the process by its pid, if it still runs."""
    if proc is not None and proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGTERM)


def reap(proc: subprocess.Popen[bytes] | None, timeout: float = 10.0) -> None:
    """Wait for the process to exit; SIGKILL it (by pid) after *timeout* seconds."""
    if proc is None:
        return
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait()


def _stop(proc: subprocess.Popen[bytes] | None, timeout: float = 10.0) -> None:
    """SIGTERM the process by its pid, SIGKILL it after *timeout*; reap it."""
    terminate(proc)
    reap(proc, timeout)


def accepts(port: int) -> bool:
    """Whether something accepts TCP connections on 127.0.0.1:*port*."""
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


class _Child:
    """A child process serving on 127.0.0.1:*port*, stopped by its pid."""

    port: int
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        return None if self.proc is None else self.proc.pid

    def stop(self) -> None:
        """Stop it (SIGTERM by pid, then SIGKILL after 10 s)."""
        _stop(self.proc)


class Server(_Child):
    """
    A command that serves HTTP on 127.0.0.1:*port* (the emulator, a uvicorn worker),
    its output in *directory*/*name*.log; :meth:`start` returns once the port accepts.
    """

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        port: int,
        directory: Path,
        *,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.port = port
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.env = env
        self.cwd = cwd or self.directory
        self.log = self.directory / f"{name.replace(' ', '-')}.log"
        self.proc = None

    def start(self, timeout: float = 30.0) -> Server:
        """Start it and return once its port accepts connections."""
        self.launch()
        self.wait_ready(timeout)
        return self

    def launch(self) -> None:
        """Start it, without waiting (start several, then :meth:`wait_ready` for each)."""
        self.proc = _spawn(self.argv, self.log, self.cwd, self.env)

    def wait_ready(self, timeout: float = 30.0) -> None:
        """Return once its port accepts connections; ServiceError if it exits first."""
        assert self.proc is not None
        _wait_until(lambda: accepts(self.port), self.proc, self.name, self.log, timeout)


class RedisServer(_Child):
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
        self.proc = None
        self.restarts = 0

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

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
        self.proc = _spawn(self._argv(), self.log, self.directory)
        _wait_until(lambda: _pong(self.port), self.proc, "redis-server", self.log, timeout)
        return self

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


class HAProxy(_Child):
    """
    HAProxy on 127.0.0.1:*port* (a free one by default), round-robin over *backends*
    (loopback ports), its configuration generated into *directory*.
    """

    def __init__(
        self,
        binary: str,
        directory: Path,
        backends: Sequence[int],
        *,
        check_ms: int = 200,
        port: int | None = None,
    ) -> None:
        self.binary = binary
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.backends = list(backends)
        self.port = port or free_port()
        self.check_ms = check_ms
        self.config = self.directory / "haproxy.cfg"
        self.log = self.directory / "haproxy.log"
        self.proc = None

    def render(self) -> str:
        servers = "\n".join(
            f"    server w{i} 127.0.0.1:{port}" for i, port in enumerate(self.backends)
        )
        return HAPROXY_CONFIG.format(port=self.port, check_ms=self.check_ms, servers=servers)

    def start(self, timeout: float = 10.0) -> HAProxy:
        """Write the configuration, start it in the foreground (-db), return once it listens."""
        self.config.write_text(self.render())
        argv = [self.binary, "-db", "-q", "-f", str(self.config)]
        self.proc = _spawn(argv, self.log, self.directory)
        _wait_until(lambda: accepts(self.port), self.proc, "haproxy", self.log, timeout)
        return self
