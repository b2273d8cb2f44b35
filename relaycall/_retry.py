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
from typing import TYPE_CHECKING, Any

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

if TYPE_CHECKING:
    # Imported where a failure first engages them: a process whose commands all
    # succeed (nearly every one) never imports tenacity.
    from tenacity import AsyncRetrying, RetryCallState
    from tenacity.stop import stop_base

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

    __slots__ = ("_body", "_command", "_idempotency", "_policy", "_retrying", "_started", "_state")

    def __init__(
        self,
        policy: RetryPolicy,
        idempotency: Idempotency,
        command: str,
        body: Mapping[str, Any] | None,
        started: float,
    ) -> None:
        self._policy = policy
        self._idempotency = idempotency
        self._command = command
        #: The body sent, for AmbiguousOutcomeError (None unless the command is UNSAFE).
        self._body = body
        #: time.monotonic() when attempt 1 began: the deadline counts from it.
        self._started = started
        # tenacity is engaged by the first failure that may be retried: most
        # failures (a 404, a 409, a validation error) are final, and raising
        # them needs no retry machinery.
        self._retrying: AsyncRetrying | None = None
        self._state: RetryCallState | None = None

    def _engage(self) -> RetryCallState:
        from tenacity import (  # noqa: PLC0415 - see TYPE_CHECKING above
            AsyncRetrying,
            RetryCallState,
            retry_always,
            stop_after_attempt,
            stop_before_delay,
        )

        policy, command = self._policy, self._command
        stop: stop_base = stop_after_attempt(policy.max_attempts)
        if policy.deadline is not None:
            # No retry whose wait would end past the deadline.
            stop |= stop_before_delay(policy.deadline)
        self._retrying = retrying = AsyncRetrying(
            stop=stop,
            wait=_wait(policy),
            # after() passes only failures classify() says may be re-sent.
            retry=retry_always,
            before_sleep=lambda state: _log_retry(command, policy.max_attempts, state),
            reraise=True,
        )
        retrying.begin()
        state = self._state = RetryCallState(retrying, fn=None, args=(), kwargs={})
        state.start_time = self._started
        return state

    @property
    def attempt(self) -> int:
        """The number (1-based) of the attempt that failed last, then of the next one."""
        return 1 if self._state is None else self._state.attempt_number

    @property
    def taken(self) -> int:
        """How many times the command was re-sent."""
        return self.attempt - 1

    async def after(self, failure: RelayError) -> None:
        """
        Attempt :attr:`attempt` failed with *failure*: raise, or wait for the next.

        Raises *failure* (with ``retries_taken`` set) when it is final or the
        policy ends here, or AmbiguousOutcomeError for an UNSAFE command whose
        attempt may have been processed.
        """
        failure.retries_taken = self.attempt - 1
        decision = classify(failure, self._idempotency)
        if decision is Decision.AMBIGUOUS:
            assert self._body is not None  # held for every UNSAFE command (AsyncRelay._request)
            ambiguous = AmbiguousOutcomeError(self._command, self._body, failure)
            ambiguous.retries_taken = failure.retries_taken
            raise ambiguous from failure
        if decision is Decision.FINAL:
            raise failure
        state = self._state or self._engage()
        assert self._retrying is not None
        state.set_exception((type(failure), failure, failure.__traceback__))
        # Raises *failure* itself (reraise=True) when the policy's stop says so;
        # else the answer is to sleep for state.upcoming_sleep, as before_sleep logged.
        await self._retrying.iter(state)
        state.prepare_for_next_attempt()
        await backoff_sleep(state.upcoming_sleep)


def _wait(policy: RetryPolicy) -> Callable[[RetryCallState], float]:
    """The wait before a retry: the server's Retry-After (capped), else exponential backoff."""
    from tenacity import wait_exponential  # noqa: PLC0415 - see TYPE_CHECKING above

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
