"""
Strict reading of wire JSON into relaycall's own typed command classes.

One cattrs Converter structures the JSON the API takes into the same attrs
classes the client builds, so every rule their validators enforce holds for
both readers of it: the emulator (a request body, see
``relaycall.emulator._wire``) and the client, where a nested option given as a
plain dict (``call.collect(digits={"max": 2})``) is read here into its class.
The attrs validators raise :class:`relaycall.ValidationError`, and its ``path``
(after the class label, with wire renames reversed) becomes the error's path.

This module knows no command: each class declares how its fields read, on the
field (see ``relaycall._commands._base.opt``), with the readers below:

- ``metadata["read"]``: how a nested field's wire (dict) form reads, for both
  readers: ``model(CollectDigits)``, ``typed({...})`` for ``{"type", "params"}``
  chosen by ``type`` (play items, detect configs, tap and refer devices),
  ``keyed({...})`` for a one-key action (``start``, ``summarize``, ``inject``,
  or the bare string ``"stop"``);
- ``metadata["wire_read"]``: a :class:`WireRead`, where the wire alone differs
  (``record: {"audio": {...}}``, ``tap: {"type": "audio", "params":
  {"direction"}}``, ``ai_hold``'s string ``timeout``, play items that must all
  be objects).

What the client's converter writes, this one reads back: wire renames (``from``
-> ``from_``, ``SWAIG`` -> ``swaig``); closed objects (an unknown key, a missing
required key, or a ``null`` anywhere a field is expected is refused);
``control_id`` of a start command and ``record`` are required on the wire (the
client fills them in itself, so its classes give them defaults).

Attribute paths are relative to ``params`` (``volume``, ``play[0].params.text``,
``record.audio.max_length``), except the envelope's own keys (``id``,
``params``, ``command``).

A class's structuring code is generated on its first read, not at import: a
script that builds only typed objects never pays for it.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import attrs

from relaycall.errors import ValidationError, show_value_masked

if TYPE_CHECKING:
    import cattrs

__all__ = [
    "CALL_ID_KEY",
    "ERRORS_URL",
    "MISSING",
    "Hook",
    "WireError",
    "WireRead",
    "at",
    "closed",
    "items",
    "json_string",
    "keyed",
    "mixed_items",
    "model",
    "read",
    "read_nested",
    "show",
    "typed",
]

ERRORS_URL = "https://signalwire.com/docs/apis/error-codes"
MISSING = "missing_required_parameter"
INVALID = "invalid_parameter"

#: The key under which the envelope's ``id`` joins params for structuring.
CALL_ID_KEY = "\x00id"

#: Reads one wire value (and the type cattrs passes, unused) into its Python value.
Hook = Callable[[Any, Any], Any]


class WireError(Exception):
    """A request the API would refuse: a 400 or a 422 naming the offending attribute."""

    def __init__(
        self,
        path: str,
        message: str,
        *,
        code: str = INVALID,
        status: int = 422,
        rule: str | None = None,
    ) -> None:
        super().__init__(message)
        self.path = path
        self.message = message
        self.code = code
        self.status = status
        #: The validator's rule, when a class's own validation refused the value.
        self.rule = rule

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


@attrs.frozen
class WireRead:
    """
    How a field reads from a request body where its wire form is not its dict form.

    *key* and *path* are where it lives on the wire when a class's ``_shape``
    moves it (``Record.audio`` is ``record`` / ``record.audio``).
    """

    hook: Hook
    key: str | None = None
    path: str | None = None


def _join(segment: str | int, path: str) -> str:
    """``a`` + ``b.c`` -> ``a.b.c``; ``a`` + ``[0].b`` -> ``a[0].b``; an int is an index."""
    head = f"[{segment}]" if isinstance(segment, int) else segment
    if not path:
        return head
    if path.startswith("["):
        return head + path
    return f"{head}.{path}"


def at(segment: str | int, hook: Hook) -> Hook:
    """Run *hook*, placing any error it raises under *segment*."""

    def located(value: Any, t: Any) -> Any:
        try:
            return hook(value, t)
        except WireError as exc:
            raise exc.within(segment) from None

    return located


def _passthrough(value: Any, _: Any) -> Any:
    return value


def show(value: Any) -> str:
    """A short repr for a message; the values of secret keys (a SIP password) are masked."""
    return show_value_masked(value, 60)


# --- readers a field declares ------------------------------------------------------------


@functools.cache
def _conv() -> cattrs.Converter:
    """
    The reading converter, made on first read: ``import relaycall`` does not import
    cattrs for it (a script that builds only typed objects never reads).
    """
    import cattrs  # noqa: PLC0415 - see above

    conv = cattrs.Converter(forbid_extra_keys=True, detailed_validation=False)
    conv.register_structure_hook_factory(_is_model, _reader)
    return conv


def read(cls: type[Any], value: Any) -> Any:
    """Read *value* (a dict in the wire shape) into *cls*; raises :class:`WireError`."""
    return _conv().structure(value, cls)


def model(cls: type[Any]) -> Hook:
    """A plain object of *cls*'s fields."""

    def hook(value: Any, _: Any) -> Any:
        return _conv().structure(value, cls)

    return hook


def closed(value: Any, allowed: tuple[str, ...], required: tuple[str, ...], what: str) -> None:
    """Refuse *value* unless it is an object with only *allowed* keys and every *required* one."""
    if not isinstance(value, Mapping):
        raise WireError("", f"must be an object ({what})")
    for key in value:
        if key not in allowed:
            raise WireError(str(key), f"is not allowed here (allowed: {', '.join(allowed)})")
    for key in required:
        if key not in value:
            raise WireError(key, "is required", code=MISSING)


