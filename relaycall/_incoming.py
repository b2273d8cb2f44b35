"""
Inbound calls: the SWML fetch's body read strictly, and the :class:`IncomingCall` handle.

When a call reaches a number whose SWML handler is ``receiver.swml_url`` (or a
``dial`` whose ``url`` is), the platform POSTs the SWML fetch (reference §9.6)
and runs the document it gets back. :func:`read_fetch` reads that body into
typed values; anything not of the documented shape raises
:class:`FetchShapeError` (the receiver answers 400). The body and every object
in it are closed, except ``vars``, ``envs``, ``params`` and
``sip_data.sip_contact_params``, which are free-form objects.

:class:`IncomingCall` is a :class:`relaycall.Call` (same methods, same waits)
whose id is the fetch's ``call.call_id``, with the fetch's fields typed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Set
from typing import Any, Literal

import attrs

from relaycall._commands.call import UserEvent
from relaycall._handles.call import Call
from relaycall._validate import fail, is_number
from relaycall.errors import InvalidStateError, WaitTimeoutError

__all__ = ["CallParent", "CallPeer", "FetchShapeError", "IncomingCall", "SipData", "read_fetch"]

#: The default document (the handler returned None): answer, then hand the
#: call to the app, which drives it through the Calling API. ``sleep`` with
#: ``duration: -1`` never ends (SWML reference, ``sleep``).
DEFAULT_DOCUMENT: dict[str, Any] = {
    "version": "1.0.0",
    "sections": {"main": [{"answer": {}}, {"sleep": {"duration": -1}}]},
}

#: The document served when the app cannot give one in time (no handler, a
#: handler that raised, ran over its budget or returned an invalid document,
#: no AsyncRelay bound): end the call. A caller of a broken app hears the
#: call end, and can call again, rather than silence for as long as they hold;
#: an unanswered inbound call is not answered (nor billed as answered).
FALLBACK_DOCUMENT: dict[str, Any] = {"version": "1.0.0", "sections": {"main": [{"hangup": {}}]}}


class FetchShapeError(ValueError):
    """A SWML fetch body that is not of the shape the reference documents (§9.6)."""


@attrs.frozen
class SipData:
    """``call.sip_data`` of a SIP call's fetch: the request, From, To and Contact parts."""

    sip_req_host: str
    sip_req_uri: str
    sip_req_user: str
    sip_from_host: str
    sip_from_uri: str
    sip_from_user: str
    sip_to_host: str
    sip_to_uri: str
    sip_to_user: str
    sip_contact_user: str
    sip_contact_port: str
    sip_contact_uri: str
    sip_contact_host: str
    sip_contact_params: dict[str, Any]


@attrs.frozen
class CallParent:
    """``call.parent``: the call that created this one."""

    device_type: Literal["sip", "phone", "webrtc"]
    call_id: str
    node_id: str


@attrs.frozen
class CallPeer:
    """``call.peer``: the call this one is connected with."""

    call_id: str
    node_id: str


@attrs.frozen
class Fetch:
    """One SWML fetch body, read (see :func:`read_fetch`)."""

    call_id: str
    node_id: str
    segment_id: str
    call_state: str
    direction: Literal["inbound", "outbound"]
    type: Literal["sip", "phone", "webrtc"]
    from_: str
    to: str
    headers: tuple[tuple[str, str], ...]
    project_id: str
    space_id: str
    tag: str | None
    from_number: str | None
    to_number: str | None
    dial_winner: bool
    parent: CallParent | None
    peer: CallPeer | None
    sip_data: SipData | None
    vars: dict[str, Any]
    envs: dict[str, Any]
    params: dict[str, Any]
    raw: dict[str, Any]


_SIP_FIELDS = tuple(f.name for f in attrs.fields(SipData) if f.name != "sip_contact_params")
_CALL_REQUIRED = frozenset({
    "call_id", "node_id", "segment_id", "call_state", "direction", "type", "from", "to",
    "headers", "project_id", "space_id",
})  # fmt: skip
_DEVICE_TYPES = ("sip", "phone", "webrtc")


