"""
AI commands: agent hold, unhold, message and stop; the AI sidecar; live transcription
and live translation.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import attrs

from relaycall import _reading as r
from relaycall import _validate as v
from relaycall._commands._base import (
    Command,
    Model,
    call_id_field,
    command,
    model,
    opt,
    req,
)
from relaycall._idempotency import Idempotency
from relaycall._models import (
    CallLeg,
    FabricDeviceLeg,
    SidecarAskReply,
    SidecarStatus,
    parse_sidecar_ask,
    parse_sidecar_status,
)

#: What relaycall.commands re-exports from here.
__all__ = [
    "AIHold",
    "AIMessage",
    "AIReset",
    "AISidecar",
    "AISidecarAsk",
    "AISidecarPoke",
    "AISidecarStatus",
    "AISidecarStop",
    "AIStop",
    "AIUnhold",
    "LiveTranscribe",
    "LiveTranscribeStart",
    "LiveTranslate",
    "LiveTranslateInject",
    "LiveTranslateStart",
    "SidecarParams",
    "SidecarPermissions",
    "Summarize",
]

Leg = CallLeg | FabricDeviceLeg
TranscribeDirection = Literal["remote-caller", "local-caller"]
SpeechEngine = Literal["deepgram", "google"]

TRANSCRIBE_DIRECTIONS = ("remote-caller", "local-caller")
SPEECH_ENGINES = ("deepgram", "google")
AI_MESSAGE_ROLES = ("system", "user", "assistant")
TRANSLATION_FILTER_PRESETS = ("polite", "rude", "professional", "shakespeare", "gen-z")
#: Suggested by the reference for ``model`` and ``summary_model``; any string is accepted.
SIDECAR_MODELS = ("gpt-4o-mini", "gpt-4.1-mini", "gpt-4.1-nano")

# Recursive user data (POM sections, SWAIG parameter schemas) is walked by hand;
# a cap keeps a cyclic or absurdly deep dict a ValidationError, not a RecursionError.
_MAX_DEPTH = 32

_str = v.string_check()
_bool = v.bool_check
_str_list = v.seq_check(_str)
_direction_check = v.enum_check(TRANSCRIBE_DIRECTIONS)
_directions_check = v.seq_check(_direction_check, min_items=1)


def _too_deep(path: str, depth: int) -> None:
    if depth > _MAX_DEPTH:
        v.fail(path, "…", f"is nested more than {_MAX_DEPTH} levels deep")


# --- calling.ai_hold -----------------------------------------------------------------


def _seconds_to_str(value: int | str | None) -> Any:
    # The wire wants a string ("300", reference §11.8) but an int is the natural
    # Python spelling; anything else is left alone for the validator to reject
    # with the value the caller actually gave.
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        try:
            return str(value)
        except ValueError:  # past Python's int-to-str digit limit: let the validator refuse it
            return value
    return value


def _hold_timeout_check(path: str, value: Any) -> None:
    # ASCII digits only: str.isdigit() would also pass "²" and Arabic-Indic digits.
    if not isinstance(value, str) or re.fullmatch(r"[0-9]+", value) is None:
        v.fail(path, value, "must be a whole number of seconds >= 0 (an int, or a str of digits)")


@command("calling.ai_hold", label="ai_hold", idempotency=Idempotency.SAFE)
@attrs.frozen(kw_only=True)
class AIHold(Command[Leg]):
    """
    Put the AI agent on the call on hold (``calling.ai_hold``).

    *timeout* is how many seconds the hold may last; give an int or a string of
    digits, it is always sent as a string (``"300"``), which is what the API
    expects. *prompt* is spoken by the AI before the hold music starts.
    """

    call_id: str = call_id_field()
    # Not opt(): the converter normalises an int to the wire's string form.
    timeout: str | None = attrs.field(
        default=None,
        converter=_seconds_to_str,
        validator=v.check(_hold_timeout_check),
        metadata={"wire_read": r.WireRead(r.json_string)},
    )
    prompt: str | None = opt(v.string())


@command("calling.ai_unhold", label="ai_unhold", idempotency=Idempotency.SAFE)
@attrs.frozen(kw_only=True)
class AIUnhold(Command[Leg]):
    """Take the AI agent off hold (``calling.ai_unhold``)."""

    call_id: str = call_id_field()


# --- calling.ai_message --------------------------------------------------------------


@model("ai_message.reset")
@attrs.frozen(kw_only=True)
class AIReset(Model):
    """The ``reset`` of an AI message: clear the conversation, optionally with new prompts."""

    full_reset: bool | None = opt(v.boolean())
    user_prompt: str | None = opt(v.string())
    system_prompt: str | None = opt(v.string())


@command("calling.ai_message", label="ai_message", idempotency=Idempotency.UNSAFE)
@attrs.frozen(kw_only=True)
class AIMessage(Command[Leg]):
    """
    Inject a message into the AI agent's conversation (``calling.ai_message``).

    *role* ``system`` steers the agent unheard, ``user`` acts as if the caller
    said it, ``assistant`` records it as said by the AI. *global_data* (any JSON
    object) is merged into the session's global data. Every field is optional;
    the API expects *message_text* unless *reset* is given but does not enforce it.
    """

    call_id: str = call_id_field()
    role: Literal["system", "user", "assistant"] | None = opt(v.one_of(*AI_MESSAGE_ROLES))
    message_text: str | None = opt(v.string())
    reset: AIReset | None = opt(
        v.check(v.model_check(AIReset, "an AIReset")), nested=r.model(AIReset)
    )
    global_data: Mapping[str, Any] | None = opt(v.check(v.json_object_check), raw=True)


@command("calling.ai.stop", label="ai.stop", idempotency=Idempotency.SAFE)
@attrs.frozen(kw_only=True)
class AIStop(Command[Leg]):
    """
    Stop the AI agent running on the call (``calling.ai.stop``, with a dot).

    *control_id* is accepted and ignored by the server.
    """

    call_id: str = call_id_field()
    control_id: str | None = opt(v.string())


# --- shared action: summarize ----------------------------------------------------------


@model("summarize")
@attrs.frozen(kw_only=True)
class Summarize(Model):
    """
    Ask for a summary: ``{"summarize": {"webhook"?, "prompt"?}}``.

    The action of a sidecar summary, live transcription or live translation.
    """

    webhook: str | None = opt(v.string())
    prompt: str | None = opt(v.string())

    @classmethod
    def _shape(cls, params: dict[str, Any]) -> dict[str, Any]:
        return {"summarize": params}


# --- calling.ai_sidecar: prompt, SWAIG ---------------------------------------------------


def _pom_section_check(path: str, value: Any, depth: int = 0) -> None:
    _too_deep(path, depth)

    def subsections(p: str, val: Any) -> None:
        v.seq_check(lambda ip, iv: _pom_section_check(ip, iv, depth + 1), min_items=1)(p, val)

    v.closed_mapping(
        path,
        value,
        {
            "title": v.string_check(min_len=1),
            "subsections": subsections,
            "numbered": _bool,
            "numberedBullets": _bool,
            "body": _str,
            "bullets": v.seq_check(_str, min_items=1),
        },
    )
    if "body" not in value and "bullets" not in value:
        v.fail_rule(f"{path}.body", "is required unless bullets is given")


_pom_check = v.seq_check(_pom_section_check, min_items=1)
_PROMPT_FORMS: Mapping[str, v.Check] = {"text": _str, "file": _str, "pom": _pom_check}


def _sidecar_prompt_check(path: str, value: Any) -> None:
    if isinstance(value, str):
        _str(path, value)
        return
    if not isinstance(value, Mapping):
        v.fail(path, value, "must be a string or a dict with one key: text, file or pom")
    if len(value) != 1:
        v.fail(path, value, "must have exactly one key: text, file or pom")
    v.closed_mapping(path, value, _PROMPT_FORMS)


_PARAM_TYPES = ("string", "integer", "number", "boolean", "array", "object")
# Values inside the caller's own tool schemas, not API integers: no int32 limit.
_int = v.integer_check(int32=False)
_num = v.number_check()


def _checked(path: str, value: Any) -> None:
    """A key the caller has already checked."""


def _param_property_check(path: str, value: Any, depth: int = 0) -> None:
    """One SWAIG function parameter: a small JSON Schema, closed per its ``type``."""
    _too_deep(path, depth)
    if not isinstance(value, Mapping):
        v.fail(path, value, "must be a parameter schema (a dict with a type)")
    if "type" not in value:
        v.fail_rule(f"{path}.type", "is required")
    kind = value["type"]
    v.enum_check(_PARAM_TYPES)(f"{path}.type", kind)

    def nested(p: str, val: Any) -> None:
        _param_property_check(p, val, depth + 1)

    def nested_map(p: str, val: Any) -> None:
        _param_map_check(p, val, depth + 1)

    fields: dict[str, v.Check] = {"type": _checked, "description": _str}
    if kind == "string":
        fields |= {"enum": _str_list, "default": _str}
    elif kind == "integer":
        fields |= {"enum": v.seq_check(_int), "default": _int}
    elif kind == "number":
        fields |= {"enum": v.seq_check(_num), "default": _num}
    elif kind == "boolean":
        fields |= {"default": _bool}
    elif kind == "array":
        fields |= {"items": nested}
    else:  # object
        fields |= {"properties": nested_map, "required": _str_list}
    v.closed_mapping(path, value, fields, required=("items",) if kind == "array" else ())


def _param_map_check(path: str, value: Any, depth: int = 0) -> None:
    if not isinstance(value, Mapping):
        v.fail(path, value, "must be a dict of parameter name to parameter schema")
    for name, prop in value.items():
        if not isinstance(name, str):
            v.fail(path, name, "has a parameter name that is not a string")
        v.text_check(path, name)
        _param_property_check(f"{path}.{name}", prop, depth)


def _function_parameters_check(path: str, value: Any) -> None:
    v.closed_mapping(
        path,
        value,
        {"type": v.enum_check(("object",)), "properties": _param_map_check, "required": _str_list},
        required=("type", "properties"),
    )


_secret_str = v.string_check(secret=True)
_WEBHOOK_FIELDS: Mapping[str, v.Check] = {
    "web_hook_url": _str,
    "web_hook_auth_user": _str,
    "web_hook_auth_password": _secret_str,
}


def _swaig_defaults_check(path: str, value: Any) -> None:
    v.closed_mapping(path, value, _WEBHOOK_FIELDS)


def _swaig_function_check(path: str, value: Any) -> None:
    v.closed_mapping(
        path,
        value,
        {
            "function": _str,
            "description": _str,
            "purpose": _str,
            "parameters": _function_parameters_check,
            **_WEBHOOK_FIELDS,
        },
        required=("function",),
    )


def _mcp_server_check(path: str, value: Any) -> None:
    v.closed_mapping(
        path,
        value,
        {
            "url": _str,
            "headers": v.str_map_check(),
            "resources": _bool,
            "resource_vars": v.str_map_check(),
        },
        required=("url",),
    )


def _swaig_check(path: str, value: Any) -> None:
    v.closed_mapping(
        path,
        value,
        {
            "defaults": _swaig_defaults_check,
            "functions": v.seq_check(_swaig_function_check),
            "mcp_servers": v.seq_check(_mcp_server_check),
        },
    )


def _sidecar_direction_check(path: str, value: Any) -> None:
    v.seq_check(_direction_check)(path, value)
    if not set(TRANSCRIBE_DIRECTIONS) <= set(value):
        v.fail(path, value, "must contain both 'remote-caller' and 'local-caller'")


# --- calling.ai_sidecar ------------------------------------------------------------------


@model("ai_sidecar.permissions")
@attrs.frozen(kw_only=True)
class SidecarPermissions(Model):
    """What the sidecar's SWAIG functions may do; the server allows all three by default."""

    swaig_allow_swml: bool | None = opt(v.boolean())
    swaig_allow_settings: bool | None = opt(v.boolean())
    swaig_set_global_data: bool | None = opt(v.boolean())


