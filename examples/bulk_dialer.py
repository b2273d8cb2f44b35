"""
Drive many calls at once without tripping the platform's rate limits.

    python examples/bulk_dialer.py 200        # against the emulator, 200 calls

Each call: dial, wait for the answer, detect a machine, play a message fitted to
who answered, hang up. Limits keep POSTs under the platform's 13,800 per 10 s
and new calls near its queue rate; a dial whose outcome is unknown is reported,
never re-sent.
"""

from __future__ import annotations

import asyncio
import collections
import sys

import relaycall
from relaycall import tts
from relaycall.testing import Emulator, Scenario


async def one_call(relay: relaycall.AsyncRelay, to: str) -> str:
    try:
        call = await relay.dial(to=to, from_="+15551230000", url="https://example.com/swml")
    except relaycall.AmbiguousOutcomeError as exc:
        return f"unknown outcome, not re-sent: {exc.cause}"
    try:
        if await call.wait_for("answered", timeout=60) != "answered":
            return f"not answered: {call.end_reason}"
        verdict = (await (await call.detect("machine")).wait(timeout=60)).result
        message = "Please call us back." if verdict == "MACHINE" else "Thanks for picking up!"
        await (await call.play(tts(message))).wait(timeout=60)
        return f"answered by {verdict}"
    finally:
        if call.state != "ended":
            await call.end()


async def main(count: int) -> None:
    limits = relaycall.Limits(max_concurrency=100, commands_per_second=1300, calls_per_second=200)
    async with Emulator(time_scale=20, limits=limits) as emu:
        for i in range(0, count, 3):
            emu.scenarios[f"+1555000{i:04d}"] = Scenario(answer="machine")
        outcomes = await asyncio.gather(
            *(one_call(emu.relay, f"+1555000{i:04d}") for i in range(count))
        )
    for outcome, n in collections.Counter(outcomes).most_common():
        print(f"{n:5d}  {outcome}")


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 50))
