r"""
Voicemail drop: call people; when an answering machine picks up, wait for its beep and
leave a message; when a person does, connect them to an agent.

    export SIGNALWIRE_PROJECT_ID=... SIGNALWIRE_API_TOKEN=... SIGNALWIRE_SPACE=example
    export SIGNALWIRE_SIGNING_KEY=... PUBLIC_URL=https://your-tunnel.example.com PORT=8080
    python examples/voicemail_drop.py --agent +15550001111 +15557650000 +15557650001

    +15557650000: machine: message left after the beep
    +15557650001: human: connected to +15550001111

Each call: dial, wait for the answer, run answering-machine detection
(``calling.detect`` of type ``machine``, with ``detect_message_end``). Its events say
who answered (``MACHINE``, ``HUMAN``, ``UNKNOWN``) and, for a machine, ``READY`` once the
greeting is over and the beep sounded: only then does the message play (played earlier,
its start would be lost in the greeting), and the call is hung up. A person (or an
``UNKNOWN``: better a person hears a person than a recording) is transferred to the
agent, and the call is left to them.

The status callbacks come back to PUBLIC_URL (forwarded to this script on
127.0.0.1:PORT by a tunnel or a proxy; PORT defaults to any free port). Without
SIGNALWIRE_PROJECT_ID it runs against the built-in emulator, where the first number
answers with a machine and the second with a person.

Settings: --agent (or AGENT_NUMBER), --caller-id (or CALLER_ID), --url (or SWML_URL:
where the platform fetches the SWML that starts each call), --message,
--calls-per-second (default 1, the platform's rate for new calls).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Sequence

import relaycall
from relaycall import commands, tts
from relaycall.testing import Emulator, Scenario

MESSAGE = "Hi, this is Acme. Your order is ready: call us back at 555 123 0000. Thank you!"
#: The built-in emulator's far ends, when no SIGNALWIRE_PROJECT_ID is set.
DEMO = {"+15557650000": Scenario(answer="machine"), "+15557650001": Scenario(answer="human")}
DEMO_AGENT = "+15550001111"


async def drop(relay: relaycall.AsyncRelay, to: str, args: argparse.Namespace) -> str:
    """Call *to*; leave the message on a machine, or put a person through to the agent."""
    try:
        call = await relay.dial(from_=args.caller_id, to=to, url=args.url)
    except relaycall.ValidationError as exc:
        return f"not called: {exc}"
    except relaycall.RelayError as exc:
        return f"not called: {type(exc).__name__}: {exc}"
    handed_over = False
    try:
        if await call.wait_for("answered", timeout=90) != "answered":
            return f"not answered: {call.end_reason}"
        # detect_message_end (the platform's default, spelt out): after a MACHINE verdict the
        # detection goes on until the greeting ends, and says READY when the machine beeps.
        detector = await call.detect(commands.DetectMachine(detect_message_end=True), timeout=45)
        beeped = False
        async for event in detector.events():  # until the detection finishes
            beeped = beeped or event.detect_event == "READY"
        verdict = (await detector.wait(timeout=10)).result  # MACHINE, HUMAN or UNKNOWN
        if verdict == "MACHINE":
            # No READY: the detection timed out in a long greeting. Leaving the message
            # anyway keeps most of it; hanging up would leave none.
            await (await call.play(tts(args.message))).wait(timeout=120)
            return "machine: " + ("message left after the beep" if beeped else "no beep heard, "
                                  "message left anyway")  # fmt: skip
        await call.transfer(args.agent)
        handed_over = True  # the call is the agent's now: not hung up here
        return f"{(verdict or 'unknown').lower()}: connected to {args.agent}"
    except relaycall.RelayError as exc:
        return f"failed: {type(exc).__name__}: {exc}"
    finally:
        if not handed_over:
            await call.end()  # returns at once if the call is over already


async def drop_all(relay: relaycall.AsyncRelay, args: argparse.Namespace) -> None:
    async def one(to: str) -> None:
        print(f"{to}: {await drop(relay, to, args)}", flush=True)

    # Dials are paced by Limits(calls_per_second=...); the calls then go on side by side.
    await asyncio.gather(*(one(to) for to in args.numbers))


def parse_args(argv: Sequence[str], demo: bool) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("numbers", nargs="*", help="the numbers to call (E.164)")
    parser.add_argument(
        "--agent",
        default=os.environ.get("AGENT_NUMBER") or (DEMO_AGENT if demo else None),
        help="where a person who answers is transferred (or AGENT_NUMBER)",
    )
    parser.add_argument("--caller-id", default=os.environ.get("CALLER_ID", "+15551230000"))
    parser.add_argument("--url", default=os.environ.get("SWML_URL", "https://example.com/swml"))
    parser.add_argument("--message", default=MESSAGE, help="what the machine records")
    parser.add_argument("--calls-per-second", type=float, default=1.0)
    args = parser.parse_args(argv)
    if demo and not args.numbers:
        args.numbers = list(DEMO)
    if not args.numbers:
        parser.error("give the numbers to call")
    if not args.agent:
        parser.error("give --agent (or set AGENT_NUMBER): where people who answer are put through")
    if not args.calls_per_second > 0:
        parser.error("--calls-per-second must be positive")
    return args


async def main(argv: Sequence[str]) -> None:
    demo = not os.environ.get("SIGNALWIRE_PROJECT_ID")
    args = parse_args(argv, demo)
    limits = relaycall.Limits(calls_per_second=args.calls_per_second, commands_per_second=1300)
    if demo:
        print("no SIGNALWIRE_PROJECT_ID: running against the built-in emulator", flush=True)
        async with Emulator(time_scale=10, scenarios=DEMO, limits=limits) as emu:
            await drop_all(emu.relay, args)
        return
    public_url = os.environ.get("PUBLIC_URL")
    receiver = relaycall.EventReceiver(
        # Unset: the receiver's own local URL, which only a local emulator can reach.
        public_url=f"{public_url.rstrip('/')}/relaycall/events" if public_url else None,
        signing_key=os.environ.get("SIGNALWIRE_SIGNING_KEY"),
    )
    port = int(os.environ.get("PORT", "0"))  # set it when PUBLIC_URL forwards to a fixed one
    # Credentials from the SIGNALWIRE_* variables (SIGNALWIRE_BASE_URL for an emulator).
    async with (
        relaycall.AsyncRelay(events=receiver, limits=limits) as relay,
        receiver.serve(port=port),
    ):
        await drop_all(relay, args)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1:]))
