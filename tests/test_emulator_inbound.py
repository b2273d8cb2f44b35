"""
The emulator places inbound calls and runs SWML: the signed fetch (reference §9.6), the
documented subset of SWML with its timing in emulated time, what it cannot run, bad
answers, a dial's url, and the Calling API taking over a sleeping document.

The app is a real aiohttp server on 127.0.0.1 (:class:`SwmlApp`) answering each fetch
as the test scripts it.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import signal
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import attrs
import jsonschema
import pytest
from aiohttp import web
from hypothesis import given, settings
from hypothesis import strategies as st

import relaycall
from relaycall._commands._swml import SWML_METHODS
from relaycall.emulator import EmulatorConfig, NoteEntry
from relaycall.emulator._swml import EXECUTED, NOT_EMULATED
from relaycall.testing import Emulator, Scenario
from tests.conftest import DIAL, CallbackRecorder, basic_auth

PROJECT_UUID = "a2c2f1d0-0000-4000-8000-00000000beef"
KEY = "inbound-signing-key"
CALLER = "+15551112222"
NUMBER = "+15553334444"
AGENT = "+15550009999"

_SCHEMA = json.loads((Path(__file__).parent / "data" / "status-callbacks.schema.json").read_text())
FETCH_SCHEMA = {**_SCHEMA, "oneOf": None, "$ref": "#/$defs/InboundCallWebhookPayload"}
del FETCH_SCHEMA["oneOf"]


def doc(*steps: dict[str, Any], **sections: list[dict[str, Any]]) -> dict[str, Any]:
    """A SWML document: *steps* as main, other sections by name."""
    return {"version": "1.0.0", "sections": {"main": list(steps), **sections}}


@attrs.define
class Fetch:
    """One SWML fetch as it reached the app."""

    url: str
    method: str
    headers: dict[str, str]
    raw: bytes

    @property
    def body(self) -> Any:
        return json.loads(self.raw)


@attrs.define
class Answer:
    """A scripted answer: JSON *document*, or *raw* bytes, with *status* and *content_type*."""

    document: Any = None
    status: int = 200
    raw: bytes | None = None
    content_type: str = "application/json"


class SwmlApp:
    """An aiohttp server on 127.0.0.1 playing the app: it records fetches and answers them."""

    def __init__(self) -> None:
        self.fetches: list[Fetch] = []
        self.answers: dict[str, list[Answer]] = {}
        self._arrived = asyncio.Condition()
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        self.port = 0

    async def __aenter__(self) -> SwmlApp:
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = self._runner.addresses[0][1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._runner.cleanup()

    def url(self, path: str = "/swml") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def serve(self, path: str, *answers: Answer | dict[str, Any]) -> str:
        """Answer fetches of *path* with *answers* in turn (the last one repeats)."""
        self.answers[path] = [a if isinstance(a, Answer) else Answer(a) for a in answers]
        return self.url(path)

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        fetch = Fetch(str(request.url), request.method, dict(request.headers), raw)
        async with self._arrived:
            self.fetches.append(fetch)
            self._arrived.notify_all()
        queue = self.answers.get(request.path) or [Answer(status=404, raw=b"no")]
        answer = queue.pop(0) if len(queue) > 1 else queue[0]
        body = answer.raw if answer.raw is not None else json.dumps(answer.document).encode()
        return web.Response(status=answer.status, body=body, content_type=answer.content_type)


@pytest.fixture
async def app() -> AsyncIterator[SwmlApp]:
    async with SwmlApp() as a:
        yield a


def config(**over: Any) -> EmulatorConfig:
    options: dict[str, Any] = {
        "project_id": PROJECT_UUID, "token": "test-token", "time_scale": 50, "signing_key": KEY,
    }  # fmt: skip
    return EmulatorConfig(**{**options, **over})


@pytest.fixture
async def emu() -> AsyncIterator[Emulator]:
    async with Emulator(config=config()) as e:
        yield e


def notes(emu: Emulator, call_id: str, what: str | None = None) -> list[NoteEntry]:
    return [n for n in emu.notes if n.call_id == call_id and (what is None or n.what == what)]


def steps(emu: Emulator, call_id: str) -> list[tuple[str, float]]:
    """Each SWML step run on the call: (method, emulated seconds since the first step)."""
    ran = notes(emu, call_id, "swml.step")
    return [(n.data["method"], round(n.time - ran[0].time, 6)) for n in ran]


async def ended(emu: Emulator, call_id: str, timeout: float = 10.0) -> None:
    """Wait (woken by the call itself, no polling) until the emulated call has ended."""
    call = emu.call(call_id)
    done = asyncio.Event()
    call.watchers.append(lambda _call, what: done.set() if what == "ended" else None)
    if call.is_live:
        await asyncio.wait_for(done.wait(), timeout)


# --- the fetch ------------------------------------------------------------------------------------


async def test_fetch_body_is_the_documented_shape_and_signed(emu: Emulator, app: SwmlApp) -> None:
    """
    The fetch is a POST of exactly the §9.6 body (valid against InboundCallWebhookPayload),
    signed with the emulator's key over URL + body (SHA1 and SHA256), for a phone call.
    """
    url = app.serve("/swml", doc({"answer": {}}, {"sleep": -1})) + "?t=abc"
    call_id = await emu.incoming_call(
        CALLER, NUMBER, url=url, headers={"X-Campaign": "spring"}, envs={"tier": "gold"}
    )
    (fetch,) = app.fetches
    call = emu.call(call_id)
    assert fetch.method == "POST"
    assert fetch.headers["Content-Type"] == "application/json"
    assert fetch.body == {
        "call": {
            "call_id": call_id, "node_id": call.node_id, "segment_id": call.segment_id,
            "call_state": "ringing", "direction": "inbound", "type": "phone",
            "from": CALLER, "to": NUMBER, "from_number": CALLER, "to_number": NUMBER,
            "headers": [{"name": "X-Campaign", "value": "spring"}],
            "project_id": PROJECT_UUID, "space_id": emu.config.space_id,
        },
        "vars": {}, "envs": {"tier": "gold"}, "params": {},
    }  # fmt: skip
    jsonschema.validate(
        fetch.body, FETCH_SCHEMA, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
    )
    signed = url.encode() + fetch.raw
    assert fetch.headers["X-SignalWire-Signature"] == (
        hmac.new(KEY.encode(), signed, hashlib.sha1).hexdigest()
    )
    assert fetch.headers["X-SignalWire-SHA256-Signature"] == (
        hmac.new(KEY.encode(), signed, hashlib.sha256).hexdigest()
    )
    assert call.direction == "inbound"
    assert call.leg()["direction"] == "inbound"
    assert call.is_answered
    assert call.swml.state == "sleeping"


async def test_sip_call_fetch_carries_sip_data(emu: Emulator, app: SwmlApp) -> None:
    """A sip call's fetch has type sip, no from_number/to_number, and a schema-valid sip_data."""
    url = app.serve("/swml", doc({"hangup": {}}))
    await emu.incoming_call("sip:alice@pbx.example.com", "sip:support@example.com", type="sip",
                            url=url)  # fmt: skip
    body = app.fetches[0].body
    assert body["call"]["type"] == "sip"
    assert "from_number" not in body["call"]
    assert body["call"]["sip_data"]["sip_from_user"] == "alice"
    assert body["call"]["sip_data"]["sip_to_host"] == "example.com"
    jsonschema.validate(body, FETCH_SCHEMA)


