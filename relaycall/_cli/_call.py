"""
``relaycall call SUBCOMMAND``: one Calling API command from the shell.

Each subcommand turns its flags into the command's ``params`` in their wire shape
(a flag's name is the library's keyword argument, ``--status-url`` for
``status_url=``; nested options get flat flags, ``--tts TEXT``, ``--digits-max
N``), lays them over ``--params`` (the escape hatch: any wire params, inline,
``@file.json`` or ``-`` for stdin), and reads the result into the command's typed
class exactly as the emulator reads a request body. So every rule the library
checks is checked here too, before anything is sent, and an error names the flag
(or the params path) that broke it. ``relaycall call send COMMAND`` does the same
for any of the 42 commands from ``--params`` alone.

The command then goes out through :meth:`AsyncRelay.execute` with its own
class's retry rules, and the reply is printed as it came (``--json``) or as one
summary line. With ``--wait`` (operations that finish by themselves), a receiver
of this process's own gets the callbacks, and the operation's handle, attached
before the command is sent, gives its result.
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeAlias

import attrs

from relaycall._cli._common import (
    Exit,
    address,
    count,
    exit_code_for,
    fail,
    integer,
    json_object,
    number,
    output,
    params_source,
    print_json,
    seconds,
    text_list,
    text_or_json_object,
)
from relaycall._commands import media as _media
from relaycall._commands import operations as _ops
from relaycall._config import USE_DEFAULT, RetryPolicy
from relaycall._handles._base import Operation
from relaycall._handles.operations import Collector, Detector, Playback, Recording
from relaycall._models import RawResponse
from relaycall._reading import CALL_ID_KEY, MISSING, WireError, read
from relaycall._receiver import EventReceiver
from relaycall._results import OperationResult
from relaycall._serving import listen_error
from relaycall._session import AsyncRelay
from relaycall.commands import BY_NAME, Command, new_control_id

__all__ = ["add_call_parser", "run_call"]

#: Where the envelope's call id is reported by the reader (see relaycall._reading).
_ID = "id"

#: Operations that have ``.pause``/``.resume`` (``relaycall call pause KIND ...``).
PAUSABLE = ("play", "record")
#: Operations that have ``.stop`` with a control_id (``relaycall call stop KIND ...``).
STOPPABLE = (
    "play", "record", "collect", "detect", "tap", "transcribe", "stream", "send_fax",
    "receive_fax",
)  # fmt: skip


class Spec:
    """
    One ``relaycall call`` subcommand: its parser, and how its flags become params.

    *paths* maps each flag's ``dest`` to the dotted wire path it sets in params;
    *shown* maps a wire path to the flag (or positional) named in its errors.
    """

    def __init__(
        self,
        sub: argparse._SubParsersAction[argparse.ArgumentParser],
        name: str,
        command: str | None,
        help: str,
        *,
        parents: list[argparse.ArgumentParser],
        call_id: bool = True,
        description: str | None = None,
    ) -> None:
        self.name = name
        self.command = command
        self.paths: dict[str, str] = {}
        self.shown: dict[str, str] = {}
        self.fill: Callable[[argparse.Namespace, dict[str, Any]], None] | None = None
        #: The handle kind ``--wait`` waits on (operations that finish by themselves).
        self.handle: type[Operation[Any]] | None = None
        self.parser = sub.add_parser(
            name, help=help, description=description or help[:1].upper() + help[1:] + ".",
            parents=parents,
        )  # fmt: skip
        self.parser.set_defaults(spec=self, subparser=self.parser)
        if call_id:
            self.parser.add_argument("call_id", metavar="CALL_ID", help="the call's id")
            self.shown[_ID] = "CALL_ID"

    def flag(self, option: str, path: str, help: str, **kwargs: Any) -> None:
        """A flag setting the wire *path* of params (``record.audio.format``)."""
        dest = option[2:].replace("-", "_")
        if kwargs.pop("boolean", False):
            kwargs["action"] = argparse.BooleanOptionalAction
            kwargs["default"] = None
        self.parser.add_argument(option, dest=dest, help=help, **kwargs)
        self.paths[dest] = path
        self.shown[path] = f"argument {option}"

    def positional(self, metavar: str, path: str, help: str, **kwargs: Any) -> None:
        dest = metavar.lower()
        self.parser.add_argument(dest, metavar=metavar, help=help, **kwargs)
        self.paths[dest] = path
        self.shown[path] = metavar

    def status_url(self) -> None:
        self.flag("--status-url", "status_url", "where the platform posts this command's "
                  "callbacks (see `relaycall events listen`)")  # fmt: skip

    def waits(self, handle: type[Operation[Any]]) -> None:
        """``--wait`` and the receiver it needs, waiting on a *handle* of this operation."""
        self.handle = handle
        g = self.parser.add_argument_group(
            "waiting for the outcome (a receiver the platform can reach gets its callbacks)"
        )
        g.add_argument(
            "--wait", action="store_true",
            help="wait for the operation to finish and print its result (needs --listen)",
        )  # fmt: skip
        g.add_argument(
            "--listen", type=address, metavar="[HOST:]PORT",
            help="where that receiver listens (port 0: a free one)",
        )  # fmt: skip
        g.add_argument(
            "--public-url",
            help="the URL the platform reaches it at (default: the local URL, which only a "
            "local server such as the emulator can reach)",
        )
        g.add_argument(
            "--signing-key", default=os.environ.get("SIGNALWIRE_SIGNING_KEY") or None,
            help="verify the callbacks' signatures (default: $SIGNALWIRE_SIGNING_KEY)",
        )  # fmt: skip
        g.add_argument(
            "--wait-timeout", type=seconds, metavar="SECONDS",
            help="stop waiting after this long: exit status 7 (default: no limit)",
        )  # fmt: skip

    def control_id(self) -> None:
        self.flag("--control-id", "control_id", "the operation's id (default: a new random "
                  "one, printed in the reply)")  # fmt: skip


# --- building the command -------------------------------------------------------------------


def _set(params: dict[str, Any], path: str, value: Any) -> None:
    """Set dotted *path* in *params*, making (or replacing) the objects on the way."""
    *heads, last = path.split(".")
    where = params
    for head in heads:
        inner = where.get(head)
        if not isinstance(inner, dict):
            inner = where[head] = {}
        where = inner
    where[last] = value


class _Invalid(Exception):
    """A command the API would refuse; the message names the flag or params path."""


def _name_of(ns: argparse.Namespace, spec: Spec) -> str:
    if spec.command is not None:
        return spec.command
    action: str | None = getattr(ns, "action", None)
    if action is not None:  # relaycall call pause|resume|stop KIND ...
        return f"calling.{ns.kind}.{action}"
    name: str = ns.command_name
    return name


def build(ns: argparse.Namespace) -> Command[Any]:
    """The typed command the parsed command line *ns* asks for; raises _Invalid."""
    spec: Spec = ns.spec
    name = _name_of(ns, spec)
    cls = BY_NAME.get(name)
    if cls is None and not name.startswith("calling.") and name not in ("dial", "update"):
        cls = BY_NAME.get("calling." + name)
    if cls is None:
        raise _Invalid(
            f"argument COMMAND: {name!r} is not a Calling API command "
            "(`relaycall call send --help` lists them)"
        )
    name = cls.command_name
    params = copy.deepcopy(ns.params) if ns.params is not None else {}
    given: set[str] = set()
    for dest, path in spec.paths.items():
        value = getattr(ns, dest, None)
        if value is not None:
            _set(params, path, value)
            given.add(path)
    if spec.fill is not None:
        spec.fill(ns, params)
    call_id: str | None = getattr(ns, "call_id", None)
    if name == "update":
        if call_id is not None:  # update carries its call in params.id
            params["id"] = call_id
            given.add("id")
    elif cls._top_level_id:
        if call_id is None:
            raise _Invalid(f"{name} needs the CALL_ID of the call it acts on")
        params[CALL_ID_KEY] = call_id
        given.add(_ID)
    elif call_id is not None:
        raise _Invalid(f"{name} takes no CALL_ID (it creates the call)")
    control = attrs.fields_dict(cls).get("control_id")  # type: ignore[arg-type]
    if control is not None and isinstance(control.default, attrs.Factory):  # type: ignore[arg-type]
        # A start command: the library picks its control_id, and so does this.
        params.setdefault("control_id", new_control_id())
    try:
        command: Command[Any] = read(cls, params)
    except WireError as exc:
        raise _Invalid(_located(exc, spec, given)) from None
    return command


def _located(exc: WireError, spec: Spec, given: set[str]) -> str:
    """The error's message, naming the flag that set the value when a flag did."""
    path = exc.path
    if exc.code == MISSING and path in spec.shown:
        return f"{spec.shown[path]}: {exc.message}"
    for where in sorted(given, key=len, reverse=True):
        if path == where:
            return f"{spec.shown.get(where, where)}: {exc.message}"
        if path.startswith((where + ".", where + "[")):
            return f"{spec.shown.get(where, where)}: {path}: {exc.message}"
    return f"params.{exc.text}" if path else f"params: {exc.message}"


