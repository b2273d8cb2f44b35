"""
The benchmarks, at a tiny size, so they do not rot. (They never run in the suite otherwise.)

One run of every benchmark (server and client processes, the emulator, the
receivers, the load generator) takes a few seconds; the SDK side is skipped
when ``signalwire`` is not importable, the plot when matplotlib is missing.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

import pytest

import relaycall
from benchmarks import throughput
from benchmarks.__main__ import run
from benchmarks._server import PROJECT, TOKEN

pytestmark = pytest.mark.timeout(180)


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    path = tmp_path_factory.mktemp("bench") / "results.json"
    out = run(["--tiny", "--no-plot", "--json", str(path)])
    assert json.loads(path.read_text())["sizes"]["name"] == "tiny"
    return out


def test_throughput_runs_every_side(results: dict[str, Any]) -> None:
    """
    The tiny throughput run measures relaycall, the aiohttp baseline (and the SDK when installed),
    each with commands, a rate and CPU per command, and reports its goals.
    """
    res = results["throughput"]
    want = ["relaycall", "aiohttp"]
    if importlib.util.find_spec("signalwire") is not None:
        want.append("sdk")
    assert res["sides"] == want
    for per_side in res["runs"].values():
        for side in want:
            (fig,) = per_side[side]
            assert fig["commands"] > 0
            assert fig["commands_per_s"] > 0
            assert fig["cpu_us_per_command"] > 0
    assert "Goals at concurrency" in throughput.report(res)


def test_short_runs_measure_both_sides_in_fresh_processes(results: dict[str, Any]) -> None:
    """
    The tiny short run measures relaycall and the aiohttp baseline at each size, one fresh process
    per run, and reports the short-run goals.
    """
    res = results["short"]
    assert res["sides"] == ["relaycall", "aiohttp"]
    assert list(res["runs"]) == ["4"]
    for side in ("relaycall", "aiohttp"):
        (fig,) = res["runs"]["4"][side]
        assert fig["commands"] == 4 * throughput.COMMANDS_PER_FLOW
        assert fig["commands_per_s"] > 0
        assert fig["cpu_us_per_command"] > 0
    text = throughput.report_short(res)
    assert "4 flows: throughput" in text
    assert "no warm-up" in text


def test_scale_and_memory_run(results: dict[str, Any]) -> None:
    """
    The scale and memory runs complete flows and report peak RSS, calls held and bytes per call.
    """
    for runs in results["scale"]["runs"].values():
        assert runs[0]["flows"] > 0
        assert runs[0]["peak_rss_mb"] > 0
    assert results["memory"]["calls"] > 0
    assert results["memory"]["bytes_per_call"] > 0


def test_ingest_runs_and_routes_every_callback(results: dict[str, Any]) -> None:
    """
    The ingest run posts callbacks at a positive rate; relaycall's receivers refuse none and route
    every one; the in-process figures are positive.
    """
    res = results["ingest"]
    for name in res["names"]:
        (fig,) = res["runs"][name]
        assert fig["events_per_s"] > 0
        if name.startswith("relaycall"):
            stats = fig["stats"]
            assert stats["rejected_auth"] == stats["rejected_body"] == 0
            assert stats["routed"] == stats["received"]
    assert all(v and v[0] > 0 for v in res["inprocess"].values())


def test_emulator_runs_or_says_why_not(results: dict[str, Any]) -> None:
    """The emulator run measures commands with every call live, or says why it could not run."""
    res = results["emulator"]
    if res["available"]:
        assert res["rounds"][0]["commands_per_s"] > 0
        assert res["live_calls"] == res["calls"]
    else:
        assert res["why"]


def test_coldstart_runs_both_sides(results: dict[str, Any]) -> None:
    """
    The cold-start run times relaycall and the bare aiohttp script in fresh interpreters (each
    completing its four commands), their imports alone, and names relaycall's import offenders.
    """
    from benchmarks import coldstart  # noqa: PLC0415

    res = results["coldstart"]
    assert res["sides"] == ["relaycall", "aiohttp"]
    for side in res["sides"]:
        (fig,) = res["runs"][side]
        assert fig["wall_ms"] > fig["work_ms"] > 0
        assert fig["cpu_ms"] > 0
        assert res["imports"][side][0] > 0
    # The bare script never imports relaycall, so it loads fewer modules.
    assert res["runs"]["aiohttp"][0]["modules"] < res["runs"]["relaycall"][0]["modules"]
    assert "relaycall" in res["importtime"]["relaycall"]
    text = coldstart.report(res)
    assert "Goals (relaycall)" in text
    assert "-X importtime" in text


def test_coldstart_counts_instructions_under_valgrind() -> None:
    """The instruction count of a fresh interpreter is read off valgrind's summary."""
    from benchmarks import coldstart  # noqa: PLC0415

    if not coldstart.valgrind_available():
        pytest.skip("valgrind is not installed")
    root = Path(__file__).resolve().parent.parent
    empty = coldstart.instructions("pass", root)
    assert empty > 1_000_000
    assert coldstart.instructions("import json; json.dumps(list(range(100000)))", root) > empty


