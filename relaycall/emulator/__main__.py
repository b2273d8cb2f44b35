"""
``relaycall emulator`` (or ``python -m relaycall.emulator``): serve the emulator until interrupted.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import math
import shlex
import sys
from collections.abc import Callable, Sequence
from typing import Any, TextIO, TypeVar

from aiohttp import web

from relaycall._serving import listen_error, stop_on_signals, url_host
from relaycall.emulator._app import API_PATH, EMULATOR_KEY, create_app
from relaycall.emulator._config import EmulatorConfig
from relaycall.emulator._core import EmulatedPlatform, request_call_id
from relaycall.emulator._ratelimit import RateLimits

__all__ = [
    "add_arguments",
    "build_parser",
    "config_from",
    "main",
    "port_number",
    "positive_float",
    "positive_int",
    "run",
    "serve",
]

DESCRIPTION = (
    "A local emulator of SignalWire's Calling API (POST /api/calling/calls): "
    "no account, no network. It prints the variables that point relaycall at it."
)

logger = logging.getLogger("relaycall.emulator")
T = TypeVar("T")


# --- argument types: a bad value is one argparse error line and exit status 2 ---------------


def _argument_type(
    parse: Callable[[str], T], expected: str, ok: Callable[[T], bool], rule: str
) -> Callable[[str], T]:
    """An argparse ``type=``: *parse* the text, refusing what is not *expected* or not *ok*."""

    def check(text: str) -> T:
        try:
            value = parse(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}") from None
        if not ok(value):
            raise argparse.ArgumentTypeError(f"{rule}, not {text!r}")
        return value

    return check


#: A finite number > 0.
positive_float = _argument_type(
    float, "a number", lambda v: math.isfinite(v) and v > 0, "must be a number > 0"
)
#: A whole number >= 1.
positive_int = _argument_type(
    int, "a whole number", lambda v: v >= 1, "must be a whole number >= 1"
)
#: A TCP port, 0 to 65535.
port_number = _argument_type(int, "a port number", lambda v: 0 <= v <= 65535, "must be 0 to 65535")


def _credential(what: str, *, user: bool) -> Callable[[str], str]:
    def check(text: str) -> str:
        if not text:
            raise argparse.ArgumentTypeError(f"the {what} cannot be empty")
        if user and ":" in text:  # the Basic auth user name ends at the first ':'
            raise argparse.ArgumentTypeError(f"the {what} cannot contain ':'")
        return text

    return check


# --- the parser ------------------------------------------------------------------------------


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Add the emulator's options to *p* (``relaycall emulator`` shares them)."""
    d = EmulatorConfig()
    r = d.rate_limits
    p.add_argument(
        "--host", default="127.0.0.1",
        help="address to listen on (default: %(default)s)",
    )  # fmt: skip
    p.add_argument(
        "--port", type=port_number, default=8080,
        help="port to listen on; 0 picks a free one (default: %(default)s)",
    )  # fmt: skip
    p.add_argument(
        "--project", type=_credential("project id", user=True), default=d.project_id,
        help="project id requests must carry as the Basic auth user (default: %(default)s)",
    )  # fmt: skip
    p.add_argument(
        "--token", type=_credential("token", user=False), default=d.token,
        help="API token requests must carry as the Basic auth password (default: %(default)s)",
    )  # fmt: skip
    p.add_argument(
        "--space-id", default=d.space_id,
        help="space id reported in callbacks (default: %(default)s)",
    )  # fmt: skip
    p.add_argument(
        "--signing-key", default=None,
        help="sign callbacks with this key (default: callbacks are not signed)",
    )  # fmt: skip
    p.add_argument(
        "--time-scale", type=positive_float, default=d.time_scale,
        help="emulated seconds per real second; 10 makes a 1 s ring take 0.1 s "
        "(default: %(default)g)",
    )  # fmt: skip
    p.add_argument(
        "--allow-external-callbacks", action="store_true",
        help="deliver callbacks to non-loopback hosts too (default: loopback only)",
    )  # fmt: skip
    p.add_argument(
        "--journal-size", type=positive_int, default=d.journal_size,
        help="requests and callbacks the journal keeps, oldest dropped first "
        "(default: %(default)s)",
    )  # fmt: skip
    p.add_argument(
        "--post-limit", type=positive_int, default=r.post_limit,
        help="POSTs per --post-window in the rate-limit bucket (default: %(default)s)",
    )  # fmt: skip
    p.add_argument(
        "--post-window", type=positive_float, default=r.post_window,
        help="seconds the bucket takes to refill (default: %(default)g)",
    )  # fmt: skip
    p.add_argument(
        "--enforce-post-limit", action="store_true",
        help="answer 429 with Retry-After when the bucket is empty "
        "(default: off, the headers only count)",
    )  # fmt: skip
    p.add_argument(
        "--calls-per-second", type=positive_float, default=None,
        help="queue new calls: created at this rate, in emulated seconds (default: no queue)",
    )  # fmt: skip
    p.add_argument(
        "--call-queue-size", type=positive_int, default=None,
        help="dials that may wait in the call queue before a 429 (default: no bound)",
    )  # fmt: skip
    p.add_argument(
        "--no-rate-limit-headers", action="store_true",
        help="leave out the X-RateLimit-* headers (default: sent on every reply)",
    )  # fmt: skip
    p.add_argument(
        "--no-media", action="store_true",
        help="do not connect to stream and tap WebSocket URLs (default: connect to loopback ones)",
    )  # fmt: skip
    p.add_argument(
        "--incoming-call", nargs=3, action="append", default=[], metavar=("FROM", "TO", "URL"),
        help="once listening, place a call from FROM to TO whose SWML is fetched from URL "
        "(repeatable; later calls: POST /__emulator/incoming_call) (default: none)",
    )  # fmt: skip
    p.add_argument(
        "-v", "--verbose", action="store_true",
        help="print one line per request and per callback (default: warnings only)",
    )  # fmt: skip


