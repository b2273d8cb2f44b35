"""
Base classes for typed commands and their nested parameter models.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Mapping
from typing import Any, ClassVar, Generic, TypeVar

import attrs

from relaycall import _validate as v
from relaycall._idempotency import Idempotency
from relaycall._models import parse_leg
from relaycall._reading import Hook, WireRead, read_nested
from relaycall._writing import model_writer, register_model, write
from relaycall.errors import ValidationError, mask_secrets

R = TypeVar("R")
M = TypeVar("M")
F = TypeVar("F", bound="FollowUp[Any]")


def new_control_id() -> str:
    """Return a fresh control id: 16 URL-safe characters, 96 random bits."""
    return secrets.token_urlsafe(12)


class Model:
    """A frozen attrs class that becomes wire JSON through its writer (``relaycall._writing``)."""

    __slots__ = ()
    _label: ClassVar[str]


class Command(Model, Generic[R]):
    """
    One request to ``POST /api/calling/calls``.

    Build a command, then ``await relay.send(command)``. Construction checks
    every rule of the API reference and raises :class:`relaycall.ValidationError`
    naming the field, so a bad command never reaches the wire.
    """

    __slots__ = ()
    #: The wire ``command`` name, e.g. ``calling.play``.
    command_name: ClassVar[str]
    _idempotency: ClassVar[Idempotency]
    #: Whether the call id goes in the top-level ``id`` (every calling.* command).
    _top_level_id: ClassVar[bool] = True
    #: Turns the 2xx reply into the command's result type.
    _parse_reply: ClassVar[Callable[[Any], Any]]
    #: Whether call_id and control_id are its only fields (see FollowUp._of).
    _ids_only: ClassVar[bool] = False
    #: Whether the session points its status_url, when unset, at the session's
    #: EventReceiver: so for every class with a ``status_url`` field unless its
    #: @command says otherwise (see :func:`command`).
    _receiver_status_url: ClassVar[bool] = False

    @property
    def idempotency(self) -> Idempotency:
        """How the retry policy may treat this command (a class may decide per instance)."""
        return self._idempotency

    def to_wire(self) -> dict[str, Any]:
        """Return the exact JSON body this command sends."""
        body: dict[str, Any] = self._wire_body(self)
        return body

    @staticmethod
    def _wire_body(obj: Any) -> Any:
        # Replaced by @command with the body function of its class, which to_wire
        # then calls directly: no dispatch on the type per command.
        return write(obj)


def model(label: str) -> Callable[[type[M]], type[M]]:
    """Register a nested parameter model; *label* prefixes its error paths."""

    def deco(cls: type[M]) -> type[M]:
        cls._label = label  # type: ignore[attr-defined]
        register_model(cls)
        return cls

    return deco


#: Every command class by its wire name, filled as each class is defined (see
#: :func:`command`). ``relaycall.commands.BY_NAME`` is this dict, handed out only
#: once every command module is imported (the AI commands are imported on first use).
REGISTRY: dict[str, type[Command[Any]]] = {}


def _register(name: str, cls: type[Any]) -> None:
    taken = REGISTRY.get(name)
    # The same class defined again (its module reloaded) replaces itself.
    if taken is not None and (taken.__module__, taken.__qualname__) != (
        cls.__module__,
        cls.__qualname__,
    ):
        raise TypeError(
            f"two command classes have the wire name {name!r}: "
            f"{taken.__module__}.{taken.__qualname__} and {cls.__module__}.{cls.__qualname__}"
        )
    REGISTRY[name] = cls


def command(
    name: str,
    *,
    label: str,
    idempotency: Idempotency,
    top_level_id: bool = True,
    reply: Callable[[Any], Any] | None = None,
    receiver_status_url: bool = True,
) -> Callable[[type[M]], type[M]]:
    """
    Declare a command class: its wire name, error label, retry class and reply parser.

    A class with a ``status_url`` field gets one pointing at the session's
    EventReceiver when it is sent without one, unless *receiver_status_url*
    is False.

    The class joins :data:`REGISTRY` under *name* (a name already taken by
    another class raises TypeError). Its body function produces
    ``{"command", "id", "params"}``; the params come from the class's own
    fields (renamed and with unset ones omitted).
    """

    def deco(cls: type[M]) -> type[M]:
        _register(name, cls)
        cls._label = label  # type: ignore[attr-defined]
        cls.command_name = name  # type: ignore[attr-defined]
        cls._idempotency = idempotency  # type: ignore[attr-defined]
        cls._top_level_id = top_level_id  # type: ignore[attr-defined]
        cls._parse_reply = staticmethod(reply or parse_leg)  # type: ignore[attr-defined]
        names = tuple(a.name for a in attrs.fields(cls))  # type: ignore[arg-type]
        cls._ids_only = names == ("call_id", "control_id")  # type: ignore[attr-defined]
        cls._receiver_status_url = (  # type: ignore[attr-defined]
            receiver_status_url and "status_url" in names
        )
        register_model(cls)

        def first_body(obj: Any) -> dict[str, Any]:
            # The params writer is made on the class's first use, not at import;
            # then this replaces itself with the body function to_wire calls directly.
            body = _body_function(name, top_level_id, model_writer(cls))
            cls._wire_body = staticmethod(body)  # type: ignore[attr-defined]
            return body(obj)

        # Both ids required (a follow-up's): their body needs no params writer.
        required_ids = names == ("call_id", "control_id") and all(
            a.default is attrs.NOTHING
            for a in attrs.fields(cls)  # type: ignore[arg-type]
        )
        if required_ids and top_level_id:

            def ids_body(obj: Any) -> dict[str, Any]:
                # What the params writer would make of the two ids, without making it.
                return {
                    "command": name,
                    "id": obj.call_id,
                    "params": {"control_id": obj.control_id},
                }

            cls._wire_body = staticmethod(ids_body)  # type: ignore[attr-defined]
        else:
            cls._wire_body = staticmethod(first_body)  # type: ignore[attr-defined]
        return cls

    return deco


def _body_function(
    name: str, top_level_id: bool, params: Callable[[Any], Any]
) -> Callable[[Any], dict[str, Any]]:
    """The function producing a command's ``{"command", "id", "params"}`` body."""
    if top_level_id:

        def body(obj: Any) -> dict[str, Any]:
            return {"command": name, "id": obj.call_id, "params": params(obj)}

    else:

        def body(obj: Any) -> dict[str, Any]:
            return {"command": name, "params": params(obj)}

    return body


