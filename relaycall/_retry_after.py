"""
The server's ``Retry-After``: how long it asks a client to wait before sending again.

A leaf: read by :class:`relaycall.RateLimitError` when a 429 is made, and by
the retry policy's backoff for any status that carries one (a 503 may).
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from email.utils import parsedate_to_datetime

__all__ = ["parse_retry_after"]


def parse_retry_after(headers: Mapping[str, str]) -> float | None:
    """
    Read ``Retry-After`` (seconds or an HTTP date) or ``retry-after-ms``.

    Returns None for a missing, negative or unreadable value.
    """
    lowered = {k.lower(): v for k, v in headers.items()}
    ms = lowered.get("retry-after-ms")
    if ms is not None:
        try:
            value = float(ms) / 1000
        except ValueError:
            value = math.nan
        if math.isfinite(value) and value >= 0:
            return value
    raw = lowered.get("retry-after")
    if raw is None:
        return None
    raw = raw.strip()
    try:
        value = float(raw)
    except ValueError:
        try:
            when = parsedate_to_datetime(raw)
        except (TypeError, ValueError, IndexError):
            return None
        value = when.timestamp() - time.time()
        return max(0.0, value)
    if not math.isfinite(value) or value < 0:
        return None
    return value
