"""
relaycall.swml: every builder method's output is valid under SignalWire's published
SWML schema for calling (vendored whole in tests/data/), a bad value raises
ValidationError naming the step and field (never another exception, never a step
the schema refuses), and dial/update/transfer send the document as built.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import math
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator  # type: ignore[import-untyped]

import relaycall
from relaycall import ValidationError, commands, swml
from relaycall._commands._swml import SWML_METHODS
from relaycall.swml import SWML, Section, Steps, validate
from relaycall.swml._builder import _plain
from relaycall.swml._read import _WIRE_KEYS
from tests._command_examples import VALIDATOR as REQUEST_VALIDATOR
from tests.conftest import CALL_ID

DATA = Path(__file__).parent / "data" / "swml-calling.schema.json"
SCHEMA: dict[str, Any] = json.loads(DATA.read_text("utf-8"))
DOCUMENT = Draft202012Validator(SCHEMA, format_checker=Draft202012Validator.FORMAT_CHECKER)
#: sha256 of SignalWire's SWMLObject.json (signalwire/docs, commit 668371b217), as vendored.
SCHEMA_SHA256 = "082388097213113ed337eaaf10ce6844b284494795e9c81153bd4cfc81d91f48"


def _method_defs() -> dict[str, str]:
    """SWML method name -> the ``$defs`` entry of its step (each requires its one key)."""
    found = {}
    for ref in SCHEMA["$defs"]["SWMLMethod"]["anyOf"]:
        name = ref["$ref"].removeprefix("#/$defs/")
        (method,) = SCHEMA["$defs"][name]["required"]
        found[method] = name
    return found


METHOD_DEFS = _method_defs()
STEP_VALIDATORS = {
    method: Draft202012Validator(
        {"$ref": f"#/$defs/{name}", "$defs": SCHEMA["$defs"]},
        format_checker=Draft202012Validator.FORMAT_CHECKER,
    )
    for method, name in METHOD_DEFS.items()
}


def schema_errors(doc: dict[str, Any]) -> list[str]:
    return [f"{list(e.absolute_path)}: {e.message}" for e in DOCUMENT.iter_errors(doc)]


def doc_of(steps: Steps) -> dict[str, Any]:
    return {"version": "1.0.0", "sections": {"main": steps.to_list()}}


Build = Callable[[Steps], Steps]

#: (method, how it is called, the exact step it adds): a minimal and a full call of each.
CASES: list[tuple[str, Build, dict[str, Any]]] = [
    ("answer", lambda s: s.answer(), {"answer": {}}),
    (
        "answer",
        lambda s: s.answer(max_duration=3600, codecs="PCMU,PCMA", username="u", password="p"),
        {"answer": {"max_duration": 3600, "codecs": "PCMU,PCMA", "username": "u", "password": "p"}},
    ),
    ("hangup", lambda s: s.hangup(), {"hangup": {}}),
    ("hangup", lambda s: s.hangup("busy"), {"hangup": {"reason": "busy"}}),
    ("sleep", lambda s: s.sleep(-1), {"sleep": {"duration": -1}}),
    ("sleep", lambda s: s.sleep("${vars.wait}"), {"sleep": {"duration": "${vars.wait}"}}),
    ("transfer", lambda s: s.transfer("sales"), {"transfer": {"dest": "sales"}}),
    (
        "transfer",
        lambda s: s.transfer("https://example.com/swml", params={"a": 1}, meta={"m": [1]}),
        {"transfer": {"dest": "https://example.com/swml", "params": {"a": 1}, "meta": {"m": [1]}}},
    ),
    ("connect", lambda s: s.connect("+15557650000"), {"connect": {"to": "+15557650000"}}),
    (
        "connect",
        lambda s: s.connect(
            "sip:alice@example.com",
            from_="+15551230000",
            from_name="Desk",
            timeout=20,
            max_duration=600,
            answer_on_bridge=True,
            ringback=["ring:us"],
            headers={"X-Ticket": "42"},
            codecs="PCMU",
            username="alice",
            password="s3cret",
            session_timeout=30,
            encryption="optional",
            call_state_url="https://example.com/state",
            call_state_events=["answered", "ended"],
            status_url="https://example.com/status",
        ),
        {
            "connect": {
                "to": "sip:alice@example.com",
                "from": "+15551230000",
                "from_name": "Desk",
                "timeout": 20,
                "max_duration": 600,
                "answer_on_bridge": True,
                "ringback": ["ring:us"],
                "headers": [{"name": "X-Ticket", "value": "42"}],
                "codecs": "PCMU",
                "username": "alice",
                "password": "s3cret",
                "session_timeout": 30,
                "encryption": "optional",
                "call_state_url": "https://example.com/state",
                "call_state_events": ["answered", "ended"],
                "status_url": "https://example.com/status",
            }
        },
    ),
    (
        "connect",
        lambda s: s.connect(serial=["+15557650001", {"to": "+15557650002", "timeout": 10}]),
        {"connect": {"serial": [{"to": "+15557650001"}, {"to": "+15557650002", "timeout": 10}]}},
    ),
    (
        "connect",
        lambda s: s.connect(parallel=["+15557650001", "sip:b@example.com"], timeout=30),
        {
            "connect": {
                "parallel": [{"to": "+15557650001"}, {"to": "sip:b@example.com"}],
                "timeout": 30,
            }
        },
    ),
    (
        "connect",
        lambda s: s.connect(serial_parallel=[["+15557650001"], ["+15557650002", "+15557650003"]]),
        {
            "connect": {
                "serial_parallel": [
                    [{"to": "+15557650001"}],
                    [{"to": "+15557650002"}, {"to": "+15557650003"}],
                ]
            }
        },
    ),
    ("send_digits", lambda s: s.send_digits("1w2#"), {"send_digits": {"digits": "1w2#"}}),
    (
        "send_sms",
        lambda s: s.send_sms(to_number="+15557650000", from_number="+15551230000", body="Hi"),
        {"send_sms": {"to_number": "+15557650000", "from_number": "+15551230000", "body": "Hi"}},
    ),
    (
        "send_sms",
        lambda s: s.send_sms(
            to_number="${call.from}",
            from_number="+15551230000",
            media=["https://example.com/a.png"],
            region="us",
            tags=["ivr"],
            status_callback="https://example.com/sms",
        ),
        {
            "send_sms": {
                "to_number": "${call.from}",
                "from_number": "+15551230000",
                "media": ["https://example.com/a.png"],
                "region": "us",
                "tags": ["ivr"],
                "status_callback": "https://example.com/sms",
            }
        },
    ),
    (
        "user_event",
        lambda s: s.user_event({"kind": "menu", "n": 1}),
        {"user_event": {"event": {"kind": "menu", "n": 1}}},
    ),
    ("play", lambda s: s.play(say="Hello"), {"play": {"url": "say:Hello"}}),
    (
        "play",
        lambda s: s.play(
            "https://example.com/a.mp3",
            swml.silence(1.5),
            swml.ring("us", 3),
            say="Bye",
            volume=-6.5,
            say_voice="Polly.Joanna",
            say_language="en-GB",
            say_gender="female",
            auto_answer=False,
            status_url="https://example.com/play",
        ),
        {
            "play": {
                "urls": ["https://example.com/a.mp3", "silence:1.5", "ring:3:us", "say:Bye"],
                "volume": -6.5,
                "say_voice": "Polly.Joanna",
                "say_language": "en-GB",
                "say_gender": "female",
                "auto_answer": False,
                "status_url": "https://example.com/play",
            }
        },
    ),
    ("prompt", lambda s: s.prompt(say="Press 1"), {"prompt": {"play": "say:Press 1"}}),
    (
        "prompt",
        lambda s: s.prompt(
            "https://example.com/menu.mp3",
            say="or say sales",
            volume=3,
            say_voice="Polly.Joanna",
            say_language="en-US",
            say_gender="male",
            max_digits=2,
            terminators="#",
            digit_timeout=3,
            initial_timeout=6.5,
            speech_timeout=10,
            speech_end_timeout=1,
            speech_language="en-US",
            speech_hints=["sales", "support"],
            speech_engine="deepgram",
            status_url="https://example.com/prompt",
        ),
        {
            "prompt": {
                "play": ["https://example.com/menu.mp3", "say:or say sales"],
                "volume": 3,
                "say_voice": "Polly.Joanna",
                "say_language": "en-US",
                "say_gender": "male",
                "max_digits": 2,
                "terminators": "#",
                "digit_timeout": 3,
                "initial_timeout": 6.5,
                "speech_timeout": 10,
                "speech_end_timeout": 1,
                "speech_language": "en-US",
                "speech_hints": ["sales", "support"],
                "speech_engine": "deepgram",
                "status_url": "https://example.com/prompt",
            }
        },
    ),
    ("record_call", lambda s: s.record_call(), {"record_call": {}}),
    (
        "record_call",
        lambda s: s.record_call(
            control_id="rec-1",
            format="mp3",
            stereo=True,
            direction="both",
            terminators="#*",
            beep=True,
            input_sensitivity=44,
            initial_timeout=5,
            end_silence_timeout=2.5,
            max_length=120,
            status_url="https://example.com/rec",
        ),
        {
            "record_call": {
                "control_id": "rec-1",
                "stereo": True,
                "format": "mp3",
                "direction": "both",
                "terminators": "#*",
                "beep": True,
                "input_sensitivity": 44,
                "initial_timeout": 5,
                "end_silence_timeout": 2.5,
                "max_length": 120,
                "status_url": "https://example.com/rec",
            }
        },
    ),
    ("stop_record_call", lambda s: s.stop_record_call(), {"stop_record_call": {}}),
    (
        "stop_record_call",
        lambda s: s.stop_record_call("rec-1"),
        {"stop_record_call": {"control_id": "rec-1"}},
    ),
    ("denoise", lambda s: s.denoise(), {"denoise": {}}),
    ("stop_denoise", lambda s: s.stop_denoise(), {"stop_denoise": {}}),
    ("tap", lambda s: s.tap("rtp://10.0.0.1:4000"), {"tap": {"uri": "rtp://10.0.0.1:4000"}}),
    (
        "tap",
        lambda s: s.tap(
            "wss://example.com/tap",
            control_id="t1",
            direction="listen",
            codec="PCMA",
            rtp_ptime=30,
            status_url="https://example.com/tap",
        ),
        {
            "tap": {
                "uri": "wss://example.com/tap",
                "control_id": "t1",
                "direction": "listen",
                "codec": "PCMA",
                "rtp_ptime": 30,
                "status_url": "https://example.com/tap",
            }
        },
    ),
    ("stop_tap", lambda s: s.stop_tap("t1"), {"stop_tap": {"control_id": "t1"}}),
    (
        "stream",
        lambda s: s.stream("wss://example.com/s"),
        {"stream": {"url": "wss://example.com/s"}},
    ),
    (
        "stream",
        lambda s: s.stream(
            "wss://example.com/s",
            control_id="s1",
            name="audio",
            track="both_tracks",
            codec="PCMU",
            status_url="https://example.com/stream",
            status_url_method="GET",
            authorization_bearer_token="tok",
            custom_parameters={"k": "v"},
        ),
        {
            "stream": {
                "url": "wss://example.com/s",
                "control_id": "s1",
                "name": "audio",
                "track": "both_tracks",
                "codec": "PCMU",
                "status_url": "https://example.com/stream",
                "status_url_method": "GET",
                "authorization_bearer_token": "tok",
                "custom_parameters": {"k": "v"},
            }
        },
    ),
    ("stop_stream", lambda s: s.stop_stream(), {"stop_stream": {}}),
    ("detect_machine", lambda s: s.detect_machine(), {"detect_machine": {}}),
    (
        "detect_machine",
        lambda s: s.detect_machine(
            detectors="amd,fax",
            wait=False,
            detect_message_end=True,
            timeout=30,
            initial_timeout=4.5,
            end_silence_timeout=1,
            machine_ready_timeout=2,
            machine_voice_threshold=1.25,
            machine_words_threshold=6,
            tone="CNG",
            status_url="https://example.com/amd",
        ),
        {
            "detect_machine": {
                "detect_message_end": True,
                "detectors": "amd,fax",
                "end_silence_timeout": 1,
                "initial_timeout": 4.5,
                "machine_ready_timeout": 2,
                "machine_voice_threshold": 1.25,
                "machine_words_threshold": 6,
                "status_url": "https://example.com/amd",
                "timeout": 30,
                "tone": "CNG",
                "wait": False,
            }
        },
    ),
    ("set", lambda s: s.set(greeting="hi", n=2), {"set": {"greeting": "hi", "n": 2}}),
    ("set", lambda s: s.set({"a.b": [1, None]}), {"set": {"a.b": [1, None]}}),
    ("unset", lambda s: s.unset("greeting"), {"unset": "greeting"}),
    ("unset", lambda s: s.unset("a", "b"), {"unset": ["a", "b"]}),
    ("label", lambda s: s.label("top"), {"label": "top"}),
    ("goto", lambda s: s.goto("top"), {"goto": {"label": "top"}}),
    (
        "goto",
        lambda s: s.goto("top", when="vars.tries < 3", max=3),
        {"goto": {"label": "top", "when": "vars.tries < 3", "max": 3}},
    ),
    ("execute", lambda s: s.execute("greet"), {"execute": {"dest": "greet"}}),
    (
        "execute",
        lambda s: s.execute(
            "https://example.com/sub",
            params={"lang": "en"},
            meta={"x": 1},
            on_return=Steps().play(say="Back"),
        ),
        {
            "execute": {
                "dest": "https://example.com/sub",
                "params": {"lang": "en"},
                "meta": {"x": 1},
                "on_return": [{"play": {"url": "say:Back"}}],
            }
        },
    ),
    ("return", lambda s: s.return_(), {"return": {}}),
    ("return", lambda s: s.return_({"status": "ok"}), {"return": {"status": "ok"}}),
    (
        "cond",
        lambda s: s.cond(
            ("prompt_value == 1", Steps().transfer("sales")),
            ("prompt_value == 2", Steps().hangup()),
            else_=Steps().goto("top"),
        ),
        {
            "cond": [
                {"when": "prompt_value == 1", "then": [{"transfer": {"dest": "sales"}}]},
                {"when": "prompt_value == 2", "then": [{"hangup": {}}]},
                {"else": [{"goto": {"label": "top"}}]},
            ]
        },
    ),
    (
        "switch",
        lambda s: s.switch(
            "prompt_value",
            {"1": Steps().transfer("sales"), "2": Steps()},
            default=Steps().hangup("decline"),
        ),
        {
            "switch": {
                "variable": "prompt_value",
                "case": {"1": [{"transfer": {"dest": "sales"}}], "2": []},
                "default": [{"hangup": {"reason": "decline"}}],
            }
        },
    ),
    (
        "ai",
        lambda s: s.ai("You are a receptionist."),
        {"ai": {"prompt": {"text": "You are a receptionist."}}},
    ),
    (
        "ai",
        lambda s: s.ai(
            "You are a receptionist.",
            temperature=0.3,
            top_p=0.9,
            confidence=0.6,
            max_tokens=200,
            post_prompt="Summarize the call.",
            post_prompt_url="https://example.com/summary",
            hints=["SignalWire"],
            global_data={"caller": "${call.from}"},
            params={"ai_volume": 5, "end_of_speech_timeout": 700},
            swaig={"functions": []},
            languages=[{"name": "English", "code": "en-US", "voice": "en-US-Neural2-F"}],
        ),
        {
            "ai": {
                "prompt": {
                    "text": "You are a receptionist.",
                    "temperature": 0.3,
                    "top_p": 0.9,
                    "confidence": 0.6,
                    "max_tokens": 200,
                },
                "post_prompt": {"text": "Summarize the call."},
                "post_prompt_url": "https://example.com/summary",
                "hints": ["SignalWire"],
                "global_data": {"caller": "${call.from}"},
                "params": {"ai_volume": 5, "end_of_speech_timeout": 700},
                "SWAIG": {"functions": []},
                "languages": [{"name": "English", "code": "en-US", "voice": "en-US-Neural2-F"}],
            }
        },
    ),
]

#: The builder's step methods: every public method of Steps but to_list.
METHODS = sorted(
    name
    for name, f in inspect.getmembers(Steps, inspect.isfunction)
    if not name.startswith("_") and name != "to_list"
)


def _wire_name(method: str) -> str:
    return "return" if method == "return_" else method


# --- the vendored schema ------------------------------------------------------------------


def test_vendored_schema_is_the_published_file() -> None:
    """tests/data holds SignalWire's SWML schema for calling whole, byte for byte as published."""
    assert hashlib.sha256(DATA.read_bytes()).hexdigest() == SCHEMA_SHA256
    assert SCHEMA["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert SCHEMA["title"] == "Calling SWML Document"


def test_the_request_side_lists_the_same_methods() -> None:
    """The method names relaycall's commands accept in SWML are exactly the schema's."""
    assert set(METHOD_DEFS) == SWML_METHODS


# --- every method's output ---------------------------------------------------------------


def test_every_method_has_cases() -> None:
    """The table below calls every step method the builder offers (so each is schema-checked)."""
    assert {_wire_name(m) for m in METHODS} == {method for method, _, _ in CASES}
    assert {_wire_name(m) for m in METHODS} <= set(METHOD_DEFS)


@pytest.mark.parametrize(
    ("method", "build", "expected"), CASES, ids=[f"{m}-{i}" for i, (m, _, _) in enumerate(CASES)]
)
def test_each_method_adds_its_exact_step_and_the_schema_accepts_it(
    method: str, build: Build, expected: dict[str, Any]
) -> None:
    """Each call adds exactly *expected*; a document of it is valid under the published schema."""
    doc = build(SWML())
    assert doc.to_dict() == {"version": "1.0.0", "sections": {"main": [expected]}}
    assert schema_errors(doc.to_dict()) == []
    assert list(STEP_VALIDATORS[method].iter_errors(expected)) == []


def test_methods_chain_and_return_their_builder() -> None:
    """Chained calls return the builder they were called on: the document, a section, a Steps."""
    doc = SWML()
    assert doc.answer() is doc
    sales = doc.section("sales")
    assert isinstance(sales, Section)
    assert sales.play(say="hi") is sales
    steps = Steps()
    assert steps.hangup() is steps


# --- representative documents ------------------------------------------------------------


def test_an_ivr_document_exactly() -> None:
    """A menu with sections, a switch, a recording and a goto builds this exact document."""
    doc = (
        SWML()
        .answer()
        .label("menu")
        .prompt(say="Press 1 for sales, 2 to leave a message.", max_digits=1, initial_timeout=5)
        .switch(
            "prompt_value",
            {"1": Steps().transfer("sales"), "2": Steps().execute("voicemail")},
            default=Steps().goto("menu", max=3),
        )
        .hangup()
    )
    doc.section("sales").connect("+15557650000", timeout=20)
    doc.section("voicemail").play(say="After the beep.").record_call(
        beep=True, format="mp3", terminators="#"
    ).sleep(30000).stop_record_call().return_()
    expected = {
        "version": "1.0.0",
        "sections": {
            "main": [
                {"answer": {}},
                {"label": "menu"},
                {
                    "prompt": {
                        "play": "say:Press 1 for sales, 2 to leave a message.",
                        "max_digits": 1,
                        "initial_timeout": 5,
                    }
                },
                {
                    "switch": {
                        "variable": "prompt_value",
                        "case": {
                            "1": [{"transfer": {"dest": "sales"}}],
                            "2": [{"execute": {"dest": "voicemail"}}],
                        },
                        "default": [{"goto": {"label": "menu", "max": 3}}],
                    }
                },
                {"hangup": {}},
            ],
            "sales": [{"connect": {"to": "+15557650000", "timeout": 20}}],
            "voicemail": [
                {"play": {"url": "say:After the beep."}},
                {"record_call": {"format": "mp3", "terminators": "#", "beep": True}},
                {"sleep": {"duration": 30000}},
                {"stop_record_call": {}},
                {"return": {}},
            ],
        },
    }
    assert doc.to_dict() == expected
    assert schema_errors(expected) == []


def test_the_default_inbound_document() -> None:
    """answer then sleep forever: the document that hands a call to the Calling API."""
    doc = SWML().answer().sleep(-1)
    assert doc.to_dict() == {
        "version": "1.0.0",
        "sections": {"main": [{"answer": {}}, {"sleep": {"duration": -1}}]},
    }
    assert schema_errors(doc.to_dict()) == []


def test_a_document_is_a_read_only_mapping_of_its_wire_form() -> None:
    """SWML compares equal to its dict, converts with dict(), and to_dict() is a fresh copy."""
    doc = SWML().answer()
    wire = doc.to_dict()
    assert doc == wire
    assert dict(doc) == wire
    assert json.loads(json.dumps(dict(doc))) == wire
    wire["sections"]["main"].append({"hangup": {}})
    assert doc.to_dict() == {"version": "1.0.0", "sections": {"main": [{"answer": {}}]}}
    assert repr(doc) == "<SWML main: 1 steps>"
    assert doc.section("main").play(say="x") is not None
    assert len(doc.sections["main"]) == 2


def test_nested_steps_are_copied_when_given() -> None:
    """A Steps given to switch is copied: changing it afterwards changes nothing in the document."""
    later = Steps().hangup()
    doc = SWML().switch("x", {"a": later})
    later.play(say="too late")
    assert doc.to_dict()["sections"]["main"][0]["switch"]["case"]["a"] == [{"hangup": {}}]


def test_sections_are_kept_in_order_and_reused() -> None:
    """section() creates a section once; main comes first; names must be text."""
    doc = SWML()
    assert doc.section("b") is doc.section("b")
    doc.section("a")
    assert list(doc.to_dict()["sections"]) == ["main", "b", "a"]
    with pytest.raises(ValidationError, match=r"^sections: '' must not be empty$"):
        doc.section("")


def test_version_is_the_only_published_one() -> None:
    """SWML(version=...) takes "1.0.0" only (the schema's const)."""
    assert SWML(version="1.0.0")["version"] == "1.0.0"
    with pytest.raises(ValidationError, match=r"^version: '2\.0\.0' must be '1\.0\.0'$"):
        SWML(version="2.0.0")  # type: ignore[arg-type]


# --- bad values ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (
            lambda d: d.answer().answer().play("https://a.test/x.mp3", volume=50),
            r"sections.main[2].play.volume: 50 is outside -40..40",
        ),
        (
            lambda d: d.play("hello"),
            r"sections.main[0].play.url: 'hello' is not a SWML play URL",
        ),
        (
            lambda d: d.play(say="two\nlines"),
            r"sections.main[0].play.say: 'say:two\nlines' is not a SWML play URL",
        ),
        (lambda d: d.play(), r"sections.main[0].play.url: give at least one URL or say="),
        (lambda d: d.sleep(-2), r"sections.main[0].sleep.duration: -2 must be >= -1"),
        (
            lambda d: d.sleep("soon"),
            r"sections.main[0].sleep.duration: 'soon' must be an integer or a SWML variable",
        ),
        (
            lambda d: d.hangup("rude"),
            r"sections.main[0].hangup.reason: 'rude' is not one of 'hangup', 'busy', 'decline'",
        ),
        (
            lambda d: d.section("sales").connect(),
            r"sections.sales[0].connect.to: give exactly one of to or serial or parallel",
        ),
        (
            lambda d: d.connect("+15557650000", parallel=["+15557650001"]),
            r"sections.main[0].connect.parallel: give exactly one of to or serial",
        ),
        (
            lambda d: d.connect(serial=["+15557650000"], password="x"),
            r"sections.main[0].connect.username: goes with a single 'to' destination only",
        ),
        (
            lambda d: d.connect(serial=[{"to": "+1555", "ring": 3}]),
            r"sections.main[0].connect.serial[0].ring: is not an allowed key here",
        ),
        (
            lambda d: d.record_call(format="ogg"),
            r"sections.main[0].record_call.format: 'ogg' is not one of 'wav', 'mp3', 'mp4'",
        ),
        (
            lambda d: d.prompt(say="x", terminators="x"),
            r"sections.main[0].prompt.terminators: 'x' may hold only 0-9 A-D * #",
        ),
        (
            lambda d: d.goto("top", max=101),
            r"sections.main[0].goto.max: 101 is outside 1..100",
        ),
        (
            lambda d: d.switch("x", {"1": [{"hangup": {}}]}),
            r"sections.main[0].switch.case.1: [{'hangup': {}}] must be a relaycall.swml.Steps",
        ),
        (
            lambda d: d.tap("http://example.com"),
            r"sections.main[0].tap.uri: 'http://example.com' must be a rtp:// or ws:// or wss://",
        ),
        (
            lambda d: d.send_sms(to_number="+15557650000", from_number="+15551230000"),
            r"sections.main[0].send_sms.body: give body, media, or both",
        ),
        (
            lambda d: d.ai("x", temperature=2),
            r"sections.main[0].ai.prompt.temperature: 2 is outside 0..1.5",
        ),
        (
            lambda d: d.ai("x", swaig={"function": []}),
            r"sections.main[0].ai.SWAIG.function: is not a SWAIG key",
        ),
        (lambda d: d.set(), r"sections.main[0].set: give at least one variable"),
        (
            lambda d: d.set(x=float("nan")),
            r"sections.main[0].set.x: nan is not a finite number",
        ),
        (
            lambda d: d.record_call(status_url="ftp://x"),
            r"sections.main[0].record_call.status_url: 'ftp://x' must be an http:// or https://",
        ),
    ],
)
def test_a_bad_value_names_the_step_field_and_rule(
    build: Callable[[SWML], Any], message: str
) -> None:
    """The error names the section, step index, method and field, the value and the rule."""
    doc = SWML()
    with pytest.raises(ValidationError) as info:
        build(doc)
    assert str(info.value).startswith(message), str(info.value)