# --- running it -----------------------------------------------------------------------------


def run_call(ns: argparse.Namespace) -> int:
    """Build, send and report the command *ns* asks for; returns the exit status."""
    prog = ns.subparser.prog
    try:
        command = build(ns)
        _check_wait(ns)
        _check_credentials(ns)
    except _Invalid as exc:
        return _failed(ns, prog, str(exc), Exit.USAGE, None)
    replied = False

    def on_reply(wire: dict[str, Any], reply: RawResponse) -> None:
        nonlocal replied
        replied = True
        if not ns.json:  # at once: while --wait waits, the control_id is already known
            output(_line(command, wire, reply))

    try:
        wire, reply, result = asyncio.run(_send(ns, command, on_reply))
    except _Invalid as exc:
        return _failed(ns, prog, str(exc), Exit.USAGE, None)
    except KeyboardInterrupt:
        message = (
            "interrupted while waiting; the operation goes on"
            if replied
            # The request may have been written: for a dial, the call may exist.
            else "interrupted before the reply; the command may or may not have been carried out"
        )
        return _failed(ns, prog, message, Exit.INTERRUPTED, None)
    except Exception as exc:  # noqa: BLE001 - every failure is one line and an exit status
        code = exit_code_for(exc)
        message = str(exc) if code is not Exit.ERROR else f"{type(exc).__name__}: {exc}"
        if code is Exit.AUTH:
            message += (
                " (check SIGNALWIRE_PROJECT_ID and SIGNALWIRE_API_TOKEN, or --project-id and "
                "--token; the token needs the Voice scope)"
            )
        elif code is Exit.WAIT_TIMEOUT:
            message = (
                f"{command.command_name} was carried out (control_id "
                f"{getattr(command, 'control_id', None)}) but did not finish within "
                f"{ns.wait_timeout:g} s; it goes on"
            )
        return _failed(ns, prog, message, code, exc)
    summary = _summary(command, wire, reply.body)
    if result is not None:
        fields = attrs.asdict(result, filter=lambda a, _: a.name != "event", recurse=False)
        if ns.json:
            summary["result"] = fields
        else:
            shown = {k: v for k, v in fields.items() if k not in ("call_id", "control_id")}
            words = [f"{k}={v}" for k, v in shown.items() if v is not None]
            output(f"{command.command_name} result: " + " ".join(words))
    if ns.json:
        print_json(summary)
    return Exit.OK


