"""
The SWML builder: :class:`SWML` (a document), :class:`Section` (one of its
sections) and :class:`Steps` (a list of steps nested in a ``cond``, ``switch``
or ``execute``).

Every method checks its arguments when it is called and raises
:class:`relaycall.ValidationError` naming the step and field
(``sections.main[2].play.volume``) and the rule; a builder therefore only ever
holds steps the published SWML schema for calling accepts.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Literal, TypeVar

from relaycall import _validate as v
from relaycall._commands._swml import SWMLDocument
from relaycall._validate import Check
from relaycall.swml import _checks as c

_S = TypeVar("_S", bound="Steps")
CallStatus = Literal["created", "ringing", "answered", "ended"]
_CALL_STATES = ("created", "ringing", "answered", "ended")
_SWAIG_KEYS = (
    "defaults",
    "functions",
    "includes",
    "internal_fillers",
    "mcp_servers",
    "native_functions",
)


def _plain(value: Any) -> Any:
    """A JSON copy of *value*: dicts and lists, nested :class:`Steps` as their step lists."""
    if isinstance(value, SWMLDocument):
        return value.to_dict()  # a document where JSON is expected: its wire form
    if isinstance(value, Steps):
        return value._list()
    if isinstance(value, Mapping):
        return {k: _plain(x) for k, x in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(x) for x in value]
    return value


def _steps_check(path: str, value: Any) -> None:
    if isinstance(value, SWML) or not isinstance(value, Steps):
        v.fail(
            path,
            value,
            "must be a relaycall.swml.Steps (for example Steps().play(say='Bye').hangup())",
        )


def _cases_check(path: str, value: Any) -> None:
    if not isinstance(value, Mapping):
        v.fail(path, value, "must be a dict of case value -> Steps")
    for k, steps in value.items():
        if not isinstance(k, str):
            v.fail(path, k, "has a case value that is not a string")
        v.text_check(path, k)
        _steps_check(f"{path}.{k}", steps)


def _headers_check(path: str, value: Any) -> None:
    v.str_map_check()(path, value)


_DESTINATION = c.closed(
    {
        "to": c.name,
        "from": c.name,
        "from_name": c.text,
        "headers": v.seq_check(c.closed({"name": c.name, "value": c.text}, ("name", "value"))),
        "codecs": c.name,
        "webrtc_media": c.boolean,
        "session_timeout": c.integer(1),
        "username": c.text,
        "password": c.text,
        "timeout": c.integer(0),
        "call_state_events": v.seq_check(v.enum_check(_CALL_STATES)),
        "call_state_url": c.http_url,
        "encryption": c.enum("mandatory", "optional", "forbidden"),
    },
    ("to",),
)


def _destination_check(path: str, value: Any) -> None:
    if isinstance(value, str):
        c.name(path, value)
        return
    _DESTINATION(path, value)


def _destination(value: str | Mapping[str, Any]) -> Any:
    return {"to": value} if isinstance(value, str) else value


def _cond_branches_check(path: str, value: Any) -> None:
    for i, branch in enumerate(value):
        where = f"{path}[{i}]"
        if not isinstance(branch, tuple) or len(branch) != 2:
            v.fail(where, branch, "must be a (when, Steps) pair")
        c.name(f"{where}.when", branch[0])
        _steps_check(f"{where}.then", branch[1])


class Steps:
    """
    A list of SWML steps, built by chained calls: ``Steps().play(say="Hi").hangup()``.

    Give one to :meth:`cond`, :meth:`switch` or :meth:`execute` where SWML nests
    steps. A :class:`Section` and a :class:`SWML` document have the same methods.
    """

    __slots__ = ("_path", "_steps")

    def __init__(self) -> None:
        self._path = "steps"
        self._steps: list[dict[str, Any]] = []

    def __repr__(self) -> str:
        methods = ", ".join(next(iter(s)) for s in self._steps)
        return f"<{type(self).__name__} {self._path}: [{methods}]>"

    def __len__(self) -> int:
        return len(self._steps)

    def _list(self) -> list[dict[str, Any]]:
        """The steps as wire JSON (a copy)."""
        return copy.deepcopy(self._steps)

    def to_list(self) -> list[dict[str, Any]]:
        """The steps as wire JSON: a fresh list of one-key dicts."""
        return self._list()

    def _add(
        self: _S,
        method: str,
        fields: Mapping[str, tuple[Any, Check]],
        *,
        required: tuple[str, ...] = (),
    ) -> _S:
        where = f"{self._path}[{len(self._steps)}].{method}"
        body: dict[str, Any] = {}
        for key, (value, check) in fields.items():
            if value is None:
                if key in required:
                    v.fail_rule(f"{where}.{key}", "is required")
                continue
            check(f"{where}.{key}", value)
            body[key] = _plain(value)
        self._steps.append({method: body})
        return self

    def _one_of(self, method: str, given: Mapping[str, Any]) -> None:
        named = [k for k, x in given.items() if x is not None]
        if len(named) != 1:
            names = " or ".join(given)
            where = f"{self._path}[{len(self._steps)}].{method}"
            v.fail_rule(
                f"{where}.{named[1] if named else next(iter(given))}",
                f"give exactly one of {names}" + (", not several" if named else ""),
            )

    # --- the call ---------------------------------------------------------------------

    def answer(
        self: _S,
        *,
        max_duration: int | str | None = None,
        codecs: str | None = None,
        username: str | None = None,
        password: str | None = None,
    ) -> _S:
        """Answer the call (``answer``); *max_duration* in seconds caps its length."""
        return self._add(
            "answer",
            {
                "max_duration": (max_duration, c.integer(1)),
                "codecs": (codecs, c.name),
                "username": (username, c.text),
                "password": (password, c.text),
            },
        )

    def hangup(self: _S, reason: Literal["hangup", "busy", "decline"] | None = None) -> _S:
        """End the call (``hangup``), with the SIP *reason* the caller sees."""
        return self._add("hangup", {"reason": (reason, c.enum("hangup", "busy", "decline"))})

    def sleep(self: _S, duration: int | str) -> _S:
        """Wait *duration* milliseconds (``sleep``); ``-1`` waits until the call ends."""
        return self._add("sleep", {"duration": (duration, c.integer(-1))}, required=("duration",))

    def transfer(
        self: _S,
        dest: str,
        *,
        params: Mapping[str, Any] | None = None,
        meta: Mapping[str, Any] | None = None,
    ) -> _S:
        """
        Hand the call to *dest* (``transfer``): a section of this document, or an
        http(s) URL that returns SWML. *params* reach it as ``${params.*}``.
        """
        return self._add(
            "transfer",
            {
                "dest": (dest, c.name),
                "params": (params, c.json_object),
                "meta": (meta, c.json_object),
            },
            required=("dest",),
        )

    def connect(
        self: _S,
        to: str | None = None,
        *,
        serial: Sequence[str | Mapping[str, Any]] | None = None,
        parallel: Sequence[str | Mapping[str, Any]] | None = None,
        serial_parallel: Sequence[Sequence[str | Mapping[str, Any]]] | None = None,
        from_: str | None = None,
        from_name: str | None = None,
        timeout: int | str | None = None,
        max_duration: int | str | None = None,
        answer_on_bridge: bool | str | None = None,
        ringback: Sequence[str] | None = None,
        headers: Mapping[str, str] | None = None,
        codecs: str | None = None,
        username: str | None = None,
        password: str | None = None,
        session_timeout: int | str | None = None,
        encryption: Literal["mandatory", "optional", "forbidden"] | None = None,
        call_state_url: str | None = None,
        call_state_events: Sequence[CallStatus] | None = None,
        status_url: str | None = None,
    ) -> _S:
        """
        Dial out and bridge the call (``connect``): one destination *to*, or
        *serial* (one after another), *parallel* (all at once) or
        *serial_parallel* (groups tried in turn, each group at once).

        A destination is an address string (``+15557650000``, ``sip:alice@example.com``)
        or a dict in the wire shape (``{"to": ..., "timeout": 20, "from": ...}``).
        *headers* are SIP headers (name -> value); *username*/*password*, the SIP
        credentials, go with a single *to* only.
        """
        self._one_of(
            "connect",
            {"to": to, "serial": serial, "parallel": parallel, "serial_parallel": serial_parallel},
        )
        where = f"{self._path}[{len(self._steps)}].connect"
        if to is None and (username is not None or password is not None):
            v.fail_rule(f"{where}.username", "goes with a single 'to' destination only")
        group = v.seq_check(_destination_check, min_items=1, what="a list of destinations")
        return self._add(
            "connect",
            {
                "to": (to, c.name),
                "serial": (_map(serial, _destination), group),
                "parallel": (_map(parallel, _destination), group),
                "serial_parallel": (
                    None
                    if serial_parallel is None
                    else [_map(g, _destination) for g in _seq(serial_parallel)],
                    v.seq_check(group, min_items=1, what="a list of destination groups"),
                ),
                "from": (from_, c.name),
                "from_name": (from_name, c.text),
                "timeout": (timeout, c.integer(0)),
                "max_duration": (max_duration, c.integer(1)),
                "answer_on_bridge": (answer_on_bridge, c.boolean),
                "ringback": (ringback, c.strings(c.play_url)),
                "headers": (
                    _headers(headers),
                    v.seq_check(c.closed({"name": c.name, "value": c.text}, ("name", "value"))),
                ),
                "codecs": (codecs, c.name),
                "username": (username, c.text),
                "password": (password, c.text),
                "session_timeout": (session_timeout, c.integer(1)),
                "encryption": (encryption, c.enum("mandatory", "optional", "forbidden")),
                "call_state_url": (call_state_url, c.http_url),
                "call_state_events": (call_state_events, v.seq_check(v.enum_check(_CALL_STATES))),
                "status_url": (status_url, c.http_url),
            },
        )

    def send_digits(self: _S, digits: str) -> _S:
        """Send DTMF *digits* on the call (``send_digits``); ``w``/``W`` pause."""
        return self._add(
            "send_digits",
            {
                "digits": (
                    digits,
                    c.pattern(r"^[0-9A-D*#wW]+$", "may hold only 0-9 A-D * # w W"),
                )
            },
            required=("digits",),
        )

    def send_sms(
        self: _S,
        *,
        to_number: str,
        from_number: str,
        body: str | None = None,
        media: Sequence[str] | None = None,
        region: str | None = None,
        tags: Sequence[str] | None = None,
        status_callback: str | None = None,
    ) -> _S:
        """Send a text message (``send_sms``): a *body*, *media* URLs, or both."""
        if body is None and media is None:
            where = f"{self._path}[{len(self._steps)}].send_sms"
            v.fail_rule(f"{where}.body", "give body, media, or both")
        return self._add(
            "send_sms",
            {
                "to_number": (to_number, c.e164),
                "from_number": (from_number, c.e164),
                "body": (body, c.text),
                "media": (media, c.strings(c.http_url, min_items=1)),
                "region": (region, c.name),
                "tags": (tags, c.strings(c.name)),
                "status_callback": (status_callback, c.http_url),
            },
            required=("to_number", "from_number"),
        )

    def user_event(self: _S, event: Mapping[str, Any]) -> _S:
        """Send *event* (any JSON object) to the call's subscribers (``user_event``)."""
        return self._add("user_event", {"event": (event, c.json_object)}, required=("event",))

    # --- media ------------------------------------------------------------------------

    def play(
        self: _S,
        *urls: str,
        say: str | None = None,
        volume: float | str | None = None,
        say_voice: str | None = None,
        say_language: str | None = None,
        say_gender: str | None = None,
        auto_answer: bool | str | None = None,
        status_url: str | None = None,
    ) -> _S:
        """
        Play audio (``play``): each of *urls* in turn, then *say* as speech.

        A URL is an http(s) audio file or one of SWML's forms: ``say:<text>``,
        ``silence:<seconds>``, ``ring:<country>`` (see :func:`say`, :func:`silence`,
        :func:`ring`). *volume* is in dB, -40..40.
        """
        items = [*urls, *(() if say is None else (_say_url(self, "play", say),))]
        if not items:
            where = f"{self._path}[{len(self._steps)}].play"
            v.fail_rule(f"{where}.url", "give at least one URL or say=")
        one = items[0] if len(items) == 1 else None
        return self._add(
            "play",
            {
                "url": (one, c.play_url),
                "urls": (None if one is not None else items, c.strings(c.play_url)),
                "volume": (volume, c.number(-40, 40)),
                "say_voice": (say_voice, c.name),
                "say_language": (say_language, c.name),
                "say_gender": (say_gender, c.name),
                "auto_answer": (auto_answer, c.boolean),
                "status_url": (status_url, c.http_url),
            },
        )

    def prompt(
        self: _S,
        *play: str,
        say: str | None = None,
        volume: float | None = None,
        say_voice: str | None = None,
        say_language: str | None = None,
        say_gender: str | None = None,
        max_digits: int | str | None = None,
        terminators: str | None = None,
        digit_timeout: float | str | None = None,
        initial_timeout: float | str | None = None,
        speech_timeout: float | str | None = None,
        speech_end_timeout: float | str | None = None,
        speech_language: str | None = None,
        speech_hints: Sequence[str] | None = None,
        speech_engine: str | None = None,
        status_url: str | None = None,
    ) -> _S:
        """
        Play *play* (and *say*) and collect digits or speech (``prompt``).

        The result is in ``${prompt_result}``, ``${prompt_value}`` and friends
        for the steps that follow. Timeouts are in seconds.
        """
        items = [*play, *(() if say is None else (_say_url(self, "prompt", say),))]
        if not items:
            where = f"{self._path}[{len(self._steps)}].prompt"
            v.fail_rule(f"{where}.play", "give at least one URL or say=")
        return self._add(
            "prompt",
            {
                "play": (items[0] if len(items) == 1 else items, _prompt_play),
                "volume": (volume, c.plain_number(-40, 40)),
                "say_voice": (say_voice, c.name),
                "say_language": (say_language, c.name),
                "say_gender": (say_gender, c.name),
                "max_digits": (max_digits, c.integer(1)),
                "terminators": (terminators, c.terminators),
                "digit_timeout": (digit_timeout, c.number(0)),
                "initial_timeout": (initial_timeout, c.number(0)),
                "speech_timeout": (speech_timeout, c.number(0)),
                "speech_end_timeout": (speech_end_timeout, c.number(0)),
                "speech_language": (speech_language, c.name),
                "speech_hints": (speech_hints, c.strings(c.name)),
                "speech_engine": (speech_engine, c.name),
                "status_url": (status_url, c.http_url),
            },
        )

    def record_call(
        self: _S,
        *,
        control_id: str | None = None,
        format: Literal["wav", "mp3", "mp4"] | None = None,
        stereo: bool | str | None = None,
        direction: Literal["speak", "listen", "both"] | None = None,
        terminators: str | None = None,
        beep: bool | str | None = None,
        input_sensitivity: float | str | None = None,
        initial_timeout: float | str | None = None,
        end_silence_timeout: float | str | None = None,
        max_length: float | str | None = None,
        status_url: str | None = None,
    ) -> _S:
        """Record the call in the background (``record_call``) until :meth:`stop_record_call`."""
        return self._add(
            "record_call",
            {
                "control_id": (control_id, c.name),
                "stereo": (stereo, c.boolean),
                "format": (format, c.enum("wav", "mp3", "mp4")),
                "direction": (direction, c.enum("speak", "listen", "both")),
                "terminators": (terminators, c.terminators),
                "beep": (beep, c.boolean),
                "input_sensitivity": (input_sensitivity, c.number(0, 100)),
                "initial_timeout": (initial_timeout, c.number(0)),
                "end_silence_timeout": (end_silence_timeout, c.number(0)),
                "max_length": (max_length, c.number(0)),
                "status_url": (status_url, c.http_url),
            },
        )

    def stop_record_call(self: _S, control_id: str | None = None) -> _S:
        """Stop a background recording (``stop_record_call``); the last one without *control_id*."""
        return self._add("stop_record_call", {"control_id": (control_id, c.name)})

    def denoise(self: _S) -> _S:
        """Start noise reduction on the call's audio (``denoise``)."""
        return self._add("denoise", {})

    def stop_denoise(self: _S) -> _S:
        """Stop noise reduction (``stop_denoise``)."""
        return self._add("stop_denoise", {})

    def tap(
        self: _S,
        uri: str,
        *,
        control_id: str | None = None,
        direction: Literal["speak", "listen", "both"] | None = None,
        codec: Literal["PCMU", "PCMA"] | None = None,
        rtp_ptime: int | str | None = None,
        status_url: str | None = None,
    ) -> _S:
        """Copy the call's audio to *uri* (``tap``): ``rtp://host:port`` or ``ws(s)://...``."""
        return self._add(
            "tap",
            {
                "uri": (uri, c.scheme_url("rtp", "ws", "wss")),
                "control_id": (control_id, c.name),
                "direction": (direction, c.enum("speak", "listen", "both")),
                "codec": (codec, c.enum("PCMU", "PCMA")),
                "rtp_ptime": (rtp_ptime, c.integer(1)),
                "status_url": (status_url, c.http_url),
            },
            required=("uri",),
        )

    def stop_tap(self: _S, control_id: str | None = None) -> _S:
        """Stop a tap (``stop_tap``); the last one without *control_id*."""
        return self._add("stop_tap", {"control_id": (control_id, c.name)})

    def stream(
        self: _S,
        url: str,
        *,
        control_id: str | None = None,
        name: str | None = None,
        track: Literal["inbound_track", "outbound_track", "both_tracks"] | None = None,
        codec: str | None = None,
        status_url: str | None = None,
        status_url_method: Literal["GET", "POST"] | None = None,
        authorization_bearer_token: str | None = None,
        custom_parameters: Mapping[str, str] | None = None,
    ) -> _S:
        """Stream the call's audio to the WebSocket *url* (``stream``)."""
        return self._add(
            "stream",
            {
                "url": (url, c.scheme_url("ws", "wss")),
                "control_id": (control_id, c.name),
                "name": (name, c.name),
                "track": (track, c.enum("inbound_track", "outbound_track", "both_tracks")),
                "codec": (codec, c.name),
                "status_url": (status_url, c.http_url),
                "status_url_method": (status_url_method, c.enum("GET", "POST")),
                "authorization_bearer_token": (authorization_bearer_token, c.name),
                "custom_parameters": (custom_parameters, c.str_map),
            },
            required=("url",),
        )

    def stop_stream(self: _S, control_id: str | None = None) -> _S:
        """Stop a stream (``stop_stream``); the last one without *control_id*."""
        return self._add("stop_stream", {"control_id": (control_id, c.name)})

    def detect_machine(
        self: _S,
        *,
        detectors: str | None = None,
        wait: bool | str | None = None,
        detect_message_end: bool | str | None = None,
        timeout: float | str | None = None,
        initial_timeout: float | str | None = None,
        end_silence_timeout: float | str | None = None,
        machine_ready_timeout: float | str | None = None,
        machine_voice_threshold: float | str | None = None,
        machine_words_threshold: int | str | None = None,
        tone: Literal["CED", "CNG"] | None = None,
        status_url: str | None = None,
    ) -> _S:
        """Detect an answering machine or a fax (``detect_machine``); *detectors*: ``"amd,fax"``."""
        return self._add(
            "detect_machine",
            {
                "detect_message_end": (detect_message_end, c.boolean),
                "detectors": (
                    detectors,
                    c.pattern(r"^(amd|fax)(,(amd|fax))*$", "must be 'amd', 'fax' or 'amd,fax'"),
                ),
                "end_silence_timeout": (end_silence_timeout, c.number(0)),
                "initial_timeout": (initial_timeout, c.number(0)),
                "machine_ready_timeout": (machine_ready_timeout, c.number(0)),
                "machine_voice_threshold": (machine_voice_threshold, c.number(0)),
                "machine_words_threshold": (machine_words_threshold, c.integer(0)),
                "status_url": (status_url, c.http_url),
                "timeout": (timeout, c.number(0)),
                "tone": (tone, c.enum("CED", "CNG")),
                "wait": (wait, c.boolean),
            },
        )

    # --- flow and variables -------------------------------------------------------------

    def set(self: _S, values: Mapping[str, Any] | None = None, /, **kw: Any) -> _S:
        """Set script variables (``set``): ``set(greeting="hi")`` or ``set({"a.b": 1})``."""
        merged = {**(values if isinstance(values, Mapping) else {}), **kw}
        where = f"{self._path}[{len(self._steps)}].set"
        if values is not None and not isinstance(values, Mapping):
            v.fail(where, values, "must be a dict of variable -> value")
        if not merged:
            v.fail_rule(where, "give at least one variable")
        for key in merged:
            c.name(where, key)
        c.json_object(where, merged)
        self._steps.append({"set": _plain(merged)})
        return self

    def unset(self: _S, *names: str) -> _S:
        """Remove script variables (``unset``)."""
        where = f"{self._path}[{len(self._steps)}].unset"
        if not names:
            v.fail_rule(where, "give at least one variable name")
        c.strings(c.name)(where, names)
        self._steps.append({"unset": names[0] if len(names) == 1 else list(names)})
        return self

    def label(self: _S, name: str) -> _S:
        """Mark this point for :meth:`goto` (``label``)."""
        where = f"{self._path}[{len(self._steps)}].label"
        c.name(where, name)
        self._steps.append({"label": name})
        return self

    def goto(self: _S, label: str, *, when: str | None = None, max: int | str | None = None) -> _S:
        """Jump to *label* (``goto``) if the expression *when* holds, up to *max* (1..100) times."""
        return self._add(
            "goto",
            {"label": (label, c.name), "when": (when, c.name), "max": (max, c.integer(1, 100))},
            required=("label",),
        )

    def execute(
        self: _S,
        dest: str,
        *,
        params: Mapping[str, Any] | None = None,
        meta: Mapping[str, Any] | None = None,
        on_return: Steps | None = None,
    ) -> _S:
        """
        Run *dest* (a section of this document or a SWML URL) as a subroutine (``execute``);
        *on_return* runs after it returns.
        """
        return self._add(
            "execute",
            {
                "dest": (dest, c.name),
                "params": (params, c.json_object),
                "meta": (meta, c.json_object),
                "on_return": (on_return, _steps_check),
            },
            required=("dest",),
        )

    def return_(self: _S, value: Any = None) -> _S:
        """Return *value* (any JSON) from an :meth:`execute` or end the script (``return``)."""
        where = f"{self._path}[{len(self._steps)}].return"
        if value is not None:
            v._json_value(where, value, 0)
        self._steps.append({"return": {} if value is None else _plain(value)})
        return self

    def cond(self: _S, *branches: tuple[str, Steps], else_: Steps | None = None) -> _S:
        """
        Run the steps of the first branch whose *when* expression holds (``cond``),
        else *else_*: ``cond(("vars.n > 3", Steps().hangup()), else_=Steps().goto("top"))``.
        """
        where = f"{self._path}[{len(self._steps)}].cond"
        if not branches and else_ is None:
            v.fail_rule(where, "give at least one (when, Steps) branch")
        _cond_branches_check(where, branches)
        if else_ is not None:
            _steps_check(f"{where}[{len(branches)}].else", else_)
        items: list[dict[str, Any]] = [{"when": w, "then": s._list()} for w, s in branches]
        if else_ is not None:
            items.append({"else": else_._list()})
        self._steps.append({"cond": items})
        return self

    def switch(
        self: _S,
        variable: str,
        case: Mapping[str, Steps],
        *,
        default: Steps | None = None,
    ) -> _S:
        """Run the steps of the *case* matching *variable*'s value, else *default* (``switch``)."""
        return self._add(
            "switch",
            {
                "variable": (variable, c.name),
                "case": (case, _cases_check),
                "default": (default, _steps_check),
            },
            required=("variable", "case"),
        )

    # --- AI -----------------------------------------------------------------------------

    def ai(
        self: _S,
        prompt: str,
        *,
        temperature: float | str | None = None,
        top_p: float | str | None = None,
        confidence: float | str | None = None,
        max_tokens: int | None = None,
        post_prompt: str | None = None,
        post_prompt_url: str | None = None,
        hints: Sequence[str] | None = None,
        global_data: Mapping[str, Any] | None = None,
        params: Mapping[str, Any] | None = None,
        swaig: Mapping[str, Any] | None = None,
        languages: Sequence[Mapping[str, Any]] | None = None,
    ) -> _S:
        """
        Hand the call to an AI agent (``ai``) whose system prompt is *prompt*.

        *post_prompt* asks for a summary, POSTed to *post_prompt_url*. The SWML
        ``ai`` method has far more: *params* (the ``ai.params`` object), *swaig*
        (``SWAIG``: functions the agent may call) and *languages* go out as given,
        checked as JSON (and *swaig* by its keys) but not field by field.
        """
        prompt_obj = {
            "text": prompt,
            "temperature": temperature,
            "top_p": top_p,
            "confidence": confidence,
            "max_tokens": max_tokens,
        }
        where = f"{self._path}[{len(self._steps)}].ai"
        c.closed(
            {
                "text": c.text,
                "temperature": c.number(0, 1.5),
                "top_p": c.number(0, 1),
                "confidence": c.number(0, 1),
                "max_tokens": v.integer_check(0, 4096),
            },
            ("text",),
        )(f"{where}.prompt", {k: x for k, x in prompt_obj.items() if x is not None})
        return self._add(
            "ai",
            {
                "prompt": ({k: x for k, x in prompt_obj.items() if x is not None}, _any),
                "post_prompt": (None if post_prompt is None else {"text": post_prompt}, _ai_text),
                "post_prompt_url": (post_prompt_url, c.http_url),
                "hints": (hints, c.strings(c.name)),
                "global_data": (global_data, c.json_object),
                "params": (params, c.json_object),
                "SWAIG": (swaig, _swaig_check),
                "languages": (languages, v.seq_check(_language_check)),
            },
        )


def _any(path: str, value: Any) -> None:
    """Already checked."""


def _ai_text(path: str, value: Any) -> None:
    c.text(f"{path}.text", value["text"])


def _swaig_check(path: str, value: Any) -> None:
    c.json_object(path, value)
    for key in value:
        if key not in _SWAIG_KEYS:
            v.fail_rule(f"{path}.{key}", f"is not a SWAIG key (allowed: {', '.join(_SWAIG_KEYS)})")


def _language_check(path: str, value: Any) -> None:
    c.json_object(path, value)
    for key in ("name", "code", "voice"):
        if key not in value:
            v.fail_rule(f"{path}.{key}", "is required")


def _prompt_play(path: str, value: Any) -> None:
    if isinstance(value, list):
        c.strings(c.play_url)(path, value)
    else:
        c.play_url(path, value)


def _say_url(steps: Steps, method: str, text: str) -> str:
    where = f"{steps._path}[{len(steps._steps)}].{method}.say"
    if not isinstance(text, str):
        v.fail(where, text, "must be a string")
    return say(text, _path=where)


def _map(items: Any, f: Any) -> Any:
    if items is None or isinstance(items, str) or not isinstance(items, Sequence):
        return items
    return [f(x) for x in items]


def _seq(items: Any) -> Any:
    return items if isinstance(items, list | tuple) else [items]


def _headers(headers: Any) -> Any:
    if headers is None:
        return None
    if not isinstance(headers, Mapping):
        return headers  # the check names it
    return [{"name": k, "value": x} for k, x in headers.items()]


# --- play URL forms -----------------------------------------------------------------------


def say(text: str, *, _path: str = "say") -> str:
    """The play URL that speaks *text* (``say:<text>``); one line of text."""
    url = f"say:{text}" if isinstance(text, str) else text
    c.play_url(_path, url)
    return url


def silence(seconds: float) -> str:
    """The play URL of *seconds* of silence (``silence:<seconds>``)."""
    v.number_check(0)("silence", seconds)
    return f"silence:{_decimal(seconds)}"


def ring(country: str, seconds: float | None = None) -> str:
    """The play URL of *country*'s ringback tone (``ring:us``), for *seconds* if given."""
    v.string_check(pattern=r"^[a-zA-Z]{2}$", rule="must be a two-letter country code")(
        "ring", country
    )
    if seconds is None:
        return f"ring:{country}"
    v.number_check(0)("ring.seconds", seconds)
    return f"ring:{_decimal(seconds)}:{country}"


def _decimal(x: float) -> str:
    """*x* in plain decimal digits (the play URL forms allow no exponent)."""
    if isinstance(x, int):
        return str(x)
    text = repr(x)
    if "e" in text or "E" in text:
        text = format(x, "f").rstrip("0").rstrip(".") or "0"
    return text


def var(name: str) -> str:
    """A SWML variable reference, ``${name}``: ``var("call.from")``."""
    c.name("var", name)
    ref = f"${{{name}}}"
    if not c.is_var(ref):
        v.fail("var", name, "must be one line")
    return ref


# --- sections and the document ----------------------------------------------------------


class Section(Steps):
    """One named section of a :class:`SWML` document: ``doc.section("sales").play(...)``."""

    __slots__ = ("name",)

    def __init__(self, name: str, steps: list[dict[str, Any]] | None = None) -> None:
        super().__init__()
        self.name = name
        self._path = f"sections.{name}"
        if steps is not None:
            self._steps = steps


class SWML(SWMLDocument, Steps):
    """
    A SWML document: its methods add steps to ``main``; :meth:`section` adds others.

    ::

        doc = SWML().answer().play(say="Hello").hangup()
        doc.to_dict()  # {"version": "1.0.0", "sections": {"main": [...]}}

    A document is a read-only ``Mapping`` of its wire form, so it goes wherever
    relaycall takes SWML (``relay.dial(swml=doc)``, ``call.update(swml=doc)``,
    ``call.transfer(doc)``, an incoming-call handler's return value).
    """

    __slots__ = ("_sections", "_version")

    def __init__(self, version: Literal["1.0.0"] = "1.0.0") -> None:
        Steps.__init__(self)
        if version != "1.0.0":
            v.fail("version", version, "must be '1.0.0'")
        self._version = version
        main = Section("main")
        self._sections: dict[str, Section] = {"main": main}
        self._path = main._path
        self._steps = main._steps

    def section(self, name: str) -> Section:
        """The section *name*, created empty on first use (``"main"`` is this document's own)."""
        c.name("sections", name)
        found = self._sections.get(name)
        if found is None:
            found = self._sections[name] = Section(name)
        return found

    @property
    def sections(self) -> Mapping[str, Section]:
        """The sections by name, ``main`` first."""
        return dict(self._sections)

    def to_dict(self) -> dict[str, Any]:
        """The wire document (a fresh copy): ``{"version": "1.0.0", "sections": {...}}``."""
        return {
            "version": self._version,
            "sections": {name: s._list() for name, s in self._sections.items()},
        }

    def __repr__(self) -> str:
        shown = ", ".join(f"{n}: {len(s)} steps" for n, s in self._sections.items())
        return f"<SWML {shown}>"

    # The Mapping view of the wire document.
    def __getitem__(self, key: str) -> Any:
        return self.to_dict()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(("version", "sections"))

    def __len__(self) -> int:
        return 2
