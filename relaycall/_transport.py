"""
How an AsyncRelay reaches the API: aiohttp's sessions with the URL, headers,
timeouts and limits bound, the POST of a command, and aiohttp's failures mapped
to relaycall's.

:meth:`Transport.send` makes every attempt of a command in the command's one
coroutine: no wrapper coroutine per command, and no retry machinery unless an
attempt fails (then :class:`relaycall._retry.Retries` runs tenacity's policy).
Mapping order matters (most specific first): whether a failure happened
before the request left this process decides whether ``dial`` may be re-sent.
"""

from __future__ import annotations

import asyncio
import json
import math
import ssl
import time
from collections import deque
from collections.abc import Callable, Mapping
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Protocol

import aiohttp
from multidict import CIMultiDict

from relaycall._config import USE_DEFAULT, Limits, RetryPolicy, Timeout, _Default
from relaycall._idempotency import Idempotency
from relaycall._limits import Gate, RateLimiter
from relaycall._retry import AlreadyProcessed, Retries
from relaycall.errors import (
    ClientClosedError,
    ConnectError,
    ConnectionLostError,
    ConnectTimeout,
    ReadTimeout,
    RelayError,
    ResponseValidationError,
    TLSError,
    TransportError,
    make_status_error,
)

if TYPE_CHECKING:
    from relaycall._shared_limits import SharedGate, SharedLimits, SharedRateLimiter

# A module constant for the per-command check: reading an Enum member off its
# class costs about 70 ns on CPython 3.11, a global about 10.
_UNSAFE = Idempotency.UNSAFE


class Watched(Protocol):
    """What a command starts (an operation handle, a pending dial), checked before a re-send."""

    def _processed(self) -> bool:
        """Whether callbacks show an attempt of the command was processed."""


class Reply:
    """A reply as it came: status, headers, decoded body, and the retries it took."""

    # A plain slotted class, not attrs.frozen: a frozen attrs __init__ goes
    # through object.__setattr__ for every field.
    __slots__ = ("body", "headers", "retries", "status")

    def __init__(self, status: int, headers: Mapping[str, str], body: Any, retries: int) -> None:
        self.status = status
        self.headers = headers
        self.body = body
        self.retries = retries