def _check_wait(ns: argparse.Namespace) -> None:
    if not getattr(ns, "wait", False):
        for flag in ("listen", "public_url", "wait_timeout"):
            if getattr(ns, flag, None) is not None:
                raise _Invalid(f"argument --{flag.replace('_', '-')}: only used with --wait")
    elif ns.listen is None:
        raise _Invalid(
            "argument --wait: needs --listen [HOST:]PORT, a receiver for the operation's "
            "callbacks (and --public-url when the platform reaches it through a proxy)"
        )


def _check_credentials(ns: argparse.Namespace) -> None:
    """Name the flags and variables of what is missing (the library names its arguments)."""
    env = os.environ
    missing = [
        f"{flag} (or {var})"
        for flag, value, var in (
            ("--project-id", ns.project_id, "SIGNALWIRE_PROJECT_ID"),
            ("--token", ns.token, "SIGNALWIRE_API_TOKEN"),
        )
        if not (value or env.get(var))
    ]
    if not (
        ns.space or ns.base_url or env.get("SIGNALWIRE_SPACE") or env.get("SIGNALWIRE_BASE_URL")
    ):
        missing.append("--space or --base-url (or SIGNALWIRE_SPACE or SIGNALWIRE_BASE_URL)")
    if missing:
        raise _Invalid("missing credentials: " + "; ".join(missing))


