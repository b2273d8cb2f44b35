"""
Strict reading of wire JSON into relaycall's own typed command classes.

One cattrs Converter structures the JSON the API takes into the same attrs
classes the client builds, so every rule their validators enforce holds for
both readers of it: the emulator (a request body, see
``relaycall.emulator._wire``) and the client, where a nested option given as a
plain dict (``call.collect(digits={"max": 2})``) is read here into its class.
The attrs validators raise :class:`relaycall.ValidationError`, and its ``path``
(after the class label, with wire renames reversed) becomes the error's path.

What the client's converter writes, this one reads back:

- wire renames (``from`` -> ``from_``, ``SWAIG`` -> ``swaig``);
- closed objects: an unknown key, a missing required key, or a ``null``
  anywhere a field is expected is refused;
- the wrapper shapes: play items, detect configs, tap and refer devices
  (``{"type", "params"}``, chosen by ``type``), ``record: {"audio": {...}}``,
  ``tap: {"type": "audio", "params": {"direction"}}``, and the one-key actions
  of live transcription/translation (``start``, ``summarize``, ``inject``, or
  the bare string ``"stop"``) and of the sidecar (``summarize``);
- ``control_id`` of a start command and ``record`` are required on the wire
  (the client fills them in itself, so its classes give them defaults);
- ``calling.ai_hold`` ``timeout`` must be a JSON string (the client also accepts
  an int and converts it; the API refuses a number).

Attribute paths are relative to ``params`` (``volume``, ``play[0].params.text``,
``record.audio.max_length``), except the envelope's own keys (``id``,
``params``, ``command``).

Imported only when needed (the emulator, or the first nested dict a client
gets): registering every class generates code, which a script that builds
only typed objects never pays for.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

import attrs
import cattrs
from cattrs.gen import make_dict_structure_fn, override

from relaycall import commands as c
from relaycall.errors import ValidationError, show_value_masked

__all__ = ["ERRORS_URL", "WireError", "read_nested"]

ERRORS_URL = "https://signalwire.com/docs/apis/error-codes"
MISSING = "missing_required_parameter"
INVALID = "invalid_parameter"

#: The key under which the envelope's ``id`` joins params for structuring.
_CALL_ID_KEY = "\x00id"

Hook = Callable[[Any, Any], Any]


class WireError(Exception):
    """A request the API would refuse: a 400 or a 422 naming the offending attribute."""

    def __init__(self, path: str, message: str, *, code: str = INVALID, status: int = 422) -> None:
        super().__init__(message)
        self.path = path
        self.message = message
        self.code = code
        self.status = status

    def within(self, segment: str | int) -> WireError:
        """Prefix the path with the key (or list index) it was found under."""
        self.path = _join(segment, self.path)
        return self

    @property
    def attribute(self) -> str:
        return self.path

    @property
    def text(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message

    def body(self) -> dict[str, Any]:
        if self.status == 400:
            return {"error": "Bad Request"}
        return {
            "errors": [
                {
                    "type": "validation_error",
                    "code": self.code,
                    "message": self.text,
                    "attribute": self.path or None,
                    "url": ERRORS_URL,
                }
            ]
        }


def _join(segment: str | int, path: str) -> str:
    """``a`` + ``b.c`` -> ``a.b.c``; ``a`` + ``[0].b`` -> ``a[0].b``; an int is an index."""
    head = f"[{segment}]" if isinstance(segment, int) else segment
    if not path:
        return head
    if path.startswith("["):
        return head + path
    return f"{head}.{path}"


def _at(segment: str | int, hook: Hook) -> Hook:
    """Run *hook*, placing any error it raises under *segment*."""

    def located(value: Any, t: Any) -> Any:
        try:
            return hook(value, t)
        except WireError as exc:
            raise exc.within(segment) from None

    return located


def _passthrough(value: Any, _: Any) -> Any:
    return value


# --- the converter and its hooks ---------------------------------------------------------

_conv = cattrs.Converter(forbid_extra_keys=True, detailed_validation=False)


def _structure(cls: type[Any]) -> Hook:
    def hook(value: Any, _: Any) -> Any:
        return _conv.structure(value, cls)

    return hook


def _closed(value: Any, allowed: tuple[str, ...], required: tuple[str, ...], what: str) -> None:
    if not isinstance(value, Mapping):
        raise WireError("", f"must be an object ({what})")
    for key in value:
        if key not in allowed:
            raise WireError(str(key), f"is not allowed here (allowed: {', '.join(allowed)})")
    for key in required:
        if key not in value:
            raise WireError(key, "is required", code=MISSING)


def _typed(kinds: Mapping[str, type[Any]], *, params_required: bool) -> Hook:
    """``{"type": kind, "params": {...}}``, the class chosen by ``type``."""
    names = ", ".join(repr(k) for k in kinds)
    required = ("type", "params") if params_required else ("type",)

    def hook(value: Any, _: Any) -> Any:
        _closed(value, ("type", "params"), required, "with type and params")
        kind = value["type"]
        cls = kinds.get(kind) if isinstance(kind, str) else None
        if cls is None:
            raise WireError("type", f"{_show(kind)} is not one of {names}")
        return _at("params", _structure(cls))(value.get("params", {}), None)

    return hook


def _items(item: Hook) -> Hook:
    def hook(value: Any, t: Any) -> Any:
        if not isinstance(value, list):
            raise WireError("", "must be an array")
        return [_at(i, item)(v, t) for i, v in enumerate(value)]

    return hook


def _keyed(kinds: Mapping[str, type[Any]], *, strings: tuple[str, ...] = ()) -> Hook:
    """A one-key object naming its form (``{"start": {...}}``), or one of *strings*."""
    forms = [*(repr(s) for s in strings), *(f"{{{k!r}: {{...}}}}" for k in kinds)]
    rule = "must be " + " or ".join(forms)

    def hook(value: Any, _: Any) -> Any:
        if isinstance(value, str) and value in strings:
            return value
        if not isinstance(value, Mapping):
            raise WireError("", f"{_show(value)} {rule}")
        if len(value) != 1:
            raise WireError("", f"must have exactly one key ({', '.join(kinds)})")
        ((key, inner),) = value.items()
        cls = kinds.get(key)
        if cls is None:
            raise WireError(str(key), f"is not allowed here (allowed: {', '.join(kinds)})")
        return _at(key, _structure(cls))(inner, None)

    return hook


_play_item = _typed(
    {"audio": c.PlayAudio, "tts": c.PlayTTS, "silence": c.PlaySilence, "ringtone": c.PlayRingtone},
    params_required=True,
)


def _typed_or_dict_items(item: Hook) -> Hook:
    """A list whose items are typed objects already or dicts in their wire shape."""

    def hook(value: Any, t: Any) -> Any:
        if not isinstance(value, list | tuple):
            return value  # not a list: the class's own validator says what is wrong
        return [_at(i, item)(v, t) if isinstance(v, Mapping) else v for i, v in enumerate(value)]

    return hook


def _record(value: Any, _: Any) -> Any:
    _closed(value, ("audio",), ("audio",), "with audio")
    return _at("audio", _structure(c.RecordAudio))(value["audio"], None)


def _tap(value: Any, _: Any) -> Any:
    _closed(value, ("type", "params"), ("type", "params"), "with type and params")
    if value["type"] != "audio":
        raise WireError("type", f"{value['type']!r} is not 'audio' (the only tap type)")
    params = value["params"]
    try:
        _closed(params, ("direction",), ("direction",), "with direction")
    except WireError as exc:
        raise exc.within("params") from None
    return params["direction"]


def _json_string(value: Any, _: Any) -> Any:
    if not isinstance(value, str):
        raise WireError("", f"{_show(value)} must be a string of digits (the API refuses a number)")
    return value


#: Fields whose wire value is a nested shape, by class and Python field name.
_HOOKS: dict[type[Any], dict[str, Hook]] = {
    c.Play: {"play": _items(_play_item)},
    c.Record: {"audio": _record},
    c.Collect: {"digits": _structure(c.CollectDigits), "speech": _structure(c.CollectSpeech)},
    c.Detect: {
        "detect": _typed(
            {"machine": c.DetectMachine, "fax": c.DetectFax, "digit": c.DetectDigit},
            params_required=False,
        )
    },
    c.Tap: {
        "direction": _tap,
        "device": _typed({"rtp": c.RtpDevice, "ws": c.WsDevice}, params_required=True),
    },
    c.Refer: {"device": _typed({"sip": c.SipReferDevice}, params_required=True)},
    c.AIHold: {"timeout": _json_string},
    c.AIMessage: {"reset": _structure(c.AIReset)},
    c.AISidecar: {
        "permissions": _structure(c.SidecarPermissions),
        "params": _structure(c.SidecarParams),
        "action": _keyed({"summarize": c.Summarize}),
    },
    c.LiveTranscribe: {
        "action": _keyed(
            {"start": c.LiveTranscribeStart, "summarize": c.Summarize}, strings=("stop",)
        )
    },
    c.LiveTranslate: {
        "action": _keyed(
            {
                "start": c.LiveTranslateStart,
                "summarize": c.Summarize,
                "inject": c.LiveTranslateInject,
            },
            strings=("stop",),
        )
    },
}

#: Wire keys of fields a class's ``_shape`` moves (not in ``metadata["wire"]``).
_WIRE_KEYS: dict[type[Any], dict[str, str]] = {
    c.Record: {"audio": "record"},
    c.Tap: {"direction": "tap"},
}
#: Where a Python field lives on the wire when that is not simply its (renamed) key.
_WIRE_PATHS: dict[type[Any], dict[str, str]] = {
    c.Record: {"audio": "record.audio"},
    c.Tap: {"direction": "tap.params.direction"},
}

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


@attrs.frozen
class _Spec:
    """How one class reads from the wire."""

    keys: dict[str, str]  # wire key -> Python name
    required: tuple[str, ...]  # wire keys
    paths: dict[str, str]  # Python name -> wire path, for error attributes


def _wire_key(cls: type[Any], a: attrs.Attribute[Any]) -> str:
    if a.name == "call_id" and a.metadata.get("omit"):
        return _CALL_ID_KEY
    wire: str = _WIRE_KEYS.get(cls, {}).get(a.name) or a.metadata.get("wire", a.name)
    return wire


def _shown(key: str) -> str:
    return "id" if key == _CALL_ID_KEY else key


def _register(cls: type[Any]) -> None:
    hooks = _HOOKS.get(cls, {})
    keys: dict[str, str] = {}
    required: list[str] = []
    paths: dict[str, str] = {}
    overrides: dict[str, Any] = {}
    for a in attrs.fields(cls):
        key = _wire_key(cls, a)
        keys[key] = a.name
        # A factory default is the client filling the value in (control_id,
        # record): the wire must carry it.
        if a.default is attrs.NOTHING or isinstance(a.default, attrs.Factory):  # type: ignore[arg-type]
            required.append(key)
        shown = _shown(key)
        paths[a.name] = _WIRE_PATHS.get(cls, {}).get(a.name, shown)
        overrides[a.name] = override(
            rename=key, struct_hook=_at(shown, hooks.get(a.name, _passthrough))
        )
    generated = make_dict_structure_fn(cls, _conv, _cattrs_forbid_extra_keys=True, **overrides)
    spec = _Spec(keys=keys, required=tuple(required), paths=paths)

    def structure(value: Any, _: Any) -> Any:
        if not isinstance(value, Mapping):
            raise WireError("", f"{_show(value)} must be an object")
        for key, item in value.items():
            if key not in spec.keys:
                raise WireError(str(key), "is not an allowed parameter here")
            if item is None:
                raise WireError(_shown(key), "must not be null (leave an optional field out)")
        for key in spec.required:
            if key not in value:
                raise WireError(_shown(key), "is required", code=MISSING)
        try:
            return generated(value, cls)
        except ValidationError as exc:
            raise _from_validation(cls, spec, exc) from None

    _conv.register_structure_hook(cls, structure)


def _from_validation(cls: type[Any], spec: _Spec, exc: ValidationError) -> WireError:
    label: str = cls._label
    path = exc.path
    rest = path[len(label) + 1 :] if path.startswith(label + ".") else path
    m = _NAME.match(rest)
    name = m.group() if m else ""
    where = spec.paths.get(name, name) + rest[len(name) :]
    # str(exc) is "<python path>: <shown value> <rule>", secrets already masked.
    detail = str(exc)[len(path) + 2 :] if str(exc).startswith(path + ": ") else exc.rule
    code = MISSING if exc.rule.startswith("is required") else INVALID
    if exc.rule.startswith("give ") and "not both" not in exc.rule:
        code = MISSING
    status = 400 if cls is c.Collect and exc.rule == "give digits, speech, or both" else 422
    return WireError(where, detail, code=code, status=status)


def _show(value: Any) -> str:
    """A short repr for a message; the values of secret keys (a SIP password) are masked."""
    return show_value_masked(value, 60)


_MODELS: tuple[type[Any], ...] = (
    c.PlayAudio, c.PlayTTS, c.PlaySilence, c.PlayRingtone, c.RecordAudio,
    c.CollectDigits, c.CollectSpeech, c.DetectMachine, c.DetectFax, c.DetectDigit,
    c.RtpDevice, c.WsDevice, c.SipReferDevice, c.AIReset, c.SidecarPermissions,
    c.SidecarParams, c.Summarize, c.LiveTranscribeStart, c.LiveTranslateStart,
    c.LiveTranslateInject,
)  # fmt: skip
for _cls in (*_MODELS, *c.BY_NAME.values()):
    _register(_cls)


# --- nested options given as plain dicts (the client) ------------------------------------

#: Where a field's client-side value differs from its wire value: ``Record.audio``
#: is the flat RecordAudio object (the wire wraps it as ``record: {"audio": ...}``),
#: and play items may mix typed items and dicts.
_CLIENT_HOOKS: dict[type[Any], dict[str, Hook]] = {
    c.Record: {"audio": _structure(c.RecordAudio)},
    c.Play: {"play": _typed_or_dict_items(_play_item)},
}


def read_nested(cls: type[Any], name: str, value: Any) -> Any:
    """
    Read *value*, field *name* of *cls* given in its wire shape (dicts), into typed objects.

    Raises :class:`relaycall.ValidationError` naming the path from the
    command's label (``collect.digits.max``), as the typed classes' own
    validators do; secrets stay masked.
    """
    hook = _CLIENT_HOOKS.get(cls, {}).get(name) or _HOOKS[cls][name]
    try:
        return hook(value, None)
    except WireError as exc:
        where = f"{cls._label}.{name}"
        path = _join(where, exc.path) if exc.path else where
        raise ValidationError(path, None, exc.message, show_value=False) from None