def build_parser(prog: str = "python -m relaycall.emulator") -> argparse.ArgumentParser:
    """The emulator's own parser, as ``python -m relaycall.emulator`` uses it."""
    # A one-line usage, so a bad flag is two short lines rather than a screenful.
    p = argparse.ArgumentParser(prog=prog, usage="%(prog)s [options]", description=DESCRIPTION)
    add_arguments(p)
    return p


def config_from(args: argparse.Namespace) -> EmulatorConfig:
    return EmulatorConfig(
        project_id=args.project,
        token=args.token,
        space_id=args.space_id,
        signing_key=args.signing_key,
        time_scale=args.time_scale,
        allow_external_callbacks=args.allow_external_callbacks,
        journal_size=args.journal_size,
        rate_limits=RateLimits(
            post_limit=args.post_limit,
            post_window=args.post_window,
            enforce_post_limit=args.enforce_post_limit,
            headers=not args.no_rate_limit_headers,
            calls_per_second=args.calls_per_second,
            call_queue_size=args.call_queue_size,
        ),
        media_websockets=not args.no_media,
    )


# --- logging -----------------------------------------------------------------------------------


class _NotTheRequestLine(logging.Filter):
    """Drop the core's 400 note: the request line below carries the same detail."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("emulator: 400 ")


def _setup_logging(verbose: bool, out: TextIO) -> None:
    handler = logging.StreamHandler(out)
    handler.setFormatter(logging.Formatter("%(asctime)s.%(msecs)03d %(message)s", "%H:%M:%S"))
    handler.addFilter(_NotTheRequestLine())
    for old in list(logger.handlers):  # a second run in one process: one handler, not two
        if any(isinstance(f, _NotTheRequestLine) for f in old.filters):
            logger.removeHandler(old)
    logger.addHandler(handler)
    logger.setLevel(logging.INFO if verbose else logging.WARNING)
    logger.propagate = False


def _printable(text: str, limit: int = 80) -> str:
    """*text* fit for one log line: a client's string cannot forge another line."""
    return "".join(ch if ch.isprintable() else "?" for ch in text[:limit])


def _request_line(request: web.Request, status: int, response: Any, body: bytes | None) -> str:
    """``POST /api/calling/calls dial -> 200 call=...``; the API's detail on a 4xx."""
    what = f"{_printable(request.method)} {_printable(request.rel_url.raw_path, 200)}"
    call_id: Any = None
    if body is not None:
        with contextlib.suppress(ValueError, UnicodeDecodeError):
            sent = json.loads(body)
            if isinstance(sent, dict):
                command = sent.get("command")
                if isinstance(command, str):
                    what += f" {_printable(command)}"
                call_id = request_call_id(sent)
                if command == "dial" and status == 200:
                    raw = getattr(response, "body", None)
                    reply = json.loads(raw) if isinstance(raw, bytes) else None
                    call_id = reply.get("id") if isinstance(reply, dict) else None
    line = f"emulator: {what} -> {status}"
    if isinstance(call_id, str):
        line += f" call={_printable(call_id)}"
    headers = getattr(response, "headers", {})
    detail = headers.get("X-Emulator-Detail")
    if detail:
        line += f" ({detail})"
    return line


@web.middleware
async def _log_requests(
    request: web.Request, handler: Callable[[web.Request], Any]
) -> web.StreamResponse:
    """One log line per request, once it is answered (installed by ``-v``)."""
    try:
        response: web.StreamResponse = await handler(request)
    except web.HTTPException as exc:
        logger.info("%s", _request_line(request, exc.status, exc, None))
        raise
    except Exception:
        logger.info("%s", _request_line(request, 500, None, None))  # aiohttp answers 500
        raise
    # The handler has read the body, so this is aiohttp's cached copy.
    body = await request.read() if request.method == "POST" and request.path == API_PATH else None
    logger.info("%s", _request_line(request, response.status, response, body))
    return response