def test_a_refused_step_is_not_added() -> None:
    """After a ValidationError the document is as it was: only valid steps are ever held."""
    doc = SWML().answer()
    with pytest.raises(ValidationError):
        doc.play(say="hi", volume=99)
    assert doc.to_dict()["sections"]["main"] == [{"answer": {}}]


def test_a_secret_is_not_shown_in_the_error() -> None:
    """A bad password is named by path, its value redacted (as for commands)."""
    with pytest.raises(ValidationError) as info:
        SWML().answer(password=1234567)  # type: ignore[arg-type]
    assert "1234567" not in str(info.value)
    assert str(info.value).startswith("sections.main[0].answer.password: ")


def test_helpers_build_play_urls_and_variables() -> None:
    """say/silence/ring/var build the SWML forms, and refuse what the schema would not take."""
    assert swml.say("Hi there") == "say:Hi there"
    assert swml.silence(2) == "silence:2"
    assert swml.ring("us") == "ring:us"
    assert swml.ring("gb", 2.5) == "ring:2.5:gb"
    assert swml.var("call.from") == "${call.from}"
    for bad in (lambda: swml.ring("usa"), lambda: swml.silence(-1), lambda: swml.say("a\nb")):
        with pytest.raises(ValidationError):
            bad()


# --- hypothesis: any value is refused clearly or accepted validly -------------------------

