"""
Every example runs end to end as a user would start it: a subprocess talking to an emulator
(its own, built in, or one this test runs and points it at through SIGNALWIRE_BASE_URL),
receiving the emulator's signed callbacks on a real server.
"""

from __future__ import annotations

import asyncio
import copy
import importlib.util
import json
import os
import py_compile
import re
import signal
from pathlib import Path
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
from tests._services import need_binary
from tests.conftest import basic_auth
from tests.test_multiworker import _alive, until

EXAMPLES = REPO / "examples"
TO = "+15557650000"


def _commands(emu: Emulator, call_id: str | None = None) -> list[str | None]:
    return [r.command for r in emu.requests if call_id is None or r.call_id == call_id]


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.py")), ids=lambda p: p.name)
def test_example_compiles(path):
    """Every example is valid Python."""
    py_compile.compile(str(path), doraise=True)


#: The examples the tests below run; a new example needs a test here, and a line.
RUN_BELOW = {"quickstart.py", "bulk_dialer.py", "fastapi_ivr.py", "inbound_ivr.py"}
RUN_BELOW |= {"aiohttp_app.py", "voicemail_drop.py"}
#: Run by tests/test_multiworker.py (3 workers behind HAProxy, with Redis), and below by
#: run_multiworker.py, which starts the same deployment locally.
RUN_BELOW |= {"multiworker_app.py", "run_multiworker.py"}


def test_every_example_has_a_run_test():
    """A new example cannot be added without a test here that runs it. Modules named
    ``_*.py`` are not examples but what one imports (``_local_services.py``)."""
    assert {p.name for p in EXAMPLES.glob("*.py") if not p.name.startswith("_")} == RUN_BELOW


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


async def _start_uvicorn(app: str, emu: Emulator, ready: str, **env: str) -> tuple[Program, str]:
    """Serve *app* under uvicorn on a free loopback port; return once *ready* was printed."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    argv = [PYTHON, "-m", "uvicorn", app, "--host", "127.0.0.1"]
    program = Program(
        [*argv, "--port", str(port)], env=program_env(emu, PUBLIC_URL=base, **env), cwd=REPO
    )
    await program.start()
    try:
        await program.wait_for_output(ready)
        await program.wait_for_output(r"Uvicorn running on")
    except BaseException:
        await program.kill()
        raise
    return program, base


async def _start_fastapi_example(emu: Emulator, **env: str) -> tuple[Program, str]:
    return await _start_uvicorn(
        "examples.fastapi_ivr:app", emu, r"Uvicorn running on", **{"CALLS_PER_SECOND": "100", **env}
    )


async def _place_call(http: aiohttp.ClientSession, base: str) -> dict[str, Any]:
    """POST /calls to one of the web-app examples: answered 202 at once, with the call."""
    async with http.post(f"{base}/calls", json={"to": TO}) as resp:
        assert resp.status == 202, await resp.text()
        placed: dict[str, Any] = await resp.json()
    return placed


async def _one_call_and_no_more(http: aiohttp.ClientSession, base: str) -> str:
    """With MAX_CALLS=1: a call is placed, the next one answered 429 (Retry-After: 5)."""
    call_id: str = (await _place_call(http, base))["call_id"]
    async with http.post(f"{base}/calls", json={"to": "+15557650001"}) as resp:
        assert resp.status == 429
        assert resp.headers["Retry-After"] == "5"
    return call_id


async def _status_when_done(http: aiohttp.ClientSession, base: str, call_id: str) -> Any:
    """GET /calls/{id}?wait=20 from one of the web-app examples: the call's final status."""
    async with http.get(f"{base}/calls/{call_id}", params={"wait": "20"}) as resp:
        assert resp.status == 200
        return await resp.json()


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
                placed = await _place_call(http, base)
                call_id = placed["call_id"]
                assert placed["running"] is True
                assert placed["digit"] is None
                assert placed["outcome"] is None
                status = await _status_when_done(http, base, call_id)
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
                call_id = await _one_call_and_no_more(http, base)
                async with http.get(f"{base}/calls/{call_id}") as resp:
                    assert (await resp.json())["running"] is True
            assert _commands(emu) == ["dial"]
            assert emu.call(call_id).is_live
        finally:
            code = await app.stop()
        _assert_shut_down_cleanly(code, app)
        assert _commands(emu, call_id) == ["dial", "calling.end"]
        assert not emu.call(call_id).is_live


