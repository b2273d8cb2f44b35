"""
Commands on the call itself: dial, update, end, transfer, disconnect, refer, user_event.
"""

from __future__ import annotations

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
    typed_params,
)
from relaycall._commands._swml import swml_check, swml_field
from relaycall._idempotency import Idempotency
from relaycall._models import CallLeg, FabricDeviceLeg

#: What relaycall.commands re-exports from here.
__all__ = [
    "Dial",
    "Disconnect",
    "End",
    "Refer",
    "SipReferDevice",
    "Transfer",
    "Update",
    "UserEvent",
]

Leg = CallLeg | FabricDeviceLeg

HANGUP_REASONS = ("hangup", "cancel", "busy", "noAnswer", "decline", "error")
STATUS_EVENTS = ("created", "ringing", "answered", "ended")
OUTBOUND_CODECS = (
    "OPUS",
    "OPUS@48000H@20I",
    "OPUS@24000H@20I",
    "OPUS@16000H@20I",
    "OPUS@8000H@20I",
    "G722",
    "PCMU",
    "PCMA",
    "G729",
    "VP8",
    "H264",
)
_CUSTOM_VAR_KEY = r"^(?![Ss][Ii][Gg][Nn][Aa][Ll][Ww][Ii][Rr][Ee]_|[Ss][Ww]_|[Rr][Tt][Cc]_|[Ii][Nn][Tt][Ee][Rr][Nn][Aa][Ll]_)[A-Za-z_][A-Za-z0-9_]*$"  # noqa: E501


def _custom_value_check(path: str, value: Any) -> None:
    if not value:
        v.fail(path, value, "must not be empty")
    if len(value.encode("utf-8")) > 1024:
        v.fail(path, value, "is longer than 1024 bytes (UTF-8)")


_custom_variables_check = v.str_map_check(
    max_items=20,
    key=v.string_check(
        pattern=_CUSTOM_VAR_KEY,
        rule="is not a valid variable name ([A-Za-z_][A-Za-z0-9_]*, and no signalwire_, sw_, "
        "rtc_ or internal_ prefix)",
    ),
    value=_custom_value_check,
)

_codecs_check = v.any_of(
    v.seq_check(v.enum_check(OUTBOUND_CODECS)),
    v.string_check(),
    rule=f"must be a list of codecs ({', '.join(OUTBOUND_CODECS)}) or a comma-separated string",
)
_region_check = v.any_of(
    v.string_check(), v.seq_check(v.string_check()), rule="must be a string or a list of strings"
)
_script_check = v.any_of(
    v.string_check(), swml_check, rule="must be SWML text, a URL, or a SWML object"
)


def _swml_or_url(inst: Any, label: str) -> None:
    if (inst.url is None) == (inst.swml is None):
        both = inst.url is not None
        v.fail_rule(
            f"{label}.url", "give exactly one of url or swml" + (", not both" if both else "")
        )


# Addresses the reference allows (calling-api.md §4.1 and §4.4); docs/addresses.md.
_TO = v.address_check("sip", "verto", "client", "fabric")
_FROM = v.address_check("sip", "token")
_DEST = v.address_check("sip", "url")


@command("dial", label="dial", idempotency=Idempotency.UNSAFE, top_level_id=False)
@attrs.frozen(kw_only=True)
class Dial(Command[Leg]):
    """
    Place an outbound call (``dial``).

    Give exactly one of *url* (where SWML is fetched) or *swml* (an inline SWML
    object), and *to* unless *to_script* is given. ``dial`` is never re-sent
    when its outcome is unknown: see :class:`relaycall.AmbiguousOutcomeError`.

    Example::

        Dial(from_="+15551230000", to="+15557650000", url="https://example.com/swml")
    """

    from_: str = req(v.check(_FROM), wire="from")
    to: str | None = opt(v.check(_TO))
    url: str | None = opt(v.string(min_len=1))
    swml: Mapping[str, Any] | None = swml_field(v.check(swml_check))
    to_script: str | Mapping[str, Any] | None = swml_field(v.check(_script_check))
    username: str | None = opt(v.string())
    password: str | None = opt(v.string(secret=True), secret=True)
    caller_id: str | None = opt(v.check(_FROM))
    fallback_url: str | None = opt(v.string())
    status_url: str | None = opt(v.http_url())
    status_events: Sequence[Literal["created", "ringing", "answered", "ended"]] | None = opt(
        v.check(v.seq_check(v.enum_check(STATUS_EVENTS)))
    )
    url_method: Literal["GET", "POST"] | None = opt(v.one_of("GET", "POST"))
    codecs: Sequence[str] | str | None = opt(v.check(_codecs_check))
    timeout: int | None = opt(v.integer(1, 600))
    max_price_per_minute: float | None = opt(v.number(0))
    send_digits: str | None = opt(
        v.string(pattern=r"^[0-9A-D*#w,]*$", rule="may hold only 0-9 A-D * # w ,")
    )
    region: str | Sequence[str] | None = opt(v.check(_region_check))
    custom_variables: Mapping[str, str] | None = opt(v.check(_custom_variables_check), raw=True)

    def __attrs_post_init__(self) -> None:
        _swml_or_url(self, "dial")
        if self.to is None and self.to_script is None:
            v.fail_rule("dial.to", "is required unless to_script is given")