def read_fetch(payload: Any) -> Fetch:
    """
    Read a decoded SWML fetch body; raise :class:`FetchShapeError` naming the field at fault.

    Required keys must be there, every value of the type the reference gives,
    enums among their values, ``project_id``/``space_id`` UUIDs. A key the
    reference does not define is kept in *raw* and otherwise ignored, and an
    absent ``vars``, ``envs`` or ``params`` is empty: a 400 here fails a
    caller's call, so a field the platform adds (or one of SignalWire's own
    examples leaves out: ``envs``) must not.
    """
    if isinstance(payload, dict):
        payload = {"vars": {}, "envs": {}, "params": {}, **payload}
    body = _object("body", payload, {"call", "vars", "envs", "params"})
    call = _object("call", body["call"], _CALL_REQUIRED)
    headers = []
    raw_headers = call["headers"]
    if not isinstance(raw_headers, list):
        raise FetchShapeError("call.headers: must be an array")
    for i, header in enumerate(raw_headers):
        h = _object(f"call.headers[{i}]", header, {"name", "value"})
        headers.append((_text(f"call.headers[{i}].name", h["name"]),
                        _text(f"call.headers[{i}].value", h["value"])))  # fmt: skip
    parent = peer = sip = None
    if "parent" in call:
        p = _object("call.parent", call["parent"], {"device_type", "call_id", "node_id"})
        parent = CallParent(
            _enum("call.parent.device_type", p["device_type"], _DEVICE_TYPES),  # type: ignore[arg-type]
            _text("call.parent.call_id", p["call_id"]),
            _text("call.parent.node_id", p["node_id"]),
        )
    if "peer" in call:
        p = _object("call.peer", call["peer"], {"call_id", "node_id"})
        peer = CallPeer(_text("call.peer.call_id", p["call_id"]),
                        _text("call.peer.node_id", p["node_id"]))  # fmt: skip
    if "sip_data" in call:
        s = _object("call.sip_data", call["sip_data"], {*_SIP_FIELDS, "sip_contact_params"})
        params = s["sip_contact_params"]
        if not isinstance(params, dict):
            raise FetchShapeError("call.sip_data.sip_contact_params: must be an object")
        sip = SipData(
            **{name: _text(f"call.sip_data.{name}", s[name]) for name in _SIP_FIELDS},
            sip_contact_params=params,
        )
    for name in ("vars", "envs", "params"):
        if not isinstance(body[name], dict):
            raise FetchShapeError(f"{name}: must be an object")
    winner = call.get("dial_winner")
    if winner is not None and winner != "true":
        raise FetchShapeError('call.dial_winner: must be "true" when present')
    call_id = _text("call.call_id", call["call_id"])
    if not call_id:
        raise FetchShapeError("call.call_id: must not be empty")
    return Fetch(
        call_id=call_id,
        node_id=_text("call.node_id", call["node_id"]),
        segment_id=_text("call.segment_id", call["segment_id"]),
        call_state=_text("call.call_state", call["call_state"]),
        direction=_enum("call.direction", call["direction"], ("inbound", "outbound")),  # type: ignore[arg-type]
        type=_enum("call.type", call["type"], _DEVICE_TYPES),  # type: ignore[arg-type]
        from_=_text("call.from", call["from"]),
        to=_text("call.to", call["to"]),
        headers=tuple(headers),
        project_id=_uuid("call.project_id", call["project_id"]),
        space_id=_uuid("call.space_id", call["space_id"]),
        tag=_optional_text("call.tag", call.get("tag")),
        from_number=_optional_text("call.from_number", call.get("from_number")),
        to_number=_optional_text("call.to_number", call.get("to_number")),
        dial_winner=winner == "true",
        parent=parent,
        peer=peer,
        sip_data=sip,
        vars=body["vars"],
        envs=body["envs"],
        params=body["params"],
        raw=body,
    )


def _object(path: str, value: Any, required: Set[str]) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise FetchShapeError(f"{path}: must be an object")
    for key in required:
        if key not in value:
            raise FetchShapeError(f"{path}.{key}: is required")
    return value


def _text(path: str, value: Any) -> str:
    if not isinstance(value, str):
        raise FetchShapeError(f"{path}: must be a string")
    try:
        value.encode()
    except UnicodeEncodeError:  # a lone surrogate from a \ud800 escape
        raise FetchShapeError(f"{path}: is not valid Unicode") from None
    return value


def _optional_text(path: str, value: Any) -> str | None:
    return None if value is None else _text(path, value)


def _enum(path: str, value: Any, allowed: tuple[str, ...]) -> str:
    if value not in allowed or not isinstance(value, str):
        raise FetchShapeError(f"{path}: must be one of {', '.join(allowed)}")
    return value


def _uuid(path: str, value: Any) -> str:
    text = _text(path, value)
    parts = text.split("-")
    if [len(p) for p in parts] != [8, 4, 4, 4, 12] or not all(
        p.isascii() and all(c in "0123456789abcdefABCDEF" for c in p) for p in parts
    ):
        raise FetchShapeError(f"{path}: must be a UUID")
    return text


