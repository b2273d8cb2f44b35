"""
What every handle shares: state tracking, the guard on follow-ups, awaiting an outcome.

A handle is a few slots: its call, its control id, its state and, only once
somebody waits or listens, a future and a list of queues. No task or timer
per handle, so a script can hold tens of thousands.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import typing
from collections.abc import AsyncIterator, Callable, Coroutine, Generator
from types import TracebackType
from typing import TYPE_CHECKING, Any, ClassVar, Concatenate, Generic, ParamSpec, TypeVar, cast

from relaycall._events import Event
from relaycall._results import OperationResult
from relaycall._states import OperationState
from relaycall._validate import fail, is_number
from relaycall.errors import InvalidStateError, NotFoundError, RelayError, WaitTimeoutError

if TYPE_CHECKING:
    from relaycall._commands._base import Command, FollowUp
    from relaycall._handles.call import Call

logger = logging.getLogger("relaycall")

H = TypeVar("H")
ResultT = TypeVar("ResultT")
OpT = TypeVar("OpT", bound="Operation[Any]")
P = ParamSpec("P")
R = TypeVar("R")


class Starting(Coroutine[Any, Any, H]):
    """
    What a start method returns: await it, hand it to ``create_task``, or use ``async with``.

    It is a coroutine (a :class:`collections.abc.Coroutine`), so
    ``asyncio.create_task(relay.dial(...))``, ``TaskGroup.create_task`` and
    ``asyncio.gather`` take it like any ``async def`` call.

    ``async with call.play(...) as pb:`` stops the operation when the block
    exits if it is still running: normally, on an exception (which is not
    masked) and on cancellation.
    """

    __slots__ = ("_coro", "_handle")

    def __init__(self, coro: Coroutine[Any, Any, H]) -> None:
        self._coro = coro
        self._handle: H | None = None

    def __await__(self) -> Generator[Any, None, H]:
        return self._coro.__await__()

    # The coroutine protocol, delegated: asyncio's Task drives a coroutine with
    # send() and throw(), and accepts any collections.abc.Coroutine.
    def send(self, value: Any) -> Any:
        return self._coro.send(value)

    def throw(self, typ: Any, val: Any = None, tb: Any = None) -> Any:
        if val is None and tb is None:
            return self._coro.throw(typ)
        return self._coro.throw(typ, val, tb)  # pragma: no cover - legacy signature

    def close(self) -> None:
        """Close the underlying coroutine when it will never be awaited."""
        self._coro.close()

    async def __aenter__(self) -> H:
        self._handle = await self._coro
        return self._handle

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        handle = self._handle
        if handle is None:
            return
        closer = getattr(handle, "_close_on_exit", None)
        if closer is None:
            return
        try:
            # Shielded: a second cancellation must not leave the operation running.
            await asyncio.shield(closer())
        except (RelayError, asyncio.CancelledError) as close_exc:
            if exc is None:
                raise
            logger.debug("could not stop %r on exit: %s", handle, close_exc)


class _Pending:
    """An outcome not built yet: the function and arguments that build it."""

    __slots__ = ("args", "build")

    def __init__(self, build: Callable[..., Any], args: tuple[Any, ...]) -> None:
        self.build = build
        self.args = args


class Handle(Generic[ResultT]):
    """
    Base of Call and every operation handle: a state, and a way to await the end.

    *ResultT* is what awaiting the end gives (a CallResult, a PlaybackResult...).
    """

    __slots__ = ("__weakref__", "_result", "_state", "_token", "_waiters")

    #: States after which nothing more happens.
    FINAL: ClassVar[frozenset[str]] = frozenset()
    kind: ClassVar[str] = "handle"

    def __init__(self, state: str) -> None:
        self._state = state
        self._result: Any = None
        # Futures of wait() calls and on_finished callbacks, made only when asked for.
        self._waiters: list[Any] | None = None
        #: The last status_url token the receiver found good for a callback
        #: routed here (EventReceiver._verified): the same one is not MACed again.
        self._token: str | None = None

    @property
    def state(self) -> str:
        """The latest state known here, from what was sent, answered and called back."""
        return self._state

    @property
    def done(self) -> bool:
        """Whether the handle reached a final state."""
        return self._state in self.FINAL

    def _resolve(self, build: Callable[..., ResultT], *args: Any) -> None:
        """
        Record the outcome, ``build(self, *args)``, and wake everyone waiting, once.

        Nobody waits for most handles (a flow plays, stops and hangs up), so
        the result object is only built when somebody is waiting or first
        asks for it; *args* are what it is built from, taken now. The handle
        itself is passed at building time, never kept in *args*: that would
        be a reference cycle, left for the garbage collector, per handle.
        """
        if self._result is not None:
            return
        waiters, self._waiters = self._waiters, None
        if not waiters:
            self._result = _Pending(build, args)
            return
        result = self._result = self._build(build, args)
        for w in waiters:
            if isinstance(w, asyncio.Future):
                if not w.done():
                    w.set_result(result)
            else:
                _run_callback(w, result)

    def _outcome(self) -> ResultT | None:
        """The result, built now if nobody had asked for it yet (None while unresolved)."""
        result = self._result
        if type(result) is _Pending:
            result = self._result = self._build(result.build, result.args)
        return cast("ResultT | None", result)

    def _build(self, build: Callable[..., ResultT], args: tuple[Any, ...]) -> ResultT:
        """
        ``build(self, *args)``, which must not strand a wait by raising.

        The builders read callbacks defensively and do not raise; should one
        all the same (a bug, or a payload nobody foresaw), the error is logged
        and the result is built again from the same arguments with the events
        left out (every field read off them is then None), so the handle still
        resolves, with its state and reason.
        """
        try:
            return build(self, *args)
        except Exception:
            logger.exception("relaycall: building the result of %r failed", self)
        return build(self, *[None if hasattr(a, "params") else a for a in args])

    def on_finished(self, callback: Callable[[ResultT], Any]) -> None:
        """
        Call *callback* with the result when this handle finishes (at once if it has).

        *callback* may be a plain function or a coroutine function; it runs
        outside the receiver's code, before the webhook request that finished
        the handle is answered (a coroutine function is started as a task then),
        and its exceptions are logged.
        """
        if self._result is not None:
            _run_callback(callback, self._outcome())
            return
        if self._waiters is None:
            self._waiters = []
        self._waiters.append(callback)

    def _before_wait(self, timeout: float | None) -> None:
        """Hook: a wait is about to start (the session may answer it at once, or refuse it)."""

    async def _wait(self, timeout: float | None) -> ResultT:
        if timeout is not None:
            wait_timeout_check("wait.timeout", timeout)
        if self._result is not None:
            return cast("ResultT", self._outcome())
        self._before_wait(timeout)
        closed = self._outcome()  # set if the session was closed: resolved as it stands
        if closed is not None:
            return closed
        fut: asyncio.Future[ResultT] = asyncio.get_running_loop().create_future()
        if self._waiters is None:
            self._waiters = []
        self._waiters.append(fut)
        try:
            if timeout is None:
                return await fut
            return await asyncio.wait_for(fut, timeout)
        except asyncio.TimeoutError:
            raise WaitTimeoutError(
                f"{self!r} did not finish within {timeout} s (it goes on; only the wait ended)"
            ) from None
        finally:
            if self._waiters is not None and fut in self._waiters:
                self._waiters.remove(fut)


def wait_timeout_check(path: str, timeout: Any) -> None:
    """
    A wait's *timeout*: None or a number of seconds >= 0.

    Checked before anything else, so a wrong one is refused even when the wait
    would have returned at once; an int past a float's range (10**400), NaN
    or infinity would otherwise fail inside asyncio.
    """
    if timeout is not None and (not is_number(timeout) or timeout < 0):
        fail(path, timeout, "must be a finite number of seconds >= 0, or None to wait unbounded")


_background: set[asyncio.Task[Any]] = set()


#: How many user callbacks :func:`_run_callback` has scheduled, ever: the receiver
#: compares it around a callback's handling to know whether to let them run before
#: it answers (see ``EventReceiver.on_event``).
_scheduled = 0


def scheduled_callbacks() -> int:
    """The count of user callbacks scheduled so far (see :data:`_scheduled`)."""
    return _scheduled


def _run_callback(callback: Callable[[Any], Any], arg: Any) -> None:
    """Run a user callback soon, outside the caller's frame; log what it raises."""
    global _scheduled  # noqa: PLW0603 - a counter, read through scheduled_callbacks()
    _scheduled += 1

    def run() -> None:
        try:
            out = callback(arg)
        except Exception:
            logger.exception("relaycall callback %r failed", callback)
            return
        if asyncio.iscoroutine(out):
            task = asyncio.ensure_future(out)
            _background.add(task)  # held until done: the loop keeps only weak refs
            task.add_done_callback(_task_done)

    asyncio.get_running_loop().call_soon(run)