async def _send(
    ns: argparse.Namespace,
    command: Command[Any],
    on_reply: Callable[[dict[str, Any], RawResponse], None],
) -> tuple[dict[str, Any], RawResponse, OperationResult | None]:
    """Send *command*; with ``--wait``, also wait for its operation's result."""
    retry = RetryPolicy(max_attempts=ns.retries + 1) if ns.retries is not None else USE_DEFAULT
    waiting = bool(getattr(ns, "wait", False))
    receiver = (
        EventReceiver(public_url=ns.public_url, signing_key=ns.signing_key) if waiting else None
    )
    relay = AsyncRelay(
        ns.project_id, ns.token, ns.space, base_url=ns.base_url, timeout=ns.http_timeout,
        retry=retry, events=receiver,
        # Only a wait needs probing: a call whose callbacks stopped still ends it.
        probe_quiet_calls_after=5.0 if waiting else None,
    )  # fmt: skip
    async with relay:
        if receiver is None:
            wire = command.to_wire()
            reply = await relay.execute(
                wire["command"], call_id=wire.get("id"), params=wire["params"]
            )
            on_reply(wire, reply)
            return wire, reply, None
        host, port = ns.listen
        try:
            await receiver.start(host, port)
        except OSError as exc:
            raise _Invalid(f"argument --listen: {listen_error(host, port, exc)}") from None
        try:
            call_id: str = getattr(command, "call_id")  # noqa: B009 - every operation has one
            if getattr(command, "status_url", None) is None:
                # A token for the call: it reaches operations attached here (docs/security.md).
                command = attrs.evolve(command, status_url=receiver.status_url(call_id))  # type: ignore[misc]
            assert ns.spec.handle is not None
            # Attached before the command goes out: no callback can arrive unheard.
            handle = relay.call(call_id).attach(ns.spec.handle, getattr(command, "control_id"))  # noqa: B009
            wire = command.to_wire()
            reply = await relay.execute(wire["command"], call_id=call_id, params=wire["params"])
            on_reply(wire, reply)
            result: OperationResult = await handle.wait(timeout=ns.wait_timeout)
            return wire, reply, result
        finally:
            await receiver.stop()


def _summary(command: Command[Any], wire: dict[str, Any], body: Any) -> dict[str, Any]:
    leg = body if isinstance(body, dict) else {}
    call_id = wire.get("id") or wire["params"].get("id") or leg.get("id")
    out: dict[str, Any] = {"command": command.command_name, "call_id": call_id}
    control_id = wire["params"].get("control_id")
    if control_id is not None:
        out["control_id"] = control_id
    out["reply"] = body
    return out


def _line(command: Command[Any], wire: dict[str, Any], reply: RawResponse) -> str:
    """The reply as one line: ``COMMAND: call_id=... status=... [control_id=...]``."""
    summary = _summary(command, wire, reply.body)
    words = [f"call_id={summary['call_id']}"]
    body = reply.body if isinstance(reply.body, dict) else {}
    if body.get("status") is not None:
        words.append(f"status={body['status']}")
    if "control_id" in summary:
        words.append(f"control_id={summary['control_id']}")
    return f"{command.command_name}: " + " ".join(words)


def _failed(
    ns: argparse.Namespace, prog: str, message: str, code: Exit, exc: BaseException | None
) -> int:
    if getattr(ns, "json", False):
        error: dict[str, Any] = {"exit_code": int(code), "message": message}
        if exc is not None:
            error["type"] = type(exc).__name__
            status = getattr(exc, "status_code", None)
            if status:
                error["status"] = status
                error["body"] = getattr(exc, "body", None)
        print_json({"error": error})
    return fail(prog, message, code)


# --- the parsers ------------------------------------------------------------------------------


def _connection_options() -> argparse.ArgumentParser:
    """The options every ``relaycall call`` subcommand takes."""
    p = argparse.ArgumentParser(add_help=False)
    g = p.add_argument_group("connection (default: the library's environment variables)")
    g.add_argument("--project-id", help="project id (default: $SIGNALWIRE_PROJECT_ID)")
    g.add_argument(
        "--token", help="API token (default: $SIGNALWIRE_API_TOKEN, which keeps it out of ps)"
    )
    g.add_argument("--space", help="space name, e.g. example (default: $SIGNALWIRE_SPACE)")
    g.add_argument(
        "--base-url",
        help="API base URL, e.g. the emulator's http://127.0.0.1:8080 (default: "
        "$SIGNALWIRE_BASE_URL)",
    )
    g.add_argument(
        "--http-timeout", type=seconds, metavar="SECONDS",
        help="per-attempt bound on the request (default: the library's, 30 s)",
    )  # fmt: skip
    g.add_argument(
        "--retries", type=count, metavar="N",
        help="re-sends on failures the command allows (default: the library's, 2)",
    )  # fmt: skip
    o = p.add_argument_group("output and params")
    o.add_argument(
        "--json", action="store_true",
        help="print the reply as one JSON object: {command, call_id, control_id, reply} (and "
        "result, with --wait)",
    )  # fmt: skip
    o.add_argument(
        "--params", type=params_source, metavar="JSON",
        help="the command's params in their wire shape (inline JSON, @FILE or - for stdin); "
        "flags given too win over the same keys",
    )  # fmt: skip
    return p


