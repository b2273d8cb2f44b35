"""
Call a number, play a message, record a reply, hang up: against the real API or the emulator.

    SIGNALWIRE_PROJECT_ID=... SIGNALWIRE_API_TOKEN=... SIGNALWIRE_SPACE=example \
        python examples/quickstart.py +15557650000 +15551230000 https://example.com/swml

Without credentials it runs against the built-in emulator instead.
"""

from __future__ import annotations

import asyncio
import os
import sys

import relaycall
from relaycall import tts
from relaycall.testing import Emulator


async def flow(relay: relaycall.AsyncRelay, to: str, from_: str, url: str) -> None:
    async with relay.dial(to=to, from_=from_, url=url) as call:  # hangs up on exit
        print("dialled", call)
        if await call.wait_for("answered", timeout=60) != "answered":
            print("not answered:", call.end_reason)
            return
        await call.play(tts("Hello from relaycall. Please say something after the beep."))
        # No timeouts: record until stopped (by default silence ends it, as no_input).
        rec = await call.record(format="wav", beep=True, initial_timeout=0, end_silence_timeout=0)
        await asyncio.sleep(2)
        # calling.record.pause, sent with this call's id and the recording's control_id:
        await rec.pause()
        await rec.resume()
        await rec.stop()
        print("recording:", (await rec.wait(timeout=30)).url)


async def main() -> None:
    defaults = ["+15557650000", "+15551230000", "https://example.com/swml"]
    to, from_, url = (sys.argv[1:4] + defaults[len(sys.argv[1:4]) :])[:3]
    if os.environ.get("SIGNALWIRE_PROJECT_ID"):
        async with relaycall.AsyncRelay() as relay:  # credentials from SIGNALWIRE_* variables
            await flow(relay, to, from_, url)
    else:
        async with Emulator(time_scale=5) as emu:
            await flow(emu.relay, to, from_, url)


if __name__ == "__main__":
    asyncio.run(main())
