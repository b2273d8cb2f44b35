"""
Every example runs end to end as a user would start it: a subprocess talking to an emulator
(its own, built in, or one this test runs and points it at through SIGNALWIRE_BASE_URL),
receiving the emulator's signed callbacks on a real server.
"""

from __future__ import annotations

import asyncio
import importlib.util
import py_compile
import re
import signal
from typing import Any

import aiohttp
import pytest

from relaycall.testing import Emulator, Scenario
from tests._programs import (
    PYTHON,
    REPO,
    SIGNING_KEY,
    Program,
    assert_callbacks_received,
    free_port,
    program_env,
    run_program,
)

EXAMPLES = REPO / "examples"
TO = "+15557650000"


def _commands(emu: Emulator, call_id: str | None = None) -> list[str | None]:
    return [r.command for r in emu.requests if call_id is None or r.call_id == call_id]


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.py")), ids=lambda p: p.name)
def test_example_compiles(path):
    """Every example is valid Python."""
    py_compile.compile(str(path), doraise=True)


#: The examples the tests below run; a new example needs a test here, and a line.
RUN_BELOW = {"quickstart.py", "bulk_dialer.py", "fastapi_ivr.py"}


def test_every_example_has_a_run_test():
    """A new example cannot be added without a test here that runs it."""
    assert {p.name for p in EXAMPLES.glob("*.py")} == RUN_BELOW


# --- quickstart.py ---------------------------------------------------------------------------


async def test_quickstart_runs_on_the_built_in_emulator(tmp_path):
    """Without credentials, quickstart.py runs its flow on the built-in emulator."""
    code, out = await run_program(
        [PYTHON, str(EXAMPLES / "quickstart.py")], env=program_env(None), cwd=tmp_path
    )
    assert code == 0, out
    assert "running against the built-in emulator" in out
    assert "recording: http://127.0.0.1:" in out


async def test_quickstart_against_an_emulator_from_the_environment(tmp_path):
    """With SIGNALWIRE_* pointing at an emulator, quickstart.py dials it and its receiver
    gets every callback (signed, accepted); the recording ends when the caller stops talking."""
    scenario = Scenario(speech="hello there")
    async with Emulator(time_scale=50, signing_key=SIGNING_KEY, scenarios={TO: scenario}) as emu:
        env = program_env(emu, PORT="0")
        code, out = await run_program(
            [PYTHON, str(EXAMPLES / "quickstart.py"), TO], env=env, cwd=tmp_path
        )
        assert code == 0, out
        assert f"recording: {emu.base_url}/recordings/" in out
        (call_id,) = {r.call_id for r in emu.requests if r.command == "dial"}
        assert _commands(emu, call_id)[-3:] == ["calling.play", "calling.record", "calling.end"]
        assert_callbacks_received(emu, call_id)


# --- bulk_dialer.py -------------------------------------------------------------------------


async def test_bulk_dialer_demo_prints_progress_and_a_summary(tmp_path):
    """bulk_dialer.py --demo N runs N calls on the built-in emulator and sums them up."""
    code, out = await run_program(
        [PYTHON, str(EXAMPLES / "bulk_dialer.py"), "--demo", "12", "--calls-per-second", "100"],
        env=program_env(None),
        cwd=tmp_path,
    )
    assert code == 0, out
    assert "calling 12 numbers at 100 a second" in out
    assert "placed 12, answered 11, not answered 1, failed 0" in out
    assert "7  answered by HUMAN" in out
    assert "4  answered by MACHINE" in out
    assert "1  not answered: busy" in out


