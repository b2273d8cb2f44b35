r"""
An aiohttp application that calls people, plays a greeting and records their message.

    pip install relaycall
    export SIGNALWIRE_PROJECT_ID=... SIGNALWIRE_API_TOKEN=... SIGNALWIRE_SPACE=example
    export SIGNALWIRE_SIGNING_KEY=... PUBLIC_URL=https://your-app.example.com PORT=8000
    python examples/aiohttp_app.py

    curl -X POST localhost:8000/calls -H 'content-type: application/json' \
        -d '{"to": "+15557650000"}'
    202 {"call_id": "...", "state": "queued", "running": true, ...} at once; the call goes on
    curl 'localhost:8000/calls/<call_id>?wait=30'
    its state, the outcome and the recording's URL (waiting up to 30 s for the end)

Each call: dial, wait for the answer, play a greeting, record until the person stops
talking, await the recording's result, hang up. The EventReceiver is routed in the same
aiohttp application (``receiver.add_to_app``): status callbacks come back to
PUBLIC_URL/relaycall/events, verified with the signing key. On shutdown (Ctrl-C,
SIGTERM) the application's cleanup context cancels every call still in progress, each
hanging up its call, before the AsyncRelay closes.

Offline, against the emulator (no account): run ``relaycall emulator --signing-key s3cret``
and start the app with SIGNALWIRE_BASE_URL=http://127.0.0.1:8080
SIGNALWIRE_PROJECT_ID=test-project SIGNALWIRE_API_TOKEN=test-token
SIGNALWIRE_SIGNING_KEY=s3cret PUBLIC_URL=http://127.0.0.1:8000.

Settings (environment): HOST (default 127.0.0.1), PORT (default 8000), CALLER_ID,
SWML_URL (where the platform fetches the SWML that starts each call), MAX_CALLS (calls in
progress at once, default 50; more get 429), CALLS_PER_SECOND (default 1, the platform's
rate for new calls).
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web

import relaycall
from relaycall import tts

HOST = os.environ.get("HOST", "127.0.0.1")
PORT = int(os.environ.get("PORT", "8000"))
PUBLIC_URL = os.environ.get("PUBLIC_URL", f"http://127.0.0.1:{PORT}").rstrip("/")
CALLER_ID = os.environ.get("CALLER_ID", "+15551230000")
SWML_URL = os.environ.get("SWML_URL", "https://example.com/swml")
MAX_CALLS = int(os.environ.get("MAX_CALLS", "50"))
KEEP = 1000  # calls remembered for GET /calls/{id}; the oldest finished ones are forgotten

log = logging.getLogger("aiohttp_app")


class Message:
    """One call placed by POST /calls, and the task that leaves it a greeting and records."""

    def __init__(self, call: relaycall.Call, to: str) -> None:
        self.call = call
        self.to = to
        self.outcome: str | None = None  # recorded, no_message, not_answered, hung_up...
        self.recording_url: str | None = None
        self.task: asyncio.Task[None] | None = None

    def as_json(self) -> dict[str, Any]:
        return {
            "call_id": self.call.id,
            "to": self.to,
            "state": self.call.state,  # queued, created, ringing, answered, ending, ended
            "end_reason": self.call.end_reason,
            "running": self.task is not None and not self.task.done(),
            "outcome": self.outcome,
            "recording_url": self.recording_url,
        }

    async def run(self) -> None:
        call = self.call
        try:
            if await call.wait_for("answered", timeout=90) != "answered":
                self.outcome = "not_answered"
                return
            greeting = await call.play(tts("Hello! Please leave your message after the beep."))
            await greeting.wait(timeout=60)
            # Ends 3 s after the person stops talking (no_input if they say nothing).
            recording = await call.record(
                format="wav", beep=True, end_silence_timeout=3, max_length=120
            )
            result = await recording.wait(timeout=180)
            self.recording_url = result.url
            if result.url:
                self.outcome = "recorded"
            else:
                self.outcome = "hung_up" if call.state == "ended" else "no_message"
        except asyncio.CancelledError:
            self.outcome = "cancelled"
            raise
        except relaycall.RelayError as exc:
            self.outcome = "hung_up" if call.state == "ended" else "failed"
            log.warning("call %s: %s: %s", call.id, type(exc).__name__, exc)
        finally:
            try:
                await call.end()  # returns at once if the call is over already
            except relaycall.RelayError as exc:
                log.warning("could not hang up %s: %s", call.id, exc)


class Calls:
    """
    The calls this process placed, by id. Their tasks are referenced here until they end
    (the event loop keeps only weak references), and cancelled by :meth:`close`.
    """

    def __init__(self, relay: relaycall.AsyncRelay, limit: int) -> None:
        self.relay = relay
        self.limit = limit
        self.by_id: dict[str, Message] = {}  # insertion order: oldest first
        self.busy = 0  # dials in flight plus calls in progress

    def start(self, call: relaycall.Call, to: str) -> Message:
        message = self.by_id[call.id] = Message(call, to)
        message.task = asyncio.create_task(message.run(), name=f"message {call.id}")
        message.task.add_done_callback(self._ended)
        return message

    def _ended(self, _: asyncio.Task[None]) -> None:
        self.busy -= 1
        finished = [i for i, m in self.by_id.items() if m.task is None or m.task.done()]
        for call_id in finished[: max(0, len(self.by_id) - KEEP)]:
            del self.by_id[call_id]

    async def close(self) -> None:
        """Cancel every call in progress (each hangs up) and wait until they are done."""
        tasks = [m.task for m in self.by_id.values() if m.task is not None and not m.task.done()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


CALLS = web.AppKey("calls", Calls)


async def place_call(request: web.Request) -> web.Response:
    """POST /calls {"to": "+1..."}: dial and answer 202 at once; the message goes on."""
    calls = request.app[CALLS]
    try:
        body = await request.json()
    except ValueError:
        raise web.HTTPBadRequest(text='the body must be JSON: {"to": "+15557650000"}') from None
    to = body.get("to") if isinstance(body, dict) else None
    if not isinstance(to, str):
        raise web.HTTPUnprocessableEntity(text="to: give the number to call, as a string")
    if calls.busy >= calls.limit:
        text = f"{calls.limit} calls are in progress; try again later"
        raise web.HTTPTooManyRequests(text=text, headers={"Retry-After": "5"})
    calls.busy += 1  # taken before the dial: a dial waiting for its turn holds a slot
    try:
        # Paced by Limits(calls_per_second=...): under load this waits for its turn.
        call = await calls.relay.dial(from_=CALLER_ID, to=to, url=SWML_URL)
    except BaseException as exc:
        calls.busy -= 1
        if isinstance(exc, relaycall.ValidationError):
            raise web.HTTPUnprocessableEntity(text=str(exc)) from None
        if isinstance(exc, relaycall.AmbiguousOutcomeError):
            # Never re-sent: a second dial could ring the person twice.
            text = f"the call may or may not have been placed: {exc}"
            raise web.HTTPBadGateway(text=text) from None
        if isinstance(exc, relaycall.RelayError):
            raise web.HTTPBadGateway(text=f"could not place the call: {exc}") from None
        raise
    return web.json_response(calls.start(call, to).as_json(), status=202)


async def call_status(request: web.Request) -> web.Response:
    """GET /calls/{id}[?wait=SECONDS]: the call's state, outcome and recording URL."""
    message = request.app[CALLS].by_id.get(request.match_info["call_id"])
    if message is None:
        raise web.HTTPNotFound(text="no such call here")
    try:
        wait = float(request.query.get("wait", "0"))
    except ValueError:
        wait = -1
    if not 0 <= wait <= 60:
        raise web.HTTPUnprocessableEntity(text="wait: give seconds from 0 to 60")
    if wait and message.task is not None and not message.task.done():
        await asyncio.wait({message.task}, timeout=wait)  # never cancels the call's task
    return web.json_response(message.as_json())


def make_app() -> web.Application:
    """The application: the receiver's routes, ours, and the relay's lifetime."""
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

    calls = Calls(relay, MAX_CALLS)

    async def lifetime(_: web.Application) -> AsyncIterator[None]:
        async with relay:
            try:
                yield
            finally:
                # Once the server stopped taking requests; before the relay closes, since
                # hanging up needs it.
                await calls.close()

    app = web.Application()
    app[CALLS] = calls
    app.cleanup_ctx.append(lifetime)
    receiver.add_to_app(app)  # POST /relaycall/events, in this same application
    app.router.add_post("/calls", place_call)
    app.router.add_get("/calls/{call_id}", call_status)
    return app


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    web.run_app(make_app(), host=HOST, port=PORT)
