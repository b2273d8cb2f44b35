"""
Trust under attack and faults: ``python -m benchmarks.trust [--quick]``.

Counts what must be zero, at a larger scale than the tests that pin each case:

- forged callbacks accepted: callbacks that change a handle without the right
  token (another call's dial or call token, another operation's token, a
  replayed final of an earlier start, made-up tokens), in token-only mode
  (no signing key), where the token is the only guard;
- server errors on hostile input: statuses >= 500 (or exceptions) from the
  standalone aiohttp receiver and from ``ingest()`` for hostile bodies,
  headers and queries;
- duplicate dials under each fault kind, with a receiver (and without one, for
  the one case a client cannot know: a 429/503 answered after processing);
- waits unfinished 10 s after their call ended (with the ``ended`` callback
  dropped) or after the session closed.

Everything runs on 127.0.0.1 against the emulator. Figures go to stdout; with
``--json FILE`` also to a file.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import random
import time
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp

import relaycall
from relaycall import RetryPolicy, tts
from relaycall.testing import DEFAULT_PROJECT, DEFAULT_TOKEN, Emulator

TO, FROM = "+15557650000", "+15551230000"
DIAL: dict[str, Any] = {"to": TO, "from_": FROM, "url": "https://x.test/s"}


def _envelope(event_type: str, **params: Any) -> dict[str, Any]:
    return {"event_type": event_type, "timestamp": time.time(), "params": params}


async def forged(calls: int, rounds: int) -> dict[str, int]:
    """Forgeries against live calls and plays; accepted = a handle moved."""
    async with Emulator(time_scale=50, signing_key=None) as emu, aiohttp.ClientSession() as http:
        live = [await emu.relay.dial(**DIAL) for _ in range(calls)]
        for call in live:
            await call.wait_for("answered", timeout=10)
        plays = [await c.play(tts("a long message " * 200), control_id="p") for c in live]
        # An earlier start of "q" on every call, finished, then "q" started again.
        for call in live:
            first = await call.play(relaycall.silence(0.01), control_id="q")
            await first.wait(timeout=10)
        await emu.idle()
        old_finals = [c for c in emu.callbacks if c.control_id == "q"]
        again = [await c.play(tts("again " * 200), control_id="q") for c in live]
        urls = {
            (r.call_id or r.body.get("id"), r.body["params"].get("control_id")): r.body["params"][
                "status_url"
            ]
            for r in emu.requests
            if "status_url" in r.body.get("params", {})
        }
        base = emu.receiver.status_url(live[0].id).split("?")[0]
        rng = random.Random(7)
        sent = 0
        for _ in range(rounds):
            victim, other = rng.sample(range(calls), 2)
            v, o = live[victim], live[other]
            finish = _envelope("calling.call.play", call_id=v.id, control_id="p", state="finished")
            end = _envelope("calling.call.state", call_id=v.id, call_state="ended")
            attempts = [
                (urls[(o.id, None)], end),  # another call's dial token
                (urls[(o.id, "p")], finish),  # another call's operation token
                (emu.receiver.status_url(o.id), end),  # another call's call token
                (emu.receiver.status_url(v.id), finish),  # the call token, for a handle's op
                (urls[(v.id, "q")], finish),  # this call's other operation's token
                (f"{base}?t=d.{rng.getrandbits(64):x}.forged", end),
                (f"{base}?t=o.{rng.getrandbits(32):x}.forged", finish),
                (f"{base}?t={rng.getrandbits(128):x}", end),
                (base, end),  # no token at all
            ]
            for url, payload in attempts:
                async with http.post(url, data=json.dumps(payload)) as resp:
                    await resp.read()
                sent += 1
        for entry in old_finals:  # genuine callbacks of the earlier start, replayed
            async with http.post(entry.url, data=json.dumps(entry.body)) as resp:
                await resp.read()
            sent += 1
        moved = sum(c.state != "answered" for c in live)
        moved += sum(p.state != "playing" for p in plays)
        moved += sum(p.state != "playing" for p in again)
        for call in live:
            await call.end()
        return {"forged_sent": sent, "forged_accepted": moved}


_HOSTILE_BODIES: list[bytes] = [
    b"",
    b"{",
    b"[]",
    b"null",
    b"1e999",
    b'{"event_type": "calling.call.state", "params": ' + b"[" * 5000 + b"]" * 5000 + b"}",
    json.dumps({"event_type": "calling.call.state", "timestamp": 10**400 % 10**300}).encode(),
    b'{"event_type": "calling.call.state", "timestamp": 1' + b"0" * 400 + b"}",
    b'{"event_type": "calling.call.record", "params": {"size": 1e999, "duration": 1e999}}',
    b'{"event_type": "calling.call.collect", '
    b'"params": {"result": {"params": {"confidence": NaN}}}}',
    b'{"params": {"call_id": "\\ud800"}}',
    b'{"sidecar_event": {"ts": 1' + b"0" * 400 + b"}}",
    "\u00e9\u00e8".encode("latin-1"),
]


async def hostile(rounds: int) -> dict[str, int]:
    """Hostile requests to a standalone receiver (and ingest()); count 5xx and exceptions."""
    receiver = relaycall.EventReceiver(signing_key="k")
    url = await receiver.start("127.0.0.1", 0)
    rng = random.Random(11)
    server_errors = exceptions = sent = 0
    try:
        async with aiohttp.ClientSession() as http:
            for _ in range(rounds):
                body = rng.choice(_HOSTILE_BODIES)
                if rng.random() < 0.3:
                    body = bytes(rng.getrandbits(8) for _ in range(rng.randint(0, 200)))
                query = rng.choice(["t=x", "t=d.a.b", "t=o..", "", "t=%ff%fe", "t=" + "A" * 5000])
                headers = {"X-SignalWire-Signature": rng.choice(["0" * 40, "z", ""])}
                async with http.post(f"{url}?{query}", data=body, headers=headers) as resp:
                    server_errors += resp.status >= 500
                    await resp.read()
                sent += 1
                try:
                    status, _ = receiver.ingest(
                        body, url=url, query=query, headers={"x-signalwire-signature": "\u00e9"}
                    )
                    server_errors += status >= 500
                except Exception:  # counted: ingest must never raise
                    exceptions += 1
                sent += 1
    finally:
        await receiver.stop()
    return {"hostile_sent": sent, "hostile_5xx": server_errors, "hostile_exceptions": exceptions}


FaultKind = Callable[[Emulator, int], Any]


def _status(status: int, *, processed: bool) -> FaultKind:
    return lambda e, n: e.faults.fail(status, n, command="dial", processed=processed)


#: Fault kind -> (inject it into the next n dials, whether the emulator carries them out).
#: tests/test_dial_faults.py pins the same kinds.
FAULTS: dict[str, tuple[FaultKind, bool]] = {
    "drop_connection": (lambda e, n: e.faults.drop_connection(n, command="dial"), True),
    **{
        f"{s} after processing": (_status(s, processed=True), True)
        for s in (429, 500, 502, 503, 504)
    },
    **{f"{s} not processed": (_status(s, processed=False), False) for s in (500, 503)},
    "read timeout": (lambda e, n: e.faults.latency(1.0, n, command="dial"), True),
}


async def duplicates(n: int) -> dict[str, Any]:
    """Dials under each fault kind; duplicates = calls placed beyond one per dial."""
    policy = RetryPolicy(initial_backoff=0.3, max_backoff=0.3, jitter=0, ambiguous_grace=1.0)
    out: dict[str, Any] = {}
    for kind, (inject, processed) in FAULTS.items():
        async with Emulator(
            time_scale=20, retry=policy, timeout=relaycall.Timeout(read=0.5)
        ) as emu:
            inject(emu, n)
            got = await asyncio.gather(
                *(emu.relay.dial(**DIAL) for _ in range(n)), return_exceptions=True
            )
            calls = sum(isinstance(g, relaycall.Call) for g in got)
            ambiguous = sum(isinstance(g, relaycall.AmbiguousOutcomeError) for g in got)
            placed = len(emu.core.calls)
            out[kind] = {
                "dials": n,
                "placed": placed,
                "duplicates": max(0, placed - n),
                "returned_call": calls,
                "ambiguous": ambiguous,
                "processed": processed,
            }
    # Without a receiver: the one case a client cannot know.
    async with Emulator(time_scale=20) as emu:
        bare = relaycall.AsyncRelay(
            DEFAULT_PROJECT, DEFAULT_TOKEN, base_url=emu.base_url, retry=policy
        )
        async with bare:
            emu.faults.fail(503, n, command="dial", processed=True)
            await asyncio.gather(*(bare.dial(**DIAL) for _ in range(n)), return_exceptions=True)
        out["503 after processing, no receiver"] = {
            "dials": n,
            "placed": len(emu.core.calls),
            "duplicates": max(0, len(emu.core.calls) - n),
        }
    return out


async def waits(calls: int) -> dict[str, Any]:
    """Waits on calls whose ended callback is dropped, and waits pending at close."""

    async def finished_within(waiters: list[Awaitable[Any]], started: float) -> list[float]:
        done: list[float] = []

        async def one(w: Awaitable[Any]) -> None:
            with contextlib.suppress(relaycall.RelayError):
                await w
            done.append(time.monotonic() - started)

        await asyncio.wait_for(asyncio.gather(*(one(w) for w in waiters)), 60)
        return done

    async with Emulator(time_scale=20) as emu:
        live = [await emu.relay.dial(**DIAL) for _ in range(calls)]
        for call in live:
            await call.wait_for("answered", timeout=10)
        ops = [await c.record(initial_timeout=0, end_silence_timeout=0) for c in live]
        emu.faults.drop_callbacks(event_type="calling.call.state")
        waiters = [c.wait() for c in live] + [op.wait() for op in ops]
        tasks = [asyncio.ensure_future(w) for w in waiters]
        await asyncio.sleep(0)
        for call in live:
            emu.hangup(call)
        hung_up = time.monotonic()
        lost = await finished_within(tasks, hung_up)
    async with Emulator(time_scale=20) as emu:
        live = [await emu.relay.dial(**DIAL) for _ in range(calls)]
        pending = [asyncio.ensure_future(c.wait_for("answered")) for c in live]
        pending += [asyncio.ensure_future(c.wait()) for c in live]
        await asyncio.sleep(0)
        closed = time.monotonic()
        await emu.relay.close()
        at_close = await finished_within(pending, closed)
    return {
        "ended_lost": {
            "waits": len(lost),
            "unfinished_after_10s": sum(t > 10 for t in lost),
            "slowest_s": round(max(lost), 2),
        },
        "session_closed": {
            "waits": len(at_close),
            "unfinished_after_10s": sum(t > 10 for t in at_close),
            "slowest_s": round(max(at_close), 3),
        },
    }


async def run(quick: bool) -> dict[str, Any]:
    scale = 1 if quick else 5
    return {
        **await forged(calls=4 * scale, rounds=50 * scale),
        **await hostile(rounds=200 * scale),
        "duplicates": await duplicates(n=10 * scale),
        "waits": await waits(calls=10 * scale),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.trust", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="a fifth of the default sizes")
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args(argv)
    # Each refusal is logged at warning level: thousands of them are the point here.
    logging.getLogger("relaycall").setLevel(logging.ERROR)
    started = time.monotonic()
    figures = asyncio.run(run(args.quick))
    figures["seconds"] = round(time.monotonic() - started, 1)
    text = json.dumps(figures, indent=2)
    print(text)
    if args.json:
        with open(args.json, "w") as f:
            f.write(text + "\n")


if __name__ == "__main__":
    main()