class IncomingCall(Call):
    """
    A call that reached the app through the SWML fetch: a :class:`relaycall.Call`,
    with what the fetch said about it.

    The handler registered with ``@receiver.on_incoming_call`` gets one; its
    id is the fetch's ``call.call_id`` and it takes the same commands and
    waits as a dialed call, once the document the handler returned has
    answered it (:meth:`answered`). For a call this session dialed with
    ``url=receiver.swml_url``, it is the very handle ``relay.dial()`` returned.
    A later fetch for the same call (an ``execute`` or ``transfer`` step
    pointing at ``swml_url``) updates the fields (``params`` then carries the
    step's parameters).
    """

    __slots__ = ()  # the fetch lives in Call's _incoming slot: a dialed Call can become one

    @property
    def fetch(self) -> Fetch:
        """The latest fetch for this call, typed."""
        fetch = self._incoming
        assert isinstance(fetch, Fetch)
        return fetch

    @property
    def from_(self) -> str:
        """The caller: ``call.from`` (E.164 for a phone call, a SIP URI...)."""
        return self.fetch.from_

    @property
    def to(self) -> str:
        """The callee: ``call.to``."""
        return self.fetch.to

    @property
    def direction(self) -> Literal["inbound", "outbound"]:
        """``inbound`` for a call to a number; ``outbound`` for a dial's fetch."""
        return self.fetch.direction

    @property
    def type(self) -> Literal["sip", "phone", "webrtc"]:
        return self.fetch.type

    @property
    def call_state(self) -> str:
        """``call.call_state`` as the fetch gave it (``state`` is the latest known here)."""
        return self.fetch.call_state

    @property
    def headers(self) -> tuple[tuple[str, str], ...]:
        """The call's headers as ``(name, value)`` pairs, in order (a name may repeat)."""
        return self.fetch.headers

    def header(self, name: str) -> str | None:
        """The first header called *name* (any case), or None."""
        wanted = name.lower()
        return next((v for k, v in self.fetch.headers if k.lower() == wanted), None)

    @property
    def sip_data(self) -> SipData | None:
        """SIP details, for a SIP call (None otherwise)."""
        return self.fetch.sip_data

    @property
    def node_id(self) -> str:
        return self.fetch.node_id

    @property
    def segment_id(self) -> str:
        return self.fetch.segment_id

    @property
    def project_id(self) -> str:
        return self.fetch.project_id

    @property
    def space_id(self) -> str:
        return self.fetch.space_id

    @property
    def tag(self) -> str | None:
        return self.fetch.tag

    @property
    def from_number(self) -> str | None:
        """For phone calls, the caller's number."""
        return self.fetch.from_number

    @property
    def to_number(self) -> str | None:
        """For phone calls, the number called."""
        return self.fetch.to_number

    @property
    def dial_winner(self) -> bool:
        """Whether this leg won a parallel dial."""
        return self.fetch.dial_winner

    @property
    def parent(self) -> CallParent | None:
        return self.fetch.parent

    @property
    def peer(self) -> CallPeer | None:
        return self.fetch.peer

    @property
    def vars(self) -> dict[str, Any]:
        """SWML variables set so far (empty on the first fetch)."""
        return self.fetch.vars

    @property
    def envs(self) -> dict[str, Any]:
        """Account and project variables, with a dial's ``custom_variables``."""
        return self.fetch.envs

    @property
    def params(self) -> dict[str, Any]:
        """Parameters of the ``execute``/``transfer`` step that fetched (empty on the first)."""
        return self.fetch.params

    @property
    def raw(self) -> dict[str, Any]:
        """The whole fetch body, as decoded."""
        return self.fetch.raw

    def __repr__(self) -> str:
        return f"<IncomingCall id={self.id} from={self.from_!r} to={self.to!r} state={self._state}>"

    async def answered(self, timeout: float = 10.0) -> None:
        """
        Wait until the platform has answered this call; raise WaitTimeoutError after *timeout* s.

        The platform posts no call-state callback for a call run by SWML
        (docs/inbound.md), so this asks: it sends the same harmless
        ``calling.user_event`` as the quiet-call probe (``{"type":
        "relaycall.probe"}``) every 0.2 s and reads the call leg each reply
        carries. It returns at once when the call is known answered (the
        fetch of a dial says so). Raises :class:`relaycall.InvalidStateError`
        if the call has ended, :class:`relaycall.NotFoundError` if the server
        no longer knows it.
        """
        if not is_number(timeout) or timeout <= 0:
            # is_number: finite, and an int a float can hold (10**400 would overflow below).
            fail("answered.timeout", timeout, "must be a finite number of seconds > 0")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            if self._state == "answered":
                return
            if self._ended:
                raise InvalidStateError(f"{self!r} ended before it was answered")
            await self._command(
                "answered", UserEvent(call_id=self.id, event={"type": "relaycall.probe"})
            )
            if self._state == "answered":
                return
            left = deadline - loop.time()
            if left <= 0:
                raise WaitTimeoutError(f"{self!r} was not answered within {timeout:g} s")
            await asyncio.sleep(min(0.2, left))


def document_of(value: Any) -> Any:
    """A handler's return value as a plain document: a builder's ``to_dict()``, a dict."""
    to_dict = getattr(value, "to_dict", None)
    if callable(to_dict) and not isinstance(value, Mapping):
        return to_dict()
    if isinstance(value, Mapping):
        return dict(value)
    return value
