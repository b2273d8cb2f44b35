"""
Routing: which handle a status callback is for, and handing it over.

The :class:`Router` is the AsyncRelay's registry of what callbacks can reach:
its calls by id (held weakly), through each call its operations by control id,
and the dials sent but not answered yet, whose callbacks may beat their reply.
The receiver authenticates and parses a callback, then asks the Router where
it goes (:meth:`Router.find`: two dict lookups, so the cost does not grow with
the number of live calls), checks the callback's URL token against that
:data:`Route`, and has the Router deliver it (:meth:`Router.deliver`), counting
the :class:`Outcome`. The receiver reads nothing else of the session or the
handles.

Everything that makes a handle reachable goes through here: a dial's reply or
``relay.call(call_id)`` (:meth:`Router.add`), the binding of a dial's token to
the call it placed (:meth:`Router.bind_dial`, :meth:`Router.dialed`). A call
that reaches the application another way (an inbound call's SWML fetch) is
made reachable with :meth:`Router.add` too. A callback for a call not held
here (:data:`NOWHERE`, delivered as :data:`UNKNOWN_CALL`) is, with a
:attr:`Router.coordinator` (relaycall/_coordinator.py), handed to the process
holding it: every call added here is recorded as this worker's in Redis, and
the receiver forwards an authentic callback it finds NOWHERE to the owner,
which checks its token against its own route, as only it knows the call's
dial nonce and its operations' starts. find() and deliver() never look at
the coordinator: one process pays nothing for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeAlias

from relaycall._events import CallStateEvent, Event

if TYPE_CHECKING:
    from relaycall._coordinator import RedisCoordinator
    from relaycall._handles._base import Handle, Operation
    from relaycall._handles.call import Call
    from relaycall._incoming import Fetch, IncomingCall
    from relaycall._session import AsyncRelay

__all__ = ["NOWHERE", "Outcome", "PendingDial", "Route", "Router"]

logger = logging.getLogger("relaycall")

#: How many call id -> dial token nonce pairs a session keeps (about 100 bytes each).
NONCES_KEPT = 65536


#: Where an event goes, and what its URL token is checked against:
#: ``(call, operation, nonce, generation)``. *call* is the call it names and
#: *operation* the operation on it it is about, each when this process holds
#: one; *nonce*, that of the dial that placed *call* (its dial token must carry
#: it), None when it was not dialed here with a receiver's status_url;
#: *generation*, the start of *operation* its own token must name, None when
#: it was not started here with a receiver's status_url. A plain tuple: one is
#: built per callback, and a NamedTuple costs four times as much to build.
Route: TypeAlias = "tuple[Call | None, Operation[Any] | None, str | None, str | None]"

#: The route of an event naming no call this process holds.
NOWHERE: Route = (None, None, None, None)


class Outcome(enum.Enum):
    """What delivering an event did: the :class:`relaycall.ReceiverStats` counter(s) it adds to."""

    #: Its handle took it (or, with no operation named, the call published it).
    ROUTED = "routed"
    #: Its operation was already final: acknowledged, changing nothing.
    DUPLICATE = "duplicate"
    #: A call-state event for a call already ended (a late ``ended`` after this
    #: process's own end(), say): it reached the call (routed) and changed
    #: nothing (a duplicate), and is counted as both.
    CALL_DUPLICATE = "call_duplicate"
    #: No call this process holds.
    UNKNOWN_CALL = "unknown_call"
    #: A control id naming no operation this process holds on the call (a
    #: finished operation has left the registry).
    UNKNOWN_OPERATION = "unknown_operation"


ROUTED, DUPLICATE, CALL_DUPLICATE = Outcome.ROUTED, Outcome.DUPLICATE, Outcome.CALL_DUPLICATE
UNKNOWN_CALL, UNKNOWN_OPERATION = Outcome.UNKNOWN_CALL, Outcome.UNKNOWN_OPERATION


def _uncounted(outcome: Outcome) -> None:
    """Where outcomes go while no receiver counts them."""


class Router:
    """
    The handles callbacks can reach, for one AsyncRelay.

    *count* is told the outcome of each event the Router delivers by itself
    (callbacks held for a dial, applied when its reply comes); the receiver
    bound to the session counts them in its stats.
    """

    __slots__ = ("calls", "coordinator", "count", "dials", "nonces", "session")

    def __init__(self) -> None:
        # Weak: a Call nobody holds any more (and its operations) is collected.
        # Ended calls also drop their operations explicitly, so memory does not
        # grow with calls that are over.
        self.calls: weakref.WeakValueDictionary[str, Call] = weakref.WeakValueDictionary()
        #: Dials sent with a receiver's status_url and not answered yet, by token nonce.
        self.dials: dict[str, PendingDial] = {}
        #: The dial token nonce of each call dialed here (the newest NONCES_KEPT):
        #: a Call attached again by id accepts its dial's callbacks.
        self.nonces: dict[str, str] = {}
        self.count: Callable[[Outcome], None] = _uncounted
        #: The AsyncRelay owning this Router: what an inbound call's handle sends with.
        self.session: AsyncRelay | None = None
        #: The RedisCoordinator told of each call this process holds, when several
        #: workers share the callbacks (None: one process, and no cost).
        self.coordinator: RedisCoordinator | None = None

    # --- the handles -----------------------------------------------------------------------

    def get(self, call_id: str) -> Call | None:
        """The Call held for *call_id*, if any (raises TypeError for an unhashable id)."""
        return self.calls.get(call_id)

    def add(self, call: Call) -> None:
        """
        Make *call* reachable by its callbacks (none is held for its id yet).

        A call this session dialed and then let go of gets its dial's nonce
        back: its dial's callbacks carry that dial's token, which binds only to it.
        """
        call._nonce = self.nonces.get(call.id)
        self.calls[call.id] = call
        if self.coordinator is not None:
            self.coordinator.own(call.id)

    def incoming(self, fetch: Fetch, *, own: bool = True) -> IncomingCall:
        """
        The :class:`IncomingCall` a SWML fetch is about, made reachable by its callbacks.

        The call held for its id when there is one (a call this session
        dialed with ``url=receiver.swml_url`` is fetched for once answered: its
        handle becomes the IncomingCall, never a second handle for one call),
        else a new one, added as every reachable call is (:meth:`add`) unless
        *own* is False: another live worker owns the call, so its callbacks go
        there, and the new handle here can send commands but hears none.
        """
        from relaycall._handles.call import Call  # noqa: PLC0415 - a cycle at import time
        from relaycall._incoming import IncomingCall  # noqa: PLC0415

        session = self.session
        if session is None:
            raise RuntimeError("this Router belongs to no AsyncRelay")
        call = self.calls.get(fetch.call_id)
        if call is None:
            call = IncomingCall(session, fetch.call_id)
            call._incoming = fetch
            if own:
                self.add(call)
            # else: another worker owns the call, and its callbacks go there (forwarded
            # from here): this handle can send commands but hears no callback.
        elif not isinstance(call, IncomingCall):
            if type(call) is not Call:
                raise RuntimeError(f"cannot make {call!r} an IncomingCall")
            call._incoming = fetch
            call.__class__ = IncomingCall  # same slots: the handle the dial returned
            assert isinstance(call, IncomingCall)
        else:
            call._incoming = fetch
        if fetch.call_state in ("created", "ringing", "answered"):
            call._advance(fetch.call_state)
        return call

    def close(self) -> None:
        """The session closed: dials waiting for callbacks give up, waits on calls end."""
        for pending in list(self.dials.values()):
            pending.wake()
        for call in list(self.calls.values()):
            call._session_closed()

    # --- dials in flight -----------------------------------------------------------------

    def open_dial(self, nonce: str) -> PendingDial:
        """A dial carrying the token with *nonce* is about to be sent: hold its early callbacks."""
        pending = self.dials[nonce] = PendingDial()
        return pending

    def close_dial(self, nonce: str) -> None:
        """The dial with *nonce* is answered, or failed: its callbacks are no longer held."""
        self.dials.pop(nonce, None)

    def dial_pending(self, nonce: str) -> bool:
        """Whether the dial with *nonce* is sent and not answered yet."""
        return nonce in self.dials

    def hold(self, nonce: str, event: Event) -> None:
        """Keep a callback that beat the reply of the dial with *nonce*."""
        pending = self.dials.get(nonce)
        if pending is not None and not pending.hold(event):
            logger.warning(
                "dropped a callback for a dial in flight: %d held already", pending.LIMIT
            )

    def bound_elsewhere(self, call_id: str, nonce: str) -> bool:
        """Whether the Call held for *call_id* was placed by another dial than *nonce*'s."""
        existing = self.calls.get(call_id)
        return existing is not None and existing._nonce not in (None, nonce)

    def bind_dial(self, call: Call, nonce: str, pending: PendingDial) -> None:
        """
        *call* is the one the dial with *nonce* placed: bind them, and apply its held callbacks.

        They are applied in the order they came, before anything else can reach
        the call (the caller does not await between adding the call and this).
        """
        call._nonce = nonce
        self._remember(call.id, nonce)
        for event in pending.events:
            if event.call_id == call.id:
                self.count(self.deliver(event, self.find(event)))
            else:
                logger.warning(
                    "a callback of this dial names call %s, but the dial placed %s: "
                    "an earlier attempt may have placed that call too",
                    event.call_id,
                    call.id,
                )
        pending.events.clear()

    def dialed(self, call_id: str, nonce: str) -> None:
        """A dial sent by ``send()`` placed *call_id*: a Call for it takes that dial's callbacks."""
        self._remember(call_id, nonce)
        existing = self.calls.get(call_id)
        if existing is not None and existing._nonce is None:
            existing._nonce = nonce

    def _remember(self, call_id: str, nonce: str) -> None:
        nonces = self.nonces
        nonces[call_id] = nonce
        if len(nonces) > NONCES_KEPT:
            del nonces[next(iter(nonces))]

    # --- routing ---------------------------------------------------------------------------

    @staticmethod
    def known_token(handle: Handle[Any]) -> str | None:
        """The status_url token last found good for a callback routed to *handle*, if any."""
        return handle._token

    @staticmethod
    def keep_token(handle: Handle[Any], token: str) -> None:
        """Keep *token*, found good for a callback routed to *handle* (see EventReceiver)."""
        handle._token = token

    def find(self, event: Event) -> Route:
        """Where *event* goes: its call and operation, if held here, and their token bindings."""
        call_id = event.call_id
        call = self.calls.get(call_id) if call_id else None
        if call is None:
            return NOWHERE
        ops = call._ops
        control_id = event.control_id
        if control_id is not None:
            op = ops.get(control_id)
        elif (kind := event.operation_kind) is None:
            op = None
        else:
            # No control id: an operation the API runs once per call, kept under its kind.
            op = ops.get(kind)
            if op is None and kind == "transcribe":
                # A transcript names no control id either: it is for the call's
                # transcription (one runs per call), kept under its control id.
                op = next((o for o in ops.values() if o.kind == kind), None)
        return call, op, call._nonce, op._generation if op is not None else None

    def deliver(self, event: Event, route: Route) -> Outcome:
        """Hand *event* to the handle *route* names; say what that did."""
        call, op, _, _ = route
        if call is None:
            return UNKNOWN_CALL
        if isinstance(event, CallStateEvent) or (
            event.event_type is None and "call_state" in event.params and event.control_id is None
        ):
            call._publish(event, None)
            return ROUTED if call._apply(event) else CALL_DUPLICATE
        call._publish(event, op)
        if op is None:
            # With a control id, an operation not held here; without, call-level
            # news (denoise, refer), which is only published.
            return UNKNOWN_OPERATION if event.control_id is not None else ROUTED
        return ROUTED if op._apply(event) else DUPLICATE


class PendingDial:
    """A dial sent but not yet answered: the callbacks that beat its reply, in order."""

    __slots__ = ("_heard", "events")

    def __init__(self) -> None:
        self.events: list[Any] = []
        self._heard: asyncio.Event | None = None

    #: More callbacks than a call makes before its dial is answered: a bound, so
    #: whoever holds the URL of a dial in flight cannot grow memory without end.
    LIMIT = 64

    def hold(self, event: Any) -> bool:
        if len(self.events) >= self.LIMIT:
            return False
        self.events.append(event)
        if self._heard is not None:
            self._heard.set()
        return True

    def _processed(self) -> bool:
        return bool(self.events)

    def wake(self) -> None:
        """End a heard_within() early (the session closed)."""
        if self._heard is not None:
            self._heard.set()

    async def heard_within(self, seconds: float) -> bool:
        """Whether a callback arrives within *seconds* (at once if one has)."""
        if self.events:
            return True
        if seconds <= 0:
            return False
        self._heard = asyncio.Event()
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._heard.wait(), seconds)
        return bool(self.events)
