"""
:func:`validate`: a SWML document given as a dict, checked as the builder checks its steps.

Each step the builder can express is replayed through the builder's own method
(``{"play": {"url": ..., "volume": 50}}`` -> ``Steps.play(url, volume=50)``) into a
builder whose path is the step's, so the error names the same field the builder
would (``sections.main[2].play.volume``). A step of a method the builder does not
offer, or with a field it does not model, is checked for its shape only (one key,
a known SWML method): validation never refuses what the builder cannot judge.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from functools import cache
from typing import Any

from relaycall import _validate as v
from relaycall._commands._swml import SWML_METHODS
from relaycall.swml import _checks as c
from relaycall.swml._builder import SWML, Steps

#: Wire names that are not the builder's parameter names.
_RENAMED = {"from": "from_", "SWAIG": "swaig"}

#: Each modelled method"s wire keys in the published schema (tests/test_swml.py checks them).
_WIRE_KEYS: dict[str, frozenset[str]] = {
    "ai": frozenset(
        [
            "SWAIG",
            "global_data",
            "hints",
            "languages",
            "multilingual",
            "params",
            "post_prompt",
            "post_prompt_url",
            "prompt",
            "pronounce",
        ]
    ),
    "answer": frozenset(["codecs", "max_duration", "password", "username"]),
    "connect": frozenset(
        [
            "answer_on_bridge",
            "authorization_bearer_token",
            "call_state_events",
            "call_state_url",
            "codec",
            "codecs",
            "confirm",
            "confirm_timeout",
            "custom_parameters",
            "encryption",
            "from",
            "from_name",
            "headers",
            "max_duration",
            "name",
            "parallel",
            "password",
            "realtime",
            "result",
            "ringback",
            "serial",
            "serial_parallel",
            "session_timeout",
            "status_url",
            "status_url_method",
            "timeout",
            "to",
            "transfer_after_bridge",
            "username",
            "webrtc_media",
        ]
    ),
    "denoise": frozenset([]),
    "detect_machine": frozenset(
        [
            "detect_message_end",
            "detectors",
            "end_silence_timeout",
            "initial_timeout",
            "machine_ready_timeout",
            "machine_voice_threshold",
            "machine_words_threshold",
            "status_url",
            "timeout",
            "tone",
            "wait",
        ]
    ),
    "execute": frozenset(["dest", "meta", "on_return", "params", "result"]),
    "goto": frozenset(["label", "max", "when"]),
    "hangup": frozenset(["reason"]),
    "play": frozenset(
        [
            "auto_answer",
            "say_gender",
            "say_language",
            "say_voice",
            "status_url",
            "url",
            "urls",
            "volume",
        ]
    ),
    "prompt": frozenset(
        [
            "digit_timeout",
            "initial_timeout",
            "max_digits",
            "play",
            "say_gender",
            "say_language",
            "say_voice",
            "speech_end_timeout",
            "speech_engine",
            "speech_hints",
            "speech_language",
            "speech_timeout",
            "status_url",
            "terminators",
            "volume",
        ]
    ),
    "record_call": frozenset(
        [
            "beep",
            "control_id",
            "direction",
            "end_silence_timeout",
            "format",
            "initial_timeout",
            "input_sensitivity",
            "max_length",
            "status_url",
            "stereo",
            "terminators",
        ]
    ),
    "send_digits": frozenset(["digits"]),
    "send_sms": frozenset(
        ["body", "from_number", "media", "region", "status_callback", "tags", "to_number"]
    ),
    "sleep": frozenset(["duration"]),
    "stop_denoise": frozenset([]),
    "stop_record_call": frozenset(["control_id"]),
    "stop_stream": frozenset(["control_id"]),
    "stop_tap": frozenset(["control_id"]),
    "stream": frozenset(
        [
            "authorization_bearer_token",
            "codec",
            "control_id",
            "custom_parameters",
            "name",
            "status_url",
            "status_url_method",
            "track",
            "url",
        ]
    ),
    "switch": frozenset(["case", "default", "variable"]),
    "tap": frozenset(["codec", "control_id", "direction", "rtp_ptime", "status_url", "uri"]),
    "transfer": frozenset(["dest", "meta", "params"]),
    "user_event": frozenset(["event"]),
}


def validate(document: Mapping[str, Any]) -> None:
    """
    Check a SWML document (a dict, or a :class:`SWML`, which is valid as built).

    Raises :class:`relaycall.ValidationError` naming the step and field
    (``sections.main[2].play.volume``) and the rule; returns None when it passes.
    """
    if isinstance(document, SWML):
        return
    if not isinstance(document, Mapping):
        v.fail("swml", document, "must be a SWML document (a dict with 'sections')")
    for key in document:
        if key not in ("version", "sections"):
            v.fail_rule(str(key), "is not allowed in a SWML document (only version, sections)")
    if "version" in document and document["version"] != "1.0.0":
        v.fail("version", document["version"], "must be '1.0.0'")
    sections = document.get("sections")
    if not isinstance(sections, Mapping):
        v.fail("sections", sections, "must be an object of named sections")
    if "main" not in sections:
        v.fail_rule("sections.main", "is required")
    for name, steps in sections.items():
        if not isinstance(name, str):
            v.fail("sections", name, "has a section name that is not a string")
        c.name("sections", name)
        _read_steps(f"sections.{name}", steps)


def _read_steps(path: str, steps: Any) -> Steps:
    """A list of wire steps replayed into a Steps whose errors are reported under *path*."""
    if not isinstance(steps, list | tuple):
        v.fail(path, steps, "must be a list of steps")
    out = Steps()
    out._path = path
    for step in steps:
        where = f"{path}[{len(out._steps)}]"
        if not isinstance(step, Mapping) or len(step) != 1:
            v.fail(where, step, "must be an object with exactly one key, the method name")
        ((method, body),) = step.items()
        if method not in SWML_METHODS:
            v.fail(where, method, "is not a SWML method")
        reader = _READERS.get(method, _shape_only)
        if not reader(out, method, body):
            v.json_object_check(where, step)
            out._steps.append({method: body})
    return out


def _shape_only(steps: Steps, method: str, body: Any) -> bool:
    return False


@cache
def _parameters(method: str) -> tuple[frozenset[str], tuple[str, ...]]:
    """The builder method's keyword parameters, and those of them it requires."""
    params = [
        p
        for p in inspect.signature(getattr(Steps, method)).parameters.values()
        if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and p.name != "self"
    ]
    names = frozenset(p.name for p in params)
    return names, tuple(p.name for p in params if p.default is inspect.Parameter.empty)


