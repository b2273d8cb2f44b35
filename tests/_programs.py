"""
Run programs as a user would: a subprocess (an example, a README snippet, uvicorn)
pointed at an emulator that runs in the test's own event loop.

The emulator signs its callbacks; a program finds the emulator, its credentials and
the signing key in the SIGNALWIRE_* variables of :func:`program_env`, exactly as it
would find the real platform's.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from examples._local_services import free_port
from relaycall.testing import Emulator

__all__ = [
    "PYTHON",
    "REPO",
    "SIGNING_KEY",
    "Program",
    "assert_callbacks_received",
    "free_port",
    "program_env",
    "run_program",
]

PYTHON = sys.executable
REPO = Path(__file__).resolve().parent.parent
SIGNING_KEY = "docs-and-examples-signing-key"


def program_env(emu: Emulator | None, **extra: str) -> dict[str, str]:
    """
    The environment of a program pointed at *emu* (a started one): this process's,
    without any SIGNALWIRE_* or pytest variables of its own, plus the emulator's URL
    and keys. With None, no credentials at all.
    """
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("SIGNALWIRE_", "PYTEST_")) and k not in ("PUBLIC_URL", "PORT")
    }
    env["PYTHONUNBUFFERED"] = "1"  # output arrives as it is printed, for wait_for_output
    if emu is not None:
        env.update(
            SIGNALWIRE_BASE_URL=emu.base_url,
            SIGNALWIRE_PROJECT_ID=emu.config.project_id,
            SIGNALWIRE_API_TOKEN=emu.config.token,
            SIGNALWIRE_SIGNING_KEY=emu.config.signing_key or "",
        )
    env.update(extra)
    return env


def assert_callbacks_received(emu: Emulator, call_id: str | None = None) -> None:
    """
    The program received the emulator's callbacks (about *call_id*) and refused none.

    Callbacks that found nobody listening are allowed: a program that hangs up and
    exits may be gone before the call's last callback, as it would be on the platform.
    """
    sent = [c for c in emu.callbacks if call_id is None or c.call_id == call_id]
    assert any(c.outcome == "delivered" for c in sent), f"no callback was received: {sent}"
    refused = [c for c in sent if c.status is not None and not 200 <= c.status < 300]
    assert not refused, f"callbacks refused: {refused}"


class Program:
    """A subprocess whose output (stdout and stderr, merged) is collected as it comes."""

    def __init__(self, argv: Sequence[str], *, env: Mapping[str, str], cwd: Path) -> None:
        self.argv = list(argv)
        self._env = dict(env)
        self._cwd = cwd
        self._chunks: list[str] = []
        self._more = asyncio.Event()
        self._proc: asyncio.subprocess.Process | None = None
        self._reader: asyncio.Task[None] | None = None

    @property
    def output(self) -> str:
        return "".join(self._chunks)

    @property
    def returncode(self) -> int | None:
        return None if self._proc is None else self._proc.returncode

    async def start(self) -> Program:
        self._proc = await asyncio.create_subprocess_exec(
            *self.argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            env=self._env,
            cwd=self._cwd,
        )
        self._reader = asyncio.create_task(self._read())
        return self

    async def _read(self) -> None:
        assert self._proc is not None
        assert self._proc.stdout is not None
        while chunk := await self._proc.stdout.read(4096):
            self._chunks.append(chunk.decode(errors="replace"))
            self._more.set()
        self._more.set()

    def _describe(self) -> str:
        return f"{' '.join(self.argv)!r} (exit {self.returncode}); output:\n{self.output}"

    async def wait_for_output(self, pattern: str, timeout: float = 20) -> re.Match[str]:
        """Wait until the output matches *pattern* (a regex); fail if the program exits first."""
        reader = self._reader
        assert reader is not None

        async def found() -> re.Match[str]:
            while True:
                match = re.search(pattern, self.output)
                if match:
                    return match
                if reader.done():
                    raise AssertionError(f"exited before printing {pattern!r}: {self._describe()}")
                self._more.clear()
                await self._more.wait()

        try:
            return await asyncio.wait_for(found(), timeout)
        except asyncio.TimeoutError:
            raise AssertionError(f"no {pattern!r} within {timeout} s: {self._describe()}") from None

    async def wait(self, timeout: float = 60) -> int:
        """Wait for the program to exit and for all its output; kill it after *timeout*."""
        assert self._proc is not None
        assert self._reader is not None
        try:
            await asyncio.wait_for(self._proc.wait(), timeout)
            await asyncio.wait_for(asyncio.shield(self._reader), timeout)
        except asyncio.TimeoutError:
            await self.kill()
            raise AssertionError(f"still running after {timeout} s: {self._describe()}") from None
        assert self._proc.returncode is not None
        return self._proc.returncode

    async def stop(self, timeout: float = 20) -> int:
        """Ask the program to stop (SIGTERM, as a process manager would) and wait for it."""
        assert self._proc is not None
        if self._proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self._proc.send_signal(signal.SIGTERM)
        return await self.wait(timeout)

    def interrupt(self) -> None:
        """Send SIGINT, as Ctrl-C would."""
        assert self._proc is not None
        with contextlib.suppress(ProcessLookupError):
            self._proc.send_signal(signal.SIGINT)

    async def kill(self) -> None:
        """Kill the program if it still runs (the cleanup of last resort)."""
        if self._proc is not None and self._proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self._proc.kill()
            await self._proc.wait()
        if self._reader is not None:
            await self._reader


async def run_program(
    argv: Sequence[str], *, env: Mapping[str, str], cwd: Path, timeout: float = 60
) -> tuple[int, str]:
    """Run a program to completion; return its exit status and output."""
    program = await Program(argv, env=env, cwd=cwd).start()
    try:
        code = await program.wait(timeout)
    finally:
        await program.kill()
    return code, program.output
