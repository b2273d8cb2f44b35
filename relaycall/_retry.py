"""
The retry policy: which failures may be re-sent for which command, and how long to wait.

The transport makes every attempt of a command in the command's one
coroutine; after an attempt fails, :class:`Retries` decides whether it
raises or is sent again, and when. A command that succeeds at once (nearly
all) builds none, so it pays nothing for the policy.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

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


class Retries:
    """
    One command's retries, from its first failure on.

    The transport builds this when attempt 1 fails and calls :meth:`after`
    with each failure: it raises the command's error or waits, and then the
    transport sends attempt :attr:`attempt`.
    """

    __slots__ = ("_body", "_command", "_idempotency", "_policy", "_started", "attempt")

    def __init__(
        self,
        policy: RetryPolicy,
        idempotency: Idempotency,
        command: str,
        body: Mapping[str, Any],
        started: float,
    ) -> None:
        self._policy = policy
        self._idempotency = idempotency
        self._command = command
        #: The body sent, for AmbiguousOutcomeError.
        self._body = body
        #: time.monotonic() when attempt 1 began: the policy's deadline counts from it.
        self._started = started
        #: The number (1-based) of the attempt that failed last, then of the next one.
        self.attempt = 1

    @property
    def taken(self) -> int:
        """How many times the command was re-sent."""
        return self.attempt - 1

    async def after(self, failure: RelayError) -> None:
        """
        Attempt :attr:`attempt` failed with *failure*: raise, or wait for the next.

        Raises *failure* (with ``retries_taken`` set) when the policy ends
        here, or AmbiguousOutcomeError for an UNSAFE command whose attempt may
        have been processed.
        """
        number = self.attempt
        failure.retries_taken = number - 1
        decision = classify(failure, self._idempotency)
        if decision is Decision.AMBIGUOUS:
            ambiguous = AmbiguousOutcomeError(self._command, self._body, failure)
            ambiguous.retries_taken = number - 1
            raise ambiguous from failure
        if decision is Decision.FINAL:
            raise failure
        policy = self._policy
        wait = backoff(policy, number, failure)
        if number >= policy.max_attempts or _past_deadline(policy, self._started, wait):
            raise failure
        logger.debug(
            "retrying %s (attempt %d of %d) in %.3fs after %s",
            self._command,
            number + 1,
            policy.max_attempts,
            wait,
            failure,
        )
        await backoff_sleep(wait)
        self.attempt = number + 1


def _past_deadline(policy: RetryPolicy, started: float, wait: float) -> bool:
    if policy.deadline is None:
        return False
    return time.monotonic() - started + wait >= policy.deadline