def add_call_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``relaycall call`` and its subcommands to the top-level *sub* parsers."""
    call = sub.add_parser(
        "call",
        help="send one Calling API command (dial, play, record, ...) and print the reply",
        description="Send one command of SignalWire's Calling API and print the reply. "
        "Credentials come from SIGNALWIRE_PROJECT_ID, SIGNALWIRE_API_TOKEN and "
        "SIGNALWIRE_SPACE (or SIGNALWIRE_BASE_URL), as for the library. Exit status: 0 "
        "ok, 2 bad usage or params (nothing sent), 3 refused by the API, 4 bad "
        "credentials, 5 API unreachable or failing, 6 outcome unknown, 7 --wait timed out "
        "(docs/cli.md).",
    )
    call.set_defaults(subparser=call)
    calls = call.add_subparsers(dest="call_command", required=True, metavar="SUBCOMMAND")
    parents = [_connection_options()]
    for add in (
        _dial, _update, _end, _transfer, _disconnect, _play, _record, _collect, _detect, _tap,
        _stream, _transcribe, _user_event, _follow_ups, _send_any,
    ):  # fmt: skip
        add(calls, parents)


if TYPE_CHECKING:  # argparse's class is not subscriptable at run time
    Subs: TypeAlias = argparse._SubParsersAction[argparse.ArgumentParser]
    Parents: TypeAlias = list[argparse.ArgumentParser]


def _dial(sub: Subs, parents: Parents) -> None:
    s = Spec(sub, "dial", "dial", "place an outbound call", parents=parents, call_id=False)
    s.flag("--from", "from", "caller: E.164 number, SIP URI or caller-id name")
    s.flag("--to", "to", "callee: E.164 number (+15557650000), SIP/verto/client address")
    s.flag("--url", "url", "URL of the SWML the call runs once answered")
    s.flag("--swml", "swml", "the SWML document itself (JSON), instead of --url",
           type=json_object)  # fmt: skip
    s.flag("--caller-id", "caller_id", "caller id to present")
    s.flag("--fallback-url", "fallback_url", "SWML URL used when --url fails")
    s.flag("--url-method", "url_method", "how --url is fetched", choices=("GET", "POST"))
    s.status_url()
    s.flag("--status-events", "status_events", "call states to be called back for "
           "(comma-separated: created,ringing,answered,ended)", type=text_list)  # fmt: skip
    s.flag("--timeout", "timeout", "seconds to ring before giving up (1-600)", type=integer)
    s.flag("--codecs", "codecs", "codecs to offer (comma-separated)", type=text_list)
    s.flag("--max-price-per-minute", "max_price_per_minute", "price cap", type=number)
    s.flag("--send-digits", "send_digits", "DTMF to send once answered")
    s.flag("--region", "region", "region to place the call from")
    s.flag("--custom-variables", "custom_variables", "custom variables (a JSON object of "
           "strings)", type=json_object)  # fmt: skip


def _update(sub: Subs, parents: Parents) -> None:
    s = Spec(sub, "update", "update", "point a live call at new SWML, or end it",
             parents=parents)  # fmt: skip
    s.shown["id"] = "CALL_ID"
    s.flag("--url", "url", "URL of the new SWML")
    s.flag("--swml", "swml", "the new SWML document (JSON)", type=json_object)
    s.flag("--status", "status", "end the call: completed (answered) or canceled (ringing)",
           choices=("canceled", "completed"))  # fmt: skip
    s.flag("--fallback-url", "fallback_url", "SWML URL used when --url fails")
    s.status_url()


def _end(sub: Subs, parents: Parents) -> None:
    s = Spec(sub, "end", "calling.end", "hang up a call", parents=parents)
    s.flag("--reason", "reason", "why (default: hangup)",
           choices=("hangup", "cancel", "busy", "noAnswer", "decline", "error"))  # fmt: skip


def _transfer(sub: Subs, parents: Parents) -> None:
    s = Spec(sub, "transfer", "calling.transfer", "transfer a call", parents=parents)
    s.positional("DEST", "dest", "E.164 number, SIP URI, SWML URL, or an SWML object (JSON)",
                 type=text_or_json_object)  # fmt: skip


def _disconnect(sub: Subs, parents: Parents) -> None:
    Spec(sub, "disconnect", "calling.disconnect", "unbridge a call's connected legs",
         parents=parents)  # fmt: skip


class _MediaAction(argparse.Action):
    """``--tts``, ``--audio``, ``--silence``, ``--ringtone``: play items, in the order given."""

    #: The item each flag adds: its wire type, and the params key its value goes to.
    ITEMS = {"tts": ("tts", "text"), "audio": ("audio", "url"), "silence": ("silence", "duration"),
             "ringtone": ("ringtone", "name")}  # fmt: skip

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: Any,
        option_string: str | None = None,
    ) -> None:
        kind, key = self.ITEMS[self.dest]
        items = [
            *(getattr(namespace, "media", None) or []),
            {"type": kind, "params": {key: values}},
        ]
        namespace.media = items


def _play(sub: Subs, parents: Parents) -> None:
    s = Spec(sub, "play", "calling.play", "play media on a call (an operation)", parents=parents,
             description="Play media items on a call, in the order given (calling.play). "
             "Repeat --tts, --audio, --silence and --ringtone as needed.")  # fmt: skip
    g = s.parser.add_argument_group("media (in the order given)")
    g.add_argument("--tts", action=_MediaAction, metavar="TEXT", help="say TEXT")
    g.add_argument("--audio", action=_MediaAction, metavar="URL", help="play the file at URL")
    g.add_argument("--silence", action=_MediaAction, metavar="SECONDS", type=number,
                   help="stay silent")  # fmt: skip
    g.add_argument("--ringtone", action=_MediaAction, metavar="NAME", help="a ringtone (us, uk..)")
    s.parser.set_defaults(media=None)
    s.shown["play"] = "argument --tts/--audio/--silence/--ringtone"
    s.flag("--volume", "volume", "gain in dB (-40..40)", type=number)
    s.flag("--direction", "direction", "who hears it", choices=_media.DIRECTIONS)
    s.flag("--loop", "loop", "times to play it (0: until stopped)", type=integer)
    s.flag("--language", "language", "TTS language, e.g. en-US")
    s.flag("--voice", "voice", "TTS voice")
    s.flag("--gender", "gender", "TTS gender", choices=_media.GENDERS)
    s.status_url()
    s.waits(Playback)
    s.control_id()
    # The four flags build one list: errors about its items name them together.
    s.paths["media"] = "play"


def _record(sub: Subs, parents: Parents) -> None:
    s = Spec(sub, "record", "calling.record", "record a call (an operation)", parents=parents)
    audio = "record.audio."
    s.flag("--format", audio + "format", "file format", choices=("mp3", "wav", "mp4"))
    s.flag("--beep", audio + "beep", "beep when recording starts", boolean=True)
    s.flag("--stereo", audio + "stereo", "one channel per side", boolean=True)
    s.flag("--direction", audio + "direction", "which side", choices=_media.DIRECTIONS)
    s.flag("--initial-timeout", audio + "initial_timeout", "seconds of silence before giving "
           "up at the start", type=number)  # fmt: skip
    s.flag("--end-silence-timeout", audio + "end_silence_timeout", "seconds of silence that "
           "end it", type=number)  # fmt: skip
    s.flag("--max-length", audio + "max_length", "longest recording, seconds", type=integer)
    s.flag("--terminators", audio + "terminators", "DTMF digits that end it, e.g. #")
    s.flag("--input-sensitivity", audio + "input_sensitivity", "0-100", type=number)
    s.status_url()
    s.waits(Recording)
    s.control_id()

    def record(ns: argparse.Namespace, params: dict[str, Any]) -> None:
        # Every option has a server default: a bare `relaycall call record` is valid.
        rec = params.setdefault("record", {})
        if isinstance(rec, dict):
            rec.setdefault("audio", {})

    s.fill = record


def _collect(sub: Subs, parents: Parents) -> None:
    s = Spec(sub, "collect", "calling.collect", "collect digits and/or speech (an operation)",
             parents=parents)  # fmt: skip
    s.flag("--digits-max", "digits.max", "collect up to N digits", type=integer)
    s.flag("--digits-terminators", "digits.terminators", "digits that end input, e.g. #")
    s.flag("--digit-timeout", "digits.digit_timeout", "seconds allowed between digits",
           type=number)  # fmt: skip
    s.parser.add_argument("--speech", action="store_true", help="collect speech too (its "
                          "options: the --speech-* flags)")  # fmt: skip
    s.flag("--speech-language", "speech.language", "e.g. en-US")
    s.flag("--speech-hints", "speech.hints", "expected phrases (comma-separated)", type=text_list)
    s.flag("--speech-end-silence-timeout", "speech.end_silence_timeout", "seconds",
           type=number)  # fmt: skip
    s.flag("--speech-timeout", "speech.speech_timeout", "seconds", type=number)
    s.flag("--speech-model", "speech.model", "recognition model")
    s.flag("--speech-engine", "speech.engine", "recognition engine",
           choices=_ops.COLLECT_SPEECH_ENGINES)  # fmt: skip
    s.flag("--initial-timeout", "initial_timeout", "seconds to wait for the first input",
           type=number)  # fmt: skip
    s.flag("--continuous", "continuous", "keep collecting after a result", boolean=True)
    s.flag("--partial-results", "partial_results", "send partial results", boolean=True)
    s.flag("--send-start-of-input", "send_start_of_input", "report the start of input",
           boolean=True)  # fmt: skip
    s.flag("--start-input-timers", "start_input_timers", "start the timers at once",
           boolean=True)  # fmt: skip
    s.status_url()
    s.waits(Collector)
    s.control_id()

    def speech(ns: argparse.Namespace, params: dict[str, Any]) -> None:
        if ns.speech:
            params.setdefault("speech", {})

    s.fill = speech


def _detect(sub: Subs, parents: Parents) -> None:
    s = Spec(sub, "detect", "calling.detect", "detect a machine, fax tone or digits "
             "(an operation)", parents=parents)  # fmt: skip
    s.positional("TYPE", "detect.type", "what to detect (default: machine)", nargs="?",
                 choices=("machine", "fax", "digit"))  # fmt: skip
    s.flag("--timeout", "timeout", "seconds detection runs (server default 30)", type=number)
    d = "detect.params."
    s.flag("--initial-timeout", d + "initial_timeout", "machine: seconds", type=number)
    s.flag("--end-silence-timeout", d + "end_silence_timeout", "machine: seconds", type=number)
    s.flag("--machine-ready-timeout", d + "machine_ready_timeout", "machine: seconds",
           type=number)  # fmt: skip
    s.flag("--machine-voice-threshold", d + "machine_voice_threshold", "machine: seconds",
           type=number)  # fmt: skip
    s.flag("--machine-words-threshold", d + "machine_words_threshold", "machine: words",
           type=integer)  # fmt: skip
    s.flag("--detect-interruptions", d + "detect_interruptions", "machine", boolean=True)
    s.flag("--detect-message-end", d + "detect_message_end", "machine: wait for the beep",
           boolean=True)  # fmt: skip
    s.flag("--tone", d + "tone", "fax: CNG or CED (default: either)", choices=("CNG", "CED"))
    s.flag("--digits", d + "digits", "digit: the digits to match")
    s.status_url()
    s.waits(Detector)
    s.control_id()

    def kind(ns: argparse.Namespace, params: dict[str, Any]) -> None:
        detect = params.get("detect")
        if ns.type is None and (not isinstance(detect, dict) or "type" not in detect):
            _set(params, "detect.type", "machine")

    s.fill = kind


def _device(text: str) -> dict[str, Any]:
    """A tap device from its URI: ``ws(s)://...`` or ``rtp://ADDR:PORT``."""
    if text.startswith("rtp://"):
        addr, _, port = text[len("rtp://") :].rpartition(":")
        try:
            number_port = int(port)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected rtp://ADDR:PORT, got {text!r}") from None
        return {"type": "rtp", "params": {"addr": addr, "port": number_port}}
    return {"type": "ws", "params": {"uri": text}}


