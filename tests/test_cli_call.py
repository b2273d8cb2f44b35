"""
``relaycall call ...`` and ``relaycall events listen`` against the emulator.

- Every subcommand's exact wire body, read from the emulator's journal. These run
  the real command line (``relaycall.__main__.main``) in a worker thread, which sends
  over real HTTP to an emulator in the test's event loop: one process, so each
  costs milliseconds rather than an interpreter start.
- As real processes, started side by side: ``--json`` output, the exit statuses
  (a 422 from the emulator, bad credentials, connection refused, an ambiguous
  dial, bad ``--params``, an unknown command, missing credentials), and never a
  traceback or an aiohttp "Unclosed" warning.
- ``relaycall events listen`` as a real process: it prints the callbacks of a call
  dialed by ``relaycall call dial --status-url`` (another real process), refuses a
  forged one with its reason, and stops cleanly on SIGTERM.
- The parsers and the params check in process (usage errors name the flag, or the
  params path), with hypothesis over ``call send`` params.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import re
import signal
import socket
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from relaycall import Call, EventReceiver
from relaycall.__main__ import build_parser
from relaycall.__main__ import main as relaycall_main
from relaycall._cli._call import _Invalid, build
from relaycall.commands import BY_NAME
from relaycall.testing import Emulator, Scenario
from tests._command_examples import EXAMPLES, Example
from tests._programs import program_env
from tests.test_receiver_attacks import json_values

PY = [sys.executable, "-m", "relaycall"]
CALLER, CUSTOMER = "+15551230000", "+15557650000"
#: A far end that presses 1 when a collect asks for input.
PRESSES_1 = "+15557650001"
SWML_URL = "https://example.com/swml"
SIGNING_KEY = "cli-test-signing-key"
APP_SECRET = "the-app-receivers-token-key"


@pytest.fixture
def closed_port() -> Iterator[int]:
    """A loopback port nothing listens on (bound and not listening: connections are refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


@pytest.fixture
async def emu(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Emulator]:
    """A fast emulator; the SIGNALWIRE_* variables point at it, as a user's shell would."""
    scenarios = {PRESSES_1: Scenario(dtmf="1")}
    async with Emulator(time_scale=100, signing_key=SIGNING_KEY, scenarios=scenarios) as emulator:
        for name, value in program_env(emulator).items():
            if name.startswith("SIGNALWIRE_"):
                monkeypatch.setenv(name, value)
        yield emulator


async def _answered(emu: Emulator, to: str = CUSTOMER) -> Call:
    call = await emu.relay.dial(from_=CALLER, to=to, url=SWML_URL)
    assert await call.wait_for("answered", timeout=10) == "answered"
    await emu.idle()
    return call


async def _cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """Run ``relaycall ARGV`` in a worker thread; its exit status, stdout and stderr."""
    code = await asyncio.to_thread(relaycall_main, argv)
    out, err = capsys.readouterr()
    return code, out, err


# --- every subcommand's wire body ---------------------------------------------------------------


def _cases(cid: str) -> list[tuple[list[str], dict[str, Any]]]:
    """Each command line on call *cid*, in an order that works, and the body it must send."""
    t = "wss://tap.example.com/a"
    return [
        (["play", cid, "--silence", "3600", "--tts", "hi", "--audio", "https://example.com/a.wav",
          "--ringtone", "us", "--volume", "-3", "--loop", "2", "--direction", "speak",
          "--language", "en-US", "--voice", "Polly.Joanna", "--gender", "female",
          "--control-id", "p1"],
         {"control_id": "p1", "play": [
             {"type": "silence", "params": {"duration": 3600}},
             {"type": "tts", "params": {"text": "hi"}},
             {"type": "audio", "params": {"url": "https://example.com/a.wav"}},
             {"type": "ringtone", "params": {"name": "us"}}],
          "volume": -3, "loop": 2, "direction": "speak", "language": "en-US",
          "voice": "Polly.Joanna", "gender": "female"}),
        (["pause", "play", cid, "p1"], {"control_id": "p1"}),
        (["volume", cid, "p1", "-6.5"], {"control_id": "p1", "volume": -6.5}),
        (["resume", "play", cid, "p1"], {"control_id": "p1"}),
        (["stop", "play", cid, "p1"], {"control_id": "p1"}),
        (["record", cid, "--format", "wav", "--beep", "--no-stereo", "--direction", "both",
          "--initial-timeout", "3600", "--end-silence-timeout", "3600", "--max-length", "7200",
          "--terminators", "#", "--input-sensitivity", "44", "--control-id", "r1"],
         {"control_id": "r1", "record": {"audio": {
             "format": "wav", "beep": True, "stereo": False, "direction": "both",
             "initial_timeout": 3600, "end_silence_timeout": 3600, "max_length": 7200,
             "terminators": "#", "input_sensitivity": 44}}}),
        (["pause", "record", cid, "r1", "--behavior", "silence"],
         {"control_id": "r1", "behavior": "silence"}),
        (["resume", "record", cid, "r1"], {"control_id": "r1"}),
        (["stop", "record", cid, "r1"], {"control_id": "r1"}),
        (["collect", cid, "--digits-max", "3", "--digits-terminators", "#", "--digit-timeout",
          "5", "--speech-language", "en-US", "--speech-hints", "yes, no", "--initial-timeout",
          "3600", "--partial-results", "--no-continuous", "--control-id", "c1"],
         {"control_id": "c1", "digits": {"max": 3, "terminators": "#", "digit_timeout": 5},
          "speech": {"language": "en-US", "hints": ["yes", "no"]}, "initial_timeout": 3600,
          "partial_results": True, "continuous": False}),
        (["start-input-timers", cid, "c1"], {"control_id": "c1"}),
        (["stop", "collect", cid, "c1"], {"control_id": "c1"}),
        (["detect", cid, "--detect-message-end", "--machine-words-threshold", "6",
          "--timeout", "3600", "--control-id", "d1"],
         {"control_id": "d1", "detect": {"type": "machine", "params": {
             "detect_message_end": True, "machine_words_threshold": 6}}, "timeout": 3600}),
        (["detect", cid, "fax", "--tone", "CED", "--timeout", "3600", "--control-id", "d2"],
         {"control_id": "d2", "detect": {"type": "fax", "params": {"tone": "CED"}},
          "timeout": 3600}),
        (["stop", "detect", cid, "d2"], {"control_id": "d2"}),
        (["tap", cid, t, "--direction", "listen", "--codec", "PCMU", "--control-id", "t1"],
         {"control_id": "t1", "tap": {"type": "audio", "params": {"direction": "listen"}},
          "device": {"type": "ws", "params": {"uri": t, "codec": "PCMU"}}}),
        (["stop", "tap", cid, "t1"], {"control_id": "t1"}),
        (["stream", cid, "wss://stream.example.com/s", "--name", "s", "--track", "both_tracks",
          "--control-id", "s1"],
         {"control_id": "s1", "url": "wss://stream.example.com/s", "name": "s",
          "track": "both_tracks"}),
        (["stop", "stream", cid, "s1"], {"control_id": "s1"}),
        (["transcribe", cid, "--control-id", "x1"], {"control_id": "x1"}),
        (["stop", "transcribe", cid, "x1"], {"control_id": "x1"}),
        (["user-event", cid, '{"type": "hello", "n": 1}'], {"event": {"type": "hello", "n": 1}}),
        (["send", "calling.denoise", cid], {}),
        (["send", "denoise.stop", cid, "--params", "{}"], {}),
        (["update", cid, "--url", "https://example.com/next", "--fallback-url",
          "https://example.com/fallback"],
         {"id": cid, "url": "https://example.com/next",
          "fallback_url": "https://example.com/fallback"}),
        (["transfer", cid, "sip:agent@example.com"], {"dest": "sip:agent@example.com"}),
        (["end", cid, "--reason", "busy"], {"reason": "busy"}),
    ]  # fmt: skip


async def test_each_subcommand_sends_its_exact_body(
    emu: Emulator, capsys: pytest.CaptureFixture[str]
) -> None:
    """
    Every `relaycall call` subcommand sends exactly the body its flags say (the journal's
    copy), is answered 200 and prints one summary line: `COMMAND: call_id=... status=...`.
    """
    call = await _answered(emu)
    emu.journal.clear()
    for args, params in _cases(call.id):
        code, out, err = await _cli(["call", *args], capsys)
        assert (code, err) == (0, ""), args
        request = emu.journal.requests[-1]
        envelope = {"command": request.command, "params": params}
        if request.command != "update":
            envelope["id"] = call.id
        assert request.body == envelope, args
        assert request.status == 200, (args, request.response)
        summary = f"{request.command}: call_id={call.id} status={request.response['status']}"
        control_id = params.get("control_id")
        assert out == summary + (f" control_id={control_id}" if control_id else "") + "\n"
    assert len(emu.journal.requests) == len(_cases(call.id))


async def test_dial_and_a_generated_control_id(
    emu: Emulator, capsys: pytest.CaptureFixture[str]
) -> None:
    """
    `call dial` sends its flags' params (no top-level id); a start command given no
    --control-id gets a fresh one, which the reply line names.
    """
    code, out, err = await _cli(
        ["call", "dial", "--from", CALLER, "--to", CUSTOMER, "--url", SWML_URL,
         "--caller-id", "Acme_Support", "--status-events", "created,answered", "--timeout", "30",
         "--url-method", "GET", "--send-digits", "12#", "--custom-variables", '{"a": "b"}'],
        capsys,
    )  # fmt: skip
    assert (code, err) == (0, "")
    (dial,) = emu.journal.requests
    assert dial.body == {
        "command": "dial",
        "params": {
            "from": CALLER, "to": CUSTOMER, "url": SWML_URL, "caller_id": "Acme_Support",
            "status_events": ["created", "answered"], "timeout": 30, "url_method": "GET",
            "send_digits": "12#", "custom_variables": {"a": "b"},
        },
    }  # fmt: skip
    assert out == f"dial: call_id={dial.response['id']} status=queued\n"

    call = await _answered(emu)
    code, out, err = await _cli(["call", "play", call.id, "--tts", "hello"], capsys)
    assert (code, err) == (0, "")
    play = emu.journal.requests[-1]
    control_id = play.body["params"]["control_id"]
    assert re.fullmatch(r"[A-Za-z0-9_-]{16}", control_id)
    assert out.endswith(f" control_id={control_id}\n")


async def test_wait_prints_the_operations_result(
    emu: Emulator, capsys: pytest.CaptureFixture[str]
) -> None:
    """
    `--wait --listen 127.0.0.1:0`: the command's status_url points at a receiver of the
    command line's own, the reply line comes first, then the operation's result (a
    collect's digits; with --json, one object holding both). `--wait-timeout` running
    out exits 7, naming the control_id, and the operation goes on.
    """
    call = await _answered(emu, PRESSES_1)
    wait = ["--wait", "--listen", "127.0.0.1:0"]
    code, out, err = await _cli(
        ["call", "collect", call.id, "--digits-max", "1", "--start-input-timers",
         "--control-id", "c1", *wait],
        capsys,
    )  # fmt: skip
    assert (code, err) == (0, ""), err
    collect = emu.journal.requests[-1]
    assert collect.body["params"]["status_url"].startswith("http://127.0.0.1:")
    assert out.splitlines() == [
        f"calling.collect: call_id={call.id} status=answered control_id=c1",
        "calling.collect result: state=finished reason=finished type=digit digits=1",
    ]

    code, out, err = await _cli(
        ["call", "play", call.id, "--tts", "hi", "--control-id", "p1", "--json", *wait], capsys
    )
    assert (code, err) == (0, ""), err
    printed = json.loads(out)
    assert printed["result"] == {
        "call_id": call.id, "control_id": "p1", "state": "finished", "reason": "finished",
    }  # fmt: skip
    assert printed["reply"] == emu.journal.requests[-1].response

    code, out, err = await _cli(
        ["call", "play", call.id, "--silence", "3600", "--control-id", "p2", *wait,
         "--wait-timeout", "0.5"],
        capsys,
    )  # fmt: skip
    assert code == 7
    assert out == f"calling.play: call_id={call.id} status=answered control_id=p2\n"
    assert err == (
        "relaycall call play: error: calling.play was carried out (control_id p2) but did "
        "not finish within 0.5 s; it goes on\n"
    )
    # Still playing: its stop is accepted (an operation already over would get 404).
    code, out, err = await _cli(["call", "stop", "play", call.id, "p2"], capsys)
    assert (code, err) == (0, "")


# --- real processes: output and exit statuses -------------------------------------------------


async def _run_all(
    commands: dict[str, list[str]],
    env: dict[str, str],
    *,
    stdin: dict[str, str] | None = None,
    envs: dict[str, dict[str, str]] | None = None,
) -> dict[str, tuple[int, str, str]]:
    """
    Run each command line as a process, side by side; exit status, stdout, stderr.

    *stdin* and *envs* give some of them (by name) an input or an environment of their own.
    """

    async def one(name: str, argv: list[str]) -> tuple[int, str, str]:
        proc = await asyncio.create_subprocess_exec(
            *PY, *argv, env=(envs or {}).get(name, env), stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        data = (stdin or {}).get(name, "").encode()
        out, err = await asyncio.wait_for(proc.communicate(data), timeout=60)
        assert proc.returncode is not None
        return proc.returncode, out.decode(), err.decode()

    results = await asyncio.gather(*(one(name, argv) for name, argv in commands.items()))
    return dict(zip(commands, results, strict=True))


async def test_exit_statuses_and_json_as_processes(emu: Emulator, closed_port: int) -> None:
    """
    As real processes: `--json` prints one object; a 422 exits 3, bad credentials 4, a
    refused connection 5, a dial whose connection dropped after it was carried out 6,
    missing credentials 2, each with one error line (`--json` adds the error as an object
    on stdout), and no output anywhere holds a traceback or an "Unclosed" warning. (Bad
    flags and params, which fail before anything starts, are checked in process below.)
    """
    call = await _answered(emu)
    emu.faults.fail(422, command="calling.user_event")
    emu.faults.drop_connection(command="dial")
    env = program_env(emu)
    cid = call.id
    results = await _run_all(
        {
            "json": ["call", "send", "calling.play", cid, "--json", "--params", "-"],
            "422": ["call", "user-event", cid, '{"type": "x"}', "--json"],
            "auth": ["call", "end", cid, "--token", "wrong-token"],
            "refused": ["call", "end", cid, "--base-url", f"http://127.0.0.1:{closed_port}",
                        "--retries", "0"],
            "ambiguous": ["call", "dial", "--from", CALLER, "--to", CUSTOMER, "--url", SWML_URL],
            "no-credentials": ["call", "end", cid],
        },
        env,
        stdin={"json": '{"play": [{"type": "tts", "params": {"text": "hi"}}]}'},
        envs={"no-credentials": {k: v for k, v in env.items() if k != "SIGNALWIRE_PROJECT_ID"}},
    )  # fmt: skip
    for name, (_, out, err) in results.items():
        for text in (out, err):
            assert "Traceback" not in text, name
            assert "Unclosed" not in text, name

    code, out, err = results["json"]
    assert (code, err) == (0, "")
    (play,) = [r for r in emu.journal.requests if r.command == "calling.play"]
    control_id = play.body["params"]["control_id"]
    assert json.loads(out) == {
        "command": "calling.play", "call_id": cid, "control_id": control_id,
        "reply": play.response,
    }  # fmt: skip
    assert out.count("\n") == 1

    code, out, err = results["422"]
    message = (
        "calling.user_event failed with HTTP 422: "
        + emu.journal.requests[
            [r.command for r in emu.journal.requests].index("calling.user_event")
        ].response["error"]
    )
    assert (code, err) == (3, f"relaycall call user-event: error: {message}\n")
    assert json.loads(out)["error"] == {
        "exit_code": 3, "message": message, "type": "UnprocessableEntityError", "status": 422,
        "body": {"error": message.split(": ", 1)[1]},
    }  # fmt: skip

    code, out, err = results["auth"]
    assert (code, out) == (4, "")
    assert err.startswith("relaycall call end: error: calling.end failed with HTTP 401")
    assert "SIGNALWIRE_API_TOKEN" in err
    assert err.count("\n") == 1

    code, out, err = results["refused"]
    assert (code, out) == (5, "")
    assert err.startswith(f"relaycall call end: error: calling.end: could not connect to "
                          f"127.0.0.1:{closed_port}")  # fmt: skip
    assert err.count("\n") == 1

    code, out, err = results["ambiguous"]
    assert (code, out) == (6, "")
    assert err.startswith("relaycall call dial: error: dial may or may not have been carried out")
    assert err.count("\n") == 1

    code, out, err = results["no-credentials"]
    assert (code, out) == (2, "")
    assert err == (
        "relaycall call end: error: missing credentials: --project-id (or SIGNALWIRE_PROJECT_ID)\n"
    )
    # Nothing was sent for any usage error, nor with the wrong token (refused at the door).
    assert {r.command for r in emu.journal.requests} >= {"calling.play", "calling.user_event"}
    assert "calling.end" not in {r.command for r in emu.journal.requests if r.status == 200}


# --- events listen -------------------------------------------------------------------------------


async def _line(stream: asyncio.StreamReader) -> str:
    raw = await asyncio.wait_for(stream.readline(), timeout=20)
    assert raw, "the output ended"
    return raw.decode()


async def test_events_listen_prints_verified_callbacks_and_refuses_forged_ones(
    emu: Emulator,
) -> None:
    """
    `relaycall events listen --json`: its printed status_url, given to `relaycall call dial
    --status-url`, gets the emulator's signed callbacks, each printed as its JSON body in
    the order sent. With the app's --secret, a status_url the app's receiver wrote is let
    in too; a signed callback without a token and one with a bad signature are answered
    403 and logged on stderr with their reason. SIGTERM stops it with a line and status 0.
    """
    env = {k: v for k, v in program_env(emu).items() if k != "SIGNALWIRE_SIGNING_KEY"}
    listener = await asyncio.create_subprocess_exec(
        *PY, "events", "listen", "--port", "0", "--json", "--signing-key", SIGNING_KEY,
        "--secret", APP_SECRET,
        env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert listener.stdout is not None
    assert listener.stderr is not None
    try:
        banner = [await _line(listener.stdout) for _ in range(3)]
        listening = re.fullmatch(
            r"relaycall events listening on (http://127\.0\.0\.1:\d+/relaycall/events/)\n",
            banner[0],
        )
        assert listening is not None, banner
        status_url = banner[1].split(" : ", 1)[1].strip()
        assert status_url.startswith(listening.group(1) + "?t=d.")
        assert banner[2] == "  signatures : on\n"

        results = await _run_all(
            {"dial": ["call", "dial", "--from", CALLER, "--to", CUSTOMER, "--url", SWML_URL,
                      "--status-url", status_url, "--status-events",
                      "created,ringing,answered"]},
            env,
        )  # fmt: skip
        code, out, err = results["dial"]
        assert (code, err) == (0, ""), err
        call_id = out.split("call_id=")[1].split()[0]
        printed = [json.loads(await _line(listener.stdout)) for _ in range(3)]
        await emu.idle()
        sent = [c for c in emu.callbacks if c.call_id == call_id]
        assert [c.outcome for c in sent] == ["delivered"] * 3
        assert printed == [c.body for c in sent]
        assert [p["params"]["call_state"] for p in printed] == ["created", "ringing", "answered"]

        # The app's own status_urls (its receiver has the same --secret) are let in too;
        # a signed callback without a token, or with a bad signature, is not.
        app = EventReceiver(public_url=listening.group(1), secret=APP_SECRET.encode())
        body = json.dumps(printed[-1]).encode()
        posts = {
            "app": (app.status_url(call_id), SIGNING_KEY),
            "no-token": (listening.group(1), SIGNING_KEY),
            "forged": (status_url, "not-the-key"),
        }
        statuses = {}
        async with aiohttp.ClientSession() as http:
            for name, (url, key) in posts.items():
                signature = hmac.new(key.encode(), url.encode() + body, hashlib.sha1).hexdigest()
                headers = {"X-SignalWire-Signature": signature}
                async with http.post(url, data=body, headers=headers) as resp:
                    statuses[name] = resp.status
        assert statuses == {"app": 200, "no-token": 403, "forged": 403}
        assert json.loads(await _line(listener.stdout)) == printed[-1]
        refusals = [await _line(listener.stderr) for _ in range(2)]
        refused = "relaycall events listen: refused a callback: missing or wrong"
        assert refusals == [f"{refused} token\n", f"{refused} X-SignalWire-Signature\n"]

        listener.send_signal(signal.SIGTERM)
        out_rest, err_rest = await asyncio.wait_for(listener.communicate(), timeout=20)
        assert out_rest.decode() == "relaycall events stopped (SIGTERM)\n"
        assert err_rest.decode() == ""
        assert listener.returncode == 0
    finally:
        if listener.returncode is None:
            listener.kill()
            await listener.wait()


# --- in process: the parsers and the params check ----------------------------------------------

CID = "7b6e9d0c-1111-4222-8333-444455556666"
#: Built once: a parser is reusable, and building one is most of an example's cost.
CALL_PARSER = build_parser(["call"])


@pytest.mark.parametrize(
    ("argv", "error"),
    [
        (["play", CID, "--tts", "x", "--volume", "99"], "argument --volume: 99 is outside -40..40"),
        (["play", CID], "argument --tts/--audio/--silence/--ringtone: is required"),
        (["play", CID, "--audio", "ftp://x"], "argument --tts/--audio/--silence/--ringtone: "
         "play[0].params.url: "),
        (["play", "nope", "--tts", "x"], "CALL_ID: 'nope' is not a UUID"),
        (["dial", "--to", CUSTOMER, "--url", SWML_URL], "argument --from: is required"),
        (["dial", "--from", CALLER, "--to", "hello", "--url", SWML_URL], "argument --to: "),
        (["record", CID, "--params", '{"record": {"audio": {"max_length": -1}}}'],
         "params.record.audio.max_length: -1 must be >= 0"),
        (["send", "calling.play", "--params", "{}"],
         "calling.play needs the CALL_ID of the call it acts on"),
        (["send", "dial", CID, "--params", "{}"], "dial takes no CALL_ID (it creates the call)"),
        (["send", "play", CID, "--params", '{"volume": 1}'], "params.play: is required"),
        (["send", "calling.end", CID, "--params", '{"bogus": 1}'],
         "params.bogus: is not an allowed parameter here"),
        (["pause", "play", CID, "p1", "--behavior", "skip"],
         "argument --behavior: is not an allowed parameter here"),
        (["update", CID], "argument --url: give exactly one of url or swml"),
        (["play", CID, "--tts", "x", "--wait"], "argument --wait: needs --listen [HOST:]PORT"),
        (["play", CID, "--tts", "x", "--listen", "0"], "argument --listen: only used with --wait"),
    ],
)  # fmt: skip
def test_invalid_commands_name_the_flag_or_params_path(
    argv: list[str], error: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """A command the API would refuse is one error line, status 2, before anything is sent."""
    # No credentials anywhere: the check comes first, so nothing could have been sent.
    code = relaycall_main(["call", *argv])
    out, err = capsys.readouterr()
    assert (code, out) == (2, "")
    assert err.startswith(f"relaycall call {argv[0]}: error: {error}"), err
    assert err.count("\n") == 1


@pytest.mark.parametrize(
    ("argv", "error"),
    [
        (["play", CID, "--volume", "loud"], "argument --volume: expected a number, got 'loud'"),
        (["play", CID, "--silence", "nan"], "argument --silence: expected a number, got 'nan'"),
        (["play", CID, "--params", "[1]"],
         "argument --params: must be a JSON object (the command's params)"),
        (["play", CID, "--params", "@/nonexistent/params.json"],
         "argument --params: cannot read /nonexistent/params.json: No such file or directory"),
        (["play", CID, "--retries", "-1"], "argument --retries: must be 0 or more, not '-1'"),
        (["tap", CID, "rtp://1.2.3.4:x"], "argument DEVICE: expected rtp://ADDR:PORT"),
        (["stop", "dial", CID, "x"], "argument KIND: invalid choice: 'dial'"),
        (["user-event", CID, "[]"], "argument EVENT: must be a JSON object, not '[]'"),
        (["play", CID, "--listen", "host"], "argument --listen: expected [HOST:]PORT, got 'host'"),
        (["play", CID, "--wait-timeout", "0"],
         "argument --wait-timeout: must be a number of seconds > 0, not '0'"),
    ],
)  # fmt: skip
def test_bad_flags_are_usage_errors(
    argv: list[str], error: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """A bad flag value: argparse's usage line, then `<prog>: error: ...` naming it, status 2."""
    with pytest.raises(SystemExit) as exit_info:
        relaycall_main(["call", *argv])
    assert exit_info.value.code == 2
    usage, message = capsys.readouterr().err.split("\nrelaycall call ")
    assert usage.startswith(f"usage: relaycall call {argv[0]} ")
    assert message.startswith(f"{argv[0]}: error: {error}"), message


def test_params_from_a_file_and_flags_over_them(tmp_path: Path) -> None:
    """`--params @FILE` is read as the base params; a flag given too wins over its key."""
    path = tmp_path / "params.json"
    path.write_text('{"play": [{"type": "tts", "params": {"text": "a"}}], "volume": 1}')
    ns = CALL_PARSER.parse_args(
        ["call", "play", CID, "--params", f"@{path}", "--volume", "2", "--control-id", "c"]
    )
    assert build(ns).to_wire() == {
        "command": "calling.play", "id": CID,
        "params": {"control_id": "c", "play": [{"type": "tts", "params": {"text": "a"}}],
                   "volume": 2},
    }  # fmt: skip


_scalars = st.none() | st.booleans() | st.integers(-100, 100) | st.floats() | st.text(max_size=8)
_items = st.one_of(
    st.builds(lambda t: {"type": "tts", "params": {"text": t}}, st.text(max_size=8)),
    st.builds(lambda d: {"type": "silence", "params": {"duration": d}}, _scalars),
    st.builds(lambda u: {"type": "audio", "params": {"url": u}},
              st.sampled_from(["https://example.com/a.wav", "ftp://x", ""])),
    json_values,
)  # fmt: skip
_play_params = st.fixed_dictionaries(
    {},
    optional={"play": st.lists(_items, max_size=3) | json_values, "volume": _scalars,
              "loop": _scalars, "direction": st.sampled_from(["listen", "both", "up"]),
              "status_url": st.sampled_from(["https://example.com/cb", "nope"]),
              "control_id": st.text(max_size=4), "unknown": json_values},
)  # fmt: skip


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(params=_play_params)
def test_send_params_are_sent_as_given_or_refused_by_name(params: dict[str, Any]) -> None:
    """
    `call send calling.play CALL_ID --params P`: either the body's params are exactly P
    (with a control_id picked when P has none), or the error names a params path that
    starts at one of P's keys (or a required one P lacks). Never anything else.
    """
    ns = CALL_PARSER.parse_args(
        ["call", "send", "calling.play", CID, "--params", json.dumps(params)]
    )
    try:
        wire = build(ns).to_wire()
    except _Invalid as exc:
        message = str(exc)
        assert message.startswith("params."), message
        key = re.split(r"[.\[:]", message[len("params.") :], maxsplit=1)[0]
        assert key in params or key in ("play", "control_id"), message
        return
    assert wire["id"] == CID
    expected = dict(params)
    expected.setdefault("control_id", wire["params"]["control_id"])
    assert wire["params"] == expected


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda e: e.id)
def test_send_takes_every_commands_wire_params(example: Example) -> None:
    """
    `call send COMMAND [CALL_ID] --params P`, for every one of the 42 commands (each
    minimal and full example of tests/_command_examples.py): the body sent is the
    example's exact body, P being its params.
    """
    wire = example.wire
    argv = ["call", "send", wire["command"], *([wire["id"]] if "id" in wire else [])]
    ns = CALL_PARSER.parse_args([*argv, "--params", json.dumps(wire["params"])])
    assert build(ns).to_wire() == wire


def test_the_examples_cover_every_command() -> None:
    """The table above reaches all 42 commands (a shorter table would pass unnoticed)."""
    assert {e.wire["command"] for e in EXAMPLES} == set(BY_NAME)
    assert len(BY_NAME) == 42