async def test_bulk_dialer_calls_a_file_of_numbers_against_the_emulator(tmp_path):
    """bulk_dialer.py numbers.txt dials each number once through SIGNALWIRE_BASE_URL,
    receives the callbacks, adapts to who answered, hangs up every call, shows progress
    as it goes and sums up."""
    numbers = tmp_path / "numbers.txt"
    people = [f"+1555000{i:04d}" for i in range(4)]
    numbers.write_text(
        "# customers\n" + "\n".join(people) + "\n\n+15559990001  # busy\n+15559990002\n"
    )
    scenarios = {
        people[1]: Scenario(answer="machine"),
        "+15559990001": Scenario(answer="busy"),
        "+15559990002": Scenario(answer="failed"),
    }
    async with Emulator(time_scale=50, signing_key=SIGNING_KEY, scenarios=scenarios) as emu:
        argv = [PYTHON, str(EXAMPLES / "bulk_dialer.py"), str(numbers), "--port", "0"]
        code, out = await run_program(
            [*argv, "--calls-per-second", "8", "--progress", "lines", "--progress-every", "0.2"],
            env=program_env(emu),
            cwd=tmp_path,
        )
        assert code == 0, out
        assert "calling 6 numbers at 8 a second" in out
        # live progress while the calls go on, an ETA included
        assert re.search(r"^[0-5]/6 done: placed \d, answered \d, .*; ETA 0:0\d$", out, re.M)
        assert "placed 6, answered 4, not answered 2, failed 0" in out
        assert "3  answered by HUMAN" in out
        assert "1  answered by MACHINE" in out
        assert "1  not answered: busy" in out
        assert "1  not answered: error" in out
        dials = [r.body["params"]["to"] for r in emu.requests if r.command == "dial"]
        assert sorted(dials) == sorted([*people, "+15559990001", "+15559990002"])
        assert all(not call.is_live for call in emu.core.calls.values())
        assert_callbacks_received(emu)


async def test_bulk_dialer_dials_one_call_a_second_by_default(tmp_path):
    """Unless told otherwise, bulk_dialer.py paces dials at the platform's one a second."""
    numbers = tmp_path / "numbers.txt"
    numbers.write_text(f"{TO}\n+15557650001\n")
    arrivals: list[float] = []

    async def clock_dials(_request: Any, body: Any) -> None:
        if isinstance(body, dict) and body.get("command") == "dial":
            arrivals.append(asyncio.get_running_loop().time())

    async with Emulator(time_scale=50, signing_key=SIGNING_KEY) as emu:
        emu.core.request_hooks.append(clock_dials)
        code, out = await run_program(
            [PYTHON, str(EXAMPLES / "bulk_dialer.py"), str(numbers), "--port", "0"],
            env=program_env(emu),
            cwd=tmp_path,
        )
    assert code == 0, out
    assert "calling 2 numbers at 1 a second" in out
    assert len(arrivals) == 2
    assert arrivals[1] - arrivals[0] >= 0.9


async def test_bulk_dialer_progress_bar_with_rich(tmp_path):
    """With rich installed, --progress bar draws a bar with the counts, then the summary."""
    pytest.importorskip("rich")
    argv = [PYTHON, str(EXAMPLES / "bulk_dialer.py"), "--demo", "3", "--calls-per-second", "100"]
    code, out = await run_program(
        [*argv, "--progress", "bar"], env=program_env(None, COLUMNS="160"), cwd=tmp_path
    )
    assert code == 0, out
    assert "3/3 placed 3, answered 3, not answered 0, failed 0 ETA 0:00" in out
    assert "3 numbers in" in out


@pytest.mark.parametrize(
    ("args", "error"),
    [
        ([], "give a file of numbers, or --demo N"),
        (["--demo", "2", "numbers.txt"], "give a file of numbers, or --demo N"),
        (["missing.txt"], "cannot read missing.txt: No such file or directory"),
        (["--demo", "2", "--calls-per-second", "0"], "must be positive"),
        (["--demo", "2", "--progress-every", "-1"], "must be positive"),
    ],
)
def test_bulk_dialer_bad_arguments(tmp_path, monkeypatch, capsys, args, error):
    """Bad command lines end with a usage message and status 2, before any call."""
    spec = importlib.util.spec_from_file_location("bulk_dialer", EXAMPLES / "bulk_dialer.py")
    assert spec is not None
    assert spec.loader is not None
    bulk_dialer = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bulk_dialer)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exited:
        bulk_dialer.main(args)
    assert exited.value.code == 2
    assert error in capsys.readouterr().err


# --- fastapi_ivr.py ----------------------------------------------------------------------------


