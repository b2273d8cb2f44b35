"""
Call a number, play a message, record the reply, hang up: against the real API or the emulator.

    export SIGNALWIRE_PROJECT_ID=... SIGNALWIRE_API_TOKEN=... SIGNALWIRE_SPACE=example
    export SIGNALWIRE_SIGNING_KEY=... PUBLIC_URL=https://your-tunnel.example.com PORT=8080
    python examples/quickstart.py +15557650000 +15551230000 https://example.com/swml

The status callbacks come back to PUBLIC_URL (forwarded to this script on 127.0.0.1:PORT,
by a tunnel or a proxy; PORT defaults to any free port). Without SIGNALWIRE_PROJECT_ID it
runs against the built-in emulator instead, with nothing to set up.
"""

from __future__ import annotations

import asyncio
import os
import sys

import relaycall
from relaycall import tts
from relaycall.testing import Emulator, Scenario


async def flow(relay: relaycall.AsyncRelay, to: str, from_: str, url: str) -> None:
    async with relay.dial(to=to, from_=from_, url=url) as call:  # hangs up on exit
        print("dialled", call)
        if await call.wait_for("answered", timeout=60) != "answered":
            print("not answered:", call.end_reason)
            return
        greeting = await call.play(tts("Hello from relaycall. Please speak after the beep."))
        await greeting.wait(timeout=60)
        # Ends 2 s after the caller stops talking (no_input if they say nothing).
        rec = await call.record(format="wav", beep=True, end_silence_timeout=2)
        result = await rec.wait(timeout=120)
        print("recording:", result.url or f"none ({result.state})")


async def main() -> None:
    defaults = ["+15557650000", "+15551230000", "https://example.com/swml"]
    to, from_, url = (sys.argv[1:4] + defaults[len(sys.argv[1:4]) :])[:3]
    if os.environ.get("SIGNALWIRE_PROJECT_ID"):
        public_url = os.environ.get("PUBLIC_URL")
        receiver = relaycall.EventReceiver(
            # Unset: the receiver's own local URL, which only a local emulator can reach.
            public_url=f"{public_url.rstrip('/')}/relaycall/events" if public_url else None,
            signing_key=os.environ.get("SIGNALWIRE_SIGNING_KEY"),
        )
        # Any free port by default (8080 is the emulator's); set PORT when PUBLIC_URL
        # forwards to a fixed one.
        port = int(os.environ.get("PORT", "0"))
        # Credentials from the SIGNALWIRE_* variables (SIGNALWIRE_BASE_URL for an emulator).
        async with relaycall.AsyncRelay(events=receiver) as relay, receiver.serve(port=port):
            await flow(relay, to, from_, url)
    else:
        print("no SIGNALWIRE_PROJECT_ID: running against the built-in emulator")
        async with Emulator(time_scale=10, scenarios={to: Scenario(speech="Hi, it's me.")}) as emu:
            await flow(emu.relay, to, from_, url)


if __name__ == "__main__":
    asyncio.run(main())
