"""relaycall.testing, the pytest plugin fixtures, and the demo: handles + events on the emulator."""

from __future__ import annotations

import io
import subprocess
import sys
import wave

import aiohttp
import pytest

import relaycall
from relaycall import commands, tts
from relaycall._demo import run as run_demo
from relaycall.testing import Emulator, Scenario

TO = "+15557650000"
DIAL = {"from_": "+15551230000", "to": TO, "url": "https://example.test/swml"}


async def test_emulator_context_wires_relay_and_receiver():
    """Emulator() gives a relay whose callbacks come back signed and routed."""
    async with Emulator(time_scale=50, scenarios={TO: Scenario(dtmf="42#")}) as emu:
        assert emu.base_url.startswith("http://127.0.0.1:")
        call = await emu.relay.dial(**DIAL)
        assert await call.wait_for("answered", timeout=5) == "answered"
        col = await call.collect(
            digits=commands.CollectDigits(max=4, terminators="#"), start_input_timers=True
        )
        result = await col.wait(timeout=5)
        assert (result.digits, result.terminator) == ("42", "#")
        await call.end()
        assert (await call.wait(timeout=5)).end_reason == "hangup"
        await emu.idle()
        assert [r.command for r in emu.requests] == ["dial", "calling.collect", "calling.end"]
        assert all(c.outcome == "delivered" for c in emu.callbacks)
        assert emu.receiver.stats.rejected_auth == 0
        assert emu.receiver.stats.routed == len(emu.callbacks)


async def test_busy_scenario_ends_the_call(relay_emulator):
    """A busy destination: wait_for('answered') returns 'ended', end_reason busy."""
    relay_emulator.scenarios[TO] = Scenario(answer="busy")
    call = await relay_emulator.relay.dial(**DIAL)
    assert await call.wait_for("answered", timeout=5) == "ended"
    assert call.end_reason == "busy"


async def test_plugin_fixtures_play_and_record(relay_emulator, emulated_relay):
    """The plugin's fixtures: play runs to finished, a recording's URL serves a WAV."""
    assert emulated_relay is relay_emulator.relay
    call = await emulated_relay.dial(**DIAL)
    await call.wait_for("answered", timeout=5)
    pb = await call.play(relaycall.silence(2))
    assert (await pb.wait(timeout=5)).state == "finished"
    rec = await call.record(initial_timeout=0, end_silence_timeout=0, max_length=1)
    result = await rec.wait(timeout=5)
    assert result.state == "finished"
    async with aiohttp.ClientSession() as http, http.get(result.url) as resp:
        data = await resp.read()
    with wave.open(io.BytesIO(data)) as w:
        assert w.getnframes() / w.getframerate() == pytest.approx(1.0, abs=0.05)


async def test_machine_detection_and_ending_resolves_operations(relay_emulator):
    """Machine detection says MACHINE; ending the call resolves a running playback."""
    relay_emulator.scenarios[TO] = Scenario(answer="machine")
    call = await relay_emulator.relay.dial(**DIAL)
    await call.wait_for("answered", timeout=5)
    det = await call.detect("machine")
    assert (await det.wait(timeout=5)).result == "MACHINE"
    pb = await call.play(relaycall.ringtone("us"))
    relay_emulator.hangup(call)
    result = await pb.wait(timeout=5)
    assert result.state == "finished"
    assert (await call.wait(timeout=5)).end_reason == "hangup"


async def test_emulator_refusals_reach_the_client_typed(relay_emulator):
    """A 404 for an unknown call and a 409 for a duplicate control id, as typed errors."""
    ghost = relay_emulator.relay.call("0f1c1c1e-1111-4222-8333-944444444444")
    with pytest.raises(relaycall.NotFoundError):
        await ghost.disconnect()
    call = await relay_emulator.relay.dial(**DIAL)
    await call.wait_for("answered", timeout=5)
    await call.transcribe()
    with pytest.raises(relaycall.ConflictError):
        await relay_emulator.relay.send(commands.Transcribe(call_id=call.id))


async def test_demo_runs(capsys):
    """The README's main job runs and exits 0."""
    assert await run_demo(time_scale=20) == 0
    out = capsys.readouterr().out
    assert "-> dial" in out
    assert "<- call.state                   ended" in out
    assert "menu choice   1" in out


def test_cli_demo_subprocess():
    """`relaycall demo` as a process exits 0 (the command a new user runs)."""
    proc = subprocess.run(
        [sys.executable, "-m", "relaycall", "demo", "--time-scale", "20"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert "summary" in proc.stdout


def test_cli_version():
    """`relaycall version` prints the version."""
    proc = subprocess.run(
        [sys.executable, "-m", "relaycall", "version"], capture_output=True, text=True, check=True
    )
    assert proc.stdout.strip() == relaycall.__version__


def test_play_helper_is_exported():
    """tts is importable from the top level (used throughout the docs)."""
    assert tts("x").text == "x"
