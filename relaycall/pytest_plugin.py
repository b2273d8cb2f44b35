"""
pytest plugin (installed with relaycall): emulator fixtures for testing call flows offline.

Fixtures:
    relay_emulator: a started :class:`relaycall.testing.Emulator`.
    emulated_relay: its ready :class:`relaycall.AsyncRelay` (callbacks wired in).

The fixtures are async: they need pytest-asyncio. In its default strict mode, mark
the async tests that use them ``@pytest.mark.asyncio`` (with ``asyncio_mode = "auto"``
the marker is optional); a test that forgets is failed with a message saying so, not
pytest's "async def functions are not natively supported". The ini option
``relaycall_time_scale`` (default 20) sets how fast the emulated clock runs.

Example::

    import pytest
    from relaycall.testing import Scenario

    @pytest.mark.asyncio
    async def test_busy(relay_emulator):
        relay_emulator.scenarios["+15557650000"] = Scenario(answer="busy")
        call = await relay_emulator.relay.dial(from_="+15551230000", to="+15557650000",
                                               url="https://example.test/swml")
        assert await call.wait_for("answered", timeout=5) == "ended"
"""

from __future__ import annotations

import importlib.util
import inspect
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from relaycall._session import AsyncRelay
    from relaycall.testing import Emulator

_HAVE_ASYNCIO_PLUGIN = importlib.util.find_spec("pytest_asyncio") is not None
_FIXTURES = frozenset({"relay_emulator", "emulated_relay"})


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addini(
        "relaycall_time_scale",
        "how much faster than real time relaycall's emulator fixtures run (default 20)",
        default="20",
    )


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> None:
    """Fail an async test that uses our fixtures but that no plugin will run, saying why."""
    if (
        _FIXTURES.intersection(pyfuncitem.fixturenames)
        and inspect.iscoroutinefunction(pyfuncitem.obj)
        # pytest-asyncio's marker (added by itself in auto mode), or anyio's.
        and pyfuncitem.get_closest_marker("asyncio") is None
        and pyfuncitem.get_closest_marker("anyio") is None
    ):
        pytest.fail(
            f"{pyfuncitem.name} is an async test using relaycall's emulator fixtures, and "
            "pytest-asyncio only runs async tests that are marked: add "
            "@pytest.mark.asyncio to it (pytest-asyncio's default strict mode), or set "
            'asyncio_mode = "auto" in your pytest configuration',
            pytrace=False,
        )


if _HAVE_ASYNCIO_PLUGIN:
    import pytest_asyncio

    @pytest_asyncio.fixture
    async def relay_emulator(request: pytest.FixtureRequest) -> AsyncIterator[Emulator]:
        """A started relaycall emulator with a receiver and a ready AsyncRelay."""
        from relaycall.testing import Emulator  # noqa: PLC0415 - keep plugin import light

        scale = float(request.config.getini("relaycall_time_scale"))
        async with Emulator(time_scale=scale) as emu:
            yield emu

    @pytest_asyncio.fixture
    async def emulated_relay(relay_emulator: Emulator) -> AsyncRelay:
        """The AsyncRelay of ``relay_emulator``."""
        return relay_emulator.relay

else:  # pragma: no cover

    @pytest.fixture
    def relay_emulator() -> Any:
        pytest.skip("relaycall's emulator fixtures need pytest-asyncio: pip install pytest-asyncio")

    @pytest.fixture
    def emulated_relay() -> Any:
        pytest.skip("relaycall's emulator fixtures need pytest-asyncio: pip install pytest-asyncio")