class Transport:
    """
    The POST of every command of one AsyncRelay.

    Holds the URL, the headers (the Authorization one masked), the default
    timeouts, the in-flight and per-second limits, and the aiohttp sessions:
    the caller's, or two made here on first use (see :func:`make_session`
    and :func:`make_unsafe_session`).
    """

    __slots__ = (
        "_client_timeout",
        "_dial_rate",
        "_fresh",
        "_gate",
        "_headers",
        "_limits",
        "_rate",
        "_share_within",
        "closed",
        "headers",
        "owns_session",
        "session",
        "shared",
        "unsafe_session",
        "url",
    )

    def __init__(
        self,
        url: str,
        headers: dict[str, str],
        timeout: Timeout,
        limits: Limits,
        session: aiohttp.ClientSession | None,
    ) -> None:
        self.url = url
        #: Sent with every attempt; attempt 2, 3... replace Relaycall-Attempt.
        self.headers = headers
        # The same, as the CIMultiDict aiohttp turns a dict of headers into on every
        # request: given one, it only copies it (1.5% of a command's CPU; see
        # benchmarks/RESULTS.md, "Sixth round"). What attempt 1 passes.
        self._headers: CIMultiDict[str] = CIMultiDict(headers)
        self._client_timeout = client_timeout(timeout)
        self._limits = limits
        self._gate: Gate | SharedGate = Gate(limits.concurrency)
        self._rate: RateLimiter | SharedRateLimiter | None = (
            RateLimiter(limits.commands_per_second, limits.burst)
            if limits.commands_per_second
            else None
        )
        self._dial_rate: RateLimiter | SharedRateLimiter | None = (
            RateLimiter(limits.calls_per_second, limits.burst) if limits.calls_per_second else None
        )
        #: The project-wide limiters' state (see share_limits), or None.
        self.shared: SharedLimits | None = None
        self.session = session
        self.owns_session = session is None
        # Commands that must not be sent twice get a pool of their own, made
        # when the first one is sent (see make_unsafe_session).
        self.unsafe_session: aiohttp.ClientSession | None = None
        # When each connection of that pool was last released, newest last, while
        # the two pools are ours (None otherwise). A connection released less than
        # unsafe_keepalive ago is one a dial may take, so any command may: a command
        # that finds one rides it instead of the other pool. So a busy session keeps
        # one set of connections, not one per pool (half as many, and a script's
        # dial and the play after it share a connection, one handshake fewer). An
        # entry is a guess (aiohttp's pool is not asked): a wrong one (the server
        # closed that connection) costs a connection opened in this pool instead of
        # one reused in the other. And a dial that comes while a follow-up rides the
        # connection it would have reused opens another.
        self._fresh: deque[float] | None = (
            deque(maxlen=limits.max_connections)
            if session is None and limits.unsafe_keepalive
            else None
        )
        # Within both bounds: a command never rides a connection idle for longer than
        # its own pool would have kept it (keepalive may be set below unsafe_keepalive).
        self._share_within = min(limits.keepalive, limits.unsafe_keepalive)
        #: Set when the AsyncRelay closes: every attempt from then on, and every
        #: one the closing aborts, raises ClientClosedError.
        self.closed = False

    def share_limits(self, coordinator: Any, project_id: str) -> None:
        """
        With ``Limits(shared=True)``: pace through *coordinator*'s Redis, project-wide.

        Swaps the limiters for ones with the same methods (relaycall/_shared_limits.py),
        so :meth:`send` is the same code with or without them. A no-op otherwise.
        """
        if not self._limits.shared or self.shared is not None:
            return
        from relaycall import _shared_limits  # noqa: PLC0415 - only for sessions that share

        self.shared, gate, rate, dial_rate = _shared_limits.share(
            coordinator, project_id, self._limits
        )
        self._gate = gate or self._gate
        self._rate = rate or self._rate
        self._dial_rate = dial_rate or self._dial_rate

    def open(self) -> None:
        """Make the session for commands that may be re-sent, unless the caller gave one."""
        if self.session is None:
            self.session = make_session(self._limits)

    def _open_unsafe(self) -> aiohttp.ClientSession:
        """
        The session for commands that must not be sent twice, made on first use.

        Only by :meth:`send`, which has checked the AsyncRelay is not closed (close()
        would never close a session made after it).
        """
        session = self.session
        assert session is not None  # open() ran: the AsyncRelay opens before any send
        if self.owns_session:
            session = make_unsafe_session(self._limits)
        # A session given by the caller carries everything (see AsyncRelay's docstring).
        self.unsafe_session = session
        return session

    @property
    def unclosed(self) -> bool:
        """Whether a session made here is still open (close() was never awaited)."""
        return self.owns_session and self.session is not None and not self.session.closed

    async def close(self) -> None:
        """Refuse every send from now on, and close the sessions made here."""
        self.closed = True
        if self.shared is not None:
            await self.shared.close()
        if self.owns_session:
            for session in (self.session, self.unsafe_session):
                if session is not None:
                    await session.close()

    async def send(  # noqa: PLR0917 - private; positional on the hot path
        self,
        name: str,
        data: bytes,
        body: Mapping[str, Any] | None,
        idempotency: Idempotency,
        policy: RetryPolicy,
        parse: Callable[[Any], Any] | None,
        watch: Watched | None = None,
        timeout: Timeout | float | timedelta | _Default | None = USE_DEFAULT,
    ) -> Any:
        """
        POST command *name* (*data*, the encoding of *body*) until it succeeds or must not.

        *body* is needed only by a command that must not be sent twice (for
        AmbiguousOutcomeError); None for the others.

        Returns the 2xx body read by *parse*, or the whole :class:`Reply`
        without one (``execute``). Raises what the last attempt raised (see
        :class:`relaycall._retry.Retries`). *watch* is what the command
        starts: an attempt 2, 3... its callbacks show was not needed raises
        AlreadyProcessed instead of going out.

        Every attempt runs here, in this one coroutine: a command that
        succeeds at once (nearly all) builds no retry state, closure, partial
        or coroutine, which matters to the garbage collector with thousands
        in flight.
        """
        client = (
            self._client_timeout if timeout is USE_DEFAULT else client_timeout(Timeout.of(timeout))
        )
        dial_rate = self._dial_rate if name == "dial" else None
        headers: Mapping[str, str] = self._headers
        retries: Retries | None = None
        started = time.monotonic()
        while True:
            session: aiohttp.ClientSession | None = None
            try:
                if self.closed:
                    raise ClientClosedError(f"{name}: the AsyncRelay was closed")
                gate = self._gate
                if not gate.try_acquire():
                    await gate.acquire()
                try:
                    if self._rate is not None:
                        await self._rate.acquire()
                    if dial_rate is not None:
                        await dial_rate.acquire()
                    if retries is not None:
                        # Checked last, after every limiter: a re-send can wait long
                        # there, and callbacks proving an earlier attempt was
                        # processed may arrive.
                        if watch is not None and watch._processed():
                            raise AlreadyProcessed(name)
                        headers = {**self.headers, "Relaycall-Attempt": str(retries.attempt)}
                    if self.closed:  # closed while the limiters held it: nothing is sent
                        raise ClientClosedError(f"{name}: the AsyncRelay was closed")
                    # The pool is chosen per attempt, once the limiters let it go (see _fresh).
                    # The newest entry tells whether a fresh connection is idle; aiohttp's own
                    # check on every reuse keeps a dial off an older one, whatever this guesses.
                    fresh = self._fresh
                    if fresh and time.monotonic() - fresh[-1] < self._share_within:
                        fresh.pop()
                        session = self.unsafe_session
                    elif idempotency is _UNSAFE:
                        session = self.unsafe_session or self._open_unsafe()
                    else:
                        session = self.session
                        fresh = None
                    assert session is not None  # open() ran: the AsyncRelay opens before any send
                    async with session.post(
                        self.url,
                        data=data,
                        headers=headers,
                        timeout=client,
                        allow_redirects=False,
                    ) as resp:
                        raw = await resp.read()
                        status, resp_headers = resp.status, resp.headers
                    if fresh is not None:
                        fresh.append(time.monotonic())  # its connection is back in the pool
                except FAILURES as exc:
                    if self.closed:  # close() aborted it: not an ambiguity
                        raise ClientClosedError(f"{name}: the AsyncRelay was closed") from exc
                    raise map_failure(exc, name) from exc
                except RuntimeError as exc:
                    # aiohttp raises RuntimeError when its session was closed under us.
                    if session is not None and session.closed:
                        raise ClientClosedError(f"{name}: the HTTP session is closed") from exc
                    raise
                finally:
                    gate.release()
                decoded = _decode(raw)
                if not 200 <= status < 300:
                    raise make_status_error(status, resp_headers, decoded, command=name)
            except RelayError as exc:
                if retries is None:
                    retries = Retries(policy, idempotency, name, body, started)
                await retries.after(exc)
                continue
            if parse is None:
                return Reply(status, resp_headers, decoded, 0 if retries is None else retries.taken)
            try:
                return parse(decoded)
            except ResponseValidationError as exc:
                exc.command = name
                raise


