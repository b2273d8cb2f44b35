r"""
A FastAPI app that runs IVR calls in the background and reports how each one went.

    pip install 'relaycall[fastapi]' uvicorn
    export SIGNALWIRE_PROJECT_ID=... SIGNALWIRE_API_TOKEN=... SIGNALWIRE_SPACE=example
    export SIGNALWIRE_SIGNING_KEY=... PUBLIC_URL=https://your-app.example.com
    uvicorn examples.fastapi_ivr:app --port 8000

    curl -X POST localhost:8000/calls -H 'content-type: application/json' \
        -d '{"to": "+15557650000"}'
    202 {"call_id": "...", "state": "queued", "running": true, ...} at once; the call goes on
    curl 'localhost:8000/calls/<call_id>?wait=30'
    its state and results: the digit pressed, the outcome (waiting up to 30 s for the end)

Each call: dial, wait for the answer, play a menu, collect one digit, confirm, hang up.
Status callbacks come back to PUBLIC_URL/relaycall/events, verified with the signing key.

Offline, against the emulator (no account): run ``relaycall emulator --signing-key s3cret``
and start the app with SIGNALWIRE_BASE_URL=http://127.0.0.1:8080
SIGNALWIRE_PROJECT_ID=test-project SIGNALWIRE_API_TOKEN=test-token
SIGNALWIRE_SIGNING_KEY=s3cret PUBLIC_URL=http://127.0.0.1:8000.

Settings (environment): CALLER_ID, SWML_URL (where the platform fetches the SWML that
starts each call), MAX_CALLS (calls in progress at once, default 50; more get 429),
CALLS_PER_SECOND (default 1, the platform's rate for new calls: raise it only if
SignalWire raised your project's limit).
"""

from __future__ import annotations

import asyncio
import collections
import logging
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, HTTPException, Query
from pydantic import BaseModel

import relaycall
from relaycall import commands, tts

PUBLIC_URL = os.environ.get("PUBLIC_URL", "http://127.0.0.1:8000").rstrip("/")
CALLER_ID = os.environ.get("CALLER_ID", "+15551230000")
SWML_URL = os.environ.get("SWML_URL", "https://example.com/swml")
MAX_CALLS = int(os.environ.get("MAX_CALLS", "50"))
KEEP_FINISHED = 1000  # finished calls remembered for GET /calls/{id}; older ones are forgotten
MENU = {"1": "sales", "2": "support"}

log = logging.getLogger("fastapi_ivr")

receiver = relaycall.EventReceiver(
    public_url=f"{PUBLIC_URL}/relaycall/events",
    # Unset, callbacks are still checked for the URL token relaycall puts in each status_url.
    signing_key=os.environ.get("SIGNALWIRE_SIGNING_KEY"),
)
relay = relaycall.AsyncRelay(  # credentials from the SIGNALWIRE_* variables
    events=receiver,
    # The platform sets up about one new call a second and takes 13,800 POSTs per 10 s.
    limits=relaycall.Limits(
        calls_per_second=float(os.environ.get("CALLS_PER_SECOND", "1")),
        commands_per_second=1300,
    ),
)


class CallStatus(BaseModel):
    call_id: str
    to: str
    state: str  # the call: queued, created, ringing, answered, ending, ended
    end_reason: str | None
    running: bool  # whether the IVR still runs
    digit: str | None
    outcome: str | None  # sales, support, no_choice, not_answered, hung_up, failed, cancelled


class Flow:
    """One call and the task that runs its IVR."""

    def __init__(self, call: relaycall.Call, to: str) -> None:
        self.call = call
        self.to = to
        self.digit: str | None = None
        self.outcome: str | None = None
        self.task: asyncio.Task[None] | None = None

    def status(self) -> CallStatus:
        return CallStatus(
            call_id=self.call.id,
            to=self.to,
            state=self.call.state,
            end_reason=self.call.end_reason,
            running=self.task is not None and not self.task.done(),
            digit=self.digit,
            outcome=self.outcome,
        )


