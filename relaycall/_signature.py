"""
Webhook signatures: the one check of ``X-SignalWire-Signature``, for EventReceiver and for apps.

SignalWire signs what it sends to an app (the SWML fetch, reference §9.6, and
callbacks where it signs them) with the project's signing key:

- ``X-SignalWire-Signature``: the hex HMAC-SHA1 of the URL followed by the raw body;
- ``X-SignalWire-SHA256-Signature``: the hex HMAC-SHA256 of the same bytes.

The URL is the one the platform called, exactly as it was given to the
platform (scheme, host, port, path and query): docs/webhooks.md has the rules
behind a proxy. :class:`relaycall.EventReceiver` runs :func:`signature_matches`
for every request when it has a signing key, and :func:`verify_signature` is the
same check for handlers of your own. Only the standard library is imported here:
``import relaycall`` pays nothing for it.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable, Mapping
from typing import Any

from relaycall.errors import UsageError, show_value_masked

__all__ = [
    "SHA1_HEADER",
    "SHA256_HEADER",
    "aiohttp_url",
    "asgi_url",
    "length_over",
    "signature_matches",
    "signing_key_bytes",
    "verify_signature",
]

SHA1_HEADER = "X-SignalWire-Signature"
SHA256_HEADER = "X-SignalWire-SHA256-Signature"
_SHA1 = SHA1_HEADER.lower()
_SHA256 = SHA256_HEADER.lower()


def verify_signature(
    signing_key: str | bytes, url: str, body: bytes, headers: Mapping[str, str]
) -> bool:
    """
    Whether a request carries a valid SignalWire signature: the check ``EventReceiver`` runs.

    Example (an aiohttp handler of your own; :func:`relaycall.verify_aiohttp_request`
    does the same in one line)::

        body = await request.read()
        if not relaycall.verify_signature(key, "https://app.example.com/hook?" +
                                          request.query_string, body, request.headers):
            raise web.HTTPForbidden()

    True when at least one of ``X-SignalWire-Signature`` (HMAC-SHA1) and
    ``X-SignalWire-SHA256-Signature`` (HMAC-SHA256) is present and every one
    present is the hex HMAC, under *signing_key*, of *url* (UTF-8) followed by
    *body*. Compared in constant time, as bytes. Header names are matched
    without regard to case; hex digits may be either case. A missing, empty,
    non-ASCII or otherwise garbled header is False, never an exception.

    Args:
        signing_key: The project's signing key (not the API token).
        url: The URL the platform sent the request to, exactly as the
            platform has it: scheme, host, port (only if it was written),
            path and query string. Behind a proxy this is the public URL, not
            the one your server saw (docs/webhooks.md).
        body: The raw request body, as received (not re-encoded JSON).
        headers: The request's headers (aiohttp's, Starlette's, or a dict).

    Raises:
        UsageError: An argument of the wrong type, or an empty signing key
            (against which anyone could sign).
    """
    key = signing_key_bytes(signing_key)
    if not isinstance(url, str):
        raise UsageError(f"url must be a string, not {type(url).__name__}")
    if not isinstance(body, bytes | bytearray | memoryview):
        raise UsageError(f"body must be the raw request body as bytes, not {type(body).__name__}")
    if not isinstance(headers, Mapping):
        raise UsageError(f"headers must be a mapping of header names, not {type(headers).__name__}")
    return signature_matches(key, (url,), bytes(body), headers)


def signing_key_bytes(signing_key: object) -> bytes:
    """*signing_key* as the HMAC key; UsageError naming it for what cannot be one."""
    if isinstance(signing_key, str):
        key = signing_key.encode("utf-8", "surrogatepass")
    elif isinstance(signing_key, bytes):
        key = signing_key
    else:
        raise UsageError(
            f"signing_key must be a string (the project's signing key), not "
            f"{type(signing_key).__name__}"
        )
    if not key:
        # An HMAC under an empty key is one anybody can compute: refusing it
        # catches os.environ.get("SIGNALWIRE_SIGNING_KEY", "") left unset.
        raise UsageError("signing_key is empty: every request would be accepted as signed")
    return key


def signature_matches(
    key: bytes, urls: Iterable[str], body: bytes, headers: Mapping[str, Any]
) -> bool:
    """
    Whether *headers* sign *body* posted to one of *urls* under *key*: :func:`verify_signature`.

    *urls* are the URLs the signature may be over, likeliest first (the
    receiver tries two spellings of its own URL). Never raises for what a
    client sent: a header that is not text, or not ASCII, is a wrong signature.
    """
    sha1 = _header(headers, _SHA1)
    sha256 = _header(headers, _SHA256)
    if sha1 is None and sha256 is None:
        return False
    return any(_matches(key, _utf8(url) + body, sha1, sha256) for url in urls)


def _matches(key: bytes, signed: bytes, sha1: object, sha256: object) -> bool:
    if sha1 is not None and not _same_hex(hmac.new(key, signed, hashlib.sha1).hexdigest(), sha1):
        return False
    return sha256 is None or _same_hex(hmac.new(key, signed, hashlib.sha256).hexdigest(), sha256)


def _same_hex(want: str, given: object) -> bool:
    # Compared as bytes: compare_digest raises TypeError for a str that is not
    # ASCII, and header values are whatever the client sent.
    if isinstance(given, bytes):
        given = given.decode("latin-1")
    if not isinstance(given, str):
        return False
    return hmac.compare_digest(want.encode(), _utf8(given.strip().lower()))


def _header(headers: Mapping[str, Any], name: str) -> Any:
    """*name*'s value (given lowercase) in *headers*, whatever the case of its key."""
    value = headers.get(name)
    if value is not None:
        return value
    for k, v in headers.items():
        if isinstance(k, str) and k.lower() == name:
            return v
    return None


