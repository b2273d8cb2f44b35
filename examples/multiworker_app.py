r"""
One FastAPI app run as several workers behind a load balancer, callbacks delivered
to the worker that holds the call through Redis (docs/deployment.md).

    pip install 'relaycall[fastapi,redis]' uvicorn
    export SIGNALWIRE_PROJECT_ID=... SIGNALWIRE_API_TOKEN=... SIGNALWIRE_SPACE=example
    export SIGNALWIRE_SIGNING_KEY=... PUBLIC_URL=https://your-balancer.example.com
    export REDIS_URL=redis://redis.internal:6379/0
    export RELAYCALL_SECRET=$(python -c 'import secrets; print(secrets.token_hex(32))')  # once,
    # the same for every worker: a callback's URL token must verify on whichever worker gets it
    uvicorn examples.multiworker_app:app --port 8001   # and 8002, 8003... behind the balancer

    curl -X POST localhost:8001/calls -H 'content-type: application/json' \
        -d '{"to": "+15557650000", "count": 3}'
    curl localhost:8001/stats

Each call: dial, wait for the answer, play a greeting, hang up. Its callbacks reach any
worker; the one that holds the call gets them, through Redis when another received
them. A worker that dies leaves calls behind: once their ownership expires
(OWNERSHIP_TTL seconds), their callbacks go to ``on_orphan_event`` on a surviving
worker, which takes the call over (``relay.call(call_id)``) and hangs it up.

With EVENT_LOG=1 every event is printed as one line, ``EVENT {...}`` (delivered to a
handle here, ``owned`` saying whether this worker held the call) or ``ORPHAN {...}``,
with a digest of the payload: tests/test_multiworker.py reads them to account for
every callback the emulator delivered.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import attrs
from fastapi import FastAPI
from pydantic import BaseModel

import relaycall

PUBLIC_URL = os.environ.get("PUBLIC_URL", "http://127.0.0.1:8000").rstrip("/")
REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
CALLER_ID = os.environ.get("CALLER_ID", "+15551230000")
SWML_URL = os.environ.get("SWML_URL", "https://example.com/swml")
OWNERSHIP_TTL = float(os.environ.get("OWNERSHIP_TTL", "30"))
EVENT_LOG = os.environ.get("EVENT_LOG") == "1"
HOLD = float(os.environ.get("HOLD", "0"))  # seconds a call stays up after the greeting

log = logging.getLogger("multiworker_app")

secret = os.environ.get("RELAYCALL_SECRET")
if not secret:
    sys.exit("set RELAYCALL_SECRET (the same hex string for every worker)")

receiver = relaycall.EventReceiver(
    public_url=f"{PUBLIC_URL}/relaycall/events",
    signing_key=os.environ.get("SIGNALWIRE_SIGNING_KEY"),
    secret=bytes.fromhex(secret),
)
coordinator = relaycall.RedisCoordinator(REDIS_URL, ownership_ttl=OWNERSHIP_TTL)
relay = relaycall.AsyncRelay(  # credentials from the SIGNALWIRE_* variables
    events=receiver,
    coordinator=coordinator,
    limits=relaycall.Limits(
        calls_per_second=float(os.environ.get("CALLS_PER_SECOND", "1")),
        commands_per_second=1300,
    ),
)

#: Calls this worker holds (dialled here or taken over from a dead worker).
owned: set[str] = set()
tasks: set[asyncio.Task[None]] = set()
counts = {"events": 0, "events_owned": 0, "orphans": 0, "adopted": 0, "flows_done": 0}


def _digest(event: relaycall.Event) -> str:
    """The same digest for the same payload, on every worker and in the emulator's journal."""
    text = json.dumps(event.raw, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def _line(kind: str, event: relaycall.Event, **more: Any) -> None:
    if EVENT_LOG:
        fields = {"call_id": event.call_id, "type": event.event_type, "state": event.state,
                  "digest": _digest(event), "at": time.time(), **more}  # fmt: skip
        print(kind, json.dumps(fields), flush=True)


def on_event(event: relaycall.Event) -> None:
    counts["events"] += 1
    mine = event.call_id in owned
    counts["events_owned"] += mine
    _line("EVENT", event, owned=mine)


def on_orphan(event: relaycall.Event) -> None:
    """A callback for a call whose worker is gone: take the call over and hang it up."""
    counts["orphans"] += 1
    _line("ORPHAN", event)
    if event.call_id and event.call_id not in owned and event.state != "ended":
        owned.add(event.call_id)
        counts["adopted"] += 1
        _spawn(_hang_up(relay.call(event.call_id)))


receiver.on_event(on_event)
receiver.on_orphan_event(on_orphan)


def _spawn(coro: Any) -> None:
    task = asyncio.create_task(coro)
    tasks.add(task)
    task.add_done_callback(tasks.discard)


async def _hang_up(call: relaycall.Call) -> None:
    try:
        await call.end()
    except relaycall.RelayError as exc:
        log.warning("could not hang up %s: %s", call.id, exc)


async def run_call(call: relaycall.Call) -> None:
    try:
        if await call.wait_for("answered", timeout=60) == "answered":
            greeting = await call.play(relaycall.tts("Hello from one of several workers."))
            await greeting.wait(timeout=60)
            if HOLD:  # stay on the line until the far end hangs up, at most HOLD seconds
                await call.wait_for("ended", timeout=HOLD)
    except relaycall.RelayError as exc:
        log.warning("call %s: %s: %s", call.id, type(exc).__name__, exc)
    finally:
        await _hang_up(call)
        counts["flows_done"] += 1


@asynccontextmanager
async def lifespan(_: FastAPI) -> AsyncIterator[None]:
    async with relay:
        print("WORKER", json.dumps({"pid": os.getpid(), "worker_id": coordinator.worker_id}),
              flush=True)  # fmt: skip
        try:
            yield
        finally:
            for task in list(tasks):
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)


app = FastAPI(lifespan=lifespan)
app.mount("/relaycall/events", receiver.asgi_app())


class Dial(BaseModel):
    to: str
    count: int = 1


@app.post("/calls", status_code=202)
async def place_calls(req: Dial) -> dict[str, list[str]]:
    """Dial *count* calls to *to*; each runs in the background."""
    ids = []
    for _ in range(req.count):
        call = await relay.dial(from_=CALLER_ID, to=req.to, url=SWML_URL)
        owned.add(call.id)
        ids.append(call.id)
        if EVENT_LOG:
            print("OWN", json.dumps({"call_id": call.id}), flush=True)
        _spawn(run_call(call))
    return {"call_ids": ids}


@app.get("/stats")
async def stats() -> dict[str, Any]:
    """What this worker holds and has seen, and its receiver's counters."""
    return {
        "pid": os.getpid(),
        "owned": len(owned),
        "running": len(tasks),
        **counts,
        "receiver": attrs.asdict(receiver.stats),
    }


@app.get("/healthz")
async def healthz() -> dict[str, bool]:
    return {"ok": True}