# --- field helpers -------------------------------------------------------------------
# Keep declarations to one line per wire field. Optional fields default to None,
# which the writer omits.


def call_id_field() -> Any:
    """The call a command acts on; sent as the top-level ``id``, not in params."""
    return attrs.field(validator=v.uuid(), metadata={"omit": True})


def control_id_field() -> Any:
    """A follow-up's control_id: required, names the running operation."""
    return attrs.field(validator=v.check(_control_id_check))


def new_control_id_field() -> Any:
    """A start command's control_id: generated when not given, reused on every retry."""
    return attrs.field(factory=new_control_id, validator=v.check(_control_id_check))


def _control_id_check(path: str, value: Any) -> None:
    if not isinstance(value, str):
        v.fail(path, value, "must be a string")
    if not value:
        v.fail(path, value, "must not be empty")
    v.text_check(path, value)
    if len(value) > 256:
        v.fail(path, value, "is longer than 256 characters")


def _redacted(value: Any) -> str:
    return "None" if value is None else "'<redacted>'"


def _secrets_masked(value: Any) -> str:
    """repr of free-form JSON (SWML, SWAIG) with the values of secret keys masked."""
    return repr(mask_secrets(value))


def _has_dict(value: Any) -> bool:
    # A loop, not any(): this runs for every play command, and a generator costs more.
    # A model is no Mapping, and checking that first spares the Mapping ABC's check
    # (the slow isinstance) for the usual value, a list of play items or a device.
    if isinstance(value, Model):
        return False
    if isinstance(value, list | tuple):
        for item in value:  # noqa: SIM110 - see above
            if not isinstance(item, Model) and isinstance(item, Mapping):
                return True
        return False
    return isinstance(value, Mapping)


