"""
Callback delivery: one shared aiohttp session, signed bodies, journaled outcomes.

Callbacks about one call go through the same worker, so they arrive in the
order they were produced (an operation's final event before the call's
``ended``); different calls are delivered in parallel by a fixed pool of
workers. A failure is logged and journaled, never raised: the emulator keeps
running whatever the receiver does.

Callback faults (``emu.faults``) are applied when a callback is produced:
a dropped one is journaled and never queued, a duplicated one is queued twice,
a delayed one is queued after a scheduler timer, and a reordered one is held
until the next callback about the same call has been queued.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import inspect
import ipaddress
import json
import logging
import zlib
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import attrs

from relaycall._version import __version__
from relaycall.emulator._clock import Scheduler, Timer
from relaycall.emulator._config import EmulatorConfig
from relaycall.emulator._faults import Faults
from relaycall.emulator._journal import CallbackEntry, Journal, Outcome

__all__ = ["Delivery", "DeliveryHook", "FetchReply", "Outbox", "is_loopback", "sign"]

#: The largest SWML document the emulator reads (bytes).
MAX_DOCUMENT = 4 * 1024 * 1024

logger = logging.getLogger("relaycall.emulator")


@attrs.define(kw_only=True)
class Delivery:
    """One callback on its way out. A delivery hook may change *url*, *body* or *headers*."""

    url: str
    payload: Any
    call_id: str | None
    event_type: str | None
    control_id: str | None
    headers: dict[str, str] = attrs.field(factory=dict)
    #: The callback fault applied to it: ``duplicate``, ``delayed`` or ``reordered``.
    fault: str | None = None


@attrs.frozen(kw_only=True)
class FetchReply:
    """What a SWML fetch got: the status, content type and body, or the network *error*."""

    status: int | None
    content_type: str | None = None
    body: bytes = b""
    error: str | None = None


#: Runs before each delivery; return False to drop the callback (journaled as ``dropped``).
DeliveryHook = Callable[[Delivery], "Awaitable[bool | None] | bool | None"]


def sign(key: str, url: str, body: bytes) -> dict[str, str]:
    """The signature headers for a callback of *body* posted to *url*."""
    signed = url.encode() + body
    return {
        "X-SignalWire-Signature": hmac.new(key.encode(), signed, hashlib.sha1).hexdigest(),
        "X-SignalWire-SHA256-Signature": hmac.new(key.encode(), signed, hashlib.sha256).hexdigest(),
    }


def is_loopback(url: str) -> bool:
    """Whether *url* points at this machine (127.0.0.0/8, ::1 or localhost)."""
    try:
        host = urlsplit(url).hostname
    except ValueError:
        return False
    if not host:
        return False
    if host in ("localhost", "localhost."):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class Outbox:
    """Posts callbacks; see the module docstring."""

    def __init__(
        self,
        config: EmulatorConfig,
        journal: Journal,
        clock: Scheduler,
        faults: Faults | None = None,
    ) -> None:
        self._config = config
        self._journal = journal
        self._clock = clock
        self.faults = faults if faults is not None else Faults()
        #: Callbacks held back by a fault: delayed ones, and reordered ones by call.
        self._delayed: dict[int, tuple[Delivery, Timer]] = {}
        self._held: dict[str, tuple[Delivery, Timer]] = {}
        self._queues: list[asyncio.Queue[Delivery]] = [
            asyncio.Queue() for _ in range(max(1, config.callback_workers))
        ]
        self._workers: list[asyncio.Task[None]] = []
        self._session: aiohttp.ClientSession | None = None
        self._pending = 0
        self._idle: asyncio.Event | None = None
        self.hooks: list[DeliveryHook] = []

    # --- lifecycle -----------------------------------------------------------------------

    async def start(self) -> None:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self._config.callback_timeout),
                headers={"User-Agent": f"relaycall-emulator/{__version__}"},
            )
        if not self._workers:
            self._workers = [asyncio.create_task(self._work(q)) for q in self._queues]

    async def close(self) -> None:
        for task in self._workers:
            task.cancel()
        for task in self._workers:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._workers = []
        if self._session is not None:
            await self._session.close()
            self._session = None

    def clear(self) -> None:
        """Drop every callback not yet sent (also those a fault holds back)."""
        for q in self._queues:
            while not q.empty():
                q.get_nowait()
                self._done()
        for _, timer in [*self._delayed.values(), *self._held.values()]:
            self._clock.cancel(timer)
            self._done()
        self._delayed.clear()
        self._held.clear()

    @property
    def pending(self) -> int:
        """Callbacks queued or being delivered."""
        return self._pending

    async def idle(self) -> None:
        """Return once no callback is queued or in flight."""
        while self._pending:
            if self._idle is None:
                self._idle = asyncio.Event()
            await self._idle.wait()

    # --- SWML fetches ------------------------------------------------------------------------

    def reachable(self, url: str) -> bool:
        """Whether the emulator may contact *url* (loopback, unless external callbacks are on)."""
        return self._config.allow_external_callbacks or is_loopback(url)

    async def fetch(self, url: str, payload: Any, *, method: str = "POST") -> FetchReply:
        """
        Ask *url* for a SWML document: *payload* as JSON, signed like a callback
        (a ``GET`` sends no body and signs the URL alone). Never raises for the
        network or the answer; the caller judges the reply.
        """
        body = b"" if method == "GET" else json.dumps(payload, separators=(",", ":")).encode()
        headers = {"Content-Type": "application/json"} if body else {}
        if self._config.signing_key is not None:
            headers.update(sign(self._config.signing_key, url, body))
        if self._session is None:
            await self.start()
        assert self._session is not None
        try:
            async with self._session.request(
                method, url, data=body or None, headers=headers, allow_redirects=False
            ) as resp:
                raw = await resp.content.read(MAX_DOCUMENT + 1)
                if len(raw) > MAX_DOCUMENT:
                    return FetchReply(
                        status=resp.status, error=f"the answer is over {MAX_DOCUMENT} bytes"
                    )
                return FetchReply(status=resp.status, content_type=resp.content_type, body=raw)
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError, ValueError) as exc:
            return FetchReply(status=None, error=f"{type(exc).__name__}: {exc}")

    # --- sending -------------------------------------------------------------------------

    def post(
        self,
        url: str | None,
        payload: Any,
        *,
        call_id: str | None,
        event_type: str | None,
        control_id: str | None = None,
    ) -> None:
        """Queue *payload* for *url*; journal it at once when it cannot be sent."""
        if url is None:
            self._record(url, payload, call_id, event_type, control_id, "no_url")
            return
        if not self._config.allow_external_callbacks and not is_loopback(url):
            self._record(
                url, payload, call_id, event_type, control_id, "blocked",
                error="not a loopback host (EmulatorConfig.allow_external_callbacks is off)",
            )  # fmt: skip
            return
        d = Delivery(
            url=url, payload=payload, call_id=call_id, event_type=event_type, control_id=control_id
        )
        fault = self.faults.for_callback(event_type, call_id)
        if fault is None:
            self._accept()
            self._queue(d)
            return
        kind = fault.kind
        if kind == "drop_callbacks":
            self._record(url, payload, call_id, event_type, control_id, "dropped", fault="drop")
            return
        if kind == "duplicate_callbacks":
            self._accept(2)
            self._queue(d)
            self._queue(attrs.evolve(d, headers={}, fault="duplicate"))
            return
        assert fault.seconds is not None
        if kind == "delay_callbacks":
            d.fault = "delayed"
            self._accept()
            timer = self._clock.after(fault.seconds, self._release_delayed, id(d))
            self._delayed[id(d)] = (d, timer)
            return
        # reorder_callbacks: hold it until the next one about the same call is queued.
        d.fault = "reordered"
        self._accept()
        key = self._key(d)
        if key in self._held:
            self._queue(d)  # two held in a row: this one goes first, swapping them
            return
        self._held[key] = (d, self._clock.after(fault.seconds, self._release_held, key))

    @staticmethod
    def _key(d: Delivery) -> str:
        return d.call_id or d.url

    def _accept(self, n: int = 1) -> None:
        self._pending += n
        if self._idle is not None:
            self._idle.clear()

    def _queue(self, d: Delivery) -> None:
        """Put an accepted delivery on its worker's queue; a held one about its call follows."""
        key = self._key(d)
        self._queues[zlib.crc32(key.encode()) % len(self._queues)].put_nowait(d)
        held = self._held.pop(key, None)
        if held is not None:
            self._clock.cancel(held[1])
            self._queues[zlib.crc32(key.encode()) % len(self._queues)].put_nowait(held[0])

    def _release_delayed(self, ident: int) -> None:
        entry = self._delayed.pop(ident, None)
        if entry is not None:
            self._queue(entry[0])

    def _release_held(self, key: str) -> None:
        entry = self._held.pop(key, None)
        if entry is not None:
            self._queue(entry[0])

    def _done(self) -> None:
        self._pending -= 1
        if self._pending == 0 and self._idle is not None:
            self._idle.set()

    async def _work(self, queue: asyncio.Queue[Delivery]) -> None:
        while True:
            d = await queue.get()
            try:
                await self._deliver(d)
            except Exception as exc:  # noqa: BLE001 - a bad hook must not stop the worker
                # The URL without its query: the token in it is the receiver's secret.
                logger.warning("emulator: callback to %s failed: %r", d.url.split("?")[0], exc)
                self._record(
                    d.url, d.payload, d.call_id, d.event_type, d.control_id, "failed",
                    error=repr(exc), fault=d.fault,
                )  # fmt: skip
            finally:
                self._done()

    async def _deliver(self, d: Delivery) -> None:
        for hook in self.hooks:
            verdict = hook(d)
            if inspect.isawaitable(verdict):
                verdict = await verdict
            if verdict is False:
                self._record(
                    d.url, d.payload, d.call_id, d.event_type, d.control_id, "dropped",
                    fault=d.fault,
                )  # fmt: skip
                return
        body = json.dumps(d.payload, separators=(",", ":")).encode()
        headers = {"Content-Type": "application/json", **d.headers}
        if self._config.signing_key is not None:
            headers.update(sign(self._config.signing_key, d.url, body))
        if self._session is None:
            await self.start()
        assert self._session is not None
        status: int | None = None
        error: str | None = None
        try:
            async with self._session.post(
                d.url, data=body, headers=headers, allow_redirects=False
            ) as resp:
                status = resp.status
                await resp.read()
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
            error = f"{type(exc).__name__}: {exc}"
        outcome: Outcome = "delivered" if status is not None and 200 <= status < 300 else "failed"
        if outcome == "failed":
            logger.warning(
                "emulator: callback %s to %s failed (%s)",
                d.event_type,
                d.url.split("?")[0],
                error or status,
            )
        self._record(
            d.url, d.payload, d.call_id, d.event_type, d.control_id, outcome,
            status=status, error=error, fault=d.fault,
        )  # fmt: skip

    def _record(  # noqa: PLR0917 - private
        self,
        url: str | None,
        payload: Any,
        call_id: str | None,
        event_type: str | None,
        control_id: str | None,
        outcome: Outcome,
        *,
        status: int | None = None,
        error: str | None = None,
        fault: str | None = None,
    ) -> None:
        # One line per callback for `relaycall emulator -v`; a failed one has had its warning.
        if outcome != "failed" and logger.isEnabledFor(logging.INFO):
            params = payload.get("params") if isinstance(payload, dict) else None
            params = params if isinstance(params, dict) else None
            state = params.get("call_state") or params.get("state") if params else None
            logger.info(
                "emulator: callback %s%s call=%s -> %s: %s%s%s",
                event_type, f" {state}" if state else "", call_id,
                url.partition("?")[0] if url else "(no status_url)",  # no receiver tokens
                outcome, f" {status}" if status else "", f" ({fault})" if fault else "",
            )  # fmt: skip
        self._journal.add(
            CallbackEntry(
                seq=self._journal.next_seq(),
                time=self._clock.wall(),
                url=url,
                event_type=event_type,
                call_id=call_id,
                control_id=control_id,
                outcome=outcome,
                status=status,
                error=error,
                body=payload,
                fault=fault,
            )
        )
