"""
``python -m relaycall.emulator``: serve the emulator until interrupted.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
from collections.abc import Sequence

from aiohttp import web

from relaycall.emulator._app import API_PATH, create_app
from relaycall.emulator._config import EmulatorConfig
from relaycall.emulator._ratelimit import RateLimits


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m relaycall.emulator",
        description="A local emulator of SignalWire's Calling API (POST /api/calling/calls).",
    )
    d = EmulatorConfig()
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default %(default)s)")
    p.add_argument("--port", type=int, default=8080, help="port (default %(default)s; 0 picks one)")
    p.add_argument("--project", default=d.project_id, help="project id (Basic auth user)")
    p.add_argument("--token", default=d.token, help="API token (Basic auth password)")
    p.add_argument("--space-id", default=d.space_id, help="space id reported in callbacks")
    p.add_argument("--signing-key", default=None, help="sign callbacks with this key")
    p.add_argument("--time-scale", type=float, default=1.0, help="emulated seconds per real second")
    p.add_argument(
        "--allow-external-callbacks",
        action="store_true",
        help="deliver callbacks to non-loopback hosts too",
    )
    p.add_argument("--journal-size", type=int, default=d.journal_size)
    r = d.rate_limits
    p.add_argument(
        "--post-limit", type=int, default=r.post_limit,
        help="POSTs per --post-window in the rate-limit bucket (default %(default)s)",
    )  # fmt: skip
    p.add_argument(
        "--post-window", type=float, default=r.post_window,
        help="seconds the bucket takes to refill (default %(default)s)",
    )  # fmt: skip
    p.add_argument(
        "--enforce-post-limit", action="store_true",
        help="answer 429 with Retry-After when the bucket is empty (off: headers only)",
    )  # fmt: skip
    p.add_argument(
        "--calls-per-second", type=float, default=None,
        help="queue new calls: created at this rate (emulated seconds; default: no queue)",
    )  # fmt: skip
    p.add_argument(
        "--call-queue-size", type=int, default=None,
        help="dials that may wait in the call queue before 429 (default: no bound)",
    )  # fmt: skip
    p.add_argument(
        "--no-rate-limit-headers", action="store_true", help="leave out X-RateLimit-* headers"
    )
    p.add_argument(
        "--no-media", action="store_true",
        help="do not connect to stream and tap WebSocket URLs",
    )  # fmt: skip
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


async def serve(config: EmulatorConfig, host: str, port: int) -> None:
    """Serve until cancelled, printing where and with which credentials."""
    app = create_app(config)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    try:
        bound = port
        server = site._server  # the only way to learn the port when 0 was asked for
        sockets = getattr(server, "sockets", None) or ()
        for sock in sockets:
            bound = sock.getsockname()[1]
            break
        shown = f"[{host}]" if ":" in host else host
        out = sys.stdout
        out.write(f"relaycall emulator listening on http://{shown}:{bound}\n")
        out.write(f"  endpoint : http://{shown}:{bound}{API_PATH}\n")
        out.write(f"  project  : {config.project_id}\n")
        out.write(f"  token    : {config.token}\n")
        out.write(f"  time x   : {config.time_scale:g}\n")
        out.write(f"  signing  : {'on' if config.signing_key else 'off'}\n")
        limits = config.rate_limits
        enforced = "enforced" if limits.enforce_post_limit else "headers only"
        out.write(
            f"  limits   : {limits.post_limit} POSTs per {limits.post_window:g} s ({enforced})"
            + (f", {limits.calls_per_second:g} new calls/s" if limits.calls_per_second else "")
            + "\n"
        )
        out.write(f"  control  : http://{shown}:{bound}/__emulator/ (same credentials)\n")
        out.flush()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):  # not on Windows
                loop.add_signal_handler(sig, stop.set)
        await stop.wait()
    finally:
        await runner.cleanup()


def main(argv: Sequence[str] | None = None) -> int:
    """Parse *argv* and serve until Ctrl-C. Returns the exit status."""
    args = build_parser().parse_args(argv)
    try:
        config = config_from(args)
    except (TypeError, ValueError) as exc:
        sys.stderr.write(f"relaycall emulator: {exc}\n")
        return 2
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(config, args.host, args.port))
    return 0


if __name__ == "__main__":
    sys.exit(main())
