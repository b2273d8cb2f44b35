"""
Faults on demand: replies that fail, arrive late or never, and callbacks that
go missing, twice, late or out of order.

Each fault is a rule: what it does, which requests or callbacks it applies to
(a command name; an event type or a call id), and how many of them (the next
*times*, or each one with a *probability* drawn from the rule's own seeded
random generator, so a run is repeatable). Rules are tried oldest first; a
rule that has been used *times* times is removed.

Request faults are applied by the endpoint (``_app``), callback faults by the
outbox when a callback is produced, so which callbacks a probability picks
depends only on the order the emulated calls produce them.
"""

from __future__ import annotations

import enum
import http
import itertools
import random
from collections.abc import Mapping
from typing import Any, Final, Literal

import attrs

__all__ = ["AUTO", "CALLBACK_FAULTS", "REQUEST_FAULTS", "Fault", "FaultKind", "Faults"]

FaultKind = Literal[
    "fail",
    "drop_connection",
    "latency",
    "drop_callbacks",
    "duplicate_callbacks",
    "delay_callbacks",
    "reorder_callbacks",
]
#: Faults applied to requests of the API endpoint.
REQUEST_FAULTS: Final = ("fail", "drop_connection", "latency")
#: Faults applied to status callbacks.
CALLBACK_FAULTS: Final = (
    "drop_callbacks",
    "duplicate_callbacks",
    "delay_callbacks",
    "reorder_callbacks",
)


class _Auto(enum.Enum):
    token = 0

    def __repr__(self) -> str:
        return "AUTO"


#: The default of ``times``: once, or on every match when a *probability* is given.
AUTO: Final = _Auto.token


@attrs.define(eq=False, kw_only=True)
class Fault:
    """
    One fault rule. Read it (``hits`` counts how often it acted); remove it with
    :meth:`Faults.remove`.

    Attributes:
        id: A short id (``f1``, ``f2``...), also used by the control API.
        kind: What it does (see :class:`Faults`).
        times: How many more times it acts; None without limit.
        probability: The chance it acts on each match; None always.
        seed: Seeds the rule's random generator (for *probability*).
        command: Only requests with this ``command`` (request faults).
        event_type: Only callbacks of this ``event_type`` (callback faults).
        call_id: Only callbacks about this call (callback faults).
        status: The status a ``fail`` answers with.
        retry_after: The ``Retry-After`` a ``fail`` sends, in seconds (a 429
            always sends one: 1 unless given).
        processed: For ``fail``: carry the command out first, then answer the
            error (shows why a 500 on ``dial`` is ambiguous).
        seconds: ``latency``: real seconds added before the reply;
            ``delay_callbacks``: emulated seconds a callback is held;
            ``reorder_callbacks``: the most emulated seconds a callback waits
            for the one after it.
        hits: How many times it acted.
    """

    id: str
    kind: FaultKind
    times: int | None = None
    probability: float | None = None
    seed: int | None = None
    command: str | None = None
    event_type: str | None = None
    call_id: str | None = None
    status: int | None = None
    retry_after: float | None = None
    processed: bool = False
    seconds: float | None = None
    hits: int = 0
    _rng: random.Random = attrs.field(factory=random.Random, repr=False)

    def __attrs_post_init__(self) -> None:
        self._rng.seed(0 if self.seed is None else self.seed)

    @property
    def spent(self) -> bool:
        return self.times is not None and self.hits >= self.times

    def _fires(self) -> bool:
        """Whether this matching request or callback is hit (and count it)."""
        if self.spent:
            return False
        if self.probability is not None and self._rng.random() >= self.probability:
            return False
        self.hits += 1
        return True

    def to_json(self) -> dict[str, Any]:
        """The rule as the control API shows it (unset options left out)."""
        out: dict[str, Any] = {"id": self.id, "fault": self.kind, "hits": self.hits}
        for name in (
            "times", "probability", "seed", "command", "event_type", "call_id", "status",
            "retry_after", "seconds",
        ):  # fmt: skip
            value = getattr(self, name)
            if value is not None:
                out[name] = value
        if self.kind == "fail":
            out["processed"] = self.processed
        return out

    # --- what a fail answers ----------------------------------------------------------------

    def reply_body(self) -> dict[str, Any]:
        assert self.status is not None
        try:
            phrase = http.HTTPStatus(self.status).phrase
        except ValueError:
            phrase = "Error"
        return {"error": phrase}

    def reply_headers(self) -> dict[str, str]:
        retry_after = self.retry_after
        if retry_after is None and self.status == 429:
            retry_after = 1
        if retry_after is None:
            return {}
        return {"Retry-After": format_seconds(retry_after)}


def format_seconds(seconds: float) -> str:
    """``Retry-After`` text: an integer when whole (as HTTP says), else a decimal."""
    if float(seconds).is_integer():
        return str(int(seconds))
    return f"{seconds:.3f}".rstrip("0")


