r"""
A FastAPI app that answers your number: "press 1 for sales, 2 to leave a voicemail".

    pip install 'relaycall[fastapi]' uvicorn
    export SIGNALWIRE_PROJECT_ID=... SIGNALWIRE_API_TOKEN=... SIGNALWIRE_SPACE=example
    export SIGNALWIRE_SIGNING_KEY=... PUBLIC_URL=https://your-app.example.com
    export RELAYCALL_SECRET=...  # any long random string, the same at every start
    uvicorn examples.inbound_ivr:app --port 8000

At startup the app prints its SWML webhook URL (PUBLIC_URL/relaycall/events/swml/?t=...):
make it your number's SWML handler in the SignalWire dashboard. Its token is derived
from RELAYCALL_SECRET, so the URL stays the same across restarts; without the variable
it changes at each start.

    curl localhost:8000/calls
    the recent calls: caller, digit pressed, outcome, the voicemail's URL
    curl 'localhost:8000/calls/<call_id>?wait=30'
    one call, once its menu is over (waiting up to 30 s)

Each call: the handler answers it with relaycall's default document (answer, then
hold the call for the app) and a task drives it through the Calling API, awaiting
each step through the handle: the menu, one digit; 1 transfers the caller to SALES;
2 records a message after a beep and keeps its URL; no digit: goodbye. Then it
hangs up (not after a transfer: the caller is talking to sales).

Offline, against the emulator (no account): run ``relaycall emulator --signing-key s3cret``,
start the app with SIGNALWIRE_BASE_URL=http://127.0.0.1:8080
SIGNALWIRE_PROJECT_ID=test-project SIGNALWIRE_API_TOKEN=test-token
SIGNALWIRE_SIGNING_KEY=s3cret PUBLIC_URL=http://127.0.0.1:8000, then place a call
whose caller presses 2 and leaves a message::

    curl -u test-project:test-token localhost:8080/__emulator/incoming_call \
        -H 'content-type: application/json' \
        -d '{"from": "+15550001111", "to": "+15551230000", "url": "<the URL it printed>",
             "scenario": {"dtmf": ["2"], "speech": ["hi, call me back"]}}'

Settings (environment): SALES (where 1 goes: a number or a SIP URI, default
sip:sales@example.com), MAX_MESSAGE (longest voicemail in seconds, default 120).
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
SALES = os.environ.get("SALES", "sip:sales@example.com")
MAX_MESSAGE = int(os.environ.get("MAX_MESSAGE", "120"))
SECRET = os.environ.get("RELAYCALL_SECRET")
KEEP = 1000  # calls remembered for GET /calls; older ones are forgotten

log = logging.getLogger("inbound_ivr")
logging.basicConfig(level=logging.INFO, format="%(levelname)s:     %(name)s: %(message)s")

receiver = relaycall.EventReceiver(
    public_url=f"{PUBLIC_URL}/relaycall/events",
    signing_key=os.environ.get("SIGNALWIRE_SIGNING_KEY"),
    # The token in receiver.swml_url is made with this secret: keep it, keep the URL.
    secret=SECRET.encode() if SECRET else None,
)
relay = relaycall.AsyncRelay(events=receiver)  # credentials from the SIGNALWIRE_* variables


class CallRecord(BaseModel):
    call_id: str
    caller: str
    running: bool = True  # whether the menu still runs
    digit: str | None = None
    outcome: str | None = None  # sales, voicemail, no_message, no_choice, hung_up, failed...
    recording_url: str | None = None


calls: collections.OrderedDict[str, CallRecord] = collections.OrderedDict()
# The event loop holds tasks weakly: these are referenced until they end.
tasks: dict[str, asyncio.Task[None]] = {}


@receiver.on_incoming_call
async def incoming(call: relaycall.IncomingCall) -> None:
    # The platform waits for this answer before it runs anything on the call, so the
    # handler returns at once and the menu runs in a task. Returning None serves the
    # default document: answer, then hold the call while the app drives it.
    calls[call.id] = record = CallRecord(call_id=call.id, caller=call.from_)
    while len(calls) > KEEP:
        calls.popitem(last=False)
    task = tasks[call.id] = asyncio.create_task(run_menu(call, record), name=f"menu {call.id}")
    task.add_done_callback(lambda _: tasks.pop(call.id, None))


async def run_menu(call: relaycall.IncomingCall, record: CallRecord) -> None:
    transferred = False
    try:
        await call.answered()  # our document has run: the call takes commands now
        menu = await call.play(tts("Press 1 for sales, 2 to leave a voicemail."))
        await menu.wait(timeout=60)
        collector = await call.collect(
            digits=commands.CollectDigits(max=1, digit_timeout=5),
            initial_timeout=10,
            start_input_timers=True,
        )
        record.digit = (await collector.wait(timeout=60)).digits
        if record.digit == "1":
            await call.transfer(SALES)  # the caller is now sales' call; ours is done
            transferred = True
            record.outcome = "sales"
        elif record.digit == "2":
            recording = await call.record(
                beep=True, format="wav", end_silence_timeout=3, max_length=MAX_MESSAGE
            )
            # Ends when the caller stops talking, hangs up, or at max_length.
            result = await recording.wait(timeout=MAX_MESSAGE + 60)
            record.recording_url = result.url  # None: they said nothing
            record.outcome = "voicemail" if result.url else "no_message"
            if result.url:
                log.info("voicemail from %s: %s", record.caller, result.url)  # store it here
        else:
            record.outcome = "no_choice"
            await (await call.play(tts("Goodbye."))).wait(timeout=60)
    except asyncio.CancelledError:
        record.outcome = "cancelled"
        raise
    except relaycall.NotFoundError:
        record.outcome = "hung_up"  # a command found the call over: the caller hung up
    except relaycall.RelayError as exc:
        record.outcome = "hung_up" if call.state == "ended" else "failed"
        log.warning("menu for %s: %s: %s", call.id, type(exc).__name__, exc)
    finally:
        record.running = False
        if not transferred:
            try:
                # Quiet if the caller hung up first (no callback tells the app that).
                await call.end()
            except relaycall.RelayError as exc:
                log.warning("could not hang up %s: %s", call.id, exc)


@asynccontextmanager
async def lifespan(_: FastAPI) -> AsyncIterator[None]:
    async with relay:
        log.info("SWML webhook: %s", receiver.swml_url)
        try:
            yield
        finally:
            # Before the relay closes (hanging up needs it): each cancelled menu hangs up.
            for task in tasks.values():
                task.cancel()
            await asyncio.gather(*tasks.values(), return_exceptions=True)


app = FastAPI(lifespan=lifespan)
app.mount("/relaycall/events", receiver.asgi_app())  # callbacks, and the SWML fetch at swml/


@app.get("/calls")
async def recent_calls() -> list[CallRecord]:
    """The calls remembered, the newest first."""
    return list(reversed(calls.values()))


@app.get("/calls/{call_id}")
async def one_call(
    call_id: str, wait: float = Query(0, ge=0, le=60, description="seconds to wait for the end")
) -> CallRecord:
    """One call; with ``wait``, once its menu is over (or time is up)."""
    record = calls.get(call_id)
    if record is None:
        raise HTTPException(404, "no such call here")
    task = tasks.get(call_id)
    if wait and task is not None:
        await asyncio.wait({task}, timeout=wait)  # never cancels the menu
    return record
