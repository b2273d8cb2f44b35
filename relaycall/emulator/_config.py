"""
What the emulator is told: its configuration, and how each destination behaves.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import attrs

from relaycall.emulator._ratelimit import RateLimits

__all__ = ["AnswerAs", "EmulatorConfig", "RateLimits", "Scenario"]

AnswerAs = Literal["human", "machine", "busy", "no-answer", "failed", "declined"]
ANSWERS = ("human", "machine", "busy", "no-answer", "failed", "declined")
DETECT_RESULTS = ("HUMAN", "MACHINE", "UNKNOWN")
FAX_TONES = ("CED", "CNG")


def _answers(value: str | Sequence[str] | None) -> tuple[str, ...]:
    """A script of answers: one string is one answer; None is none."""
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    return tuple(value)


def _non_negative(_: object, attribute: attrs.Attribute[float], value: float | None) -> None:
    if value is not None and not value >= 0:
        raise ValueError(f"Scenario.{attribute.name} must be >= 0, not {value!r}")


def _str_items(
    _: object, attribute: attrs.Attribute[tuple[str, ...]], value: tuple[str, ...]
) -> None:
    for item in value:
        if not isinstance(item, str):
            raise TypeError(f"Scenario.{attribute.name} holds strings, not {item!r}")


@attrs.frozen(kw_only=True)
class Scenario:
    """
    How the far end of a dialled call behaves. Times are emulated seconds.

    Register one per destination with ``emu.scenarios["+15557650000"] = Scenario(...)``;
    a destination without one uses ``EmulatorConfig.default_scenario``.

    Attributes:
        answer: ``human`` or ``machine`` answer the call after *ring_seconds*;
            ``busy``, ``no-answer``, ``failed`` and ``declined`` end it unanswered
            (end_reason ``busy``, ``noAnswer``, ``error``, ``decline``).
        ring_seconds: How long the call rings before it is answered or refused.
            A ``no-answer`` call rings for the dial's ``timeout`` when one is given.
        dtmf: What the caller presses, one answer per input operation
            (collect, record, digit detect), consumed in order: ``("1234#", "9")``.
        speech: What the caller says, one utterance per input operation.
        input_delay: Seconds from an input operation starting to the caller
            starting to press or speak.
        digit_interval: Seconds between two scripted key presses.
        seconds_per_word: How long the caller takes to say one word.
        confidence: The confidence reported for recognised speech.
        detect: The machine-detection verdict (``HUMAN``, ``MACHINE``,
            ``UNKNOWN``); None derives it from *answer*.
        detect_seconds: How long machine or fax detection takes to decide.
        greeting_seconds: How long a machine's greeting lasts before ``READY``.
        fax_tone: ``CED`` or ``CNG`` when the far end is a fax machine.
        transcript: The text ``calling.transcribe`` reports for the call.
        hangup_after: Seconds after answer when the far end hangs up; None never.
        send_fax, receive_fax: control ids of fax operations running on the call
            once answered (as SWML ``send_fax`` / ``receive_fax`` would start them),
            so ``calling.send_fax.stop`` / ``calling.receive_fax.stop`` have
            something to stop.
    """

    answer: AnswerAs = attrs.field(default="human", validator=attrs.validators.in_(ANSWERS))
    ring_seconds: float = attrs.field(default=1.0, validator=_non_negative)
    dtmf: tuple[str, ...] = attrs.field(default=(), converter=_answers, validator=_str_items)
    speech: tuple[str, ...] = attrs.field(default=(), converter=_answers, validator=_str_items)
    input_delay: float = attrs.field(default=0.5, validator=_non_negative)
    digit_interval: float = attrs.field(default=0.2, validator=_non_negative)
    seconds_per_word: float = attrs.field(default=0.3, validator=_non_negative)
    confidence: float = 0.92
    detect: Literal["HUMAN", "MACHINE", "UNKNOWN"] | None = attrs.field(
        default=None, validator=attrs.validators.optional(attrs.validators.in_(DETECT_RESULTS))
    )
    detect_seconds: float = attrs.field(default=2.0, validator=_non_negative)
    greeting_seconds: float = attrs.field(default=3.0, validator=_non_negative)
    fax_tone: Literal["CED", "CNG"] | None = attrs.field(
        default=None, validator=attrs.validators.optional(attrs.validators.in_(FAX_TONES))
    )
    transcript: str | None = "Hello, this is a transcript from the relaycall emulator."
    hangup_after: float | None = attrs.field(default=None, validator=_non_negative)
    send_fax: str | None = None
    receive_fax: str | None = None

    @property
    def detect_result(self) -> str:
        """The machine-detection verdict this scenario gives."""
        if self.detect is not None:
            return self.detect
        return "MACHINE" if self.answer == "machine" else "HUMAN"


def _positive(_: object, attribute: attrs.Attribute[float], value: float) -> None:
    if not value > 0:
        raise ValueError(f"EmulatorConfig.{attribute.name} must be > 0, not {value!r}")


@attrs.frozen(kw_only=True)
class EmulatorConfig:
    """
    How the emulator runs. Every field has a default; ``EmulatorConfig()`` works.

    Attributes:
        project_id, token: The Basic auth credentials requests must carry.
        space_id: Reported in callback envelopes.
        signing_key: When set, every callback carries ``X-SignalWire-Signature``
            (HMAC-SHA1) and ``X-SignalWire-SHA256-Signature`` (HMAC-SHA256) of
            the URL followed by the raw body. None sends them unsigned.
        time_scale: How much faster than real time the emulated clock runs
            (10.0: a 1 s ring takes 0.1 s). Every duration is emulated seconds.
        default_scenario: How a destination without its own scenario behaves.
        audio_seconds: How long an ``audio`` play item lasts (per URL overrides
            go in ``emu.audio_durations``).
        ringtone_seconds: How long a ringtone item without a ``duration`` plays;
            None (the default) plays it until stopped.
        collect_initial_timeout: The "server setting" a collect uses when its
            request leaves ``initial_timeout`` out; ``collect_digit_timeout``,
            ``collect_end_silence_timeout`` and ``collect_speech_timeout`` are the
            same for the other timeouts.
        detect_timeout: ``calling.detect``'s default ``timeout`` (the reference says 30).
        setup_seconds: From dial to ``created`` (and from ``created`` to ``ringing``).
        allow_external_callbacks: Deliver callbacks to hosts that are not
            loopback. Off by default: they are journaled as ``blocked``.
        callback_timeout: Seconds (real) a callback delivery may take.
        callback_workers: How many deliveries run at once. Callbacks about one
            call are always delivered one at a time, in order.
        journal_size: How many journal entries are kept (oldest dropped first).
        keep_ended_calls: How many ended calls stay inspectable in ``emu.calls``.
        public_url: The base URL recording links use; None takes it from each
            request's Host (right for a direct connection).
        sidecar_ask_id_in_reply: Add ``ask_id`` to the ``calling.ai_sidecar.ask``
            reply (the prose promises one; the declared body has none).
        rate_limits: The POST token bucket, its ``X-RateLimit-*`` headers and
            the new-call queue (:class:`RateLimits`; only the headers are on
            by default). Change them at run time with ``emu.set_rate_limits()``.
        media_websockets: Connect to loopback ``calling.stream`` URLs and ``ws``
            tap devices and send them audio frames (docs/emulator.md).
    """

    project_id: str = "test-project"
    token: str = attrs.field(default="test-token", repr=False)
    space_id: str = "00000000-0000-4000-8000-000000000000"
    signing_key: str | None = attrs.field(default=None, repr=False)
    time_scale: float = attrs.field(default=1.0, validator=_positive)
    default_scenario: Scenario = attrs.field(factory=Scenario)
    audio_seconds: float = 5.0
    ringtone_seconds: float | None = None
    collect_initial_timeout: float = 5.0
    collect_digit_timeout: float = 5.0
    collect_end_silence_timeout: float = 1.0
    collect_speech_timeout: float = 60.0
    detect_timeout: float = 30.0
    setup_seconds: float = 0.1
    allow_external_callbacks: bool = False
    callback_timeout: float = 10.0
    callback_workers: int = 16
    journal_size: int = 10_000
    keep_ended_calls: int = 10_000
    public_url: str | None = None
    sidecar_ask_id_in_reply: bool = False
    rate_limits: RateLimits = attrs.field(
        factory=RateLimits, validator=attrs.validators.instance_of(RateLimits)
    )
    media_websockets: bool = True