def typed(kinds: Mapping[str, type[Any]], *, params_required: bool = True) -> Hook:
    """``{"type": kind, "params": {...}}``, the class chosen by ``type``."""
    names = ", ".join(repr(k) for k in kinds)
    required = ("type", "params") if params_required else ("type",)

    def hook(value: Any, _: Any) -> Any:
        closed(value, ("type", "params"), required, "with type and params")
        kind = value["type"]
        cls = kinds.get(kind) if isinstance(kind, str) else None
        if cls is None:
            raise WireError("type", f"{show(kind)} is not one of {names}")
        return at("params", model(cls))(value.get("params", {}), None)

    return hook


def items(item: Hook) -> Hook:
    """An array, each item read by *item*."""

    def hook(value: Any, t: Any) -> Any:
        if not isinstance(value, list):
            raise WireError("", "must be an array")
        return [at(i, item)(v, t) for i, v in enumerate(value)]

    return hook


def mixed_items(item: Hook) -> Hook:
    """A list whose items are typed objects already or dicts in their wire shape."""

    def hook(value: Any, t: Any) -> Any:
        if not isinstance(value, list | tuple):
            return value  # not a list: the class's own validator says what is wrong
        return [at(i, item)(v, t) if isinstance(v, Mapping) else v for i, v in enumerate(value)]

    return hook


def keyed(kinds: Mapping[str, type[Any]], *, strings: tuple[str, ...] = ()) -> Hook:
    """A one-key object naming its form (``{"start": {...}}``), or one of *strings*."""
    forms = [*(repr(s) for s in strings), *(f"{{{k!r}: {{...}}}}" for k in kinds)]
    rule = "must be " + " or ".join(forms)

    def hook(value: Any, _: Any) -> Any:
        if isinstance(value, str) and value in strings:
            return value
        if not isinstance(value, Mapping):
            raise WireError("", f"{show(value)} {rule}")
        if len(value) != 1:
            raise WireError("", f"must have exactly one key ({', '.join(kinds)})")
        ((key, inner),) = value.items()
        cls = kinds.get(key)
        if cls is None:
            raise WireError(str(key), f"is not allowed here (allowed: {', '.join(kinds)})")
        return at(key, model(cls))(inner, None)

    return hook


def json_string(value: Any, _: Any) -> Any:
    """A value the API takes only as a JSON string (it refuses a number)."""
    if not isinstance(value, str):
        raise WireError("", f"{show(value)} must be a string of digits (the API refuses a number)")
    return value


# --- generating a class's reader -----------------------------------------------------------

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


@attrs.frozen
class _Spec:
    """How one class reads from the wire."""

    keys: dict[str, str]  # wire key -> Python name
    required: tuple[str, ...]  # wire keys
    paths: dict[str, str]  # Python name -> wire path, for error attributes


def _wire_key(a: attrs.Attribute[Any], special: WireRead | None) -> str:
    if a.name == "call_id" and a.metadata.get("omit"):
        return CALL_ID_KEY
    if special is not None and special.key is not None:
        return special.key
    wire: str = a.metadata.get("wire", a.name)
    return wire


def _shown(key: str) -> str:
    return "id" if key == CALL_ID_KEY else key


def _is_model(t: Any) -> bool:
    # Every command and parameter model carries the label its decorator gave it.
    return isinstance(t, type) and attrs.has(t) and hasattr(t, "_label")


def _reader(cls: type[Any]) -> Hook:
    from cattrs.gen import make_dict_structure_fn, override  # noqa: PLC0415 - see _conv

    keys: dict[str, str] = {}
    required: list[str] = []
    paths: dict[str, str] = {}
    overrides: dict[str, Any] = {}
    for a in attrs.fields(cls):
        special: WireRead | None = a.metadata.get("wire_read")
        key = _wire_key(a, special)
        keys[key] = a.name
        # A factory default is the client filling the value in (control_id,
        # record): the wire must carry it.
        if a.default is attrs.NOTHING or isinstance(a.default, attrs.Factory):  # type: ignore[arg-type]
            required.append(key)
        shown = _shown(key)
        paths[a.name] = special.path if special is not None and special.path else shown
        hook = special.hook if special is not None else a.metadata.get("read", _passthrough)
        overrides[a.name] = override(rename=key, struct_hook=at(shown, hook))
    generated = make_dict_structure_fn(cls, _conv(), _cattrs_forbid_extra_keys=True, **overrides)
    spec = _Spec(keys=keys, required=tuple(required), paths=paths)

    def structure(value: Any, _: Any) -> Any:
        if not isinstance(value, Mapping):
            raise WireError("", f"{show(value)} must be an object")
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

    return structure


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
    return WireError(where, detail, code=code, rule=exc.rule)


# --- nested options given as plain dicts (the client) ------------------------------------


def read_nested(hook: Hook, where: str, value: Any) -> Any:
    """
    Read *value*, given in its wire shape (dicts), with the *hook* its field declares.

    Raises :class:`relaycall.ValidationError` naming the path from *where*, the
    field's path from the command's label (``collect.digits.max``), as the
    typed classes' own validators do; secrets stay masked.
    """
    try:
        return hook(value, None)
    except WireError as exc:
        path = _join(where, exc.path) if exc.path else where
        raise ValidationError(path, None, exc.message, show_value=False) from None
