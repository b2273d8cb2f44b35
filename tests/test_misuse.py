"""
Misused constructors and arguments raise the documented errors, naming the argument.

UsageError (or its subclass ValidationError) for anything relaycall is given
that cannot work; never a TypeError, AttributeError, OverflowError or
RecursionError from inside relaycall, aiohttp or asyncio.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import relaycall
from relaycall import AsyncRelay, EventReceiver, Limits, RetryPolicy, Timeout, UsageError
from tests.conftest import CALL_ID, PROJECT, TOKEN, WireServer

HUGE = 10**400  # past a float's range: float(HUGE) raises OverflowError
URL = "http://127.0.0.1:9"


async def _execute(**kwargs: Any) -> Any:
    async with AsyncRelay(PROJECT, TOKEN, base_url=URL) as relay:
        return await relay.execute(**kwargs)


async def _call_wait(**kwargs: Any) -> Any:
    async with AsyncRelay(PROJECT, TOKEN, base_url=URL) as relay:
        return await relay.call(CALL_ID).wait(**kwargs)


async def _call_wait_for(state: Any, **kwargs: Any) -> Any:
    async with AsyncRelay(PROJECT, TOKEN, base_url=URL) as relay:
        return await relay.call(CALL_ID).wait_for(state, **kwargs)


async def _relay_call(call_id: Any) -> Any:
    async with AsyncRelay(PROJECT, TOKEN, base_url=URL) as relay:
        return relay.call(call_id)


# (what is misused, the call, the argument the message must name)
MISUSES: list[tuple[str, Callable[[], Any], str]] = [
    ("project_id=5", lambda: AsyncRelay(5, "t", base_url=URL), "project_id"),  # type: ignore[arg-type]
    ("token=5", lambda: AsyncRelay("p", 5, base_url=URL), "token"),  # type: ignore[arg-type]
    ("base_url=5", lambda: AsyncRelay("p", "t", base_url=5), "base_url"),  # type: ignore[arg-type]
    ("space=5", lambda: AsyncRelay("p", "t", space=5), "space"),  # type: ignore[arg-type]
    ("base_url with user:password@", lambda: AsyncRelay("p", "t", base_url="http://u:pw@h"), "base_url"),  # noqa: E501
    ("base_url port 99999", lambda: AsyncRelay("p", "t", base_url="http://h:99999"), "base_url"),
    ("base_url without a host", lambda: AsyncRelay("p", "t", base_url="http://"), "base_url"),
    ("token with a line break", lambda: AsyncRelay("p", "t\r\nX: 1", base_url=URL), "token"),
    ("user_agent with a line break", lambda: AsyncRelay("p", "t", base_url=URL, user_agent="a\nb"), "user_agent"),  # noqa: E501
    ("retry='x'", lambda: AsyncRelay("p", "t", base_url=URL, retry="x"), "retry"),  # type: ignore[arg-type]
    ("limits={}", lambda: AsyncRelay("p", "t", base_url=URL, limits={}), "limits"),  # type: ignore[arg-type]
    ("events=1", lambda: AsyncRelay("p", "t", base_url=URL, events=1), "events"),  # type: ignore[arg-type]
    ("session=1", lambda: AsyncRelay("p", "t", base_url=URL, session=1), "session"),  # type: ignore[arg-type]
    ("timeout='1'", lambda: AsyncRelay("p", "t", base_url=URL, timeout="1"), "timeout"),  # type: ignore[arg-type]
    ("timeout=10**400", lambda: AsyncRelay("p", "t", base_url=URL, timeout=HUGE), "timeout"),
    ("Timeout(connect=10**400)", lambda: Timeout(connect=HUGE), "Timeout.connect"),
    ("Timeout(read=nan)", lambda: Timeout(read=float("nan")), "Timeout.read"),
    ("Timeout(total=inf)", lambda: Timeout(total=float("inf")), "Timeout.total"),
    ("RetryPolicy(initial_backoff=10**400)", lambda: RetryPolicy(initial_backoff=HUGE), "RetryPolicy.initial_backoff"),  # noqa: E501
    ("RetryPolicy(jitter=nan)", lambda: RetryPolicy(jitter=float("nan")), "RetryPolicy.jitter"),
    ("Limits(burst=10**400)", lambda: Limits(burst=HUGE), "Limits.burst"),
    ("Limits(commands_per_second=10**400)", lambda: Limits(commands_per_second=HUGE), "Limits.commands_per_second"),  # noqa: E501
    ("EventReceiver(public_url=5)", lambda: EventReceiver(public_url=5), "public_url"),  # type: ignore[arg-type]
    ("EventReceiver(public_url='http://')", lambda: EventReceiver(public_url="http://"), "public_url"),  # noqa: E501
    ("EventReceiver(path=5)", lambda: EventReceiver(path=5), "path"),  # type: ignore[arg-type]
    ("EventReceiver(secret='x')", lambda: EventReceiver(secret="x"), "secret"),  # type: ignore[arg-type]
    ("EventReceiver(signing_key=b'x')", lambda: EventReceiver(signing_key=b"x"), "signing_key"),  # type: ignore[arg-type]
    ("relay.call(['x'])", lambda: asyncio.run(_relay_call(["x"])), "call_id"),
    ("relay.execute('x', params='ab')", lambda: asyncio.run(_execute(command="x", params="ab")), "params"),  # noqa: E501
    ("relay.execute('x', call_id=5)", lambda: asyncio.run(_execute(command="x", call_id=5)), "call_id"),  # noqa: E501
    ("relay.execute('x', retry='x')", lambda: asyncio.run(_execute(command="x", retry="x")), "retry"),  # noqa: E501
    ("relay.execute('x', timeout='1')", lambda: asyncio.run(_execute(command="x", timeout="1")), "timeout"),  # noqa: E501
    ("call.wait(timeout='1')", lambda: asyncio.run(_call_wait(timeout="1")), "timeout"),
    ("call.wait(timeout=10**400)", lambda: asyncio.run(_call_wait(timeout=HUGE)), "timeout"),
    ("call.wait_for(timeout='1')", lambda: asyncio.run(_call_wait_for("answered", timeout="1")), "timeout"),  # noqa: E501
    ("call.wait_for(['x'])", lambda: asyncio.run(_call_wait_for(["x"], timeout=1)), "state"),
]  # fmt: skip


@pytest.mark.parametrize(("what", "misuse", "names"), MISUSES, ids=[m[0] for m in MISUSES])
def test_misuse_raises_usage_error_naming_the_argument(
    what: str, misuse: Callable[[], Any], names: str
) -> None:
    """Each misuse from the issue (and its neighbours) raises UsageError naming the argument."""
    with pytest.raises(UsageError) as info:
        misuse()
    assert names in str(info.value), str(info.value)


# --- hypothesis: any argument, only UsageError or success ---------------------------------

anything = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.sampled_from([HUGE, -HUGE, 0, -1, 2**63, 0.0, -0.0, 1e-300, 1e300]),
    st.floats(),
    st.text(max_size=8),
    st.binary(max_size=4),
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
    st.timedeltas(),
    st.just(object()),
)
durations = st.one_of(
    st.none(),
    st.floats(0.001, 1e6),
    st.integers(1, 10**6),
    st.timedeltas(min_value=datetime.timedelta(milliseconds=1)),
)
texts = st.text(max_size=12)


def _only_usage_errors(build: Callable[[], Any]) -> Any:
    try:
        return build()
    except UsageError:
        return None


@settings(max_examples=200, deadline=None)
@given(
    project_id=st.one_of(st.just(PROJECT), texts, anything),
    token=st.one_of(st.just(TOKEN), texts, anything),
    space=st.one_of(st.none(), st.just("example"), texts, anything),
    base_url=st.one_of(st.just(URL), st.none(), texts.map(lambda t: "http://" + t), anything),
    session=st.one_of(st.none(), anything),
    timeout=st.one_of(durations, st.builds(Timeout), anything),
    retry=st.one_of(st.just(relaycall.USE_DEFAULT), st.none(), st.builds(RetryPolicy), anything),
    limits=st.one_of(st.none(), st.builds(Limits), anything),
    user_agent=st.one_of(st.none(), texts, anything),
)
def test_async_relay_takes_anything(**kwargs: Any) -> None:
    """AsyncRelay(...) with any arguments builds or raises UsageError."""
    _only_usage_errors(lambda: AsyncRelay(**kwargs))


@settings(max_examples=200, deadline=None)
@given(
    connect=st.one_of(durations, anything),
    read=st.one_of(durations, anything),
    total=st.one_of(durations, anything),
    of=st.one_of(durations, anything),
)
def test_timeout_takes_anything(connect: Any, read: Any, total: Any, of: Any) -> None:
    """Timeout(...) and Timeout.of(...) build or raise UsageError; what builds is finite."""
    t = _only_usage_errors(lambda: Timeout(connect=connect, read=read, total=total))
    if t is not None:
        for value in (t.connect, t.read, t.total):
            assert value is None or 0 < value < float("inf")
    _only_usage_errors(lambda: Timeout.of(of))


@settings(max_examples=200, deadline=None)
@given(
    max_attempts=st.one_of(st.integers(1, 5), anything),
    initial_backoff=st.one_of(durations, anything),
    max_backoff=st.one_of(durations, anything),
    jitter=st.one_of(st.floats(0, 1), anything),
    deadline=st.one_of(durations, anything),
    max_retry_after=st.one_of(durations, anything),
)
def test_retry_policy_takes_anything(**kwargs: Any) -> None:
    """RetryPolicy(...) builds or raises UsageError."""
    _only_usage_errors(lambda: RetryPolicy(**kwargs))


@settings(max_examples=200, deadline=None)
@given(
    max_connections=st.one_of(st.integers(1, 1000), anything),
    max_concurrency=st.one_of(st.none(), st.integers(1, 1000), anything),
    commands_per_second=st.one_of(st.none(), st.floats(0.1, 1e6), anything),
    calls_per_second=st.one_of(st.none(), st.floats(0.1, 1e6), anything),
    burst=st.one_of(st.integers(1, 100), anything),
    keepalive=st.one_of(durations, anything),
)
def test_limits_take_anything(**kwargs: Any) -> None:
    """Limits(...) builds or raises UsageError; what builds also builds an AsyncRelay."""
    limits = _only_usage_errors(lambda: Limits(**kwargs))
    if limits is not None:
        AsyncRelay(PROJECT, TOKEN, base_url=URL, limits=limits)


@settings(max_examples=200, deadline=None)
@given(
    public_url=st.one_of(st.none(), st.just("https://example.com/events"), texts, anything),
    path=st.one_of(st.none(), st.just("/events"), texts, anything),
    signing_key=st.one_of(st.none(), texts, anything),
    require_token=st.one_of(st.booleans(), anything),
    max_body_size=st.one_of(st.integers(1, 10**6), anything),
    signature_url=st.one_of(st.none(), st.just(str), anything),
    secret=st.one_of(st.none(), st.binary(min_size=1, max_size=8), anything),
)
def test_event_receiver_takes_anything(**kwargs: Any) -> None:
    """EventReceiver(...) builds or raises UsageError."""
    receiver = _only_usage_errors(lambda: EventReceiver(**kwargs))
    if receiver is not None and receiver.public_url is not None:
        receiver.status_url(CALL_ID)  # what it built works


@settings(max_examples=100, deadline=None)
@given(call_id=st.one_of(st.uuids().map(str), texts, anything))
def test_relay_call_takes_anything(call_id: Any) -> None:
    """relay.call(x) returns a Call or raises ValidationError."""

    async def run() -> None:
        async with AsyncRelay(PROJECT, TOKEN, base_url=URL) as relay:
            try:
                call = relay.call(call_id)
            except relaycall.ValidationError:
                return
            assert call.id == call_id

    asyncio.run(run())


@settings(max_examples=60, deadline=None)
@given(
    command=st.one_of(st.just("calling.end"), texts, anything),
    call_id=st.one_of(st.none(), st.just(CALL_ID), anything),
    params=st.one_of(
        st.none(), st.just({}), st.dictionaries(texts, anything, max_size=2), anything
    ),
    idempotent=st.one_of(st.none(), st.booleans(), anything),
    timeout=st.one_of(st.just(relaycall.USE_DEFAULT), durations, anything),
    retry=st.one_of(st.just(relaycall.USE_DEFAULT), st.none(), anything),
)
def test_execute_takes_anything(**kwargs: Any) -> None:
    """relay.execute(...) against a real server returns its reply or raises UsageError."""

    async def run() -> None:
        server = WireServer()
        await server.start()
        try:
            async with AsyncRelay(PROJECT, TOKEN, base_url=server.base_url) as relay:
                try:
                    reply = await relay.execute(**kwargs)
                except UsageError:
                    return
                assert reply.status == 200
        finally:
            await server.close()

    asyncio.run(run())


@settings(max_examples=100, deadline=None)
@given(
    timeout=st.one_of(st.none(), st.floats(0, 1e6), st.integers(0, 10**6), anything),
    state=st.one_of(st.sampled_from(["answered", "ended", "ringing"]), anything),
)
def test_waits_take_anything(timeout: Any, state: Any) -> None:
    """
    call.wait / wait_for and an operation's wait: a result, or UsageError.

    The session is closed first, so every valid wait answers at once; the
    timeout is checked before that answer, so a wrong one is refused even then.
    """

    async def run() -> None:
        relay = AsyncRelay(PROJECT, TOKEN, base_url=URL)
        async with relay:
            call = relay.call(CALL_ID)
            playback = call.playback("p-1")
        for wait in (
            lambda: call.wait(timeout=timeout),
            lambda: call.wait_for(state, timeout=timeout),
            lambda: playback.wait(timeout=timeout),
        ):
            with contextlib.suppress(UsageError):
                await asyncio.wait_for(wait(), 5)

    asyncio.run(run())
