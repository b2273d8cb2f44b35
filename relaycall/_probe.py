"""
Bounded waits: a call that has been quiet for a while is asked whether it still exists.

Status callbacks are best-effort (reference §9.1: they "may come late, be
retried, or never come"). When the platform drops a call's final ``ended``
callback, nothing else would ever tell this process the call is over, and
``await call.wait()`` would wait forever. So while somebody waits on a call
(``wait()``, ``wait_for()``, ``events()``, or ``wait()`` on one of
its operations) and nothing has been heard of it (no callback, no probe
reply) for ``probe_quiet_calls_after`` seconds, it is sent a request that
does nothing to a live call:

    {"command": "calling.user_event", "id": <call id>,
     "params": {"event": {"type": "relaycall.probe"}}}

Why that one. The reference has no read of a call. Every candidate was
weighed on two counts: a 404 to it must mean the *call* is unknown, and it
must leave a live call as it was.

- ``calling.user_event`` names nothing but the call (no control_id, no
  sidecar), so its 404 can only be the call's, as for every call command
  here (``Call._gone``); on a live call it changes neither the call's state,
  its media nor its SWML: it only hands a custom event to a client connected
  to the call, and this one says what it is. Its 200 reply is the call leg,
  whose status is taken in (a ``completed`` leg ends the call here too).
- ``calling.ai_sidecar.status`` is a pure read, but it names the sidecar: on a
  live call without one the emulator answers 404, as it does for any unknown
  operation (``calling.play.stop`` with a made-up control_id likewise), so
  its 404 cannot tell a live call from a gone one.
- ``calling.denoise.stop`` names only the call, but switches off noise
  reduction that SWML or another process turned on: an effect on audio.
- ``ai_unhold``, ``disconnect``, ``update``: each changes a call in some state.

Cost: one request per waited-on quiet call per interval, at most
``MAX_PROBES_PER_SECOND`` in all (beyond that the interval stretches), never
retried, through the session's in-flight and per-second caps. One task per
session, and only while somebody waits on a call: no task or timer per
handle. A 404 resolves the call as ended with reason ``gone``; any other
answer, or a failure, leaves it as it was until the next probe.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, Any

from relaycall._commands.call import UserEvent
from relaycall._config import USE_DEFAULT
from relaycall._idempotency import Idempotency
from relaycall._models import check_leg
from relaycall.errors import NotFoundError, RelayError

if TYPE_CHECKING:
    from relaycall._handles.call import Call
    from relaycall._session import AsyncRelay

__all__ = ["MAX_PROBES_PER_SECOND", "PROBE_EVENT", "QuietCalls"]

logger = logging.getLogger("relaycall")

#: The user event a probe fires: it says what it is to anyone who sees it.
PROBE_EVENT: dict[str, Any] = {"type": "relaycall.probe"}
#: Probes in flight at once, and per second across the session.
_BATCH = 8
MAX_PROBES_PER_SECOND = 50.0


class QuietCalls:
    """The calls somebody waits on, when each was last heard of, and the one task probing them."""

    __slots__ = ("_after", "_relay", "_task", "heard")

    def __init__(self, relay: AsyncRelay, after: float) -> None:
        self._relay = relay
        self._after = after
        #: Call -> time.monotonic() it was last heard of. Calls leave when
        #: nobody waits on them any more (checked by the task).
        self.heard: dict[Call, float] = {}
        self._task: asyncio.Task[None] | None = None

    def watch(self, call: Call) -> None:
        """Somebody waits on *call*: probe it once it has been quiet for the interval."""
        heard = self.heard
        if call not in heard:
            heard[call] = time.monotonic()
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def close(self) -> None:
        task, self._task = self._task, None
        self.heard.clear()
        if task is not None and task is not asyncio.current_task():
            task.cancel()
            # asyncio.wait, not await task: the task's own cancellation is not ours.
            await asyncio.wait({task})

    async def _run(self) -> None:
        heard, after = self.heard, self._after
        try:
            while heard:
                now = time.monotonic()
                due: list[Call] = []
                wake = now + after
                for call, at in list(heard.items()):
                    if not _waited_on(call):
                        del heard[call]
                    elif call._state not in _PROBED_STATES:
                        # The reference does not say what a command on a call not yet
                        # answered gets: a 404 there need not mean it is over.
                        continue
                    elif at + after <= now:
                        due.append(call)
                    else:
                        wake = min(wake, at + after)
                if not due:
                    if heard:
                        # New watches are due later than this; heard times only move on.
                        await asyncio.sleep(wake - now)
                    continue
                due.sort(key=lambda c: heard.get(c, now))
                for i in range(0, len(due), _BATCH):
                    batch = due[i : i + _BATCH]
                    began = time.monotonic()
                    await asyncio.gather(*(self._probe(call) for call in batch))
                    pause = len(batch) / MAX_PROBES_PER_SECOND - (time.monotonic() - began)
                    if pause > 0:
                        await asyncio.sleep(pause)
        except Exception:  # a bug here must not pass silently, nor kill the session
            logger.exception("relaycall: the quiet-call probe failed")
        finally:
            if self._task is asyncio.current_task():
                self._task = None

    async def _probe(self, call: Call) -> None:
        """Ask the server about *call*; a 404 ends it here."""
        if call._result is not None:
            return
        relay = self._relay
        command = UserEvent(call_id=call.id, event=PROBE_EVENT)
        try:
            # SAFE and never retried: a probe lost or answered twice does no harm.
            leg = await relay._request(
                command.command_name, command.to_wire(), Idempotency.SAFE, USE_DEFAULT, None,
                check_leg,
            )  # fmt: skip
        except NotFoundError:
            logger.info(
                "call %s is unknown to the server (404 to a liveness probe after %.0f s "
                "without news): it is over; its waits end with reason 'gone'",
                call.id,
                self._after,
            )
            call._mark_ended(call.end_reason, reason="gone")
            return
        except RelayError as exc:
            logger.debug("liveness probe of call %s failed (%s); trying again later", call.id, exc)
        else:
            call._observe_leg(leg)
        if call in self.heard:
            self.heard[call] = time.monotonic()


#: States in which a probe's 404 is taken to mean the call is over.
_PROBED_STATES = frozenset({"answered", "ending"})


def _waited_on(call: Call) -> bool:
    """Whether anything still waits on *call* or one of its operations."""
    if call._result is not None:
        return False  # ended, or the session closed: every wait has its answer
    if call._waiters or call._listeners:
        return True
    return any(op._waiters for op in call._ops.values())
