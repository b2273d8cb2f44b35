"""
Audio over WebSocket for ``calling.stream`` and ``calling.tap`` (``ws`` device).

When the URL points at a loopback host, the emulator connects to it and sends
the call's audio as JSON text frames in the Twilio-compatible media-stream
format SignalWire uses: ``connected``, ``start``, a ``media`` frame per track
every 20 emulated milliseconds (timed by the scheduler, so ``time_scale`` and
``clock.advance`` apply), then ``stop`` when the operation stops or the call
ends. The audio is 8 kHz mono PCMU: the caller (``inbound``) is a 400 Hz
tone, the other side (``outbound``) a 1 kHz tone.

A connection that fails is journaled and logged; the operation goes on.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import aiohttp

from relaycall._version import __version__
from relaycall.emulator._clock import Timer
from relaycall.emulator._outbox import is_loopback

if TYPE_CHECKING:
    from relaycall.emulator._calls import EmulatedCall
    from relaycall.emulator._core import EmulatedPlatform

__all__ = ["FRAME_SECONDS", "MEDIA_FORMAT", "MediaHub", "MediaLink", "pcmu", "tone"]

logger = logging.getLogger("relaycall.emulator")

#: Emulated seconds of audio per media frame, and samples per frame at 8 kHz.
FRAME_SECONDS = 0.02
FRAME_SAMPLES = 160
MEDIA_FORMAT = {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1}
#: Frames waiting to be written before new ones are skipped (a receiver that stalls).
MAX_QUEUED_FRAMES = 5_000

_ULAW_SEGMENTS = (0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF)


def pcmu(sample: int) -> int:
    """One 16-bit linear sample as a G.711 mu-law byte."""
    value = sample >> 2
    mask = 0xFF
    if value < 0:
        value, mask = -value, 0x7F
    value = min(value, 8159) + 0x21
    for seg, end in enumerate(_ULAW_SEGMENTS):
        if value <= end:
            return ((seg << 4) | ((value >> (seg + 1)) & 0x0F)) ^ mask
    return 0x7F ^ mask  # pragma: no cover - clipped above


def tone(frequency: float, amplitude: int = 6000) -> bytes:
    """20 ms of a sine tone as PCMU (a whole number of periods for 400 Hz and 1 kHz)."""
    return bytes(
        pcmu(round(amplitude * math.sin(2 * math.pi * frequency * n / 8000)))
        for n in range(FRAME_SAMPLES)
    )


_PAYLOADS = {
    "inbound": base64.b64encode(tone(400)).decode("ascii"),
    "outbound": base64.b64encode(tone(1000)).decode("ascii"),
}


def _dumps(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"))


_CONNECTED = _dumps({"event": "connected", "protocol": "Call", "version": "1.0.0"})


class MediaLink:
    """One WebSocket that an operation's audio goes to."""

    def __init__(  # noqa: PLR0917 - private
        self,
        hub: MediaHub,
        call: EmulatedCall,
        kind: str,
        control_id: str,
        url: str,
        tracks: Sequence[str],
        headers: Mapping[str, str],
        custom_parameters: Mapping[str, Any],
    ) -> None:
        self.hub = hub
        self.call = call
        self.kind = kind
        self.control_id = control_id
        self.url = url
        self.tracks = tuple(tracks)
        self.headers = dict(headers)
        self.custom_parameters = dict(custom_parameters)
        #: ``connecting``, ``streaming``, ``closed`` or ``failed``.
        self.state = "connecting"
        self.frames_sent = 0
        self.frames_skipped = 0
        self.messages_received = 0
        #: Whether the receiver closed the connection (or it broke) before ``stop``.
        self.peer_closed = False
        self.chunks = 0
        self.task: asyncio.Task[None] | None = None
        self._queue: asyncio.Queue[str | None] = asyncio.Queue()
        self._timer: Timer | None = None
        self._stopping = False
        self._abandoned = False
        self._seq = 0

    def __repr__(self) -> str:
        return f"<MediaLink {self.kind} {self.control_id} {self.url} {self.state}>"

    # --- frames ----------------------------------------------------------------------------

    def _next_seq(self) -> str:
        self._seq += 1
        return str(self._seq)

    def _start_frame(self) -> str:
        return _dumps(
            {
                "event": "start",
                "sequenceNumber": self._next_seq(),
                "streamSid": self.control_id,
                "start": {
                    "streamSid": self.control_id,
                    "control_id": self.control_id,
                    "callId": self.call.id,
                    "tracks": list(self.tracks),
                    "mediaFormat": dict(MEDIA_FORMAT),
                    "customParameters": self.custom_parameters,
                },
            }
        )

    def _stop_frame(self) -> str:
        return _dumps(
            {
                "event": "stop",
                "sequenceNumber": self._next_seq(),
                "streamSid": self.control_id,
                "stop": {"control_id": self.control_id, "callId": self.call.id},
            }
        )

    def _tick(self) -> None:
        """Every 20 emulated ms: one media frame per track."""
        if self._stopping:
            return
        clock = self.hub.emu.clock
        self.chunks += 1
        chunk = str(self.chunks)
        timestamp = str((self.chunks - 1) * 20)
        queue = self._queue
        for track in self.tracks:
            if queue.qsize() >= MAX_QUEUED_FRAMES:
                self.frames_skipped += 1
                continue
            queue.put_nowait(
                '{"event":"media","sequenceNumber":"%s","streamSid":%s,"media":'  # noqa: UP031
                '{"track":"%s","chunk":"%s","timestamp":"%s","payload":"%s"}}'
                % (self._next_seq(), json.dumps(self.control_id), track, chunk, timestamp,
                   _PAYLOADS[track])
            )  # fmt: skip
        self._timer = clock.after(FRAME_SECONDS, self._tick)

    # --- lifecycle ---------------------------------------------------------------------------

    def stop(self) -> None:
        """Send ``stop`` after the frames already produced, then close."""
        if self._stopping:
            return
        self._stopping = True
        self.hub.emu.clock.cancel(self._timer)
        self._timer = None
        self._queue.put_nowait(None)

    def _note(self, event: str, **data: Any) -> None:
        if self._abandoned:
            return
        self.hub.emu.note(
            self.call.id,
            f"media.{event}",
            {"kind": self.kind, "control_id": self.control_id, "url": self.url, **data},
        )

    async def run(self) -> None:
        try:
            await self._run()
        finally:
            self.hub._links.discard(self)

    async def _run(self) -> None:
        session = await self.hub.session()
        secure = urlsplit(self.url).scheme.lower() == "wss"
        try:
            ws = await session.ws_connect(
                self.url,
                headers=self.headers,
                # Loopback only: a test server's self-signed certificate is accepted.
                ssl=not secure,
                autoping=True,
                timeout=aiohttp.ClientWSTimeout(ws_close=2.0),
            )
        except (aiohttp.ClientError, OSError, asyncio.TimeoutError, ValueError) as exc:
            self.state = "failed"
            self._stopping = True
            logger.warning("emulator: %s WebSocket %s failed: %r", self.kind, self.url, exc)
            self._note("failed", error=f"{type(exc).__name__}: {exc}")
            return
        self.state = "streaming"
        self._note("connected")
        reader = asyncio.create_task(self._read(ws))
        try:
            await ws.send_str(_CONNECTED)
            await ws.send_str(self._start_frame())
            if not self._stopping:
                self._timer = self.hub.emu.clock.after(FRAME_SECONDS, self._tick)
            while True:
                frame = await self._queue.get()
                if frame is None:
                    break
                await ws.send_str(frame)
                self.frames_sent += 1
            if not self.peer_closed:
                await ws.send_str(self._stop_frame())
        except (aiohttp.ClientError, OSError) as exc:
            self.peer_closed = True
            logger.info("emulator: %s WebSocket %s closed: %r", self.kind, self.url, exc)
        finally:
            self._stopping = True
            self.hub.emu.clock.cancel(self._timer)
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader
            with contextlib.suppress(aiohttp.ClientError, OSError, asyncio.TimeoutError):
                await ws.close()
            self.state = "closed"
            self._note(
                "closed", frames=self.frames_sent, skipped=self.frames_skipped,
                peer_closed=self.peer_closed,
            )  # fmt: skip

    async def _read(self, ws: Any) -> None:
        """Read (and ignore) what the receiver sends; its closing ends the frames."""
        async for _ in ws:
            self.messages_received += 1
        if not self._stopping:
            self.peer_closed = True
            self.stop()


