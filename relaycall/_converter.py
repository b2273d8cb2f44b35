"""
relaycall's one private cattrs converter.

Python names live on the attrs classes; wire names live here, read from each
field's ``metadata["wire"]`` (``from_`` -> ``from``, ``swaig`` -> ``SWAIG``).
Unset optional fields (None) are omitted, never sent as null. Hooks are
generated once per class when the class is registered, so per-command cost is
one generated function call per nested object.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, TypeVar, cast

import attrs
import cattrs
from cattrs.gen import make_dict_unstructure_fn, override

T = TypeVar("T")

converter = cattrs.Converter(omit_if_default=True)


def _plain_json(value: Any) -> Any:
    """
    Free-form JSON as plain dicts and lists, copied.

    A caller may give tuples or read-only mappings (the validators accept any
    Mapping and list or tuple); the body must be JSON arrays and objects, and it
    must not share (mutable) containers with the caller. Validation has already
    bounded the depth.
    """
    if isinstance(value, Mapping):
        return {k: _plain_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain_json(v) for v in value]
    return value


def register_model(cls: type[T]) -> type[T]:
    """
    Generate and register the unstructure hook for an attrs model class.

    A class may define ``_shape(cls, params: dict) -> Any`` to wrap its dict into
    the wire shape (``{"type": "tts", "params": {...}}``); fields marked
    ``metadata={"omit": True}`` stay off the wire (the call id of a command).
    """
    overrides: dict[str, Any] = {}
    for a in attrs.fields(cast("Any", cls)):
        if a.metadata.get("omit"):
            overrides[a.name] = override(omit=True)
            continue
        wire = a.metadata.get("wire")
        raw = a.metadata.get("raw")
        # omit_if_default would call a factory on every unstructure just to
        # compare (a fresh control_id each time); factory fields always go out.
        factory = isinstance(a.default, attrs.Factory)  # type: ignore[arg-type]
        if wire is not None or raw or factory:
            overrides[a.name] = override(
                rename=wire,
                unstruct_hook=_plain_json if raw else None,
                omit_if_default=False if factory else None,
            )
    fn: Callable[[Any], dict[str, Any]] = make_dict_unstructure_fn(
        cls, converter, _cattrs_omit_if_default=True, **overrides
    )
    shape = getattr(cls, "_shape", None)
    if shape is None:
        converter.register_unstructure_hook(cls, fn)
    else:

        def shaped(obj: Any) -> Any:
            return shape(fn(obj))

        converter.register_unstructure_hook(cls, shaped)
    return cls


def unstructure(obj: Any) -> Any:
    return converter.unstructure(obj)