@model("ai_sidecar.params")
@attrs.frozen(kw_only=True)
class SidecarParams(Model):
    """Tune the sidecar: pacing, history, summaries, speech recognition and debugging."""

    idle_timeout_ms: int | None = opt(v.integer(50, 5000))
    min_interval_ms: int | None = opt(v.integer(0, 60000))
    max_iters_per_tick: int | None = opt(v.integer(1, 20))
    max_history_tokens: int | None = opt(v.integer(1000, 200000))
    act_on_channel: bool | None = opt(v.boolean())
    final_summary: bool | None = opt(v.boolean())
    ai_summary: bool | None = opt(v.boolean())
    ai_summary_prompt: str | None = opt(v.string())
    summary_model: str | None = opt(v.string())
    live_events: bool | None = opt(v.boolean())
    verbose_utterances: bool | None = opt(v.boolean())
    speech_engine: SpeechEngine | None = opt(v.one_of(*SPEECH_ENGINES))
    speech_timeout: int | None = opt(v.integer(0, 600000))
    vad_silence_ms: int | None = opt(v.integer(0, 60000))
    vad_thresh: int | None = opt(v.integer(0, 10000))
    debug_level: int | None = opt(v.integer(0, 100))
    debug: bool | None = opt(v.boolean())
    transcribe_prompt: str | None = opt(v.string())