async def test_default_url_is_the_receivers_swml_url(emu: Emulator) -> None:
    """Without url=, incoming_call fetches from the testing receiver's swml_url."""
    assert emu.swml_url.startswith(emu.receiver.public_url or "")
    call_id = await emu.incoming_call(CALLER, NUMBER)
    (fetch,) = notes(emu, call_id, "swml.fetch")
    assert fetch.data["url"] == emu.swml_url


# --- timing ---------------------------------------------------------------------------------------


async def test_each_method_takes_its_emulated_time(emu: Emulator, app: SwmlApp) -> None:
    """
    answer, set, label and switch take no time; play lasts as the emulated play does (TTS
    0.075 s a character, silence as given, ring:N:cc N s); sleep its milliseconds; prompt
    its play, then the caller's input_delay and keys; hangup ends the call at once.
    """
    text = "Welcome to the emulator"  # 23 characters: 1.725 s
    url = app.serve("/swml", doc(
        {"answer": {}},
        {"play": {"url": f"say:{text}"}},
        {"play": {"urls": ["silence:1.5", "ring:2:us"]}},
        {"set": {"who": "${call.from}"}},
        {"sleep": {"duration": 250}},
        {"prompt": {"play": "silence:1", "max_digits": 3, "terminators": "#"}},
        {"label": "done"},
        {"hangup": {"reason": "busy"}},
    ))  # fmt: skip
    caller = Scenario(dtmf="42#", input_delay=0.5, digit_interval=0.2)
    call_id = await emu.incoming_call(CALLER, NUMBER, url=url, scenario=caller)
    await ended(emu, call_id)
    # prompt: 1 s of play, 0.5 s input delay, keys at +0, +0.2, terminator at +0.4
    assert steps(emu, call_id) == [
        ("answer", 0.0), ("play", 0.0), ("play", 1.725), ("set", 5.225), ("sleep", 5.225),
        ("prompt", 5.475), ("label", 7.375), ("hangup", 7.375),
    ]  # fmt: skip
    call = emu.call(call_id)
    assert call.end_reason == "busy"
    assert call.swml.vars == {
        "who": CALLER, "prompt_result": "match_digits", "prompt_value": "42",
        "prompt_digit_terminator": "#",
    }  # fmt: skip
    (end,) = notes(emu, call_id, "swml.end")
    assert end.data == {"why": "hangup", "steps_run": 8}


