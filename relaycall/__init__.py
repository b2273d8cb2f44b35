"""
relaycall: an asyncio-native client for SignalWire's unified Calling API.

    async with relaycall.AsyncRelay(project, token, space) as relay:
        leg = await relay.send(relaycall.commands.End(call_id=call_id))

Public names live here; modules starting with ``_`` are private.
"""

from __future__ import annotations

import importlib as _importlib
import typing as _typing

from relaycall import commands
from relaycall._commands.media import audio, ringtone, silence, tts
from relaycall._config import USE_DEFAULT, Limits, RetryPolicy, Timeout
from relaycall._coordinator import RedisCoordinator
from relaycall._events import (
    CallStateEvent,
    CollectEvent,
    DenoiseEvent,
    DetectEvent,
    Event,
    FaxEvent,
    LiveEvent,
    PlayEvent,
    RecordEvent,
    ReferEvent,
    SidecarEvent,
    StreamEvent,
    TapEvent,
    TranscribeEvent,
    TranscriptEvent,
    UnknownEvent,
    parse_event,
)
from relaycall._handles._base import Operation, Starting
from relaycall._handles.call import Call
from relaycall._handles.operations import (
    AudioStream,
    Collector,
    Detector,
    LiveTranscription,
    LiveTranslation,
    Playback,
    Recording,
    Sidecar,
    Tapping,
    Transcription,
)
from relaycall._incoming import CallParent, CallPeer, IncomingCall, SipData
from relaycall._models import (
    CallLeg,
    ChargeDetail,
    FabricDeviceLeg,
    RawResponse,
    SidecarAskReply,
    SidecarStatus,
)
from relaycall._receiver import EventReceiver, ReceiverStats
from relaycall._results import (
    CallResult,
    CollectResult,
    DetectResult,
    LiveResult,
    OperationResult,
    PlaybackResult,
    RecordingResult,
    StreamResult,
    TapResult,
    TranscriptionResult,
)
from relaycall._session import AsyncRelay
from relaycall._signature import verify_signature
from relaycall._states import CallState, OperationState, ResultReason
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
    EventParseError,
    GatewayTimeoutError,
    InternalServerError,
    InvalidStateError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
    ReadTimeout,
    RecordingTooLargeError,
    RelayError,
    ResponseValidationError,
    ServerError,
    ServiceUnavailableError,
    TLSError,
    TransportError,
    UnprocessableEntityError,
    UsageError,
    ValidationError,
    WaitTimeoutError,
)

__all__ = [
    "USE_DEFAULT",
    "APIStatusError",
    "AmbiguousOutcomeError",
    "AsyncRelay",
    "AudioStream",
    "AuthenticationError",
    "BadGatewayError",
    "BadRequestError",
    "Call",
    "CallLeg",
    "CallParent",
    "CallPeer",
    "CallResult",
    "CallState",
    "CallStateEvent",
    "ChargeDetail",
    "ClientClosedError",
    "CollectEvent",
    "CollectResult",
    "Collector",
    "ConflictError",
    "ConnectError",
    "ConnectTimeout",
    "ConnectionLostError",
    "DenoiseEvent",
    "DetectEvent",
    "DetectResult",
    "Detector",
    "ErrorItem",
    "Event",
    "EventParseError",
    "EventReceiver",
    "FabricDeviceLeg",
    "FaxEvent",
    "GatewayTimeoutError",
    "IncomingCall",
    "InternalServerError",
    "InvalidStateError",
    "Limits",
    "LiveEvent",
    "LiveResult",
    "LiveTranscription",
    "LiveTranslation",
    "NotFoundError",
    "Operation",
    "OperationResult",
    "OperationState",
    "PermissionDeniedError",
    "PlayEvent",
    "Playback",
    "PlaybackResult",
    "RateLimitError",
    "RawResponse",
    "ReadTimeout",
    "ReceiverStats",
    "RecordEvent",
    "Recording",
    "RecordingResult",
    "RecordingTooLargeError",
    "RedisCoordinator",
    "ReferEvent",
    "RelayError",
    "ResponseValidationError",
    "ResultReason",
    "RetryPolicy",
    "ServerError",
    "ServiceUnavailableError",
    "Sidecar",
    "SidecarAskReply",
    "SidecarEvent",
    "SidecarStatus",
    "SipData",
    "Starting",
    "StreamEvent",
    "StreamResult",
    "TLSError",
    "TapEvent",
    "TapResult",
    "Tapping",
    "Timeout",
    "TranscribeEvent",
    "TranscriptEvent",
    "Transcription",
    "TranscriptionResult",
    "TransportError",
    "UnknownEvent",
    "UnprocessableEntityError",
    "UsageError",
    "ValidationError",
    "WaitTimeoutError",
    "__version__",
    "audio",
    "commands",
    "parse_event",
    "ringtone",
    "silence",
    "swml",
    "tts",
    "verify_aiohttp_request",
    "verify_signature",
    "verify_starlette_request",
]

if _typing.TYPE_CHECKING:
    from relaycall import swml
    from relaycall._webhooks import verify_aiohttp_request, verify_starlette_request

#: Names loaded on first use: their module is not imported by `import relaycall`.
_LAZY = {
    "verify_aiohttp_request": "relaycall._webhooks",
    "verify_starlette_request": "relaycall._webhooks",
}


def __getattr__(name: str) -> _typing.Any:
    # relaycall.swml (the SWML builder) is imported on first use: `import relaycall`
    # does not pay for it.
    if name == "swml":
        return _importlib.import_module("relaycall.swml")
    if name in _LAZY:
        return getattr(_importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'relaycall' has no attribute {name!r}")