_TRICKY: list[Any] = [
    "",
    " ",
    "${x}",
    "%{vars.y}",
    "${a\nb}",
    "say:",
    "say: hi\n",
    "https://",
    "https://x.test/a.mp3",
    "ring:us",
    "ring:3:us",
    "silence:1.5",
    "\ud800",
    "+15557650000",
    "15557650000",
    "sip:a@b.test",
    "rtp://1.2.3.4:5",
    "wss://x.test",
    "amd,fax",
    "wav",
    "both",
    -1,
    0,
    1,
    101,
    2**31,
    2**70,
    -(2**70),
    10**400,
    1.5,
    1e308,
    math.inf,
    math.nan,
    True,
    False,
    None,
    [],
    [None],
    ["+15557650000"],
    [["+15557650000"]],
    [{"to": "+15557650000"}],
    {},
    {"to": 1},
    {"a": "b"},
    {"": "x"},
    {1: "x"},
    {"a": {1, 2}},
    ("when", "then"),
    [("x == 1", "not steps")],
    object(),
]


def _values() -> st.SearchStrategy[Any]:
    scalars = (
        st.none()
        | st.booleans()
        | st.integers()
        | st.floats(allow_nan=True, allow_infinity=True)
        | st.text(max_size=12)
        | st.sampled_from(_TRICKY)
    )
    json_like = st.recursive(
        scalars,
        lambda inner: (
            st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3)
        ),
        max_leaves=6,
    )
    steps = st.builds(lambda: Steps().hangup()) | st.builds(SWML)
    return json_like | steps | st.dictionaries(st.text(max_size=3), steps, max_size=2)


