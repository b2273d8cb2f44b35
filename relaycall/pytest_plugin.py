"""
pytest plugin (installed with relaycall): emulator fixtures for testing call flows offline.

Fixtures:
    relay_emulator: a started :class:`relaycall.testing.Emulator`.
    emulated_relay: its ready :class:`relaycall.AsyncRelay` (callbacks wired in).

The fixtures are async and need an asyncio pytest plugin (pytest-asyncio, in
``asyncio_mode = "auto"`` or with ``@pytest.mark.asyncio``). The ini option
``relaycall_time_scale`` (default 20) sets how fast the emulated clock runs.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from relaycall._session import AsyncRelay
    from relaycall.testing import Emulator

import importlib.util

_HAVE_ASYNCIO_PLUGIN = importlib.util.find_spec("pytest_asyncio") is not None


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addini(
        "relaycall_time_scale",
        "how much faster than real time relaycall's emulator fixtures run (default 20)",
        default="20",
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
        pytest.skip("relaycall's emulator fixtures need pytest-asyncio")

    @pytest.fixture
    def emulated_relay() -> Any:
        pytest.skip("relaycall's emulator fixtures need pytest-asyncio")
