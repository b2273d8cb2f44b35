"""
The retry policy: which failures may be re-sent for which command, and how long to wait.

The transport makes every attempt of a command in the command's one
coroutine; after an attempt fails, :class:`Retries` asks tenacity whether it
raises or is sent again, and when. A command that succeeds at once (nearly
all) builds none, so it pays nothing for the policy or for tenacity.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import random
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    stop_after_attempt,
    stop_before_delay,
    wait_exponential,
)
from tenacity.stop import stop_base

from relaycall._config import RetryPolicy
from relaycall._idempotency import Idempotency
from relaycall._retry_after import parse_retry_after
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

__all__ = ["AlreadyProcessed", "Decision", "Retries", "classify"]

logger = logging.getLogger("relaycall")


class AlreadyProcessed(RelayError):
    """
    A re-send was about to go out, but callbacks show the first attempt was processed.

    Raised by the transport before an attempt 2, 3... of a start or a dial
    whose callbacks have arrived; the retry policy treats it as final, and the
    start or dial that sent the command catches it: it never reaches the user.
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


#: Set by relaycall.testing (set_testing / instant_retries): replaces the backoff
#: sleep of every session, so tests of retrying code run at once.
testing_sleep: Callable[[float], Awaitable[None]] | None = None


def backoff_sleep(seconds: float) -> Awaitable[None]:
    """Sleep between attempts: asyncio.sleep, unless relaycall.testing made it instant."""
    hook = testing_sleep
    return asyncio.sleep(seconds) if hook is None else hook(seconds)


class Retries:
    """
    One command's retries, from its first failure on: tenacity's engine, one failure at a time.

    The transport builds this when attempt 1 fails and calls :meth:`after`
    with each failure. ``after`` records the failure on a tenacity
    ``RetryCallState`` and runs the ``AsyncRetrying``'s retry, wait, stop and
    before_sleep strategies over it, as tenacity does around a function of its
    own, while the attempts stay in the transport's coroutine: it raises the
    command's error or waits, and then the transport sends attempt
    :attr:`attempt`. One AsyncRetrying per command: tenacity keeps per-call
    state on it, and the commands in flight share one thread.
    """

    __slots__ = ("_body", "_command", "_idempotency", "_retrying", "_state")

    def __init__(
        self,
        policy: RetryPolicy,
        idempotency: Idempotency,
        command: str,
        body: Mapping[str, Any],
        started: float,
    ) -> None:
        stop: stop_base = stop_after_attempt(policy.max_attempts)
        if policy.deadline is not None:
            # No retry whose wait would end past the deadline.
            stop |= stop_before_delay(policy.deadline)
        self._retrying = AsyncRetrying(
            stop=stop,
            wait=_wait(policy),
            retry=retry_if_exception(lambda exc: classify(exc, idempotency) is Decision.RETRY),
            before_sleep=lambda state: _log_retry(command, policy.max_attempts, state),
            reraise=True,
        )
        self._retrying.begin()
        self._state = RetryCallState(self._retrying, fn=None, args=(), kwargs={})
        # The deadline counts from attempt 1 (time.monotonic() *started*), sent before this.
        self._state.start_time = started
        self._idempotency = idempotency
        self._command = command
        #: The body sent, for AmbiguousOutcomeError.
        self._body = body

    @property
    def attempt(self) -> int:
        """The number (1-based) of the attempt that failed last, then of the next one."""
        return self._state.attempt_number

    @property
    def taken(self) -> int:
        """How many times the command was re-sent."""
        return self._state.attempt_number - 1

    async def after(self, failure: RelayError) -> None:
        """
        Attempt :attr:`attempt` failed with *failure*: raise, or wait for the next.

        Raises *failure* (with ``retries_taken`` set) when the policy ends
        here, or AmbiguousOutcomeError for an UNSAFE command whose attempt may
        have been processed.
        """
        state = self._state
        failure.retries_taken = state.attempt_number - 1
        # Before tenacity: an ambiguous failure is not only final, it is reported as such.
        if classify(failure, self._idempotency) is Decision.AMBIGUOUS:
            ambiguous = AmbiguousOutcomeError(self._command, self._body, failure)
            ambiguous.retries_taken = failure.retries_taken
            raise ambiguous from failure
        state.set_exception((type(failure), failure, failure.__traceback__))
        # Raises *failure* itself (reraise=True) when it is not retried; else the
        # answer is to sleep for state.upcoming_sleep, as before_sleep logged.
        await self._retrying.iter(state)
        state.prepare_for_next_attempt()
        await backoff_sleep(state.upcoming_sleep)


def _wait(policy: RetryPolicy) -> Callable[[RetryCallState], float]:
    """The wait before a retry: the server's Retry-After (capped), else exponential backoff."""
    exponential = wait_exponential(multiplier=policy.initial_backoff, max=policy.max_backoff)

    def wait(state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome is not None else None
        if isinstance(exc, APIStatusError):
            retry_after = parse_retry_after(exc.headers)
            if retry_after is not None:
                return min(retry_after, policy.max_retry_after)
        # Jitter only shortens a wait, so max_backoff stays the longest one.
        return exponential(state) * (1 - policy.jitter * random.random())

    return wait


def _log_retry(command: str, max_attempts: int, state: RetryCallState) -> None:
    logger.debug(
        "retrying %s (attempt %d of %d) in %.3fs after %s",
        command,
        state.attempt_number + 1,
        max_attempts,
        state.upcoming_sleep,
        state.outcome.exception() if state.outcome is not None else None,
    )
