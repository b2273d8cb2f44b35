"""
Fetching a recording's audio: ``relay.download_recording()`` and ``relay.stream_recording()``.

A GET changes nothing on the server, so every failure the retry policy calls
transient is retried (connect errors, 5xx, 429 and 503 after their
``Retry-After``, a connection dropped mid-body), with the session's
:class:`RetryPolicy` and tenacity engine (relaycall/_retry.py). The session's
credentials go only to the API's own origin: a recording URL (or a redirect)
on any other host, port or scheme is fetched without them, so a URL in a
callback can never make relaycall hand the token to someone else.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Mapping
from pathlib import Path
from typing import IO, Any
from urllib.parse import urljoin, urlsplit

import aiohttp

from relaycall._config import RetryPolicy
from relaycall._idempotency import Idempotency
from relaycall._results import RecordingResult
from relaycall._retry import Retries
from relaycall._transport import FAILURES, map_failure
from relaycall.errors import (
    ClientClosedError,
    RecordingTooLargeError,
    RelayError,
    UsageError,
    make_status_error,
    show_value_masked,
)

__all__ = ["DEFAULT_MAX_BYTES", "Fetch", "recording_url"]

#: What the requests are called in errors and retry logs.
NAME = "download_recording"
#: The default size limit: 256 MiB, over four hours of the 8 kHz 16-bit mono WAV
#: the platform records by default (57.6 MB an hour).
DEFAULT_MAX_BYTES = 256 * 1024 * 1024
MAX_REDIRECTS = 10
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_CHUNK = 64 * 1024


def recording_url(recording: object) -> str:
    """The URL to fetch: a RecordingResult's *url*, or a URL string; UsageError otherwise."""
    if isinstance(recording, RecordingResult):
        if recording.url is None:
            raise UsageError(
                f"recording: this RecordingResult has no url (state {recording.state!r}, "
                f"reason {recording.reason!r}): only a finished recording's callback carries one"
            )
        url = recording.url
    elif isinstance(recording, str):
        url = recording
    else:
        raise UsageError(
            "recording must be a RecordingResult (from `await rec.wait()`) or its URL, not "
            f"{type(recording).__name__}"
        )
    check_http_url("recording", url)
    return url


def check_http_url(what: str, url: str) -> None:
    """An absolute http(s) URL without user:password@, or a UsageError naming *what*."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a port that is no port
    except ValueError as exc:
        raise UsageError(f"{what}: not a URL ({exc}): {show_value_masked(url)}") from None
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise UsageError(f"{what}: only http(s) URLs are fetched, not {_shown(url)}")
    if parts.username is not None or parts.password is not None:
        raise UsageError(f"{what}: a URL with user:password@ is not fetched: {_shown(url)}")


def _shown(url: str) -> str:
    """*url* for a message: without its query, which may be a pre-signed URL's credential."""
    return show_value_masked(url.partition("?")[0].partition("#")[0], 120)


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    return scheme, (parts.hostname or "").lower(), parts.port or {"http": 80, "https": 443}[scheme]