# --- serving -----------------------------------------------------------------------------------


def _client_host(host: str) -> str:
    """The address a client on this machine uses to reach *host*."""
    if host in ("", "0.0.0.0"):  # noqa: S104 - mapping the wildcard, not binding it
        return "127.0.0.1"
    if host == "::":
        return "::1"
    return host


async def serve(
    config: EmulatorConfig,
    host: str,
    port: int,
    *,
    verbose: bool = False,
    out: TextIO | None = None,
    err: TextIO | None = None,
    name: str = "relaycall emulator",
    incoming: Sequence[Sequence[str]] = (),
) -> int:
    """
    Serve until SIGINT or SIGTERM, printing where and with which credentials.

    Each of *incoming* (``(FROM, TO, URL)``) is placed as an inbound call once listening.

    Returns the exit status: 0 after a signal, 2 when the address cannot be
    bound (one line on *err*, and nothing left open).
    """
    out = out or sys.stdout
    err = err or sys.stderr
    # Before anything opens, so an early Ctrl-C still goes through the cleanup below.
    stop = stop_on_signals()
    app = create_app(config)
    if verbose:
        app.middlewares.append(_log_requests)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()  # starts the emulator: its callback session is open from here
    try:
        try:
            await web.TCPSite(runner, host, port).start()
        except OSError as exc:
            err.write(f"{name}: {listen_error(host, port, exc)}\n")
            return 2
        addresses = runner.addresses
        bound = addresses[0][1] if addresses else port
        base = f"http://{url_host(host)}:{bound}"
        client_base = f"http://{url_host(_client_host(host))}:{bound}"
        limits = config.rate_limits
        enforced = "enforced" if limits.enforce_post_limit else "headers only"
        queue = f", {limits.calls_per_second:g} new calls/s" if limits.calls_per_second else ""
        env = {
            "SIGNALWIRE_BASE_URL": client_base,
            "SIGNALWIRE_PROJECT_ID": config.project_id,
            "SIGNALWIRE_API_TOKEN": config.token,
        }
        if config.signing_key:
            env["SIGNALWIRE_SIGNING_KEY"] = config.signing_key
        log = "one line per request and callback" if verbose else "warnings only (-v: more)"
        out.write(
            f"{name} listening on {base}\n"
            f"  endpoint : {base}{API_PATH}\n"
            f"  project  : {config.project_id}\n"
            f"  token    : {config.token}\n"
            f"  time x   : {config.time_scale:g}\n"
            f"  signing  : {'on' if config.signing_key else 'off'}\n"
            f"  limits   : {limits.post_limit} POSTs per {limits.post_window:g} s "
            f"({enforced}){queue}\n"
            f"  control  : {base}/__emulator/ (same credentials)\n"
            f"  log      : {log}\n"
            "Point relaycall at it (AsyncRelay() with no arguments reads these):\n"
            "  export " + " ".join(f"{k}={shlex.quote(v)}" for k, v in env.items()) + "\n"
        )
        out.flush()
        placing = [
            asyncio.create_task(_place(app[EMULATOR_KEY], *each, out=out)) for each in incoming
        ]
        why = await stop
        for task in placing:
            task.cancel()
    finally:
        await runner.cleanup()
    out.write(f"{name} stopped ({why})\n")
    out.flush()
    return 0


async def _place(emu: EmulatedPlatform, from_: str, to: str, url: str, *, out: TextIO) -> None:
    """Place one ``--incoming-call`` and print what became of its SWML fetch."""
    sip = to.lower().startswith(("sip:", "sips:"))
    try:
        call = emu.incoming_call(from_, to, url, type="sip" if sip else "phone")
    except ValueError as exc:
        out.write(f"incoming call from {from_} to {to}: {exc}\n")
        out.flush()
        return
    await call.swml.loaded()
    run = call.swml
    outcome = f"failed ({run.error}), hung up" if run.error else f"SWML {run.state}"
    out.write(f"incoming call {call.id} from {from_} to {to}: {outcome}\n")
    out.flush()


def run(args: argparse.Namespace, name: str = "relaycall emulator") -> int:
    """Serve with parsed *args*; returns the exit status."""
    try:
        config = config_from(args)
    except (TypeError, ValueError) as exc:
        sys.stderr.write(f"{name}: {exc}\n")
        return 2
    _setup_logging(args.verbose, sys.stdout)
    try:
        return asyncio.run(
            serve(
                config, args.host, args.port, verbose=args.verbose, name=name,
                incoming=getattr(args, "incoming_call", None) or (),
            )
        )  # fmt: skip
    except KeyboardInterrupt:  # where signal handlers are not available (Windows)
        sys.stdout.write(f"{name} stopped (interrupted)\n")
        return 0


def main(argv: Sequence[str] | None = None, prog: str = "python -m relaycall.emulator") -> int:
    """Parse *argv* and serve until Ctrl-C. Returns the exit status."""
    return run(build_parser(prog).parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
