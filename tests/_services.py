"""
Real components for the multi-worker tests and benchmarks: a ``redis-server`` and an
HAProxy round-robin balancer, each started on a free loopback port in a temporary
directory and stopped by its pid (never by name). They live in
examples/_local_services.py, which examples/run_multiworker.py uses too (an example
cannot import from tests/).

Binaries come from the Debian packages (``redis-server``, ``haproxy``); ``.ci/run``
installs them. :func:`need_binary` is the rule the tests follow when one is missing:
skip with a reason saying how to install it, or fail when the environment variable
``RELAYCALL_REQUIRE_SERVICES=1`` says the services must be there (as in CI).
"""

from __future__ import annotations

import os

from examples import _local_services
from examples._local_services import (
    HAPROXY_CONFIG,
    INSTALL_HINTS,
    HAProxy,
    RedisServer,
    Server,
    ServiceError,
)

__all__ = [
    "HAPROXY_CONFIG",
    "INSTALL_HINTS",
    "REQUIRE_SERVICES",
    "HAProxy",
    "RedisServer",
    "Server",
    "ServiceError",
    "find_binary",
    "need_binary",
    "services_required",
]

#: Set to 1 (``.ci/run`` does) and a missing binary fails the test instead of skipping it.
REQUIRE_SERVICES = "RELAYCALL_REQUIRE_SERVICES"

#: Where Debian puts daemons that a non-root PATH may not list (tests replace it).
_SBIN = _local_services.SBIN


def find_binary(name: str) -> str | None:
    """The path of *name* on PATH or in the sbin directories, or None."""
    return _local_services.find_binary(name, _SBIN)


def services_required() -> bool:
    """Whether a missing service binary is a failure here (``RELAYCALL_REQUIRE_SERVICES=1``)."""
    return os.environ.get(REQUIRE_SERVICES, "") == "1"


def need_binary(name: str) -> str:  # noqa: RET503 - pytest.skip and pytest.fail raise
    """
    The path of *name*; when it is missing, skip the test with a reason saying how to
    install it, or fail it when :data:`REQUIRE_SERVICES` is set to 1.
    """
    import pytest  # noqa: PLC0415 - tests only: benchmarks use find_binary, without pytest

    path = find_binary(name)
    if path is not None:
        return path
    reason = f"{name} not found: {INSTALL_HINTS.get(name, f'install {name}')}"
    if services_required():
        pytest.fail(f"{reason} ({REQUIRE_SERVICES}=1: the services must be installed)")
    pytest.skip(reason)
