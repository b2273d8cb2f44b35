"""
Registration by declaration: a new command is its class plus its emulated behaviour.

A command class joins ``relaycall.commands.BY_NAME`` by being defined; an
emulated operation joins the platform's dispatch by declaring the command that
starts it and, with ``@follow_up``, the commands that act on it. These tests
add a command pair and an operation kind the way new code would, then use
them over HTTP through ``relaycall.testing.Emulator``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import aiohttp
import attrs
import pytest

import relaycall
from relaycall import _validate as v
from relaycall._commands._base import (
    Command,
    FollowUp,
    call_id_field,
    command,
    new_control_id_field,
    opt,
    req,
)
from relaycall.commands import BY_NAME, Idempotency
from relaycall.emulator import API_PATH, EmulatedPlatform
from relaycall.emulator._ops import OPERATIONS, RUNNING, Operation, follow_up
from relaycall.testing import Emulator
from tests.conftest import basic_auth

DIAL = {"from_": "+15551230000", "to": "+15557650000", "url": "https://example.test/swml"}


@pytest.fixture
def declarations() -> Iterator[None]:
    """The command registry and the emulator's operation lists, restored after the test."""
    saved = dict(BY_NAME), list(OPERATIONS), list(RUNNING)
    yield
    BY_NAME.clear()
    BY_NAME.update(saved[0])
    OPERATIONS[:] = saved[1]
    RUNNING[:] = saved[2]


def _chime_commands() -> tuple[type[Command[Any]], type[Command[Any]]]:
    """A start command ``calling.chime`` and its follow-up ``calling.chime.louder``."""

    @command("calling.chime", label="chime", idempotency=Idempotency.START)
    @attrs.frozen(kw_only=True)
    class Chime(Command[Any]):
        call_id: str = call_id_field()
        control_id: str = new_control_id_field()
        status_url: str | None = opt(v.http_url())

    @command("calling.chime.louder", label="chime.louder", idempotency=Idempotency.SAFE)
    @attrs.frozen(kw_only=True)
    class ChimeLouder(FollowUp[Any]):
        by: int = req(v.integer(1))

    return Chime, ChimeLouder


@pytest.mark.usefixtures("declarations")
async def test_a_new_command_and_operation_kind_work_from_their_declarations() -> None:
    """Declared classes alone make the emulator accept, validate and dispatch both commands."""
    chime, chime_louder = _chime_commands()

    class Chiming(Operation):
        kind = "chime"
        event_type = "calling.call.chime"
        started_by = chime

        def begin(self) -> None:
            self.volume = 0
            self.state = "chiming"

        @follow_up(chime_louder, "by")
        def louder(self, by: int) -> None:
            self.volume += by

        def stop(self) -> None:
            self.finish()

    async with Emulator(time_scale=50) as emu:
        call = await emu.relay.dial(**DIAL)
        await call.wait_for("answered", timeout=5)
        await emu.relay.send(chime(call_id=call.id, control_id="c1"))
        await emu.relay.send(chime_louder(call_id=call.id, control_id="c1", by=3))
        op = emu.call(call).ops[("chime", "c1")]
        assert isinstance(op, Chiming)
        assert op.volume == 3
        with pytest.raises(relaycall.NotFoundError):
            await emu.relay.send(chime_louder(call_id=call.id, control_id="c2", by=1))
        with pytest.raises(relaycall.ConflictError):
            await emu.relay.send(chime(call_id=call.id, control_id="c1"))
        # A body the client would not build is read by the same class, and refused.
        body = {"command": "calling.chime.louder", "id": call.id,
                "params": {"control_id": "c1", "by": 0}}  # fmt: skip
        auth = basic_auth(emu.config.project_id, emu.config.token)
        async with (
            aiohttp.ClientSession() as http,
            http.post(emu.base_url + API_PATH, json=body, headers=auth) as resp,
        ):
            assert resp.status == 422
            assert (await resp.json())["errors"][0]["attribute"] == "by"


@pytest.mark.usefixtures("declarations")
def test_a_command_without_emulated_behaviour_fails_when_the_platform_is_built() -> None:
    """The emulator refuses to start rather than answer a registered command with a 500."""
    _chime_commands()
    with pytest.raises(
        TypeError, match=r"no emulated behaviour for calling\.chime, calling\.chime\.louder"
    ):
        EmulatedPlatform()


@pytest.mark.usefixtures("declarations")
def test_two_behaviours_for_one_command_fail_when_the_platform_is_built() -> None:
    """A command is carried out one way: a second operation started by it is an error."""

    class SecondPlay(Operation):
        kind = "second_play"
        event_type = "calling.call.play"
        started_by = BY_NAME["calling.play"]

    with pytest.raises(TypeError, match=r"calling\.play has two emulated behaviours"):
        EmulatedPlatform()


def test_a_follow_up_naming_a_field_its_command_lacks_fails_where_declared() -> None:
    """A misspelt field is caught when the operation class is defined, not when called."""
    with pytest.raises(TypeError, match="PlayVolume has no field 'volum'"):
        follow_up(BY_NAME["calling.play.volume"], "volum")