class Fetch:
    """
    One recording fetch: its URL, the session's pool, credentials, timeouts and retry policy.

    Built by :meth:`AsyncRelay.download_recording` / :meth:`~AsyncRelay.stream_recording`.
    """

    def __init__(  # noqa: PLR0917 - private; built in one place
        self,
        url: str,
        session: aiohttp.ClientSession,
        api_url: str,
        headers: Mapping[str, str],
        timeout: aiohttp.ClientTimeout,
        policy: RetryPolicy,
        max_bytes: int | None,
        closed: Callable[[], bool],
    ) -> None:
        self.url = url
        self._session = session
        self._api = _origin(api_url)
        self._headers = headers
        self._timeout = timeout
        self._policy = policy
        self.max_bytes = max_bytes
        self._closed = closed

    def _headers_for(self, url: str) -> dict[str, str]:
        """What a GET of *url* carries: the Authorization header only on the API's own origin."""
        headers = {"User-Agent": self._headers["User-Agent"], "Accept": "*/*"}
        # Also the URL the caller gave: another host redirecting to the API's
        # origin must not get an authenticated GET (its body written to the file).
        if _origin(url) == self._api and _origin(self.url) == self._api:
            headers["Authorization"] = self._headers["Authorization"]
        return headers

    async def _open(self) -> aiohttp.ClientResponse:
        """GET the URL, following redirects here (each hop gets its own credentials decision)."""
        url = self.url
        for _ in range(MAX_REDIRECTS + 1):
            if self._closed():
                raise ClientClosedError(f"{NAME}: the AsyncRelay was closed")
            try:
                resp = await self._session.get(
                    url,
                    headers=self._headers_for(url),
                    timeout=self._timeout,
                    # Followed below: aiohttp would carry the Authorization header
                    # to wherever a redirect points on the same host name.
                    allow_redirects=False,
                )
            except FAILURES as exc:
                raise self._failure(exc) from exc
            if resp.status in _REDIRECTS and "Location" in resp.headers:
                location = resp.headers["Location"]
                resp.release()
                url = urljoin(url, location)
                check_http_url("recording (redirected)", url)
                continue
            if not 200 <= resp.status < 300:
                try:
                    raw = await resp.content.read(4096)
                except FAILURES:
                    raw = b""
                finally:
                    resp.release()
                text = raw.decode("utf-8", "replace")
                raise make_status_error(resp.status, resp.headers, text, command=NAME)
            length = resp.content_length
            if self.max_bytes is not None and length is not None and length > self.max_bytes:
                resp.close()  # the body is not worth reading
                raise RecordingTooLargeError(self.url, self.max_bytes, length)
            return resp
        raise UsageError(f"{NAME}: more than {MAX_REDIRECTS} redirects from {_shown(self.url)}")

    def _failure(self, exc: BaseException) -> RelayError:
        if self._closed():
            return ClientClosedError(f"{NAME}: the AsyncRelay was closed")
        return map_failure(exc, NAME)

    async def _chunks(self, resp: aiohttp.ClientResponse) -> AsyncIterator[bytes]:
        """The body, chunk by chunk, with network failures mapped and max_bytes enforced."""
        received = 0
        while True:
            try:
                chunk = await resp.content.read(_CHUNK)
            except FAILURES as exc:
                raise self._failure(exc) from exc
            if not chunk:
                return
            received += len(chunk)
            if self.max_bytes is not None and received > self.max_bytes:
                raise RecordingTooLargeError(self.url, self.max_bytes, None)
            yield chunk

    async def _retrying(self, attempt: Callable[[], Any]) -> Any:
        """Run *attempt* until it succeeds or the retry policy says its failure is final."""
        retries: Retries | None = None
        started = time.monotonic()
        while True:
            try:
                return await attempt()
            except RelayError as exc:  # noqa: PERF203 - one iteration per attempt
                if retries is None:
                    retries = Retries(self._policy, Idempotency.SAFE, NAME, {}, started)
                await retries.after(exc)  # raises a final failure, else waits

    async def stream(self) -> AsyncIterator[bytes]:
        """The audio's chunks; retried until the body starts (then a failure is raised)."""
        resp: aiohttp.ClientResponse = await self._retrying(self._open)
        try:
            async for chunk in self._chunks(resp):
                yield chunk
        finally:
            resp.release()

    async def download(self, path: Path) -> int:
        """
        Write the audio to *path* through a temporary file beside it; return its size.

        Each attempt writes the file from its start; the temporary file becomes
        *path* only once a whole body is in, and is deleted on any failure.
        """
        # Made here, not in a thread: a cancellation while a thread made it
        # would leave the file behind with nobody holding its name.
        fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
        try:
            file = os.fdopen(fd, "wb")
        except BaseException:
            os.close(fd)
            os.unlink(temp)
            raise
        try:
            size = await self._retrying(lambda: self._download_once(file))
            await asyncio.to_thread(_finish, file)
            await asyncio.to_thread(os.replace, temp, path)
        except BaseException:
            file.close()
            with contextlib.suppress(OSError):
                os.unlink(temp)
            raise
        return int(size)

    async def _download_once(self, file: IO[bytes]) -> int:
        resp = await self._open()
        try:
            await asyncio.to_thread(_rewind, file)
            size = 0
            async for chunk in self._chunks(resp):
                # Disk errors (ENOSPC...) are not RelayErrors: they are raised, not retried.
                await asyncio.to_thread(file.write, chunk)
                size += len(chunk)
            return size
        finally:
            resp.release()


def _rewind(file: IO[bytes]) -> None:
    """Start the file over: an earlier attempt may have written part of a body."""
    file.seek(0)
    file.truncate()


def _finish(file: IO[bytes]) -> None:
    """Flush the file to disk before it takes its final name."""
    file.flush()
    os.fsync(file.fileno())
    file.close()


def check_max_bytes(max_bytes: object) -> None:
    if max_bytes is not None and (
        not isinstance(max_bytes, int) or isinstance(max_bytes, bool) or max_bytes < 1
    ):
        raise UsageError(
            f"max_bytes must be a positive integer or None, not {show_value_masked(max_bytes)}"
        )


def check_path(path: object) -> Path:
    """*path* as a Path to a file in an existing directory; UsageError naming it otherwise."""
    if not isinstance(path, str | os.PathLike):
        raise UsageError(f"path must be a str or a path-like object, not {type(path).__name__}")
    target = Path(path)
    if target.is_dir():
        raise UsageError(f"path {str(target)!r} is a directory: give the file to write")
    if not target.parent.is_dir():
        raise UsageError(f"path: the directory {str(target.parent)!r} does not exist")
    return target