# --- aiohttp_app.py ---------------------------------------------------------------------------


async def _start_aiohttp_example(emu: Emulator, **env: str) -> tuple[Program, str]:
    """``python examples/aiohttp_app.py`` on a free loopback port; return once it listens."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {"CALLS_PER_SECOND": "100", **env}
    program = Program(
        [PYTHON, str(EXAMPLES / "aiohttp_app.py")],
        env=program_env(emu, PUBLIC_URL=base, PORT=str(port), **env),
        cwd=REPO,
    )
    await program.start()
    try:
        await program.wait_for_output(re.escape(f"Running on {base}"))
    except BaseException:
        await program.kill()
        raise
    return program, base


def _assert_aiohttp_stopped_cleanly(code: int, app: Program) -> None:
    # aiohttp's run_app turns SIGTERM into a graceful exit: cleanup contexts run, status 0.
    assert code == 0, app.output
    assert "Traceback" not in app.output, app.output
    assert "WARNING" not in app.output, app.output


async def test_aiohttp_example_records_a_message_in_the_background(tmp_path):
    """POST /calls answers 202 at once with the call id while the call goes on: the
    greeting, the recording (with a beep, ended by the person's silence), its result
    awaited through the receiver routed in the same aiohttp app, the hang-up. GET
    /calls/{id}?wait= then shows the outcome and the recording's URL, which serves a WAV.
    Exact wire bodies, from the emulator's journal."""
    scenario = Scenario(speech="Hi, it's Sam, call me back.")
    async with Emulator(time_scale=50, signing_key=SIGNING_KEY, scenarios={TO: scenario}) as emu:
        app, base = await _start_aiohttp_example(emu)
        try:
            async with aiohttp.ClientSession() as http:
                placed = await _place_call(http, base)
                call_id = placed["call_id"]
                assert placed == {
                    "call_id": call_id,
                    "to": TO,
                    "state": placed["state"],
                    "end_reason": None,
                    "running": True,
                    "outcome": None,
                    "recording_url": None,
                }
                assert placed["state"] in ("queued", "created", "ringing")
                status = await _status_when_done(http, base, call_id)
                async with http.get(status["recording_url"] or base) as resp:
                    assert resp.status == 200
                    wav = await resp.read()
        finally:
            code = await app.stop()
        url = status["recording_url"]
        assert status == {
            "call_id": call_id,
            "to": TO,
            "state": "ended",
            "end_reason": "hangup",
            "running": False,
            "outcome": "recorded",
            "recording_url": url,
        }, app.output
        assert url.startswith(f"{emu.base_url}/recordings/")
        assert wav[:4] == b"RIFF"
        assert wav[8:12] == b"WAVE"
        bodies = [copy.deepcopy(r.body) for r in emu.requests if r.call_id == call_id]
        assert bodies[0]["command"] == "dial"
        for body in bodies[1:3]:  # the play and the record: reporting to the app
            params = body["params"]
            assert params.pop("status_url").startswith(f"{base}/relaycall/events/?t=o.")
            assert isinstance(params.pop("control_id"), str)
        audio = {"beep": True, "format": "wav", "end_silence_timeout": 3, "max_length": 120}
        assert bodies[1:] == [
            _play(call_id, "Hello! Please leave your message after the beep."),
            {"command": "calling.record", "id": call_id, "params": {"record": {"audio": audio}}},
            {"command": "calling.end", "id": call_id, "params": {}},
        ]
        assert_callbacks_received(emu, call_id)
        callbacks = [c for c in emu.callbacks if c.call_id == call_id]
        assert all(c.url and c.url.startswith(f"{base}/relaycall/events") for c in callbacks)
    _assert_aiohttp_stopped_cleanly(code, app)


async def test_aiohttp_example_refuses_bad_input_and_hangs_up_at_shutdown(tmp_path):
    """The aiohttp example answers a body that is not JSON with 400, a missing or invalid
    number and a bad ``wait`` with 422 naming the field, an unknown id with 404, a call
    beyond MAX_CALLS with 429 (nothing dialled); when the server stops (SIGTERM), its
    cleanup context cancels the call still ringing, which hangs it up, and exits 0."""
    scenario = Scenario(ring_seconds=100_000)  # rings for as long as the test runs
    async with Emulator(time_scale=50, signing_key=SIGNING_KEY, scenarios={TO: scenario}) as emu:
        app, base = await _start_aiohttp_example(emu, MAX_CALLS="1")
        try:
            async with aiohttp.ClientSession() as http:

                async def answer(method: str, path: str, **kw: Any) -> tuple[int, str]:
                    async with http.request(method, base + path, **kw) as resp:
                        return resp.status, await resp.text()

                assert await answer("POST", "/calls", data=b"{") == (
                    400,
                    'the body must be JSON: {"to": "+15557650000"}',
                )
                assert await answer("POST", "/calls", json={}) == (
                    422,
                    "to: give the number to call, as a string",
                )
                status, text = await answer("POST", "/calls", json={"to": "hello"})
                assert status == 422
                assert text.startswith("dial.to: 'hello'")
                assert await answer("GET", "/calls/nope") == (404, "no such call here")
                call_id = await _one_call_and_no_more(http, base)
                for wait in ("x", "61", "-1"):
                    assert await answer("GET", f"/calls/{call_id}?wait={wait}") == (
                        422,
                        "wait: give seconds from 0 to 60",
                    )
                async with http.get(f"{base}/calls/{call_id}") as resp:
                    assert (await resp.json())["running"] is True
            assert _commands(emu) == ["dial"]
            assert emu.call(call_id).is_live
        finally:
            code = await app.stop()
        _assert_aiohttp_stopped_cleanly(code, app)
        assert _commands(emu, call_id) == ["dial", "calling.end"]
        assert not emu.call(call_id).is_live


# --- voicemail_drop.py ------------------------------------------------------------------------

AGENT = "+15550001111"


async def test_voicemail_drop_demo_runs_both_branches_on_the_built_in_emulator(tmp_path):
    """Without credentials, voicemail_drop.py calls a machine and a person on the built-in
    emulator: a message for the one, the agent for the other."""
    code, out = await run_program(
        [PYTHON, str(EXAMPLES / "voicemail_drop.py")], env=program_env(None), cwd=tmp_path
    )
    assert code == 0, out
    first, *outcomes = out.splitlines()
    assert first == "no SIGNALWIRE_PROJECT_ID: running against the built-in emulator"
    # Each call's line is printed when it ends: either may end first.
    assert sorted(outcomes) == [
        "+15557650000: machine: message left after the beep",
        f"+15557650001: human: connected to {AGENT}",
    ]


async def test_voicemail_drop_waits_for_the_beep_and_puts_people_through(tmp_path):
    """
    voicemail_drop.py against an emulator (SIGNALWIRE_BASE_URL), three numbers:
    - a machine: the detection says MACHINE, then READY when its greeting is over; the
      message is played only after READY was sent, then the call is hung up;
    - a person: HUMAN, then a transfer to the agent (AGENT_NUMBER), and no hang-up: the
      call stays up, bridged to the agent;
    - busy: not answered, nothing but the dial.
    Exact wire bodies, from the emulator's journal; each outcome printed.
    """
    machine, person, busy = "+15557650000", "+15557650001", "+15557650002"
    scenarios = {
        machine: Scenario(answer="machine", greeting_seconds=3),
        person: Scenario(answer="human"),
        busy: Scenario(answer="busy"),
    }
    #: What happened, in the order the emulator saw it: detect callbacks as they left,
    #: Calling API requests as they arrived.
    timeline: list[tuple[str | None, str]] = []

    def detect_sent(delivery: Any) -> None:
        if delivery.event_type == "calling.call.detect":
            event = delivery.payload["params"]["detect"]["params"]["event"]
            timeline.append((delivery.call_id, f"sent {event}"))

    async def request_arrived(_request: Any, body: Any) -> None:
        if isinstance(body, dict) and body.get("command") != "dial":
            timeline.append((body.get("id"), f"got {body.get('command')}"))

    # Slow enough (3 emulated s = 0.3 s) that a message played before the beep would be seen.
    async with Emulator(time_scale=10, signing_key=SIGNING_KEY, scenarios=scenarios) as emu:
        emu.core.delivery_hooks.append(detect_sent)
        emu.core.request_hooks.append(request_arrived)
        argv = [PYTHON, str(EXAMPLES / "voicemail_drop.py"), machine, person, busy]
        env = program_env(emu, AGENT_NUMBER=AGENT)
        code, out = await run_program([*argv, "--calls-per-second", "50"], env=env, cwd=tmp_path)
        assert code == 0, out
        assert sorted(out.splitlines()) == [
            f"{machine}: machine: message left after the beep",
            f"{person}: human: connected to {AGENT}",
            f"{busy}: not answered: busy",
        ]
        ids = {r.body["params"]["to"]: r.call_id for r in emu.requests if r.command == "dial"}
        assert emu.call(ids[person]).is_live  # with the agent now: the script left it up
        assert emu.call(ids[person]).bridged_to == AGENT
        emu.hangup(ids[person])
        await emu.idle()

    def steps(to: str) -> list[str]:
        return [what for call_id, what in timeline if call_id == ids[to]]

    # The message went out after the READY (the beep), never on the MACHINE verdict alone.
    assert steps(machine) == ["got calling.detect", "sent MACHINE", "sent READY", "sent finished",
                              "got calling.play", "got calling.end"]  # fmt: skip
    assert steps(person) == ["got calling.detect", "sent HUMAN", "sent finished",
                             "got calling.transfer"]  # fmt: skip

    def wire(to: str) -> list[dict[str, Any]]:
        bodies = [copy.deepcopy(r.body) for r in emu.requests if r.call_id == ids[to]]
        for body in bodies:
            if body["command"] in ("calling.detect", "calling.play"):
                assert body["params"].pop("status_url").startswith("http://127.0.0.1:")
                assert isinstance(body["params"].pop("control_id"), str)
        return bodies[1:]  # after the dial

    detect = {
        "command": "calling.detect",
        "params": {"detect": {"type": "machine", "params": {"detect_message_end": True}},
                   "timeout": 45},
    }  # fmt: skip
    message = "Hi, this is Acme. Your order is ready: call us back at 555 123 0000. Thank you!"
    assert wire(machine) == [
        {**detect, "id": ids[machine]},
        _play(ids[machine], message),
        {"command": "calling.end", "id": ids[machine], "params": {}},
    ]
    assert wire(person) == [
        {**detect, "id": ids[person]},
        {"command": "calling.transfer", "id": ids[person], "params": {"dest": AGENT}},
    ]
    assert wire(busy) == []
    for to in (machine, person):
        assert_callbacks_received(emu, ids[to])


@pytest.mark.parametrize(
    ("args", "env", "error"),
    [
        ([], {"AGENT_NUMBER": AGENT}, "give the numbers to call"),
        ([TO], {}, "give --agent (or set AGENT_NUMBER)"),
        ([TO, "--agent", AGENT, "--calls-per-second", "0"], {}, "must be positive"),
    ],
)
async def test_voicemail_drop_bad_arguments(tmp_path, args, env, error):
    """With credentials, a command line without numbers, without an agent or with a bad
    rate ends with a usage message and status 2, before any call."""
    async with Emulator(time_scale=50, signing_key=SIGNING_KEY) as emu:
        code, out = await run_program(
            [PYTHON, str(EXAMPLES / "voicemail_drop.py"), *args],
            env=program_env(emu, **env),
            cwd=tmp_path,
        )
        assert code == 2, out
        assert error in out
        assert emu.requests == []


# --- run_multiworker.py -----------------------------------------------------------------------


@pytest.mark.timeout(180)
@pytest.mark.parametrize("stop", ["SIGTERM", "SIGINT", "a worker dies"])
async def test_run_multiworker_serves_a_call_through_the_balancer_and_leaves_no_process(
    tmp_path, stop
):
    """
    run_multiworker.py starts the emulator, redis-server, three uvicorn workers of
    multiworker_app.py and HAProxy, and says where each is. A call placed through the
    balancer is answered, greeted and hung up, its callbacks (posted to the balancer)
    all accepted; the three workers answer in turn. On SIGTERM (a process manager) or
    SIGINT (Ctrl-C) it stops them all and exits 0; when a worker dies (-9) it says so,
    stops the others and exits 1. Either way none of the pids it printed is left, nor
    its temporary directory. Skipped without redis-server or haproxy, unless
    RELAYCALL_REQUIRE_SERVICES=1.
    """
    need_binary("redis-server")
    need_binary("haproxy")
    argv = [PYTHON, str(EXAMPLES / "run_multiworker.py"), "--time-scale", "20"]
    launcher = Program(argv, env=program_env(None, CALLS_PER_SECOND="100"), cwd=tmp_path)
    await launcher.start()
    try:
        await launcher.wait_for_output(r"(?m)^ready$", timeout=90)
        found = re.findall(r"(?m)^  (\w+(?: \d)?) +(\S+) +pid (\d+)$", launcher.output)
        where = {name: url for name, url, _ in found}
        pids = [int(pid) for _, _, pid in found]
        assert list(where) == ["emulator", "redis", "worker 1", "worker 2", "worker 3",
                               "balancer"], launcher.output  # fmt: skip
        assert all(_alive(pid) for pid in pids)
        logs = Path(re.findall(r"(?m)^  logs +(\S+)$", launcher.output)[0])
        assert await asyncio.to_thread(logs.is_dir)
        balancer, emulator = where["balancer"], where["emulator"]
        assert f"curl -X POST {balancer}/calls" in launcher.output
        auth = basic_auth("test-project", "test-token")
        async with aiohttp.ClientSession() as http:
            body = {"to": TO, "count": 1}
            async with http.post(f"{balancer}/calls", json=body) as resp:
                assert resp.status == 202, await resp.text()
                (call_id,) = (await resp.json())["call_ids"]

            async def call() -> Any:
                url = f"{emulator}/__emulator/calls/{call_id}"
                async with http.get(url, headers=auth) as resp:
                    assert resp.status == 200
                    return await resp.json()

            async def ended() -> bool:
                return (await call())["status"] == "completed"

            await until(ended, 60, "the call placed through the balancer ended")
            assert (await call())["end_reason"] == "hangup"
            async with http.get(f"{emulator}/__emulator/journal.jsonl", headers=auth) as resp:
                journal = [json.loads(line) for line in (await resp.text()).splitlines()]
            stats = []
            for _ in range(3):
                async with http.get(f"{balancer}/stats") as resp:
                    stats.append(await resp.json())
        if stop == "a worker dies":
            os.kill(pids[3], signal.SIGKILL)
    finally:
        if launcher.returncode is None and stop != "a worker dies":
            launcher._proc.send_signal(signal.Signals[stop])  # type: ignore[union-attr]
        code = await launcher.wait(60)
    if stop == "a worker dies":
        assert code == 1, launcher.output
        assert "worker 2 exited with -9; its log ends with:" in launcher.output
        assert "stopping the others" in launcher.output
    else:
        assert code == 0, launcher.output
        assert f"{stop}: stopped everything" in launcher.output
    left = [pid for pid in pids if _alive(pid)]
    assert not left, f"still running: {left}\n{launcher.output}"
    assert not await asyncio.to_thread(logs.exists)
    mine = [e for e in journal if e.get("call_id") == call_id]
    requests = [e["command"] for e in mine if e["kind"] == "request"]
    assert requests == ["dial", "calling.play", "calling.end"]
    callbacks = [e for e in mine if e["kind"] == "callback"]
    assert callbacks
    assert all(c["url"].startswith(f"{balancer}/relaycall/events/") for c in callbacks)
    assert {c["outcome"] for c in callbacks} == {"delivered"}, callbacks
    # Round robin: three different workers answered, one of which ran the call.
    assert len({s["pid"] for s in stats}) == 3
    assert sum(s["flows_done"] for s in stats) == 1


# --- inbound_ivr.py ----------------------------------------------------------------------------

OUR_NUMBER = "+15551230000"
SALES = "sip:sales@pbx.example.com"
#: relaycall's default document: the handler returned None.
DEFAULT_DOCUMENT = {
    "version": "1.0.0",
    "sections": {"main": [{"answer": {}}, {"sleep": {"duration": -1}}]},
}


async def _start_inbound_example(emu: Emulator, **env: str) -> tuple[Program, str, str]:
    """The app under uvicorn, its base URL, and the SWML webhook URL it printed."""
    app, base = await _start_uvicorn(
        "examples.inbound_ivr:app", emu, r"SWML webhook: \S+", SALES=SALES, **env
    )
    match = re.search(r"SWML webhook: (\S+)", app.output)
    assert match is not None
    return app, base, match.group(1)


def _the_fetch(emu: Emulator, call_id: str) -> dict[str, Any]:
    """The one SWML fetch the emulator made for *call_id*, as journaled."""
    (fetch,) = [n.data for n in emu.notes if n.call_id == call_id and n.what == "swml.fetch"]
    assert isinstance(fetch, dict)
    return fetch


def _wire_after_answer(emu: Emulator, call_id: str, base: str) -> list[dict[str, Any]]:
    """
    The Calling API bodies the app sent about *call_id* once the call was answered:
    the leading ``answered()`` probes (at least one) checked and dropped; each
    status_url checked to be the app's, with an operation token, then left out with
    the random control_id.
    """
    bodies = [copy.deepcopy(r.body) for r in emu.requests if r.call_id == call_id]
    probe = {
        "command": "calling.user_event",
        "id": call_id,
        "params": {"event": {"type": "relaycall.probe"}},
    }
    probes = 0
    while bodies and bodies[0] == probe:
        bodies.pop(0)
        probes += 1
    assert probes >= 1, bodies
    for body in bodies:
        params = body["params"]
        if "status_url" in params:
            assert params.pop("status_url").startswith(f"{base}/relaycall/events/?t=o.")
        if "control_id" in params:
            assert isinstance(params.pop("control_id"), str)
    return bodies


def _play(call_id: str, text: str) -> dict[str, Any]:
    return {
        "command": "calling.play",
        "id": call_id,
        "params": {"play": [{"type": "tts", "params": {"text": text}}]},
    }


async def test_inbound_example_answers_transfers_records_and_hangs_up(tmp_path):
    """
    Five calls come in at once to the app under uvicorn through its SWML webhook: the
    emulator's signed fetch gets relaycall's default document (answer, then hold), and the
    app drives each call through its handle with the Calling API: the menu, one digit.
    - 2, then a message (placed with the control API, as the example's docstring shows): a
      beep, the recording, its URL (serving a WAV) shown by GET /calls; the app hangs up.
    - 2, a message, and the caller hangs up mid-message: the URL is kept, and the app's
      hang-up (404: over already) is no error.
    - 2 and silence: no message, no URL; the app hangs up.
    - 1: transferred to SALES, and the app does not hang up (the caller does, later).
    - nothing: goodbye, and the app hangs up.
    - the caller hangs up at once: the app's next request (the menu, the collect, or the
      answered() probe) finds the call over (404), which is no error, and it sends nothing
      more.
    Exact wire bodies, from the emulator's journal.
    """
    callers = {
        "voicemail": "+15550000002",
        "hangs_up": "+15550000012",
        "silence": "+15550000022",
        "sales": "+15550000001",
        "nothing": "+15550000000",
        "leaves": "+15550000010",
    }
    # 120 s of talk (0.3 s a word); the caller hangs up 100 s after the answer, well after
    # the recording started (at about 5 s) and before its max_length (120 s).
    long_message = " ".join(["blah"] * 400)
    scenarios = {
        "hangs_up": Scenario(dtmf="2", speech=long_message, hangup_after=100),
        "silence": Scenario(dtmf="2"),
        "sales": Scenario(dtmf="1"),
        "nothing": Scenario(),
        "leaves": Scenario(hangup_after=1),
    }
    async with Emulator(time_scale=50, signing_key=SIGNING_KEY) as emu:
        app, base, swml_url = await _start_inbound_example(emu)
        assert swml_url.startswith(f"{base}/relaycall/events/swml/?t=")
        try:
            async with aiohttp.ClientSession() as http:

                async def by_control_api() -> str:
                    body = {
                        "from": callers["voicemail"],
                        "to": OUR_NUMBER,
                        "url": swml_url,
                        "scenario": {"dtmf": ["2"], "speech": ["hi, call me back"]},
                    }
                    auth = basic_auth(emu.config.project_id, emu.config.token)
                    url = f"{emu.base_url}/__emulator/incoming_call"
                    async with http.post(url, json=body, headers=auth) as resp:
                        assert resp.status == 201, await resp.text()
                        call_id: str = (await resp.json())["call_id"]
                        return call_id

                placed = await asyncio.gather(
                    by_control_api(),
                    *(
                        emu.incoming_call(callers[name], OUR_NUMBER, url=swml_url, scenario=s)
                        for name, s in scenarios.items()
                    ),
                )
                ids = dict(zip(callers, placed, strict=True))
                records = {}
                for name, call_id in ids.items():
                    url = f"{base}/calls/{call_id}"
                    async with http.get(url, params={"wait": "20"}) as resp:
                        assert resp.status == 200
                        records[name] = await resp.json()
                async with http.get(f"{base}/calls") as resp:
                    listed = await resp.json()
                wavs = []
                for name in ("voicemail", "hangs_up"):
                    async with http.get(records[name]["recording_url"]) as resp:
                        assert resp.status == 200
                        wavs.append(await resp.read())
            assert emu.call(ids["sales"]).is_live  # talking to sales: the app did not hang up
            assert emu.call(ids["sales"]).bridged_to == SALES
            emu.hangup(ids["sales"])  # until the caller does
        finally:
            code = await app.stop()
        _assert_shut_down_cleanly(code, app)
        assert "WARNING" not in app.output

        outcomes = {
            "voicemail": ("2", "voicemail"),
            "hangs_up": ("2", "voicemail"),
            "silence": ("2", "no_message"),
            "sales": ("1", "sales"),
            "nothing": (None, "no_choice"),
            "leaves": (None, "hung_up"),
        }
        for name, (digit, outcome) in outcomes.items():
            url = records[name]["recording_url"]
            assert records[name] == {
                "call_id": ids[name],
                "caller": callers[name],
                "running": False,
                "digit": digit,
                "outcome": outcome,
                "recording_url": url,
            }, app.output
            if outcome == "voicemail":
                assert url.startswith(f"{emu.base_url}/recordings/")
                assert url.endswith(".wav")
                assert f"voicemail from {callers[name]}: {url}" in app.output
            else:
                assert url is None
        assert all(wav[:4] == b"RIFF" and wav[8:12] == b"WAVE" for wav in wavs)
        assert sorted(listed, key=lambda r: r["call_id"]) == sorted(
            records.values(), key=lambda r: r["call_id"]
        )

        for name, call_id in ids.items():
            fetch = _the_fetch(emu, call_id)
            assert fetch["url"] == swml_url
            assert (fetch["status"], fetch["content_type"]) == (200, "application/json")
            assert fetch["document"] == DEFAULT_DOCUMENT
            call = fetch["body"]["call"]
            assert (call["direction"], call["from"], call["to"]) == (
                "inbound",
                callers[name],
                OUR_NUMBER,
            )
            if name != "leaves":  # gone before the menu could report
                assert_callbacks_received(emu, call_id)
            ended = emu.call(call_id)
            assert not ended.is_live
            assert (ended.status, ended.end_reason) == ("completed", "hangup")

        def wire(name: str, *bodies: dict[str, Any]) -> list[dict[str, Any]]:
            return [{**body, "id": ids[name]} for body in bodies]

        menu = _play("", "Press 1 for sales, 2 to leave a voicemail.")
        collect = {
            "command": "calling.collect",
            "params": {
                "digits": {"max": 1, "digit_timeout": 5},
                "initial_timeout": 10,
                "start_input_timers": True,
            },
        }
        audio = {"beep": True, "format": "wav", "end_silence_timeout": 3, "max_length": 120}
        record = {"command": "calling.record", "params": {"record": {"audio": audio}}}
        end = {"command": "calling.end", "params": {}}
        for name in ("voicemail", "hangs_up", "silence"):
            assert _wire_after_answer(emu, ids[name], base) == wire(
                name, menu, collect, record, end
            )
        transfer = {"command": "calling.transfer", "params": {"dest": SALES}}
        assert _wire_after_answer(emu, ids["sales"], base) == wire("sales", menu, collect, transfer)
        assert _wire_after_answer(emu, ids["nothing"], base) == wire(
            "nothing", menu, collect, _play("", "Goodbye."), end
        )
        ends = {name: [r.status for r in emu.requests if r.call_id == ids[name]
                       and r.command == "calling.end"] for name in ids}  # fmt: skip
        assert ends == {"voicemail": [200], "hangs_up": [404], "silence": [200], "sales": [],
                        "nothing": [200], "leaves": []}  # fmt: skip
        # The caller hangs up 1 emulated second (20 ms) after the answer: the app's first 404
        # is the menu, the collect, or (on a loaded machine) still answered()'s probe; it is
        # the app's last request for that call either way.
        left = [(r.command, r.status) for r in emu.requests if r.call_id == ids["leaves"]]
        gone = [i for i, (_, status) in enumerate(left) if status == 404]
        assert gone, left
        assert gone[0] == len(left) - 1, left
        assert left[-1][0] in ("calling.play", "calling.collect", "calling.user_event"), left


async def test_inbound_example_refuses_forged_fetches_and_hangs_up_at_shutdown(tmp_path):
    """
    The example's webhook refuses a fetch without its token (403, nothing answered) and
    unknown ids (404); a call whose menu still runs when the server stops is hung up.
    """
    async with Emulator(time_scale=1, signing_key=SIGNING_KEY) as emu:  # a menu lasts seconds
        app, base, swml_url = await _start_inbound_example(emu)
        try:
            async with aiohttp.ClientSession() as http:
                forged = swml_url.partition("?")[0]
                async with http.post(forged, json={"call": {}}) as resp:
                    assert resp.status == 403
                async with http.get(f"{base}/calls/nope") as resp:
                    assert resp.status == 404
                call_id = await emu.incoming_call("+15550000003", OUR_NUMBER, url=swml_url)
                async with http.get(f"{base}/calls/{call_id}") as resp:
                    assert (await resp.json())["running"] is True
            assert emu.call(call_id).is_live
        finally:
            code = await app.stop()
        _assert_shut_down_cleanly(code, app)
        assert _commands(emu, call_id)[-1] == "calling.end"
        assert _commands(emu, call_id).count("calling.end") == 1
        ended = emu.call(call_id)
        assert not ended.is_live
        assert ended.end_reason == "hangup"
