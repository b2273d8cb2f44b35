"""
Play and record, their follow-ups, and the media items a play is made of.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import attrs

from relaycall import _reading as r
from relaycall import _validate as v
from relaycall._commands._base import (
    NESTED,
    Command,
    FollowUp,
    Model,
    call_id_field,
    command,
    model,
    new_control_id_field,
    opt,
    req,
    typed_params,
)
from relaycall._idempotency import Idempotency
from relaycall._models import CallLeg, FabricDeviceLeg

#: What relaycall.commands re-exports from here.
__all__ = [
    "Play",
    "PlayAudio",
    "PlayPause",
    "PlayResume",
    "PlayRingtone",
    "PlaySilence",
    "PlayStop",
    "PlayTTS",
    "PlayVolume",
    "Record",
    "RecordAudio",
    "RecordPause",
    "RecordResume",
    "RecordStop",
]

Leg = CallLeg | FabricDeviceLeg

DIRECTIONS = ("listen", "speak", "both")
GENDERS = ("male", "female")
RINGTONES = tuple(
    """au be ca cn cy cz de dk dz eg es fi fr hu il in jp ko pk pl ro rs ru sa tr uk us at bg br
    ch cl ee gr it lt mx my nl no nz ph pt se sg th za tw ve bong""".split()  # noqa: SIM905 - a word list reads best as words
)
_DTMF = r"^[0-9A-Da-d*#]*$"
_DTMF_RULE = "may hold only 0-9, A-D, * and #"


# --- play items --------------------------------------------------------------------


@model("audio")
@attrs.frozen
class PlayAudio(Model):
    """An audio file fetched over http(s). Build it with :func:`relaycall.audio`."""

    url: str = req(v.http_url())

    @classmethod
    def _shape(cls, params: dict[str, Any]) -> dict[str, Any]:
        return typed_params("audio", params)


@model("tts")
@attrs.frozen(kw_only=True)
class PlayTTS(Model):
    """Text to speech. Build it with :func:`relaycall.tts`."""

    text: str = req(v.string())
    language: str | None = opt(v.string(min_len=1))
    gender: Literal["male", "female"] | None = opt(v.one_of(*GENDERS))
    voice: str | None = opt(
        v.string(
            pattern=r"^[A-Za-z0-9.\-]+$",
            rule="may hold only letters, digits, '.' and '-' (provider voice names)",
        )
    )

    @classmethod
    def _shape(cls, params: dict[str, Any]) -> dict[str, Any]:
        return typed_params("tts", params)


@model("silence")
@attrs.frozen
class PlaySilence(Model):
    """Silence for *duration* seconds. Build it with :func:`relaycall.silence`."""

    duration: float = req(v.number(0, lo_open=True))

    @classmethod
    def _shape(cls, params: dict[str, Any]) -> dict[str, Any]:
        return typed_params("silence", params)


@model("ringtone")
@attrs.frozen
class PlayRingtone(Model):
    """A country's ringback tone; plays until stopped when *duration* is None."""

    name: str = req(v.one_of(*RINGTONES))
    duration: float | None = opt(v.number(0, lo_open=True))

    @classmethod
    def _shape(cls, params: dict[str, Any]) -> dict[str, Any]:
        return typed_params("ringtone", params)


PlayItem = PlayAudio | PlayTTS | PlaySilence | PlayRingtone
_PLAY_ITEMS = (PlayAudio, PlayTTS, PlaySilence, PlayRingtone)
_play_item = r.typed(
    {"audio": PlayAudio, "tts": PlayTTS, "silence": PlaySilence, "ringtone": PlayRingtone}
)


def tts(
    text: str,
    *,
    language: str | None = None,
    gender: Literal["male", "female"] | None = None,
    voice: str | None = None,
) -> PlayTTS:
    """
    Return a text-to-speech play item.

    Args:
        text: What to say.
        language: BCP-47 tag; falls back to the play's *language*, then ``en-US``.
        gender: ``male`` or ``female``; falls back to the play's *gender*.
        voice: A provider voice such as ``gcloud.en-US-Neural2-A``.
    """
    return PlayTTS(text=text, language=language, gender=gender, voice=voice)


def audio(url: str) -> PlayAudio:
    """Return a play item for the audio file at *url* (http or https)."""
    return PlayAudio(url)


def silence(seconds: float) -> PlaySilence:
    """Return a play item of *seconds* of silence (more than 0)."""
    return PlaySilence(seconds)


def ringtone(name: str, duration: float | None = None) -> PlayRingtone:
    """Return a ringtone play item: *name* is a country code (``us``, ``uk``...) or ``bong``."""
    return PlayRingtone(name, duration)


def _play_items_check(path: str, value: Any) -> None:
    if not isinstance(value, list | tuple):
        v.fail(path, value, "must be a list of play items")
    for i, item in enumerate(value):
        if not isinstance(item, _PLAY_ITEMS):
            v.fail(
                f"{path}[{i}]",
                item,
                "is not a play item; build one with relaycall.tts(), audio(), silence() or "
                "ringtone()",
            )


# --- play ----------------------------------------------------------------------------


