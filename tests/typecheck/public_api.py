"""
Type-checked, never run: the public API as users write it, under mypy --strict.

A change that breaks these annotations for users breaks ``mypy`` in CI.
"""

from __future__ import annotations

from aiohttp import web
from typing_extensions import assert_type

import relaycall
from relaycall import commands


async def flow(relay: relaycall.AsyncRelay, swml_url: str) -> None:
    call = await relay.dial(from_="+15551230000", to="+15557650000", url=swml_url)
    assert_type(call, relaycall.Call)
    pb = await call.play(relaycall.tts("hi"), relaycall.silence(0.5), volume=-3)
    assert_type(pb, relaycall.Playback)
    await pb.pause()
    assert_type(await pb.wait(timeout=5), relaycall.PlaybackResult)
    async with call.record(format="wav") as rec:
        assert_type(rec, relaycall.Recording)
        await rec.pause(behavior="silence")
    result = await rec.wait()
    assert_type(result.url, str | None)
    col = await call.collect(digits=commands.CollectDigits(max=1))
    assert_type((await col.wait()).digits, str | None)
    leg = await relay.send(commands.End(call_id=call.id, reason="hangup"))
    assert_type(leg, relaycall.CallLeg | relaycall.FabricDeviceLeg)
    status = await relay.send(commands.AISidecarStatus(call_id=call.id))
    assert_type(status, relaycall.SidecarStatus)
    raw = await relay.execute("calling.future", call_id=call.id, params={"x": 1})
    assert_type(raw.retries_taken, int)
    assert_type(await call.wait_for("answered"), relaycall.CallState)
    assert_type(call.state, relaycall.CallState)
    # A misspelt state is a type error (strict mypy flags an unneeded ignore).
    await call.wait_for("answerd")  # type: ignore[arg-type]
    assert_type((await rec.wait()).reason, relaycall.ResultReason)
    assert_type(pb.state, relaycall.OperationState)
    assert_type(await call.wait(), relaycall.CallResult)
    again = relay.call(call.id).playback(pb.control_id)
    assert_type(again, relaycall.Playback)
    tap = relay.call(call.id).attach(relaycall.Tapping, "t1")
    assert_type(tap, relaycall.Tapping)


async def recordings(relay: relaycall.AsyncRelay, result: relaycall.RecordingResult) -> None:
    assert_type(await relay.download_recording(result, "voicemail.wav"), int)
    assert_type(await relay.download_recording(result.url or "", "v.wav", max_bytes=None), int)
    async for chunk in relay.stream_recording(result, max_bytes=1_000_000, timeout=60):
        assert_type(chunk, bytes)


async def webhooks(request: web.Request, body: bytes) -> None:
    assert_type(
        relaycall.verify_signature("key", "https://a.example/x", body, request.headers), bool
    )
    assert_type(await relaycall.verify_aiohttp_request("key", request), bool)
    assert_type(
        await relaycall.verify_aiohttp_request(b"key", request, url=lambda seen: seen), bool
    )