def _kwargs(
    steps: Steps, method: str, body: Any, positional: tuple[str, ...] = ()
) -> dict[str, Any] | None:
    """
    The wire body as the builder method's keyword arguments (less the *positional*
    keys, which the caller passes), or None if it holds a field the builder does not model.
    """
    where = f"{steps._path}[{len(steps._steps)}].{method}"
    if not isinstance(body, Mapping):
        v.fail(where, body, "must be an object")
    allowed = _WIRE_KEYS[method]
    for key, value in body.items():
        if key not in allowed:
            listing = ", ".join(sorted(allowed)) or "none"
            v.fail_rule(f"{where}.{key}", f"is not a field of {method} (allowed: {listing})")
        if value is None:  # the builder reads None as "not given"; the schema takes no null
            v.fail(f"{where}.{key}", value, "must not be null (leave the field out)")
    kw: dict[str, Any] = {_RENAMED.get(k) or k: x for k, x in body.items() if k not in positional}
    names, required = _parameters(method)
    if not set(kw) <= names:
        return None
    wire = {y: x for x, y in _RENAMED.items()}
    for name in required:
        if name not in kw:
            v.fail_rule(f"{where}.{wire.get(name, name)}", "is required")
    return kw


def _nested(steps: Steps, method: str, key: str, value: Any) -> Steps:
    return _read_steps(f"{steps._path}[{len(steps._steps)}].{method}.{key}", value)


