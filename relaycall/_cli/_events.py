"""
``relaycall events listen``: a standalone EventReceiver printing every verified callback.

For debugging a deployment: point a status_url at it (the one it prints, or your
own app's, given its ``--secret``) and watch what the platform sends. It runs the
library's own receiver, so it accepts exactly what an app would (signature,
URL token, timestamp window) and refuses the rest with the same reasons, printed
on stderr. Nothing is routed anywhere: each accepted callback is one line on
stdout (its raw JSON body with ``--json``).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys

from relaycall._cli._common import Exit, fail, json_line, number, output
from relaycall._events import Event
from relaycall._receiver import EventReceiver
from relaycall._serving import listen_error, stop_on_signals
from relaycall.errors import UsageError

__all__ = ["add_events_parser", "run_events"]


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a port number, got {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"must be 0 to 65535, not {text!r}")
    return value


def add_events_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``relaycall events`` (and ``listen``) to the top-level *sub* parsers."""
    events = sub.add_parser(
        "events",
        help="receive status callbacks: `relaycall events listen` prints each one",
        description="Receive SignalWire status callbacks.",
    )
    events.set_defaults(subparser=events)
    which = events.add_subparsers(dest="events_command", required=True, metavar="SUBCOMMAND")
    listen = which.add_parser(
        "listen",
        help="run a standalone receiver and print every verified callback until Ctrl-C",
        description="Run relaycall's EventReceiver on its own and print every callback it "
        "accepts, one line each (--json: the callback's JSON body, one per line). Refused "
        "callbacks are logged on stderr with the reason. It prints a status_url to give to "
        "`relaycall call dial --status-url` (or any command's); with your app's --secret, "
        "the status_urls your app writes are accepted too. Ctrl-C or SIGTERM stops it.",
    )
    listen.set_defaults(subparser=listen)
    listen.add_argument("--host", default="127.0.0.1", help="address (default: %(default)s)")
    listen.add_argument(
        "--port", type=_port, default=0, help="port; 0 picks a free one (default: %(default)s)"
    )
    listen.add_argument(
        "--path", default="/relaycall/events",
        help="where callbacks are served (default: %(default)s)",
    )  # fmt: skip
    listen.add_argument(
        "--public-url",
        help="the URL the platform reaches this listener at (a tunnel or proxy); signatures "
        "are checked against it (default: the local URL)",
    )
    listen.add_argument(
        "--signing-key",
        default=os.environ.get("SIGNALWIRE_SIGNING_KEY") or None,
        help="verify X-SignalWire-Signature with this key (default: $SIGNALWIRE_SIGNING_KEY; "
        "without one, signatures are not checked)",
    )
    listen.add_argument(
        "--secret",
        help="the URL-token key of your app's EventReceiver (its secret= bytes, as UTF-8 "
        "text), so the status_urls your app writes are accepted here (default: a random one)",
    )
    listen.add_argument(
        "--no-token-check", action="store_true",
        help="accept callbacks without a token of ours, e.g. a number's configured status "
        "callback (needs --signing-key: something must be verified)",
    )  # fmt: skip
    listen.add_argument(
        "--max-clock-skew", type=number, default=300.0, metavar="SECONDS",
        help="refuse callbacks whose timestamp is older than this; 0: no check "
        "(default: %(default)g)",
    )  # fmt: skip
    listen.add_argument(
        "--json", action="store_true", help="print each callback's JSON body, one per line"
    )


class _StderrLines(logging.Handler):
    """The receiver's log (refusals and their reasons) as ``<prog>: <message>`` lines."""

    def __init__(self, prog: str) -> None:
        super().__init__(logging.WARNING)
        self.prog = prog

    def emit(self, record: logging.LogRecord) -> None:
        print(f"{self.prog}: {record.getMessage()}", file=sys.stderr, flush=True)  # noqa: T201


def _line(event: Event) -> str:
    words = [event.event_type or "?", f"call_id={event.call_id}"]
    if event.control_id:
        words.append(f"control_id={event.control_id}")
    if event.state:
        words.append(f"state={event.state}")
    return " ".join(words)


def run_events(ns: argparse.Namespace) -> int:
    """Run ``relaycall events listen`` until a signal; returns the exit status."""
    prog = "relaycall events listen"
    if ns.no_token_check and not ns.signing_key:
        return fail(prog, "--no-token-check needs --signing-key (or SIGNALWIRE_SIGNING_KEY): "
                    "without either, nothing about a callback would be verified")  # fmt: skip
    if ns.max_clock_skew < 0:
        return fail(prog, f"argument --max-clock-skew: must be >= 0, not {ns.max_clock_skew:g}")
    try:
        receiver = EventReceiver(
            public_url=ns.public_url, path=ns.path, signing_key=ns.signing_key,
            require_token=not ns.no_token_check,
            secret=ns.secret.encode() if ns.secret else None,
            max_clock_skew=ns.max_clock_skew or None,
        )  # fmt: skip
    except UsageError as exc:
        return fail(prog, str(exc))
    log = logging.getLogger("relaycall.events")
    handler = _StderrLines(prog)
    log.addHandler(handler)
    try:
        return asyncio.run(_listen(receiver, ns, prog))
    except KeyboardInterrupt:  # where signal handlers are not available (Windows)
        print(f"{prog} stopped (interrupted)", flush=True)  # noqa: T201
        return Exit.OK
    finally:
        log.removeHandler(handler)


async def _listen(receiver: EventReceiver, ns: argparse.Namespace, prog: str) -> int:
    # Before the server opens, so an early Ctrl-C still goes through the cleanup below.
    stop = stop_on_signals()

    def show(event: Event) -> None:
        line = json_line(dict(event.raw)) if ns.json else _line(event)
        if not output(line) and not stop.done():
            stop.set_result("stdout closed")  # `| head -3` has what it wanted

    receiver.on_event(show)
    try:
        url = await receiver.start(ns.host, ns.port)
    except OSError as exc:
        return fail(prog, listen_error(ns.host, ns.port, exc))
    try:
        lines = [f"{prog.rsplit(' ', 1)[0]} listening on {url}"]
        if receiver.require_token:
            status_url, _ = receiver.dial_status_url()
            lines.append(f"  status_url : {status_url}")
        else:
            lines.append("  tokens     : not required (--no-token-check)")
        signing = "on" if ns.signing_key else "off (no --signing-key or SIGNALWIRE_SIGNING_KEY)"
        lines.append(f"  signatures : {signing}")
        output("\n".join(lines))
        why = await stop
    finally:
        await receiver.stop()
    output(f"{prog.rsplit(' ', 1)[0]} stopped ({why})")
    return Exit.OK