def _utf8(text: str) -> bytes:
    """*text* as UTF-8, whatever it holds: a lone surrogate cannot make it raise."""
    try:
        return text.encode()
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogatepass")


def aiohttp_url(request: Any) -> str:
    """
    The URL an aiohttp request was made to, as a signature is over it.

    Built as :func:`asgi_url` builds an ASGI request's: the connection's scheme,
    the ``Host`` header as sent, and the request target as sent (escapes, dot
    segments and a default port kept), where ``str(request.url)`` would
    normalise them and so miss the URL the platform signed.
    """
    target = request.raw_path
    if target.startswith(("http://", "https://")):  # an absolute-form target: the URL itself
        return str(target)
    return f"{request.scheme}://{request.host}{target}"


def asgi_url(scope: Mapping[str, Any], headers: Mapping[str, str], query: str) -> str:
    """
    The URL an ASGI request was made to, as a signature is over it.

    Scheme from the scope (uvicorn sets it from ``X-Forwarded-Proto`` only with
    ``--proxy-headers``, from addresses it trusts), host from the ``Host``
    header, path as the client sent it (escapes kept), and *query*.
    """
    host = headers.get("host") or "{}:{}".format(*scope.get("server") or ("localhost", 80))
    raw = scope.get("raw_path")
    if raw:
        # The request target as the server took it (escapes kept, as signed),
        # which neither a mount nor a root_path changes; some servers leave
        # the query in it.
        path = raw.decode("latin-1").partition("?")[0]
    else:
        # The whole path, root_path included, as the ASGI spec has it (and
        # Starlette >= 0.33 keeps it under a mount); older servers and
        # frameworks left root_path out of it.
        path = scope.get("path", "")
        root = scope.get("root_path", "")
        if root and not (path == root or path.startswith(root.rstrip("/") + "/")):
            path = root + path
    url = f"{scope.get('scheme', 'http')}://{host}{path}"
    return f"{url}?{query}" if query else url


def check_url_option(url: object) -> None:
    """The *url* option of the request helpers: None, a string or a function."""
    if url is not None and not isinstance(url, str) and not callable(url):
        raise UsageError(
            "url must be the signed URL (a string), a function from the request's URL to "
            f"it, or None; not {show_value_masked(url)}"
        )


def length_over(length: str | None, limit: int) -> bool:
    """Whether a Content-Length header announces more than *limit* bytes."""
    if length is None:
        return False
    length = length.strip()
    if not (length.isascii() and length.isdigit()):
        return False  # not a length: the server refuses it, or reading finds out
    return len(length) > 18 or int(length) > limit