@command("calling.ai_sidecar", label="ai_sidecar", idempotency=Idempotency.UNSAFE)
@attrs.frozen(kw_only=True)
class AISidecar(Command[Leg]):
    """
    Attach an AI sidecar that listens to the call and advises your webhook.

    The sidecar never speaks on the call. With *action* set to a
    :class:`Summarize`, the request produces a one-off summary instead.
    *prompt* is a string or one of ``{"text": ...}``, ``{"file": ...}``,
    ``{"pom": [section, ...]}``; *swaig* (sent as ``SWAIG``) is
    ``{"defaults"?, "functions"?, "mcp_servers"?}``. *params* tunes it. *direction*
    must name both legs.
    """

    call_id: str = call_id_field()
    lang: str = req(v.string(min_len=1))
    prompt: str | Mapping[str, Any] | None = opt(v.check(_sidecar_prompt_check), raw=True)
    model: str | None = opt(v.string())
    direction: Sequence[TranscribeDirection] | None = opt(v.check(_sidecar_direction_check))
    customer_role: TranscribeDirection | None = opt(v.one_of(*TRANSCRIBE_DIRECTIONS))
    url: str | None = opt(v.uri())
    swaig: Mapping[str, Any] | None = opt(v.check(_swaig_check), wire="SWAIG", raw=True)
    permissions: SidecarPermissions | None = opt(
        v.check(v.model_check(SidecarPermissions, "a SidecarPermissions")),
        nested=r.model(SidecarPermissions),
    )
    global_data: Mapping[str, Any] | None = opt(v.check(v.json_object_check), raw=True)
    hints: Sequence[str] | None = opt(v.check(v.seq_check(_str, min_items=1)))
    params: SidecarParams | None = opt(
        v.check(v.model_check(SidecarParams, "a SidecarParams")), nested=r.model(SidecarParams)
    )
    action: Summarize | None = opt(
        v.check(v.model_check(Summarize, "a Summarize")), nested=r.keyed({"summarize": Summarize})
    )


