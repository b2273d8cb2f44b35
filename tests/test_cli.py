"""
The ``relaycall`` command line, run as a real process: ``--version``, the help texts,
bad flags and a busy port as one error line with exit status 2 (no traceback, no
aiohttp "Unclosed" warning), and ``relaycall emulator -v`` serving a real dial, logging
each request and callback, and stopping cleanly on a signal.

The one-shot commands run side by side (one module fixture), so the file stays fast.
"""

from __future__ import annotations

import asyncio
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import relaycall
from relaycall.__main__ import main as relaycall_main
from relaycall.emulator.__main__ import main as emulator_main

PY = [sys.executable, "-m", "relaycall"]
#: The console script installed next to this interpreter (absent in a bare checkout).
SCRIPT = shutil.which("relaycall", path=str(Path(sys.executable).parent))
DIAL = {"from_": "+15551230000", "to": "+15557650000", "url": "https://example.test/swml"}

Run = subprocess.CompletedProcess[str]


@pytest.fixture(scope="module")
def busy_port() -> Iterator[int]:
    """A loopback port something else is listening on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


@pytest.fixture(scope="module")
def runs(busy_port: int) -> dict[str, Run]:
    """Each one-shot command line, started together and run to completion."""
    # Each process spends about a second importing aiohttp, so there are few of them; the
    # parsers' other errors are checked in process below.
    commands = {
        "version": [*PY, "--version"],
        "demo-time-scale-0": [SCRIPT or PY[0], *([] if SCRIPT else PY[1:]), "demo",
                              "--time-scale", "0"],
        "emulator-port-in-use": [*PY, "emulator", "--port", str(busy_port)],
    }  # fmt: skip
    procs = {
        name: subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for name, argv in commands.items()
    }
    done: dict[str, Run] = {}
    try:
        for name, proc in procs.items():
            out, err = proc.communicate(timeout=30)
            done[name] = subprocess.CompletedProcess(commands[name], proc.returncode, out, err)
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    return done


def test_version_flag(runs: dict[str, Run]) -> None:
    """`relaycall --version` prints `relaycall <version>` and exits 0."""
    run = runs["version"]
    assert (run.returncode, run.stderr) == (0, "")
    assert run.stdout == f"relaycall {relaycall.__version__}\n"


def test_demo_time_scale_zero_is_one_usage_error(runs: dict[str, Run]) -> None:
    """
    `relaycall demo --time-scale 0` (through the console script when it is installed) is
    argparse's usage and error line, status 2.
    """
    run = runs["demo-time-scale-0"]
    assert run.returncode == 2
    assert run.stdout == ""
    assert run.stderr == (
        "usage: relaycall demo [-h] [--time-scale TIME_SCALE]\n"
        "relaycall demo: error: argument --time-scale: must be a number > 0, not '0'\n"
    )


def test_emulator_port_in_use_is_one_line(runs: dict[str, Run], busy_port: int) -> None:
    """A busy port: one line naming the address and why, status 2, nothing left unclosed."""
    run = runs["emulator-port-in-use"]
    assert run.returncode == 2
    assert run.stdout == ""
    assert run.stderr == (
        f"relaycall emulator: cannot listen on 127.0.0.1:{busy_port}: address already in use\n"
    )


def test_no_command_line_prints_a_traceback_or_unclosed_warning(runs: dict[str, Run]) -> None:
    """Whatever went wrong, neither stream has a traceback or an aiohttp leak warning."""
    for run in runs.values():
        for text in (run.stdout, run.stderr):
            assert "Traceback" not in text, run.args
            assert "Unclosed" not in text, run.args


# --- the parsers themselves (in process: argparse exits before anything starts) ------------


@pytest.mark.parametrize(
    ("argv", "error"),
    [
        (["demo", "--time-scale", "nan"], "argument --time-scale: must be a number > 0, not 'nan'"),
        (["demo", "--time-scale", "x"], "argument --time-scale: expected a number, got 'x'"),
        (["emulator", "--port", "70000"], "argument --port: must be 0 to 65535, not '70000'"),
        (["emulator", "--time-scale", "-1"], "argument --time-scale: must be a number > 0"),
        (["emulator", "--journal-size", "0"], "argument --journal-size: must be a whole number"),
        (["emulator", "--post-limit", "1.5"], "argument --post-limit: expected a whole number"),
        (["emulator", "--project", "a:b"], "argument --project: the project id cannot contain"),
        (["emulator", "--token", ""], "argument --token: the token cannot be empty"),
        (["emulator", "--bogus"], "unrecognized arguments: --bogus"),
    ],
)
def test_bad_flags_are_usage_errors(
    argv: list[str], error: str, busy_port: int, capsys: pytest.CaptureFixture[str]
) -> None:
    """Each bad flag: the subcommand's usage line, `<prog>: error: ...`, status 2."""
    if argv[0] == "emulator":  # should the flag be let through, fail at once rather than serve
        argv = ["emulator", "--port", str(busy_port), *argv[1:]]
    with pytest.raises(SystemExit) as exit_info:
        relaycall_main(argv)
    assert exit_info.value.code == 2
    usage, message = capsys.readouterr().err.splitlines()
    assert usage.startswith(f"usage: relaycall {argv[0]} ")
    assert message.startswith(f"relaycall {argv[0]}: error: {error}")


