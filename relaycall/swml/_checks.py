"""
Checks on the values SWML methods take, each a ``(path, value) -> None`` that
raises :class:`relaycall.ValidationError` naming the path and the rule.

They follow SignalWire's published SWML schema for calling (the definitions named
in each comment), and are stricter where the schema is loose in a way the
platform is not (a status_url must be an http(s) URL, a number must be finite).
Many fields take a SWML variable (``${call.from}``, ``%{vars.x}``) instead of
their typed value: the schema's ``SWMLVar``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from relaycall import _validate as v
from relaycall._validate import Check

# SWMLVar: ^[\$%]\{.*\}$ (no line break inside).
_VAR = re.compile(r"[$%]\{[^\r\n\u2028\u2029]*\}")
_VAR_TEXT = "a SWML variable (${...} or %{...})"

# play_url: ^(http://.*|https://.*|ring: ?[0-9.]*: ?[a-zA-Z]{2}|say: ?.*|silence: ?[0-9.]*
#             |ring: ?[a-zA-Z]{2})$
_ONE_LINE = r"[^\r\n\u2028\u2029]"
_PLAY_URL = re.compile(
    rf"https?://{_ONE_LINE}+|ring: ?[0-9.]*: ?[a-zA-Z]{{2}}|say: ?{_ONE_LINE}*"
    r"|silence: ?[0-9.]*|ring: ?[a-zA-Z]{2}"
)
PLAY_URL_RULE = (
    "is not a SWML play URL: give an http(s):// URL, 'say:<text>' (one line), "
    "'silence:<seconds>', 'ring:<country>' or 'ring:<seconds>:<country>', or " + _VAR_TEXT
)


def is_var(value: Any) -> bool:
    return isinstance(value, str) and _VAR.fullmatch(value) is not None


def or_var(check: Check, what: str | None = None) -> Check:
    """*check*, or a SWML variable in its place; *what* names the typed value in the rule."""

    def checked(path: str, value: Any) -> None:
        if isinstance(value, str):
            v.text_check(path, value)
            if is_var(value):
                return
            if what is not None:
                v.fail(path, value, f"must be {what} or {_VAR_TEXT}")
        check(path, value)

    return checked


def integer(lo: int | None = None, hi: int | None = None) -> Check:
    """An integer in lo..hi, or a SWML variable."""
    return or_var(v.integer_check(lo, hi, int32=False), "an integer")


def number(lo: float | None = None, hi: float | None = None) -> Check:
    """A finite number in lo..hi, or a SWML variable."""
    return or_var(v.number_check(lo, hi), "a number")


def plain_number(lo: float | None = None, hi: float | None = None) -> Check:
    """A finite number in lo..hi (the field takes no variable)."""
    return v.number_check(lo, hi)


#: true or false, or a SWML variable.
boolean = or_var(v.bool_check, "true or false")


def enum(*values: str) -> Check:
    return v.enum_check(values)


#: Any text (a lone surrogate cannot be sent).
text = v.string_check()
#: Text that must say something.
name = v.string_check(min_len=1)
#: A URL the platform calls back (the schema's ``format: uri``; relaycall asks for http(s)).
http_url = or_var(v.http_url_check)


def play_url(path: str, value: Any) -> None:
    if not isinstance(value, str):
        v.fail(path, value, "must be a string")
    v.text_check(path, value)
    if _PLAY_URL.fullmatch(value) is None and not is_var(value):
        v.fail(path, value, PLAY_URL_RULE)


def strings(item: Check = text, *, min_items: int | None = None) -> Check:
    return v.seq_check(item, min_items=min_items, what="a list of strings")


def str_map(path: str, value: Any) -> None:
    """An object of string values (the schema's RecordString)."""
    v.str_map_check()(path, value)


def json_object(path: str, value: Any) -> None:
    """A free-form JSON object (set, user_event, params, meta, global_data)."""
    v.json_object_check(path, value)


def pattern(rx: str, rule: str) -> Check:
    """A string matching *rx*, or a SWML variable."""
    return or_var(v.string_check(pattern=rx, rule=rule))


def scheme_url(*schemes: str) -> Check:
    """A URL with one of *schemes*, or a SWML variable."""
    return or_var(v.scheme_url_check(schemes))


#: A phone number in E.164, or a SWML variable (``${call.from}``).
e164 = or_var(
    v.string_check(
        pattern=r"^\+[1-9][0-9]{1,14}$",
        rule="must be an E.164 number (+ and 2-15 digits, e.g. +15557650000) or " + _VAR_TEXT,
    )
)

#: DTMF terminators (record_call, prompt).
terminators = pattern(r"^[0-9A-D*#]*$", "may hold only 0-9 A-D * #")


def closed(fields: Mapping[str, Check], required: tuple[str, ...] = ()) -> Check:
    """A closed object of *fields*, the *required* ones present."""

    def check(path: str, value: Any) -> None:
        v.closed_mapping(path, value, fields, required)

    return check
