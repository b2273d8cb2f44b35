"""
Timeouts, limits and the retry policy, as frozen attrs classes.
"""

from __future__ import annotations

import enum
import math
from datetime import timedelta
from typing import Any, Final

import attrs

from relaycall._validate import is_number
from relaycall.errors import UsageError
from relaycall.errors import show_value_masked as _shown

__all__ = ["USE_DEFAULT", "Limits", "RetryPolicy", "Timeout"]


class _Default(enum.Enum):
    token = 0

    def __repr__(self) -> str:
        return "USE_DEFAULT"


#: Per-call sentinel meaning "the session's setting"; distinct from None, which
#: disables (no timeout, no retries).
USE_DEFAULT: Final = _Default.token


class _BadArgument(UsageError):
    """A field of these classes is wrong; :func:`_named` says which field."""

    def __init__(self, value: Any, rule: str, what: str = "a duration") -> None:
        self.value = value
        self.rule = rule
        super().__init__(f"{what} {rule}, not {_shown(value)}")


_DURATION = "must be a positive number of seconds, a timedelta or None"
_FINITE = "must be a finite number of seconds (None means no bound)"


def _seconds(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, timedelta):
        value = value.total_seconds()
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _BadArgument(value, _DURATION)
    try:
        seconds = float(value)
    except OverflowError:  # an int past a float's range: 10**400
        raise _BadArgument(value, _FINITE) from None
    if math.isnan(seconds) or seconds <= 0:
        raise _BadArgument(value, _DURATION)
    if math.isinf(seconds):
        raise _BadArgument(value, _FINITE)
    return seconds


def _positive_seconds(value: Any) -> float:
    s = _seconds(value)
    if s is None:
        raise _BadArgument(value, "must be a positive number of seconds or a timedelta")
    return s


def _seconds_or_zero(value: Any) -> float:
    """A duration that may also be 0 (off), but not None."""
    if isinstance(value, int | float) and not isinstance(value, bool) and value == 0:
        return 0.0
    if value is None:
        raise _BadArgument(value, _DURATION_OR_OFF)
    try:
        return _positive_seconds(value)
    except _BadArgument as exc:
        rule = "must be a finite number of seconds" if exc.rule == _FINITE else _DURATION_OR_OFF
        raise _BadArgument(value, rule) from None


_DURATION_OR_OFF = "must be 0 (off), a positive number of seconds or a timedelta"


