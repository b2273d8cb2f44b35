"""
attrs validators that raise ValidationError with a field path, the value and the rule.

Each validator is built once per field at import and called on every
construction, so the checks stay a few isinstance calls deep. A field whose
default is None is optional: None passes every validator on it.
"""

from __future__ import annotations

import math
import re
import sys
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from typing import Any, NoReturn

import attrs

from relaycall.errors import ValidationError

Validator = Callable[[Any, "attrs.Attribute[Any]", Any], None]
# A check on a value at a path; used for nested data that is not an attrs class.
Check = Callable[[str, Any], None]


def path_of(inst: Any, attribute: attrs.Attribute[Any]) -> str:
    return f"{type(inst)._label}.{attribute.name}"


def fail(path: str, value: Any, rule: str, *, secret: bool = False) -> NoReturn:
    raise ValidationError(path, value, rule, secret=secret)


def fail_rule(path: str, rule: str) -> NoReturn:
    """A rule across fields (``exactly one of url or swml``): no single value to show."""
    raise ValidationError(path, None, rule, show_value=False)


def field_validator(check: Check) -> Validator:
    """Turn a path-based check into an attrs validator that lets None through on optional fields."""

    # The field's path for each class that has it (a base class's field is also its
    # subclasses'): built once, not formatted again on every construction.
    paths: dict[type, str] = {}

    def validate(inst: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
        if value is None:
            # An optional field (default None) takes None. Checked inline: most of a
            # command's fields are unset, and this runs for each on every construction.
            if attribute.default is None:
                return
            fail_rule(path_of(inst, attribute), "is required")
        path = paths.get(type(inst))
        if path is None:
            path = paths[type(inst)] = path_of(inst, attribute)
        try:
            check(path, value)
        except ValidationError as exc:
            # Each frame of the check holds the value (a SWML document with a SIP
            # password, a SWAIG object with a webhook password): a traceback with
            # captured locals (pytest --showlocals, an error tracker) would print
            # it once per frame. Drop those frames and this one's reference; the
            # message names the path and masks secrets.
            del value
            raise exc.with_traceback(None)  # noqa: B904 - the same exception, re-raised

    return validate


# --- checks on plain values -------------------------------------------------------


#: The API's integers are int32 unless a field states its own range (reference, "Conventions").
INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1
# JSON numbers are doubles to the server; an int past this is no number it can read
# (and past 4300 digits json.dumps refuses it outright).
_FLOAT_MAX = sys.float_info.max


def is_number(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return -_FLOAT_MAX <= value <= _FLOAT_MAX
    return isinstance(value, float) and math.isfinite(value)


def _too_big(value: Any) -> bool:
    """An int too large for a JSON number (a double)."""
    return isinstance(value, int) and not -_FLOAT_MAX <= value <= _FLOAT_MAX


def _range_text(lo: float | None, hi: float | None, *, lo_open: bool) -> str:
    if lo is not None and hi is not None:
        return f"is outside {_num(lo)}..{_num(hi)}"
    if lo is not None:
        return f"must be {'>' if lo_open else '>='} {_num(lo)}"
    return f"must be <= {_num(hi)}"


def _num(x: float | None) -> str:
    return str(int(x)) if x is not None and float(x).is_integer() else str(x)


def number_check(
    lo: float | None = None, hi: float | None = None, *, lo_open: bool = False
) -> Check:
    def check(path: str, value: Any) -> None:
        if not is_number(value):
            fail(
                path,
                value,
                "is too large for a JSON number" if _too_big(value) else "must be a number",
            )
        if (lo is not None and (value <= lo if lo_open else value < lo)) or (
            hi is not None and value > hi
        ):
            fail(path, value, _range_text(lo, hi, lo_open=lo_open))

    return check


def integer_check(lo: int | None = None, hi: int | None = None, *, int32: bool = True) -> Check:
    """An integer in lo..hi; also within int32 (the API's integer) unless *int32* is false."""

    def check(path: str, value: Any) -> None:
        if not isinstance(value, int) or isinstance(value, bool):
            fail(path, value, "must be an integer")
        if (lo is not None and value < lo) or (hi is not None and value > hi):
            fail(path, value, _range_text(lo, hi, lo_open=False))
        if int32 and not INT32_MIN <= value <= INT32_MAX:
            fail(path, value, "is outside the 32-bit integer range the API uses")
        if _too_big(value):
            fail(path, value, "is too large for a JSON number")

    return check


def is_text(value: str) -> bool:
    """
    Whether a str is real Unicode text, which UTF-8 (JSON, a header, an HMAC) can carry.

    A lone surrogate (JSON's ``\\ud800`` escape decodes to one) cannot be.
    """
    if value.isascii():
        return True
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def text_check(path: str, value: str, *, secret: bool = False) -> None:
    """A str that is real Unicode text: a lone surrogate cannot be sent as UTF-8 JSON."""
    if not is_text(value):
        # Raised outside is_text: the encode error, whose frame holds the value
        # (a password, say), is not chained to the ValidationError.
        fail(path, value, "is not valid Unicode text (it holds a lone surrogate)", secret=secret)


def bool_check(path: str, value: Any) -> None:
    if not isinstance(value, bool):
        fail(path, value, "must be true or false")


def string_check(
    *,
    min_len: int | None = None,
    pattern: str | None = None,
    rule: str | None = None,
    secret: bool = False,
) -> Check:
    # A trailing "$" would accept "value\n"; the API's patterns mean end of string.
    rx = (
        re.compile(pattern[:-1] + r"\Z" if pattern and pattern.endswith("$") else pattern)
        if pattern
        else None
    )

    def check(path: str, value: Any) -> None:
        if not isinstance(value, str):
            fail(path, value, "must be a string", secret=secret)
        text_check(path, value, secret=secret)
        if min_len is not None and len(value) < min_len:
            fail(path, value, "must not be empty" if min_len == 1 else f"needs >= {min_len} chars")
        if rx is not None and rx.search(value) is None:
            fail(path, value, rule or f"must match {pattern}", secret=secret)

    return check


def enum_check(values: Iterable[Any]) -> Check:
    allowed = tuple(values)
    allowed_set = frozenset(allowed)
    listing = ", ".join(repr(v) for v in allowed)
    if len(allowed) > 12:
        listing = ", ".join(repr(v) for v in allowed[:12]) + ", …"

    def check(path: str, value: Any) -> None:
        try:
            ok = value in allowed_set and not isinstance(value, bool)
        except TypeError:  # unhashable
            ok = False
        # 1 == 1.0 == True in Python, but "1" must not pass for a string enum.
        if not ok or (isinstance(allowed[0], str) and not isinstance(value, str)):
            fail(path, value, f"is not one of {listing}")

    return check


_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")


def uuid_check(path: str, value: Any) -> None:
    if not isinstance(value, str) or _UUID.fullmatch(value) is None:
        fail(path, value, "is not a UUID (the API names calls by UUID)")


_HTTP_URL = re.compile(r"https?://[^\s/?#]+\S*")


def http_url_check(path: str, value: Any) -> None:
    if not isinstance(value, str):
        fail(path, value, "must be a string")
    text_check(path, value)
    if _HTTP_URL.fullmatch(value) is None:
        fail(path, value, "must be an http:// or https:// URL")


_URI = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*:\S+")


def uri_check(path: str, value: Any) -> None:
    if not isinstance(value, str):
        fail(path, value, "must be a string")
    text_check(path, value)
    if _URI.fullmatch(value) is None:
        fail(path, value, "must be an absolute URI")


def scheme_url_check(schemes: Sequence[str], rule: str | None = None) -> Check:
    rx = re.compile(r"(?:" + "|".join(re.escape(s) for s in schemes) + r")://[^\s/?#]+\S*")
    rule = rule or "must be a " + " or ".join(f"{s}://" for s in schemes) + " URL"

    def check(path: str, value: Any) -> None:
        if not isinstance(value, str):
            fail(path, value, "must be a string")
        text_check(path, value)
        if rx.fullmatch(value) is None:
            fail(path, value, rule)

    return check


def seq_check(item: Check, *, min_items: int | None = None, what: str = "a list") -> Check:
    def check(path: str, value: Any) -> None:
        if not isinstance(value, list | tuple):
            fail(path, value, f"must be {what}")
        if min_items is not None and len(value) < min_items:
            fail(path, value, f"needs at least {min_items} item{'s' if min_items > 1 else ''}")
        for i, v in enumerate(value):
            item(f"{path}[{i}]", v)

    return check


# --- addresses (reference §4.1: dial's from, to and caller_id; §4.4: transfer's dest) --------

_E164 = re.compile(r"\+[1-9][0-9]{1,14}")
# A URI scheme and something after it, with no white space: the server parses the rest.
_URI_FORMS = {
    "sip": re.compile(r"sips?:\S+", re.IGNORECASE),
    "verto": re.compile(r"verto:\S+", re.IGNORECASE),
    "client": re.compile(r"client:\S+", re.IGNORECASE),
    "fabric": re.compile(r"/\S+"),
    "url": re.compile(r"https?://\S+", re.IGNORECASE),
    # A SIP/Verto caller-id token: a name, not a number (numbers are E.164).
    "token": re.compile(r"[A-Za-z][A-Za-z0-9._-]{0,63}"),
}
_FORM_TEXT = {
    "sip": "a sip:/sips: URI",
    "verto": "a verto: URI",
    "client": "a client: address",
    "fabric": "a fabric address (/private/...)",
    "url": "an http(s) URL returning SWML",
    "token": "a caller-id name",
}
_NUMBERISH = re.compile(r"[+0-9 ().\-]+")


def address_check(*forms: str) -> Check:
    """
    A phone number in E.164 (``+15557650000``) or one of the other *forms* the field takes.

    Forms: ``sip`` (``sip:``/``sips:`` URI), ``verto``, ``client``, ``fabric``
    (``/private/...``), ``url`` (http/https) and ``token`` (a caller-id name
    that starts with a letter). A number written with spaces, dashes or
    without ``+`` is refused with a hint, not sent for the server to refuse.
    """
    patterns = tuple(_URI_FORMS[f] for f in forms)
    named = ["an E.164 number (+ and 2-15 digits, e.g. +15557650000)"]
    named += [_FORM_TEXT[f] for f in forms]
    listing = ", ".join(named[:-1]) + " or " + named[-1]

    def check(path: str, value: Any) -> None:
        if not isinstance(value, str):
            fail(path, value, "must be a string")
        text_check(path, value)
        if not value:
            fail(path, value, "must not be empty")
        if _E164.fullmatch(value) or any(p.fullmatch(value) for p in patterns):
            return
        if _NUMBERISH.fullmatch(value) and any(ch.isdigit() for ch in value):
            fail(path, value, _number_hint(value))
        fail(path, value, f"is not an address the API takes: give {listing}")

    return check


def _number_hint(value: str) -> str:
    """What is wrong with a phone number that is not E.164, and how to write it."""
    digits = "".join(ch for ch in value if ch.isdigit())
    if not value.startswith("+"):
        return f"is not an E.164 number: write it with + and the country code (+<cc>{digits})"
    if not 2 <= len(digits) <= 15 or digits[0] == "0":
        return "is not an E.164 number: + then 2-15 digits, the first not 0"
    return f"is not an E.164 number: write it as +{digits}, with no spaces or punctuation"


def instance_check(types: type | tuple[type, ...], what: str) -> Check:
    def check(path: str, value: Any) -> None:
        if not isinstance(value, types):
            fail(path, value, f"must be {what}")

    return check


def any_of(*checks: Check, rule: str) -> Check:
    """Pass if any check passes; otherwise report *rule*, or the only relevant failure."""

    def check(path: str, value: Any) -> None:
        for c in checks:
            try:
                c(path, value)
            except ValidationError:
                continue
            return
        fail(path, value, rule)

    return check


def json_object_check(path: str, value: Any) -> None:
    """A free-form JSON object: string keys, JSON-encodable values."""
    if not isinstance(value, Mapping):
        fail(path, value, "must be a JSON object (a dict)")
    _json_value(path, value, 0)


def _json_value(path: str, value: Any, depth: int) -> None:
    if depth > 64:
        fail(path, "…", "is nested too deeply")
    if value is None or isinstance(value, bool):
        return
    if isinstance(value, str):
        text_check(path, value)
        return
    if isinstance(value, int):
        if _too_big(value):
            fail(path, value, "is too large for a JSON number")
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            fail(path, value, "is not a finite number (JSON has no NaN or Infinity)")
        return
    if isinstance(value, Mapping):
        for k, v in value.items():
            if not isinstance(k, str):
                fail(path, k, "has a key that is not a string")
            text_check(path, k)
            _json_value(f"{path}.{k}", v, depth + 1)
        return
    if isinstance(value, list | tuple):
        for i, v in enumerate(value):
            _json_value(f"{path}[{i}]", v, depth + 1)
        return
    fail(path, value, "is not JSON-serializable")


def str_map_check(
    *, max_items: int | None = None, key: Check | None = None, value: Check | None = None
) -> Check:
    def check(path: str, obj: Any) -> None:
        if not isinstance(obj, Mapping):
            fail(path, obj, "must be a dict of strings")
        if max_items is not None and len(obj) > max_items:
            fail(path, f"{len(obj)} entries", f"is more than the {max_items} allowed")
        for k, v in obj.items():
            if not isinstance(k, str):
                fail(path, k, "has a key that is not a string")
            text_check(path, k)
            if key is not None:
                key(f"{path}.{k}", k)
            if not isinstance(v, str):
                fail(f"{path}.{k}", v, "must be a string")
            text_check(f"{path}.{k}", v)
            if value is not None:
                value(f"{path}.{k}", v)

    return check


def model_check(cls: type | tuple[type, ...], what: str) -> Check:
    """An already-validated model instance of *cls* (its own validators ran on construction)."""
    return instance_check(cls, what)


def closed_mapping(
    path: str, value: Any, fields: Mapping[str, Check], required: Collection[str] = ()
) -> None:
    """A closed JSON object: only *fields*, each checked, *required* present."""
    if not isinstance(value, Mapping):
        fail(path, value, "must be an object (a dict)")
    for k in required:
        if k not in value:
            fail_rule(f"{path}.{k}", "is required")
    for k, v in value.items():
        if not isinstance(k, str):
            fail(path, k, "has a key that is not a string")
        c = fields.get(k)
        if c is None:
            allowed = ", ".join(sorted(fields))
            fail_rule(f"{path}.{k}", f"is not an allowed key here (allowed: {allowed})")
        c(f"{path}.{k}", v)


# --- attrs validator constructors ---------------------------------------------------
# Thin wrappers so field declarations read as rules: field(validator=v.number(-40, 40)).


def number(lo: float | None = None, hi: float | None = None, *, lo_open: bool = False) -> Validator:
    return field_validator(number_check(lo, hi, lo_open=lo_open))


def integer(lo: int | None = None, hi: int | None = None) -> Validator:
    return field_validator(integer_check(lo, hi))


def boolean() -> Validator:
    return field_validator(bool_check)


def string(
    *,
    min_len: int | None = None,
    pattern: str | None = None,
    rule: str | None = None,
    secret: bool = False,
) -> Validator:
    return field_validator(string_check(min_len=min_len, pattern=pattern, rule=rule, secret=secret))


def one_of(*values: Any) -> Validator:
    return field_validator(enum_check(values))


def uuid() -> Validator:
    return field_validator(uuid_check)


def http_url() -> Validator:
    return field_validator(http_url_check)


def uri() -> Validator:
    return field_validator(uri_check)


def check(c: Check) -> Validator:
    return field_validator(c)
