"""
The journal: every request the emulator answered and every callback it sent.

Bounded (oldest entries drop first), readable as Python objects and as JSON
Lines. Entries are frozen attrs classes with a ``kind`` of ``request``,
``callback`` or ``note`` (control actions such as a key press, user events).
"""

from __future__ import annotations

import itertools
import json
from collections import deque
from collections.abc import Iterator
from typing import Any, Literal

import attrs

__all__ = ["CallbackEntry", "Entry", "Journal", "NoteEntry", "RequestEntry"]

Outcome = Literal["delivered", "failed", "blocked", "dropped", "no_url"]


@attrs.frozen(kw_only=True)
class RequestEntry:
    """
    One request to the API endpoint and the answer it got.

    *fault* says when the answer was not the plain one (see docs/emulator.md):

    - ``rate_limit``: 429 from the enforced POST limit; not carried out.
    - ``call_queue_full``: 429 for a ``dial`` the full call queue refused.
    - ``fail``: an injected error status; not carried out.
    - ``fail_after_processing``: carried out, then answered with the injected
      error status (*response* is the error body).
    - ``drop_connection``: carried out, then the connection was closed
      without an answer; *status* and *response* are what would have been sent.

    *delay* is the real seconds a ``latency`` fault held the reply.
    """

    seq: int
    time: float
    command: str | None
    call_id: str | None
    status: int
    body: Any
    response: Any
    fault: str | None = None
    delay: float | None = None
    kind: Literal["request"] = "request"


@attrs.frozen(kw_only=True)
class CallbackEntry:
    """
    One status callback, and what became of it.

    *outcome* is ``delivered`` (the receiver answered 2xx), ``failed`` (another
    status or a network error, see *error*), ``blocked`` (not a loopback host
    and external callbacks are off), ``dropped`` (a delivery hook or a
    ``drop_callbacks`` fault dropped it) or ``no_url`` (the operation had no
    URL to send it to).

    *fault* names the callback fault applied: ``drop``, ``duplicate`` (the
    second copy), ``delayed`` or ``reordered``.
    """

    seq: int
    time: float
    url: str | None
    event_type: str | None
    call_id: str | None
    control_id: str | None
    outcome: Outcome
    status: int | None
    error: str | None
    body: Any
    fault: str | None = None
    kind: Literal["callback"] = "callback"


@attrs.frozen(kw_only=True)
class NoteEntry:
    """
    Something else worth recording: a key press, a user event, a transfer, and the
    WebSocket audio connections (``media.connected``, ``media.closed``,
    ``media.failed``, ``media.skipped``).
    """

    seq: int
    time: float
    call_id: str | None
    what: str
    data: Any = None
    kind: Literal["note"] = "note"


Entry = RequestEntry | CallbackEntry | NoteEntry


class Journal:
    """The last *size* entries, oldest first."""

    def __init__(self, size: int = 10_000) -> None:
        self._entries: deque[Entry] = deque(maxlen=max(1, size))
        self._seq = itertools.count(1)

    def next_seq(self) -> int:
        return next(self._seq)

    def add(self, entry: Entry) -> None:
        self._entries.append(entry)

    def __iter__(self) -> Iterator[Entry]:
        return iter(tuple(self._entries))

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def entries(self) -> list[Entry]:
        return list(self._entries)

    @property
    def requests(self) -> list[RequestEntry]:
        return [e for e in self._entries if isinstance(e, RequestEntry)]

    @property
    def callbacks(self) -> list[CallbackEntry]:
        return [e for e in self._entries if isinstance(e, CallbackEntry)]

    @property
    def notes(self) -> list[NoteEntry]:
        return [e for e in self._entries if isinstance(e, NoteEntry)]

    def clear(self) -> None:
        self._entries.clear()

    def to_jsonl(self) -> str:
        """Every entry as one JSON object per line."""
        return "".join(
            json.dumps(attrs.asdict(e), separators=(",", ":"), default=str) + "\n"
            for e in tuple(self._entries)
        )