@command("calling.ai_sidecar.poke", label="ai_sidecar.poke", idempotency=Idempotency.UNSAFE)
@attrs.frozen(kw_only=True)
class AISidecarPoke(Command[Leg]):
    """Send the sidecar a message it answers right away, not at the next turn."""

    call_id: str = call_id_field()
    text: str = req(v.string())


@command(
    "calling.ai_sidecar.ask",
    label="ai_sidecar.ask",
    idempotency=Idempotency.UNSAFE,
    reply=parse_sidecar_ask,
)
@attrs.frozen(kw_only=True)
class AISidecarAsk(Command[SidecarAskReply]):
    """
    Ask the sidecar a one-off question.

    The answer arrives later as an ``ask_answer`` callback carrying the reply's *ask_id*.
    """

    call_id: str = call_id_field()
    text: str = req(v.string())


@command("calling.ai_sidecar.stop", label="ai_sidecar.stop", idempotency=Idempotency.SAFE)
@attrs.frozen(kw_only=True)
class AISidecarStop(Command[Leg]):
    """Detach the sidecar from the call (``calling.ai_sidecar.stop``)."""

    call_id: str = call_id_field()


@command(
    "calling.ai_sidecar.status",
    label="ai_sidecar.status",
    idempotency=Idempotency.SAFE,
    reply=parse_sidecar_status,
)
@attrs.frozen(kw_only=True)
class AISidecarStatus(Command[SidecarStatus]):
    """Read the sidecar's counters (running, ticks, insights, tokens...)."""

    call_id: str = call_id_field()


# --- calling.live_transcribe / calling.live_translate ----------------------------------


def _action_idempotency(action: Any) -> Idempotency:
    # Stopping twice stops once; a repeated start or summarize could run twice.
    return Idempotency.SAFE if action == "stop" else Idempotency.UNSAFE


@attrs.frozen(kw_only=True)
class _LiveStart(Model):
    """What starting live transcription and live translation share: ``{"start": {...}}``."""

    webhook: str | None = opt(v.string())
    live_events: bool | None = opt(v.boolean())
    ai_summary: bool | None = opt(v.boolean())
    ai_summary_prompt: str | None = opt(v.string())
    speech_engine: SpeechEngine | None = opt(v.one_of(*SPEECH_ENGINES))
    speech_timeout: int | None = opt(v.integer())
    vad_silence_ms: int | None = opt(v.integer())
    vad_thresh: int | None = opt(v.integer(0, 1800))
    debug_level: int | None = opt(v.integer(0, 2))

    @classmethod
    def _shape(cls, params: dict[str, Any]) -> dict[str, Any]:
        return {"start": params}


