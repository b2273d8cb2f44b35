"""
Long-running operations on a call and their follow-ups: collect, detect, tap,
transcribe, stream, denoise, and stopping a fax.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import attrs

from relaycall import _reading as r
from relaycall import _validate as v
from relaycall._commands._base import (
    Command,
    FollowUp,
    Model,
    call_id_field,
    command,
    model,
    new_control_id_field,
    opt,
    req,
    typed_params,
)
from relaycall._idempotency import Idempotency
from relaycall._models import CallLeg, FabricDeviceLeg

#: What relaycall.commands re-exports from here.
__all__ = [
    "Collect",
    "CollectDigits",
    "CollectSpeech",
    "CollectStartInputTimers",
    "CollectStop",
    "Denoise",
    "DenoiseStop",
    "Detect",
    "DetectDigit",
    "DetectFax",
    "DetectMachine",
    "DetectStop",
    "ReceiveFaxStop",
    "RtpDevice",
    "SendFaxStop",
    "Stream",
    "StreamStop",
    "Tap",
    "TapStop",
    "Transcribe",
    "TranscribeStop",
    "WsDevice",
]

Leg = CallLeg | FabricDeviceLeg

TAP_DIRECTIONS = ("listen", "speak", "both")
TAP_CODECS = ("PCMA", "PCMU", "pcma", "pcmu", "OPUS", "opus")
TAP_PTIMES = (10, 20, 30, 40, 50, 60, 70, 80, 90, 100, 110, 120)
COLLECT_SPEECH_ENGINES = ("Google", "Google.V2", "Deepgram")
DETECT_FAX_TONES = ("CNG", "CED", "cng", "ced")
STREAM_TRACKS = ("inbound_track", "outbound_track", "both_tracks")

# \Z, not $: "$" also matches before a trailing newline, which the server would refuse.
_DTMF = r"\A[0-9A-Da-d*#]*\Z"
_DTMF_RULE = "may hold only 0-9 A-D a-d * #"

TapCodec = Literal["PCMA", "PCMU", "pcma", "pcmu", "OPUS", "opus"]
TapPtime = Literal[10, 20, 30, 40, 50, 60, 70, 80, 90, 100, 110, 120]

# The API refuses RTP taps to non-public addresses, but its schema only checks
# the ipv4 format. Listed explicitly (IANA special-purpose registry) rather than
# via IPv4Address.is_global, whose answer differs between Python releases.
_NON_PUBLIC_V4 = tuple(
    (ipaddress.IPv4Network(net), kind)
    for net, kind in (
        ("0.0.0.0/8", "'this network'"),
        ("10.0.0.0/8", "private"),
        ("100.64.0.0/10", "shared (carrier-grade NAT)"),
        ("127.0.0.0/8", "loopback"),
        ("169.254.0.0/16", "link-local"),
        ("172.16.0.0/12", "private"),
        ("192.0.0.0/24", "IETF protocol assignment"),
        ("192.0.2.0/24", "documentation"),
        ("192.88.99.0/24", "reserved (6to4 relay anycast)"),
        ("192.168.0.0/16", "private"),
        ("198.18.0.0/15", "benchmarking"),
        ("198.51.100.0/24", "documentation"),
        ("203.0.113.0/24", "documentation"),
        ("224.0.0.0/4", "multicast"),
        ("240.0.0.0/4", "reserved"),
    )
)
_DOTTED_QUAD = re.compile(r"\d{1,3}(?:\.\d{1,3}){3}", re.ASCII)


def _public_ipv4_check(path: str, value: Any) -> None:
    if not isinstance(value, str):
        v.fail(path, value, "must be a string")
    try:
        # The regex keeps out forms ipaddress would also refuse, but states the rule plainly.
        addr = ipaddress.IPv4Address(value) if _DOTTED_QUAD.fullmatch(value) else None
    except ValueError:
        addr = None
    if addr is None:
        v.fail(path, value, "must be a dotted-quad IPv4 address (a.b.c.d)")
    for net, kind in _NON_PUBLIC_V4:
        if addr in net:
            v.fail(
                path,
                value,
                f"must be a public IPv4 address ({net} is {kind}; the server refuses it)",
            )


_ws_uri_check = v.scheme_url_check(("ws", "wss"))
_wss_url_check = v.scheme_url_check(("wss",))


def _stream_url_check(path: str, value: Any) -> None:
    # calling.stream is stricter than the tap ws device: say so instead of a bare scheme rule.
    if isinstance(value, str) and value[:5].lower() == "ws://":
        v.fail(path, value, "must be a wss:// URL; plain ws:// is refused for streams")
    _wss_url_check(path, value)


def _optional_params(kind: str, params: dict[str, Any]) -> dict[str, Any]:
    # Detect configs take params optionally; send the bare type when nothing is set.
    return typed_params(kind, params) if params else {"type": kind}


# --- collect --------------------------------------------------------------------------


@model("collect.digits")
@attrs.frozen(kw_only=True)
class CollectDigits(Model):
    """Collect DTMF: up to *max* digits, ending early on a terminator or after *digit_timeout*."""

    max: int = req(v.integer(1))
    terminators: str | None = opt(v.string(pattern=_DTMF, rule=_DTMF_RULE))
    digit_timeout: float | None = opt(v.number(0, lo_open=True))


@model("collect.speech")
@attrs.frozen(kw_only=True)
class CollectSpeech(Model):
    """
    Collect speech. *engine* is case-sensitive here (``"Deepgram"``, not ``"deepgram"``).

    *language* is a BCP-47 tag, or ``engine:tag`` such as ``"Deepgram:en-US"``.
    """

    end_silence_timeout: float | None = opt(v.number(0, lo_open=True))
    speech_timeout: float | None = opt(v.number(0, lo_open=True))
    language: str | None = opt(v.string())
    hints: Sequence[str] | None = opt(v.check(v.seq_check(v.string_check())))
    model: str | None = opt(v.string())
    engine: Literal["Google", "Google.V2", "Deepgram"] | None = opt(
        v.one_of(*COLLECT_SPEECH_ENGINES)
    )


@command("calling.collect", label="collect", idempotency=Idempotency.START)
@attrs.frozen(kw_only=True)
class Collect(Command[Leg]):
    """
    Collect digits, speech or both from the caller (``calling.collect``).

    Give *digits*, *speech* or both. The API's default ``start_input_timers``
    is false, which leaves the initial-timeout clock stopped until
    :class:`CollectStartInputTimers` is sent; pass ``start_input_timers=True``
    to start it at once. Results arrive at *status_url*.

    Example::

        Collect(call_id=call_id, digits=CollectDigits(max=4, terminators="#"))
    """

    call_id: str = call_id_field()
    control_id: str = new_control_id_field()
    digits: CollectDigits | None = opt(
        v.check(v.model_check(CollectDigits, "a CollectDigits")), nested=r.model(CollectDigits)
    )
    speech: CollectSpeech | None = opt(
        v.check(v.model_check(CollectSpeech, "a CollectSpeech")), nested=r.model(CollectSpeech)
    )
    initial_timeout: float | None = opt(v.number(0, lo_open=True))
    continuous: bool | None = opt(v.boolean())
    partial_results: bool | None = opt(v.boolean())
    send_start_of_input: bool | None = opt(v.boolean())
    start_input_timers: bool | None = opt(v.boolean())
    status_url: str | None = opt(v.http_url())

    def __attrs_post_init__(self) -> None:
        if self.digits is None and self.speech is None:
            v.fail_rule("collect.digits", "give digits, speech, or both")


@command("calling.collect.stop", label="collect.stop", idempotency=Idempotency.SAFE)
class CollectStop(FollowUp[Leg]):
    """Stop the collect named by *control_id* (``calling.collect.stop``)."""

    __slots__ = ()


@command(
    "calling.collect.start_input_timers",
    label="collect.start_input_timers",
    idempotency=Idempotency.SAFE,
)
class CollectStartInputTimers(FollowUp[Leg]):
    """Start the input timers of a collect begun with ``start_input_timers`` false."""

    __slots__ = ()


# --- detect ---------------------------------------------------------------------------


@model("detect.machine")
@attrs.frozen(kw_only=True)
class DetectMachine(Model):
    """
    Detect an answering machine: ``{"type": "machine", "params": {...}}``.

    Timeouts and thresholds are in seconds, except *machine_words_threshold*
    (a word count). Every field has a server default; ``DetectMachine()`` is valid.
    """

    initial_timeout: float | None = opt(v.number())
    end_silence_timeout: float | None = opt(v.number())
    machine_ready_timeout: float | None = opt(v.number())
    machine_voice_threshold: float | None = opt(v.number())
    machine_words_threshold: int | None = opt(v.integer())
    detect_interruptions: bool | None = opt(v.boolean())
    detect_message_end: bool | None = opt(v.boolean())

    @classmethod
    def _shape(cls, params: dict[str, Any]) -> dict[str, Any]:
        return _optional_params("machine", params)


@model("detect.fax")
@attrs.frozen(kw_only=True)
class DetectFax(Model):
    """Detect a fax tone: ``{"type": "fax", ...}``; leave *tone* unset to match either."""

    tone: Literal["CNG", "CED", "cng", "ced"] | None = opt(v.one_of(*DETECT_FAX_TONES))

    @classmethod
    def _shape(cls, params: dict[str, Any]) -> dict[str, Any]:
        return _optional_params("fax", params)


@model("detect.digit")
@attrs.frozen(kw_only=True)
class DetectDigit(Model):
    """Detect DTMF: ``{"type": "digit", ...}``; ``digits=""`` matches any digit."""

    digits: str | None = opt(v.string(pattern=_DTMF, rule=_DTMF_RULE))

    @classmethod
    def _shape(cls, params: dict[str, Any]) -> dict[str, Any]:
        return _optional_params("digit", params)


@command("calling.detect", label="detect", idempotency=Idempotency.START)
@attrs.frozen(kw_only=True)
class Detect(Command[Leg]):
    """
    Detect a machine, a fax tone or DTMF on the call (``calling.detect``).

    *timeout* bounds how long detection runs (server default 30 s).

    Example::

        Detect(call_id=call_id, detect=DetectMachine(detect_message_end=True), timeout=45)
    """

    call_id: str = call_id_field()
    control_id: str = new_control_id_field()
    detect: DetectMachine | DetectFax | DetectDigit = req(
        v.check(
            v.model_check(
                (DetectMachine, DetectFax, DetectDigit), "a DetectMachine, DetectFax or DetectDigit"
            )
        ),
        nested=r.typed(
            {"machine": DetectMachine, "fax": DetectFax, "digit": DetectDigit},
            params_required=False,
        ),
    )
    timeout: float | None = opt(v.number(0))
    status_url: str | None = opt(v.http_url())


@command("calling.detect.stop", label="detect.stop", idempotency=Idempotency.SAFE)
class DetectStop(FollowUp[Leg]):
    """Stop the detection named by *control_id* (``calling.detect.stop``)."""

    __slots__ = ()


# --- tap ------------------------------------------------------------------------------


@model("tap.device")
@attrs.frozen(kw_only=True)
class RtpDevice(Model):
    """
    Send tapped audio as RTP: ``{"type": "rtp", "params": {...}}``.

    *addr* must be a public IPv4 address; the server refuses private and
    reserved ranges. *codec* and *ptime* default to the call's negotiated ones.
    """

    addr: str = req(v.check(_public_ipv4_check))
    port: int = req(v.integer(1, 65535))
    codec: TapCodec | None = opt(v.one_of(*TAP_CODECS))
    ptime: TapPtime | None = opt(v.one_of(*TAP_PTIMES))

    @classmethod
    def _shape(cls, params: dict[str, Any]) -> dict[str, Any]:
        return typed_params("rtp", params)


@model("tap.device")
@attrs.frozen(kw_only=True)
class WsDevice(Model):
    """Send tapped audio over a WebSocket: ``{"type": "ws", "params": {...}}``."""

    uri: str = req(v.check(_ws_uri_check))
    codec: TapCodec | None = opt(v.one_of(*TAP_CODECS))

    @classmethod
    def _shape(cls, params: dict[str, Any]) -> dict[str, Any]:
        return typed_params("ws", params)


def _tap_from_wire(value: Any, _: Any) -> str:
    """``tap: {"type": "audio", "params": {"direction"}}``, what :meth:`Tap._shape` writes."""
    r.closed(value, ("type", "params"), ("type", "params"), "with type and params")
    if value["type"] != "audio":
        raise r.WireError("type", f"{value['type']!r} is not 'audio' (the only tap type)")
    params = value["params"]
    try:
        r.closed(params, ("direction",), ("direction",), "with direction")
    except r.WireError as exc:
        raise exc.within("params") from None
    direction: str = params["direction"]
    return direction


@command("calling.tap", label="tap", idempotency=Idempotency.START)
@attrs.frozen(kw_only=True)
class Tap(Command[Leg]):
    """
    Copy the call's audio to an RTP or WebSocket endpoint (``calling.tap``).

    Example::

        Tap(call_id=call_id, direction="both", device=WsDevice(uri="wss://tap.example.com"))
    """

    call_id: str = call_id_field()
    control_id: str = new_control_id_field()
    direction: Literal["listen", "speak", "both"] = req(
        v.one_of(*TAP_DIRECTIONS),
        wire_read=r.WireRead(_tap_from_wire, key="tap", path="tap.params.direction"),
    )
    device: RtpDevice | WsDevice = req(
        v.check(v.model_check((RtpDevice, WsDevice), "an RtpDevice or WsDevice")),
        nested=r.typed({"rtp": RtpDevice, "ws": WsDevice}),
    )
    status_url: str | None = opt(v.http_url())

    @classmethod
    def _shape(cls, params: dict[str, Any]) -> dict[str, Any]:
        # Audio is the only tap type, so the wire's {"type", "params"} wrapper
        # carries one real setting; Python keeps it as a flat field.
        params["tap"] = typed_params("audio", {"direction": params.pop("direction")})
        return params


@command("calling.tap.stop", label="tap.stop", idempotency=Idempotency.SAFE)
class TapStop(FollowUp[Leg]):
    """Stop the tap named by *control_id* (``calling.tap.stop``)."""

    __slots__ = ()


# --- transcribe -----------------------------------------------------------------------


@command("calling.transcribe", label="transcribe", idempotency=Idempotency.START)
@attrs.frozen(kw_only=True)
class Transcribe(Command[Leg]):
    """
    Transcribe the whole call in the background (``calling.transcribe``).

    The transcript is posted to *status_url* when the call ends. A call has at
    most one transcription; starting a second is refused with 409.
    """

    call_id: str = call_id_field()
    control_id: str = new_control_id_field()
    status_url: str | None = opt(v.http_url())


@command("calling.transcribe.stop", label="transcribe.stop", idempotency=Idempotency.SAFE)
class TranscribeStop(FollowUp[Leg]):
    """Stop the transcription named by *control_id* (``calling.transcribe.stop``)."""

    __slots__ = ()


# --- stream ---------------------------------------------------------------------------


@command("calling.stream", label="stream", idempotency=Idempotency.START)
@attrs.frozen(kw_only=True)
class Stream(Command[Leg]):
    """
    Stream the call's audio to a secure WebSocket (``calling.stream``).

    *url* must be ``wss://``. *authorization_bearer_token* is sent as
    ``Authorization: Bearer <token>`` on the handshake and hidden from repr.

    Example::

        Stream(call_id=call_id, url="wss://media.example.com/in", track="both_tracks")
    """

    call_id: str = call_id_field()
    control_id: str = new_control_id_field()
    url: str = req(v.check(_stream_url_check))
    name: str | None = opt(v.string())
    codec: str | None = opt(v.string())
    track: Literal["inbound_track", "outbound_track", "both_tracks"] | None = opt(
        v.one_of(*STREAM_TRACKS)
    )
    authorization_bearer_token: str | None = opt(v.string(secret=True), secret=True)
    custom_parameters: Mapping[str, Any] | None = opt(v.check(v.json_object_check), raw=True)
    status_url: str | None = opt(v.http_url())
    status_url_method: Literal["GET", "POST"] | None = opt(v.one_of("GET", "POST"))


@command("calling.stream.stop", label="stream.stop", idempotency=Idempotency.SAFE)
class StreamStop(FollowUp[Leg]):
    """Stop the stream named by *control_id* (``calling.stream.stop``)."""

    __slots__ = ()


# --- denoise and fax ------------------------------------------------------------------


@command("calling.denoise", label="denoise", idempotency=Idempotency.SAFE)
@attrs.frozen(kw_only=True)
class Denoise(Command[Leg]):
    """Turn on the call's noise-reduction filter (``calling.denoise``); a call has one."""

    call_id: str = call_id_field()


@command("calling.denoise.stop", label="denoise.stop", idempotency=Idempotency.SAFE)
@attrs.frozen(kw_only=True)
class DenoiseStop(Command[Leg]):
    """Turn off the call's noise-reduction filter (``calling.denoise.stop``)."""

    call_id: str = call_id_field()


@command("calling.send_fax.stop", label="send_fax.stop", idempotency=Idempotency.SAFE)
class SendFaxStop(FollowUp[Leg]):
    """Stop sending a fax; *control_id* names a send started by SWML ``send_fax``."""

    __slots__ = ()


@command("calling.receive_fax.stop", label="receive_fax.stop", idempotency=Idempotency.SAFE)
class ReceiveFaxStop(FollowUp[Leg]):
    """Stop receiving a fax; *control_id* names a receive started by SWML ``receive_fax``."""

    __slots__ = ()
