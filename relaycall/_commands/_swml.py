"""
The depth to which the API reference types SWMLObject: the envelope, its
sections, and one-key steps naming a known method.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from relaycall import _validate as v
from relaycall._commands._base import _field

SWML_METHODS = frozenset(
    """answer ai ai_sidecar amazon_bedrock cond connect denoise enter_queue execute goto label
    live_transcribe live_translate hangup join_room join_conference play prompt receive_fax
    record record_call request return send_digits send_fax send_sms set sleep sip_refer
    stop_denoise stop_record_call stop_stream stop_tap stream switch tap transcribe
    transcribe_stop transfer unset pay detect_machine user_event""".split()  # noqa: SIM905 - a word list reads best as words
)


def swml_check(path: str, value: Any) -> None:
    """A SWML document given as an object (the typed reference allows no string form)."""
    if isinstance(value, str):
        v.fail(
            path,
            value,
            "must be a SWML object (a dict), not a string; json.loads() or yaml.safe_load() it "
            "first",
        )
    if not isinstance(value, Mapping):
        v.fail(path, value, "must be a SWML object (a dict with 'sections')")
    for key in value:
        if not isinstance(key, str):
            v.fail(path, key, "has a key that is not a string")
        if key not in ("version", "sections"):
            v.fail(f"{path}.{key}", value[key], "is not allowed in a SWML document")
    if "version" in value and value["version"] != "1.0.0":
        v.fail(f"{path}.version", value["version"], "must be '1.0.0'")
    sections = value.get("sections")
    if not isinstance(sections, Mapping):
        v.fail(f"{path}.sections", sections, "must be an object of named sections")
    if "main" not in sections:
        v.fail_rule(f"{path}.sections.main", "is required")
    for name, steps in sections.items():
        if not isinstance(name, str):
            v.fail(f"{path}.sections", name, "has a section name that is not a string")
        where = f"{path}.sections.{name}"
        if not isinstance(steps, list | tuple):
            v.fail(where, steps, "must be a list of steps")
        for i, step in enumerate(steps):
            _step_check(f"{where}[{i}]", step)
    v.json_object_check(path, value)


def _step_check(path: str, step: Any) -> None:
    if not isinstance(step, Mapping) or len(step) != 1:
        v.fail(path, step, "must be an object with exactly one key, the method name")
    (method,) = step
    if method not in SWML_METHODS:
        v.fail(path, method, "is not a SWML method")


class SWMLDocument(Mapping[str, Any]):
    """
    What ``relaycall.swml.SWML`` is to the commands: a read-only Mapping of its wire
    document, taken as a snapshot (:meth:`to_dict`) when a command is built.
    """

    __slots__ = ()

    def to_dict(self) -> dict[str, Any]:
        raise NotImplementedError


def snapshot(value: Any) -> Any:
    """attrs converter: a SWML builder becomes its wire document, fixed at this moment."""
    # None (no SWML, nearly every dial) first: isinstance against a Mapping ABC is slow.
    if value is None or type(value) is dict:
        return value
    return value.to_dict() if isinstance(value, SWMLDocument) else value


def swml_field(validator: v.Validator, *, required: bool = False) -> Any:
    """A field that holds SWML (free-form JSON on the wire), given as a dict or a builder."""
    kw: dict[str, Any] = {} if required else {"default": None}
    return _field(
        validator,
        wire=None,
        raw=True,
        secret=False,
        nested=None,
        wire_read=None,
        converter=snapshot,
        **kw,
    )