def _read_dicts(value: Any, inst: Any, field: attrs.Attribute[Any]) -> Any:
    """
    attrs converter of a nested-model field: a dict in its wire shape becomes the model.

    ``digits={"max": 2}`` -> ``CollectDigits(max=2)``, read by the field's
    declared reader (``metadata["read"]``) with the same validation and field
    paths (``collect.digits.max``) as the typed class; typed values pass
    through untouched.
    """
    if not _has_dict(value):
        return value
    try:
        return read_nested(field.metadata["read"], f"{type(inst)._label}.{field.name}", value)
    except ValidationError as exc:
        # As in _validate.field_validator: the reader's frames hold the dict (a
        # SIP password in a refer device's params); a traceback shows none of it.
        del value
        raise exc.with_traceback(None)  # noqa: B904 - the same exception, re-raised


#: The converter every nested-model field shares.
NESTED = attrs.Converter(_read_dicts, takes_self=True, takes_field=True)


def _field(
    validator: v.Validator,
    *,
    wire: str | None,
    raw: bool,
    secret: bool,
    nested: Hook | None,
    wire_read: WireRead | None,
    **kw: Any,
) -> Any:
    meta: dict[str, Any] = {}
    if wire is not None:
        meta["wire"] = wire
    if raw:
        # Free-form JSON (SWML, custom data) goes out copied as plain JSON (_writing.plain_json).
        meta["raw"] = True
    if nested is not None:
        meta["read"] = nested
        kw["converter"] = NESTED
    if wire_read is not None:
        meta["wire_read"] = wire_read
    shown = _redacted if secret else _secrets_masked if raw else True
    return attrs.field(validator=validator, metadata=meta, repr=shown, **kw)


def opt(
    validator: v.Validator,
    *,
    wire: str | None = None,
    raw: bool = False,
    secret: bool = False,
    nested: Hook | None = None,
    wire_read: WireRead | None = None,
) -> Any:
    """
    An optional wire field, omitted when None. *secret* hides it from repr.

    *nested*: the field holds parameter models, which may also be given as
    dicts in their wire shape, read by this ``relaycall._reading`` reader (see
    :func:`_read_dicts`). *wire_read*: how a request body carries the field
    where that is not its dict form (what the emulator reads).
    """
    return _field(
        validator,
        wire=wire,
        raw=raw,
        secret=secret,
        nested=nested,
        wire_read=wire_read,
        default=None,
    )


def req(
    validator: v.Validator,
    *,
    wire: str | None = None,
    raw: bool = False,
    secret: bool = False,
    nested: Hook | None = None,
    wire_read: WireRead | None = None,
) -> Any:
    """A required wire field (*nested* and *wire_read* as for :func:`opt`)."""
    return _field(validator, wire=wire, raw=raw, secret=secret, nested=nested, wire_read=wire_read)


def typed_params(kind: str, params: Mapping[str, Any]) -> dict[str, Any]:
    """The ``{"type": kind, "params": {...}}`` shape of play items, devices and configs."""
    return {"type": kind, "params": params}


# A follow-up that adds no field (the stops, pauses, resumes) is a plain subclass with
# ``__slots__ = ()``, not an attrs class of its own: attrs would generate the same
# __init__, __repr__ and __eq__ again for each (they read the instance's class, so they
# behave the same), and generating them was most of what importing a command cost.
@attrs.frozen(kw_only=True)
class FollowUp(Command[R]):
    """
    A command on a running operation, named by its call and control id.

    The stop, pause, resume and timer commands are this and nothing more;
    some add a field (a volume, a pause behaviour).
    """

    call_id: str = call_id_field()
    control_id: str = control_id_field()

    @classmethod
    def _of(cls: type[F], call_id: str, control_id: str) -> F:
        """
        Build from the ids a handle holds, without running the validators again.

        A handle's control id passed the same check when its operation started
        (or in ``attach``), and its call id is the server's own or passed
        ``relay.call``; re-checking both on every pause and stop was a
        measurable share of a follow-up's cost. Classes with more fields than
        the two ids take the validating path.
        """
        if not cls._ids_only:
            return cls(call_id=call_id, control_id=control_id)
        inst = object.__new__(cls)
        _set = object.__setattr__
        _set(inst, "call_id", call_id)
        _set(inst, "control_id", control_id)
        return inst
