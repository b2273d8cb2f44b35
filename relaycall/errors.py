"""
Every exception relaycall raises.

No aiohttp, cattrs or tenacity exception reaches user code: each is translated
into one of these, with the original chained as ``__cause__``::

    RelayError
    ├── TransportError                   couldn't talk to the server
    │   ├── ConnectError                 never connected: the request was not sent
    │   │   ├── ConnectTimeout           (also a builtin TimeoutError)
    │   │   └── TLSError                 certificate or handshake failure (not retried)
    │   ├── ConnectionLostError          sent, but the connection dropped before a reply
    │   └── ReadTimeout                  sent, but no reply in time (also a TimeoutError)
    ├── APIStatusError                   the server answered with an error status
    │   ├── BadRequestError              400
    │   ├── AuthenticationError          401
    │   ├── PermissionDeniedError        403
    │   ├── NotFoundError                404
    │   ├── ConflictError                409
    │   ├── UnprocessableEntityError     422, with the parsed ``errors`` list
    │   ├── RateLimitError               429, with ``retry_after``
    │   └── ServerError                  5xx
    │       ├── InternalServerError      500
    │       ├── BadGatewayError          502
    │       ├── ServiceUnavailableError  503
    │       └── GatewayTimeoutError      504
    ├── ResponseValidationError          a 2xx body that does not fit our models
    ├── EventParseError                  a callback body that is not an event (also ValueError)
    ├── AmbiguousOutcomeError            a non-idempotent command may or may not have run
    ├── WaitTimeoutError                 a wait on a handle ran out (also a TimeoutError)
    └── UsageError                       the program asked for something impossible
        ├── ValidationError              a parameter breaks a rule of the API (also ValueError)
        ├── InvalidStateError            a handle cannot do that in its current state
        └── ClientClosedError            the AsyncRelay was closed
"""

from __future__ import annotations

import asyncio
import builtins
import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

import attrs

from relaycall._retry_after import parse_retry_after

__all__ = [
    "APIStatusError",
    "AmbiguousOutcomeError",
    "AuthenticationError",
    "BadGatewayError",
    "BadRequestError",
    "ClientClosedError",
    "ConflictError",
    "ConnectError",
    "ConnectTimeout",
    "ConnectionLostError",
    "ErrorItem",
    "EventParseError",
    "GatewayTimeoutError",
    "InternalServerError",
    "InvalidStateError",
    "NotFoundError",
    "PermissionDeniedError",
    "RateLimitError",
    "ReadTimeout",
    "RelayError",
    "ResponseValidationError",
    "ServerError",
    "ServiceUnavailableError",
    "TLSError",
    "TransportError",
    "UnprocessableEntityError",
    "UsageError",
    "ValidationError",
    "WaitTimeoutError",
]

# Keys whose values never appear in an error message, a repr or a traceback's
# captured locals. The request body is kept on the exception for
# reconciliation, but printing it must not leak a SIP password or a bearer
# token into logs. Besides these exact keys, any key ending in one of the
# suffixes is a secret (``sippassword``, ``client_secret``, ``x-api-key``,
# ``meta_data_token``); case and ``-``/``_`` do not matter.
SECRET_KEYS = frozenset(
    {
        "password",
        "authorization_bearer_token",
        "web_hook_auth_password",
        "token",
        "authorization",
    }
)
_SECRET_SUFFIXES = (
    "password",
    "passwd",
    "secret",
    "api_key",
    "apikey",
    "_token",
    "authorization",
    "credentials",
    "private_key",
    "signing_key",
)
_REDACTED = "<redacted>"
# Deeper than any JSON relaycall sends (validation stops at 64 levels); past it a
# value is shown as this, so a cyclic structure cannot recurse without end.
_MAX_DEPTH = 100
_TOO_DEEP = "<nested too deeply>"


def is_secret_key(key: object) -> bool:
    """Whether a JSON object key names a secret (its value is never shown)."""
    if not isinstance(key, str):
        return False
    k = key.lower().replace("-", "_")
    return k in SECRET_KEYS or k.endswith(_SECRET_SUFFIXES)


def _without_token(body: Any) -> Any:
    """A request body (already redacted) whose status_url has its token masked, for a message."""
    params = body.get("params") if isinstance(body, Mapping) else None
    if not isinstance(params, Mapping):
        return body
    url = params.get("status_url")
    if not isinstance(url, str) or "?" not in url:
        return body
    base, _, query = url.partition("?")
    parts = [f"t={_REDACTED}" if p.startswith("t=") else p for p in query.split("&")]
    return {**body, "params": {**params, "status_url": f"{base}?{'&'.join(parts)}"}}


