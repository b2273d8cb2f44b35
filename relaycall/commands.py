"""
Typed commands: one frozen attrs class per command of ``POST /api/calling/calls``.

Build one and ``await relay.send(cmd)``; or let the handles (``relay.dial``,
``call.play`` ...) build them for you. Construction validates every rule of
the API reference and raises :class:`relaycall.ValidationError` naming the
field, so a bad command is never sent. ``cmd.to_wire()`` shows the exact body.

Example::

    from relaycall import commands, tts

    cmd = commands.Play(call_id=call_id, play=[tts("Hello")], volume=-3)
    await relay.send(cmd)
"""

from __future__ import annotations

import typing as _typing  # private alias: keeps typing's names out of this namespace

from relaycall._commands._base import Command, Idempotency, Model, new_control_id
from relaycall._commands.ai import (
    AIHold,
    AIMessage,
    AIReset,
    AISidecar,
    AISidecarAsk,
    AISidecarPoke,
    AISidecarStatus,
    AISidecarStop,
    AIStop,
    AIUnhold,
    LiveTranscribe,
    LiveTranscribeStart,
    LiveTranslate,
    LiveTranslateInject,
    LiveTranslateStart,
    SidecarParams,
    SidecarPermissions,
    Summarize,
)
from relaycall._commands.call import (
    Dial,
    Disconnect,
    End,
    Refer,
    SipReferDevice,
    Transfer,
    Update,
    UserEvent,
)
from relaycall._commands.media import (
    Play,
    PlayAudio,
    PlayPause,
    PlayResume,
    PlayRingtone,
    PlaySilence,
    PlayStop,
    PlayTTS,
    PlayVolume,
    Record,
    RecordAudio,
    RecordPause,
    RecordResume,
    RecordStop,
)
from relaycall._commands.operations import (
    Collect,
    CollectDigits,
    CollectSpeech,
    CollectStartInputTimers,
    CollectStop,
    Denoise,
    DenoiseStop,
    Detect,
    DetectDigit,
    DetectFax,
    DetectMachine,
    DetectStop,
    ReceiveFaxStop,
    RtpDevice,
    SendFaxStop,
    Stream,
    StreamStop,
    Tap,
    TapStop,
    Transcribe,
    TranscribeStop,
    WsDevice,
)

__all__ = [
    "BY_NAME",
    "AIHold",
    "AIMessage",
    "AIReset",
    "AISidecar",
    "AISidecarAsk",
    "AISidecarPoke",
    "AISidecarStatus",
    "AISidecarStop",
    "AIStop",
    "AIUnhold",
    "Collect",
    "CollectDigits",
    "CollectSpeech",
    "CollectStartInputTimers",
    "CollectStop",
    "Command",
    "Denoise",
    "DenoiseStop",
    "Detect",
    "DetectDigit",
    "DetectFax",
    "DetectMachine",
    "DetectStop",
    "Dial",
    "Disconnect",
    "End",
    "Idempotency",
    "LiveTranscribe",
    "LiveTranscribeStart",
    "LiveTranslate",
    "LiveTranslateInject",
    "LiveTranslateStart",
    "Model",
    "Play",
    "PlayAudio",
    "PlayPause",
    "PlayResume",
    "PlayRingtone",
    "PlaySilence",
    "PlayStop",
    "PlayTTS",
    "PlayVolume",
    "ReceiveFaxStop",
    "Record",
    "RecordAudio",
    "RecordPause",
    "RecordResume",
    "RecordStop",
    "Refer",
    "RtpDevice",
    "SendFaxStop",
    "SidecarParams",
    "SidecarPermissions",
    "SipReferDevice",
    "Stream",
    "StreamStop",
    "Summarize",
    "Tap",
    "TapStop",
    "Transcribe",
    "TranscribeStop",
    "Transfer",
    "Update",
    "UserEvent",
    "WsDevice",
    "new_control_id",
]

_ALL_COMMANDS: tuple[type[Command[_typing.Any]], ...] = (
    Dial, Update, End, Transfer, Disconnect,
    Play, PlayPause, PlayResume, PlayStop, PlayVolume,
    Record, RecordPause, RecordResume, RecordStop,
    Collect, CollectStop, CollectStartInputTimers,
    Detect, DetectStop, Tap, TapStop, Transcribe, TranscribeStop, Stream, StreamStop,
    Denoise, DenoiseStop,
    AIHold, AIUnhold, AIMessage, AIStop,
    AISidecar, AISidecarPoke, AISidecarAsk, AISidecarStop, AISidecarStatus,
    LiveTranscribe, LiveTranslate, SendFaxStop, ReceiveFaxStop, Refer, UserEvent,
)  # fmt: skip

#: Every typed command class by its wire name (``"calling.play"`` -> :class:`Play`).
BY_NAME: dict[str, type[Command[_typing.Any]]] = {c.command_name: c for c in _ALL_COMMANDS}
