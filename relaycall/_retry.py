"""
The retry policy: which failures may be re-sent for which command, and how long to wait.

The first attempt runs without any retry machinery, so a command that
succeeds pays nothing for it. Only after a retryable failure is a tenacity
``AsyncRetrying`` built, one per request: tenacity keeps per-call state on
the retrying object, and our concurrent tasks share one thread.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import math
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from email.utils import parsedate_to_datetime
from typing import Any, TypeVar

from tenacity import AsyncRetrying, RetryCallState, retry_if_exception

from relaycall._commands._base import Idempotency
from relaycall._config import RetryPolicy
from relaycall.errors import (
    AmbiguousOutcomeError,
    APIStatusError,
    ConnectError,
    RateLimitError,
    RelayError,
    ServerError,
    ServiceUnavailableError,
    TLSError,
    TransportError,
)

__all__ = ["Decision", "classify", "parse_retry_after", "retry_after_failure"]

logger = logging.getLogger("relaycall")
T = TypeVar("T")


class AlreadyProcessed(RelayError):
    """
    A re-send was about to go out, but callbacks show the first attempt was processed.

    Raised by the session before an attempt 2, 3... of a start or a dial whose
    callbacks have arrived; the retry loop treats it as final, and the start
    or dial that sent the command catches it: it never reaches the user.
    """

    def __init__(self, command: str) -> None:
        super().__init__(f"{command}: not re-sent; its callbacks show it was processed")


class Decision(enum.Enum):
    RETRY = "retry"
    FINAL = "final"
    #: Failed after the request may have been acted on; fatal for UNSAFE commands.
    AMBIGUOUS = "ambiguous"


def classify(exc: BaseException, idempotency: Idempotency) -> Decision:
    """Decide what a failure means for a command of the given idempotency."""
    if isinstance(exc, TLSError):
        return Decision.FINAL
    # Provably not processed: never connected, or the server said so.
    if isinstance(exc, ConnectError | RateLimitError | ServiceUnavailableError):
        return Decision.RETRY
    maybe_processed = isinstance(exc, TransportError | ServerError) or (
        isinstance(exc, APIStatusError) and exc.status_code == 408
    )
    if not maybe_processed:
        return Decision.FINAL
    return Decision.AMBIGUOUS if idempotency is Idempotency.UNSAFE else Decision.RETRY


def parse_retry_after(headers: Mapping[str, str]) -> float | None:
    """
    Read ``Retry-After`` (seconds or an HTTP date) or ``retry-after-ms``.

    Returns None for a missing, negative or unreadable value.
    """
    lowered = {k.lower(): v for k, v in headers.items()}
    ms = lowered.get("retry-after-ms")
    if ms is not None:
        try:
            value = float(ms) / 1000
        except ValueError:
            value = math.nan
        if math.isfinite(value) and value >= 0:
            return value
    raw = lowered.get("retry-after")
    if raw is None:
        return None
    raw = raw.strip()
    try:
        value = float(raw)
    except ValueError:
        try:
            when = parsedate_to_datetime(raw)
        except (TypeError, ValueError, IndexError):
            return None
        value = when.timestamp() - time.time()
        return max(0.0, value)
    if not math.isfinite(value) or value < 0:
        return None
    return value


def backoff(policy: RetryPolicy, retry_number: int, exc: BaseException | None) -> float:
    """Seconds to wait before retry number *retry_number* (1 for the first retry)."""
    if isinstance(exc, APIStatusError):
        retry_after = parse_retry_after(exc.headers)
        if retry_after is not None:
            return min(retry_after, policy.max_retry_after)
    base = min(policy.max_backoff, policy.initial_backoff * 2.0 ** (retry_number - 1))
    return base * (1 - policy.jitter * random.random())


#: Set by relaycall.testing (set_testing / instant_retries): replaces the backoff
#: sleep of every session, so tests of retrying code run at once.
testing_sleep: Callable[[float], Awaitable[None]] | None = None


def backoff_sleep(seconds: float) -> Awaitable[None]:
    """Sleep between attempts: asyncio.sleep, unless relaycall.testing made it instant."""
    hook = testing_sleep
    return asyncio.sleep(seconds) if hook is None else hook(seconds)


async def retry_after_failure(
    first: RelayError,
    attempt: Callable[[int], Awaitable[T]],
    *,
    started: float,
    policy: RetryPolicy,
    idempotency: Idempotency,
    command: str,
    body: Mapping[str, Any],
    sleep: Callable[[float], Awaitable[None]] = backoff_sleep,
) -> tuple[T, int]:
    """
    Go on after attempt 1 failed with *first* (at ``time.monotonic()`` *started*).

    *attempt* sends attempt number N (1-based). Returns the result and the
    number of retries taken. Raises the last error, with ``retries_taken``
    set, or AmbiguousOutcomeError for an UNSAFE command whose attempt may
    have been processed. The session awaits attempt 1 itself and calls this
    only on a failure, so a command that succeeds builds no retry machinery.
    """
    decision = classify(first, idempotency)
    if decision is Decision.AMBIGUOUS:
        raise AmbiguousOutcomeError(command, body, first) from first
    wait = backoff(policy, 1, first)
    if (
        decision is Decision.FINAL
        or policy.max_attempts <= 1
        or _past_deadline(policy, started, wait)
    ):
        raise first
    _log_retry(command, 2, policy, wait, first)
    await sleep(wait)

    def stop(state: RetryCallState) -> bool:
        # Attempt numbers in tenacity start at 1 for our second attempt.
        if state.attempt_number + 1 >= policy.max_attempts:
            return True
        return _past_deadline(policy, started, state.upcoming_sleep)

    def wait_for(state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        return backoff(policy, state.attempt_number + 1, exc)

    def before_sleep(state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        _log_retry(command, state.attempt_number + 2, policy, state.upcoming_sleep, exc)

    retrying = AsyncRetrying(
        stop=stop,
        wait=wait_for,
        retry=retry_if_exception(lambda e: classify(e, idempotency) is Decision.RETRY),
        reraise=True,
        sleep=sleep,
        before_sleep=before_sleep,
    )
    retries = 0
    try:
        async for try_ in retrying:
            with try_:
                retries = try_.retry_state.attempt_number
                result = await attempt(retries + 1)
    except RelayError as exc:
        exc.retries_taken = retries
        if classify(exc, idempotency) is Decision.AMBIGUOUS:
            ambiguous = AmbiguousOutcomeError(command, body, exc)
            ambiguous.retries_taken = retries
            raise ambiguous from exc
        raise
    return result, retries


def _past_deadline(policy: RetryPolicy, started: float, wait: float) -> bool:
    if policy.deadline is None:
        return False
    return time.monotonic() - started + wait >= policy.deadline


def _log_retry(
    command: str, next_attempt: int, policy: RetryPolicy, wait: float, exc: BaseException | None
) -> None:
    logger.debug(
        "retrying %s (attempt %d of %d) in %.3fs after %s",
        command,
        next_attempt,
        policy.max_attempts,
        wait,
        exc,
    )