def utf8_object(data: bytes) -> bool:
    """
    Whether JSON bytes are an object in UTF-8, as ``json.detect_encoding`` would find.

    An object whose second byte is not NUL has no BOM and is not UTF-16 or UTF-32:
    what the detection says after five checks, read from two bytes.
    """
    return data[:1] == b"{" and data[1:2] != b"\x00"


#: The C scanner json.loads ends in: (value, end) for the JSON value at an index.
_SCAN: Callable[[str, int], tuple[Any, int]] = json.JSONDecoder().scan_once  # type: ignore[attr-defined]


def _decode(data: bytes) -> Any:
    """JSON when the reply is JSON, else its text (``calling.ai_sidecar.status`` is text)."""
    if not data:
        return None
    # Nearly every reply is one UTF-8 object, and this is json.loads's own work on it
    # without the Python around it (encoding detection, whitespace matches): 1.4 µs
    # less per reply. Anything else (a trailing newline, an error) goes through
    # json.loads, which decides as before.
    if utf8_object(data):
        try:
            text = data.decode("utf-8", "surrogatepass")
            value, end = _SCAN(text, 0)
            if end == len(text):
                return value
        except (ValueError, StopIteration):
            pass
    try:
        return json.loads(data)
    except ValueError:
        return data.decode("utf-8", errors="replace")


#: How long before the total bound a connect bound no shorter than it ends (see
#: client_timeout). The two timers start microseconds apart; what the margin must
#: outlast is the event loop waking late (the selector's wait is rounded up to whole
#: milliseconds, and a loop blocked past both deadlines runs both in one pass). Then
#: the total one still wins, and the stall is reported as maybe sent: never re-sent.
_CONNECT_MARGIN = 0.05


def client_timeout(timeout: Timeout) -> aiohttp.ClientTimeout:
    """
    aiohttp's timeouts for *timeout*, exact to the loop's clock.

    aiohttp's ``connect`` covers waiting for a pooled connection as well as
    connecting; failing inside it means nothing was written.

    A read timeout no shorter than the total one is left to the total one
    (``Timeout()``'s 30 s and 30 s, ``Timeout.of(s)``). aiohttp arms the
    read timer once the request is written (or bytes of the reply arrive),
    after the total one started, so it cannot fire first; but it makes,
    pushes on the loop's heap and cancels a timer for every chunk of every
    reply, 7% of a command's CPU (benchmarks/RESULTS.md, "Sixth round"). For
    that, the total one must not fire late: aiohttp rounds a timeout of 5 s
    or more up to a whole second of the loop's clock (``ceil_threshold``), up
    to a second after the read one would have; relaycall's timeouts are not
    rounded.
    """
    total, read, connect = timeout.total, timeout.read, timeout.connect
    if total is not None:
        if read is not None and read >= total:
            read = None
        # The connect timer also starts after the total one: a connect bound no shorter
        # (or none) loses that race, and a stall while connecting or waiting for a pooled
        # connection, with nothing sent, ends as the total's timeout, which must be read
        # as "may have been sent" (a dial's AmbiguousOutcomeError, not re-sent). Ended
        # just before the total one, it is a ConnectTimeout (a dial is re-sent), as a
        # shorter connect bound gives.
        before_total = total - min(_CONNECT_MARGIN, total / 2)
        if connect is None or connect > before_total:
            connect = before_total
    return aiohttp.ClientTimeout(
        total=total, connect=connect, sock_read=read, ceil_threshold=math.inf
    )