#: The smallest valid call of each method: positional args, keyword args.
MINIMAL: dict[str, tuple[tuple[Any, ...], dict[str, Any]]] = {
    "answer": ((), {}),
    "hangup": ((), {}),
    "sleep": ((1000,), {}),
    "transfer": (("sales",), {}),
    "connect": (("+15557650000",), {}),
    "send_digits": (("1",), {}),
    "send_sms": ((), {"to_number": "+15557650000", "from_number": "+15551230000", "body": "x"}),
    "user_event": (({"a": 1},), {}),
    "play": ((), {"say": "hi"}),
    "prompt": ((), {"say": "hi"}),
    "record_call": ((), {}),
    "stop_record_call": ((), {}),
    "denoise": ((), {}),
    "stop_denoise": ((), {}),
    "tap": (("rtp://1.2.3.4:5",), {}),
    "stop_tap": ((), {}),
    "stream": (("wss://x.test",), {}),
    "stop_stream": ((), {}),
    "detect_machine": ((), {}),
    "set": ((), {"a": 1}),
    "unset": (("a",), {}),
    "label": (("top",), {}),
    "goto": (("top",), {}),
    "execute": (("sub",), {}),
    "return_": ((), {}),
    "cond": ((("x == 1", Steps()),), {}),
    "switch": (("x", {"1": Steps()}), {}),
    "ai": (("prompt",), {}),
}


