"""
What the server answers: call legs, the raw reply, sidecar replies.

Replies are read leniently: unknown keys are tolerated (the server may add
fields), missing optional keys become None. Only a reply that cannot be a call
leg at all (not an object, no ``id``, a field of the wrong kind) is a
ResponseValidationError.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any

import attrs

from relaycall.errors import ResponseValidationError

if TYPE_CHECKING:
    import cattrs

__all__ = [
    "CallLeg",
    "ChargeDetail",
    "FabricDeviceLeg",
    "RawResponse",
    "SidecarAskReply",
    "SidecarStatus",
    "check_leg",
    "parse_leg",
]


def _strict_str(value: Any, _: Any) -> str:
    if not isinstance(value, str):
        raise TypeError(f"expected a string, got {type(value).__name__}")
    return value


def _number(value: Any, _: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"expected a number, got {type(value).__name__}")
    return float(value)


def _integer(value: Any, _: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float) or value != int(value):
        raise TypeError(f"expected an integer, got {value!r}")
    return int(value)


@attrs.frozen
class ChargeDetail:
    """One line of a call's charge breakdown."""

    description: str | None = None
    charge: float | None = None


@attrs.frozen(kw_only=True)
class CallLeg:
    """
    A PSTN, SIP or WebRTC call leg, as every command's 200 reply describes it.

    *status* is one of ``queued``, ``initiated``, ``created``, ``ringing``,
    ``answered``, ``ending``, ``ended``, ``failed``, ``canceled``,
    ``completed`` (kept as a string so a state the server adds later still
    parses). *raw* is the reply as received.
    """

    id: str
    from_: str | None = None
    to: str | None = None
    direction: str | None = None
    source: str | None = None
    url: str | None = None
    charge: float | None = None
    created_at: str | None = None
    charge_details: tuple[ChargeDetail, ...] = ()
    status: str | None = None
    duration: int | None = None
    duration_ms: int | None = None
    billing_ms: int | None = None
    type: str | None = None
    parent_id: str | None = None
    raw: Mapping[str, Any] = attrs.field(factory=dict, repr=False, eq=False)

    @property
    def created(self) -> datetime | None:
        """*created_at* as an aware datetime, or None when absent or unreadable."""
        return _parse_time(self.created_at)


@attrs.frozen(kw_only=True)
class FabricDeviceLeg:
    """
    A Fabric subscriber device leg (``type == "fabric_subscriber_device_leg"``).

    It has no status, duration or parent; *status* is always None.
    """

    id: str
    from_: str | None = None
    to: str | None = None
    direction: str | None = None
    source: str | None = None
    url: str | None = None
    charge: float | None = None
    created_at: str | None = None
    charge_details: tuple[ChargeDetail, ...] = ()
    status: None = None
    type: str = "fabric_subscriber_device_leg"
    raw: Mapping[str, Any] = attrs.field(factory=dict, repr=False, eq=False)

    @property
    def created(self) -> datetime | None:
        """*created_at* as an aware datetime, or None when absent or unreadable."""
        return _parse_time(self.created_at)