class MediaHub:
    """The emulator's WebSocket connections for streams and taps."""

    def __init__(self, emu: EmulatedPlatform) -> None:
        self.emu = emu
        self._session: aiohttp.ClientSession | None = None
        self._links: set[MediaLink] = set()

    @property
    def links(self) -> list[MediaLink]:
        """The connections open or opening now."""
        return list(self._links)

    async def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                headers={"User-Agent": f"relaycall-emulator/{__version__}"}
            )
        return self._session

    def open(
        self,
        call: EmulatedCall,
        kind: str,
        control_id: str,
        url: str,
        tracks: Sequence[str],
        *,
        headers: Mapping[str, str] | None = None,
        custom_parameters: Mapping[str, Any] | None = None,
    ) -> MediaLink | None:
        """Start sending the audio of *call* to *url*; None when it is not to be contacted."""
        if not self.emu.config.media_websockets:
            return None
        if not is_loopback(url):
            self.emu.note(
                call.id, "media.skipped",
                {"kind": kind, "control_id": control_id, "url": url,
                 "error": "not a loopback host"},
            )  # fmt: skip
            return None
        link = MediaLink(
            self, call, kind, control_id, url, tracks, headers or {}, custom_parameters or {}
        )
        self._links.add(link)
        link.task = asyncio.get_running_loop().create_task(link.run())
        return link

    def clear(self) -> None:
        """Abandon every connection (``reset``)."""
        for link in list(self._links):
            link._stopping = True
            link._abandoned = True
            if link.task is not None:
                link.task.cancel()
        self._links.clear()

    async def close(self, timeout: float = 2.0) -> None:
        """Send ``stop`` on every connection and close it (cancelled after *timeout* s)."""
        links = list(self._links)
        for link in links:
            link.stop()
        tasks = [link.task for link in links if link.task is not None]
        if tasks:
            await asyncio.wait(tasks, timeout=timeout)
        self.clear()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._session is not None:
            await self._session.close()
            self._session = None