def _slots() -> list[tuple[str, str]]:
    """(method, parameter) for every parameter of every step method."""
    found = []
    for method in METHODS:
        for p in list(inspect.signature(getattr(Steps, method)).parameters.values())[1:]:
            found.append((method, p.name))
    return found


def test_minimal_calls_cover_every_method() -> None:
    """The fuzz below starts from a valid call of every step method."""
    assert set(MINIMAL) == set(METHODS)


def _call(method: str, param: str, value: Any) -> Steps:
    args, kw = MINIMAL[method]
    args, kw = list(args), dict(kw)
    params = list(inspect.signature(getattr(Steps, method)).parameters.values())[1:]
    p = next(x for x in params if x.name == param)
    if p.kind is inspect.Parameter.VAR_POSITIONAL:
        args = [value]
    elif p.kind is inspect.Parameter.VAR_KEYWORD:
        kw["fuzzed"] = value
    elif p.kind is inspect.Parameter.POSITIONAL_ONLY or (
        p.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD and params.index(p) < len(args)
    ):
        index = params.index(p)
        args = [*args[:index], value, *args[index + 1 :]]
    else:
        kw[param] = value
    steps = Steps()
    return getattr(steps, method)(*args, **kw)  # type: ignore[no-any-return]


@pytest.mark.parametrize(("method", "param"), _slots())
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(value=_values())
def test_any_value_is_refused_clearly_or_gives_a_valid_step(
    method: str, param: str, value: Any
) -> None:
    """Any value in any parameter: a ValidationError naming the step, or a valid step."""
    try:
        steps = _call(method, param, value)
    except ValidationError as exc:
        message = str(exc)
    else:
        message = ""
    if message:
        assert message.startswith(("steps[0].", "say")), message
        return
    doc = doc_of(steps)
    json.dumps(doc, allow_nan=False).encode("utf-8")
    assert schema_errors(doc) == []