def _check_times(times: int | _Auto | None, probability: float | None) -> int | None:
    if times is AUTO:
        return None if probability is not None else 1
    if times is not None and (isinstance(times, bool) or not isinstance(times, int) or times < 1):
        raise ValueError(f"times must be a positive integer or None, not {times!r}")
    return times


def _check_seed(seed: Any) -> None:
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise ValueError(f"seed must be an integer or None, not {seed!r}")


def _check_probability(probability: float | None) -> None:
    if probability is not None and (
        isinstance(probability, bool)
        or not isinstance(probability, int | float)
        or not 0 <= probability <= 1
    ):
        raise ValueError(f"probability must be between 0 and 1, not {probability!r}")


def _check_seconds(name: str, seconds: Any, *, allow_none: bool = False) -> None:
    if seconds is None and allow_none:
        return
    if isinstance(seconds, bool) or not isinstance(seconds, int | float) or not seconds >= 0:
        raise ValueError(f"{name} must be a number of seconds >= 0, not {seconds!r}")


def _check_name(name: str, value: Any) -> None:
    if value is not None and (not isinstance(value, str) or not value):
        raise ValueError(f"{name} must be a non-empty string, not {value!r}")


class Faults:
    """
    The fault rules of one emulator (``emu.faults``).

    Requests (the ``POST /api/calling/calls`` endpoint, after authentication
    and the POST rate limit)::

        emu.faults.fail(503)                          # the next reply is a 503
        emu.faults.fail(429, times=2, retry_after=2)  # two 429s with Retry-After: 2
        emu.faults.fail(500, command="dial", processed=True)  # the call is placed, then 500
        emu.faults.drop_connection(command="dial")    # placed, then the connection is closed
        emu.faults.latency(0.5)                       # every reply 0.5 s (real) late

    Callbacks::

        emu.faults.drop_callbacks(event_type="calling.call.play")   # the next one is lost
        emu.faults.duplicate_callbacks(probability=0.5, seed=7)     # each one, at random
        emu.faults.delay_callbacks(2.0, times=3)      # the next three, 2 emulated s late
        emu.faults.reorder_callbacks()                # the next one swaps with its successor

    *times* defaults to once, or to every match when *probability* is given;
    None means every match until the rule is removed.
    """

    def __init__(self) -> None:
        self._rules: list[Fault] = []
        self._ids = itertools.count(1)

    def __repr__(self) -> str:
        return f"<Faults {[f.to_json() for f in self._rules]}>"

    def __len__(self) -> int:
        return len(self._rules)

    @property
    def rules(self) -> list[Fault]:
        """The active rules, oldest first."""
        return list(self._rules)

    def _add(self, kind: FaultKind, **fields: Any) -> Fault:
        _check_seed(fields.get("seed"))
        fault = Fault(id=f"f{next(self._ids)}", kind=kind, **fields)
        self._rules.append(fault)
        return fault

    # --- request faults -----------------------------------------------------------------------

    def fail(
        self,
        status: int,
        times: int | _Auto | None = AUTO,
        *,
        command: str | None = None,
        retry_after: float | None = None,
        processed: bool = False,
        probability: float | None = None,
        seed: int | None = None,
    ) -> Fault:
        """
        Answer the next *times* requests (of *command*, if given) with *status*
        (400-599; typically 429, 500, 502, 503) and ``{"error": "<reason>"}``,
        without carrying them out unless *processed*.
        """
        if isinstance(status, bool) or not isinstance(status, int) or not 400 <= status <= 599:
            raise ValueError(f"status must be an error status 400-599, not {status!r}")
        _check_seconds("retry_after", retry_after, allow_none=True)
        _check_name("command", command)
        _check_probability(probability)
        if not isinstance(processed, bool):
            raise ValueError(f"processed must be true or false, not {processed!r}")
        return self._add(
            "fail", times=_check_times(times, probability), probability=probability, seed=seed,
            command=command, status=status, retry_after=retry_after, processed=processed,
        )  # fmt: skip

    def drop_connection(
        self,
        times: int | _Auto | None = AUTO,
        *,
        command: str | None = None,
        probability: float | None = None,
        seed: int | None = None,
    ) -> Fault:
        """
        Read the next *times* requests (of *command*, if given), carry them out,
        then close the connection without answering.
        """
        _check_name("command", command)
        _check_probability(probability)
        return self._add(
            "drop_connection", times=_check_times(times, probability), probability=probability,
            seed=seed, command=command,
        )  # fmt: skip

    def latency(
        self,
        seconds: float,
        times: int | None = None,
        *,
        command: str | None = None,
        probability: float | None = None,
        seed: int | None = None,
    ) -> Fault:
        """
        Hold each reply (to *command*, if given) *seconds* of real time after the
        command was carried out; by default every reply until removed.
        """
        _check_seconds("seconds", seconds)
        _check_name("command", command)
        _check_probability(probability)
        _check_times(times, probability)
        return self._add(
            "latency", times=times, probability=probability, seed=seed, command=command,
            seconds=float(seconds),
        )  # fmt: skip

    # --- callback faults -----------------------------------------------------------------------

    def _callback_rule(  # noqa: PLR0917 - private
        self,
        kind: FaultKind,
        times: int | _Auto | None,
        event_type: str | None,
        call_id: str | None,
        probability: float | None,
        seed: int | None,
        seconds: float | None = None,
    ) -> Fault:
        _check_name("event_type", event_type)
        _check_name("call_id", call_id)
        _check_probability(probability)
        return self._add(
            kind, times=_check_times(times, probability), probability=probability, seed=seed,
            event_type=event_type, call_id=call_id, seconds=seconds,
        )  # fmt: skip

    def drop_callbacks(
        self,
        times: int | _Auto | None = AUTO,
        *,
        event_type: str | None = None,
        call_id: str | None = None,
        probability: float | None = None,
        seed: int | None = None,
    ) -> Fault:
        """Lose callbacks: they are journaled ``dropped`` and never posted."""
        return self._callback_rule("drop_callbacks", times, event_type, call_id, probability, seed)

    def duplicate_callbacks(
        self,
        times: int | _Auto | None = AUTO,
        *,
        event_type: str | None = None,
        call_id: str | None = None,
        probability: float | None = None,
        seed: int | None = None,
    ) -> Fault:
        """Post callbacks twice, back to back (the same body and signature)."""
        return self._callback_rule(
            "duplicate_callbacks", times, event_type, call_id, probability, seed
        )

    def delay_callbacks(
        self,
        seconds: float,
        times: int | _Auto | None = AUTO,
        *,
        event_type: str | None = None,
        call_id: str | None = None,
        probability: float | None = None,
        seed: int | None = None,
    ) -> Fault:
        """
        Hold callbacks *seconds* of emulated time before queueing them; callbacks
        produced meanwhile go ahead, so a delayed one may arrive after them.
        """
        _check_seconds("seconds", seconds)
        return self._callback_rule(
            "delay_callbacks", times, event_type, call_id, probability, seed, float(seconds)
        )

    def reorder_callbacks(
        self,
        times: int | _Auto | None = AUTO,
        *,
        event_type: str | None = None,
        call_id: str | None = None,
        probability: float | None = None,
        seed: int | None = None,
        window: float = 1.0,
    ) -> Fault:
        """
        Hold a callback until the next callback about the same call has been
        queued, so the two arrive swapped; if none comes within *window*
        emulated seconds it goes out alone.
        """
        _check_seconds("window", window)
        return self._callback_rule(
            "reorder_callbacks", times, event_type, call_id, probability, seed, float(window)
        )

    # --- managing rules ------------------------------------------------------------------------

    def add(self, spec: Mapping[str, Any]) -> Fault:
        """
        Add a rule from a JSON object (the control API's ``POST /__emulator/faults``):
        ``{"fault": "<method name>", ...its keyword arguments}``.
        """
        options = dict(spec)
        kind = options.pop("fault", None)
        methods: dict[str, Any] = {
            "fail": self.fail,
            "drop_connection": self.drop_connection,
            "latency": self.latency,
            "drop_callbacks": self.drop_callbacks,
            "duplicate_callbacks": self.duplicate_callbacks,
            "delay_callbacks": self.delay_callbacks,
            "reorder_callbacks": self.reorder_callbacks,
        }
        method = methods.get(kind) if isinstance(kind, str) else None
        if method is None:
            raise ValueError(f"'fault' must be one of {', '.join(methods)}, not {kind!r}")
        try:
            fault: Fault = method(**options)
        except TypeError as exc:
            raise ValueError(f"{kind}: {exc}") from None
        return fault

    def remove(self, fault: Fault | str) -> bool:
        """Remove a rule (or the rule with that id); False when there is none."""
        for i, rule in enumerate(self._rules):
            if rule is fault or rule.id == fault:
                del self._rules[i]
                return True
        return False

    def clear(self) -> None:
        """Remove every rule."""
        self._rules.clear()

    # --- applying them (the endpoint and the outbox call these) --------------------------------

    def _take(self, kinds: tuple[str, ...], fits: Any) -> Fault | None:
        if not self._rules:
            return None
        for rule in self._rules:
            if rule.kind in kinds and fits(rule) and rule._fires():
                if rule.spent:
                    self._rules.remove(rule)
                return rule
        return None

    def for_request(self, command: str | None) -> tuple[Fault | None, Fault | None]:
        """The ``fail``/``drop_connection`` rule and the ``latency`` rule this request meets."""
        if not self._rules:
            return None, None

        def fits(rule: Fault) -> bool:
            return rule.command is None or rule.command == command

        reply = self._take(("fail", "drop_connection"), fits)
        late = self._take(("latency",), fits)
        return reply, late

    def for_callback(self, event_type: str | None, call_id: str | None) -> Fault | None:
        """The callback rule this callback meets, if any."""
        if not self._rules:
            return None

        def fits(rule: Fault) -> bool:
            return (rule.event_type is None or rule.event_type == event_type) and (
                rule.call_id is None or rule.call_id == call_id
            )

        return self._take(CALLBACK_FAULTS, fits)