async def test_running_off_the_end_hangs_up(emu: Emulator, app: SwmlApp) -> None:
    """A document that runs out of steps ends the call (hangup), as the platform does."""
    url = app.serve("/swml", doc({"answer": {}}, {"sleep": 1000}))
    call_id = await emu.incoming_call(CALLER, NUMBER, url=url)
    await ended(emu, call_id)
    call = emu.call(call_id)
    assert (call.end_reason, call.status) == ("hangup", "completed")
    assert call.ended_at is not None
    assert call.answered_at is not None
    assert round(call.ended_at - call.answered_at, 6) == 1.0
    assert call.swml.ended_why == "completed"


async def test_prompt_with_no_input_and_speech(emu: Emulator, app: SwmlApp) -> None:
    """prompt sets no_input after its initial_timeout; with a speech setting it hears speech."""
    url = app.serve("/swml", doc(
        {"prompt": {"play": "silence:1", "initial_timeout": 3}},
        {"set": {"first": "${prompt_result}"}},
        {"prompt": {"play": "say:Say it", "speech_end_timeout": 1}},
        {"hangup": {}},
    ))  # fmt: skip
    caller = Scenario(speech="sales please", seconds_per_word=0.3, input_delay=0.5)
    call_id = await emu.incoming_call(CALLER, NUMBER, url=url, scenario=caller)
    await ended(emu, call_id)
    run = emu.call(call_id).swml
    assert run.vars["first"] == "no_input"
    assert (run.vars["prompt_result"], run.vars["prompt_value"]) == ("match_speech",
                                                                      "sales please")  # fmt: skip
    ran = steps(emu, call_id)
    assert ran[1] == ("set", 4.0)  # 1 s of play + 3 s initial timeout
    # "Say it": 0.5 s of TTS, 0.5 s input delay, two words of 0.3 s, 1 s of end silence
    assert ran[3] == ("hangup", 6.6)


async def test_record_call_runs_in_the_background_and_posts_its_status(
    emu: Emulator, app: SwmlApp
) -> None:
    """
    record_call starts a recording and the script goes on at once; it finishes when the call
    ends, posting SWML's record_call shape to its status_url; record_call_url is its file.
    """
    async with CallbackRecorder() as rx:
        url = app.serve("/swml", doc(
            {"answer": {}},
            {"record_call": {"control_id": "rec1", "status_url": rx.url("/rec"),
                             "format": "mp3"}},
            {"sleep": 3000},
        ))  # fmt: skip
        call_id = await emu.incoming_call(CALLER, NUMBER, url=url)
        started = await rx.next("calling.call.record", state="recording")
        finished = await rx.next("calling.call.record", state="finished")
    assert [m for m, _ in steps(emu, call_id)] == ["answer", "record_call", "sleep"]
    assert started.params["control_id"] == "rec1"
    run = emu.call(call_id).swml
    assert finished.params["record"] == {
        "url": run.vars["record_call_url"], "duration": 3.0, "size": 44 + 3 * 8000 * 2,
        "format": "mp3",
    }  # fmt: skip
    assert run.vars["record_call_result"] == "success"
    assert run.vars["record_control_id"] == "rec1"
    async with aiohttp.ClientSession() as session, session.get(run.vars["record_call_url"]) as r:
        assert r.status == 200
        assert len(await r.read()) == 44 + 3 * 8000 * 2


