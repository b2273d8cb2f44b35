"""
The only module that talks aiohttp: send one POST, map aiohttp's failures to ours.

Mapping order matters (most specific first): whether a failure happened
before the request left this process decides whether ``dial`` may be re-sent.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Mapping

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


class Reply:
    # A plain slotted class, not attrs.frozen: one is built per request, and a
    # frozen attrs __init__ goes through object.__setattr__ for every field.
    __slots__ = ("data", "headers", "status")

    def __init__(self, status: int, headers: Mapping[str, str], data: bytes) -> None:
        self.status = status
        self.headers = headers
        self.data = data


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


async def post(  # noqa: PLR0917 - a private hot path; keywords would cost per call
    session: aiohttp.ClientSession,
    url: str,
    data: bytes,
    headers: Mapping[str, str],
    timeout: aiohttp.ClientTimeout,
    command: str,
) -> Reply:
    """POST *data* and read the whole reply, or raise a TransportError."""
    try:
        async with session.post(
            url, data=data, headers=headers, timeout=timeout, allow_redirects=False
        ) as resp:
            body = await resp.read()
            return Reply(resp.status, resp.headers, body)
    except aiohttp.ConnectionTimeoutError as exc:
        raise ConnectTimeout(
            f"{command}: timed out connecting to the server; the request was not sent",
            command=command,
        ) from exc
    except (aiohttp.ClientConnectorCertificateError, aiohttp.ClientConnectorSSLError) as exc:
        raise TLSError(f"{command}: TLS handshake failed: {exc}", command=command) from exc
    except aiohttp.ClientConnectorError as exc:
        raise ConnectError(
            f"{command}: could not connect to {exc.host}:{exc.port} ({exc.os_error}); "
            "the request was not sent",
            command=command,
        ) from exc
    except aiohttp.SocketTimeoutError as exc:
        raise ReadTimeout(
            f"{command}: no reply within the read timeout; the server may have acted on it",
            command=command,
        ) from exc
    except (aiohttp.ServerDisconnectedError, aiohttp.ClientPayloadError) as exc:
        raise ConnectionLostError(
            f"{command}: the connection closed before a complete reply ({exc}); "
            "the server may have acted on it",
            command=command,
        ) from exc
    except ssl.SSLError as exc:
        raise TLSError(f"{command}: TLS error: {exc}", command=command) from exc
    except aiohttp.ClientOSError as exc:
        raise ConnectionLostError(
            f"{command}: connection error after connecting ({exc}); "
            "the server may have acted on it",
            command=command,
        ) from exc
    except asyncio.TimeoutError as exc:
        # aiohttp's total timeout: the request may have been written.
        raise ReadTimeout(
            f"{command}: no reply within the total timeout; the server may have acted on it",
            command=command,
        ) from exc
    except aiohttp.ClientError as exc:
        raise TransportError(f"{command}: HTTP client error: {exc}", command=command) from exc
    except OSError as exc:
        raise ConnectionLostError(
            f"{command}: connection error ({exc}); the server may have acted on it",
            command=command,
        ) from exc
