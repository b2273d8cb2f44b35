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
    connector = aiohttp.TCPConnector(
        limit=limits.max_connections,
        limit_per_host=0,
        keepalive_timeout=limits.keepalive,
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
