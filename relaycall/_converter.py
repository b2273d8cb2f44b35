"""
relaycall's one private cattrs converter.

Python names live on the attrs classes; wire names live here, read from each
field's ``metadata["wire"]`` (``from_`` -> ``from``, ``swaig`` -> ``SWAIG``).
Unset optional fields (None) are omitted, never sent as null. Hooks are
generated once per class, the first time one of its objects is unstructured (not
when the class is registered: generating them for every class cost most of
``import relaycall``), so per-command cost is one generated function call per
nested object.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar, cast

import attrs

if TYPE_CHECKING:
    import cattrs

T = TypeVar("T")


@functools.cache
def converter() -> cattrs.Converter:
    """
    The converter, made on first use: cattrs is imported when a command is first sent
    (or a model first unstructured), not by ``import relaycall``.
    """
    import cattrs  # noqa: PLC0415 - see above

    made = cattrs.Converter(omit_if_default=True)
    # cattrs calls the factory once per class, when a hook is first asked for, and caches it.
    # A subclass of a model (a user's PlayTTS with a default voice) goes out in its
    # model's wire shape, with the model's fields: as when the hook was registered on
    # the class itself, which cattrs applied to subclasses.
    made.register_unstructure_hook_factory(
        lambda t: _model_of(t) is not None, lambda t: model_hook(_model_of(t))
    )
    return made


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


#: The classes :func:`register_model` declared; their hooks are made on first use.
_MODELS: set[type] = set()


def register_model(cls: type[T]) -> type[T]:
    """
    Declare an attrs model class: its unstructure hook is made on first use (:func:`model_hook`).
    """
    _MODELS.add(cls)
    return cls


def _is_model(t: Any) -> bool:
    return isinstance(t, type) and t in _MODELS


def _model_of(t: Any) -> Any:
    """The model class *t* is or derives from (the nearest in its MRO), or None."""
    if not isinstance(t, type):
        return None
    return next((c for c in t.__mro__ if c in _MODELS), None)


def model_hook(cls: type[Any]) -> Callable[[Any], Any]:
    """
    Generate the unstructure hook of a model class.

    A class may define ``_shape(cls, params: dict) -> Any`` to wrap its dict into
    the wire shape (``{"type": "tts", "params": {...}}``); fields marked
    ``metadata={"omit": True}`` stay off the wire (the call id of a command).
    """
    from cattrs.gen import make_dict_unstructure_fn, override  # noqa: PLC0415 - see converter()

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
        cls, converter(), _cattrs_omit_if_default=True, **overrides
    )
    shape = getattr(cls, "_shape", None)
    if shape is None:
        return fn

    def shaped(obj: Any) -> Any:
        return shape(fn(obj))

    return shaped


def unstructure(obj: Any) -> Any:
    return converter().unstructure(obj)