class Flows:
    """
    The IVR tasks: each referenced until it ends (the event loop keeps only weak
    references to tasks), at most *limit* at once, all cancelled at shutdown.
    """

    def __init__(self, limit: int, keep: int) -> None:
        self.limit = limit
        self.by_id: dict[str, Flow] = {}
        self._reserved = 0  # dials in flight plus flows running
        self._tasks: set[asyncio.Task[None]] = set()
        self._finished: collections.deque[str] = collections.deque()
        self._keep = keep

    def reserve(self) -> bool:
        """Take a slot for a new call, if one is free."""
        if self._reserved >= self.limit:
            return False
        self._reserved += 1
        return True

    def release(self) -> None:
        self._reserved -= 1

    def start(self, call: relaycall.Call, to: str) -> Flow:
        """Run the IVR for *call* (whose slot was reserved) in the background."""
        flow = self.by_id[call.id] = Flow(call, to)
        flow.task = asyncio.create_task(run_ivr(flow), name=f"ivr {call.id}")
        self._tasks.add(flow.task)
        flow.task.add_done_callback(lambda task: self._done(flow, task))
        return flow

    def _done(self, flow: Flow, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        self.release()
        if not task.cancelled() and task.exception() is not None:
            log.error("IVR for %s failed", flow.call.id, exc_info=task.exception())
        self._finished.append(flow.call.id)
        while len(self._finished) > self._keep:
            self.by_id.pop(self._finished.popleft(), None)

    async def close(self) -> None:
        """Cancel every running IVR (each hangs up its call) and wait for them."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


flows = Flows(MAX_CALLS, KEEP_FINISHED)


async def run_ivr(flow: Flow) -> None:
    call = flow.call
    try:
        if await call.wait_for("answered", timeout=90) != "answered":
            flow.outcome = "not_answered"
            return
        menu = await call.play(tts("Press 1 for sales, 2 for support."))
        await menu.wait(timeout=60)
        collector = await call.collect(
            digits=commands.CollectDigits(max=1, digit_timeout=5),
            initial_timeout=10,
            start_input_timers=True,
        )
        result = await collector.wait(timeout=60)
        flow.digit = result.digits
        flow.outcome = MENU.get(result.digits or "", "no_choice")
        if call.state != "ended":
            text = f"Thank you. Connecting you to {flow.outcome}." if flow.digit else "Goodbye."
            await (await call.play(tts(text))).wait(timeout=60)
        if call.state == "ended" and flow.outcome == "no_choice":
            flow.outcome = "hung_up"
    except asyncio.CancelledError:
        flow.outcome = "cancelled"
        raise
    except relaycall.RelayError as exc:
        flow.outcome = "hung_up" if call.state == "ended" else "failed"
        log.warning("IVR for %s: %s: %s", call.id, type(exc).__name__, exc)
    finally:
        try:
            await call.end()  # returns at once if the call is over already
        except relaycall.RelayError as exc:
            log.warning("could not hang up %s: %s", call.id, exc)


@asynccontextmanager
async def lifespan(_: FastAPI) -> AsyncIterator[None]:
    async with relay:
        try:
            yield
        finally:
            await flows.close()  # before the relay closes: hanging up needs it


app = FastAPI(lifespan=lifespan)
app.mount("/relaycall/events", receiver.asgi_app())


class Dial(BaseModel):
    to: str


@app.post("/calls", status_code=202)
async def place_call(req: Dial) -> CallStatus:
    """Dial *to* and return at once; the IVR runs in the background."""
    if not flows.reserve():
        raise HTTPException(
            429, f"{flows.limit} calls are in progress; try again later", {"Retry-After": "5"}
        )
    started = False
    try:
        # Paced by Limits(calls_per_second=...): under load this waits for its turn.
        call = await relay.dial(from_=CALLER_ID, to=req.to, url=SWML_URL)
        flow = flows.start(call, req.to)
        started = True
    except relaycall.ValidationError as exc:
        raise HTTPException(422, str(exc)) from None
    except relaycall.AmbiguousOutcomeError as exc:
        # Never re-sent: a second dial could ring the person twice.
        raise HTTPException(502, f"the call may or may not have been placed: {exc}") from None
    except relaycall.RelayError as exc:
        raise HTTPException(502, f"could not place the call: {exc}") from None
    finally:
        if not started:
            flows.release()
    return flow.status()


@app.get("/calls/{call_id}")
async def call_status(
    call_id: str, wait: float = Query(0, ge=0, le=60, description="seconds to wait for the end")
) -> CallStatus:
    """The call's state and results; with ``wait``, once the IVR is over (or time is up)."""
    flow = flows.by_id.get(call_id)
    if flow is None:
        raise HTTPException(404, "no such call here")
    if wait and flow.task is not None and not flow.task.done():
        await asyncio.wait({flow.task}, timeout=wait)  # never cancels the IVR
    return flow.status()