def test_plot(results: dict[str, Any], tmp_path: Path) -> None:
    """Plotting the throughput results writes a PNG."""
    pytest.importorskip("matplotlib")
    from benchmarks.plot import plot  # noqa: PLC0415

    path = plot(results["throughput"], tmp_path / "throughput.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


async def test_bare_client_sends_relaycalls_bytes(server) -> None:
    """The aiohttp baseline posts exactly the bodies and headers relaycall's handles post."""
    async with relaycall.AsyncRelay(PROJECT, TOKEN, base_url=server.base_url) as relay:
        call, pb, rec = await throughput.relaycall_flow(relay)
    seen = server.seen
    cid, play, rec_id = call.id, pb.control_id, rec.control_id
    assert [s.raw for s in seen] == [
        throughput.dial_body(),
        throughput.play_body(cid, play),
        throughput.follow_up_body("calling.play.pause", cid, play),
        throughput.follow_up_body("calling.play.resume", cid, play),
        throughput.follow_up_body("calling.play.stop", cid, play),
        throughput.record_body(cid, rec_id),
        throughput.follow_up_body("calling.record.stop", cid, rec_id),
        throughput.end_body(cid),
    ]
    sent = {k.lower(): v for k, v in seen[0].headers.items()}
    for name, value in throughput.relaycall_headers().items():
        assert sent[name.lower()] == value


async def test_tuned_baseline_sends_what_the_bare_one_sends(server) -> None:
    """The tuned aiohttp loop differs from the bare one in aiohttp's own work, not the wire."""
    headers = throughput.relaycall_headers()
    sent = []
    for tuned in (False, True):
        await throughput._aiohttp_flows(server.base_url, 1, 1, headers, tuned=tuned)
        sent.append([(s.headers, s.json["command"]) for s in server.seen])
        server.seen.clear()
    assert len(sent[0]) == 16
    assert sent[0] == sent[1]


def test_compare_runs_against_a_revision() -> None:
    """benchmarks.compare checks a revision out beside this tree and runs all four sides."""
    root = Path(__file__).resolve().parent.parent
    if not (root / ".git").exists():
        pytest.skip("not a git checkout")
    from benchmarks import compare  # noqa: PLC0415

    runs = compare.compare("HEAD", rounds=1, concurrency=2, flows=2)
    assert list(runs) == ["relaycall HEAD", "relaycall (this tree)", "aiohttp", "aiohttp, tuned"]
    assert all(r[0]["commands"] == 16 for r in runs.values())
    assert "every draw" in compare.report(runs, 2)


def test_compare_short_runs() -> None:
    """benchmarks.compare --short runs every side without a warm-up, and says so."""
    root = Path(__file__).resolve().parent.parent
    if not (root / ".git").exists():
        pytest.skip("not a git checkout")
    from benchmarks import compare  # noqa: PLC0415

    runs = compare.compare("HEAD", rounds=1, concurrency=2, flows=3, short=True)
    assert all(r[0]["commands"] == 24 for r in runs.values())
    assert "3 flows, short runs" in compare.report(runs, 2, short=True)


def test_compare_coldstart_runs_against_a_revision() -> None:
    """benchmarks.compare --coldstart times relaycall at a revision, in this tree, bare aiohttp."""
    root = Path(__file__).resolve().parent.parent
    if not (root / ".git").exists():
        pytest.skip("not a git checkout")
    from benchmarks import coldstart, compare  # noqa: PLC0415

    res = compare.compare_coldstart("HEAD", rounds=1)
    assert res["sides"] == ["relaycall HEAD", "relaycall (this tree)", "aiohttp"]
    assert all(r[0]["wall_ms"] > 0 for r in res["runs"].values())
    assert list(res["importtime"]) == ["relaycall HEAD", "relaycall (this tree)"]
    assert "Goals (relaycall HEAD)" in coldstart.report(res)
