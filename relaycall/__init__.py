"""
relaycall: an asyncio-native client for SignalWire's unified Calling API.

    async with relaycall.AsyncRelay(project, token, space) as relay:
        leg = await relay.send(relaycall.commands.End(call_id=call_id))

Public names live here; modules starting with ``_`` are private.
"""

from __future__ import annotations

from relaycall import commands
from relaycall._commands.media import audio, ringtone, silence, tts
from relaycall._config import USE_DEFAULT, Limits, RetryPolicy, Timeout
from relaycall._models import (
    CallLeg,
    ChargeDetail,
    FabricDeviceLeg,
    RawResponse,
    SidecarAskReply,
    SidecarStatus,
)
from relaycall._session import AsyncRelay
from relaycall._version import __version__
from relaycall.errors import (
    AmbiguousOutcomeError,
    APIStatusError,
    AuthenticationError,
    BadGatewayError,
    BadRequestError,
    ClientClosedError,
    ConflictError,
    ConnectError,
    ConnectionLostError,
    ConnectTimeout,
    ErrorItem,
    GatewayTimeoutError,
    InternalServerError,
    InvalidStateError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
    ReadTimeout,
    RelayError,
    ResponseValidationError,
    ServerError,
    ServiceUnavailableError,
    TLSError,
    TransportError,
    UnprocessableEntityError,
    UsageError,
    ValidationError,
)

__all__ = [
    "USE_DEFAULT",
    "APIStatusError",
    "AmbiguousOutcomeError",
    "AsyncRelay",
    "AuthenticationError",
    "BadGatewayError",
    "BadRequestError",
    "CallLeg",
    "ChargeDetail",
    "ClientClosedError",
    "ConflictError",
    "ConnectError",
    "ConnectTimeout",
    "ConnectionLostError",
    "ErrorItem",
    "FabricDeviceLeg",
    "GatewayTimeoutError",
    "InternalServerError",
    "InvalidStateError",
    "Limits",
    "NotFoundError",
    "PermissionDeniedError",
    "RateLimitError",
    "RawResponse",
    "ReadTimeout",
    "RelayError",
    "ResponseValidationError",
    "RetryPolicy",
    "ServerError",
    "ServiceUnavailableError",
    "SidecarAskReply",
    "SidecarStatus",
    "TLSError",
    "Timeout",
    "TransportError",
    "UnprocessableEntityError",
    "UsageError",
    "ValidationError",
    "__version__",
    "audio",
    "commands",
    "ringtone",
    "silence",
    "tts",
]