def make_session(limits: Limits) -> aiohttp.ClientSession:
    """The session for commands that may be re-sent: a pool kept for ``limits.keepalive``."""
    return _session(limits, limits.keepalive)


def make_unsafe_session(limits: Limits) -> aiohttp.ClientSession:
    """
    The session for commands that must not be sent twice (``dial``, ``transfer``...).

    A server closes a connection that stayed idle for its keep-alive timeout
    (often 1 to 5 s, some proxies less). A request written on it just as it
    closes gets no reply, and nothing tells whether the server read it: for a
    command that must not be sent twice that is an AmbiguousOutcomeError,
    although in the usual case the server never saw it. So these commands
    never take a connection idle for longer than ``limits.unsafe_keepalive``
    (0.5 s by default), well inside any keep-alive timeout; aiohttp checks the
    idle time when it hands out a pooled connection, and closes an older one
    instead. Back-to-back dials still share connections; a dial after a pause
    pays for a new one (a TCP and TLS handshake). A failure to connect is
    provably before sending, and is retried (ConnectError). Other commands
    take a connection of this pool too when one was released within the bound
    (see Transport._fresh): a script's dial and the play after it share one.
    """
    return _session(limits, limits.unsafe_keepalive)


def _session(limits: Limits, keepalive: float) -> aiohttp.ClientSession:
    connector = (
        aiohttp.TCPConnector(
            limit=limits.max_connections, limit_per_host=0, keepalive_timeout=keepalive
        )
        if keepalive
        # 0: a fresh connection for every request (aiohttp refuses a
        # keepalive_timeout together with force_close).
        else aiohttp.TCPConnector(limit=limits.max_connections, limit_per_host=0, force_close=True)
    )
    # Timeouts are given per request; the session's own default must not cut in first.
    return aiohttp.ClientSession(
        connector=connector, timeout=aiohttp.ClientTimeout(total=None), raise_for_status=False
    )


# What a failed POST can raise: aiohttp's errors, OS-level errors (ssl.SSLError
# and, from 3.11, TimeoutError among them) and asyncio's timeout on 3.10.
FAILURES = (aiohttp.ClientError, OSError, asyncio.TimeoutError)


def map_failure(exc: BaseException, command: str) -> TransportError:
    """The TransportError for one of FAILURES raised while sending *command*."""
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        return ConnectTimeout(
            f"{command}: timed out connecting to the server; the request was not sent",
            command=command,
        )
    if isinstance(exc, aiohttp.ClientConnectorCertificateError | aiohttp.ClientConnectorSSLError):
        return TLSError(f"{command}: TLS handshake failed: {exc}", command=command)
    if isinstance(exc, aiohttp.ClientConnectorError):
        return ConnectError(
            f"{command}: could not connect to {exc.host}:{exc.port} ({exc.os_error}); "
            "the request was not sent",
            command=command,
        )
    if isinstance(exc, aiohttp.SocketTimeoutError):
        return ReadTimeout(
            f"{command}: no reply within the read timeout; the server may have acted on it",
            command=command,
        )
    if isinstance(exc, aiohttp.ServerDisconnectedError | aiohttp.ClientPayloadError):
        return ConnectionLostError(
            f"{command}: the connection closed before a complete reply ({exc}); "
            "the server may have acted on it",
            command=command,
        )
    if isinstance(exc, ssl.SSLError):
        return TLSError(f"{command}: TLS error: {exc}", command=command)
    if isinstance(exc, aiohttp.ClientOSError):
        return ConnectionLostError(
            f"{command}: connection error after connecting ({exc}); "
            "the server may have acted on it",
            command=command,
        )
    if isinstance(exc, asyncio.TimeoutError):
        # aiohttp's total timeout: the request may have been written.
        return ReadTimeout(
            f"{command}: no reply within the total timeout; the server may have acted on it",
            command=command,
        )
    if isinstance(exc, aiohttp.ClientError):
        return TransportError(f"{command}: HTTP client error: {exc}", command=command)
    return ConnectionLostError(
        f"{command}: connection error ({exc}); the server may have acted on it",
        command=command,
    )
