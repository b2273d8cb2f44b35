"""
What ``import relaycall`` loads: only what a script that sends commands needs.

The receiver (and with it ``aiohttp.web``), the coordinator, inbound calls, the AI commands,
the commands of collect, detect, tap, stream, transcribe and fax, the SWML builder, the
emulator, ``relaycall.testing``, tenacity and cattrs are imported on first use; every
public name still resolves, by attribute and by ``from relaycall import X``.
Each check runs in a fresh interpreter: this process has imported everything already.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import textwrap
from typing import Any

CALL_ID = "7c0a2f31-0e3b-4f1e-9a44-4f3b0f7d9b10"

#: Modules `import relaycall` must not load (each is imported where it is first needed).
NOT_LOADED = (
    "aiohttp.web",
    "relaycall._receiver",
    "relaycall._coordinator",
    "relaycall._incoming",
    "relaycall._commands.ai",
    "relaycall._commands.operations",
    "relaycall.commands",
    "relaycall.swml",
    "relaycall.emulator",
    "relaycall.testing",
    "tenacity",
    "cattrs",
)


def fresh(code: str) -> Any:
    """Run *code* in a fresh interpreter; it prints one JSON value, returned here."""
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


async def fresh_against_server(code: str) -> Any:
    """
    As :func:`fresh`, for *code* that talks to this test's server: run without blocking, so
    this test's event loop serves the child's requests meanwhile.
    """
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-c", code, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    out, err = await asyncio.wait_for(child.communicate(), timeout=120)
    assert child.returncode == 0, err.decode()
    return json.loads(out.decode().strip().splitlines()[-1])


def test_import_relaycall_loads_none_of_the_optional_parts() -> None:
    """After ``import relaycall`` none of NOT_LOADED is in sys.modules; the session core is."""
    loaded = fresh(
        """
        import json, sys
        import relaycall
        print(json.dumps(sorted(sys.modules)))
        """
    )
    assert [name for name in NOT_LOADED if name in loaded] == []
    assert "relaycall._session" in loaded


def test_every_public_name_resolves_in_a_fresh_process() -> None:
    """
    Every name in ``__all__`` resolves as an attribute and through ``from relaycall import``,
    and ``dir(relaycall)`` lists each of them, before anything else was imported.
    """
    missing = fresh(
        """
        import json
        import relaycall
        listed = set(dir(relaycall))
        missing = [n for n in relaycall.__all__ if n not in listed]
        for name in relaycall.__all__:
            exec(f"from relaycall import {name}", {})
            getattr(relaycall, name)
        from relaycall import *
        print(json.dumps(missing))
        """
    )
    assert missing == []


def test_the_registry_completes_itself_when_asked_by_name() -> None:
    """
    ``commands.BY_NAME`` finds the AI commands (imported only then), and ``relay.send`` of a
    command named by string reaches its class, in a process that had not imported them.
    """
    found = fresh(
        """
        import json, sys
        from relaycall import commands
        before = "relaycall._commands.ai" in sys.modules
        cls = commands.BY_NAME["calling.ai_hold"]
        print(json.dumps([before, cls is commands.AIHold, cls.__module__]))
        """
    )
    assert found == [False, True, "relaycall._commands.ai"]


async def test_ai_commands_load_on_first_use_from_a_handle(server: Any) -> None:
    """
    In a process that never imported the AI commands, ``call.ai_unhold()`` imports them and
    posts the exact body.
    """
    code = f"""
import asyncio, json, sys
import relaycall

async def main():
    async with relaycall.AsyncRelay("p", "t", base_url={server.base_url!r}) as relay:
        before = "relaycall._commands.ai" in sys.modules
        await relay.call({CALL_ID!r}).ai_unhold()
        print(json.dumps(before))

asyncio.run(main())
"""
    assert await fresh_against_server(code) is False
    assert server.bodies == [{"command": "calling.ai_unhold", "id": CALL_ID, "params": {}}]


def test_a_receiver_loads_aiohttp_web() -> None:
    """The other side of the first test: asking for EventReceiver imports the receiver."""
    loaded = fresh(
        """
        import json, sys
        import relaycall
        relaycall.EventReceiver
        print(json.dumps(["aiohttp.web" in sys.modules, "relaycall._receiver" in sys.modules]))
        """
    )
    assert loaded == [True, True]


async def test_a_call_flow_never_imports_cattrs(server: Any) -> None:
    """
    A script that dials, plays, pauses, records and hangs up sends every body without
    importing cattrs (relaycall writes wire JSON itself; cattrs is for reading odd replies),
    and the bodies are the exact ones.
    """
    code = f"""
import asyncio, json, sys
import relaycall

async def main():
    async with relaycall.AsyncRelay("p", "t", base_url={server.base_url!r}) as relay:
        call = await relay.dial(
            to="+15557650000", from_="+15551230000", url="https://example.com/swml"
        )
        play = await call.play(relaycall.tts("hi"), control_id="p1")
        await play.pause()
        rec = await call.record(format="wav", control_id="r1")
        await rec.stop()
        await call.end()
        print(json.dumps("cattrs" in sys.modules))

asyncio.run(main())
"""
    assert await fresh_against_server(code) is False
    call_id = server.bodies[1]["id"]
    assert [b["command"] for b in server.bodies] == [
        "dial",
        "calling.play",
        "calling.play.pause",
        "calling.record",
        "calling.record.stop",
        "calling.end",
    ]
    assert server.bodies[1] == {
        "command": "calling.play",
        "id": call_id,
        "params": {"control_id": "p1", "play": [{"type": "tts", "params": {"text": "hi"}}]},
    }
    assert server.bodies[3] == {
        "command": "calling.record",
        "id": call_id,
        "params": {"control_id": "r1", "record": {"audio": {"format": "wav"}}},
    }