def _parse_time(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None


def _null_tuple(value: Any, _: Any) -> tuple[ChargeDetail, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise TypeError("expected a list")
    return tuple(_reader().structure(v, ChargeDetail) for v in value)


@functools.cache
def _reader() -> cattrs.Converter:
    """
    A converter for reading replies: lenient, detailed errors (what relaycall writes is
    strict: _writing). Made, and cattrs imported, when a reply first takes the cattrs
    path: most never do (see _fast_call_leg).
    """
    import cattrs  # noqa: PLC0415 - see above

    reader = cattrs.Converter(forbid_extra_keys=False, detailed_validation=True)
    reader.register_structure_hook(str, _strict_str)
    reader.register_structure_hook(float, _number)
    reader.register_structure_hook(int, _integer)
    reader.register_structure_hook_factory(lambda t: t in (CallLeg, FabricDeviceLeg), _leg_hook)
    return reader


def __getattr__(name: str) -> Any:
    if name == "reader":  # tests compare the fast path with it
        return _reader()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _leg_hook(cls: Any) -> Any:
    from cattrs.gen import make_dict_structure_fn, override  # noqa: PLC0415 - see _reader

    return make_dict_structure_fn(
        cls,
        _reader(),
        from_=override(rename="from"),
        raw=override(omit=True),
        charge_details=override(struct_hook=_null_tuple),
        status=override(struct_hook=(lambda v, _: None) if cls is FabricDeviceLeg else None),
    )


def _errors_of(exc: Exception) -> list[str]:
    import cattrs  # noqa: PLC0415 - imported by _reader() already

    try:
        return cattrs.transform_error(exc)
    except Exception:  # noqa: BLE001 - the error text is best-effort
        return [str(exc)]


def check_leg(body: Any) -> Mapping[str, Any]:
    """
    Check the parts of a call-leg reply that handles act on: an object with a string id and status.

    Handles keep the checked body and read the whole leg (:func:`parse_leg`)
    only when ``call.leg`` is asked for: a command the server accepted is not
    reported as failed because of a field nothing here uses.
    """
    if type(body) is not dict and not isinstance(body, Mapping):
        raise ResponseValidationError(
            f"expected a call leg object, got {type(body).__name__}", body=body
        )
    call_id, status = body.get("id"), body.get("status")
    if type(call_id) is not str:
        raise ResponseValidationError(
            f"the reply is not a call leg: id must be a string, got {call_id!r}", body=body
        )
    if status is not None and type(status) is not str:
        raise ResponseValidationError(
            f"the reply is not a call leg: status must be a string, got {status!r}", body=body
        )
    return body


def parse_leg(body: Any) -> CallLeg | FabricDeviceLeg:
    """Read a command's 200 body as a call leg."""
    if not isinstance(body, Mapping):
        raise ResponseValidationError(
            f"expected a call leg object, got {type(body).__name__}", body=body
        )
    if body.get("type") != "fabric_subscriber_device_leg":
        fast = _fast_call_leg(body)
        if fast is not None:
            return fast
    cls: type[CallLeg | FabricDeviceLeg] = (
        FabricDeviceLeg if body.get("type") == "fabric_subscriber_device_leg" else CallLeg
    )
    reader = _reader()
    import cattrs  # noqa: PLC0415 - imported by _reader() already

    try:
        leg = reader.structure(body, cls)
    except (cattrs.BaseValidationError, TypeError, ValueError, KeyError) as exc:
        raise ResponseValidationError(
            "the reply is not a call leg", body=body, errors=_errors_of(exc)
        ) from exc
    object.__setattr__(leg, "raw", body)
    return leg


_LEG_STRINGS = ("from", "to", "direction", "source", "url", "created_at", "status", "type",
                "parent_id")  # fmt: skip
_LEG_INTS = ("duration", "duration_ms", "billing_ms")


def _fast_call_leg(body: Mapping[str, Any]) -> CallLeg | None:
    """
    Build a CallLeg from a well-formed body without cattrs, or return None.

    Every command answers with a leg, so this runs once per command: plain
    type checks are a few times cheaper than the generated structuring hooks.
    Anything unusual (a wrong type, a float where an int goes) returns None
    and takes the cattrs path, which accepts or explains it exactly as before.
    """
    get = body.get
    call_id = get("id")
    if type(call_id) is not str:
        return None
    for key in _LEG_STRINGS:
        value = get(key)
        if value is not None and type(value) is not str:
            return None
    for key in _LEG_INTS:
        value = get(key)
        if value is not None and type(value) is not int:
            return None
    charge = get("charge")
    if charge is not None and type(charge) is not float:
        if type(charge) is not int:
            return None
        charge = float(charge)
    raw_details = get("charge_details")
    details: tuple[ChargeDetail, ...] = ()
    if raw_details is not None:
        if type(raw_details) is not list:
            return None
        items = []
        for item in raw_details:
            if not isinstance(item, Mapping):
                return None
            desc, amount = item.get("description"), item.get("charge")
            if (desc is not None and type(desc) is not str) or (
                amount is not None and type(amount) not in (int, float)
            ):
                return None
            items.append(ChargeDetail(desc, None if amount is None else float(amount)))
        details = tuple(items)
    # The slots set directly: the same object CallLeg(...) makes, for about half
    # the cost (a frozen attrs __init__ goes through object.__setattr__ per field,
    # and no field has a validator or converter).
    leg = _new(CallLeg)
    _set_id(leg, call_id)
    _set_from(leg, get("from"))
    _set_to(leg, get("to"))
    _set_direction(leg, get("direction"))
    _set_source(leg, get("source"))
    _set_url(leg, get("url"))
    _set_charge(leg, charge)
    _set_created_at(leg, get("created_at"))
    _set_charge_details(leg, details)
    _set_status(leg, get("status"))
    _set_duration(leg, get("duration"))
    _set_duration_ms(leg, get("duration_ms"))
    _set_billing_ms(leg, get("billing_ms"))
    _set_type(leg, get("type"))
    _set_parent_id(leg, get("parent_id"))
    _set_raw(leg, body)
    return leg


_new = object.__new__
(_set_id, _set_from, _set_to, _set_direction, _set_source, _set_url, _set_charge,
 _set_created_at, _set_charge_details, _set_status, _set_duration, _set_duration_ms,
 _set_billing_ms, _set_type, _set_parent_id, _set_raw) = (
    getattr(CallLeg, field.name).__set__ for field in attrs.fields(CallLeg)
)  # fmt: skip
assert all(f.validator is None and f.converter is None for f in attrs.fields(CallLeg))


@attrs.frozen(kw_only=True)
class SidecarStatus:
    """
    The counters ``calling.ai_sidecar.status`` reports.

    The reference describes a ``+OK key=value ...`` text line; a JSON object is
    accepted too. *counters* holds every numeric counter by name; *raw* is the
    reply as received.
    """

    ok: bool
    counters: Mapping[str, float | int]
    values: Mapping[str, str]
    raw: Any = attrs.field(repr=False)

    def __getitem__(self, key: str) -> float | int:
        return self.counters[key]

    @property
    def running(self) -> bool | None:
        """Whether the sidecar is running, when the reply says."""
        value = self.values.get("running", self.counters.get("running"))
        if value is None:
            return None
        return str(value).lower() in {"1", "true", "yes"}


_NUM = re.compile(r"-?\d+(?:\.\d+)?")


def parse_sidecar_status(body: Any) -> SidecarStatus:
    """Read the ``+OK key=value ...`` line (or a JSON object) of ``calling.ai_sidecar.status``."""
    pairs: dict[str, Any]
    ok = True
    if isinstance(body, Mapping):
        pairs = dict(body)
    elif isinstance(body, str):
        text = body.strip()
        ok = text.startswith("+OK")
        if not ok and not text.startswith("-"):
            raise ResponseValidationError("unreadable sidecar status reply", body=body)
        pairs = {}
        for token in text.split()[1:]:
            key, sep, value = token.partition("=")
            if sep:
                pairs[key] = value
    else:
        raise ResponseValidationError("unreadable sidecar status reply", body=body)
    counters: dict[str, float | int] = {}
    values: dict[str, str] = {}
    for k, val in pairs.items():
        text_val = val if isinstance(val, str) else json.dumps(val)
        values[str(k)] = text_val
        if isinstance(val, int | float) and not isinstance(val, bool):
            counters[str(k)] = val
        elif isinstance(val, str) and _NUM.fullmatch(val):
            counters[str(k)] = float(val) if "." in val else int(val)
    return SidecarStatus(ok=ok, counters=counters, values=values, raw=body)


@attrs.frozen(kw_only=True)
class SidecarAskReply:
    """
    The reply to ``calling.ai_sidecar.ask``.

    The answer comes later as an ``ask_answer`` callback carrying *ask_id*. The
    reference's prose promises an ``ask_id`` in the reply but its schema has
    none, so *ask_id* is None when the server sends none.
    """

    ask_id: str | None
    raw: Any = attrs.field(repr=False)


def parse_sidecar_ask(body: Any) -> SidecarAskReply:
    ask_id = body.get("ask_id") if isinstance(body, Mapping) else None
    return SidecarAskReply(ask_id=ask_id if isinstance(ask_id, str) else None, raw=body)


@attrs.frozen(kw_only=True)
class RawResponse:
    """
    What ``relay.execute()`` returns: the reply as it came.

    *body* is the parsed JSON, or the text when the reply was not JSON.
    """

    status: int
    headers: Mapping[str, str] = attrs.field(repr=False)
    body: Any
    retries_taken: int = 0
