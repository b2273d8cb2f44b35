"""
Test your call flows offline: the emulator, an EventReceiver and a ready AsyncRelay in one.

Example::

    from relaycall.testing import Emulator, Scenario

    async def test_menu():
        async with Emulator(time_scale=50) as emu:
            emu.scenarios["+15557650000"] = Scenario(dtmf="2")
            call = await emu.relay.dial(from_="+15551230000", to="+15557650000",
                                        url="https://example.test/ivr")
            await call.wait_for("answered", timeout=5)
            col = await call.collect(digits=commands.CollectDigits(max=1),
                                     start_input_timers=True)
            assert (await col.wait(timeout=5)).digits == "2"
            assert [e.command for e in emu.requests] == ["dial", "calling.collect"]

Failures on demand and rate limits (docs/emulator.md)::

    emu.faults.fail(503, command="calling.play")    # the next play is refused once
    emu.faults.drop_connection(command="dial")      # placed, then never answered
    emu.faults.drop_callbacks(event_type="calling.call.collect")
    emu.set_rate_limits(enforce_post_limit=True, post_limit=5, post_window=1)

With pytest, the ``relay_emulator`` fixture (from the plugin relaycall
installs) yields a started :class:`Emulator`; ``emulated_relay`` yields its
AsyncRelay. Set ``relaycall_time_scale`` in your pytest ini options to change
the default speed-up.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator, Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal

from aiohttp import web

from relaycall import _retry
from relaycall._receiver import EventReceiver
from relaycall._session import AsyncRelay
from relaycall.emulator import (
    EmulatedPlatform,
    EmulatorConfig,
    Faults,
    RateLimits,
    Scenario,
    create_app,
)
from relaycall.emulator._journal import CallbackEntry, NoteEntry, RequestEntry

if TYPE_CHECKING:
    from relaycall._handles.call import Call
    from relaycall.emulator import EmulatedCall, Journal

__all__ = [
    "Emulator",
    "EmulatorConfig",
    "Faults",
    "RateLimits",
    "Scenario",
    "instant_retries",
    "set_testing",
]

_SAME_KEY: Any = object()

DEFAULT_PROJECT = "test-project"
DEFAULT_TOKEN = "test-token"  # noqa: S105 - the emulator's well-known test credential
DEFAULT_SIGNING_KEY = "relaycall-testing-signing-key"


async def _instant(seconds: float) -> None:
    # Still a suspension point, as a real sleep is: other tasks get to run.
    await asyncio.sleep(0)


def set_testing(testing: bool) -> None:
    """
    Make the retry backoff of every AsyncRelay instant (True) or real again (False).

    For a whole test session, e.g. in ``conftest.py``; the retry policy is
    otherwise unchanged (same attempts, same decisions). stamina's
    ``set_testing`` is the model. :func:`instant_retries` does the same for
    one block and records the waits.
    """
    _retry.testing_sleep = _instant if testing else None


@contextlib.contextmanager
def instant_retries() -> Iterator[list[float]]:
    """
    Within the block, retry backoffs return at once; yields the list of waits skipped.

    Example::

        with relaycall.testing.instant_retries() as waits:
            await relay.send(...)          # answered 429 with Retry-After: 2, then 200
        assert waits == [2.0]
    """
    waits: list[float] = []
    previous = _retry.testing_sleep

    async def record(seconds: float) -> None:
        waits.append(seconds)
        await asyncio.sleep(0)

    _retry.testing_sleep = record
    try:
        yield waits
    finally:
        _retry.testing_sleep = previous


def _call_id(call: Call | str) -> str:
    return call if isinstance(call, str) else call.id


class Emulator:
    """
    A running emulator on 127.0.0.1, a receiver for its callbacks, and an AsyncRelay.

    Everything listens on loopback ports chosen by the OS; callbacks are
    signed and verified end to end. Leaving the ``async with`` block closes
    the relay (resolving pending waits) and both servers.

    Args:
        time_scale: How much faster than real time the emulated clock runs.
        scenarios: Destination -> :class:`Scenario`, how each far end behaves.
        default_scenario: For destinations without one (answers as a human
            after a 1 s ring unless told otherwise).
        signing_key: Signs the callbacks (None: unsigned, and unchecked).
        receiver_signing_key: The key the receiver verifies with; by default
            the same as the emulator's. Give another to see every callback
            refused (403), as with a misconfigured signing key.
        rate_limits: The emulator's :class:`RateLimits` (default: headers only).
        config: A full :class:`EmulatorConfig` (overrides the above).
        relay_options: Extra keyword arguments for the :class:`AsyncRelay`
            (``retry=RetryPolicy(...)``, ``limits=Limits(...)``...).
    """

    def __init__(
        self,
        *,
        time_scale: float = 10.0,
        scenarios: Mapping[str, Scenario] | None = None,
        default_scenario: Scenario | None = None,
        signing_key: str | None = DEFAULT_SIGNING_KEY,
        receiver_signing_key: str | None = _SAME_KEY,
        rate_limits: RateLimits | None = None,
        config: EmulatorConfig | None = None,
        **relay_options: Any,
    ) -> None:
        if config is None:
            options: dict[str, Any] = {
                "project_id": DEFAULT_PROJECT,
                "token": DEFAULT_TOKEN,
                "time_scale": time_scale,
                "signing_key": signing_key,
            }
            if default_scenario is not None:
                options["default_scenario"] = default_scenario
            if rate_limits is not None:
                options["rate_limits"] = rate_limits
            config = EmulatorConfig(**options)
        self.config = config
        #: The emulated platform behind the server: calls, clock, journal, control API.
        self.core = EmulatedPlatform(config)
        self.core.scenarios.update(scenarios or {})
        self._receiver_key = (
            config.signing_key if receiver_signing_key is _SAME_KEY else receiver_signing_key
        )
        self._relay_options = relay_options
        self._runner: web.AppRunner | None = None
        self._base_url: str | None = None
        self._receiver: EventReceiver | None = None
        self._relay: AsyncRelay | None = None

    # --- lifecycle ---------------------------------------------------------------------------

    async def __aenter__(self) -> Emulator:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def start(self) -> None:
        """Start the emulator, the receiver and the relay."""
        runner = web.AppRunner(create_app(emulator=self.core), access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        self._runner = runner
        port = runner.addresses[0][1]
        self._base_url = f"http://127.0.0.1:{port}"
        if self.config.public_url is None:  # recording links work before the first request
            self.core.public_url = self._base_url
        self._receiver = EventReceiver(signing_key=self._receiver_key)
        await self._receiver.start("127.0.0.1", 0)
        self._relay = AsyncRelay(
            self.config.project_id,
            self.config.token,
            base_url=self._base_url,
            events=self._receiver,
            **self._relay_options,
        )
        await self._relay.__aenter__()

    async def close(self) -> None:
        """Close the relay, stop the callbacks, then the receiver and the emulator. Idempotent."""
        if self._relay is not None:
            await self._relay.close()
        # The platform stops calling back before the receiver stops listening: its
        # timers kept sending callbacks into the receiver's shutdown, each reset and
        # logged, and a connection accepted in that window could be left unclosed (a
        # ResourceWarning under load). The app's cleanup closes the platform again.
        await self.core.close()
        if self._receiver is not None:
            await self._receiver.stop()
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    # --- what tests use -------------------------------------------------------------------------

    @property
    def relay(self) -> AsyncRelay:
        """An AsyncRelay wired to the emulator, with the receiver attached."""
        if self._relay is None:
            raise RuntimeError("the Emulator is not started: use 'async with Emulator() as emu'")
        return self._relay

    @property
    def receiver(self) -> EventReceiver:
        if self._receiver is None:
            raise RuntimeError("the Emulator is not started")
        return self._receiver

    @property
    def base_url(self) -> str:
        """The emulator's URL, for an AsyncRelay(base_url=...) of your own."""
        if self._base_url is None:
            raise RuntimeError("the Emulator is not started")
        return self._base_url

    @property
    def scenarios(self) -> dict[str, Scenario]:
        """Destination -> Scenario; set entries before dialling."""
        return self.core.scenarios

    @property
    def journal(self) -> Journal:
        """Every request the emulator answered and callback it sent, in order."""
        return self.core.journal

    @property
    def requests(self) -> list[RequestEntry]:
        """The journal's request entries (``.command``, ``.status``, ``.body``...)."""
        return [e for e in self.core.journal if isinstance(e, RequestEntry)]

    @property
    def callbacks(self) -> list[CallbackEntry]:
        """The journal's callback entries."""
        return [e for e in self.core.journal if isinstance(e, CallbackEntry)]

    @property
    def notes(self) -> list[NoteEntry]:
        """The journal's notes (key presses, transfers, ``media.*`` WebSocket events...)."""
        return [e for e in self.core.journal if isinstance(e, NoteEntry)]

    @property
    def faults(self) -> Faults:
        """Failures on demand: ``emu.faults.fail(503)``, ``.drop_callbacks()``... (Faults)."""
        return self.core.faults

    @property
    def rate_limits(self) -> RateLimits:
        """The rate limits in force."""
        return self.core.rate_limits

    def set_rate_limits(self, limits: RateLimits | None = None, **changes: Any) -> RateLimits:
        """Change the rate limits (``enforce_post_limit=True, post_limit=5``...)."""
        return self.core.set_rate_limits(limits, **changes)

    def advance(self, seconds: float) -> None:
        """Skip *seconds* of emulated time, running every timer due on the way."""
        self.core.clock.advance(seconds)

    def call(self, call: Call | str) -> EmulatedCall:
        """The emulator's own view of a call (state, operations)."""
        return self.core.call(_call_id(call))

    def press(self, call: Call | str, digits: str) -> bool:
        """The caller presses *digits* (kept for the next input operation if none listens)."""
        return self.core.press(_call_id(call), digits)

    def say(self, call: Call | str, text: str) -> bool:
        """The caller says *text*."""
        return self.core.say(_call_id(call), text)

    def answer_as(self, call: Call | str, kind: Literal["human", "machine"]) -> None:
        """Answer now as a human or a machine (or change what detection finds)."""
        self.core.answer_as(_call_id(call), kind)

    def hangup(self, call: Call | str, reason: str = "hangup") -> None:
        """The far end hangs up."""
        self.core.hangup(_call_id(call), reason)

    @property
    def swml_url(self) -> str:
        """Where :meth:`incoming_call` fetches SWML by default: the receiver's ``swml_url``."""
        receiver = self.receiver
        url = getattr(receiver, "swml_url", None)
        if isinstance(url, str):
            return url
        public = receiver.public_url or ""
        return (public if public.endswith("/") else public + "/") + "swml/"

    async def incoming_call(
        self,
        from_: str,
        to: str,
        *,
        type: Literal["phone", "sip", "webrtc"] = "phone",
        headers: Mapping[str, str] | list[dict[str, str]] | None = None,
        sip_data: Mapping[str, Any] | None = None,
        url: str | None = None,
        envs: Mapping[str, Any] | None = None,
        scenario: Scenario | None = None,
    ) -> str:
        """
        A call comes in from *from_* to *to*: the emulator creates it (inbound, ringing),
        POSTs the signed SWML fetch to *url* (by default :attr:`swml_url`, the
        receiver's) and runs the document it answers (docs/emulator.md lists what of
        SWML it executes). Returns the call id once the fetch is over; a failed fetch
        (an error status, not JSON, not a SWML document) has hung the call up.

        *scenario* is how the caller behaves: what they press (``dtmf``) or say,
        ``hangup_after``...; by default ``scenarios[from_]``.
        """
        call = self.core.incoming_call(
            from_, to, url or self.swml_url, type=type, headers=headers, sip_data=sip_data,
            envs=envs, scenario=scenario,
        )  # fmt: skip
        await call.swml.loaded()
        return call.id

    async def idle(self) -> None:
        """Wait until every queued callback has been delivered."""
        await self.core.idle()

    def reset(self) -> None:
        """
        Forget calls, scenarios, faults and the journal, and restore the configured
        rate limits (between tests sharing one emulator).
        """
        self.core.reset()