# Its status_url goes out only when given: the session never points it at its
# EventReceiver. It says where the call's state callbacks go from then on (the
# reference's §9.2: "call status", payload undocumented), so filling it would
# silently replace the URL the call was dialed with, which may be the caller's
# own status_url; and no handle waits for an update's callbacks.
@command(
    "update",
    label="update",
    idempotency=Idempotency.UNSAFE,
    top_level_id=False,
    receiver_status_url=False,
)
@attrs.frozen(kw_only=True)
class Update(Command[Leg]):
    """
    Redirect a live call to new SWML, or change its status (``update``).

    The call id travels in ``params.id``, never at the top level. The typed
    reference requires one of *url* or *swml* even with *status* (see its §11).
    """

    call_id: str = req(v.uuid(), wire="id")
    url: str | None = opt(v.string(min_len=1))
    swml: Mapping[str, Any] | None = swml_field(v.check(swml_check))
    fallback_url: str | None = opt(v.string())
    status: Literal["canceled", "completed"] | None = opt(v.one_of("canceled", "completed"))
    status_url: str | None = opt(v.uri())

    def __attrs_post_init__(self) -> None:
        _swml_or_url(self, "update")


@command("calling.end", label="end", idempotency=Idempotency.SAFE)
@attrs.frozen(kw_only=True)
class End(Command[Leg]):
    """Hang up the call (``calling.end``)."""

    call_id: str = call_id_field()
    reason: Literal["hangup", "cancel", "busy", "noAnswer", "decline", "error"] | None = opt(
        v.one_of(*HANGUP_REASONS)
    )


@command("calling.transfer", label="transfer", idempotency=Idempotency.UNSAFE)
@attrs.frozen(kw_only=True)
class Transfer(Command[Leg]):
    """Transfer the call to a SIP URI, number, SWML URL or inline SWML object."""

    call_id: str = call_id_field()
    dest: str | Mapping[str, Any] = swml_field(
        v.check(
            v.any_of(
                _DEST,
                swml_check,
                rule="must be a SIP URI, an E.164 phone number, an SWML URL or an SWML object",
            )
        ),
        required=True,
    )


@command("calling.disconnect", label="disconnect", idempotency=Idempotency.SAFE)
@attrs.frozen(kw_only=True)
class Disconnect(Command[Leg]):
    """Unbridge connected legs without hanging up either (``calling.disconnect``)."""

    call_id: str = call_id_field()


@model("refer.device")
@attrs.frozen(kw_only=True)
class SipReferDevice(Model):
    """The SIP target of a REFER: ``{"type": "sip", "params": {...}}``."""

    to: str = req(v.string(pattern=r"^sip:", rule="must start with sip:"))
    from_: str | None = opt(v.string(pattern=r"^sip:", rule="must start with sip:"), wire="from")
    username: str | None = opt(v.string())
    password: str | None = opt(v.string(secret=True), secret=True)

    @classmethod
    def _shape(cls, params: dict[str, Any]) -> dict[str, Any]:
        return typed_params("sip", params)


@command("calling.refer", label="refer", idempotency=Idempotency.UNSAFE)
@attrs.frozen(kw_only=True)
class Refer(Command[Leg]):
    """Send a SIP REFER to move the call elsewhere (``calling.refer``)."""

    call_id: str = call_id_field()
    device: SipReferDevice = req(
        v.check(v.model_check(SipReferDevice, "a SipReferDevice")),
        nested=r.typed({"sip": SipReferDevice}),
    )
    status_url: str | None = opt(v.http_url())


@command("calling.user_event", label="user_event", idempotency=Idempotency.UNSAFE)
@attrs.frozen(kw_only=True)
class UserEvent(Command[Leg]):
    """Fire a custom event on the call; *event* is any JSON object."""

    call_id: str = call_id_field()
    event: Mapping[str, Any] = req(v.check(v.json_object_check), raw=True)
