"""
How commands and their nested models become wire JSON.

Python names live on the attrs classes; wire names live here, read from each
field's ``metadata["wire"]`` (``from_`` -> ``from``, ``swaig`` -> ``SWAIG``).
Unset optional fields (None) are omitted, never sent as null; a field with a
factory (a start command's control_id) and a required field always go out.
Free-form JSON (``metadata["raw"]``) is copied as plain dicts and lists, every
other sequence goes out as a list, and a nested model by its own writer.

Each model class gets one writer, made the first time one of its objects is
written: a few lines of straight Python per field, compiled once. This used to
be a cattrs converter generating a function per class; the output is the
same (tests/test_commands.py holds the cattrs writer as the reference and
compares the two on every command class), but a short-lived process paid ~54M
instructions the first time it sent a command, for importing cattrs and
compiling its functions: a sixth of a 400-flow run's difference from bare
aiohttp. Reading (``_reading.py``) still uses cattrs.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import attrs

T = TypeVar("T")

Writer = Callable[[Any], Any]

#: Values written as they are (what JSON has for them).
_AS_IS = frozenset({str, int, float, bool, type(None)})

#: The classes :func:`register_model` declared.
_MODELS: set[type] = set()

#: The writer of each type met so far: models, their subclasses, containers.
_WRITERS: dict[type, Writer] = {}


def register_model(cls: type[T]) -> type[T]:
    """Declare an attrs model class: written by the writer :func:`model_writer` makes for it."""
    _MODELS.add(cls)
    return cls


def _model_of(t: type) -> type | None:
    """The model class *t* is or derives from (the nearest in its MRO), or None."""
    return next((c for c in t.__mro__ if c in _MODELS), None)


def plain_json(value: Any) -> Any:
    """
    Free-form JSON as plain dicts and lists, copied.

    A caller may give tuples or read-only mappings (the validators accept any
    Mapping and list or tuple); the body must be JSON arrays and objects, and it
    must not share (mutable) containers with the caller. Validation has already
    bounded the depth.
    """
    if isinstance(value, Mapping):
        return {k: plain_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain_json(v) for v in value]
    return value


def write(value: Any) -> Any:
    """The wire JSON of *value*: a model, a sequence or mapping of them, or a plain value."""
    t = type(value)
    if t in _AS_IS:
        return value
    writer = _WRITERS.get(t)
    if writer is None:
        writer = _WRITERS[t] = _writer_for(t)
    return writer(value)


def _same(value: Any) -> Any:
    return value


def _sequence(value: Any) -> list[Any]:
    return [write(v) for v in value]


def _mapping(value: Any) -> dict[Any, Any]:
    return {k: write(v) for k, v in value.items()}


def _writer_for(t: type) -> Writer:
    model = _model_of(t)
    if model is not None:
        # A subclass of a model (a user's PlayTTS with a default voice) goes out in its
        # model's wire shape, with the model's fields.
        return model_writer(model)
    if issubclass(t, str):  # a str subclass (an enum's member) is a str on the wire
        return _same
    if issubclass(t, Mapping):
        return _mapping
    if issubclass(t, list | tuple):
        return _sequence
    return _same


#: A field's value in the generated source: plain values as they are, others by write().
_VALUE = "v if v.__class__ in _AS_IS else _write(v)"


def model_writer(cls: type[Any]) -> Writer:
    """
    Make (once) and return the writer of a model class.

    A class may define ``_shape(cls, params: dict) -> Any`` to wrap its dict into
    the wire shape (``{"type": "tts", "params": {...}}``); fields marked
    ``metadata={"omit": True}`` stay off the wire (the call id of a command).
    """
    made = _WRITERS.get(cls)
    if made is not None:
        return made
    fields = [a for a in attrs.fields(cls) if not a.metadata.get("omit")]
    for a in fields:
        # What the cattrs writer did with these (omit a value equal to its default,
        # skip a field __init__ does not set) is not done here: none of relaycall's
        # models has one, and a model that does must not go out differently unnoticed.
        factory = isinstance(a.default, attrs.Factory)  # type: ignore[arg-type]
        if not a.init or not (a.default is None or a.default is attrs.NOTHING or factory):
            raise TypeError(
                f"{cls.__qualname__}.{a.name}: a wire field defaults to None, a factory or "
                "nothing, and is set by __init__"
            )
    # The fields always written first, then the optional ones, each in declaration
    # order: the key order the cattrs writer gave bodies, kept so they stay byte for byte.
    fields.sort(key=lambda a: a.default is None)
    # Straight-line source, compiled once per class (as attrs makes __init__): a loop
    # over the fields cost twice the time per body, ~1 µs for a play with a tts() item.
    lines = ["def params(obj):", "    out = {}"]
    for a in fields:
        wire = repr(a.metadata.get("wire", a.name))
        value = "_plain(v)" if a.metadata.get("raw") else _VALUE
        lines.append(f"    v = obj.{a.name}")
        if a.default is None:
            lines.append(f"    if v is not None: out[{wire}] = {value}")
        else:
            lines.append(f"    out[{wire}] = None if v is None else {value}")
    shape = getattr(cls, "_shape", None)
    lines.append("    return out" if shape is None else "    return _shape(out)")
    scope: dict[str, Any] = {
        "_AS_IS": _AS_IS,
        "_plain": plain_json,
        "_write": write,
        "_shape": shape,
    }
    exec(  # noqa: S102 - source built above from the class's own attrs field names
        compile("\n".join(lines), f"<relaycall writer of {cls.__qualname__}>", "exec"), scope
    )
    writer: Writer = scope["params"]
    _WRITERS[cls] = writer
    return writer