def _tap(sub: Subs, parents: Parents) -> None:
    s = Spec(sub, "tap", "calling.tap", "copy a call's audio to a device (an operation)",
             parents=parents)  # fmt: skip
    s.positional("DEVICE", "device", "ws:// or wss:// URI, or rtp://ADDR:PORT", type=_device)
    s.flag("--direction", "tap.params.direction", "which side (default: both)",
           choices=_ops.TAP_DIRECTIONS)  # fmt: skip
    s.flag("--codec", "device.params.codec", "codec", choices=_ops.TAP_CODECS)
    s.flag("--ptime", "device.params.ptime", "rtp: packet time, ms", type=integer)
    s.status_url()
    s.control_id()

    def tap(ns: argparse.Namespace, params: dict[str, Any]) -> None:
        # Audio is the only kind, and "both" the library's default direction.
        tap = params.setdefault("tap", {})
        if isinstance(tap, dict):
            tap.setdefault("type", "audio")
            inner = tap.setdefault("params", {})
            if isinstance(inner, dict):
                inner.setdefault("direction", "both")

    s.fill = tap


def _stream(sub: Subs, parents: Parents) -> None:
    s = Spec(sub, "stream", "calling.stream", "stream a call's audio to a wss:// URL "
             "(an operation)", parents=parents)  # fmt: skip
    s.positional("URL", "url", "the wss:// endpoint")
    s.flag("--name", "name", "a name for the stream")
    s.flag("--codec", "codec", "codec")
    s.flag("--track", "track", "which audio", choices=_ops.STREAM_TRACKS)
    s.status_url()
    s.flag("--status-url-method", "status_url_method", "how --status-url is called",
           choices=("GET", "POST"))  # fmt: skip
    s.control_id()