@model("live_transcribe.start")
@attrs.frozen(kw_only=True)
class LiveTranscribeStart(_LiveStart):
    """Start live transcription: ``{"start": {...}}``. *direction* names the legs to hear."""

    lang: str = req(v.string())
    direction: Sequence[TranscribeDirection] = req(v.check(_directions_check))


@command("calling.live_transcribe", label="live_transcribe", idempotency=Idempotency.UNSAFE)
@attrs.frozen(kw_only=True)
class LiveTranscribe(Command[Leg]):
    """
    Start, summarize or stop live transcription of the call.

    *action* is a :class:`LiveTranscribeStart`, a :class:`Summarize`, or ``"stop"``.
    """

    call_id: str = call_id_field()
    action: LiveTranscribeStart | Summarize | Literal["stop"] = req(
        v.check(
            v.any_of(
                v.model_check((LiveTranscribeStart, Summarize), "a model"),
                v.enum_check(("stop",)),
                rule="must be a LiveTranscribeStart, a Summarize, or 'stop'",
            )
        ),
        nested=r.keyed({"start": LiveTranscribeStart, "summarize": Summarize}, strings=("stop",)),
    )

    @property
    def idempotency(self) -> Idempotency:
        """SAFE for ``"stop"``; a start or summarize is UNSAFE."""
        return _action_idempotency(self.action)


_filter_check = v.any_of(
    v.enum_check(TRANSLATION_FILTER_PRESETS),
    # \A...\Z, not ^...$: Python's $ also matches before a final newline.
    v.string_check(pattern=r"\Aprompt:.+\Z"),
    rule="must be one of 'polite', 'rude', 'professional', 'shakespeare', 'gen-z', "
    "or 'prompt:<your instructions>'",
)


@model("live_translate.start")
@attrs.frozen(kw_only=True)
class LiveTranslateStart(_LiveStart):
    """
    Start live translation: ``{"start": {...}}``.

    *filter_from* / *filter_to* take a preset (``polite``, ``rude``,
    ``professional``, ``shakespeare``, ``gen-z``) or ``"prompt:<instructions>"``.
    """

    from_lang: str = req(v.string())
    to_lang: str = req(v.string())
    direction: Sequence[TranscribeDirection] = req(v.check(_directions_check))
    from_voice: str | None = opt(v.string())
    to_voice: str | None = opt(v.string())
    filter_from: str | None = opt(v.check(_filter_check))
    filter_to: str | None = opt(v.check(_filter_check))


@model("live_translate.inject")
@attrs.frozen(kw_only=True)
class LiveTranslateInject(Model):
    """Translate *message* and speak it toward one leg: ``{"inject": {...}}``."""

    message: str = req(v.string())
    direction: TranscribeDirection = req(v.one_of(*TRANSCRIBE_DIRECTIONS))

    @classmethod
    def _shape(cls, params: dict[str, Any]) -> dict[str, Any]:
        return {"inject": params}


@command("calling.live_translate", label="live_translate", idempotency=Idempotency.UNSAFE)
@attrs.frozen(kw_only=True)
class LiveTranslate(Command[Leg]):
    """
    Start, summarize, inject into or stop live translation of the call.

    *action* is a :class:`LiveTranslateStart`, a :class:`Summarize`, a
    :class:`LiveTranslateInject`, or ``"stop"``. *status_url* receives the
    translation session's webhooks.
    """

    call_id: str = call_id_field()
    action: LiveTranslateStart | Summarize | LiveTranslateInject | Literal["stop"] = req(
        v.check(
            v.any_of(
                v.model_check((LiveTranslateStart, Summarize, LiveTranslateInject), "a model"),
                v.enum_check(("stop",)),
                rule="must be a LiveTranslateStart, a Summarize, a LiveTranslateInject, or 'stop'",
            )
        ),
        nested=r.keyed(
            {"start": LiveTranslateStart, "summarize": Summarize, "inject": LiveTranslateInject},
            strings=("stop",),
        ),
    )
    status_url: str | None = opt(v.http_url())

    @property
    def idempotency(self) -> Idempotency:
        """SAFE for ``"stop"``; a start, summarize or inject is UNSAFE."""
        return _action_idempotency(self.action)
