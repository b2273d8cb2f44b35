"""
What the command line's subcommands share: exit codes, argument types, error lines.

Every failure a user can cause ends as one line on stderr, ``<prog>: error: <why>``,
and an exit status from :class:`Exit` (documented in docs/cli.md): a script can
tell "fix the request" from "fix the credentials" from "try again later" from
"find out whether it happened" without reading the message.
"""

from __future__ import annotations

import argparse
import contextlib
import enum
import json
import math
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from relaycall.errors import (
    AmbiguousOutcomeError,
    APIStatusError,
    AuthenticationError,
    PermissionDeniedError,
    RateLimitError,
    ServerError,
    TransportError,
    UsageError,
    WaitTimeoutError,
)

T = TypeVar("T")


class Exit(enum.IntEnum):
    """The exit statuses of ``relaycall call`` and ``relaycall events`` (docs/cli.md)."""

    OK = 0
    #: Something relaycall did not expect (a 2xx reply it cannot read, a bug).
    ERROR = 1
    #: A bad flag, parameter or missing credential: nothing was sent.
    USAGE = 2
    #: The API refused the command (400, 404, 409, 422...): fix the request.
    REFUSED = 3
    #: The API refused the credentials (401) or their scope (403).
    AUTH = 4
    #: The API could not be reached or kept failing (connection, timeout, 429, 5xx):
    #: the command was not carried out, or was one that is safe to send again.
    UNAVAILABLE = 5
    #: A command that must not be sent twice (a dial...) may or may not have run.
    AMBIGUOUS = 6
    #: ``--wait``: the command was carried out, but its operation did not finish in time.
    WAIT_TIMEOUT = 7
    #: Interrupted (Ctrl-C).
    INTERRUPTED = 130


def exit_code_for(exc: BaseException) -> Exit:
    """The exit status for an exception a command ended with."""
    if isinstance(exc, AmbiguousOutcomeError):
        return Exit.AMBIGUOUS
    if isinstance(exc, WaitTimeoutError):
        return Exit.WAIT_TIMEOUT
    if isinstance(exc, AuthenticationError | PermissionDeniedError):
        return Exit.AUTH
    if isinstance(exc, RateLimitError | ServerError | TransportError):
        return Exit.UNAVAILABLE
    if isinstance(exc, APIStatusError):
        return Exit.REFUSED
    if isinstance(exc, UsageError):
        return Exit.USAGE
    return Exit.ERROR


def fail(prog: str, message: str, code: Exit = Exit.USAGE) -> int:
    """Print ``<prog>: error: <message>`` (one line) on stderr and return *code*."""
    line = " ".join(message.split())  # one line, whatever the message held
    print(f"{prog}: error: {line}", file=sys.stderr)  # noqa: T201
    return int(code)


# --- argument types: a bad value is argparse's usage and one error line, status 2 -----------


def _typed(parse: Callable[[str], T], expected: str) -> Callable[[str], T]:
    def convert(text: str) -> T:
        try:
            return parse(text)
        except (ValueError, OverflowError):
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}") from None

    convert.__name__ = expected  # what argparse would name in its own messages
    return convert


def _finite(text: str) -> int | float:
    # A whole number stays an int, so it is sent (and shown in errors) as typed.
    with contextlib.suppress(ValueError):
        return int(text)
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(text)
    return value


#: A finite number (``1``, ``2.5``, ``-3``).
number = _typed(_finite, "a number")
#: A whole number.
integer = _typed(int, "a whole number")


def seconds(text: str) -> int | float:
    """A number of seconds > 0."""
    value = number(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a number of seconds > 0, not {text!r}")
    return value


def address(text: str) -> tuple[str, int]:
    """``[HOST:]PORT`` to listen on (the host defaults to 127.0.0.1; port 0 picks a free one)."""
    host, _, port = text.rpartition(":")
    try:
        number_ = int(port)
    except ValueError:
        number_ = -1
    if not 0 <= number_ <= 65535:
        raise argparse.ArgumentTypeError(f"expected [HOST:]PORT, got {text!r}")
    return host.strip("[]") or "127.0.0.1", number_


def count(text: str) -> int:
    """A whole number >= 0."""
    value = integer(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, not {text!r}")
    return value


def text_list(text: str) -> list[str]:
    """A comma-separated list (``created,answered``); empty items are dropped."""
    return [item.strip() for item in text.split(",") if item.strip()]


def json_value(text: str) -> Any:
    """Any JSON value, given inline."""
    try:
        return json.loads(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not valid JSON ({exc})") from None


def json_object(text: str) -> dict[str, Any]:
    """A JSON object, given inline."""
    value = json_value(text)
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"must be a JSON object, not {text!r}")
    return value


def text_or_json_object(text: str) -> str | dict[str, Any]:
    """A JSON object when the text starts with ``{``, the text itself otherwise."""
    return json_object(text) if text.lstrip().startswith("{") else text


def params_source(text: str) -> dict[str, Any]:
    """
    ``--params``: a JSON object inline, ``@FILE`` to read it from a file, ``-`` from stdin.
    """
    if text == "-":
        source, raw = "stdin", sys.stdin.read()
    elif text.startswith("@"):
        source = text[1:]
        try:
            raw = Path(source).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            raise argparse.ArgumentTypeError(f"cannot read {source}: {reason}") from None
    else:
        source, raw = "", text
    try:
        value = json.loads(raw)
    except ValueError as exc:
        where = f" in {source}" if source else ""
        raise argparse.ArgumentTypeError(f"not valid JSON{where} ({exc})") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError("must be a JSON object (the command's params)")
    return value


def json_line(value: Any) -> str:
    """*value* as one line of JSON (``jq`` and JSON Lines readers take it)."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def print_json(value: Any) -> None:
    """One JSON object on one line of stdout."""
    output(json_line(value))


def output(line: str) -> bool:
    """
    Print *line* on stdout; False when nobody reads it any more.

    ``relaycall ... | head -1`` closes the pipe after a line: that is the reader
    being done, not an error worth a traceback. stdout then points at /dev/null,
    so the interpreter's own flush at exit does not fail either.
    """
    try:
        print(line, flush=True)  # noqa: T201
    except BrokenPipeError:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
        return False
    return True
