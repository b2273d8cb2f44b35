"""
:func:`relaycall.verify_signature` for a request of aiohttp or Starlette (FastAPI).

Loaded on first use (relaycall/__init__.py's ``__getattr__``). Neither
framework is imported at run time: the requests are read through the few
attributes used here, so a FastAPI app does not load aiohttp's server, and
relaycall does not depend on Starlette.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Protocol

from relaycall._signature import (
    aiohttp_url,
    asgi_url,
    check_url_option,
    length_over,
    signature_matches,
    signing_key_bytes,
)
from relaycall.errors import UsageError

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from aiohttp import web

__all__ = ["DEFAULT_MAX_BODY_SIZE", "verify_aiohttp_request", "verify_starlette_request"]

#: The largest body the helpers read (aiohttp's own default ``client_max_size``).
DEFAULT_MAX_BODY_SIZE = 1024 * 1024

UrlOption = str | Callable[[str], str] | None


class StarletteRequest(Protocol):
    """What :func:`verify_starlette_request` reads of a ``starlette.requests.Request``."""

    @property
    def scope(self) -> Mapping[str, Any]: ...

    def stream(self) -> AsyncIterator[bytes]: ...


async def verify_aiohttp_request(
    signing_key: str | bytes,
    request: web.Request,
    *,
    url: UrlOption = None,
    max_body_size: int = DEFAULT_MAX_BODY_SIZE,
) -> bool:
    """
    :func:`relaycall.verify_signature` for an aiohttp ``web.Request``: reads its body and checks.

    Example::

        async def swml_webhook(request: web.Request) -> web.Response:
            if not await relaycall.verify_aiohttp_request(signing_key, request):
                raise web.HTTPForbidden()
            fetch = await request.json()  # the body is still readable
            ...

    The body is read with ``request.read()``, so the handler can read it
    again (``read()``, ``json()``, ``text()``).

    Args:
        signing_key: The project's signing key.
        request: The request.
        url: The URL the platform signed. None (the default): the URL the
            request arrived at, as aiohttp builds it from the connection's
            scheme and the ``Host`` header: right when the platform reaches
            the app directly. A string: that URL, used exactly (its query
            included). A function: called with the URL the request arrived
            at, returns the one the platform called (behind a proxy that
            rewrites scheme, host or path; docs/webhooks.md).
        max_body_size: A body over this many bytes is not read: False.

    Returns False, never raising, for a request that is not signed, is signed
    wrongly, has garbled headers, a body over the limit or one the client
    did not finish sending.
    """
    key = _checked(signing_key, url, max_body_size)
    length = request.content_length
    if length is not None and length > max_body_size:
        return False
    try:
        body = await request.read()
    except Exception:  # noqa: BLE001 - over client_max_size, or the client went away: unverified
        return False
    if len(body) > max_body_size:
        return False
    return signature_matches(key, (_signed_url(url, aiohttp_url(request)),), body, request.headers)


async def verify_starlette_request(
    signing_key: str | bytes,
    request: StarletteRequest,
    *,
    url: UrlOption = None,
    max_body_size: int = DEFAULT_MAX_BODY_SIZE,
) -> bool:
    """
    :func:`relaycall.verify_signature` for a Starlette (or FastAPI) ``Request``.

    Example::

        @app.post("/swml")
        async def swml_webhook(request: Request):
            if not await relaycall.verify_starlette_request(signing_key, request):
                raise HTTPException(403)
            fetch = await request.json()  # the body is still readable
            ...

    The body is read at most *max_body_size* bytes far (Starlette itself has
    no limit) and kept where ``request.body()`` and ``request.json()`` find
    it. The URL the request arrived at is built as ``EventReceiver`` builds
    it: the scope's scheme, the ``Host`` header, and the path as the client
    sent it, escapes kept (Starlette's ``request.url`` decodes them). *url*
    and *max_body_size* are those of :func:`verify_aiohttp_request`.

    Returns False, never raising, for a request that is not signed, is signed
    wrongly, has garbled headers, a body over the limit or one the client
    did not finish sending.
    """
    key = _checked(signing_key, url, max_body_size)
    scope = request.scope
    headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
    if length_over(headers.get("content-length"), max_body_size):
        return False
    body = getattr(request, "_body", None)
    if not isinstance(body, bytes):
        chunks = bytearray()
        try:
            async for chunk in request.stream():
                chunks += chunk
                if len(chunks) > max_body_size:
                    return False
        except Exception:  # noqa: BLE001 - the client went away: unverified
            return False
        body = bytes(chunks)
        # Where Starlette's Request.body() keeps the body it read, and looks
        # for it first (tests/test_signature.py reads the JSON after a check).
        request._body = body  # type: ignore[attr-defined]
    query = scope.get("query_string", b"").decode("latin-1")
    received = asgi_url(scope, headers, query)
    return signature_matches(key, (_signed_url(url, received),), body, headers)


def _checked(signing_key: object, url: object, max_body_size: object) -> bytes:
    key = signing_key_bytes(signing_key)
    check_url_option(url)
    if not isinstance(max_body_size, int) or isinstance(max_body_size, bool) or max_body_size < 1:
        raise UsageError(f"max_body_size must be a positive integer, not {max_body_size!r}")
    return key


def _signed_url(url: UrlOption, received: str) -> str:
    if url is None:
        return received
    if isinstance(url, str):
        return url
    signed = url(received)
    if not isinstance(signed, str):
        raise UsageError(f"the url function returned {type(signed).__name__}, not a string")
    return signed