@command("calling.play", label="play", idempotency=Idempotency.START)
@attrs.frozen(kw_only=True)
class Play(Command[Leg]):
    """
    Play media on the call (``calling.play``).

    Example::

        Play(call_id=call_id, play=[tts("Welcome"), silence(0.5), audio(url)], volume=-6)
    """

    call_id: str = call_id_field()
    control_id: str = new_control_id_field()
    play: Sequence[PlayItem] = req(
        v.check(_play_items_check),
        # Python takes typed items and dicts mixed; on the wire each is an object.
        nested=r.mixed_items(_play_item),
        wire_read=r.WireRead(r.items(_play_item)),
    )
    volume: float | None = opt(v.number(-40, 40))
    direction: Literal["listen", "speak", "both"] | None = opt(v.one_of(*DIRECTIONS))
    loop: int | None = opt(v.integer(0))
    language: str | None = opt(v.string(min_len=1))
    voice: str | None = opt(v.string(min_len=1))
    gender: Literal["male", "female"] | None = opt(v.one_of(*GENDERS))
    status_url: str | None = opt(v.http_url())


@command("calling.play.pause", label="play.pause", idempotency=Idempotency.SAFE)
class PlayPause(FollowUp[Leg]):
    """Pause a playback."""

    __slots__ = ()


@command("calling.play.resume", label="play.resume", idempotency=Idempotency.SAFE)
class PlayResume(FollowUp[Leg]):
    """Resume a paused playback."""

    __slots__ = ()


@command("calling.play.stop", label="play.stop", idempotency=Idempotency.SAFE)
class PlayStop(FollowUp[Leg]):
    """Stop a playback."""

    __slots__ = ()


@command("calling.play.volume", label="play.volume", idempotency=Idempotency.SAFE)
@attrs.frozen(kw_only=True)
class PlayVolume(FollowUp[Leg]):
    """Set a playback's volume, in dB from -40 to 40."""

    volume: float = req(v.number(-40, 40))


# --- record ----------------------------------------------------------------------------


@model("record.audio")
@attrs.frozen(kw_only=True)
class RecordAudio(Model):
    """
    How to record (the ``record.audio`` object). Every field is optional.

    Defaults on the server: mp3, mono, ``speak`` direction, 4 s initial timeout,
    0.5 s end-silence timeout, no length limit, ``#`` terminates.
    """

    beep: bool | None = opt(v.boolean())
    format: Literal["mp3", "wav", "mp4"] | None = opt(v.one_of("mp3", "wav", "mp4"))
    stereo: bool | None = opt(v.boolean())
    direction: Literal["listen", "speak", "both"] | None = opt(v.one_of(*DIRECTIONS))
    initial_timeout: float | None = opt(v.number(0))
    end_silence_timeout: float | None = opt(v.number(0))
    max_length: int | None = opt(v.integer(0))
    terminators: str | None = opt(v.string(pattern=_DTMF, rule=_DTMF_RULE))
    input_sensitivity: float | None = opt(v.number(0, 100))


def _record_from_wire(value: Any, _: Any) -> RecordAudio:
    """``record: {"audio": {...}}``, what :meth:`Record._shape` writes."""
    r.closed(value, ("audio",), ("audio",), "with audio")
    audio: RecordAudio = r.at("audio", r.model(RecordAudio))(value["audio"], None)
    return audio


@command("calling.record", label="record", idempotency=Idempotency.START)
@attrs.frozen(kw_only=True)
class Record(Command[Leg]):
    """
    Record the call (``calling.record``); the file's URL arrives in a ``finished`` callback.

    *audio* is sent wrapped as ``"record": {"audio": {...}}``.
    """

    call_id: str = call_id_field()
    control_id: str = new_control_id_field()
    # The mypy attrs plugin reads no attrs.Converter; the type stays RecordAudio.
    audio: RecordAudio = attrs.field(
        factory=RecordAudio,
        validator=v.check(v.model_check(RecordAudio, "a RecordAudio")),
        converter=NESTED,  # type: ignore[misc]
        metadata={
            "read": r.model(RecordAudio),
            "wire_read": r.WireRead(_record_from_wire, key="record", path="record.audio"),
        },
    )
    status_url: str | None = opt(v.http_url())

    @classmethod
    def _shape(cls, params: dict[str, Any]) -> dict[str, Any]:
        params["record"] = {"audio": params.pop("audio")}
        return params


@command("calling.record.pause", label="record.pause", idempotency=Idempotency.SAFE)
@attrs.frozen(kw_only=True)
class RecordPause(FollowUp[Leg]):
    """Pause a recording; *behavior* ``silence`` keeps the timing, ``skip`` (default) cuts."""

    behavior: Literal["skip", "silence"] | None = opt(v.one_of("skip", "silence"))


@command("calling.record.resume", label="record.resume", idempotency=Idempotency.SAFE)
class RecordResume(FollowUp[Leg]):
    """Resume a paused recording."""

    __slots__ = ()


@command("calling.record.stop", label="record.stop", idempotency=Idempotency.SAFE)
class RecordStop(FollowUp[Leg]):
    """Stop a recording; the final URL arrives in the ``finished`` callback."""

    __slots__ = ()