@settings(max_examples=60, deadline=None)
@given(text=st.text(max_size=20), seconds=st.floats(allow_nan=True) | st.integers())
def test_helpers_refuse_clearly_or_build_valid_urls(text: str, seconds: Any) -> None:
    """say/silence/ring with any input: a ValidationError, or a play URL the schema accepts."""
    for build in (
        lambda: swml.say(text),
        lambda: swml.silence(seconds),
        lambda: swml.ring(text, seconds),
        lambda: swml.var(text),
    ):
        try:
            url = build()
        except ValidationError:
            continue
        assert list(DOCUMENT.iter_errors({"sections": {"main": [{"play": {"url": url}}]}})) == []


# --- where relaycall takes SWML -----------------------------------------------------------

FROM, TO = "+15551230000", "+15557650000"


async def test_dial_sends_the_built_document(relay, server) -> None:
    """relay.dial(swml=SWML()...) sends the document's wire form, valid under the request schema."""
    doc = SWML().answer().play(say="Hello").hangup()
    await relay.dial(from_=FROM, to=TO, swml=doc)
    body = server.seen[-1].json
    assert body == {
        "command": "dial",
        "params": {
            "from": FROM,
            "to": TO,
            "swml": {
                "version": "1.0.0",
                "sections": {
                    "main": [{"answer": {}}, {"play": {"url": "say:Hello"}}, {"hangup": {}}]
                },
            },
        },
    }
    assert list(REQUEST_VALIDATOR.iter_errors(body)) == []


