"""benchmarks/trust.py runs, and its zero-figures hold at a small size (the full run is manual)."""

from __future__ import annotations

from benchmarks import trust


async def test_forged_callbacks_are_never_accepted():
    """Every kind of forgery the benchmark sends leaves every handle where it was."""
    figures = await trust.forged(calls=2, rounds=3)
    assert figures["forged_sent"] > 20
    assert figures["forged_accepted"] == 0


async def test_hostile_input_never_gets_a_server_error():
    """Hostile bodies, queries and headers: no 5xx and no exception from ingest()."""
    figures = await trust.hostile(rounds=20)
    assert (figures["hostile_5xx"], figures["hostile_exceptions"]) == (0, 0)