def _transcribe(sub: Subs, parents: Parents) -> None:
    s = Spec(sub, "transcribe", "calling.transcribe", "transcribe a call (an operation)",
             parents=parents)  # fmt: skip
    s.status_url()
    s.control_id()


def _user_event(sub: Subs, parents: Parents) -> None:
    s = Spec(sub, "user-event", "calling.user_event", "fire a custom event on a call",
             parents=parents)  # fmt: skip
    s.positional("EVENT", "event", "any JSON object", type=json_object)


def _follow_ups(sub: Subs, parents: Parents) -> None:
    for action, kinds in (("pause", PAUSABLE), ("resume", PAUSABLE), ("stop", STOPPABLE)):
        s = Spec(sub, action, None, f"{action} a running operation by its control_id",
                 parents=parents, call_id=False,
                 description=f"{action.capitalize()} the operation CONTROL_ID on call CALL_ID "
                 f"(calling.KIND.{action}).")  # fmt: skip
        s.parser.add_argument("kind", metavar="KIND", choices=kinds,
                              help="the operation: " + ", ".join(kinds))  # fmt: skip
        s.parser.add_argument("call_id", metavar="CALL_ID", help="the call's id")
        s.shown[_ID] = "CALL_ID"
        s.positional("CONTROL_ID", "control_id", "the operation's control_id")
        if action == "pause":
            s.flag("--behavior", "behavior", "record: what the paused part holds",
                   choices=("skip", "silence"))  # fmt: skip
        s.parser.set_defaults(action=action)
    volume = Spec(sub, "volume", "calling.play.volume", "set a playback's volume",
                  parents=parents)  # fmt: skip
    volume.positional("CONTROL_ID", "control_id", "the playback's control_id")
    volume.positional("DB", "volume", "gain in dB (-40..40)", type=number)
    timers = Spec(sub, "start-input-timers", "calling.collect.start_input_timers",
                  "start a collect's input timers", parents=parents)  # fmt: skip
    timers.positional("CONTROL_ID", "control_id", "the collect's control_id")


def _send_any(sub: Subs, parents: Parents) -> None:
    names = sorted(BY_NAME)
    s = Spec(sub, "send", None, "send any of the 42 commands, its params from --params",
             parents=parents, call_id=False,
             description="Send any Calling API command, its params given in their wire "
             "shape with --params. They are checked by the command's typed class before "
             "anything is sent. A start command without a control_id gets a new one. "
             "Commands: " + ", ".join(names) + ".")  # fmt: skip
    s.parser.add_argument("command_name", metavar="COMMAND",
                          help="the command's name, e.g. calling.play (or play)")  # fmt: skip
    s.parser.add_argument("call_id", metavar="CALL_ID", nargs="?",
                          help="the call's id (every command but dial)")  # fmt: skip
    s.shown[_ID] = "CALL_ID"
    s.shown["id"] = "CALL_ID"
