"""
The aiohttp application: the Calling API endpoint, the recordings, and the
``/__emulator/`` control API.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hmac
import json
import re
from collections.abc import Awaitable, Callable
from typing import Any

import attrs
from aiohttp import web

from relaycall.emulator._config import EmulatorConfig, Scenario
from relaycall.emulator._core import EmulatedPlatform, Reply, request_call_id
from relaycall.emulator._ratelimit import RateLimits
from relaycall.emulator._wav import HEADER_SIZE, wav_header, wav_size

__all__ = ["API_PATH", "EMULATOR_KEY", "create_app"]

API_PATH = "/api/calling/calls"
EMULATOR_KEY = web.AppKey("relaycall_emulator", EmulatedPlatform)

_UNAUTHORIZED = {"error": "Unauthorized"}
_BAD_REQUEST = {"error": "Bad Request"}
_NOT_FOUND = {"error": "Not Found"}
_TOO_MANY = {"error": "Too Many Requests"}
_RECORDING = re.compile(r"([0-9a-f-]{36})\.wav")
_CHUNK = 64 * 1024

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def create_app(
    config: EmulatorConfig | None = None, *, emulator: EmulatedPlatform | None = None
) -> web.Application:
    """
    Build the emulator's aiohttp application.

    The :class:`EmulatedPlatform` behind it is ``app[EMULATOR_KEY]``; pass *emulator*
    to serve one you built yourself (its config wins over *config*).
    """
    emu = emulator or EmulatedPlatform(config)
    app = web.Application()
    app[EMULATOR_KEY] = emu
    app.router.add_post(API_PATH, _api)
    app.router.add_get("/recordings/{name}", _recording)
    control: list[tuple[str, str, Handler]] = [
        ("GET", "/__emulator/calls", _list_calls),
        ("GET", "/__emulator/calls/{call_id}", _get_call),
        ("POST", "/__emulator/calls/{call_id}/press", _press),
        ("POST", "/__emulator/calls/{call_id}/say", _say),
        ("POST", "/__emulator/calls/{call_id}/answer_as", _answer_as),
        ("POST", "/__emulator/calls/{call_id}/hangup", _hangup),
        ("POST", "/__emulator/incoming_call", _incoming_call),
        ("GET", "/__emulator/scenarios", _list_scenarios),
        ("PUT", "/__emulator/scenarios/{to}", _put_scenario),
        ("DELETE", "/__emulator/scenarios/{to}", _delete_scenario),
        ("POST", "/__emulator/reset", _reset),
        ("POST", "/__emulator/advance", _advance),
        ("GET", "/__emulator/journal.jsonl", _journal),
        ("GET", "/__emulator/faults", _list_faults),
        ("POST", "/__emulator/faults", _add_fault),
        ("DELETE", "/__emulator/faults", _clear_faults),
        ("DELETE", "/__emulator/faults/{fault_id}", _delete_fault),
        ("GET", "/__emulator/rate_limits", _get_rate_limits),
        ("PUT", "/__emulator/rate_limits", _put_rate_limits),
    ]
    for method, path, handler in control:
        app.router.add_route(method, path, _protected(handler))

    async def startup(_: web.Application) -> None:
        await emu.start()

    async def cleanup(_: web.Application) -> None:
        await emu.close()

    app.on_startup.append(startup)
    app.on_cleanup.append(cleanup)
    return app


# --- auth ------------------------------------------------------------------------------------


def _authorized(request: web.Request, config: EmulatorConfig) -> bool:
    header = request.headers.get("Authorization", "")
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() != "basic":
        return False
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return False
    user, sep, password = decoded.partition(":")
    if not sep:
        return False
    ok_user = hmac.compare_digest(user.encode(), config.project_id.encode())
    ok_pass = hmac.compare_digest(password.encode(), config.token.encode())
    return ok_user and ok_pass


def _unauthorized() -> web.Response:
    return web.json_response(
        _UNAUTHORIZED, status=401, headers={"WWW-Authenticate": 'Basic realm="SignalWire"'}
    )


def _protected(handler: Handler) -> Handler:
    async def guarded(request: web.Request) -> web.StreamResponse:
        if not _authorized(request, request.app[EMULATOR_KEY].config):
            return _unauthorized()
        return await handler(request)

    return guarded


def _respond(reply: Reply, extra: dict[str, str] | None = None) -> web.Response:
    headers = dict(extra or {})
    if reply.headers:
        headers.update(reply.headers)
    if reply.detail:
        headers["X-Emulator-Detail"] = _header_safe(reply.detail)
    if reply.content_type == "text/plain":
        return web.Response(
            status=reply.status, text=str(reply.body), content_type="text/plain", headers=headers
        )
    return web.json_response(reply.body, status=reply.status, headers=headers)


# --- the API endpoint --------------------------------------------------------------------------


async def _api(request: web.Request) -> web.StreamResponse:
    """
    The endpoint: authentication, the POST rate limit, request hooks, request
    faults, then dispatch. Every reply carries the ``X-RateLimit-*`` headers.
    """
    emu = request.app[EMULATOR_KEY]
    if emu.config.public_url is None:
        emu.public_url = str(request.url.origin())
    raw = await request.read()
    if not _authorized(request, emu.config):
        emu.log_request(None, None, 401, _text(raw), _UNAUTHORIZED)
        response = _unauthorized()
        response.headers.update(emu.post_bucket.headers())
        return response
    allowed, limit_headers = emu.post_bucket.take()
    try:
        body: Any = json.loads(raw)
        is_json = True
    except (ValueError, UnicodeDecodeError):
        body, is_json = None, False
    command = _command(body)
    if not allowed:
        emu.log_request(
            command, request_call_id(body), 429, body if is_json else _text(raw), _TOO_MANY,
            fault="rate_limit",
        )  # fmt: skip
        return web.json_response(_TOO_MANY, status=429, headers=limit_headers)
    for hook in emu.request_hooks:
        answer = await hook(request, body)
        if answer is not None:
            status = answer.status
            emu.log_request(command, None, status, body, f"(request hook: {status})")
            if not answer.prepared:
                answer.headers.update(limit_headers)
            return answer
    fault, late = emu.faults.for_request(command)
    delay = late.seconds if late is not None else None
    error = (
        Reply(fault.status or 500, fault.reply_body(), headers=fault.reply_headers())
        if fault is not None and fault.kind == "fail"
        else None
    )
    dropping = fault is not None and fault.kind == "drop_connection"
    if error is not None and fault is not None and not fault.processed:
        reply = error
        emu.log_request(
            command, request_call_id(body), reply.status, body if is_json else _text(raw),
            reply.body, fault="fail", delay=delay,
        )  # fmt: skip
    elif not is_json:
        reply = error or Reply(400, _BAD_REQUEST, detail="the body is not JSON")
        kind = "drop_connection" if dropping else "fail_after_processing" if error else None
        emu.log_request(None, None, reply.status, _text(raw), reply.body, fault=kind, delay=delay)
    elif error is not None:
        reply = emu.handle(body, fault="fail_after_processing", answer=error, delay=delay)
    elif dropping:
        reply = emu.handle(body, fault="drop_connection", delay=delay)
    else:
        reply = emu.handle(body, delay=delay)
    if delay:
        await asyncio.sleep(delay)
    if dropping:  # carried out, never answered
        transport = request.transport
        if transport is not None:
            transport.close()
        return web.Response(status=204)
    return _respond(reply, limit_headers)


def _header_safe(text: str) -> str:
    ascii_text = text.encode("ascii", "backslashreplace").decode("ascii")
    return "".join(ch if " " <= ch <= "~" else " " for ch in ascii_text)[:500]


def _text(raw: bytes) -> str:
    return raw[:4096].decode("utf-8", errors="replace")


def _command(body: Any) -> str | None:
    name = body.get("command") if isinstance(body, dict) else None
    return name if isinstance(name, str) else None


# --- recordings ----------------------------------------------------------------------------------


async def _recording(request: web.Request) -> web.StreamResponse:
    emu = request.app[EMULATOR_KEY]
    m = _RECORDING.fullmatch(request.match_info["name"])
    frames = emu.recording_frames(m.group(1)) if m else None
    if frames is None:
        return web.json_response(_NOT_FOUND, status=404)
    size = wav_size(frames)
    resp = web.StreamResponse(headers={"Content-Type": "audio/wav", "Content-Length": str(size)})
    await resp.prepare(request)
    await resp.write(wav_header(frames))
    left = size - HEADER_SIZE
    zeros = bytes(_CHUNK)
    while left > 0:
        n = min(left, _CHUNK)
        await resp.write(zeros[:n])
        left -= n
    await resp.write_eof()
    return resp


# --- the control API -----------------------------------------------------------------------------


async def _json_body(request: web.Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except (ValueError, UnicodeDecodeError):
        raise web.HTTPBadRequest(
            text=json.dumps({"error": "Bad Request: the body is not JSON"}),
            content_type="application/json",
        ) from None
    if not isinstance(body, dict):
        raise web.HTTPBadRequest(
            text=json.dumps({"error": "Bad Request: the body must be an object"}),
            content_type="application/json",
        )
    return body


def _bad(message: str) -> web.Response:
    return web.json_response({"error": f"Bad Request: {message}"}, status=400)


def _call_action(
    request: web.Request, action: Callable[[EmulatedPlatform, str], Any]
) -> web.Response:
    emu = request.app[EMULATOR_KEY]
    call_id = request.match_info["call_id"]
    try:
        result = action(emu, call_id)
    except KeyError:
        return web.json_response(_NOT_FOUND, status=404)
    except ValueError as exc:
        return _bad(str(exc))
    return web.json_response({"ok": True, "result": result, "call": emu.calls[call_id].summary()})


async def _list_calls(request: web.Request) -> web.StreamResponse:
    emu = request.app[EMULATOR_KEY]
    return web.json_response([call.summary() for call in emu.calls.values()])


async def _get_call(request: web.Request) -> web.StreamResponse:
    emu = request.app[EMULATOR_KEY]
    call = emu.calls.get(request.match_info["call_id"])
    if call is None:
        return web.json_response(_NOT_FOUND, status=404)
    return web.json_response(call.summary())


async def _press(request: web.Request) -> web.StreamResponse:
    digits = (await _json_body(request)).get("digits")
    if not isinstance(digits, str) or not digits:
        return _bad("give {'digits': '<keys>'}")
    return _call_action(request, lambda emu, cid: emu.press(cid, digits))


async def _say(request: web.Request) -> web.StreamResponse:
    text = (await _json_body(request)).get("text")
    if not isinstance(text, str):
        return _bad("give {'text': '<what the caller says>'}")
    return _call_action(request, lambda emu, cid: emu.say(cid, text))


async def _answer_as(request: web.Request) -> web.StreamResponse:
    body = await _json_body(request)
    kind = body.get("as", body.get("kind"))
    if kind not in ("human", "machine"):
        return _bad("give {'as': 'human'} or {'as': 'machine'}")
    return _call_action(request, lambda emu, cid: emu.answer_as(cid, kind))


async def _hangup(request: web.Request) -> web.StreamResponse:
    body = await _json_body(request) if request.can_read_body else {}
    reason = body.get("reason", "hangup")
    if not isinstance(reason, str):
        return _bad("reason must be a string")
    return _call_action(request, lambda emu, cid: emu.hangup(cid, reason))


_INCOMING_KEYS = frozenset({"from", "to", "url", "type", "headers", "sip_data", "envs", "scenario"})


async def _incoming_call(request: web.Request) -> web.StreamResponse:
    """
    Place an inbound call: ``{"from", "to", "url", "type"?, "headers"?, "sip_data"?,
    "envs"?, "scenario"?}``. Answers 201 with the call once the SWML fetch is over.
    """
    emu = request.app[EMULATOR_KEY]
    body = await _json_body(request)
    unknown = sorted(set(body) - _INCOMING_KEYS)
    if unknown:
        return _bad(f"unknown fields {unknown}; the fields are {sorted(_INCOMING_KEYS)}")
    from_, to, url = body.get("from"), body.get("to"), body.get("url")
    if not (isinstance(from_, str) and isinstance(to, str) and isinstance(url, str)):
        return _bad("give {'from': '<caller>', 'to': '<number>', 'url': '<the SWML URL>'}")
    headers = body.get("headers")
    if headers is not None and not _headers_ok(headers):
        return _bad("headers is an object of strings or a list of {'name', 'value'}")
    for key in ("sip_data", "envs", "scenario"):
        if body.get(key) is not None and not isinstance(body[key], dict):
            return _bad(f"{key} must be an object")
    try:
        scenario = Scenario(**body["scenario"]) if body.get("scenario") is not None else None
        call = emu.incoming_call(
            from_, to, url, type=body.get("type", "phone"), headers=headers,
            sip_data=body.get("sip_data"), envs=body.get("envs"), scenario=scenario,
        )  # fmt: skip
    except (TypeError, ValueError) as exc:
        return _bad(str(exc))
    await call.swml.loaded()
    return web.json_response({"call_id": call.id, "call": call.summary()}, status=201)


def _headers_ok(headers: Any) -> bool:
    if isinstance(headers, dict):
        return all(isinstance(v, str) for v in headers.values())
    return isinstance(headers, list) and all(
        isinstance(h, dict) and set(h) == {"name", "value"}
        and all(isinstance(x, str) for x in h.values())
        for h in headers
    )  # fmt: skip


def _scenario_json(s: Scenario) -> dict[str, Any]:
    return attrs.asdict(s)


async def _list_scenarios(request: web.Request) -> web.StreamResponse:
    emu = request.app[EMULATOR_KEY]
    return web.json_response(
        {
            "default": _scenario_json(emu.config.default_scenario),
            "scenarios": {to: _scenario_json(s) for to, s in emu.scenarios.items()},
        }
    )


async def _put_scenario(request: web.Request) -> web.StreamResponse:
    emu = request.app[EMULATOR_KEY]
    body = await _json_body(request)
    try:
        scenario = Scenario(**body)
    except (TypeError, ValueError) as exc:
        return _bad(str(exc))
    emu.scenarios[request.match_info["to"]] = scenario
    return web.json_response(_scenario_json(scenario))


async def _delete_scenario(request: web.Request) -> web.StreamResponse:
    emu = request.app[EMULATOR_KEY]
    if emu.scenarios.pop(request.match_info["to"], None) is None:
        return web.json_response(_NOT_FOUND, status=404)
    return web.json_response({"ok": True})


async def _reset(request: web.Request) -> web.StreamResponse:
    request.app[EMULATOR_KEY].reset()
    return web.json_response({"ok": True})


async def _advance(request: web.Request) -> web.StreamResponse:
    seconds = (await _json_body(request)).get("seconds")
    if isinstance(seconds, bool) or not isinstance(seconds, int | float) or seconds < 0:
        return _bad("give {'seconds': <emulated seconds >= 0>}")
    emu = request.app[EMULATOR_KEY]
    emu.clock.advance(float(seconds))
    return web.json_response({"ok": True, "now": emu.clock.now()})


async def _journal(request: web.Request) -> web.StreamResponse:
    emu = request.app[EMULATOR_KEY]
    return web.Response(text=emu.journal.to_jsonl(), content_type="application/x-ndjson")


async def _list_faults(request: web.Request) -> web.StreamResponse:
    emu = request.app[EMULATOR_KEY]
    return web.json_response([f.to_json() for f in emu.faults.rules])


async def _add_fault(request: web.Request) -> web.StreamResponse:
    emu = request.app[EMULATOR_KEY]
    body = await _json_body(request)
    try:
        fault = emu.faults.add(body)
    except (TypeError, ValueError) as exc:
        return _bad(str(exc))
    return web.json_response(fault.to_json(), status=201)


async def _clear_faults(request: web.Request) -> web.StreamResponse:
    request.app[EMULATOR_KEY].faults.clear()
    return web.json_response({"ok": True})


async def _delete_fault(request: web.Request) -> web.StreamResponse:
    if not request.app[EMULATOR_KEY].faults.remove(request.match_info["fault_id"]):
        return web.json_response(_NOT_FOUND, status=404)
    return web.json_response({"ok": True})


async def _get_rate_limits(request: web.Request) -> web.StreamResponse:
    return web.json_response(request.app[EMULATOR_KEY].rate_limits.to_json())


async def _put_rate_limits(request: web.Request) -> web.StreamResponse:
    emu = request.app[EMULATOR_KEY]
    body = await _json_body(request)
    known = set(attrs.fields_dict(RateLimits))
    unknown = sorted(set(body) - known)
    if unknown:
        return _bad(f"unknown rate limit fields {unknown}; the fields are {sorted(known)}")
    try:
        limits = emu.set_rate_limits(**body)
    except (TypeError, ValueError) as exc:
        return _bad(str(exc))
    return web.json_response(limits.to_json())
