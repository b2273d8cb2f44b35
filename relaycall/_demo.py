"""
``relaycall demo``: an IVR against the in-process emulator, printed as a timeline.

Dial, wait for the answer, play a TTS menu, collect the digit the scenario
presses, record a message with a pause and a resume, stop, say goodbye and
hang up. Every command sent and every callback received is printed as it
happens. No network, no account.
"""

from __future__ import annotations

import asyncio
import io
import json
import sys
import time
import wave
from collections.abc import Callable
from typing import Any

import aiohttp

from relaycall import commands
from relaycall._commands.media import tts
from relaycall._events import Event
from relaycall.errors import RelayError
from relaycall.testing import Emulator, Scenario

CALLER = "+15551230000"
CUSTOMER = "+15557650000"
SWML_URL = "https://ivr.example.test/swml"


class Timeline:
    """Prints what happens, with the seconds since the demo started."""

    def __init__(self, out: Callable[[str], Any]) -> None:
        self.out = out
        self.started = time.monotonic()
        self.sent = 0
        self.received = 0

    def line(self, arrow: str, what: str, detail: str = "") -> None:
        at = time.monotonic() - self.started
        self.out(f"{at:7.3f}s  {arrow} {what:<28} {detail}".rstrip())

    async def on_request(
        self, _: Any, __: Any, params: aiohttp.TraceRequestChunkSentParams
    ) -> None:
        try:
            body = json.loads(params.chunk)
        except ValueError:
            return
        self.sent += 1
        p = body.get("params", {})
        detail = ", ".join(
            f"{k}={v}" for k, v in p.items() if k in ("to", "control_id", "behavior", "reason")
        )
        self.line("->", body.get("command", "?"), detail)

    def on_event(self, event: Event) -> None:
        self.received += 1
        what = (event.event_type or "callback").removeprefix("calling.")
        p = event.params
        extra = ""
        if "result" in p:
            extra = json.dumps(p["result"].get("params", p["result"]), separators=(",", ":"))
        elif "url" in p and event.state == "finished":
            extra = f"url={p['url']}"
        elif "end_reason" in p:
            extra = f"end_reason={p['end_reason']}"
        self.line("<-", what, " ".join(x for x in (event.state or "", extra) if x))


async def run(time_scale: float = 10.0, out: Callable[[str], Any] = print) -> int:
    """Run the IVR; return the process exit code."""
    timeline = Timeline(out)
    trace = aiohttp.TraceConfig()
    trace.on_request_chunk_sent.append(timeline.on_request)
    scenario = Scenario(answer="human", ring_seconds=2.0, dtmf="1")

    def emulated(seconds: float) -> float:
        return seconds / time_scale

    async with (
        aiohttp.ClientSession(trace_configs=[trace]) as http,
        Emulator(time_scale=time_scale, scenarios={CUSTOMER: scenario}, session=http) as emu,
    ):
        emu.receiver.on_event(timeline.on_event)
        out(f"relaycall demo: an IVR against the emulator at {emu.base_url} "
            f"(time runs {time_scale:g}x faster)\n")  # fmt: skip
        call = await emu.relay.dial(from_=CALLER, to=CUSTOMER, url=SWML_URL, timeout=30)
        if await call.wait_for("answered", timeout=emulated(60)) != "answered":
            out(f"\nthe call was not answered ({call.end_reason})")
            return 1
        menu = await call.play(tts("Thanks for calling. To leave a message, press 1."))
        await menu.wait(timeout=emulated(60))
        collector = await call.collect(
            digits=commands.CollectDigits(max=1, digit_timeout=5),
            initial_timeout=10,
            start_input_timers=True,
        )
        choice = await collector.wait(timeout=emulated(60))
        if choice.digits != "1":
            out(f"\nexpected the caller to press 1, got {choice.state} {choice.digits!r}")
            return 1
        prompt = await call.play(tts("Please leave your message after the beep."))
        await prompt.wait(timeout=emulated(60))
        rec = await call.record(format="wav", beep=True, initial_timeout=0, end_silence_timeout=0)
        await asyncio.sleep(emulated(4))  # the caller talks for 4 s
        await rec.pause(behavior="silence")
        await asyncio.sleep(emulated(1))
        await rec.resume()
        await asyncio.sleep(emulated(3))
        await rec.stop()
        recording = await rec.wait(timeout=emulated(60))
        bye = await call.play(tts("Thank you. Goodbye."))
        await bye.wait(timeout=emulated(60))
        await call.end()
        ended = await call.wait(timeout=emulated(60))
        await emu.idle()
        seconds = await _wav_seconds(http, recording.url)

    out("")
    out("summary")
    out(f"  call          {call.id} ended ({ended.end_reason})")
    out(f"  menu choice   {choice.digits}")
    out(f"  recording     {recording.url}")
    if seconds is not None:
        out(f"                {seconds:.1f} s of WAV audio (the pause kept as silence)")
    out(f"  commands sent {timeline.sent}, callbacks received {timeline.received}, "
        f"in {time.monotonic() - timeline.started:.2f} s")  # fmt: skip
    return 0


async def _wav_seconds(http: aiohttp.ClientSession, url: str | None) -> float | None:
    if not url:
        return None
    async with http.get(url) as resp:
        if resp.status != 200:
            return None
        data = await resp.read()
    with wave.open(io.BytesIO(data)) as wav:
        frames: int = wav.getnframes()
        rate: int = wav.getframerate()
    return frames / rate


def main(time_scale: float = 10.0) -> int:
    """Entry point for ``relaycall demo``."""
    try:
        return asyncio.run(run(time_scale))
    except (RelayError, TimeoutError) as exc:
        print(f"\ndemo failed: {type(exc).__name__}: {exc}", file=sys.stderr)  # noqa: T201
        return 1
    except KeyboardInterrupt:  # asyncio.run has cancelled run(), which closed what it opened
        print("\nrelaycall demo: interrupted", file=sys.stderr)  # noqa: T201
        return 130