def _plain_method(steps: Steps, method: str, body: Any) -> bool:
    kw = _kwargs(steps, method, body)
    if kw is None:
        return False
    if method == "execute" and "on_return" in kw:
        kw["on_return"] = _nested(steps, method, "on_return", kw["on_return"])
    getattr(steps, method)(**kw)
    return True


def _sleep(steps: Steps, method: str, body: Any) -> bool:
    if isinstance(body, Mapping):
        return _plain_method(steps, method, body)
    where = f"{steps._path}[{len(steps._steps)}].sleep"
    c.integer(-1)(where, body)  # the schema's short form: the duration alone
    steps._steps.append({"sleep": body})
    return True


def _play(steps: Steps, method: str, body: Any) -> bool:
    kw = _kwargs(steps, method, body, ("url", "urls"))
    if kw is None:
        return False
    where = f"{steps._path}[{len(steps._steps)}].play"
    if ("url" in body) == ("urls" in body):
        v.fail_rule(f"{where}.url", "give exactly one of url or urls")
    if "url" in body:
        urls = [body["url"]]
    else:
        urls = body["urls"]
        c.strings(c.play_url, min_items=1)(f"{where}.urls", urls)
    steps.play(*urls, **kw)
    return True


def _prompt(steps: Steps, method: str, body: Any) -> bool:
    kw = _kwargs(steps, method, body, ("play",))
    if kw is None:
        return False
    where = f"{steps._path}[{len(steps._steps)}].prompt"
    play = body.get("play")
    if play is None:
        v.fail_rule(f"{where}.play", "is required")
    if isinstance(play, list | tuple):
        c.strings(c.play_url, min_items=1)(f"{where}.play", play)
        steps.prompt(*play, **kw)
    else:
        c.play_url(f"{where}.play", play)
        steps.prompt(play, **kw)
    return True


def _connect(steps: Steps, method: str, body: Any) -> bool:
    kw = _kwargs(steps, method, body)
    if kw is None:
        return False
    headers = kw.pop("headers", None)
    where = f"{steps._path}[{len(steps._steps)}].connect"
    # The builder takes a number as a destination ("+1555..." for {"to": ...}); a
    # document holds the objects themselves.
    for key in ("serial", "parallel"):
        _destination_objects(f"{where}.{key}", kw.get(key))
    groups = kw.get("serial_parallel")
    if isinstance(groups, list | tuple):
        for i, group in enumerate(groups):
            _destination_objects(f"{where}.serial_parallel[{i}]", group)
    if headers is not None:
        v.seq_check(c.closed({"name": c.name, "value": c.text}, ("name", "value")))(
            f"{where}.headers", headers
        )
    steps.connect(**kw)
    return True


def _destination_objects(path: str, items: Any) -> None:
    if isinstance(items, list | tuple):
        for i, item in enumerate(items):
            if not isinstance(item, Mapping):
                v.fail(f"{path}[{i}]", item, 'must be a destination object ({"to": ...})')


def _set(steps: Steps, method: str, body: Any) -> bool:
    where = f"{steps._path}[{len(steps._steps)}].set"
    if not isinstance(body, Mapping):
        v.fail(where, body, "must be an object of variable -> value")
    c.json_object(where, body)
    steps._steps.append({"set": body})
    return True


def _unset(steps: Steps, method: str, body: Any) -> bool:
    if isinstance(body, list | tuple) and not body:
        steps._steps.append({"unset": []})
    elif isinstance(body, list | tuple):
        steps.unset(*body)
    else:
        steps.unset(body)
    return True


def _label(steps: Steps, method: str, body: Any) -> bool:
    steps.label(body)
    return True


def _return(steps: Steps, method: str, body: Any) -> bool:
    steps.return_(body)
    return True


