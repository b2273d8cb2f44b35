"""
A FastAPI app that places calls and receives their status callbacks.

    pip install 'relaycall[fastapi]' uvicorn
    export PUBLIC_URL=https://your-app.example.com SIGNALWIRE_SIGNING_KEY=...
    uvicorn examples.fastapi_ivr:app

POST /calls {"to": "+1555..."} dials, plays a menu, collects a digit and returns it.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from pydantic import BaseModel

import relaycall
from relaycall import commands, tts

PUBLIC_URL = os.environ.get("PUBLIC_URL", "http://127.0.0.1:8000")
receiver = relaycall.EventReceiver(
    public_url=f"{PUBLIC_URL}/relaycall/events",
    signing_key=os.environ.get("SIGNALWIRE_SIGNING_KEY"),
)
relay = relaycall.AsyncRelay(events=receiver, limits=relaycall.Limits(calls_per_second=1))


@asynccontextmanager
async def lifespan(_: FastAPI) -> AsyncIterator[None]:
    async with relay:
        yield


app = FastAPI(lifespan=lifespan)
app.mount("/relaycall/events", receiver.asgi_app())


class Dial(BaseModel):
    to: str
    from_: str = os.environ.get("CALLER_ID", "+15551230000")
    swml_url: str = f"{PUBLIC_URL}/swml"


@app.post("/calls")
async def place_call(req: Dial) -> dict[str, str | None]:
    async with relay.dial(to=req.to, from_=req.from_, url=req.swml_url) as call:
        if await call.wait_for("answered", timeout=60) != "answered":
            return {"call_id": call.id, "outcome": call.end_reason, "digit": None}
        await (await call.play(tts("Press 1 for sales, 2 for support."))).wait(timeout=30)
        col = await call.collect(digits=commands.CollectDigits(max=1), start_input_timers=True)
        result = await col.wait(timeout=30)
        return {"call_id": call.id, "outcome": result.state, "digit": result.digits}