def redact(value: Any, _depth: int = 0) -> Any:
    """
    Return a copy of a JSON-like *value* with secret-bearing keys masked.
    """
    if _depth > _MAX_DEPTH:
        return _TOO_DEEP
    if isinstance(value, Mapping):
        return {
            k: (_REDACTED if is_secret_key(k) else redact(v, _depth + 1)) for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [redact(v, _depth + 1) for v in value]
    return value


# --- values whose repr is masked -------------------------------------------------------
# A secret relaycall holds (the Authorization header, a password in a request
# body) is kept in one of these: equal to the plain value, sent and JSON-encoded
# as it, but its repr() is masked, so a traceback with captured locals (pytest
# --showlocals, an error tracker), a logged dict or a debugger shows
# '<redacted>'. str() and f-strings still give the value: that is how it is sent.


class MaskedStr(str):
    """A str whose repr is masked."""

    __slots__ = ()

    def __repr__(self) -> str:
        return f"'{_REDACTED}'"


class MaskedInt(int):
    """An int (a numeric PIN, say) whose repr is masked."""

    __slots__ = ()

    def __repr__(self) -> str:
        return f"'{_REDACTED}'"


class MaskedFloat(float):
    """A float whose repr is masked."""

    __slots__ = ()

    def __repr__(self) -> str:
        return f"'{_REDACTED}'"


class MaskedDict(dict[Any, Any]):
    """A dict held under a secret key (a credentials object): its repr is masked."""

    __slots__ = ()

    def __repr__(self) -> str:
        return f"'{_REDACTED}'"


class MaskedList(list[Any]):
    """A list held under a secret key: its repr is masked."""

    __slots__ = ()

    def __repr__(self) -> str:
        return f"'{_REDACTED}'"


class MaskedBody(bytes):
    """
    An encoded JSON request body that holds a secret: its repr masks the secrets.

    The bytes sent are the real ones; only repr() (a traceback's captured
    ``data``, a ``functools.partial`` that holds it) shows them redacted.
    """

    __slots__ = ()

    def __repr__(self) -> str:
        try:
            shown = redact(json.loads(self))
        except (ValueError, RecursionError):
            return f"<{len(self)} bytes of JSON, not shown: it holds a secret>"
        return repr(json.dumps(shown, separators=(",", ":"), ensure_ascii=False).encode())


_MASKED_TYPES = (MaskedStr, MaskedInt, MaskedFloat, MaskedDict, MaskedList)


def _masked(value: Any) -> Any:
    """*value* in a type whose repr is masked, equal to it and encoded as it."""
    if isinstance(value, _MASKED_TYPES) or value is None or isinstance(value, bool):
        return value
    if isinstance(value, str):
        return MaskedStr(value)
    if isinstance(value, int):
        return MaskedInt(value)
    if isinstance(value, float):
        return MaskedFloat(value)
    if isinstance(value, Mapping):
        return MaskedDict(value)
    if isinstance(value, list | tuple):
        return MaskedList(value)
    return value


def mask_secrets(value: Any, _depth: int = 0) -> Any:
    """
    *value* with every secret key's value in a masked-repr type (see :class:`MaskedStr`).

    Copy on write: a container with no secret inside is returned as it is (so
    its repr, and an error message showing it, is unchanged), one with a
    secret is copied along the way to it; the caller's objects are never
    modified. Copied mappings become dicts, copied sequences keep list or tuple.
    """
    if _depth > _MAX_DEPTH:
        return value
    if isinstance(value, Mapping) and not isinstance(value, MaskedDict):
        out: dict[Any, Any] | None = None
        for k, v in value.items():
            new = _masked(v) if is_secret_key(k) else mask_secrets(v, _depth + 1)
            if new is not v and out is None:
                out = dict(value)
            if out is not None:
                out[k] = new
        return value if out is None else out
    if isinstance(value, list | tuple) and not isinstance(value, MaskedList):
        items = [mask_secrets(v, _depth + 1) for v in value]
        if all(new is old for new, old in zip(items, value, strict=True)):
            return value
        return tuple(items) if isinstance(value, tuple) else items
    return value


# user:password@ in a URL or SIP URI shown in a message.
_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.\-]*:(?://)?[^\s:/@'\"]*:)[^\s/@'\"]+@")


def mask_userinfo(text: str) -> str:
    """*text* with the password of any ``scheme://user:password@`` (or ``sip:user:pw@``) masked."""
    return _USERINFO.sub(rf"\1{_REDACTED}@", text) if "@" in text else text


class RelayError(Exception):
    """
    Root of every exception relaycall raises.

    *retries_taken* is how many times the request was re-sent before this
    error was final (0 for errors raised before or without a retry).
    """

    retries_taken: int = 0


# Before 3.11 asyncio.TimeoutError is its own class; our timeouts are both, so
# `except asyncio.TimeoutError` and `except TimeoutError` each catch them.
_TIMEOUT_BASES: tuple[type[BaseException], ...] = (
    (builtins.TimeoutError,)
    if issubclass(asyncio.TimeoutError, builtins.TimeoutError)
    else (builtins.TimeoutError, asyncio.TimeoutError)
)


# --- transport -------------------------------------------------------------


class TransportError(RelayError):
    """
    The request could not be completed at the network level.

    *command* names the API command that was being sent.
    """

    def __init__(self, message: str, *, command: str | None = None) -> None:
        super().__init__(message)
        self.command = command


class ConnectError(TransportError):
    """
    No connection could be made, so the request never left this process.

    Always safe to retry, even for ``dial``.
    """


class ConnectTimeout(ConnectError, *_TIMEOUT_BASES):  # type: ignore[misc]
    """
    Connecting (or waiting for a pooled connection) took longer than the connect timeout.

    Also when the connect bound is unset or not shorter than the total one: it then
    ends just before the total one (see :class:`relaycall.Timeout`). Nothing was sent.
    """


class TLSError(ConnectError):
    """The TLS handshake failed (bad certificate, protocol mismatch). Not retried."""


class ConnectionLostError(TransportError):
    """
    The connection dropped after the request was (at least partly) sent.

    The server may have acted on the command.
    """


class ReadTimeout(TransportError, *_TIMEOUT_BASES):  # type: ignore[misc]
    """
    The request was sent but no complete reply arrived in time.

    The server may have acted on the command.
    """


# --- API status ---------------------------------------------------------------


@attrs.frozen(kw_only=True)
class ErrorItem:
    """
    One entry of a 422 body's ``errors`` list.

    Unknown keys in the server's item are kept in *extra*.
    """

    type: str | None
    code: str | None
    message: str | None
    attribute: str | None = None
    url: str | None = None
    extra: Mapping[str, Any] = attrs.field(factory=dict, repr=False)

    @classmethod
    def from_wire(cls, item: Any) -> ErrorItem:
        """Build an item from one element of the server's list, tolerating any shape."""
        if not isinstance(item, Mapping):
            return cls(type=None, code=None, message=str(item))

        def _s(key: str) -> str | None:
            v = item.get(key)
            return v if isinstance(v, str) or v is None else str(v)

        known = {"type", "code", "message", "attribute", "url"}
        return cls(
            type=_s("type"),
            code=_s("code"),
            message=_s("message"),
            attribute=_s("attribute"),
            url=_s("url"),
            extra={k: v for k, v in item.items() if k not in known},
        )


_REQUEST_ID_HEADERS = ("x-request-id", "request-id", "x-signalwire-request-id", "x-amzn-requestid")


def _request_id(headers: Mapping[str, str]) -> str | None:
    lowered = {k.lower(): v for k, v in headers.items()}
    for name in _REQUEST_ID_HEADERS:
        if name in lowered:
            return lowered[name]
    return None


class APIStatusError(RelayError):
    """
    The server answered with a non-2xx status.

    Attributes:
        status_code: The HTTP status.
        request_id: The server's request id header, if it sent one.
        body: The parsed JSON body, or the raw text when it was not JSON.
        headers: The response headers.
        command: The API command that was sent.
    """

    status_code: int = 0

    def __init__(
        self,
        message: str,
        *,
        status_code: int,
        headers: Mapping[str, str] | None = None,
        body: Any = None,
        command: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.headers: Mapping[str, str] = dict(headers or {})
        self.request_id = _request_id(self.headers)
        self.body = body
        self.command = command
        self._read_details()

    def _read_details(self) -> None:
        """Hook: a subclass reads what its status carries (a 422's errors, a 429's wait)."""


class BadRequestError(APIStatusError):
    """400: the server could not read the request."""

    status_code = 400


class AuthenticationError(APIStatusError):
    """401: the project id or API token was refused."""

    status_code = 401


class PermissionDeniedError(APIStatusError):
    """403: the token lacks a scope (the Calling API needs the Voice scope)."""

    status_code = 403


class NotFoundError(APIStatusError):
    """404: the call (or operation) is unknown or already over."""

    status_code = 404


class ConflictError(APIStatusError):
    """
    409: the request conflicts with the call's state.

    For example a ``control_id`` already active on the call, or a second
    transcription. A start command that gets 409 after a retry most likely
    started on the earlier, unanswered attempt.
    """

    status_code = 409


class UnprocessableEntityError(APIStatusError):
    """
    422: the server's validation refused the parameters.

    *errors* holds the parsed items of the body's ``errors`` list.
    """

    status_code = 422

    def _read_details(self) -> None:
        raw = self.body.get("errors") if isinstance(self.body, Mapping) else None
        items: Sequence[Any] = raw if isinstance(raw, list) else []
        self.errors: tuple[ErrorItem, ...] = tuple(ErrorItem.from_wire(i) for i in items)


class RateLimitError(APIStatusError):
    """
    429: too many requests.

    *retry_after* is the server's ``Retry-After`` in seconds, when it sent a
    usable one.
    """

    status_code = 429

    def _read_details(self) -> None:
        self.retry_after: float | None = parse_retry_after(self.headers)


class ServerError(APIStatusError):
    """5xx: the server failed. For non-idempotent commands the outcome is unknown."""

    status_code = 500


class InternalServerError(ServerError):
    """500."""

    status_code = 500


class BadGatewayError(ServerError):
    """502."""

    status_code = 502


class ServiceUnavailableError(ServerError):
    """503: the server did not process the request; safe to retry."""

    status_code = 503


class GatewayTimeoutError(ServerError):
    """504."""

    status_code = 504


_STATUS_CLASSES: dict[int, type[APIStatusError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: NotFoundError,
    409: ConflictError,
    422: UnprocessableEntityError,
    429: RateLimitError,
    500: InternalServerError,
    502: BadGatewayError,
    503: ServiceUnavailableError,
    504: GatewayTimeoutError,
}


def _describe_body(body: Any) -> str:
    if isinstance(body, Mapping):
        errs = body.get("errors")
        if isinstance(errs, list) and errs:
            parts = []
            for e in errs[:5]:
                item = ErrorItem.from_wire(e)
                where = f"{item.attribute}: " if item.attribute else ""
                parts.append(f"{where}{item.message or item.code or '?'}")
            more = f" (+{len(errs) - 5} more)" if len(errs) > 5 else ""
            return "; ".join(parts) + more
        err = body.get("error")
        if isinstance(err, str):
            return err
    if isinstance(body, str):
        text = body.strip()
        return text[:200] + ("…" if len(text) > 200 else "")
    return ""


def make_status_error(
    status: int, headers: Mapping[str, str], body: Any, *, command: str | None
) -> APIStatusError:
    """
    Build the exception for an error *status*, choosing the class by status.
    """
    cls = _STATUS_CLASSES.get(status)
    if cls is None:
        cls = ServerError if status >= 500 else APIStatusError
    detail = _describe_body(body)
    what = f"{command} " if command else ""
    message = f"{what}failed with HTTP {status}" + (f": {detail}" if detail else "")
    return cls(message, status_code=status, headers=headers, body=body, command=command)


# --- the rest -------------------------------------------------------------------


class ResponseValidationError(RelayError):
    """
    A 2xx reply whose body does not fit relaycall's models.

    *body* is the raw reply; *errors* the per-field problems found.
    """

    def __init__(
        self,
        message: str,
        *,
        body: Any = None,
        errors: Sequence[str] = (),
        command: str | None = None,
    ) -> None:
        detail = "; ".join(errors[:5])
        super().__init__(message + (f": {detail}" if detail else ""))
        self.body = body
        self.errors = tuple(errors)
        self.command = command


class EventParseError(RelayError, ValueError):
    """A callback body that is not an event relaycall can read (the receiver answers 400)."""


class AmbiguousOutcomeError(RelayError):
    """
    A command that must not be repeated failed in a way that leaves its outcome unknown.

    Raised for ``dial`` (and other non-idempotent commands) after a read timeout,
    a connection dropped after sending, or a 500/502/504: the server may have
    placed the call. relaycall does not re-send it; reconcile instead (for
    example by waiting for the ``status_url`` callback or checking your call
    logs). *body* is the exact JSON body that was sent; the original error is
    ``__cause__``.
    """

    def __init__(
        self, command: str, body: Mapping[str, Any], cause: RelayError, *, hint: str = ""
    ) -> None:
        self.command = command
        self.body = body
        self.cause = cause
        super().__init__(
            f"{command} may or may not have been carried out ({cause}); it was not re-sent "
            f"because the API has no idempotency key. Reconcile before trying again.{hint} "
            # The status_url's token is the receiver's secret: a message goes to logs.
            f"Request body: {_without_token(redact(body))}"
        )


class RecordingTooLargeError(RelayError):
    """
    A recording is larger than the ``max_bytes`` given to ``download_recording`` or
    ``stream_recording``: announced so by its ``Content-Length`` (nothing was read), or
    found so while reading (nothing was kept). Not retried.

    Attributes:
        url: The recording's URL, without its query string (which may be a credential).
        max_bytes: The limit.
        content_length: The size the server announced, or None when the body
            ran over the limit without announcing one (or announcing less).
    """

    def __init__(self, url: str, max_bytes: int, content_length: int | None) -> None:
        self.url = url.partition("?")[0].partition("#")[0]
        self.max_bytes = max_bytes
        self.content_length = content_length
        if content_length is not None:
            what = f"is {content_length} bytes (Content-Length)"
        else:
            what = "sent more bytes than that"
        super().__init__(
            f"download_recording: {mask_userinfo(self.url)} {what}, over max_bytes={max_bytes}"
        )


class UsageError(RelayError):
    """The program asked relaycall for something that cannot work."""


class ValidationError(UsageError, ValueError):
    """
    A command parameter breaks a rule of the Calling API.

    Raised when the command is built, before anything is sent. *path* names the
    field (``play.volume``, ``dial.swml.sections.main[0]``), *value* is what was
    given and *rule* is what it broke.
    """

    def __init__(
        self, path: str, value: Any, rule: str, *, secret: bool = False, show_value: bool = True
    ) -> None:
        secret = secret or _secret_path(path)
        self.path = path
        # Equal to what was given, with its secrets in masked-repr types: an
        # error tracker or a debugger showing the exception's attributes shows
        # no password.
        try:
            self.value = _masked(value) if secret else mask_secrets(value)
        except Exception:  # noqa: BLE001 - a Mapping whose items() fails: keep it as given
            self.value = value
        self.rule = rule
        if not show_value:
            super().__init__(f"{path}: {rule}")
            return
        # A value at a secret key (``...connect.password``) is never shown, and
        # neither is one inside what is shown (a malformed SWML step holding a
        # password): every message is masked here, not by each check.
        shown = _REDACTED if secret else show_value_masked(value)
        super().__init__(f"{path}: {shown} {rule}")


def _secret_path(path: str) -> bool:
    """Whether a field path ends at a secret key (``a.b[0].password[2]`` -> ``password``)."""
    last = path.rsplit(".", 1)[-1].split("[", 1)[0]
    return is_secret_key(last)


def show_value_masked(value: Any, limit: int = 80) -> str:
    """A short repr of *value* for a message, with secrets masked (see :func:`mask_secrets`)."""
    if isinstance(value, bool) or value is None:
        return repr(value)
    try:
        value = mask_secrets(value)
        text = str(value) if isinstance(value, int | float) else repr(value)
    except (ValueError, RecursionError):
        # An int past Python's str() digit limit (or one nested inside the value), or
        # a structure too deep to repr: the message must still be built.
        return f"<{type(value).__name__} too large to show>"
    except Exception:  # noqa: BLE001 - a repr (or items()) that fails: the message must be built
        return f"<{type(value).__name__} that cannot be shown>"
    text = mask_userinfo(text)
    return text if len(text) <= limit else text[: limit - 3] + "..."


class WaitTimeoutError(RelayError, *_TIMEOUT_BASES):  # type: ignore[misc]
    """
    A wait on a handle ran out of time (also a builtin TimeoutError).

    Only the wait ended: the call or operation goes on.
    """


class InvalidStateError(UsageError):
    """A handle method was called in a state where it makes no sense. Nothing was sent."""


class ClientClosedError(UsageError):
    """The AsyncRelay was used after ``close()``."""