async def test_update_and_transfer_send_the_built_document(relay, server) -> None:
    """call.update(swml=...) and call.transfer(SWML()) send the document, exactly."""
    call = relay.call(CALL_ID)
    await call.update(swml=SWML().play(say="Moved").sleep(-1))
    update = server.seen[-1].json
    assert update == {
        "command": "update",
        "params": {
            "id": CALL_ID,
            "swml": {
                "version": "1.0.0",
                "sections": {"main": [{"play": {"url": "say:Moved"}}, {"sleep": {"duration": -1}}]},
            },
        },
    }
    doc = SWML().transfer("queue")
    doc.section("queue").play(swml.ring("us", 5)).connect(parallel=["+15557650001", "+15557650002"])
    await call.transfer(doc)
    transfer = server.seen[-1].json
    assert transfer == {
        "command": "calling.transfer",
        "id": CALL_ID,
        "params": {
            "dest": {
                "version": "1.0.0",
                "sections": {
                    "main": [{"transfer": {"dest": "queue"}}],
                    "queue": [
                        {"play": {"url": "ring:5:us"}},
                        {"connect": {"parallel": [{"to": "+15557650001"}, {"to": "+15557650002"}]}},
                    ],
                },
            }
        },
    }
    for body in (update, transfer):
        assert list(REQUEST_VALIDATOR.iter_errors(body)) == []
        assert schema_errors(body["params"].get("swml") or body["params"]["dest"]) == []


def test_a_command_holds_a_snapshot_of_the_builder() -> None:
    """A command takes the document as it was when built: later steps do not leak in."""
    doc = SWML().answer()
    dial = commands.Dial(from_=FROM, to=TO, swml=doc)
    transfer = commands.Transfer(call_id=CALL_ID, dest=doc)
    doc.hangup()
    assert dial.to_wire()["params"]["swml"] == {
        "version": "1.0.0",
        "sections": {"main": [{"answer": {}}]},
    }
    assert transfer.to_wire()["params"]["dest"]["sections"]["main"] == [{"answer": {}}]
    assert isinstance(dial.swml, dict)


async def test_the_emulator_accepts_a_dial_with_a_built_document(env) -> None:
    """Against the emulator, a dial whose swml is a builder is accepted like one with a dict."""
    leg = await env.relay.send(
        commands.Dial(from_=FROM, to=TO, swml=SWML().answer().sleep(-1), status_url=env.cb)
    )
    assert leg.status == "queued"


# --- import cost ----------------------------------------------------------------------------


