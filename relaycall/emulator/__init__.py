"""
relaycall.emulator: a local stand-in for SignalWire's ``POST /api/calling/calls``.

It authenticates, validates and answers every command like the real endpoint,
plays out calls and operations on an emulated clock, and posts the status
callbacks of docs/callbacks.md to your ``status_url``\\ s, so code built on
relaycall runs and is tested without an account or a network.

Run it::

    python -m relaycall.emulator --port 8080 --time-scale 10

or in-process::

    from aiohttp.test_utils import TestServer
    from relaycall.emulator import EMULATOR_KEY, EmulatorConfig, Scenario, create_app

    app = create_app(EmulatorConfig(time_scale=50))
    emu = app[EMULATOR_KEY]
    emu.scenarios["+15557650000"] = Scenario(answer="machine", dtmf="1234#")
    async with TestServer(app, host="127.0.0.1", port=0) as server:
        async with relaycall.AsyncRelay("test-project", "test-token",
                                        base_url=str(server.make_url(""))) as relay:
            ...

Failures on demand (``emu.faults``), rate limits (``emu.set_rate_limits``) and
WebSocket audio for streams and taps are described there too.

The choices made where the API reference is silent are listed in docs/emulator.md.
"""

from __future__ import annotations

from relaycall.emulator._app import API_PATH, EMULATOR_KEY, create_app
from relaycall.emulator._calls import EmulatedCall
from relaycall.emulator._clock import Scheduler
from relaycall.emulator._config import EmulatorConfig, Scenario
from relaycall.emulator._core import EmulatedPlatform, Reply, RequestHook
from relaycall.emulator._faults import Fault, Faults
from relaycall.emulator._journal import CallbackEntry, Entry, Journal, NoteEntry, RequestEntry
from relaycall.emulator._media import MediaLink
from relaycall.emulator._outbox import Delivery, DeliveryHook, sign
from relaycall.emulator._ratelimit import RateLimits

__all__ = [
    "API_PATH",
    "EMULATOR_KEY",
    "CallbackEntry",
    "Delivery",
    "DeliveryHook",
    "EmulatedCall",
    "EmulatedPlatform",
    "EmulatorConfig",
    "Entry",
    "Fault",
    "Faults",
    "Journal",
    "MediaLink",
    "NoteEntry",
    "RateLimits",
    "Reply",
    "RequestEntry",
    "RequestHook",
    "Scenario",
    "Scheduler",
    "create_app",
    "main",
    "sign",
]


def main(argv: list[str] | None = None) -> int:
    """Run the emulator from the command line (``python -m relaycall.emulator``)."""
    from relaycall.emulator.__main__ import main as _main  # noqa: PLC0415 - argparse on demand

    return _main(argv)
