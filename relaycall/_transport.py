"""
aiohttp's side of sending: the session, its timeouts, and its failures mapped to ours.

The POST itself is made by the session's attempt (one coroutine less per
command than a wrapper here). Mapping order matters (most specific first):
whether a failure happened before the request left this process decides
whether ``dial`` may be re-sent.
"""

from __future__ import annotations

import asyncio
import ssl

import aiohttp

from relaycall._config import Limits, Timeout
from relaycall.errors import (
    ConnectError,
    ConnectionLostError,
    ConnectTimeout,
    ReadTimeout,
    TLSError,
    TransportError,
)


def client_timeout(timeout: Timeout) -> aiohttp.ClientTimeout:
    # aiohttp's `connect` covers waiting for a pooled connection as well as
    # connecting; failing inside it means nothing was written.
    return aiohttp.ClientTimeout(
        total=timeout.total, connect=timeout.connect, sock_read=timeout.read
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
    provably before sending, and is retried (ConnectError).
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