def _positive_int(inst: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if value is None:
        return
    where = f"{type(inst).__name__}.{attribute.name}"
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise UsageError(f"{where} must be a positive integer or None, not {_shown(value)}")
    if not is_number(value):  # 10**400: the limiter computes with it as a float
        raise UsageError(f"{where} is too large: {_shown(value)}")


def _boolean(inst: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if not isinstance(value, bool):
        where = f"{type(inst).__name__}.{attribute.name}"
        raise UsageError(f"{where} must be True or False, not {_shown(value)}")


def _positive_rate(inst: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if value is None:
        return
    # An int past a float's range (10**400) is no rate: 1 / rate would overflow.
    if not is_number(value) or value <= 0:
        where = f"{type(inst).__name__}.{attribute.name}"
        raise UsageError(f"{where} must be a positive, finite number or None, not {_shown(value)}")


def _named(cls: type, fields: list[attrs.Attribute[Any]]) -> list[attrs.Attribute[Any]]:
    """
    attrs field transformer: a converter's error names the class and field.

    ``Timeout(connect=-1)`` says ``Timeout.connect must be ...``, not just
    that some duration is wrong.
    """
    return [
        f.evolve(converter=_naming(f.converter, f"{cls.__name__}.{f.name}"))
        if callable(f.converter)
        else f
        for f in fields
    ]


def _naming(convert: Any, where: str) -> Any:
    def named(value: Any) -> Any:
        try:
            return convert(value)
        except _BadArgument as exc:
            raise UsageError(f"{where} {exc.rule}, not {_shown(value)}") from None

    return named


@attrs.frozen(kw_only=True, field_transformer=_named)
class Timeout:
    """
    How long one HTTP attempt may take, in seconds (``timedelta`` accepted).

    Example::

        AsyncRelay(..., timeout=Timeout(connect=2, total=10))

    Args:
        connect: Getting a connection (from the pool or a new TCP+TLS one).
            Failing here means nothing was sent, so even ``dial`` is retried.
            Unset, or longer than 50 ms before *total* (half of *total* if
            that is less), it ends that much before *total*: aiohttp starts the
            total timer first, and a connection that never opens must end as
            a ConnectTimeout (nothing sent), not as the total's timeout (maybe
            sent). With a total of a few milliseconds, or an event loop
            blocked at that moment, it may still end as the latter: reported
            ambiguous, never sent twice.
        read: Longest wait for the next bytes of the reply.
        total: The whole attempt. Retries get a fresh *total* each; the
            overall bound is :attr:`RetryPolicy.deadline`.

    ``None`` disables a bound. The defaults (5, 30, 30) are finite on purpose:
    a hung request must not hang a call flow. Bounds are kept to the event
    loop's clock, not rounded up to a whole second as aiohttp does by default;
    a *read* bound no shorter than *total* cannot be reached first, so only
    *total* is armed (a timer fewer for every chunk of every reply).
    """

    connect: float | None = attrs.field(default=5.0, converter=_seconds)
    read: float | None = attrs.field(default=30.0, converter=_seconds)
    total: float | None = attrs.field(default=30.0, converter=_seconds)

    @classmethod
    def of(cls, value: Timeout | float | timedelta | None) -> Timeout:
        """Accept a Timeout, a number of seconds (the *total*), or None (no bounds)."""
        if isinstance(value, Timeout):
            return value
        if value is None:
            return cls(connect=None, read=None, total=None)
        try:
            seconds = _positive_seconds(value)
        except _BadArgument as exc:
            rule = exc.rule
            if rule == _DURATION:
                rule = "must be a Timeout, a positive number of seconds, a timedelta or None"
            raise UsageError(f"timeout {rule}, not {_shown(value)}") from None
        return cls(connect=min(5.0, seconds), read=seconds, total=seconds)


@attrs.frozen(kw_only=True, field_transformer=_named)
class Limits:
    """
    How hard one AsyncRelay may drive the API.

    Args:
        max_connections: Size of the HTTP connection pool.
        max_concurrency: Commands in flight at once; further commands wait
            their turn (default: the pool size).
        commands_per_second: Client-side cap on POSTs per second across all
            commands. The platform documents 13,800 POSTs per 10 s per
            project; ``1300`` leaves headroom. None: no cap.
        calls_per_second: Client-side cap on ``dial`` per second. The platform
            queues new calls at about 1 per second. None: no cap.
        burst: How many commands may go at once after an idle spell before
            the per-second caps apply.
        keepalive: Seconds an idle pooled connection is kept.
        unsafe_keepalive: Seconds an idle pooled connection may still carry a
            command that must not be sent twice (``dial``, ``update``,
            ``transfer``...): an older one may be closing on the server side,
            and a command lost with it would be ambiguous. Keep it well below
            the server's keep-alive timeout; 0 opens a fresh connection for
            each such command. They use a pool of their own, which other
            commands share while it holds a connection that fresh (so a busy
            session keeps one set of connections).
        shared: Make *calls_per_second*, *commands_per_second* and
            *max_concurrency* project-wide: every AsyncRelay whose
            coordinator shares the same Redis (and project) counts against
            one budget, kept in Redis by an atomic Lua script (see
            docs/deployment.md, "Shared limits"). Takes effect only with a
            coordinator (``AsyncRelay(..., coordinator=...)``); while Redis
            cannot answer, each process falls back to these limits locally.
            *max_concurrency* is shared only when set; *max_connections*
            (the pool) is always per process.
    """

    max_connections: int = attrs.field(default=100, validator=_positive_int)
    max_concurrency: int | None = attrs.field(default=None, validator=_positive_int)
    commands_per_second: float | None = attrs.field(default=None, validator=_positive_rate)
    calls_per_second: float | None = attrs.field(default=None, validator=_positive_rate)
    burst: int = attrs.field(default=1, validator=_positive_int)
    keepalive: float = attrs.field(default=15.0, converter=_positive_seconds)
    unsafe_keepalive: float = attrs.field(default=0.5, converter=_seconds_or_zero)
    shared: bool = attrs.field(default=False, validator=_boolean)

    @property
    def concurrency(self) -> int:
        return self.max_concurrency or self.max_connections


@attrs.frozen(kw_only=True, field_transformer=_named)
class RetryPolicy:
    """
    When and how long to wait before re-sending a failed command.

    Args:
        max_attempts: Attempts in all, the first included (1 disables retries).
        initial_backoff: Wait before the first retry; doubles each time.
        max_backoff: Cap on one wait.
        jitter: Fraction of each wait drawn at random (0..1), so many clients
            that failed together do not retry together.
        deadline: Bound on the whole send, retries and waits included; no
            retry starts if its wait would cross it. None: only *max_attempts*.
        max_retry_after: Longest ``Retry-After`` honoured; a longer one is
            capped to this.
        ambiguous_grace: With an EventReceiver, how long a ``dial`` whose
            outcome is ambiguous (dropped connection, 5xx, read timeout) waits
            for a callback carrying its own token: one arriving proves the
            call was placed, and the dial returns its Call instead of raising
            AmbiguousOutcomeError. 0 disables the wait.

    Which failures are retried depends on the command (docs/retries.md):
    follow-ups and start commands retry transport failures, 429 and 5xx;
    ``dial`` and other non-idempotent commands only retry what provably was
    not processed (connect failures, 429, 503).
    """

    max_attempts: int = attrs.field(default=3, validator=_positive_int)
    initial_backoff: float = attrs.field(default=0.5, converter=_positive_seconds)
    max_backoff: float = attrs.field(default=8.0, converter=_positive_seconds)
    jitter: float = attrs.field(default=0.25)
    deadline: float | None = attrs.field(default=60.0, converter=_seconds)
    max_retry_after: float = attrs.field(default=60.0, converter=_positive_seconds)
    ambiguous_grace: float = attrs.field(default=5.0, converter=_seconds_or_zero)

    @jitter.validator
    def _check_jitter(self, attribute: attrs.Attribute[Any], value: Any) -> None:
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
            raise UsageError(f"RetryPolicy.jitter must be between 0 and 1, not {_shown(value)}")

    @classmethod
    def disabled(cls) -> RetryPolicy:
        """A policy that sends each command once."""
        return cls(max_attempts=1)