@pytest.mark.parametrize("command", ["demo", "emulator", "version"])
def test_subcommand_help_shows_every_default(
    command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """`relaycall <command> --help` names itself and gives every option's default."""
    with pytest.raises(SystemExit) as exit_info:
        relaycall_main([command, "--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    assert text.startswith(f"usage: relaycall {command} ")
    # argparse wraps help text; join it back into one line per option.
    options = re.split(r"\n  (?=-)", " ".join(text.split("\n\n", 2)[-1].split("\n      ")))
    for option in options[1:]:
        if not option.startswith("-h, --help"):
            assert "(default: " in " ".join(option.split()), option


def test_emulator_help_documents_the_journal_size(capsys: pytest.CaptureFixture[str]) -> None:
    """`--journal-size` has a help text, with its default."""
    with pytest.raises(SystemExit):
        relaycall_main(["emulator", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "--journal-size JOURNAL_SIZE requests and callbacks the journal keeps" in text
    assert "(default: 10000)" in text


def test_module_emulator_help_names_itself(capsys: pytest.CaptureFixture[str]) -> None:
    """`python -m relaycall.emulator --help` keeps its own name."""
    with pytest.raises(SystemExit):
        emulator_main(["--help"])
    assert capsys.readouterr().out.startswith("usage: python -m relaycall.emulator [options]")


# --- the emulator, serving -------------------------------------------------------------------


async def _read_until(stream: asyncio.StreamReader, needle: str, seen: list[str]) -> None:
    """Read lines into *seen* until one holds *needle* (10 s at most)."""

    async def read() -> None:
        while True:
            raw = await stream.readline()
            if not raw:
                raise AssertionError(f"output ended before {needle!r}: {seen}")
            seen.append(raw.decode())
            if needle in seen[-1]:
                return

    await asyncio.wait_for(read(), timeout=10)


async def test_emulator_serves_logs_and_stops_on_sigint(monkeypatch: pytest.MonkeyPatch) -> None:
    """
    `relaycall emulator -v`: the printed export line points AsyncRelay() at it; a dial
    gets one request line and the callbacks one line each; SIGINT stops it with a line
    and status 0, and stderr stays empty.
    """
    proc = await asyncio.create_subprocess_exec(
        *PY, "emulator", "-v", "--port", "0", "--time-scale", "100",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert proc.stdout is not None
    try:
        banner: list[str] = []
        await _read_until(proc.stdout, "  export ", banner)
        listening = re.fullmatch(
            r"relaycall emulator listening on (http://127\.0\.0\.1:\d+)\n", banner[0]
        )
        assert listening is not None, banner
        words = shlex.split(banner[-1])
        assert words[0] == "export"
        env = dict(word.split("=", 1) for word in words[1:])
        assert env == {
            "SIGNALWIRE_BASE_URL": listening.group(1),
            "SIGNALWIRE_PROJECT_ID": "test-project",
            "SIGNALWIRE_API_TOKEN": "test-token",
        }
        for name, value in env.items():
            monkeypatch.setenv(name, value)

        receiver = relaycall.EventReceiver()
        async with relaycall.AsyncRelay(events=receiver) as relay, receiver.serve():
            call = await relay.dial(**DIAL)
            assert await call.wait_for("answered", timeout=5) == "answered"
            await call.end()
            await call.wait(timeout=5)
            log: list[str] = []
            await _read_until(proc.stdout, f"calling.call.state ended call={call.id}", log)

        requests = [line.split(" ", 1)[1] for line in log if "emulator: POST" in line]
        assert requests == [
            f"emulator: POST /api/calling/calls dial -> 200 call={call.id}\n",
            f"emulator: POST /api/calling/calls calling.end -> 200 call={call.id}\n",
        ]
        states = [line.split(" ", 1)[1] for line in log if "emulator: callback" in line]
        events = f"{receiver.public_url}".split("?")[0]
        assert states == [
            f"emulator: callback calling.call.state {state} call={call.id} -> {events}: "
            "delivered 200\n"
            for state in ("created", "ringing", "answered", "ended")
        ]

        proc.send_signal(signal.SIGINT)
        out, err = await asyncio.wait_for(proc.communicate(), timeout=10)
        assert out.decode() == "relaycall emulator stopped (SIGINT)\n"
        assert err.decode() == ""
        assert proc.returncode == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def test_emulator_stops_on_sigterm() -> None:
    """SIGTERM (what a supervisor sends) stops the emulator the same clean way."""
    proc = await asyncio.create_subprocess_exec(
        *PY, "emulator", "--port", "0",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert proc.stdout is not None
    try:
        await _read_until(proc.stdout, "  export ", [])
        proc.terminate()
        out, err = await asyncio.wait_for(proc.communicate(), timeout=10)
        assert (out.decode(), err.decode(), proc.returncode) == (
            "relaycall emulator stopped (SIGTERM)\n", "", 0,
        )  # fmt: skip
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
