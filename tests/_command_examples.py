"""
Example tables for tests/test_commands.py.

``EXAMPLES`` pairs a built command with the exact JSON body it must produce,
written out literally. Ids are ``<wire name>/<variant>``: every command has a
``/min`` example (only required fields, control_id given so the body is
fixed) and, when it has optional fields, a ``/full`` one (every optional field
set, including those of the nested models it holds).

``INVALID`` lists bad constructions with the start of the message they must
raise, and, where a hand-built body can carry the same bad value, what the
JSON Schema says about that body: ``"rejects"`` (the schema agrees) or
``"accepts"`` (a rule from the reference's prose that the schema does not
encode, so relaycall is deliberately stricter).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal, NamedTuple

from jsonschema import Draft202012Validator  # type: ignore[import-untyped]

from relaycall import audio, ringtone, silence, tts
from relaycall import commands as c
from tests.conftest import CALL_ID

SCHEMA: dict[str, Any] = json.loads(
    (Path(__file__).parent / "data" / "calling-requests.schema.json").read_text("utf-8")
)
VALIDATOR = Draft202012Validator(SCHEMA, format_checker=Draft202012Validator.FORMAT_CHECKER)


def _branch_names() -> dict[str, str]:
    """Wire command name -> the ``$defs`` name of its oneOf branch, found by its command enum."""
    found: dict[str, str] = {}
    for branch in SCHEMA["oneOf"]:
        name = branch["$ref"].removeprefix("#/$defs/")
        (command,) = SCHEMA["$defs"][name]["properties"]["command"]["enum"]
        found[command] = name
    return found


BRANCHES = _branch_names()
BRANCH_VALIDATORS = {
    command: Draft202012Validator(
        {"$ref": f"#/$defs/{name}", "$defs": SCHEMA["$defs"]},
        format_checker=Draft202012Validator.FORMAT_CHECKER,
    )
    for command, name in BRANCHES.items()
}

SWML: dict[str, Any] = {
    "version": "1.0.0",
    "sections": {
        "main": [{"answer": {}}, {"execute": {"dest": "greet"}}, {"hangup": {}}],
        "greet": [{"play": {"url": "say:Hello"}}, {"return": {}}],
    },
}
SWML_MIN: dict[str, Any] = {"sections": {"main": [{"hangup": {}}]}}


class Example(NamedTuple):
    id: str
    command: c.Command[Any]
    wire: dict[str, Any]


def _ex(id: str, command: c.Command[Any], wire: dict[str, Any]) -> Example:
    return Example(id, command, wire)


EXAMPLES: list[Example] = [
    # --- dial -----------------------------------------------------------------------
    _ex(
        "dial/full",
        c.Dial(
            from_="+15551230000",
            to="+15557650000",
            url="https://example.com/swml",
            to_script=SWML_MIN,
            username="alice",
            password="s3cret",
            caller_id="+15551239999",
            fallback_url="https://example.com/fallback",
            status_url="https://example.com/status",
            status_events=["created", "ringing", "answered", "ended"],
            url_method="GET",
            codecs=["OPUS", "PCMU"],
            timeout=30,
            max_price_per_minute=0.05,
            send_digits="1w2,#*AD",
            region=["us-east", "us-west"],
            custom_variables={"customer_id": "42", "Tier_2": "gold"},
        ),
        {
            "command": "dial",
            "params": {
                "from": "+15551230000",
                "to": "+15557650000",
                "url": "https://example.com/swml",
                "to_script": {"sections": {"main": [{"hangup": {}}]}},
                "username": "alice",
                "password": "s3cret",
                "caller_id": "+15551239999",
                "fallback_url": "https://example.com/fallback",
                "status_url": "https://example.com/status",
                "status_events": ["created", "ringing", "answered", "ended"],
                "url_method": "GET",
                "codecs": ["OPUS", "PCMU"],
                "timeout": 30,
                "max_price_per_minute": 0.05,
                "send_digits": "1w2,#*AD",
                "region": ["us-east", "us-west"],
                "custom_variables": {"customer_id": "42", "Tier_2": "gold"},
            },
        },
    ),
    _ex(
        "dial/min",
        c.Dial(from_="+15551230000", to="+15557650000", url="https://example.com/swml"),
        {
            "command": "dial",
            "params": {
                "from": "+15551230000",
                "to": "+15557650000",
                "url": "https://example.com/swml",
            },
        },
    ),
    _ex(
        "dial/swml-to_script-text",
        c.Dial(from_="sip:alice@example.com", to_script="https://example.com/dest", swml=SWML),
        {
            "command": "dial",
            "params": {
                "from": "sip:alice@example.com",
                "to_script": "https://example.com/dest",
                "swml": {
                    "version": "1.0.0",
                    "sections": {
                        "main": [{"answer": {}}, {"execute": {"dest": "greet"}}, {"hangup": {}}],
                        "greet": [{"play": {"url": "say:Hello"}}, {"return": {}}],
                    },
                },
            },
        },
    ),
    _ex(
        "dial/codecs-string-region-string",
        c.Dial(
            from_="+15551230000",
            to="sip:bob@example.com",
            swml=SWML_MIN,
            codecs="OPUS,PCMU",
            region="eu-central",
            timeout=600,
            max_price_per_minute=0,
        ),
        {
            "command": "dial",
            "params": {
                "from": "+15551230000",
                "to": "sip:bob@example.com",
                "swml": {"sections": {"main": [{"hangup": {}}]}},
                "codecs": "OPUS,PCMU",
                "region": "eu-central",
                "timeout": 600,
                "max_price_per_minute": 0,
            },
        },
    ),
    # --- update ---------------------------------------------------------------------
    _ex(
        "update/full",
        c.Update(
            call_id=CALL_ID,
            url="https://example.com/next",
            fallback_url="https://example.com/fallback",
            status="completed",
            status_url="https://example.com/status",
        ),
        {
            "command": "update",
            "params": {
                "id": CALL_ID,
                "url": "https://example.com/next",
                "fallback_url": "https://example.com/fallback",
                "status": "completed",
                "status_url": "https://example.com/status",
            },
        },
    ),
    _ex(
        "update/min",
        c.Update(call_id=CALL_ID, url="https://example.com/next"),
        {"command": "update", "params": {"id": CALL_ID, "url": "https://example.com/next"}},
    ),
    _ex(
        "update/swml",
        c.Update(call_id=CALL_ID, swml=SWML_MIN, status="canceled"),
        {
            "command": "update",
            "params": {
                "id": CALL_ID,
                "swml": {"sections": {"main": [{"hangup": {}}]}},
                "status": "canceled",
            },
        },
    ),
    # --- end, transfer, disconnect --------------------------------------------------
    _ex(
        "calling.end/full",
        c.End(call_id=CALL_ID, reason="noAnswer"),
        {"command": "calling.end", "id": CALL_ID, "params": {"reason": "noAnswer"}},
    ),
    _ex(
        "calling.end/min",
        c.End(call_id=CALL_ID),
        {"command": "calling.end", "id": CALL_ID, "params": {}},
    ),
    _ex(
        "calling.transfer/min",
        c.Transfer(call_id=CALL_ID, dest="sip:bob@example.com"),
        {"command": "calling.transfer", "id": CALL_ID, "params": {"dest": "sip:bob@example.com"}},
    ),
    _ex(
        "calling.transfer/swml",
        c.Transfer(call_id=CALL_ID, dest=SWML_MIN),
        {
            "command": "calling.transfer",
            "id": CALL_ID,
            "params": {"dest": {"sections": {"main": [{"hangup": {}}]}}},
        },
    ),
    _ex(
        "calling.disconnect/min",
        c.Disconnect(call_id=CALL_ID),
        {"command": "calling.disconnect", "id": CALL_ID, "params": {}},
    ),
    # --- play -----------------------------------------------------------------------
    _ex(
        "calling.play/full",
        c.Play(
            call_id=CALL_ID,
            control_id="play-1",
            play=[
                tts("Hello", language="en-GB", gender="male", voice="gcloud.en-GB-Neural2-B"),
                audio("https://cdn.example.com/a.mp3"),
                silence(0.5),
                ringtone("us", duration=2.5),
            ],
            volume=-6.5,
            direction="both",
            loop=2,
            language="en-US",
            voice="polly.Joanna",
            gender="female",
            status_url="https://example.com/play",
        ),
        {
            "command": "calling.play",
            "id": CALL_ID,
            "params": {
                "control_id": "play-1",
                "play": [
                    {
                        "type": "tts",
                        "params": {
                            "text": "Hello",
                            "language": "en-GB",
                            "gender": "male",
                            "voice": "gcloud.en-GB-Neural2-B",
                        },
                    },
                    {"type": "audio", "params": {"url": "https://cdn.example.com/a.mp3"}},
                    {"type": "silence", "params": {"duration": 0.5}},
                    {"type": "ringtone", "params": {"name": "us", "duration": 2.5}},
                ],
                "volume": -6.5,
                "direction": "both",
                "loop": 2,
                "language": "en-US",
                "voice": "polly.Joanna",
                "gender": "female",
                "status_url": "https://example.com/play",
            },
        },
    ),
    _ex(
        "calling.play/min",
        c.Play(call_id=CALL_ID, control_id="play-2", play=[tts("Hi"), ringtone("bong")]),
        {
            "command": "calling.play",
            "id": CALL_ID,
            "params": {
                "control_id": "play-2",
                "play": [
                    {"type": "tts", "params": {"text": "Hi"}},
                    {"type": "ringtone", "params": {"name": "bong"}},
                ],
            },
        },
    ),
    _ex(
        "calling.play/empty-list-loop-0",
        c.Play(call_id=CALL_ID, control_id="p", play=[], loop=0, volume=40),
        {
            "command": "calling.play",
            "id": CALL_ID,
            "params": {"control_id": "p", "play": [], "loop": 0, "volume": 40},
        },
    ),
    _ex(
        "calling.play.pause/min",
        c.PlayPause(call_id=CALL_ID, control_id="play-1"),
        {"command": "calling.play.pause", "id": CALL_ID, "params": {"control_id": "play-1"}},
    ),
    _ex(
        "calling.play.resume/min",
        c.PlayResume(call_id=CALL_ID, control_id="play-1"),
        {"command": "calling.play.resume", "id": CALL_ID, "params": {"control_id": "play-1"}},
    ),
    _ex(
        "calling.play.stop/min",
        c.PlayStop(call_id=CALL_ID, control_id="play-1"),
        {"command": "calling.play.stop", "id": CALL_ID, "params": {"control_id": "play-1"}},
    ),
    _ex(
        "calling.play.volume/min",
        c.PlayVolume(call_id=CALL_ID, control_id="play-1", volume=-40),
        {
            "command": "calling.play.volume",
            "id": CALL_ID,
            "params": {"control_id": "play-1", "volume": -40},
        },
    ),
    # --- record ---------------------------------------------------------------------
    _ex(
        "calling.record/full",
        c.Record(
            call_id=CALL_ID,
            control_id="rec-1",
            audio=c.RecordAudio(
                beep=True,
                format="wav",
                stereo=True,
                direction="both",
                initial_timeout=2.5,
                end_silence_timeout=1,
                max_length=600,
                terminators="#*a",
                input_sensitivity=60.5,
            ),
            status_url="https://example.com/rec",
        ),
        {
            "command": "calling.record",
            "id": CALL_ID,
            "params": {
                "control_id": "rec-1",
                "record": {
                    "audio": {
                        "beep": True,
                        "format": "wav",
                        "stereo": True,
                        "direction": "both",
                        "initial_timeout": 2.5,
                        "end_silence_timeout": 1,
                        "max_length": 600,
                        "terminators": "#*a",
                        "input_sensitivity": 60.5,
                    }
                },
                "status_url": "https://example.com/rec",
            },
        },
    ),
    _ex(
        "calling.record/min",
        c.Record(call_id=CALL_ID, control_id="rec-2"),
        {
            "command": "calling.record",
            "id": CALL_ID,
            "params": {"control_id": "rec-2", "record": {"audio": {}}},
        },
    ),
    _ex(
        "calling.record.pause/full",
        c.RecordPause(call_id=CALL_ID, control_id="rec-1", behavior="silence"),
        {
            "command": "calling.record.pause",
            "id": CALL_ID,
            "params": {"control_id": "rec-1", "behavior": "silence"},
        },
    ),
    _ex(
        "calling.record.pause/min",
        c.RecordPause(call_id=CALL_ID, control_id="rec-1"),
        {"command": "calling.record.pause", "id": CALL_ID, "params": {"control_id": "rec-1"}},
    ),
    _ex(
        "calling.record.resume/min",
        c.RecordResume(call_id=CALL_ID, control_id="rec-1"),
        {"command": "calling.record.resume", "id": CALL_ID, "params": {"control_id": "rec-1"}},
    ),
    _ex(
        "calling.record.stop/min",
        c.RecordStop(call_id=CALL_ID, control_id="rec-1"),
        {"command": "calling.record.stop", "id": CALL_ID, "params": {"control_id": "rec-1"}},
    ),
    # --- collect --------------------------------------------------------------------
    _ex(
        "calling.collect/full",
        c.Collect(
            call_id=CALL_ID,
            control_id="col-1",
            digits=c.CollectDigits(max=4, terminators="#", digit_timeout=3.5),
            speech=c.CollectSpeech(
                end_silence_timeout=1,
                speech_timeout=10,
                language="Deepgram:en-US",
                hints=["yes", "no"],
                model="nova-3",
                engine="Deepgram",
            ),
            initial_timeout=5,
            continuous=True,
            partial_results=False,
            send_start_of_input=True,
            start_input_timers=True,
            status_url="https://example.com/collect",
        ),
        {
            "command": "calling.collect",
            "id": CALL_ID,
            "params": {
                "control_id": "col-1",
                "digits": {"max": 4, "terminators": "#", "digit_timeout": 3.5},
                "speech": {
                    "end_silence_timeout": 1,
                    "speech_timeout": 10,
                    "language": "Deepgram:en-US",
                    "hints": ["yes", "no"],
                    "model": "nova-3",
                    "engine": "Deepgram",
                },
                "initial_timeout": 5,
                "continuous": True,
                "partial_results": False,
                "send_start_of_input": True,
                "start_input_timers": True,
                "status_url": "https://example.com/collect",
            },
        },
    ),
    _ex(
        "calling.collect/min",
        c.Collect(call_id=CALL_ID, control_id="col-2", digits=c.CollectDigits(max=1)),
        {
            "command": "calling.collect",
            "id": CALL_ID,
            "params": {"control_id": "col-2", "digits": {"max": 1}},
        },
    ),
    _ex(
        "calling.collect/speech-only",
        c.Collect(call_id=CALL_ID, control_id="col-3", speech=c.CollectSpeech()),
        {
            "command": "calling.collect",
            "id": CALL_ID,
            "params": {"control_id": "col-3", "speech": {}},
        },
    ),
    _ex(
        "calling.collect.stop/min",
        c.CollectStop(call_id=CALL_ID, control_id="col-1"),
        {"command": "calling.collect.stop", "id": CALL_ID, "params": {"control_id": "col-1"}},
    ),
    _ex(
        "calling.collect.start_input_timers/min",
        c.CollectStartInputTimers(call_id=CALL_ID, control_id="col-1"),
        {
            "command": "calling.collect.start_input_timers",
            "id": CALL_ID,
            "params": {"control_id": "col-1"},
        },
    ),
    # --- detect ---------------------------------------------------------------------
    _ex(
        "calling.detect/full",
        c.Detect(
            call_id=CALL_ID,
            control_id="det-1",
            detect=c.DetectMachine(
                initial_timeout=4.5,
                end_silence_timeout=1,
                machine_ready_timeout=2,
                machine_voice_threshold=1.25,
                machine_words_threshold=6,
                detect_interruptions=True,
                detect_message_end=False,
            ),
            timeout=45,
            status_url="https://example.com/detect",
        ),
        {
            "command": "calling.detect",
            "id": CALL_ID,
            "params": {
                "control_id": "det-1",
                "detect": {
                    "type": "machine",
                    "params": {
                        "initial_timeout": 4.5,
                        "end_silence_timeout": 1,
                        "machine_ready_timeout": 2,
                        "machine_voice_threshold": 1.25,
                        "machine_words_threshold": 6,
                        "detect_interruptions": True,
                        "detect_message_end": False,
                    },
                },
                "timeout": 45,
                "status_url": "https://example.com/detect",
            },
        },
    ),
    _ex(
        "calling.detect/min",
        c.Detect(call_id=CALL_ID, control_id="det-2", detect=c.DetectFax()),
        {
            "command": "calling.detect",
            "id": CALL_ID,
            "params": {"control_id": "det-2", "detect": {"type": "fax"}},
        },
    ),
    _ex(
        "calling.detect/machine-bare",
        c.Detect(call_id=CALL_ID, control_id="det-3", detect=c.DetectMachine(), timeout=0),
        {
            "command": "calling.detect",
            "id": CALL_ID,
            "params": {"control_id": "det-3", "detect": {"type": "machine"}, "timeout": 0},
        },
    ),
    _ex(
        "calling.detect/fax-tone",
        c.Detect(call_id=CALL_ID, control_id="det-4", detect=c.DetectFax(tone="CED")),
        {
            "command": "calling.detect",
            "id": CALL_ID,
            "params": {
                "control_id": "det-4",
                "detect": {"type": "fax", "params": {"tone": "CED"}},
            },
        },
    ),
    _ex(
        "calling.detect/digit-any",
        c.Detect(call_id=CALL_ID, control_id="det-5", detect=c.DetectDigit(digits="")),
        {
            "command": "calling.detect",
            "id": CALL_ID,
            "params": {
                "control_id": "det-5",
                "detect": {"type": "digit", "params": {"digits": ""}},
            },
        },
    ),
    _ex(
        "calling.detect/digit-bare",
        c.Detect(call_id=CALL_ID, control_id="det-6", detect=c.DetectDigit()),
        {
            "command": "calling.detect",
            "id": CALL_ID,
            "params": {"control_id": "det-6", "detect": {"type": "digit"}},
        },
    ),
    _ex(
        "calling.detect.stop/min",
        c.DetectStop(call_id=CALL_ID, control_id="det-1"),
        {"command": "calling.detect.stop", "id": CALL_ID, "params": {"control_id": "det-1"}},
    ),
    # --- tap ------------------------------------------------------------------------
    _ex(
        "calling.tap/full",
        c.Tap(
            call_id=CALL_ID,
            control_id="tap-1",
            direction="both",
            device=c.RtpDevice(addr="93.184.216.34", port=4000, codec="PCMU", ptime=20),
            status_url="https://example.com/tap",
        ),
        {
            "command": "calling.tap",
            "id": CALL_ID,
            "params": {
                "control_id": "tap-1",
                "tap": {"type": "audio", "params": {"direction": "both"}},
                "device": {
                    "type": "rtp",
                    "params": {"addr": "93.184.216.34", "port": 4000, "codec": "PCMU", "ptime": 20},
                },
                "status_url": "https://example.com/tap",
            },
        },
    ),
    _ex(
        "calling.tap/min",
        c.Tap(
            call_id=CALL_ID,
            control_id="tap-2",
            direction="listen",
            device=c.WsDevice(uri="wss://tap.example.com/in"),
        ),
        {
            "command": "calling.tap",
            "id": CALL_ID,
            "params": {
                "control_id": "tap-2",
                "tap": {"type": "audio", "params": {"direction": "listen"}},
                "device": {"type": "ws", "params": {"uri": "wss://tap.example.com/in"}},
            },
        },
    ),
    _ex(
        "calling.tap/ws-plain-codec",
        c.Tap(
            call_id=CALL_ID,
            control_id="tap-3",
            direction="speak",
            device=c.WsDevice(uri="ws://tap.example.com:8080/in", codec="opus"),
        ),
        {
            "command": "calling.tap",
            "id": CALL_ID,
            "params": {
                "control_id": "tap-3",
                "tap": {"type": "audio", "params": {"direction": "speak"}},
                "device": {
                    "type": "ws",
                    "params": {"uri": "ws://tap.example.com:8080/in", "codec": "opus"},
                },
            },
        },
    ),
    _ex(
        "calling.tap/rtp-min",
        c.Tap(
            call_id=CALL_ID,
            control_id="tap-4",
            direction="speak",
            device=c.RtpDevice(addr="8.8.8.8", port=65535),
        ),
        {
            "command": "calling.tap",
            "id": CALL_ID,
            "params": {
                "control_id": "tap-4",
                "tap": {"type": "audio", "params": {"direction": "speak"}},
                "device": {"type": "rtp", "params": {"addr": "8.8.8.8", "port": 65535}},
            },
        },
    ),
    _ex(
        "calling.tap.stop/min",
        c.TapStop(call_id=CALL_ID, control_id="tap-1"),
        {"command": "calling.tap.stop", "id": CALL_ID, "params": {"control_id": "tap-1"}},
    ),
    # --- transcribe, stream ---------------------------------------------------------
    _ex(
        "calling.transcribe/full",
        c.Transcribe(
            call_id=CALL_ID, control_id="tr-1", status_url="http://example.com/transcript"
        ),
        {
            "command": "calling.transcribe",
            "id": CALL_ID,
            "params": {"control_id": "tr-1", "status_url": "http://example.com/transcript"},
        },
    ),
    _ex(
        "calling.transcribe/min",
        c.Transcribe(call_id=CALL_ID, control_id="tr-2"),
        {"command": "calling.transcribe", "id": CALL_ID, "params": {"control_id": "tr-2"}},
    ),
    _ex(
        "calling.transcribe.stop/min",
        c.TranscribeStop(call_id=CALL_ID, control_id="tr-1"),
        {"command": "calling.transcribe.stop", "id": CALL_ID, "params": {"control_id": "tr-1"}},
    ),
    _ex(
        "calling.stream/full",
        c.Stream(
            call_id=CALL_ID,
            control_id="st-1",
            url="wss://media.example.com/in",
            name="agent-feed",
            codec="PCMU",
            track="both_tracks",
            authorization_bearer_token="tok-123",
            custom_parameters={"tenant": "acme", "n": 3, "tags": ["a", "b"], "x": None},
            status_url="https://example.com/stream",
            status_url_method="GET",
        ),
        {
            "command": "calling.stream",
            "id": CALL_ID,
            "params": {
                "control_id": "st-1",
                "url": "wss://media.example.com/in",
                "name": "agent-feed",
                "codec": "PCMU",
                "track": "both_tracks",
                "authorization_bearer_token": "tok-123",
                "custom_parameters": {"tenant": "acme", "n": 3, "tags": ["a", "b"], "x": None},
                "status_url": "https://example.com/stream",
                "status_url_method": "GET",
            },
        },
    ),
    _ex(
        "calling.stream/min",
        c.Stream(call_id=CALL_ID, control_id="st-2", url="wss://media.example.com/in"),
        {
            "command": "calling.stream",
            "id": CALL_ID,
            "params": {"control_id": "st-2", "url": "wss://media.example.com/in"},
        },
    ),
    _ex(
        "calling.stream.stop/min",
        c.StreamStop(call_id=CALL_ID, control_id="st-1"),
        {"command": "calling.stream.stop", "id": CALL_ID, "params": {"control_id": "st-1"}},
    ),
    # --- denoise --------------------------------------------------------------------
    _ex(
        "calling.denoise/min",
        c.Denoise(call_id=CALL_ID),
        {"command": "calling.denoise", "id": CALL_ID, "params": {}},
    ),
    _ex(
        "calling.denoise.stop/min",
        c.DenoiseStop(call_id=CALL_ID),
        {"command": "calling.denoise.stop", "id": CALL_ID, "params": {}},
    ),
    # --- AI agent -------------------------------------------------------------------
    _ex(
        "calling.ai_hold/full",
        c.AIHold(call_id=CALL_ID, timeout=300, prompt="Please hold while I check."),
        {
            "command": "calling.ai_hold",
            "id": CALL_ID,
            "params": {"timeout": "300", "prompt": "Please hold while I check."},
        },
    ),
    _ex(
        "calling.ai_hold/min",
        c.AIHold(call_id=CALL_ID),
        {"command": "calling.ai_hold", "id": CALL_ID, "params": {}},
    ),
    _ex(
        "calling.ai_hold/str-timeout",
        c.AIHold(call_id=CALL_ID, timeout="0"),
        {"command": "calling.ai_hold", "id": CALL_ID, "params": {"timeout": "0"}},
    ),
    _ex(
        "calling.ai_unhold/min",
        c.AIUnhold(call_id=CALL_ID),
        {"command": "calling.ai_unhold", "id": CALL_ID, "params": {}},
    ),
    _ex(
        "calling.ai_message/full",
        c.AIMessage(
            call_id=CALL_ID,
            role="system",
            message_text="The caller is a VIP.",
            reset=c.AIReset(full_reset=True, user_prompt="Hi", system_prompt="Be brief."),
            global_data={"vip": True, "orders": [1, 2], "profile": {"name": "Ann"}},
        ),
        {
            "command": "calling.ai_message",
            "id": CALL_ID,
            "params": {
                "role": "system",
                "message_text": "The caller is a VIP.",
                "reset": {"full_reset": True, "user_prompt": "Hi", "system_prompt": "Be brief."},
                "global_data": {"vip": True, "orders": [1, 2], "profile": {"name": "Ann"}},
            },
        },
    ),
    _ex(
        "calling.ai_message/min",
        c.AIMessage(call_id=CALL_ID),
        {"command": "calling.ai_message", "id": CALL_ID, "params": {}},
    ),
    _ex(
        "calling.ai_message/empty-reset",
        c.AIMessage(call_id=CALL_ID, reset=c.AIReset()),
        {"command": "calling.ai_message", "id": CALL_ID, "params": {"reset": {}}},
    ),
    _ex(
        "calling.ai.stop/full",
        c.AIStop(call_id=CALL_ID, control_id="ignored"),
        {"command": "calling.ai.stop", "id": CALL_ID, "params": {"control_id": "ignored"}},
    ),
    _ex(
        "calling.ai.stop/min",
        c.AIStop(call_id=CALL_ID),
        {"command": "calling.ai.stop", "id": CALL_ID, "params": {}},
    ),
    # --- AI sidecar -----------------------------------------------------------------
    _ex(
        "calling.ai_sidecar/full",
        c.AISidecar(
            call_id=CALL_ID,
            lang="en-US",
            prompt={
                "pom": [
                    {
                        "title": "Role",
                        "body": "You coach support agents.",
                        "numbered": True,
                        "subsections": [
                            {"bullets": ["Be kind", "Be brief"], "numberedBullets": True}
                        ],
                    }
                ]
            },
            model="gpt-4.1-mini",
            direction=["remote-caller", "local-caller"],
            customer_role="local-caller",
            url="https://user:pass@example.com/sidecar",
            swaig={
                "defaults": {
                    "web_hook_url": "https://example.com/swaig",
                    "web_hook_auth_user": "u",
                    "web_hook_auth_password": "p",
                },
                "functions": [
                    {
                        "function": "lookup_order",
                        "description": "Find an order",
                        "purpose": "orders",
                        "parameters": {
                            "type": "object",
                            "properties": {
                                "order_id": {
                                    "type": "string",
                                    "description": "The id",
                                    "enum": ["a", "b"],
                                    "default": "a",
                                },
                                "count": {"type": "integer", "enum": [1, 2], "default": 1},
                                "ratio": {"type": "number", "enum": [0.5], "default": 0.5},
                                "rush": {"type": "boolean", "default": False},
                                "tags": {"type": "array", "items": {"type": "string"}},
                                "meta": {
                                    "type": "object",
                                    "properties": {"note": {"type": "string"}},
                                    "required": ["note"],
                                },
                            },
                            "required": ["order_id"],
                        },
                        "web_hook_url": "https://example.com/lookup",
                        "web_hook_auth_user": "u2",
                        "web_hook_auth_password": "p2",
                    }
                ],
                "mcp_servers": [
                    {
                        "url": "https://mcp.example.com",
                        "headers": {"X-Key": "k"},
                        "resources": True,
                        "resource_vars": {"tenant": "acme"},
                    }
                ],
            },
            permissions=c.SidecarPermissions(
                swaig_allow_swml=False, swaig_allow_settings=True, swaig_set_global_data=False
            ),
            global_data={"account": "A-1"},
            hints=["SignalWire", "SWAIG"],
            params=c.SidecarParams(
                idle_timeout_ms=200,
                min_interval_ms=0,
                max_iters_per_tick=5,
                max_history_tokens=8000,
                act_on_channel=True,
                final_summary=True,
                ai_summary=True,
                ai_summary_prompt="Summarize",
                summary_model="gpt-4.1-nano",
                live_events=True,
                verbose_utterances=False,
                speech_engine="google",
                speech_timeout=600000,
                vad_silence_ms=300,
                vad_thresh=10000,
                debug_level=100,
                debug=True,
                transcribe_prompt="Product names",
            ),
            action=c.Summarize(webhook="https://example.com/summary", prompt="Summarize it"),
        ),
        {
            "command": "calling.ai_sidecar",
            "id": CALL_ID,
            "params": {
                "lang": "en-US",
                "prompt": {
                    "pom": [
                        {
                            "title": "Role",
                            "body": "You coach support agents.",
                            "numbered": True,
                            "subsections": [
                                {"bullets": ["Be kind", "Be brief"], "numberedBullets": True}
                            ],
                        }
                    ]
                },
                "model": "gpt-4.1-mini",
                "direction": ["remote-caller", "local-caller"],
                "customer_role": "local-caller",
                "url": "https://user:pass@example.com/sidecar",
                "SWAIG": {
                    "defaults": {
                        "web_hook_url": "https://example.com/swaig",
                        "web_hook_auth_user": "u",
                        "web_hook_auth_password": "p",
                    },
                    "functions": [
                        {
                            "function": "lookup_order",
                            "description": "Find an order",
                            "purpose": "orders",
                            "parameters": {
                                "type": "object",
                                "properties": {
                                    "order_id": {
                                        "type": "string",
                                        "description": "The id",
                                        "enum": ["a", "b"],
                                        "default": "a",
                                    },
                                    "count": {"type": "integer", "enum": [1, 2], "default": 1},
                                    "ratio": {"type": "number", "enum": [0.5], "default": 0.5},
                                    "rush": {"type": "boolean", "default": False},
                                    "tags": {"type": "array", "items": {"type": "string"}},
                                    "meta": {
                                        "type": "object",
                                        "properties": {"note": {"type": "string"}},
                                        "required": ["note"],
                                    },
                                },
                                "required": ["order_id"],
                            },
                            "web_hook_url": "https://example.com/lookup",
                            "web_hook_auth_user": "u2",
                            "web_hook_auth_password": "p2",
                        }
                    ],
                    "mcp_servers": [
                        {
                            "url": "https://mcp.example.com",
                            "headers": {"X-Key": "k"},
                            "resources": True,
                            "resource_vars": {"tenant": "acme"},
                        }
                    ],
                },
                "permissions": {
                    "swaig_allow_swml": False,
                    "swaig_allow_settings": True,
                    "swaig_set_global_data": False,
                },
                "global_data": {"account": "A-1"},
                "hints": ["SignalWire", "SWAIG"],
                "params": {
                    "idle_timeout_ms": 200,
                    "min_interval_ms": 0,
                    "max_iters_per_tick": 5,
                    "max_history_tokens": 8000,
                    "act_on_channel": True,
                    "final_summary": True,
                    "ai_summary": True,
                    "ai_summary_prompt": "Summarize",
                    "summary_model": "gpt-4.1-nano",
                    "live_events": True,
                    "verbose_utterances": False,
                    "speech_engine": "google",
                    "speech_timeout": 600000,
                    "vad_silence_ms": 300,
                    "vad_thresh": 10000,
                    "debug_level": 100,
                    "debug": True,
                    "transcribe_prompt": "Product names",
                },
                "action": {
                    "summarize": {
                        "webhook": "https://example.com/summary",
                        "prompt": "Summarize it",
                    }
                },
            },
        },
    ),
    _ex(
        "calling.ai_sidecar/min",
        c.AISidecar(call_id=CALL_ID, lang="en-US"),
        {"command": "calling.ai_sidecar", "id": CALL_ID, "params": {"lang": "en-US"}},
    ),
    _ex(
        "calling.ai_sidecar/prompt-string",
        c.AISidecar(call_id=CALL_ID, lang="de", prompt="Watch for churn."),
        {
            "command": "calling.ai_sidecar",
            "id": CALL_ID,
            "params": {"lang": "de", "prompt": "Watch for churn."},
        },
    ),
    _ex(
        "calling.ai_sidecar/prompt-text",
        c.AISidecar(call_id=CALL_ID, lang="de", prompt={"text": "Watch for churn."}),
        {
            "command": "calling.ai_sidecar",
            "id": CALL_ID,
            "params": {"lang": "de", "prompt": {"text": "Watch for churn."}},
        },
    ),
    _ex(
        "calling.ai_sidecar/prompt-file-empty-parts",
        c.AISidecar(
            call_id=CALL_ID,
            lang="de",
            prompt={"file": "https://example.com/prompt.txt"},
            swaig={},
            permissions=c.SidecarPermissions(),
            params=c.SidecarParams(),
            action=c.Summarize(),
        ),
        {
            "command": "calling.ai_sidecar",
            "id": CALL_ID,
            "params": {
                "lang": "de",
                "prompt": {"file": "https://example.com/prompt.txt"},
                "SWAIG": {},
                "permissions": {},
                "params": {},
                "action": {"summarize": {}},
            },
        },
    ),
    _ex(
        "calling.ai_sidecar.poke/min",
        c.AISidecarPoke(call_id=CALL_ID, text="Check the refund policy."),
        {
            "command": "calling.ai_sidecar.poke",
            "id": CALL_ID,
            "params": {"text": "Check the refund policy."},
        },
    ),
    _ex(
        "calling.ai_sidecar.ask/min",
        c.AISidecarAsk(call_id=CALL_ID, text="Is the caller upset?"),
        {
            "command": "calling.ai_sidecar.ask",
            "id": CALL_ID,
            "params": {"text": "Is the caller upset?"},
        },
    ),
    _ex(
        "calling.ai_sidecar.stop/min",
        c.AISidecarStop(call_id=CALL_ID),
        {"command": "calling.ai_sidecar.stop", "id": CALL_ID, "params": {}},
    ),
    _ex(
        "calling.ai_sidecar.status/min",
        c.AISidecarStatus(call_id=CALL_ID),
        {"command": "calling.ai_sidecar.status", "id": CALL_ID, "params": {}},
    ),
    # --- live transcribe / translate ------------------------------------------------
    _ex(
        "calling.live_transcribe/full",
        c.LiveTranscribe(
            call_id=CALL_ID,
            action=c.LiveTranscribeStart(
                lang="en-US",
                direction=["remote-caller", "local-caller"],
                webhook="https://example.com/lt",
                live_events=True,
                ai_summary=True,
                ai_summary_prompt="Key points",
                speech_engine="deepgram",
                speech_timeout=60000,
                vad_silence_ms=300,
                vad_thresh=1800,
                debug_level=2,
            ),
        ),
        {
            "command": "calling.live_transcribe",
            "id": CALL_ID,
            "params": {
                "action": {
                    "start": {
                        "lang": "en-US",
                        "direction": ["remote-caller", "local-caller"],
                        "webhook": "https://example.com/lt",
                        "live_events": True,
                        "ai_summary": True,
                        "ai_summary_prompt": "Key points",
                        "speech_engine": "deepgram",
                        "speech_timeout": 60000,
                        "vad_silence_ms": 300,
                        "vad_thresh": 1800,
                        "debug_level": 2,
                    }
                }
            },
        },
    ),
    _ex(
        "calling.live_transcribe/min",
        c.LiveTranscribe(call_id=CALL_ID, action="stop"),
        {"command": "calling.live_transcribe", "id": CALL_ID, "params": {"action": "stop"}},
    ),
    _ex(
        "calling.live_transcribe/start-min",
        c.LiveTranscribe(
            call_id=CALL_ID, action=c.LiveTranscribeStart(lang="en", direction=["local-caller"])
        ),
        {
            "command": "calling.live_transcribe",
            "id": CALL_ID,
            "params": {"action": {"start": {"lang": "en", "direction": ["local-caller"]}}},
        },
    ),
    _ex(
        "calling.live_transcribe/summarize",
        c.LiveTranscribe(
            call_id=CALL_ID, action=c.Summarize(webhook="https://example.com/s", prompt="Short")
        ),
        {
            "command": "calling.live_transcribe",
            "id": CALL_ID,
            "params": {
                "action": {"summarize": {"webhook": "https://example.com/s", "prompt": "Short"}}
            },
        },
    ),
    _ex(
        "calling.live_transcribe/summarize-empty",
        c.LiveTranscribe(call_id=CALL_ID, action=c.Summarize()),
        {
            "command": "calling.live_transcribe",
            "id": CALL_ID,
            "params": {"action": {"summarize": {}}},
        },
    ),
    _ex(
        "calling.live_translate/full",
        c.LiveTranslate(
            call_id=CALL_ID,
            action=c.LiveTranslateStart(
                from_lang="en-US",
                to_lang="es-ES",
                direction=["remote-caller", "local-caller"],
                from_voice="elevenlabs.josh",
                to_voice="elevenlabs.rachel",
                filter_from="professional",
                filter_to="prompt:Use formal business language",
                webhook="https://example.com/tl",
                live_events=True,
                ai_summary=False,
                ai_summary_prompt="Key points",
                speech_engine="google",
                speech_timeout=30000,
                vad_silence_ms=500,
                vad_thresh=0,
                debug_level=0,
            ),
            status_url="https://example.com/translate",
        ),
        {
            "command": "calling.live_translate",
            "id": CALL_ID,
            "params": {
                "action": {
                    "start": {
                        "from_lang": "en-US",
                        "to_lang": "es-ES",
                        "direction": ["remote-caller", "local-caller"],
                        "from_voice": "elevenlabs.josh",
                        "to_voice": "elevenlabs.rachel",
                        "filter_from": "professional",
                        "filter_to": "prompt:Use formal business language",
                        "webhook": "https://example.com/tl",
                        "live_events": True,
                        "ai_summary": False,
                        "ai_summary_prompt": "Key points",
                        "speech_engine": "google",
                        "speech_timeout": 30000,
                        "vad_silence_ms": 500,
                        "vad_thresh": 0,
                        "debug_level": 0,
                    }
                },
                "status_url": "https://example.com/translate",
            },
        },
    ),
    _ex(
        "calling.live_translate/min",
        c.LiveTranslate(call_id=CALL_ID, action="stop"),
        {"command": "calling.live_translate", "id": CALL_ID, "params": {"action": "stop"}},
    ),
    _ex(
        "calling.live_translate/inject",
        c.LiveTranslate(
            call_id=CALL_ID,
            action=c.LiveTranslateInject(message="One moment please", direction="remote-caller"),
        ),
        {
            "command": "calling.live_translate",
            "id": CALL_ID,
            "params": {
                "action": {"inject": {"message": "One moment please", "direction": "remote-caller"}}
            },
        },
    ),
    _ex(
        "calling.live_translate/summarize",
        c.LiveTranslate(
            call_id=CALL_ID, action=c.Summarize(prompt="Both languages"), status_url="http://x.io"
        ),
        {
            "command": "calling.live_translate",
            "id": CALL_ID,
            "params": {
                "action": {"summarize": {"prompt": "Both languages"}},
                "status_url": "http://x.io",
            },
        },
    ),
    _ex(
        "calling.live_translate/start-min",
        c.LiveTranslate(
            call_id=CALL_ID,
            action=c.LiveTranslateStart(from_lang="en", to_lang="fr", direction=["remote-caller"]),
        ),
        {
            "command": "calling.live_translate",
            "id": CALL_ID,
            "params": {
                "action": {
                    "start": {"from_lang": "en", "to_lang": "fr", "direction": ["remote-caller"]}
                }
            },
        },
    ),
    # --- fax, refer, user_event -----------------------------------------------------
    _ex(
        "calling.send_fax.stop/min",
        c.SendFaxStop(call_id=CALL_ID, control_id="fax-1"),
        {"command": "calling.send_fax.stop", "id": CALL_ID, "params": {"control_id": "fax-1"}},
    ),
    _ex(
        "calling.receive_fax.stop/min",
        c.ReceiveFaxStop(call_id=CALL_ID, control_id="fax-2"),
        {
            "command": "calling.receive_fax.stop",
            "id": CALL_ID,
            "params": {"control_id": "fax-2"},
        },
    ),
    _ex(
        "calling.refer/full",
        c.Refer(
            call_id=CALL_ID,
            device=c.SipReferDevice(
                to="sip:bob@example.com",
                from_="sip:alice@example.com",
                username="alice",
                password="pw",
            ),
            status_url="https://example.com/refer",
        ),
        {
            "command": "calling.refer",
            "id": CALL_ID,
            "params": {
                "device": {
                    "type": "sip",
                    "params": {
                        "to": "sip:bob@example.com",
                        "from": "sip:alice@example.com",
                        "username": "alice",
                        "password": "pw",
                    },
                },
                "status_url": "https://example.com/refer",
            },
        },
    ),
    _ex(
        "calling.refer/min",
        c.Refer(call_id=CALL_ID, device=c.SipReferDevice(to="sip:bob@example.com")),
        {
            "command": "calling.refer",
            "id": CALL_ID,
            "params": {"device": {"type": "sip", "params": {"to": "sip:bob@example.com"}}},
        },
    ),
    _ex(
        "calling.user_event/min",
        c.UserEvent(call_id=CALL_ID, event={"type": "checkout", "cart": {"items": 3}}),
        {
            "command": "calling.user_event",
            "id": CALL_ID,
            "params": {"event": {"type": "checkout", "cart": {"items": 3}}},
        },
    ),
    _ex(
        "calling.user_event/empty",
        c.UserEvent(call_id=CALL_ID, event={}),
        {"command": "calling.user_event", "id": CALL_ID, "params": {"event": {}}},
    ),
]

EXAMPLES_BY_ID = {e.id: e for e in EXAMPLES}


# --- invalid constructions -------------------------------------------------------------

DELETE = object()  # as a mutation value: remove the key
SchemaVerdict = Literal["rejects", "accepts"]


class Invalid(NamedTuple):
    id: str
    build: Callable[[], object]
    message: str  # the start of str(ValidationError)
    # (example id, path into its body, bad value), when a body can carry the same mistake
    mutation: tuple[str, tuple[str | int, ...], Any] | None = None
    schema: SchemaVerdict | None = None


def _bad(
    id: str,
    build: Callable[[], object],
    message: str,
    mutation: tuple[str, tuple[str | int, ...], Any] | None = None,
    schema: SchemaVerdict | None = None,
) -> Invalid:
    assert (mutation is None) == (schema is None), id
    return Invalid(id, build, message, mutation, schema)


P = ("params",)
BAD_UUID = "not-a-uuid"
_D: dict[str, Any] = {"from_": "+1555", "to": "+1666"}  # dial basics
_U = "https://example.com/swml"


def _dial(**kw: Any) -> c.Dial:
    return c.Dial(**{"url": _U, **_D, **kw})


def _play(**kw: Any) -> c.Play:
    return c.Play(**{"call_id": CALL_ID, "control_id": "p", "play": [tts("x")], **kw})


def _record(**kw: Any) -> c.Record:
    return c.Record(call_id=CALL_ID, control_id="r", audio=c.RecordAudio(**kw))


def _collect(**kw: Any) -> c.Collect:
    return c.Collect(**{"call_id": CALL_ID, "control_id": "c", **kw})


def _tap(device: Any, direction: Any = "both") -> c.Tap:
    return c.Tap(call_id=CALL_ID, control_id="t", direction=direction, device=device)


def _stream(**kw: Any) -> c.Stream:
    return c.Stream(**{"call_id": CALL_ID, "control_id": "s", "url": "wss://x.io", **kw})


def _sidecar(**kw: Any) -> c.AISidecar:
    return c.AISidecar(**{"call_id": CALL_ID, "lang": "en", **kw})


def _fn(**parameters: Any) -> dict[str, Any]:
    """SWAIG with one function whose parameters hold *parameters* as properties."""
    return {
        "functions": [{"function": "f", "parameters": {"type": "object", "properties": parameters}}]
    }


def _lts(**kw: Any) -> c.LiveTranscribe:
    start = c.LiveTranscribeStart(**{"lang": "en", "direction": ["remote-caller"], **kw})
    return c.LiveTranscribe(call_id=CALL_ID, action=start)


def _ltl(**kw: Any) -> c.LiveTranslate:
    start = c.LiveTranslateStart(
        **{"from_lang": "en", "to_lang": "es", "direction": ["remote-caller"], **kw}
    )
    return c.LiveTranslate(call_id=CALL_ID, action=start)


def _follow_up_cases(cls: type[c.Command[Any]]) -> list[Invalid]:
    """The three rules every control_id follow-up has: call id, control_id present, non-empty."""
    name = cls.command_name
    label = cls._label
    example = f"{name}/min"
    return [
        _bad(
            f"{name}/call_id-not-uuid",
            lambda: cls(call_id=BAD_UUID, control_id="x"),  # type: ignore[call-arg]
            f"{label}.call_id: 'not-a-uuid' is not a UUID",
            (example, ("id",), BAD_UUID),
            "rejects",
        ),
        _bad(
            f"{name}/control_id-missing",
            lambda: cls(call_id=CALL_ID, control_id=None),  # type: ignore[call-arg]
            f"{label}.control_id: is required",
            (example, ("params", "control_id"), DELETE),
            "rejects",
        ),
        _bad(
            f"{name}/control_id-int",
            lambda: cls(call_id=CALL_ID, control_id=7),  # type: ignore[call-arg]
            f"{label}.control_id: 7 must be a string",
            (example, ("params", "control_id"), 7),
            "rejects",
        ),
        _bad(
            f"{name}/control_id-empty",
            lambda: cls(call_id=CALL_ID, control_id=""),  # type: ignore[call-arg]
            f"{label}.control_id: '' must not be empty",
            (example, ("params", "control_id"), ""),
            "accepts",
        ),
    ]


def _id_only_cases(cls: type[c.Command[Any]]) -> list[Invalid]:
    """Commands whose only field is the call id."""
    name = cls.command_name
    label = cls._label
    example = f"{name}/min"
    return [
        _bad(
            f"{name}/call_id-not-uuid",
            lambda: cls(call_id=BAD_UUID),  # type: ignore[call-arg]
            f"{label}.call_id: 'not-a-uuid' is not a UUID",
            (example, ("id",), BAD_UUID),
            "rejects",
        ),
        _bad(
            f"{name}/call_id-none",
            lambda: cls(call_id=None),  # type: ignore[call-arg]
            f"{label}.call_id: is required",
            (example, ("id",), DELETE),
            "rejects",
        ),
        _bad(
            f"{name}/call_id-int",
            lambda: cls(call_id=42),  # type: ignore[call-arg]
            f"{label}.call_id: 42 is not a UUID",
            (example, ("id",), 42),
            "rejects",
        ),
        _bad(
            f"{name}/call_id-uuid-with-newline",
            lambda: cls(call_id=CALL_ID + "\n"),  # type: ignore[call-arg]
            f"{label}.call_id: '{CALL_ID}\\n' is not a UUID",
            (example, ("id",), CALL_ID + "\n"),
            "rejects",
        ),
    ]


INVALID: list[Invalid] = [
    # --- dial -----------------------------------------------------------------------
    _bad(
        "dial/url-and-swml",
        lambda: _dial(swml=SWML_MIN),
        "dial.url: give exactly one of url or swml, not both",
        ("dial/min", (*P, "swml"), SWML_MIN),
        "rejects",
    ),
    _bad(
        "dial/neither-url-nor-swml",
        lambda: c.Dial(**_D),
        "dial.url: give exactly one of url or swml",
        ("dial/min", (*P, "url"), DELETE),
        "rejects",
    ),
    _bad(
        "dial/no-to-no-to_script",
        lambda: c.Dial(from_="+1555", url=_U),
        "dial.to: is required unless to_script is given",
        ("dial/min", (*P, "to"), DELETE),
        "rejects",
    ),
    _bad(
        "dial/from-missing",
        lambda: c.Dial(from_=None, to="+1", url=_U),  # type: ignore[arg-type]
        "dial.from_: is required",
        ("dial/min", (*P, "from"), DELETE),
        "rejects",
    ),
    _bad(
        "dial/from-empty",
        lambda: c.Dial(from_="", to="+1", url=_U),
        "dial.from_: '' must not be empty",
        ("dial/min", (*P, "from"), ""),
        "accepts",
    ),
    _bad(
        "dial/swml-as-string",
        lambda: c.Dial(**_D, swml='{"sections": {"main": []}}'),  # type: ignore[arg-type]
        'dial.swml: \'{"sections": {"main": []}}\' must be a SWML object (a dict), not a string',
        ("dial/swml-to_script-text", (*P, "swml"), '{"sections": {"main": []}}'),
        "rejects",
    ),
    _bad(
        "dial/swml-no-main",
        lambda: c.Dial(**_D, swml={"sections": {"other": []}}),
        "dial.swml.sections.main: is required",
        ("dial/swml-to_script-text", (*P, "swml"), {"sections": {"other": []}}),
        "rejects",
    ),
    _bad(
        "dial/swml-unknown-method",
        lambda: c.Dial(**_D, swml={"sections": {"main": [{"dance": {}}]}}),
        "dial.swml.sections.main[0]: 'dance' is not a SWML method",
        ("dial/swml-to_script-text", (*P, "swml", "sections", "main", 0), {"dance": {}}),
        "rejects",
    ),
    _bad(
        "dial/swml-two-key-step",
        lambda: c.Dial(**_D, swml={"sections": {"main": [{"answer": {}, "hangup": {}}]}}),
        "dial.swml.sections.main[0]: {'answer': {}, 'hangup': {}} must be an object with "
        "exactly one key",
        ("dial/swml-to_script-text", (*P, "swml", "sections", "main", 0), {"a": 1, "b": 2}),
        "rejects",
    ),
    _bad(
        "dial/swml-bad-version",
        lambda: c.Dial(**_D, swml={"version": "2", "sections": {"main": []}}),
        "dial.swml.version: '2' must be '1.0.0'",
        ("dial/swml-to_script-text", (*P, "swml", "version"), "2"),
        "rejects",
    ),
    _bad(
        "dial/swml-extra-key",
        lambda: c.Dial(**_D, swml={"sections": {"main": []}, "vars": {}}),
        "dial.swml.vars: {} is not allowed in a SWML document",
        ("dial/swml-to_script-text", (*P, "swml", "vars"), {}),
        "rejects",
    ),
    _bad(
        "dial/to_script-bad-swml",
        lambda: c.Dial(from_="+1555", url=_U, to_script={"sections": {}}),
        "dial.to_script: {'sections': {}} must be SWML text, a URL, or a SWML object",
        ("dial/full", (*P, "to_script"), {"sections": {}}),
        "rejects",
    ),
    _bad(
        "dial/status_url-not-http",
        lambda: _dial(status_url="ftp://example.com/x"),
        "dial.status_url: 'ftp://example.com/x' must be an http:// or https:// URL",
        ("dial/full", (*P, "status_url"), "ftp://example.com/x"),
        "rejects",
    ),
    _bad(
        "dial/status_events-unknown",
        lambda: _dial(status_events=["ended", "hungup"]),
        "dial.status_events[1]: 'hungup' is not one of 'created', 'ringing', 'answered', 'ended'",
        ("dial/full", (*P, "status_events", 1), "hungup"),
        "rejects",
    ),
    _bad(
        "dial/url_method-lowercase",
        lambda: _dial(url_method="post"),
        "dial.url_method: 'post' is not one of 'GET', 'POST'",
        ("dial/full", (*P, "url_method"), "post"),
        "rejects",
    ),
    _bad(
        "dial/codecs-unknown",
        lambda: _dial(codecs=["OPUS", "MP3"]),
        "dial.codecs: ['OPUS', 'MP3'] must be a list of codecs",
        ("dial/full", (*P, "codecs", 1), "MP3"),
        "rejects",
    ),
    _bad(
        "dial/timeout-0",
        lambda: _dial(timeout=0),
        "dial.timeout: 0 is outside 1..600",
        ("dial/full", (*P, "timeout"), 0),
        "rejects",
    ),
    _bad(
        "dial/timeout-601",
        lambda: _dial(timeout=601),
        "dial.timeout: 601 is outside 1..600",
        ("dial/full", (*P, "timeout"), 601),
        "rejects",
    ),
    _bad(
        "dial/timeout-float",
        lambda: _dial(timeout=30.5),
        "dial.timeout: 30.5 must be an integer",
        ("dial/full", (*P, "timeout"), 30.5),
        "rejects",
    ),
    _bad(
        "dial/timeout-bool",
        lambda: _dial(timeout=True),
        "dial.timeout: True must be an integer",
        ("dial/full", (*P, "timeout"), True),
        "rejects",
    ),
    _bad(
        "dial/max_price-negative",
        lambda: _dial(max_price_per_minute=-0.01),
        "dial.max_price_per_minute: -0.01 must be >= 0",
        ("dial/full", (*P, "max_price_per_minute"), -0.01),
        "rejects",
    ),
    _bad(
        "dial/max_price-nan",
        lambda: _dial(max_price_per_minute=float("nan")),
        "dial.max_price_per_minute: nan must be a number",
    ),
    _bad(
        "dial/send_digits-bad-char",
        lambda: _dial(send_digits="12x"),
        "dial.send_digits: '12x' may hold only 0-9 A-D * # w ,",
        ("dial/full", (*P, "send_digits"), "12x"),
        "rejects",
    ),
    _bad(
        "dial/send_digits-lowercase-abcd",
        lambda: _dial(send_digits="a"),
        "dial.send_digits: 'a' may hold only",
        ("dial/full", (*P, "send_digits"), "a"),
        "rejects",
    ),
    _bad(
        "dial/send_digits-trailing-newline",
        lambda: _dial(send_digits="1\n"),
        "dial.send_digits: '1\\n' may hold only",
        ("dial/full", (*P, "send_digits"), "1\n"),
        "accepts",  # Python's "$" in the schema pattern matches before a final newline
    ),
    _bad(
        "dial/region-int-list",
        lambda: _dial(region=["us", 1]),
        "dial.region: ['us', 1] must be a string or a list of strings",
        ("dial/full", (*P, "region", 1), 1),
        "rejects",
    ),
    _bad(
        "dial/custom_variables-reserved-prefix",
        lambda: _dial(custom_variables={"SW_foo": "x"}),
        "dial.custom_variables.SW_foo: 'SW_foo' is not a valid variable name",
        ("dial/full", (*P, "custom_variables"), {"SW_foo": "x"}),
        "rejects",
    ),
    _bad(
        "dial/custom_variables-signalwire-prefix-mixed-case",
        lambda: _dial(custom_variables={"SignalWire_x": "x"}),
        "dial.custom_variables.SignalWire_x: 'SignalWire_x' is not a valid variable name",
        ("dial/full", (*P, "custom_variables"), {"SignalWire_x": "x"}),
        "rejects",
    ),
    _bad(
        "dial/custom_variables-key-starts-with-digit",
        lambda: _dial(custom_variables={"1abc": "x"}),
        "dial.custom_variables.1abc: '1abc' is not a valid variable name",
        ("dial/full", (*P, "custom_variables"), {"1abc": "x"}),
        "rejects",
    ),
    _bad(
        "dial/custom_variables-key-dash",
        lambda: _dial(custom_variables={"a-b": "x"}),
        "dial.custom_variables.a-b: 'a-b' is not a valid variable name",
        ("dial/full", (*P, "custom_variables"), {"a-b": "x"}),
        "rejects",
    ),
    _bad(
        "dial/custom_variables-empty-value",
        lambda: _dial(custom_variables={"a": ""}),
        "dial.custom_variables.a: '' must not be empty",
        ("dial/full", (*P, "custom_variables"), {"a": ""}),
        "rejects",
    ),
    _bad(
        "dial/custom_variables-non-string-value",
        lambda: _dial(custom_variables={"a": 1}),
        "dial.custom_variables.a: 1 must be a string",
        ("dial/full", (*P, "custom_variables"), {"a": 1}),
        "rejects",
    ),
    _bad(
        "dial/custom_variables-21-items",
        lambda: _dial(custom_variables={f"v{i}": "x" for i in range(21)}),
        "dial.custom_variables: '21 entries' is more than the 20 allowed",
        ("dial/full", (*P, "custom_variables"), {f"v{i}": "x" for i in range(21)}),
        "rejects",
    ),
    _bad(
        "dial/custom_variables-1025-ascii",
        lambda: _dial(custom_variables={"a": "x" * 1025}),
        "dial.custom_variables.a: 'xxxx",
        ("dial/full", (*P, "custom_variables"), {"a": "x" * 1025}),
        "rejects",
    ),
    _bad(
        "dial/custom_variables-1024-chars-over-1024-bytes",
        lambda: _dial(custom_variables={"a": "é" * 513}),
        "dial.custom_variables.a: 'ééé",
        ("dial/full", (*P, "custom_variables"), {"a": "é" * 513}),
        "accepts",  # maxLength counts characters; the reference's limit is bytes
    ),
    # --- update ---------------------------------------------------------------------
    _bad(
        "update/status-only",
        lambda: c.Update(call_id=CALL_ID, status="canceled"),
        "update.url: give exactly one of url or swml",
        ("update/min", (*P, "url"), DELETE),
        "rejects",
    ),
    _bad(
        "update/url-and-swml",
        lambda: c.Update(call_id=CALL_ID, url=_U, swml=SWML_MIN),
        "update.url: give exactly one of url or swml, not both",
        ("update/min", (*P, "swml"), SWML_MIN),
        "rejects",
    ),
    _bad(
        "update/call_id-not-uuid",
        lambda: c.Update(call_id=BAD_UUID, url=_U),
        "update.call_id: 'not-a-uuid' is not a UUID",
        ("update/min", (*P, "id"), BAD_UUID),
        "rejects",
    ),
    _bad(
        "update/status-unknown",
        lambda: c.Update(call_id=CALL_ID, url=_U, status="ended"),  # type: ignore[arg-type]
        "update.status: 'ended' is not one of 'canceled', 'completed'",
        ("update/full", (*P, "status"), "ended"),
        "rejects",
    ),
    _bad(
        "update/status_url-not-uri",
        lambda: c.Update(call_id=CALL_ID, url=_U, status_url="not a uri"),
        "update.status_url: 'not a uri' must be an absolute URI",
    ),
    _bad(
        "update/url-empty",
        lambda: c.Update(call_id=CALL_ID, url=""),
        "update.url: '' must not be empty",
        ("update/min", (*P, "url"), ""),
        "accepts",
    ),
    # --- end, transfer, disconnect --------------------------------------------------
    _bad(
        "calling.end/reason-unknown",
        lambda: c.End(call_id=CALL_ID, reason="no_answer"),  # type: ignore[arg-type]
        "end.reason: 'no_answer' is not one of 'hangup', 'cancel', 'busy', 'noAnswer'",
        ("calling.end/full", (*P, "reason"), "no_answer"),
        "rejects",
    ),
    _bad(
        "calling.end/reason-wrong-case",
        lambda: c.End(call_id=CALL_ID, reason="noanswer"),  # type: ignore[arg-type]
        "end.reason: 'noanswer' is not one of",
        ("calling.end/full", (*P, "reason"), "noanswer"),
        "rejects",
    ),
    _bad(
        "calling.end/call_id-not-uuid",
        lambda: c.End(call_id=BAD_UUID),
        "end.call_id: 'not-a-uuid' is not a UUID",
        ("calling.end/min", ("id",), BAD_UUID),
        "rejects",
    ),
    _bad(
        "calling.transfer/dest-missing",
        lambda: c.Transfer(call_id=CALL_ID, dest=None),  # type: ignore[arg-type]
        "transfer.dest: is required",
        ("calling.transfer/min", (*P, "dest"), DELETE),
        "rejects",
    ),
    _bad(
        "calling.transfer/dest-int",
        lambda: c.Transfer(call_id=CALL_ID, dest=5551234),  # type: ignore[arg-type]
        "transfer.dest: 5551234 must be a SIP URI, an E.164 phone number, an SWML URL or an "
        "SWML object",
        ("calling.transfer/min", (*P, "dest"), 5551234),
        "rejects",
    ),
    _bad(
        "calling.transfer/dest-bad-swml",
        lambda: c.Transfer(call_id=CALL_ID, dest={"type": "phone", "params": {}}),
        "transfer.dest: {'type': 'phone', 'params': {}} must be a SIP URI",
        ("calling.transfer/swml", (*P, "dest"), {"type": "phone", "params": {}}),
        "rejects",
    ),
    _bad(
        "calling.transfer/dest-empty",
        lambda: c.Transfer(call_id=CALL_ID, dest=""),
        "transfer.dest: '' must be a SIP URI",
        ("calling.transfer/min", (*P, "dest"), ""),
        "accepts",
    ),
    *_id_only_cases(c.Disconnect),
    # --- play -----------------------------------------------------------------------
    _bad(
        "calling.play/volume-99",
        lambda: _play(volume=99),
        "play.volume: 99 is outside -40..40",
        ("calling.play/full", (*P, "volume"), 99),
        "rejects",
    ),
    _bad(
        "calling.play/volume-minus-40.5",
        lambda: _play(volume=-40.5),
        "play.volume: -40.5 is outside -40..40",
        ("calling.play/full", (*P, "volume"), -40.5),
        "rejects",
    ),
    _bad(
        "calling.play/volume-string",
        lambda: _play(volume="3"),
        "play.volume: '3' must be a number",
        ("calling.play/full", (*P, "volume"), "3"),
        "rejects",
    ),
    _bad(
        "calling.play/volume-inf",
        lambda: _play(volume=float("inf")),
        "play.volume: inf must be a number",
    ),
    _bad(
        "calling.play/loop-negative",
        lambda: _play(loop=-1),
        "play.loop: -1 must be >= 0",
        ("calling.play/full", (*P, "loop"), -1),
        "rejects",
    ),
    _bad(
        "calling.play/direction-unknown",
        lambda: _play(direction="out"),
        "play.direction: 'out' is not one of 'listen', 'speak', 'both'",
        ("calling.play/full", (*P, "direction"), "out"),
        "rejects",
    ),
    _bad(
        "calling.play/gender-unknown",
        lambda: _play(gender="robot"),
        "play.gender: 'robot' is not one of 'male', 'female'",
        ("calling.play/full", (*P, "gender"), "robot"),
        "rejects",
    ),
    _bad(
        "calling.play/status_url-relative",
        lambda: _play(status_url="/events"),
        "play.status_url: '/events' must be an http:// or https:// URL",
        ("calling.play/full", (*P, "status_url"), "/events"),
        "rejects",
    ),
    _bad(
        "calling.play/item-flat-dict",
        lambda: _play(play=[{"type": "tts", "text": "hi"}]),
        # A dict is read as a play item in its wire shape: {"type", "params"}.
        "play.play[0].text: is not allowed here (allowed: type, params)",
        ("calling.play/min", (*P, "play", 0), {"type": "tts", "text": "hi"}),
        "rejects",
    ),
    _bad(
        "calling.play/play-not-list",
        lambda: _play(play=tts("x")),
        "play.play: PlayTTS(",
        ("calling.play/min", (*P, "play"), {"type": "tts", "params": {"text": "x"}}),
        "rejects",
    ),
    _bad(
        "calling.play/play-missing",
        lambda: c.Play(call_id=CALL_ID, control_id="p", play=None),  # type: ignore[arg-type]
        "play.play: is required",
        ("calling.play/min", (*P, "play"), DELETE),
        "rejects",
    ),
    _bad(
        "calling.play/control_id-too-long",
        lambda: _play(control_id="x" * 257),
        "play.control_id: 'xxx",
        ("calling.play/min", (*P, "control_id"), "x" * 257),
        "accepts",
    ),
    _bad(
        "calling.play/audio-url-not-http",
        lambda: _play(play=[audio("file:///tmp/a.mp3")]),
        "audio.url: 'file:///tmp/a.mp3' must be an http:// or https:// URL",
        ("calling.play/full", (*P, "play", 1, "params", "url"), "file:///tmp/a.mp3"),
        "rejects",
    ),
    _bad(
        "calling.play/silence-zero",
        lambda: _play(play=[silence(0)]),
        "silence.duration: 0 must be > 0",
        ("calling.play/full", (*P, "play", 2, "params", "duration"), 0),
        "rejects",
    ),
    _bad(
        "calling.play/ringtone-unknown",
        lambda: _play(play=[ringtone("xx")]),
        "ringtone.name: 'xx' is not one of 'au', 'be',",
        ("calling.play/full", (*P, "play", 3, "params", "name"), "xx"),
        "rejects",
    ),
    _bad(
        "calling.play/tts-text-missing",
        lambda: _play(play=[tts(None)]),  # type: ignore[arg-type]
        "tts.text: is required",
        ("calling.play/full", (*P, "play", 0, "params", "text"), DELETE),
        "rejects",
    ),
    _bad(
        "calling.play/tts-voice-space",
        lambda: _play(play=[tts("x", voice="en US")]),
        "tts.voice: 'en US' may hold only letters, digits, '.' and '-'",
        ("calling.play/full", (*P, "play", 0, "params", "voice"), "en US"),
        "accepts",  # the reference states this in prose only
    ),
    _bad(
        "calling.play/tts-gender-unknown",
        lambda: _play(play=[tts("x", gender="other")]),  # type: ignore[arg-type]
        "tts.gender: 'other' is not one of 'male', 'female'",
        ("calling.play/full", (*P, "play", 0, "params", "gender"), "other"),
        "rejects",
    ),
    *_follow_up_cases(c.PlayPause),
    *_follow_up_cases(c.PlayResume),
    *_follow_up_cases(c.PlayStop),
    _bad(
        "calling.play.volume/volume-41",
        lambda: c.PlayVolume(call_id=CALL_ID, control_id="p", volume=41),
        "play.volume.volume: 41 is outside -40..40",
        ("calling.play.volume/min", (*P, "volume"), 41),
        "rejects",
    ),
    _bad(
        "calling.play.volume/volume-missing",
        lambda: c.PlayVolume(call_id=CALL_ID, control_id="p", volume=None),  # type: ignore[arg-type]
        "play.volume.volume: is required",
        ("calling.play.volume/min", (*P, "volume"), DELETE),
        "rejects",
    ),
    _bad(
        "calling.play.volume/volume-bool",
        lambda: c.PlayVolume(call_id=CALL_ID, control_id="p", volume=True),
        "play.volume.volume: True must be a number",
        ("calling.play.volume/min", (*P, "volume"), True),
        "rejects",
    ),
    _bad(
        "calling.play.volume/control_id-missing",
        lambda: c.PlayVolume(call_id=CALL_ID, control_id=None, volume=0),  # type: ignore[arg-type]
        "play.volume.control_id: is required",
        ("calling.play.volume/min", (*P, "control_id"), DELETE),
        "rejects",
    ),
    # --- record ---------------------------------------------------------------------
    _bad(
        "calling.record/input_sensitivity-101",
        lambda: _record(input_sensitivity=101),
        "record.audio.input_sensitivity: 101 is outside 0..100",
        ("calling.record/full", (*P, "record", "audio", "input_sensitivity"), 101),
        "rejects",
    ),
    _bad(
        "calling.record/input_sensitivity-negative",
        lambda: _record(input_sensitivity=-1),
        "record.audio.input_sensitivity: -1 is outside 0..100",
        ("calling.record/full", (*P, "record", "audio", "input_sensitivity"), -1),
        "rejects",
    ),
    _bad(
        "calling.record/format-ogg",
        lambda: _record(format="ogg"),
        "record.audio.format: 'ogg' is not one of 'mp3', 'wav', 'mp4'",
        ("calling.record/full", (*P, "record", "audio", "format"), "ogg"),
        "rejects",
    ),
    _bad(
        "calling.record/terminators-bad",
        lambda: _record(terminators="#x"),
        "record.audio.terminators: '#x' may hold only 0-9, A-D, * and #",
        ("calling.record/full", (*P, "record", "audio", "terminators"), "#x"),
        "rejects",
    ),
    _bad(
        "calling.record/beep-string",
        lambda: _record(beep="yes"),
        "record.audio.beep: 'yes' must be true or false",
        ("calling.record/full", (*P, "record", "audio", "beep"), "yes"),
        "rejects",
    ),
    _bad(
        "calling.record/max_length-negative",
        lambda: _record(max_length=-5),
        "record.audio.max_length: -5 must be >= 0",
        ("calling.record/full", (*P, "record", "audio", "max_length"), -5),
        "rejects",
    ),
    _bad(
        "calling.record/initial_timeout-negative",
        lambda: _record(initial_timeout=-0.5),
        "record.audio.initial_timeout: -0.5 must be >= 0",
        ("calling.record/full", (*P, "record", "audio", "initial_timeout"), -0.5),
        "rejects",
    ),
    _bad(
        "calling.record/audio-none",
        lambda: c.Record(call_id=CALL_ID, control_id="r", audio=None),  # type: ignore[arg-type]
        "record.audio: is required",
        ("calling.record/min", (*P, "record", "audio"), DELETE),
        "rejects",
    ),
    _bad(
        "calling.record/audio-dict",
        # A dict is read as a RecordAudio, with the same rules and field paths.
        lambda: c.Record(call_id=CALL_ID, control_id="r", audio={"beep": "yes"}),  # type: ignore[arg-type]
        "record.audio.beep: 'yes' must be true or false",
    ),
    _bad(
        "calling.record.pause/behavior-unknown",
        lambda: c.RecordPause(call_id=CALL_ID, control_id="r", behavior="drop"),  # type: ignore[arg-type]
        "record.pause.behavior: 'drop' is not one of 'skip', 'silence'",
        ("calling.record.pause/full", (*P, "behavior"), "drop"),
        "rejects",
    ),
    *_follow_up_cases(c.RecordPause),
    *_follow_up_cases(c.RecordResume),
    *_follow_up_cases(c.RecordStop),
    # --- collect --------------------------------------------------------------------
    _bad(
        "calling.collect/neither-digits-nor-speech",
        _collect,
        "collect.digits: give digits, speech, or both",
        ("calling.collect/min", (*P, "digits"), DELETE),
        "rejects",
    ),
    _bad(
        "calling.collect/digits-max-0",
        lambda: _collect(digits=c.CollectDigits(max=0)),
        "collect.digits.max: 0 must be >= 1",
        ("calling.collect/min", (*P, "digits", "max"), 0),
        "rejects",
    ),
    _bad(
        "calling.collect/digits-terminators-bad",
        lambda: _collect(digits=c.CollectDigits(max=1, terminators="#!")),
        "collect.digits.terminators: '#!' may hold only 0-9 A-D a-d * #",
        ("calling.collect/full", (*P, "digits", "terminators"), "#!"),
        "rejects",
    ),
    _bad(
        "calling.collect/digits-timeout-zero",
        lambda: _collect(digits=c.CollectDigits(max=1, digit_timeout=0)),
        "collect.digits.digit_timeout: 0 must be > 0",
        ("calling.collect/full", (*P, "digits", "digit_timeout"), 0),
        "rejects",
    ),
    _bad(
        "calling.collect/speech-engine-lowercase",
        lambda: _collect(speech=c.CollectSpeech(engine="deepgram")),  # type: ignore[arg-type]
        "collect.speech.engine: 'deepgram' is not one of 'Google', 'Google.V2', 'Deepgram'",
        ("calling.collect/full", (*P, "speech", "engine"), "deepgram"),
        "rejects",
    ),
    _bad(
        "calling.collect/speech-hints-not-strings",
        lambda: _collect(speech=c.CollectSpeech(hints=["a", 2])),  # type: ignore[list-item]
        "collect.speech.hints[1]: 2 must be a string",
        ("calling.collect/full", (*P, "speech", "hints", 1), 2),
        "rejects",
    ),
    _bad(
        "calling.collect/initial_timeout-zero",
        lambda: _collect(digits=c.CollectDigits(max=1), initial_timeout=0),
        "collect.initial_timeout: 0 must be > 0",
        ("calling.collect/full", (*P, "initial_timeout"), 0),
        "rejects",
    ),
    _bad(
        "calling.collect/continuous-int",
        lambda: _collect(digits=c.CollectDigits(max=1), continuous=1),
        "collect.continuous: 1 must be true or false",
        ("calling.collect/full", (*P, "continuous"), 1),
        "rejects",
    ),
    _bad(
        "calling.collect/digits-dict",
        # A dict is read as a CollectDigits, with the same rules and field paths.
        lambda: _collect(digits={"max": 0}),
        "collect.digits.max: 0 must be >= 1",
    ),
    *_follow_up_cases(c.CollectStop),
    *_follow_up_cases(c.CollectStartInputTimers),
    # --- detect ---------------------------------------------------------------------
    _bad(
        "calling.detect/timeout-negative",
        lambda: c.Detect(call_id=CALL_ID, control_id="d", detect=c.DetectFax(), timeout=-1),
        "detect.timeout: -1 must be >= 0",
        ("calling.detect/full", (*P, "timeout"), -1),
        "rejects",
    ),
    _bad(
        "calling.detect/fax-tone-unknown",
        lambda: c.Detect(call_id=CALL_ID, control_id="d", detect=c.DetectFax(tone="cEd")),  # type: ignore[arg-type]
        "detect.fax.tone: 'cEd' is not one of 'CNG', 'CED', 'cng', 'ced'",
        ("calling.detect/fax-tone", (*P, "detect", "params", "tone"), "cEd"),
        "rejects",
    ),
    _bad(
        "calling.detect/digit-digits-bad",
        lambda: c.Detect(call_id=CALL_ID, control_id="d", detect=c.DetectDigit(digits="12w")),
        "detect.digit.digits: '12w' may hold only 0-9 A-D a-d * #",
        ("calling.detect/digit-any", (*P, "detect", "params", "digits"), "12w"),
        "rejects",
    ),
    _bad(
        "calling.detect/machine-words-float",
        lambda: c.Detect(
            call_id=CALL_ID,
            control_id="d",
            detect=c.DetectMachine(machine_words_threshold=2.5),  # type: ignore[arg-type]
        ),
        "detect.machine.machine_words_threshold: 2.5 must be an integer",
        ("calling.detect/full", (*P, "detect", "params", "machine_words_threshold"), 2.5),
        "rejects",
    ),
    _bad(
        "calling.detect/machine-timeout-string",
        lambda: c.Detect(
            call_id=CALL_ID,
            control_id="d",
            detect=c.DetectMachine(initial_timeout="4"),  # type: ignore[arg-type]
        ),
        "detect.machine.initial_timeout: '4' must be a number",
        ("calling.detect/full", (*P, "detect", "params", "initial_timeout"), "4"),
        "rejects",
    ),
    _bad(
        "calling.detect/detect-dict",
        lambda: c.Detect(call_id=CALL_ID, control_id="d", detect={"type": "tty"}),  # type: ignore[arg-type]
        "detect.detect.type: 'tty' is not one of 'machine', 'fax', 'digit'",
    ),
    _bad(
        "calling.detect/detect-missing",
        lambda: c.Detect(call_id=CALL_ID, control_id="d", detect=None),  # type: ignore[arg-type]
        "detect.detect: is required",
        ("calling.detect/min", (*P, "detect"), DELETE),
        "rejects",
    ),
    *_follow_up_cases(c.DetectStop),
    # --- tap ------------------------------------------------------------------------
    _bad(
        "calling.tap/rtp-private-addr",
        lambda: _tap(c.RtpDevice(addr="192.168.1.10", port=4000)),
        "tap.device.addr: '192.168.1.10' must be a public IPv4 address (192.168.0.0/16 is private",
        ("calling.tap/full", (*P, "device", "params", "addr"), "192.168.1.10"),
        "accepts",  # the schema only checks the ipv4 format
    ),
    _bad(
        "calling.tap/rtp-loopback-addr",
        lambda: _tap(c.RtpDevice(addr="127.0.0.1", port=4000)),
        "tap.device.addr: '127.0.0.1' must be a public IPv4 address (127.0.0.0/8 is loopback",
        ("calling.tap/full", (*P, "device", "params", "addr"), "127.0.0.1"),
        "accepts",
    ),
    _bad(
        "calling.tap/rtp-addr-hostname",
        lambda: _tap(c.RtpDevice(addr="tap.example.com", port=4000)),
        "tap.device.addr: 'tap.example.com' must be a dotted-quad IPv4 address",
        ("calling.tap/full", (*P, "device", "params", "addr"), "tap.example.com"),
        "rejects",
    ),
    _bad(
        "calling.tap/rtp-addr-octet-256",
        lambda: _tap(c.RtpDevice(addr="8.8.8.256", port=4000)),
        "tap.device.addr: '8.8.8.256' must be a dotted-quad IPv4 address",
        ("calling.tap/full", (*P, "device", "params", "addr"), "8.8.8.256"),
        "rejects",
    ),
    _bad(
        "calling.tap/rtp-port-0",
        lambda: _tap(c.RtpDevice(addr="8.8.8.8", port=0)),
        "tap.device.port: 0 is outside 1..65535",
        ("calling.tap/full", (*P, "device", "params", "port"), 0),
        "rejects",
    ),
    _bad(
        "calling.tap/rtp-port-65536",
        lambda: _tap(c.RtpDevice(addr="8.8.8.8", port=65536)),
        "tap.device.port: 65536 is outside 1..65535",
        ("calling.tap/full", (*P, "device", "params", "port"), 65536),
        "rejects",
    ),
    _bad(
        "calling.tap/rtp-ptime-25",
        lambda: _tap(c.RtpDevice(addr="8.8.8.8", port=1, ptime=25)),  # type: ignore[arg-type]
        "tap.device.ptime: 25 is not one of 10, 20, 30",
        ("calling.tap/full", (*P, "device", "params", "ptime"), 25),
        "rejects",
    ),
    _bad(
        "calling.tap/rtp-ptime-string",
        lambda: _tap(c.RtpDevice(addr="8.8.8.8", port=1, ptime="20")),  # type: ignore[arg-type]
        "tap.device.ptime: '20' is not one of 10, 20, 30",
        ("calling.tap/full", (*P, "device", "params", "ptime"), "20"),
        "rejects",
    ),
    _bad(
        "calling.tap/codec-unknown",
        lambda: _tap(c.RtpDevice(addr="8.8.8.8", port=1, codec="G722")),  # type: ignore[arg-type]
        "tap.device.codec: 'G722' is not one of 'PCMA', 'PCMU'",
        ("calling.tap/full", (*P, "device", "params", "codec"), "G722"),
        "rejects",
    ),
    _bad(
        "calling.tap/ws-uri-http",
        lambda: _tap(c.WsDevice(uri="https://tap.example.com")),
        "tap.device.uri: 'https://tap.example.com' must be a ws:// or wss:// URL",
        ("calling.tap/min", (*P, "device", "params", "uri"), "https://tap.example.com"),
        "rejects",
    ),
    _bad(
        "calling.tap/direction-missing",
        lambda: _tap(c.WsDevice(uri="wss://x.io"), direction=None),
        "tap.direction: is required",
        ("calling.tap/min", (*P, "tap", "params", "direction"), DELETE),
        "rejects",
    ),
    _bad(
        "calling.tap/direction-unknown",
        lambda: _tap(c.WsDevice(uri="wss://x.io"), direction="in"),
        "tap.direction: 'in' is not one of 'listen', 'speak', 'both'",
        ("calling.tap/min", (*P, "tap", "params", "direction"), "in"),
        "rejects",
    ),
    _bad(
        "calling.tap/device-dict",
        lambda: _tap({"type": "ws", "params": {"uri": "https://x.io"}}),
        "tap.device.params.uri: 'https://x.io' must be a ws:// or wss:// URL",
    ),
    *_follow_up_cases(c.TapStop),
    # --- transcribe, stream ---------------------------------------------------------
    _bad(
        "calling.transcribe/status_url-ws",
        lambda: c.Transcribe(call_id=CALL_ID, control_id="t", status_url="wss://x.io"),
        "transcribe.status_url: 'wss://x.io' must be an http:// or https:// URL",
        ("calling.transcribe/full", (*P, "status_url"), "wss://x.io"),
        "rejects",
    ),
    _bad(
        "calling.transcribe/call_id-not-uuid",
        lambda: c.Transcribe(call_id=BAD_UUID, control_id="t"),
        "transcribe.call_id: 'not-a-uuid' is not a UUID",
        ("calling.transcribe/min", ("id",), BAD_UUID),
        "rejects",
    ),
    _bad(
        "calling.transcribe/control_id-int",
        lambda: c.Transcribe(call_id=CALL_ID, control_id=1),  # type: ignore[arg-type]
        "transcribe.control_id: 1 must be a string",
        ("calling.transcribe/min", (*P, "control_id"), 1),
        "rejects",
    ),
    *_follow_up_cases(c.TranscribeStop),
    _bad(
        "calling.stream/url-ws",
        lambda: _stream(url="ws://media.example.com"),
        "stream.url: 'ws://media.example.com' must be a wss:// URL; plain ws:// is refused",
        ("calling.stream/min", (*P, "url"), "ws://media.example.com"),
        "rejects",
    ),
    _bad(
        "calling.stream/url-https",
        lambda: _stream(url="https://media.example.com"),
        "stream.url: 'https://media.example.com' must be a wss:// URL",
        ("calling.stream/min", (*P, "url"), "https://media.example.com"),
        "rejects",
    ),
    _bad(
        "calling.stream/track-unknown",
        lambda: _stream(track="inbound"),
        "stream.track: 'inbound' is not one of 'inbound_track', 'outbound_track', 'both_tracks'",
        ("calling.stream/full", (*P, "track"), "inbound"),
        "rejects",
    ),
    _bad(
        "calling.stream/status_url_method-put",
        lambda: _stream(status_url_method="PUT"),
        "stream.status_url_method: 'PUT' is not one of 'GET', 'POST'",
        ("calling.stream/full", (*P, "status_url_method"), "PUT"),
        "rejects",
    ),
    _bad(
        "calling.stream/custom_parameters-list",
        lambda: _stream(custom_parameters=["a"]),
        "stream.custom_parameters: ['a'] must be a JSON object (a dict)",
        ("calling.stream/full", (*P, "custom_parameters"), ["a"]),
        "rejects",
    ),
    _bad(
        "calling.stream/custom_parameters-nan",
        lambda: _stream(custom_parameters={"x": float("nan")}),
        "stream.custom_parameters.x: nan is not a finite number",
    ),
    _bad(
        "calling.stream/token-int",
        lambda: _stream(authorization_bearer_token=123),
        "stream.authorization_bearer_token: <redacted> must be a string",
        ("calling.stream/full", (*P, "authorization_bearer_token"), 123),
        "rejects",
    ),
    *_follow_up_cases(c.StreamStop),
    *_id_only_cases(c.Denoise),
    *_id_only_cases(c.DenoiseStop),
    # --- AI agent -------------------------------------------------------------------
    _bad(
        "calling.ai_hold/timeout-negative",
        lambda: c.AIHold(call_id=CALL_ID, timeout=-1),
        "ai_hold.timeout: -1 must be a whole number of seconds >= 0",
    ),
    _bad(
        "calling.ai_hold/timeout-float",
        lambda: c.AIHold(call_id=CALL_ID, timeout=1.5),  # type: ignore[arg-type]
        "ai_hold.timeout: 1.5 must be a whole number of seconds",
        ("calling.ai_hold/full", (*P, "timeout"), 1.5),
        "rejects",
    ),
    _bad(
        "calling.ai_hold/timeout-bool",
        lambda: c.AIHold(call_id=CALL_ID, timeout=True),
        "ai_hold.timeout: True must be a whole number of seconds",
        ("calling.ai_hold/full", (*P, "timeout"), True),
        "rejects",
    ),
    _bad(
        "calling.ai_hold/timeout-word",
        lambda: c.AIHold(call_id=CALL_ID, timeout="five"),
        "ai_hold.timeout: 'five' must be a whole number of seconds",
        ("calling.ai_hold/full", (*P, "timeout"), "five"),
        "accepts",  # the schema types it as any string
    ),
    _bad(
        "calling.ai_hold/timeout-superscript-digit",
        lambda: c.AIHold(call_id=CALL_ID, timeout="3²"),
        "ai_hold.timeout: '3²' must be a whole number of seconds",
    ),
    _bad(
        "calling.ai_hold/prompt-int",
        lambda: c.AIHold(call_id=CALL_ID, prompt=1),  # type: ignore[arg-type]
        "ai_hold.prompt: 1 must be a string",
        ("calling.ai_hold/full", (*P, "prompt"), 1),
        "rejects",
    ),
    *_id_only_cases(c.AIUnhold),
    _bad(
        "calling.ai_message/role-unknown",
        lambda: c.AIMessage(call_id=CALL_ID, role="tool"),  # type: ignore[arg-type]
        "ai_message.role: 'tool' is not one of 'system', 'user', 'assistant'",
        ("calling.ai_message/full", (*P, "role"), "tool"),
        "rejects",
    ),
    _bad(
        "calling.ai_message/global_data-list",
        lambda: c.AIMessage(call_id=CALL_ID, global_data=[1]),  # type: ignore[arg-type]
        "ai_message.global_data: [1] must be a JSON object (a dict)",
        ("calling.ai_message/full", (*P, "global_data"), [1]),
        "rejects",
    ),
    _bad(
        "calling.ai_message/global_data-int-key",
        lambda: c.AIMessage(call_id=CALL_ID, global_data={1: "x"}),  # type: ignore[dict-item]
        "ai_message.global_data: 1 has a key that is not a string",
    ),
    _bad(
        "calling.ai_message/reset-full_reset-string",
        lambda: c.AIMessage(call_id=CALL_ID, reset=c.AIReset(full_reset="true")),  # type: ignore[arg-type]
        "ai_message.reset.full_reset: 'true' must be true or false",
        ("calling.ai_message/full", (*P, "reset", "full_reset"), "true"),
        "rejects",
    ),
    _bad(
        "calling.ai_message/message_text-list",
        lambda: c.AIMessage(call_id=CALL_ID, message_text=["a"]),  # type: ignore[arg-type]
        "ai_message.message_text: ['a'] must be a string",
        ("calling.ai_message/full", (*P, "message_text"), ["a"]),
        "rejects",
    ),
    _bad(
        "calling.ai.stop/control_id-int",
        lambda: c.AIStop(call_id=CALL_ID, control_id=3),  # type: ignore[arg-type]
        "ai.stop.control_id: 3 must be a string",
        ("calling.ai.stop/full", (*P, "control_id"), 3),
        "rejects",
    ),
    _bad(
        "calling.ai.stop/call_id-not-uuid",
        lambda: c.AIStop(call_id=BAD_UUID),
        "ai.stop.call_id: 'not-a-uuid' is not a UUID",
        ("calling.ai.stop/min", ("id",), BAD_UUID),
        "rejects",
    ),
    _bad(
        "calling.ai.stop/call_id-missing",
        lambda: c.AIStop(call_id=None),  # type: ignore[arg-type]
        "ai.stop.call_id: is required",
        ("calling.ai.stop/min", ("id",), DELETE),
        "rejects",
    ),
    # --- AI sidecar -----------------------------------------------------------------
    _bad(
        "calling.ai_sidecar/lang-empty",
        lambda: _sidecar(lang=""),
        "ai_sidecar.lang: '' must not be empty",
        ("calling.ai_sidecar/min", (*P, "lang"), ""),
        "rejects",
    ),
    _bad(
        "calling.ai_sidecar/lang-missing",
        lambda: _sidecar(lang=None),
        "ai_sidecar.lang: is required",
        ("calling.ai_sidecar/min", (*P, "lang"), DELETE),
        "rejects",
    ),
    _bad(
        "calling.ai_sidecar/direction-one-leg",
        lambda: _sidecar(direction=["remote-caller"]),
        "ai_sidecar.direction: ['remote-caller'] must contain both 'remote-caller' and "
        "'local-caller'",
        ("calling.ai_sidecar/full", (*P, "direction"), ["remote-caller"]),
        "rejects",
    ),
    _bad(
        "calling.ai_sidecar/direction-unknown-leg",
        lambda: _sidecar(direction=["remote-caller", "local-caller", "agent"]),
        "ai_sidecar.direction[2]: 'agent' is not one of 'remote-caller', 'local-caller'",
        ("calling.ai_sidecar/full", (*P, "direction", 2), "agent"),
        "rejects",
    ),
    _bad(
        "calling.ai_sidecar/customer_role-unknown",
        lambda: _sidecar(customer_role="caller"),
        "ai_sidecar.customer_role: 'caller' is not one of 'remote-caller', 'local-caller'",
        ("calling.ai_sidecar/full", (*P, "customer_role"), "caller"),
        "rejects",
    ),
    _bad(
        "calling.ai_sidecar/hints-empty",
        lambda: _sidecar(hints=[]),
        "ai_sidecar.hints: [] needs at least 1 item",
        ("calling.ai_sidecar/full", (*P, "hints"), []),
        "rejects",
    ),
    _bad(
        "calling.ai_sidecar/prompt-two-keys",
        lambda: _sidecar(prompt={"text": "a", "file": "b"}),
        "ai_sidecar.prompt: {'text': 'a', 'file': 'b'} must have exactly one key",
        ("calling.ai_sidecar/prompt-text", (*P, "prompt"), {"text": "a", "file": "b"}),
        "rejects",
    ),
    _bad(
        "calling.ai_sidecar/prompt-unknown-key",
        lambda: _sidecar(prompt={"yaml": "a"}),
        "ai_sidecar.prompt.yaml: is not an allowed key here (allowed: file, pom, text)",
        ("calling.ai_sidecar/prompt-text", (*P, "prompt"), {"yaml": "a"}),
        "rejects",
    ),
    _bad(
        "calling.ai_sidecar/pom-empty",
        lambda: _sidecar(prompt={"pom": []}),
        "ai_sidecar.prompt.pom: [] needs at least 1 item",
        ("calling.ai_sidecar/full", (*P, "prompt", "pom"), []),
        "rejects",
    ),
    _bad(
        "calling.ai_sidecar/pom-no-body-no-bullets",
        lambda: _sidecar(prompt={"pom": [{"title": "T"}]}),
        "ai_sidecar.prompt.pom[0].body: is required unless bullets is given",
        ("calling.ai_sidecar/full", (*P, "prompt", "pom", 0), {"title": "T"}),
        "rejects",
    ),
    _bad(
        "calling.ai_sidecar/pom-empty-title",
        lambda: _sidecar(prompt={"pom": [{"title": "", "body": "b"}]}),
        "ai_sidecar.prompt.pom[0].title: '' must not be empty",
        ("calling.ai_sidecar/full", (*P, "prompt", "pom", 0, "title"), ""),
        "rejects",
    ),
    _bad(
        "calling.ai_sidecar/pom-empty-bullets",
        lambda: _sidecar(prompt={"pom": [{"bullets": []}]}),
        "ai_sidecar.prompt.pom[0].bullets: [] needs at least 1 item",
        ("calling.ai_sidecar/full", (*P, "prompt", "pom", 0), {"bullets": []}),
        "rejects",
    ),
    _bad(
        "calling.ai_sidecar/pom-nested-extra-key",
        lambda: _sidecar(prompt={"pom": [{"body": "b", "subsections": [{"body": "c", "x": 1}]}]}),
        "ai_sidecar.prompt.pom[0].subsections[0].x: is not an allowed key here",
        ("calling.ai_sidecar/full", (*P, "prompt", "pom", 0, "subsections", 0, "x"), 1),
        "rejects",
    ),
    _bad(
        "calling.ai_sidecar/pom-numbered-string",
        lambda: _sidecar(prompt={"pom": [{"body": "b", "numbered": "yes"}]}),
        "ai_sidecar.prompt.pom[0].numbered: 'yes' must be true or false",
        ("calling.ai_sidecar/full", (*P, "prompt", "pom", 0, "numbered"), "yes"),
        "rejects",
    ),
    _bad(
        "calling.ai_sidecar/swaig-unknown-key",
        lambda: _sidecar(swaig={"native_functions": []}),
        "ai_sidecar.swaig.native_functions: is not an allowed key here "
        "(allowed: defaults, functions, mcp_servers)",
        ("calling.ai_sidecar/full", (*P, "SWAIG", "native_functions"), []),
        "rejects",
    ),
    _bad(
        "calling.ai_sidecar/swaig-defaults-unknown-key",
        lambda: _sidecar(swaig={"defaults": {"meta_data": {}}}),
        "ai_sidecar.swaig.defaults.meta_data: is not an allowed key here",
        ("calling.ai_sidecar/full", (*P, "SWAIG", "defaults", "meta_data"), {}),
        "rejects",
    ),
    _bad(
        "calling.ai_sidecar/swaig-function-missing-name",
        lambda: _sidecar(swaig={"functions": [{"description": "d"}]}),
        "ai_sidecar.swaig.functions[0].function: is required",
        ("calling.ai_sidecar/full", (*P, "SWAIG", "functions", 0, "function"), DELETE),
        "rejects",
    ),
    _bad(
        "calling.ai_sidecar/swaig-function-unknown-key",
        lambda: _sidecar(swaig={"functions": [{"function": "f", "data_map": {}}]}),
        "ai_sidecar.swaig.functions[0].data_map: is not an allowed key here",
        ("calling.ai_sidecar/full", (*P, "SWAIG", "functions", 0, "data_map"), {}),
        "rejects",
    ),
    _bad(
        "calling.ai_sidecar/swaig-parameters-type-not-object",
        lambda: _sidecar(
            swaig={
                "functions": [{"function": "f", "parameters": {"type": "array", "properties": {}}}]
            }
        ),
        "ai_sidecar.swaig.functions[0].parameters.type: 'array' is not one of 'object'",
        (
            "calling.ai_sidecar/full",
            (*P, "SWAIG", "functions", 0, "parameters", "type"),
            "array",
        ),
        "rejects",
    ),
    _bad(
        "calling.ai_sidecar/swaig-parameters-no-properties",
        lambda: _sidecar(
            swaig={"functions": [{"function": "f", "parameters": {"type": "object"}}]}
        ),
        "ai_sidecar.swaig.functions[0].parameters.properties: is required",
        (
            "calling.ai_sidecar/full",
            (*P, "SWAIG", "functions", 0, "parameters", "properties"),
            DELETE,
        ),
        "rejects",
    ),
    _bad(
        "calling.ai_sidecar/swaig-param-unknown-type",
        lambda: _sidecar(swaig=_fn(x={"type": "date"})),
        "ai_sidecar.swaig.functions[0].parameters.properties.x.type: 'date' is not one of",
        (
            "calling.ai_sidecar/full",
            (*P, "SWAIG", "functions", 0, "parameters", "properties", "rush", "type"),
            "date",
        ),
        "rejects",
    ),
    _bad(
        "calling.ai_sidecar/swaig-param-string-int-default",
        lambda: _sidecar(swaig=_fn(x={"type": "string", "default": 1})),
        "ai_sidecar.swaig.functions[0].parameters.properties.x.default: 1 must be a string",
        (
            "calling.ai_sidecar/full",
            (*P, "SWAIG", "functions", 0, "parameters", "properties", "order_id", "default"),
            1,
        ),
        "rejects",
    ),
    _bad(
        "calling.ai_sidecar/swaig-param-boolean-with-enum",
        lambda: _sidecar(swaig=_fn(x={"type": "boolean", "enum": [True]})),
        "ai_sidecar.swaig.functions[0].parameters.properties.x.enum: is not an allowed key here",
        (
            "calling.ai_sidecar/full",
            (*P, "SWAIG", "functions", 0, "parameters", "properties", "rush", "enum"),
            [True],
        ),
        "rejects",
    ),
    _bad(
        "calling.ai_sidecar/swaig-param-array-no-items",
        lambda: _sidecar(swaig=_fn(x={"type": "array"})),
        "ai_sidecar.swaig.functions[0].parameters.properties.x.items: is required",
        (
            "calling.ai_sidecar/full",
            (*P, "SWAIG", "functions", 0, "parameters", "properties", "tags", "items"),
            DELETE,
        ),
        "rejects",
    ),
    _bad(
        "calling.ai_sidecar/swaig-param-nested-bad",
        lambda: _sidecar(
            swaig=_fn(
                x={"type": "object", "properties": {"y": {"type": "integer", "default": 1.5}}}
            )
        ),
        "ai_sidecar.swaig.functions[0].parameters.properties.x.properties.y.default: 1.5 must be "
        "an integer",
        (
            "calling.ai_sidecar/full",
            (*P, "SWAIG", "functions", 0, "parameters", "properties", "count", "default"),
            1.5,
        ),
        "rejects",
    ),
    _bad(
        "calling.ai_sidecar/swaig-mcp-missing-url",
        lambda: _sidecar(swaig={"mcp_servers": [{"headers": {}}]}),
        "ai_sidecar.swaig.mcp_servers[0].url: is required",
        ("calling.ai_sidecar/full", (*P, "SWAIG", "mcp_servers", 0, "url"), DELETE),
        "rejects",
    ),
    _bad(
        "calling.ai_sidecar/swaig-mcp-header-int",
        lambda: _sidecar(swaig={"mcp_servers": [{"url": "u", "headers": {"X": 1}}]}),
        "ai_sidecar.swaig.mcp_servers[0].headers.X: 1 must be a string",
        ("calling.ai_sidecar/full", (*P, "SWAIG", "mcp_servers", 0, "headers", "X-Key"), 1),
        "rejects",
    ),
    _bad(
        "calling.ai_sidecar/swaig-password-int-redacted",
        lambda: _sidecar(swaig={"defaults": {"web_hook_auth_password": 1234}}),
        "ai_sidecar.swaig.defaults.web_hook_auth_password: <redacted> must be a string",
        (
            "calling.ai_sidecar/full",
            (*P, "SWAIG", "defaults", "web_hook_auth_password"),
            1234,
        ),
        "rejects",
    ),
    _bad(
        "calling.ai_sidecar/params-vad_thresh-10001",
        lambda: _sidecar(params=c.SidecarParams(vad_thresh=10001)),
        "ai_sidecar.params.vad_thresh: 10001 is outside 0..10000",
        ("calling.ai_sidecar/full", (*P, "params", "vad_thresh"), 10001),
        "rejects",
    ),
    _bad(
        "calling.ai_sidecar/params-debug_level-101",
        lambda: _sidecar(params=c.SidecarParams(debug_level=101)),
        "ai_sidecar.params.debug_level: 101 is outside 0..100",
        ("calling.ai_sidecar/full", (*P, "params", "debug_level"), 101),
        "rejects",
    ),
    _bad(
        "calling.ai_sidecar/params-idle_timeout-49",
        lambda: _sidecar(params=c.SidecarParams(idle_timeout_ms=49)),
        "ai_sidecar.params.idle_timeout_ms: 49 is outside 50..5000",
        ("calling.ai_sidecar/full", (*P, "params", "idle_timeout_ms"), 49),
        "rejects",
    ),
    _bad(
        "calling.ai_sidecar/params-max_iters-21",
        lambda: _sidecar(params=c.SidecarParams(max_iters_per_tick=21)),
        "ai_sidecar.params.max_iters_per_tick: 21 is outside 1..20",
        ("calling.ai_sidecar/full", (*P, "params", "max_iters_per_tick"), 21),
        "rejects",
    ),
    _bad(
        "calling.ai_sidecar/params-history-999",
        lambda: _sidecar(params=c.SidecarParams(max_history_tokens=999)),
        "ai_sidecar.params.max_history_tokens: 999 is outside 1000..200000",
        ("calling.ai_sidecar/full", (*P, "params", "max_history_tokens"), 999),
        "rejects",
    ),
    _bad(
        "calling.ai_sidecar/params-speech_engine-case",
        lambda: _sidecar(params=c.SidecarParams(speech_engine="Deepgram")),  # type: ignore[arg-type]
        "ai_sidecar.params.speech_engine: 'Deepgram' is not one of 'deepgram', 'google'",
        ("calling.ai_sidecar/full", (*P, "params", "speech_engine"), "Deepgram"),
        "rejects",
    ),
    _bad(
        "calling.ai_sidecar/params-debug-placeholder",
        lambda: _sidecar(params=c.SidecarParams(debug="${debug}")),  # type: ignore[arg-type]
        "ai_sidecar.params.debug: '${debug}' must be true or false",
        ("calling.ai_sidecar/full", (*P, "params", "debug"), "${debug}"),
        "rejects",
    ),
    _bad(
        "calling.ai_sidecar/permissions-int",
        lambda: _sidecar(permissions=c.SidecarPermissions(swaig_allow_swml=0)),  # type: ignore[arg-type]
        "ai_sidecar.permissions.swaig_allow_swml: 0 must be true or false",
        ("calling.ai_sidecar/full", (*P, "permissions", "swaig_allow_swml"), 0),
        "rejects",
    ),
    _bad(
        "calling.ai_sidecar/action-stop-string",
        lambda: _sidecar(action="stop"),
        "ai_sidecar.action: 'stop' must be a Summarize",
        ("calling.ai_sidecar/full", (*P, "action"), "stop"),
        "rejects",
    ),
    _bad(
        "calling.ai_sidecar/url-not-uri",
        lambda: _sidecar(url="example.com/hook"),
        "ai_sidecar.url: 'example.com/hook' must be an absolute URI",
    ),
    _bad(
        "calling.ai_sidecar.poke/text-missing",
        lambda: c.AISidecarPoke(call_id=CALL_ID, text=None),  # type: ignore[arg-type]
        "ai_sidecar.poke.text: is required",
        ("calling.ai_sidecar.poke/min", (*P, "text"), DELETE),
        "rejects",
    ),
    _bad(
        "calling.ai_sidecar.poke/text-int",
        lambda: c.AISidecarPoke(call_id=CALL_ID, text=1),  # type: ignore[arg-type]
        "ai_sidecar.poke.text: 1 must be a string",
        ("calling.ai_sidecar.poke/min", (*P, "text"), 1),
        "rejects",
    ),
    _bad(
        "calling.ai_sidecar.poke/call_id-not-uuid",
        lambda: c.AISidecarPoke(call_id=BAD_UUID, text="x"),
        "ai_sidecar.poke.call_id: 'not-a-uuid' is not a UUID",
        ("calling.ai_sidecar.poke/min", ("id",), BAD_UUID),
        "rejects",
    ),
    _bad(
        "calling.ai_sidecar.ask/text-missing",
        lambda: c.AISidecarAsk(call_id=CALL_ID, text=None),  # type: ignore[arg-type]
        "ai_sidecar.ask.text: is required",
        ("calling.ai_sidecar.ask/min", (*P, "text"), DELETE),
        "rejects",
    ),
    _bad(
        "calling.ai_sidecar.ask/text-list",
        lambda: c.AISidecarAsk(call_id=CALL_ID, text=["q"]),  # type: ignore[arg-type]
        "ai_sidecar.ask.text: ['q'] must be a string",
        ("calling.ai_sidecar.ask/min", (*P, "text"), ["q"]),
        "rejects",
    ),
    _bad(
        "calling.ai_sidecar.ask/call_id-not-uuid",
        lambda: c.AISidecarAsk(call_id=BAD_UUID, text="x"),
        "ai_sidecar.ask.call_id: 'not-a-uuid' is not a UUID",
        ("calling.ai_sidecar.ask/min", ("id",), BAD_UUID),
        "rejects",
    ),
    *_id_only_cases(c.AISidecarStop),
    *_id_only_cases(c.AISidecarStatus),
    # --- live transcribe / translate ------------------------------------------------
    _bad(
        "calling.live_transcribe/action-summarize-string",
        lambda: c.LiveTranscribe(call_id=CALL_ID, action="summarize"),  # type: ignore[arg-type]
        "live_transcribe.action: 'summarize' must be a LiveTranscribeStart, a Summarize, or 'stop'",
        ("calling.live_transcribe/min", (*P, "action"), "summarize"),
        "rejects",
    ),
    _bad(
        "calling.live_transcribe/action-inject",
        lambda: c.LiveTranscribe(
            call_id=CALL_ID,
            action=c.LiveTranslateInject(message="m", direction="remote-caller"),  # type: ignore[arg-type]
        ),
        "live_transcribe.action: LiveTranslateInject(",
        (
            "calling.live_transcribe/min",
            (*P, "action"),
            {"inject": {"message": "m", "direction": "remote-caller"}},
        ),
        "rejects",
    ),
    _bad(
        "calling.live_transcribe/action-translate-start",
        lambda: c.LiveTranscribe(
            call_id=CALL_ID,
            action=c.LiveTranslateStart(from_lang="en", to_lang="es", direction=["local-caller"]),  # type: ignore[arg-type]
        ),
        "live_transcribe.action: LiveTranslateStart(",
        (
            "calling.live_transcribe/min",
            (*P, "action"),
            {"start": {"from_lang": "en", "to_lang": "es", "direction": ["local-caller"]}},
        ),
        "rejects",
    ),
    _bad(
        "calling.live_transcribe/vad_thresh-1801",
        lambda: _lts(vad_thresh=1801),
        "live_transcribe.start.vad_thresh: 1801 is outside 0..1800",
        ("calling.live_transcribe/full", (*P, "action", "start", "vad_thresh"), 1801),
        "rejects",
    ),
    _bad(
        "calling.live_transcribe/debug_level-3",
        lambda: _lts(debug_level=3),
        "live_transcribe.start.debug_level: 3 is outside 0..2",
        ("calling.live_transcribe/full", (*P, "action", "start", "debug_level"), 3),
        "rejects",
    ),
    _bad(
        "calling.live_transcribe/direction-string",
        lambda: _lts(direction="remote-caller"),
        "live_transcribe.start.direction: 'remote-caller' must be a list",
        ("calling.live_transcribe/full", (*P, "action", "start", "direction"), "remote-caller"),
        "rejects",
    ),
    _bad(
        "calling.live_transcribe/direction-empty",
        lambda: _lts(direction=[]),
        "live_transcribe.start.direction: [] needs at least 1 item",
        ("calling.live_transcribe/full", (*P, "action", "start", "direction"), []),
        "accepts",  # no minItems in the schema; an empty list transcribes nothing
    ),
    _bad(
        "calling.live_transcribe/speech_engine-case",
        lambda: _lts(speech_engine="Google"),
        "live_transcribe.start.speech_engine: 'Google' is not one of 'deepgram', 'google'",
        ("calling.live_transcribe/full", (*P, "action", "start", "speech_engine"), "Google"),
        "rejects",
    ),
    _bad(
        "calling.live_transcribe/lang-missing",
        lambda: _lts(lang=None),
        "live_transcribe.start.lang: is required",
        ("calling.live_transcribe/full", (*P, "action", "start", "lang"), DELETE),
        "rejects",
    ),
    _bad(
        "calling.live_translate/filter-unknown-preset",
        lambda: _ltl(filter_to="formal"),
        "live_translate.start.filter_to: 'formal' must be one of 'polite', 'rude'",
        ("calling.live_translate/full", (*P, "action", "start", "filter_to"), "formal"),
        "rejects",
    ),
    _bad(
        "calling.live_translate/filter-empty-prompt",
        lambda: _ltl(filter_from="prompt:"),
        "live_translate.start.filter_from: 'prompt:' must be one of",
        ("calling.live_translate/full", (*P, "action", "start", "filter_from"), "prompt:"),
        "rejects",
    ),
    _bad(
        "calling.live_translate/filter-prompt-newline-only",
        lambda: _ltl(filter_from="prompt:\n"),
        "live_translate.start.filter_from: 'prompt:\\n' must be one of",
        ("calling.live_translate/full", (*P, "action", "start", "filter_from"), "prompt:\n"),
        "rejects",
    ),
    _bad(
        "calling.live_translate/vad_thresh-negative",
        lambda: _ltl(vad_thresh=-1),
        "live_translate.start.vad_thresh: -1 is outside 0..1800",
        ("calling.live_translate/full", (*P, "action", "start", "vad_thresh"), -1),
        "rejects",
    ),
    _bad(
        "calling.live_translate/debug_level-string",
        lambda: _ltl(debug_level="1"),
        "live_translate.start.debug_level: '1' must be an integer",
        ("calling.live_translate/full", (*P, "action", "start", "debug_level"), "1"),
        "rejects",
    ),
    _bad(
        "calling.live_translate/to_lang-missing",
        lambda: _ltl(to_lang=None),
        "live_translate.start.to_lang: is required",
        ("calling.live_translate/full", (*P, "action", "start", "to_lang"), DELETE),
        "rejects",
    ),
    _bad(
        "calling.live_translate/inject-direction-list",
        lambda: c.LiveTranslate(
            call_id=CALL_ID,
            action=c.LiveTranslateInject(message="m", direction=["remote-caller"]),  # type: ignore[arg-type]
        ),
        "live_translate.inject.direction: ['remote-caller'] is not one of",
        ("calling.live_translate/inject", (*P, "action", "inject", "direction"), ["remote-caller"]),
        "rejects",
    ),
    _bad(
        "calling.live_translate/status_url-not-http",
        lambda: c.LiveTranslate(call_id=CALL_ID, action="stop", status_url="mailto:x@y.z"),
        "live_translate.status_url: 'mailto:x@y.z' must be an http:// or https:// URL",
        ("calling.live_translate/full", (*P, "status_url"), "mailto:x@y.z"),
        "rejects",
    ),
    _bad(
        "calling.live_translate/action-start-upper",
        lambda: c.LiveTranslate(call_id=CALL_ID, action="STOP"),  # type: ignore[arg-type]
        "live_translate.action: 'STOP' must be a LiveTranslateStart",
        ("calling.live_translate/min", (*P, "action"), "STOP"),
        "rejects",
    ),
    # --- fax, refer, user_event -----------------------------------------------------
    *_follow_up_cases(c.SendFaxStop),
    *_follow_up_cases(c.ReceiveFaxStop),
    _bad(
        "calling.refer/to-not-sip",
        lambda: c.Refer(call_id=CALL_ID, device=c.SipReferDevice(to="tel:+15551234")),
        "refer.device.to: 'tel:+15551234' must start with sip:",
        ("calling.refer/min", (*P, "device", "params", "to"), "tel:+15551234"),
        "rejects",
    ),
    _bad(
        "calling.refer/to-sips",
        lambda: c.Refer(call_id=CALL_ID, device=c.SipReferDevice(to="sips:bob@example.com")),
        "refer.device.to: 'sips:bob@example.com' must start with sip:",
        ("calling.refer/min", (*P, "device", "params", "to"), "sips:bob@example.com"),
        "rejects",
    ),
    _bad(
        "calling.refer/from-not-sip",
        lambda: c.Refer(
            call_id=CALL_ID, device=c.SipReferDevice(to="sip:b@x", from_="alice@example.com")
        ),
        "refer.device.from_: 'alice@example.com' must start with sip:",
        ("calling.refer/full", (*P, "device", "params", "from"), "alice@example.com"),
        "rejects",
    ),
    _bad(
        "calling.refer/password-int-redacted",
        lambda: c.Refer(call_id=CALL_ID, device=c.SipReferDevice(to="sip:b@x", password=1234)),  # type: ignore[arg-type]
        "refer.device.password: <redacted> must be a string",
        ("calling.refer/full", (*P, "device", "params", "password"), 1234),
        "rejects",
    ),
    _bad(
        "calling.refer/device-dict",
        lambda: c.Refer(call_id=CALL_ID, device={"type": "sip", "params": {"to": "tel:+1"}}),  # type: ignore[arg-type]
        "refer.device.params.to: 'tel:+1' must start with sip:",
    ),
    _bad(
        "calling.refer/status_url-not-http",
        lambda: c.Refer(
            call_id=CALL_ID, device=c.SipReferDevice(to="sip:b@x"), status_url="sip:b@x"
        ),
        "refer.status_url: 'sip:b@x' must be an http:// or https:// URL",
        ("calling.refer/full", (*P, "status_url"), "sip:b@x"),
        "rejects",
    ),
    _bad(
        "calling.user_event/event-string",
        lambda: c.UserEvent(call_id=CALL_ID, event="checkout"),  # type: ignore[arg-type]
        "user_event.event: 'checkout' must be a JSON object (a dict)",
        ("calling.user_event/min", (*P, "event"), "checkout"),
        "rejects",
    ),
    _bad(
        "calling.user_event/event-missing",
        lambda: c.UserEvent(call_id=CALL_ID, event=None),  # type: ignore[arg-type]
        "user_event.event: is required",
        ("calling.user_event/min", (*P, "event"), DELETE),
        "rejects",
    ),
    _bad(
        "calling.user_event/event-set-value",
        lambda: c.UserEvent(call_id=CALL_ID, event={"tags": {"a"}}),
        "user_event.event.tags: {'a'} is not JSON-serializable",
    ),
    _bad(
        "calling.user_event/event-too-deep",
        lambda: c.UserEvent(call_id=CALL_ID, event=_nested(100)),
        "user_event.event" + ".a" * 65 + ": '…' is nested too deeply",
    ),
]


def _nested(depth: int) -> dict[str, Any]:
    d: dict[str, Any] = {}
    for _ in range(depth):
        d = {"a": d}
    return d