def _cond(steps: Steps, method: str, body: Any) -> bool:
    where = f"{steps._path}[{len(steps._steps)}].cond"
    if not isinstance(body, list | tuple):
        v.fail(where, body, "must be a list of {when, then[, else]} or {else} branches")
    for i, branch in enumerate(body):
        at = f"{where}[{i}]"
        if not isinstance(branch, Mapping):
            v.fail(at, branch, "must be an object")
        if "when" in branch:
            v.closed_mapping(
                at,
                branch,
                {"when": c.name, "then": _steps_at, "else": _steps_at},
                ("when", "then"),
            )
        else:
            v.closed_mapping(at, branch, {"else": _steps_at}, ("else",))
    steps._steps.append({"cond": body})
    return True


def _steps_at(path: str, value: Any) -> None:
    _read_steps(path, value)


def _switch(steps: Steps, method: str, body: Any) -> bool:
    kw = _kwargs(steps, method, body)
    if kw is None:
        return False
    case = kw.get("case")
    if isinstance(case, Mapping):
        kw["case"] = {
            k: _nested(steps, method, f"case.{k}", x) if isinstance(k, str) else x
            for k, x in case.items()
        }
    if "default" in kw:
        kw["default"] = _nested(steps, method, "default", kw["default"])
    steps.switch(**kw)
    return True


def _ai(steps: Steps, method: str, body: Any) -> bool:
    kw = _kwargs(steps, method, body)
    if kw is None:
        return False
    where = f"{steps._path}[{len(steps._steps)}].ai"
    prompt = kw.pop("prompt", None)
    post = kw.pop("post_prompt", None)
    if prompt is None:
        v.fail_rule(f"{where}.prompt", "is required")
    for key, obj in (("prompt", prompt), ("post_prompt", post)):
        if obj is not None and not isinstance(obj, Mapping):
            v.fail(f"{where}.{key}", obj, "must be an object")
        if obj is not None and _AI_UNMODELLED & set(obj):
            return False  # a POM prompt, contexts, penalties: not modelled here
    rest = {k: x for k, x in prompt.items() if k != "text"}
    for key in rest:
        if key not in _AI_PROMPT:
            v.fail_rule(f"{where}.prompt.{key}", "is not an allowed key here")
    if post is not None:
        for key in post:
            if key in _AI_PROMPT:
                return False  # a tuned post-prompt: not modelled here
            if key != "text":
                v.fail_rule(f"{where}.post_prompt.{key}", "is not an allowed key here")
        kw["post_prompt"] = post.get("text")
        if kw["post_prompt"] is None:
            v.fail_rule(f"{where}.post_prompt.text", "is required")
    text = prompt.get("text")
    if text is None:
        v.fail_rule(f"{where}.prompt.text", "is required")
    steps.ai(text, **rest, **kw)
    return True


_AI_PROMPT = frozenset({"temperature", "top_p", "confidence", "max_tokens"})
_AI_UNMODELLED = frozenset({"pom", "contexts", "presence_penalty", "frequency_penalty"})


_READERS: dict[str, Callable[[Steps, str, Any], bool]] = {
    "ai": _ai,
    "answer": _plain_method,
    "cond": _cond,
    "connect": _connect,
    "denoise": _plain_method,
    "detect_machine": _plain_method,
    "execute": _plain_method,
    "goto": _plain_method,
    "hangup": _plain_method,
    "label": _label,
    "play": _play,
    "prompt": _prompt,
    "record_call": _plain_method,
    "return": _return,
    "send_digits": _plain_method,
    "send_sms": _plain_method,
    "set": _set,
    "sleep": _sleep,
    "stop_denoise": _plain_method,
    "stop_record_call": _plain_method,
    "stop_stream": _plain_method,
    "stop_tap": _plain_method,
    "stream": _plain_method,
    "switch": _switch,
    "tap": _plain_method,
    "transfer": _plain_method,
    "unset": _unset,
    "user_event": _plain_method,
}