async def _start_fastapi_example(emu: Emulator, **env: str) -> tuple[Program, str]:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    argv = [PYTHON, "-m", "uvicorn", "examples.fastapi_ivr:app", "--host", "127.0.0.1"]
    program = Program(
        [*argv, "--port", str(port)],
        env=program_env(emu, PUBLIC_URL=base, CALLS_PER_SECOND="100", **env),
        cwd=REPO,
    )
    await program.start()
    try:
        await program.wait_for_output(r"Uvicorn running on")
    except BaseException:
        await program.kill()
        raise
    return program, base


def _assert_shut_down_cleanly(code: int, app: Program) -> None:
    # uvicorn re-raises the SIGTERM it handled once its graceful shutdown is done.
    assert code in (0, -signal.SIGTERM), app.output
    assert "Application shutdown complete" in app.output
    assert "Traceback" not in app.output


async def test_fastapi_example_runs_the_call_in_the_background(tmp_path):
    """POST /calls answers 202 at once with the call id while the IVR goes on in the
    background, its callbacks received through the receiver mounted in the app;
    GET /calls/{id}?wait= then shows the digit pressed and the outcome."""
    scenario = Scenario(dtmf="2")
    async with Emulator(time_scale=50, signing_key=SIGNING_KEY, scenarios={TO: scenario}) as emu:
        app, base = await _start_fastapi_example(emu)
        try:
            async with aiohttp.ClientSession() as http:
                async with http.post(f"{base}/calls", json={"to": TO}) as resp:
                    assert resp.status == 202, await resp.text()
                    placed = await resp.json()
                call_id = placed["call_id"]
                assert placed["running"] is True
                assert placed["digit"] is None
                assert placed["outcome"] is None
                async with http.get(f"{base}/calls/{call_id}", params={"wait": "20"}) as resp:
                    assert resp.status == 200
                    status = await resp.json()
        finally:
            code = await app.stop()
        assert status == {
            "call_id": call_id,
            "to": TO,
            "state": "ended",
            "end_reason": "hangup",
            "running": False,
            "digit": "2",
            "outcome": "support",
        }, app.output
        assert _commands(emu, call_id) == [
            "dial",
            "calling.play",
            "calling.collect",
            "calling.play",
            "calling.end",
        ]
        assert_callbacks_received(emu, call_id)
        callbacks = [c for c in emu.callbacks if c.call_id == call_id]
        assert all(c.url and c.url.startswith(f"{base}/relaycall/events") for c in callbacks)
    _assert_shut_down_cleanly(code, app)


async def test_fastapi_example_bounds_calls_and_hangs_up_at_shutdown(tmp_path):
    """The example refuses bad input (422) and unknown ids (404), refuses a call beyond
    MAX_CALLS (429, nothing dialled) and, when the server stops, cancels the IVR still
    running, which hangs up its call."""
    scenario = Scenario(ring_seconds=100_000)  # rings for as long as the test runs
    async with Emulator(time_scale=50, signing_key=SIGNING_KEY, scenarios={TO: scenario}) as emu:
        app, base = await _start_fastapi_example(emu, MAX_CALLS="1")
        try:
            async with aiohttp.ClientSession() as http:
                async with http.post(f"{base}/calls", json={"to": ""}) as resp:
                    assert resp.status == 422
                    assert "dial.to: '' must not be empty" in await resp.text()
                async with http.post(f"{base}/calls", json={}) as resp:
                    assert resp.status == 422
                async with http.get(f"{base}/calls/nope") as resp:
                    assert resp.status == 404
                async with http.post(f"{base}/calls", json={"to": TO}) as resp:
                    assert resp.status == 202
                    call_id = (await resp.json())["call_id"]
                async with http.post(f"{base}/calls", json={"to": "+15557650001"}) as resp:
                    assert resp.status == 429
                    assert resp.headers["Retry-After"] == "5"
                async with http.get(f"{base}/calls/{call_id}") as resp:
                    assert (await resp.json())["running"] is True
            assert _commands(emu) == ["dial"]
            assert emu.call(call_id).is_live
        finally:
            code = await app.stop()
        _assert_shut_down_cleanly(code, app)
        assert _commands(emu, call_id) == ["dial", "calling.end"]
        assert not emu.call(call_id).is_live
