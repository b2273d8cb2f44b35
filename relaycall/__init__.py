"""
relaycall: an asyncio-native client for SignalWire's unified Calling API.

    async with relaycall.AsyncRelay(project, token, space) as relay:
        leg = await relay.send(relaycall.commands.End(call_id=call_id))

Public names live here; modules starting with ``_`` are private.
"""

from __future__ import annotations

import importlib as _importlib
import typing as _typing

from relaycall._commands.media import audio, ringtone, silence, tts
from relaycall._config import USE_DEFAULT, Limits, RetryPolicy, Timeout
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
from relaycall._models import (
    CallLeg,
    ChargeDetail,
    FabricDeviceLeg,
    RawResponse,
    SidecarAskReply,
    SidecarStatus,
)
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

# Imported on first use, by the module that needs them (or by the first
# `relaycall.NAME` / `from relaycall import NAME`): a script that only sends commands
# does not pay for the receiver (and aiohttp.web), the events, inbound calls, the
# coordinator, the SWML builder or the aiohttp/Starlette signature helpers. The imports
# below are what type checkers and IDEs see; tests/test_exports.py checks that each name
# in _LAZY is exported and comes from its module.
if _typing.TYPE_CHECKING:
    from relaycall import commands, swml
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
    from relaycall._incoming import CallParent, CallPeer, IncomingCall, SipData
    from relaycall._receiver import EventReceiver, ReceiverStats
    from relaycall._webhooks import verify_aiohttp_request, verify_starlette_request

_LAZY: dict[str, str] = {
    "commands": "relaycall.commands",
    "swml": "relaycall.swml",
    "RedisCoordinator": "relaycall._coordinator",
    "EventReceiver": "relaycall._receiver",
    "ReceiverStats": "relaycall._receiver",
    "CallStateEvent": "relaycall._events",
    "CollectEvent": "relaycall._events",
    "DenoiseEvent": "relaycall._events",
    "DetectEvent": "relaycall._events",
    "Event": "relaycall._events",
    "FaxEvent": "relaycall._events",
    "LiveEvent": "relaycall._events",
    "PlayEvent": "relaycall._events",
    "RecordEvent": "relaycall._events",
    "ReferEvent": "relaycall._events",
    "SidecarEvent": "relaycall._events",
    "StreamEvent": "relaycall._events",
    "TapEvent": "relaycall._events",
    "TranscribeEvent": "relaycall._events",
    "TranscriptEvent": "relaycall._events",
    "UnknownEvent": "relaycall._events",
    "parse_event": "relaycall._events",
    "CallParent": "relaycall._incoming",
    "CallPeer": "relaycall._incoming",
    "IncomingCall": "relaycall._incoming",
    "SipData": "relaycall._incoming",
    "verify_aiohttp_request": "relaycall._webhooks",
    "verify_starlette_request": "relaycall._webhooks",
}


def __getattr__(name: str) -> _typing.Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'relaycall' has no attribute {name!r}")
    imported = _importlib.import_module(module)
    value = imported if module == f"relaycall.{name}" else getattr(imported, name)
    globals()[name] = value  # from now on a plain attribute: __getattr__ is not asked again
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