async def test_connect_bridges_to_the_callee_and_goes_on_after(emu: Emulator, app: SwmlApp) -> None:
    """
    connect dials the callee with its scenario: connected after setup, ringing and its
    ring_seconds; the script goes on when the callee hangs up; a busy callee is failed.
    """
    emu.scenarios[AGENT] = Scenario(ring_seconds=2, hangup_after=5)
    emu.scenarios["+15550000000"] = Scenario(answer="busy")
    url = app.serve("/swml", doc(
        {"connect": {"to": "+15550000000"}},
        {"set": {"first": "${connect_result}"}},
        {"connect": {"serial": [{"to": "+15550000000"}, {"to": AGENT}]}},
        {"hangup": {}},
    ))  # fmt: skip
    call_id = await emu.incoming_call(CALLER, NUMBER, url=url)
    await ended(emu, call_id)
    run = emu.call(call_id).swml
    assert (run.vars["first"], run.vars["connect_result"]) == ("failed", "connected")
    # busy: 0.2 s setup + 1 s ring; then busy again 1.2 s, the agent 0.2 + 2 s, talks 5 s
    assert steps(emu, call_id) == [
        ("connect", 0.0), ("set", 1.2), ("connect", 1.2), ("hangup", 9.6)
    ]  # fmt: skip
    (connected,) = [n for n in notes(emu, call_id, "swml.connect") if n.data["result"] != "failed"]
    peer = emu.call(connected.data["peer"])
    assert peer.to == AGENT
    assert peer.parent is emu.call(call_id)
    assert peer.end_reason == "hangup"


async def test_goto_execute_transfer_and_variables(emu: Emulator, app: SwmlApp) -> None:
    """
    goto loops to its label at most max times (and when its condition holds); execute runs
    a section with params and comes back with return's value; unset forgets; transfer to a
    URL fetches it with its params and the script's vars.
    """
    next_url = app.serve("/next", doc({"set": {"got": "${params.dept}"}}, {"hangup": {}}))
    url = app.serve("/swml", doc(
        {"set": {"n": 0}},
        {"label": "again"},
        {"execute": {"dest": "bump", "params": {"by": 1}}},
        {"set": {"n": "${return_value}"}},
        {"goto": {"label": "again", "max": 2}},
        {"goto": {"label": "skip", "when": "vars.n == 3"}},
        {"set": {"never": True}},
        {"label": "skip"},
        {"unset": "n"},
        {"transfer": {"dest": next_url, "params": {"dept": "sales"}}},
        bump=[{"return": "${vars.n + params.by}"}],
    ))  # fmt: skip
    call_id = await emu.incoming_call(CALLER, NUMBER, url=url)
    await ended(emu, call_id)
    run = emu.call(call_id).swml
    assert run.vars == {"return_value": 3, "got": "sales"}
    _, second = app.fetches
    assert second.body["params"] == {"dept": "sales"}
    assert second.body["vars"] == {"return_value": 3}
    assert second.body["call"]["call_state"] == "ringing"


# --- what it cannot run ---------------------------------------------------------------------------


async def test_unsupported_method_is_logged_journaled_and_skipped(
    emu: Emulator, app: SwmlApp, caplog: pytest.LogCaptureFixture
) -> None:
    """A SWML method the emulator cannot run: a warning with the call id and the method, a
    swml.unsupported note, and the next step runs."""
    url = app.serve("/swml", doc({"answer": {}}, {"send_sms": {"to_number": "+1"}},
                                 {"hangup": {}}))  # fmt: skip
    with caplog.at_level(logging.WARNING, logger="relaycall.emulator"):
        call_id = await emu.incoming_call(CALLER, NUMBER, url=url)
        await ended(emu, call_id)
    (note,) = notes(emu, call_id, "swml.unsupported")
    assert note.data == {"method": "send_sms", "section": "main", "index": 1}
    assert any(call_id in r.getMessage() and "'send_sms'" in r.getMessage()
               for r in caplog.records)  # fmt: skip
    assert [m for m, _ in steps(emu, call_id)] == ["answer", "send_sms", "hangup"]


