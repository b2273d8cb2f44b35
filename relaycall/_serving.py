"""
What the command line's servers share (``relaycall emulator``, ``relaycall events listen``):
stopping on a signal, and saying plainly why an address cannot be listened on.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal

__all__ = ["listen_error", "stop_on_signals", "url_host"]


def stop_on_signals() -> asyncio.Future[str]:
    """
    A future of the running loop, resolved with the signal's name at the first SIGINT or SIGTERM.

    Call it before anything opens, so that an early Ctrl-C still goes through the
    caller's cleanup. Where signal handlers are not available (Windows, a thread
    other than the main one) it never resolves, and Ctrl-C is a KeyboardInterrupt.
    """
    loop = asyncio.get_running_loop()
    stop: asyncio.Future[str] = loop.create_future()

    def on_signal(sig: signal.Signals) -> None:
        if not stop.done():
            stop.set_result(sig.name)

    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(sig, on_signal, sig)
    return stop


def url_host(host: str) -> str:
    """*host* as written in a URL (an IPv6 address in brackets)."""
    return f"[{host}]" if ":" in host else host


def listen_error(host: str, port: int, exc: OSError) -> str:
    """``cannot listen on HOST:PORT: <why>``, for the OSError binding it raised."""
    # asyncio words EADDRINUSE as "error while attempting to bind on address ...";
    # the errno alone says it plainly. A resolver error (negative errno) has its own text.
    number = exc.errno
    why = os.strerror(number) if number is not None and number > 0 else exc.strerror
    why = why or str(exc)
    why = why[:1].lower() + why[1:]
    return f"cannot listen on {url_host(host)}:{port}: {why}"