def _task_done(task: asyncio.Task[Any]) -> None:
    _background.discard(task)
    if not task.cancelled() and task.exception() is not None:
        logger.error("relaycall callback task failed", exc_info=task.exception())


def guarded(
    *states: str,
) -> Callable[[Callable[Concatenate[OpT, P], R]], Callable[Concatenate[OpT, P], R]]:
    """
    A follow-up allowed only in *states* (none given: while its operation is live).

    As asyncpg guards a connection's methods: the check runs before anything
    is sent, and its InvalidStateError names the method by its own name.
    What the method returns (the request's coroutine) is returned as it is,
    with no coroutine added around it.
    """
    allowed = frozenset(states)

    def guard(method: Callable[Concatenate[OpT, P], R]) -> Callable[Concatenate[OpT, P], R]:
        name = method.__name__

        @functools.wraps(method)
        def checked(self: OpT, /, *args: P.args, **kwargs: P.kwargs) -> R:
            self._check(name, allowed or self.LIVE)
            return method(self, *args, **kwargs)

        return checked

    return guard


class Operation(Handle[ResultT]):
    """
    A long-running operation on a call, named by its control id.

    A kind is declared by its subclass: ``class Playback(Operation[PlaybackResult])``
    names the result class, *EVENT* the event class that says what a callback
    means for it (its *FINAL* states are that class's), and :func:`guarded`
    the states that allow each follow-up. The base sends the follow-up, moves
    the state on success and records a 404 (the operation already ended on
    the server).
    """

    __slots__ = ("_generation", "_heard", "_last", "call", "control_id")

    #: The state right after the start command is accepted.
    RUNNING: ClassVar[str] = "running"
    #: States in which the operation is live and a stop makes sense.
    LIVE: ClassVar[frozenset[str]] = frozenset({"running"})
    #: The event class its callbacks are read as (see relaycall._events).
    EVENT: ClassVar[type[Event]] = Event
    #: The result class, from the subclass's ``Operation[...]`` base.
    _result_cls: ClassVar[type[Any]] = OperationResult
    _stop_command: ClassVar[type[FollowUp[Any]] | None] = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        for base in cls.__dict__.get("__orig_bases__", ()):
            args = typing.get_args(base)
            if args and isinstance(args[0], type):
                cls._result_cls = args[0]
        if "EVENT" in cls.__dict__:
            cls.FINAL = cls.EVENT.FINAL

    def __init__(self, call: Call, control_id: str, state: str | None = None) -> None:
        super().__init__(state or self.RUNNING)
        self.call = call
        self.control_id = control_id
        #: The latest event that carried the outcome (a detect verdict, a
        #: partial collect) when that can come before the final event.
        self._last: Event | None = None
        #: Names this start of the operation in its status_url token, so a
        #: callback issued for an earlier start (same control_id) never resolves
        #: this one. None: not started here with a receiver's status_url.
        self._generation: str | None = None
        #: A callback for it has arrived: the start command was processed.
        self._heard = False

    def _started(self, command: Any) -> None:
        """Hook: the start command was accepted (a collector notes continuous mode)."""

    # --- events --------------------------------------------------------------------

    def _final_state_of(self, event: Event) -> str | None:
        """The final state *event* (one of *EVENT*) puts this operation in; None if none."""
        return event.final_state

    def _apply(self, event: Event) -> bool:
        """
        Take a status event; return False if the handle was already final (a duplicate).

        Non-final events are remembered (when they carry the outcome) and
        published but do not move the local state, which follows the commands
        this process sent: a late or reordered callback can then never undo a
        pause or a stop. Final events end the operation, once.
        """
        self._heard = True
        if self._state in self.FINAL:
            return False
        kind = self.EVENT
        typed = event if isinstance(event, kind) else kind._read_as(event)
        final = self._final_state_of(typed)
        if final is None:
            if typed._EARLY_OUTCOME and (self._last is None or typed._carries_outcome):
                self._last = typed
            return True
        self._set_final(final, reason="finished", event=event)
        return True

    def _processed(self) -> bool:
        """Whether callbacks show the start command was processed (so never re-send it)."""
        return self._heard

    @property
    def state(self) -> OperationState:
        """The latest state known here, from what was sent, answered and called back."""
        return self._state  # type: ignore[return-value]

    @property
    def call_id(self) -> str:
        return self.call.id

    @property
    def running(self) -> bool:
        """Whether the operation is live (a stop would make sense)."""
        return self._state in self.LIVE

    def __repr__(self) -> str:
        return (
            f"<{type(self).__name__} call_id={self.call.id} control_id={self.control_id} "
            f"state={self._state}>"
        )

    def _check(self, method: str, allowed: frozenset[str]) -> None:
        """Refuse *method* (nothing sent) unless the call is on and the state is *allowed*."""
        if self.call._ended:
            raise InvalidStateError(
                f"{self!r} cannot {method}(): its call has ended; nothing was sent"
            )
        if self._state not in allowed:
            raise InvalidStateError(
                f"{self!r} cannot {method}() while {self._state}; nothing was sent"
            )

    async def _follow_up(self, command: Command[Any], next_state: str | None) -> None:
        """Send a follow-up; on success move to *next_state*; on 404 record that it ended."""
        call = self.call
        try:
            leg = await call._relay._send_leg(command)
        except NotFoundError as exc:
            self._set_final("finished", reason="gone")
            if exc.retries_taken and next_state == "stopped":
                # A stop re-sent after an unanswered attempt: the 404 means the first
                # one got through (or it had ended anyway). Either way it is over.
                return
            raise NotFoundError(
                f"{command.command_name}: {type(self).__name__} {self.control_id} is no longer "
                f"running on the server (HTTP 404); the handle is now marked finished",
                status_code=exc.status_code,
                headers=exc.headers,
                body=exc.body,
                command=exc.command,
            ) from exc
        call._observe_leg(leg)
        if next_state is not None and self._state not in self.FINAL:
            self._state = next_state

    def stop(self) -> Coroutine[Any, Any, Any]:
        """
        Stop the operation. Its final event (if callbacks are set up) completes :meth:`wait`.

        Stopping what is already over is not an error: an operation that
        finished by itself (a recording's silence timeout, say), was stopped
        already, or whose call ended returns quietly, sends nothing, and
        gives its result if it has one (None otherwise). Cleanup code cannot
        avoid that race, so it never has to catch it.
        """
        if self._state not in self.LIVE or self.call._ended:
            return self._already_over()
        assert self._stop_command is not None
        return self._follow_up(self._stop_command._of(self.call.id, self.control_id), "stopped")

    async def _already_over(self) -> Any:
        """What a stop of an operation that is no longer live returns: its result, if any."""
        return self._outcome()

    async def _close_on_exit(self) -> None:
        if self.running and not self.call._ended:
            # A 404 means it is already over on the server: nothing left to stop.
            with contextlib.suppress(NotFoundError):
                await self.stop()

    # --- outcome ----------------------------------------------------------------

    def _set_final(self, state: str, *, reason: str, event: Event | None = None) -> None:
        """Enter a final state (once), drop out of the registry, resolve waits."""
        if self._state in self.FINAL:
            return
        # Any other state (it was playing when its call ended) ends as finished.
        self._state = state if state in self.FINAL else "finished"
        self.call._forget(self)
        self._resolve(_operation_result, reason, event, self._last)

    def _before_wait(self, timeout: float | None) -> None:
        call = self.call
        if not call._relay._watch(call, timeout, f"{self!r}.wait()"):
            self._session_closed()

    def _session_closed(self) -> None:
        """The AsyncRelay closed: resolve waits as they stand, without inventing a state."""
        # Built now: the state it reports is the one at closing.
        result = _operation_result(self, "session_closed", None, self._last)
        self._resolve(_same, result)

    async def wait(self, timeout: float | None = None) -> ResultT:
        """
        Wait for the operation's outcome and return its result.

        Resolves on the final status callback, when the call ends, or when
        the AsyncRelay closes; the result's *reason* says which. Cancelling
        the waiting task does not stop the operation; raise ``TimeoutError``
        after *timeout* seconds (the operation goes on).
        """
        return await self._wait(timeout)

    def events(self) -> AsyncIterator[Any]:
        """Iterate over this operation's status events until it finishes."""
        return self.call._event_stream(self)


def _operation_result(
    op: Operation[ResultT], reason: str, event: Event | None, last: Event | None
) -> ResultT:
    """
    The result of *op* ending for *reason*, its fields read off *event* or *last*.

    *last* is the latest earlier event that carried the outcome, for a final
    event that does not (a detect's ``finished`` after its verdict). It never
    raises, whatever the callback held: a field it cannot read is None, and
    should reading fail all the same, the result has the common fields and
    *event* (the raw payload) only. A wait must end either way.
    """
    fields: dict[str, Any] = {}
    try:
        typed = None if event is None else op.EVENT._read_as(event)
        source = typed if last is None or (typed is not None and typed._carries_outcome) else last
        if source is not None:
            fields = source._result_fields()
    except Exception:
        logger.exception(
            "relaycall: could not read the result of %r off its callback; "
            "it ends with the common fields (and the raw event) only",
            op,
        )
    return cast(
        "ResultT",
        op._result_cls(
            call_id=op.call.id,
            control_id=op.control_id,
            state=op.state,
            reason=reason,
            event=event,
            **fields,
        ),
    )


def _same(_: Handle[ResultT], result: ResultT) -> ResultT:
    return result