def test_executed_and_not_emulated_cover_every_swml_method() -> None:
    """Every SWML method is either executed or listed as not emulated in docs/emulator.md."""
    assert EXECUTED | NOT_EMULATED == SWML_METHODS
    assert not EXECUTED & NOT_EMULATED
    text = (Path(__file__).parent.parent / "docs" / "emulator.md").read_text()
    for method in sorted(SWML_METHODS):
        assert f"`{method}`" in text, method


# --- bad answers ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("answer", "error"),
    [
        (Answer(status=500, raw=b"oops"), "answered HTTP 500"),
        (Answer(raw=b"<Response/>", content_type="text/xml"), "relay_script_parse_error"),
        (Answer({"version": "1.0.0", "sections": {"other": []}}),
         "relay_script_main_section_missing"),
        (Answer({"sections": {"main": [{"dance": {}}]}}), "relay_script_method_undefined"),
        (Answer([1, 2]), "relay_script_element_wrong_type"),
    ],
)  # fmt: skip
async def test_bad_answer_is_logged_journaled_and_hangs_up(
    emu: Emulator, app: SwmlApp, answer: Answer, error: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A non-200, non-JSON or invalid document: warning, swml.fetch note with the error, and
    the ringing call ends (failed, end reason error); the emulator keeps serving."""
    url = app.serve("/swml", answer)
    with caplog.at_level(logging.WARNING, logger="relaycall.emulator"):
        call_id = await emu.incoming_call(CALLER, NUMBER, url=url)
    call = emu.call(call_id)
    assert not call.is_live
    assert (call.status, call.end_reason) == ("failed", "error")
    (fetch,) = notes(emu, call_id, "swml.fetch")
    assert error in fetch.data["error"]
    assert call.swml.ended_why == "error"
    assert any(call_id in r.getMessage() and error in r.getMessage() for r in caplog.records)


async def test_unreachable_url_hangs_up(emu: Emulator, closed_port: int) -> None:
    """A refused connection is a failed fetch: the call ends; nothing raises."""
    call_id = await emu.incoming_call(CALLER, NUMBER, url=f"http://127.0.0.1:{closed_port}/x")
    assert emu.call(call_id).end_reason == "error"
    assert "fetch failed" in (emu.call(call_id).swml.error or "")


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=5),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)
_steps = st.lists(
    st.dictionaries(st.sampled_from([*sorted(EXECUTED), "tap"]), _json, min_size=1, max_size=1),
    max_size=4,
)


@settings(max_examples=40, deadline=None)
@given(document=_json | _steps.map(lambda s: doc(*s)))
def test_any_answer_never_crashes_the_emulator(document: Any) -> None:
    """Whatever JSON the app answers, the call either runs or ends; the emulator never raises."""

    async def run() -> None:
        async with SwmlApp() as app, Emulator(config=config(time_scale=1000)) as emu:
            url = app.serve("/swml", Answer(document))
            call_id = await emu.incoming_call(CALLER, NUMBER, url=url)
            emu.advance(20_000)
            call = emu.call(call_id)
            assert call.swml.state in ("ended", "sleeping", "bridged", "connecting", "waiting")
            emu.hangup(call_id) if call.is_live else None
            assert not call.is_live

    asyncio.run(run())


# --- dials ---------------------------------------------------------------------------------------


async def test_dial_url_is_fetched_once_answered_and_run(emu: Emulator, app: SwmlApp) -> None:
    """
    A dial whose url is reachable: once answered, the fetch (direction outbound, answered,
    custom_variables as envs) is POSTed signed, and its document runs: play, then hangup.
    """
    url = app.serve("/swml", doc({"play": {"url": "silence:2"}}, {"hangup": {}}))
    call = await emu.relay.dial(from_=CALLER, to=AGENT, url=url, custom_variables={"k": "v"})
    assert await call.wait(timeout=10) is not None
    (fetch,) = app.fetches
    body = fetch.body
    assert body["call"]["direction"] == "outbound"
    assert body["call"]["call_state"] == "answered"
    assert body["call"]["call_id"] == call.id
    assert body["envs"] == {"k": "v"}
    jsonschema.validate(body, FETCH_SCHEMA)
    emulated = emu.call(call.id)
    assert emulated.ended_at is not None
    assert emulated.answered_at is not None
    first = notes(emu, call.id, "swml.step")[0]
    # The fetch takes the real time it takes; the document then runs in emulated time.
    assert round(emu.core.clock.wall(emulated.ended_at) - first.time, 6) == 2.0
    assert first.time > emu.core.clock.wall(emulated.answered_at)


async def test_dial_fallback_url_is_used_when_url_fails(emu: Emulator, app: SwmlApp) -> None:
    """A dial whose url answers 500 fetches its fallback_url and runs that document."""
    bad = app.serve("/bad", Answer(status=500, raw=b""))
    good = app.serve("/good", doc({"hangup": {}}))
    call = await emu.relay.dial(from_=CALLER, to=AGENT, url=bad, fallback_url=good)
    await call.wait(timeout=10)
    assert [f.url for f in app.fetches] == [bad, good]
    assert emu.call(call.id).swml.ended_why == "hangup"


async def test_dial_url_not_loopback_is_skipped_and_the_call_stays(emu: Emulator) -> None:
    """A dial to a url off this machine: no fetch, a swml.skipped note; the API drives the call."""
    call = await emu.relay.dial(**DIAL)
    assert await call.wait_for("answered", timeout=5) == "answered"
    (note,) = notes(emu, call.id, "swml.skipped")
    assert note.data == {"url": DIAL["url"]}
    assert emu.call(call.id).is_live
    await call.end()


async def test_dial_inline_swml_runs(emu: Emulator) -> None:
    """A dial with inline swml runs it once answered (here: 1 s of sleep, then it ends)."""
    call = await emu.relay.dial(from_=CALLER, to=AGENT, swml=doc({"sleep": 1000}))
    await call.wait(timeout=10)
    emulated = emu.call(call.id)
    assert emulated.swml.ended_why == "completed"
    assert emulated.ended_at is not None
    assert emulated.answered_at is not None
    assert round(emulated.ended_at - emulated.answered_at, 6) == 1.0


# --- the Calling API on an inbound call -----------------------------------------------------------


async def test_calling_api_takes_over_a_sleeping_document(emu: Emulator, app: SwmlApp) -> None:
    """
    answer + sleep: a Calling API command on the call takes over (the document stops,
    journaled swml.taken_over) and the call stays up past the sleep; the API then plays,
    collects and ends it as a dialed call.
    """
    url = app.serve("/swml", doc({"answer": {}}, {"sleep": 5000}))
    call_id = await emu.incoming_call(CALLER, NUMBER, url=url, scenario=Scenario(dtmf="7"))
    relay = emu.relay
    call = relay.call(call_id)
    pb = await call.play(relaycall.tts("Hello"))
    (taken,) = notes(emu, call_id, "swml.taken_over")
    assert taken.data == {"command": "calling.play"}
    await pb.wait(timeout=5)
    col = await call.collect(digits=relaycall.commands.CollectDigits(max=1),
                             start_input_timers=True)  # fmt: skip
    assert (await col.wait(timeout=5)).digits == "7"
    emu.advance(10)  # well past the 5 s sleep
    assert emu.call(call_id).is_live
    await call.end()
    assert not emu.call(call_id).is_live


async def test_commands_alongside_a_playing_document_do_not_stop_it(
    emu: Emulator, app: SwmlApp
) -> None:
    """A command while the document plays runs alongside; the document goes on and ends."""
    url = app.serve("/swml", doc({"play": {"url": "silence:2"}}, {"hangup": {}}))
    call_id = await emu.incoming_call(CALLER, NUMBER, url=url)
    await emu.relay.send(relaycall.commands.UserEvent(call_id=call_id, event={"a": 1}))
    await emu.relay.call(call_id).play(relaycall.tts("Hi"))
    assert notes(emu, call_id, "swml.taken_over") == []
    await ended(emu, call_id)
    assert emu.call(call_id).swml.ended_why == "hangup"


async def test_update_with_swml_replaces_the_document(emu: Emulator, app: SwmlApp) -> None:
    """update(swml=...) stops the running document and runs the new one."""
    url = app.serve("/swml", doc({"answer": {}}, {"sleep": -1}))
    call_id = await emu.incoming_call(CALLER, NUMBER, url=url)
    first = emu.call(call_id).swml
    await emu.relay.call(call_id).update(swml=doc({"hangup": {"reason": "decline"}}))
    await ended(emu, call_id)
    assert first.ended_why == "replaced"
    assert emu.call(call_id).end_reason == "decline"


# --- the control API and the command line ---------------------------------------------------------


async def test_control_api_places_an_incoming_call(emu: Emulator, app: SwmlApp) -> None:
    """POST /__emulator/incoming_call: 201 with the call once fetched; bad bodies are 400."""
    url = app.serve("/swml", doc({"answer": {}}, {"sleep": -1}))
    auth = basic_auth(emu.config.project_id, emu.config.token)
    async with aiohttp.ClientSession(emu.base_url, headers=auth) as session:
        async with session.post("/__emulator/incoming_call",
                                json={"from": CALLER, "to": NUMBER, "url": url,
                                      "scenario": {"dtmf": ["1"]}}) as r:  # fmt: skip
            assert r.status == 201
            body = await r.json()
        assert body["call"]["direction"] == "inbound"
        assert body["call"]["status"] == "answered"
        assert body["call"]["swml"]["state"] == "sleeping"
        assert emu.call(body["call_id"]).scenario.dtmf == ("1",)
        for bad in ({"from": CALLER}, {"from": CALLER, "to": NUMBER, "url": "ftp://x"},
                    {"from": CALLER, "to": NUMBER, "url": url, "type": "fax"},
                    {"from": CALLER, "to": NUMBER, "url": url, "headers": [1]},
                    {"from": CALLER, "to": NUMBER, "url": url, "extra": 1}):  # fmt: skip
            async with session.post("/__emulator/incoming_call", json=bad) as r:
                assert r.status == 400, bad
        async with (
            aiohttp.ClientSession(emu.base_url) as anonymous,
            anonymous.post("/__emulator/incoming_call", json={}) as r,
        ):
            assert r.status == 401


async def test_command_line_places_an_incoming_call(app: SwmlApp) -> None:
    """`relaycall emulator --incoming-call FROM TO URL` fetches URL once listening, signed."""
    url = app.serve("/swml", doc({"answer": {}}, {"sleep": -1}))
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "relaycall", "emulator", "--port", "0", "--signing-key", KEY,
        "--incoming-call", CALLER, NUMBER, url,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert proc.stdout is not None
    try:
        line = b""
        while b"incoming call" not in line:
            line = await asyncio.wait_for(proc.stdout.readline(), timeout=10)
            assert line, "the emulator stopped"
        assert line.decode().endswith(f"from {CALLER} to {NUMBER}: SWML sleeping\n")
        (fetch,) = app.fetches
        # The default project id is not a UUID; the fetch carries a stable UUID made from it.
        assert fetch.body["call"]["project_id"] == str(
            uuid.uuid5(uuid.NAMESPACE_URL, "relaycall-emulator:test-project")
        )
        jsonschema.validate(
            fetch.body, FETCH_SCHEMA,
            format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER,
        )  # fmt: skip
        assert fetch.headers["X-SignalWire-Signature"] == (
            hmac.new(KEY.encode(), url.encode() + fetch.raw, hashlib.sha1).hexdigest()
        )
        proc.send_signal(signal.SIGINT)
        await asyncio.wait_for(proc.communicate(), timeout=10)
        assert proc.returncode == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


def test_fetch_schema_is_the_vendored_payload() -> None:
    """The schema the tests validate fetches against is the vendored §9.6 payload."""
    assert FETCH_SCHEMA["$ref"] == "#/$defs/InboundCallWebhookPayload"
    assert "InboundCallWebhookPayload" in _SCHEMA["$defs"]
    assert uuid.UUID(PROJECT_UUID)