def test_relaycall_swml_is_imported_on_first_use() -> None:
    """
    `import relaycall` does not import the builder; ``relaycall.swml`` and
    ``from relaycall import swml`` both work.
    """
    code = (
        "import sys, relaycall\n"
        "assert 'relaycall.swml' not in sys.modules\n"
        "from relaycall import swml\n"
        "assert relaycall.swml is swml and swml.SWML().answer()['version'] == '1.0.0'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_the_builder_is_exported_as_documented() -> None:
    """relaycall.swml's public names: the builders and the play-URL helpers."""
    assert swml.__all__ == [
        "SWML",
        "CallStatus",
        "Section",
        "Steps",
        "ring",
        "say",
        "silence",
        "validate",
        "var",
    ]
    assert relaycall.swml.SWML is SWML


# --- validate(): a document given as a dict -----------------------------------------------


def _schema_keys(method: str) -> frozenset[str]:
    """The wire keys the schema allows in *method*'s body (across its oneOf/anyOf shapes)."""
    defs = SCHEMA["$defs"]

    def props(node: dict[str, Any]) -> set[str]:
        if "$ref" in node:
            return props(defs[node["$ref"].rsplit("/", 1)[1]])
        found = set(node.get("properties", {}))
        for key in ("oneOf", "anyOf"):
            for branch in node.get(key, []):
                found |= props(branch)
        return found

    return frozenset(props(defs[METHOD_DEFS[method]]["properties"][method]))


def test_validate_knows_each_modelled_methods_schema_keys() -> None:
    """validate()'s table of wire keys per method is the published schema's, exactly."""
    for method, keys in _WIRE_KEYS.items():
        assert keys == _schema_keys(method), method


@pytest.mark.parametrize(
    ("method", "build", "expected"), CASES, ids=[f"{m}-{i}" for i, (m, _, _) in enumerate(CASES)]
)
def test_validate_accepts_every_step_the_builder_makes(
    method: str, build: Build, expected: dict[str, Any]
) -> None:
    """What the builder produces, given back as a dict, passes validate()."""
    assert validate({"version": "1.0.0", "sections": {"main": [expected]}}) is None


def test_validate_accepts_a_built_document_and_short_forms() -> None:
    """A SWML builder passes as is; the schema's short forms (sleep: 500, urls of one) pass too."""
    assert validate(SWML().answer().sleep(-1)) is None
    validate(
        {
            "sections": {
                "main": [
                    {"sleep": 500},
                    {"play": {"urls": ["say:hi"]}},
                    {"unset": []},
                    {"join_room": {"name": "lobby"}},  # not modelled: checked for shape only
                    {"connect": {"to": "+15557650000", "confirm": "https://x.test/c"}},
                    {"cond": [{"when": "vars.a == 1", "then": [{"hangup": {}}], "else": []}]},
                ]
            }
        }
    )


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ([], r"swml: [] must be a SWML document"),
        ({"sections": {}}, r"sections.main: is required"),
        ({"sections": {"main": []}, "version": "2"}, r"version: '2' must be '1.0.0'"),
        (
            {"sections": {"main": [{"dance": {}}]}},
            r"sections.main[0]: 'dance' is not a SWML method",
        ),
        (
            {"sections": {"main": [{"play": {"url": "say:hi", "volume": 99}}]}},
            r"sections.main[0].play.volume: 99 is outside -40..40",
        ),
        (
            {"sections": {"main": [{"play": {"say": "hi"}}]}},
            r"sections.main[0].play.say: is not a field of play (allowed: auto_answer,",
        ),
        ({"sections": {"main": [{"sleep": {}}]}}, r"sections.main[0].sleep.duration: is required"),
        (
            {
                "sections": {
                    "main": [
                        {"answer": {}},
                        {"switch": {"variable": "x", "case": {"1": [{"play": {"url": "nope"}}]}}},
                    ]
                }
            },
            r"sections.main[1].switch.case.1[0].play.url: 'nope' is not a SWML play URL",
        ),
        (
            {"sections": {"main": [], "vm": [{"cond": [{"when": "x", "then": [{"sleep": -5}]}]}]}},
            r"sections.vm[0].cond[0].then[0].sleep: -5 must be >= -1",
        ),
        (
            {"sections": {"main": [{"ai": {"prompt": {"text": "x", "top_k": 3}}}]}},
            r"sections.main[0].ai.prompt.top_k: is not an allowed key here",
        ),
    ],
)
def test_validate_names_the_step_field_and_rule(document: Any, message: str) -> None:
    """A bad dict document raises ValidationError with the path the builder would give."""
    with pytest.raises(ValidationError) as info:
        validate(document)
    assert str(info.value).startswith(message), str(info.value)


def _mutated(step: dict[str, Any], key: Any, value: Any) -> dict[str, Any]:
    ((method, body),) = step.items()
    if isinstance(body, dict) and body:
        keys = sorted(body)
        return {method: {**body, keys[key % len(keys)]: value}}
    return {method: value}


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    case=st.sampled_from([expected for _, _, expected in CASES]),
    key=st.integers(0, 20),
    value=_values(),
)
def test_validate_refuses_clearly_or_the_schema_accepts(
    case: dict[str, Any], key: int, value: Any
) -> None:
    """A builder step with one field replaced by anything: ValidationError, or schema-valid."""
    step = _mutated(case, key, value)
    document = {"version": "1.0.0", "sections": {"main": [step]}}
    try:
        validate(document)
    except ValidationError as exc:
        message = str(exc)
    else:
        message = ""
    if message:
        assert message.startswith("sections.main[0]"), message
        return
    ((method, body),) = step.items()
    if method == "ai" and "pom" in json.dumps(body, default=repr):
        return  # a POM prompt is checked for shape only, by design
    # A Mapping (a SWML builder) inside a dict is JSON to relaycall: its wire form.
    assert schema_errors(_plain(document)) == []


@pytest.mark.parametrize(
    ("connect", "path"),
    [
        ({"serial": ["0"]}, "connect.serial[0]"),
        ({"parallel": [{"to": "+15551230000"}, 5]}, "connect.parallel[1]"),
        ({"serial_parallel": [[{"to": "+15551230000"}], ["x"]]}, "connect.serial_parallel[1][0]"),
    ],
)
def test_validate_refuses_a_destination_that_is_not_an_object(
    connect: dict[str, Any], path: str
) -> None:
    """
    In a document a connect destination is an object ({"to": ...}), as the schema says;
    the builder's shorthand (a bare number) is refused by validate(), naming the item.
    (Found by test_validate_refuses_clearly_or_the_schema_accepts.)
    """
    document = {"version": "1.0.0", "sections": {"main": [{"connect": connect}]}}
    assert schema_errors(document) != []
    with pytest.raises(ValidationError, match=re.escape(f"sections.main[0].{path}")):
        validate(document)
