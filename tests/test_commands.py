"""
Every typed command: exact wire bodies, the JSON Schema, validation rules, and properties.

The example and invalid-case tables live in tests/_command_examples.py. The
hypothesis properties check that (a) valid parameters always build a body the
schema accepts, and (b) one arbitrary value in any field either still builds a
body the schema accepts (and that can be sent as UTF-8 JSON) or raises
relaycall.ValidationError, never anything else.
"""

from __future__ import annotations

import copy
import json
import re
import types
from collections.abc import Callable, Iterator, Mapping
from enum import Enum
from typing import Any, cast

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.strategies import SearchStrategy

import relaycall
from relaycall import ValidationError
from relaycall import commands as c
from relaycall._commands._base import FollowUp, call_id_field, command
from relaycall.commands import BY_NAME, Command, Idempotency, Model
from tests._command_examples import (
    BRANCH_VALIDATORS,
    BRANCHES,
    DELETE,
    EXAMPLES,
    EXAMPLES_BY_ID,
    INVALID,
    SCHEMA,
    VALIDATOR,
    Example,
    Invalid,
)
from tests.conftest import CALL_ID

COMMAND_CLASSES: list[type[Command[Any]]] = list(BY_NAME.values())
MODEL_CLASSES: list[type[Model]] = sorted(
    (
        obj
        for obj in vars(c).values()
        if isinstance(obj, type)
        and issubclass(obj, Model)
        and not issubclass(obj, Command)
        and obj is not Model
    ),
    key=lambda t: t.__name__,
)
# Free-form JSON a caller supplies; null is a legitimate value inside these.
FREE_FORM_KEYS = frozenset(
    {"swml", "to_script", "dest", "event", "custom_parameters", "global_data", "custom_variables"}
)


def _send_bytes(body: Any) -> bytes:
    """Encode a body the way AsyncRelay does; raises if it could not go on the wire."""
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()


def _assert_valid(body: dict[str, Any]) -> None:
    errors = sorted(VALIDATOR.iter_errors(body), key=lambda e: list(e.absolute_path))
    assert not errors, [f"{list(e.absolute_path)}: {e.message}" for e in errors[:3]]
    BRANCH_VALIDATORS[body["command"]].validate(body)


def _assert_no_nulls(value: Any, path: str = "") -> None:
    """Unset optionals are omitted, never null (free-form user JSON aside)."""
    assert value is not None, f"null at {path or 'top level'}"
    if isinstance(value, dict):
        for k, v in value.items():
            if k not in FREE_FORM_KEYS:
                _assert_no_nulls(v, f"{path}.{k}")
    elif isinstance(value, list):
        for i, v in enumerate(value):
            _assert_no_nulls(v, f"{path}[{i}]")


def _fields(cls: type) -> tuple[attrs.Attribute[Any], ...]:
    return attrs.fields(cast("Any", cls))  # type: ignore[no-any-return]


def _cases(table: list[Any]) -> pytest.MarkDecorator:
    return pytest.mark.parametrize("case", table, ids=[t.id for t in table])


# ====================================================================================
# 1. Exact wire bodies
# ====================================================================================


@_cases(EXAMPLES)
def test_exact_wire_body(case: Example) -> None:
    """to_wire() is exactly the body written out in the table."""
    body = case.command.to_wire()
    assert body == case.wire
    assert ("id" in body) == (body["command"] not in ("dial", "update"))
    assert json.loads(_send_bytes(body)) == body
    _assert_no_nulls(body)


@_cases(EXAMPLES)
def test_example_body_validates_against_schema(case: Example) -> None:
    """Every example command's wire body validates against the vendored API schema."""
    _assert_valid(case.wire)


@_cases(EXAMPLES)
def test_example_body_matches_only_its_own_branch(case: Example) -> None:
    """The body fits its command's ``$defs/Call*Request`` branch and no other."""
    command = case.wire["command"]
    assert BRANCH_VALIDATORS[command].is_valid(case.wire)
    others = [name for name, val in BRANCH_VALIDATORS.items() if val.is_valid(case.wire)]
    assert others == [command]


def _optional_fields(cls: type) -> list[attrs.Attribute[Any]]:
    """Fields the caller may leave out (default None), control_id factories aside."""
    return [a for a in _fields(cls) if a.default is None]


# Exactly-one-of / at-least-one-of pairs: a /full example can set only one side.
_EXCLUSIVE = {(c.Dial, "swml"), (c.Update, "swml")}
# Optional fields a /min example must still set to satisfy a cross-field rule.
_NEEDED = {(c.Dial, "url"), (c.Dial, "to"), (c.Update, "url"), (c.Collect, "digits")}


@pytest.mark.parametrize("cls", COMMAND_CLASSES, ids=list(BY_NAME))
def test_every_command_has_min_and_full_examples(cls: type[Command[Any]]) -> None:
    """Every command has a /min example, and a /full one when it has optional fields."""
    assert f"{cls.command_name}/min" in EXAMPLES_BY_ID
    if _optional_fields(cls):
        assert f"{cls.command_name}/full" in EXAMPLES_BY_ID


def _models_in(value: Any) -> list[Any]:
    if isinstance(value, Model):
        return [value]
    if isinstance(value, list | tuple):
        return [m for v in value for m in _models_in(v)]
    return []


@pytest.mark.parametrize("example_id", [e.id for e in EXAMPLES if e.id.endswith("/full")])
def test_full_examples_set_every_optional_field(example_id: str) -> None:
    """A /full example leaves no optional field unset, in the command or its models."""
    cmd = EXAMPLES_BY_ID[example_id].command
    pending: list[Any] = [cmd]
    while pending:
        obj = pending.pop()
        for a in _fields(type(obj)):
            value = getattr(obj, a.name)
            if (type(obj), a.name) in _EXCLUSIVE:
                continue
            assert value is not None, f"{type(obj).__name__}.{a.name} is unset"
            pending.extend(_models_in(value))


@pytest.mark.parametrize("example_id", [e.id for e in EXAMPLES if e.id.endswith("/min")])
def test_min_examples_set_only_required_fields(example_id: str) -> None:
    """A /min example sets no optional field but those a cross-field rule needs."""
    cmd = EXAMPLES_BY_ID[example_id].command
    for a in _optional_fields(type(cmd)):
        if (type(cmd), a.name) not in _NEEDED:
            assert getattr(cmd, a.name) is None, a.name


def test_by_name_equals_schema_command_enum() -> None:
    """The registry holds exactly the commands the vendored API schema names, one class each."""
    enum = SCHEMA["properties"]["command"]["enum"]
    assert len(enum) == len(set(enum))
    assert set(BY_NAME) == set(enum) == set(BRANCHES)
    assert len(set(COMMAND_CLASSES)) == len(BY_NAME)
    for name, cls in BY_NAME.items():
        assert cls.command_name == name


def test_schema_branches_are_one_per_command() -> None:
    """Each oneOf branch names exactly one command; the names are Call*Request."""
    assert len(SCHEMA["oneOf"]) == len(SCHEMA["properties"]["command"]["enum"])
    assert all(re.fullmatch(r"Call\w+Request", n) for n in BRANCHES.values())
    assert len(set(BRANCHES.values())) == len(BRANCHES)


@pytest.fixture
def registry() -> Iterator[dict[str, type[Command[Any]]]]:
    """BY_NAME, restored after the test (a test may define commands of its own)."""
    saved = dict(BY_NAME)
    yield BY_NAME
    BY_NAME.clear()
    BY_NAME.update(saved)


def _define(name: str) -> type[Command[Any]]:
    """Define a one-field command class called ``Defined`` with wire name *name*."""

    @command(name, label="defined", idempotency=Idempotency.SAFE)
    @attrs.frozen(kw_only=True)
    class Defined(Command[Any]):
        call_id: str = call_id_field()

    return Defined


def test_a_command_class_registers_itself_by_its_wire_name(
    registry: dict[str, type[Command[Any]]],
) -> None:
    """Defining a command class is all it takes to be in BY_NAME; no list names it."""
    defined = _define("calling.defined")
    assert registry["calling.defined"] is defined
    assert defined(call_id=CALL_ID).to_wire() == {
        "command": "calling.defined",
        "id": CALL_ID,
        "params": {},
    }


def test_a_duplicate_wire_name_fails_where_the_class_is_defined(
    registry: dict[str, type[Command[Any]]],
) -> None:
    """A second class taking a registered wire name raises, naming both; the first stays."""
    with pytest.raises(TypeError, match=r"'calling\.play'.*media\.Play and .*Defined"):
        _define("calling.play")
    assert registry["calling.play"] is c.Play


def test_the_same_class_defined_again_replaces_itself(
    registry: dict[str, type[Command[Any]]],
) -> None:
    """Re-running a class definition (a reloaded module) is not a duplicate."""
    first = _define("calling.defined")
    second = _define("calling.defined")
    assert first is not second
    assert registry["calling.defined"] is second


def test_top_level_id_only_for_calling_commands() -> None:
    """
    Exactly the calling.* commands carry the call id at the top level, as the schema requires id for
    exactly those branches.
    """
    for name, cls in BY_NAME.items():
        assert cls._top_level_id == name.startswith("calling."), name
        required = SCHEMA["$defs"][BRANCHES[name]].get("required", [])
        assert ("id" in required) == cls._top_level_id, name


# --- control_id generation --------------------------------------------------------------

_FACTORY: type = type(attrs.Factory(list))
GENERATING = [
    cls
    for cls in COMMAND_CLASSES
    if any(a.name == "control_id" and isinstance(a.default, _FACTORY) for a in _fields(cls))
]


def test_which_commands_generate_a_control_id() -> None:
    """Start commands generate one; follow-ups and fax stops must be given one."""
    assert {cls.command_name for cls in GENERATING} == {
        "calling.play",
        "calling.record",
        "calling.collect",
        "calling.detect",
        "calling.tap",
        "calling.transcribe",
        "calling.stream",
    }
    for cls in GENERATING:
        assert cls._idempotency is Idempotency.START


def _without_control_id(cls: type[Command[Any]]) -> Command[Any]:
    """Rebuild the /min example of *cls* with control_id left to the factory."""
    base = EXAMPLES_BY_ID[f"{cls.command_name}/min"].command
    kwargs = {a.name: getattr(base, a.name) for a in _fields(cls) if a.name != "control_id"}
    return cls(**kwargs)


@pytest.mark.parametrize("cls", GENERATING, ids=[c.command_name for c in GENERATING])
def test_generated_control_id(cls: type[Command[Any]]) -> None:
    """
    A start command built without a control_id gets a 16-character URL-safe one, kept by the
    instance (every to_wire() repeats it) and new for each instance; the body is valid.
    """
    one, two = _without_control_id(cls), _without_control_id(cls)
    cid = one.to_wire()["params"]["control_id"]
    assert re.fullmatch(r"[A-Za-z0-9_-]{16}", cid)
    assert cid == one.control_id  # type: ignore[attr-defined]
    assert two.to_wire()["params"]["control_id"] != cid
    assert [one.to_wire() for _ in range(3)] == [one.to_wire()] * 3
    _assert_valid(one.to_wire())


_FOLLOW_UPS = sorted(
    (cls for cls in BY_NAME.values() if issubclass(cls, FollowUp)), key=lambda k: k.command_name
)


@pytest.mark.parametrize("cls", _FOLLOW_UPS, ids=lambda k: k.command_name)
def test_follow_up_built_from_handle_ids_equals_the_checked_one(cls: type[Any]) -> None:
    """FollowUp._of (what handles use) builds exactly what the validating constructor builds."""
    names = [a.name for a in attrs.fields(cls)]
    assert cls._ids_only == (names == ["call_id", "control_id"])
    try:
        expected = cls(call_id=CALL_ID, control_id="pb-1")
    except (ValidationError, TypeError) as exc:
        # A class with another required field takes the validating path.
        with pytest.raises(type(exc), match=re.escape(str(exc))):
            cls._of(CALL_ID, "pb-1")
        return
    built = cls._of(CALL_ID, "pb-1")
    assert built == expected
    assert built.to_wire() == expected.to_wire()


def test_new_control_id_is_16_url_safe_chars_and_unique() -> None:
    """new_control_id() gives 16 URL-safe characters and no repeat in 1,000 calls."""
    ids = {c.new_control_id() for _ in range(1000)}
    assert len(ids) == 1000
    assert all(re.fullmatch(r"[A-Za-z0-9_-]{16}", i) for i in ids)


# ====================================================================================
# 3. Invalid constructions
# ====================================================================================


@_cases(INVALID)
def test_invalid_raises_validation_error(case: Invalid) -> None:
    """
    Each invalid construction raises ValidationError itself (no other exception) with the expected
    message, its path first.
    """
    with pytest.raises(ValidationError) as info:
        case.build()
    exc = info.value
    assert type(exc) is ValidationError
    assert str(exc).startswith(case.message), str(exc)
    assert exc.path == case.message.split(": ", 1)[0]


def _mutated(case: Invalid) -> dict[str, Any]:
    assert case.mutation is not None
    example_id, path, value = case.mutation
    body = copy.deepcopy(EXAMPLES_BY_ID[example_id].wire)
    target: Any = body
    for step in path[:-1]:
        target = target[step]
    if value is DELETE:
        del target[path[-1]]
    elif isinstance(target, list) and path[-1] == len(target):
        target.append(value)
    else:
        target[path[-1]] = value
    return body


@_cases([i for i in INVALID if i.mutation is not None])
def test_schema_agrees_on_the_same_bad_value(case: Invalid) -> None:
    """
    The same mistake written into a valid body by hand: the schema rejects it too,
    or (``accepts``) it is a rule only the reference's prose states.
    """
    assert case.mutation is not None
    _assert_valid(EXAMPLES_BY_ID[case.mutation[0]].wire)
    body = _mutated(case)
    assert VALIDATOR.is_valid(body) == (case.schema == "accepts")
    assert BRANCH_VALIDATORS[body["command"]].is_valid(body) == (case.schema == "accepts")


@pytest.mark.parametrize("name", list(BY_NAME))
def test_every_command_has_three_invalid_cases(name: str) -> None:
    """Every command has at least three invalid-construction cases."""
    assert sum(1 for i in INVALID if i.id.startswith(f"{name}/")) >= 3


def test_invalid_ids_are_unique() -> None:
    """The invalid cases' ids, and the examples' ids, are each unique."""
    ids = [i.id for i in INVALID]
    assert len(ids) == len(set(ids))
    assert len({e.id for e in EXAMPLES}) == len(EXAMPLES)


# --- regressions: inputs that used to escape as something other than ValidationError -----

_HUGE = 10**5000  # str() of this raises ValueError (int max str digits)


@pytest.mark.parametrize(
    ("build", "path"),
    [
        (lambda: c.Play(call_id=CALL_ID, play=[], volume=_HUGE), "play.volume"),
        (lambda: c.Play(call_id=CALL_ID, play=[], loop=_HUGE), "play.loop"),
        (lambda: c.Play(call_id=CALL_ID, play=[_HUGE]), "play.play[0]"),  # type: ignore[list-item]
        (lambda: c.AIHold(call_id=CALL_ID, timeout=_HUGE), "ai_hold.timeout"),
        (lambda: c.Dial(from_="a", to="+15557650000", url="u", codecs=[_HUGE]), "dial.codecs"),  # type: ignore[list-item]
        (lambda: c.Dial(from_="a", to="+1555", url="u", custom_variables={_HUGE: "x"}), "dial"),  # type: ignore[dict-item]
        (lambda: c.UserEvent(call_id=CALL_ID, event={"n": _HUGE}), "user_event.event.n"),
        (
            lambda: c.Detect(call_id=CALL_ID, detect=c.DetectMachine(initial_timeout=10**400)),
            "detect.machine.initial_timeout",
        ),
        (lambda: c.AISidecar(call_id=CALL_ID, lang="en", swaig={_HUGE: 1}), "ai_sidecar.swaig"),  # type: ignore[dict-item]
        (lambda: c.AISidecar(call_id=CALL_ID, lang="en", prompt={_HUGE: 1}), "ai_sidecar.prompt"),  # type: ignore[dict-item]
        (lambda: c.Transfer(call_id=CALL_ID, dest={_HUGE: 1}), "transfer.dest"),  # type: ignore[dict-item]
        (
            lambda: c.Transfer(call_id=CALL_ID, dest={"sections": {_HUGE: []}}),
            "transfer.dest",
        ),
    ],
)
def test_huge_numbers_raise_validation_error(build: Callable[[], object], path: str) -> None:
    """
    Integers too long to print (past Python's digit limit) raise ValidationError at their path
    instead of escaping as ValueError, and the error itself prints.
    """
    with pytest.raises(ValidationError) as info:
        build()
    assert type(info.value) is ValidationError
    assert info.value.path.startswith(path)
    str(info.value)


def test_integers_stay_in_the_apis_int32_range() -> None:
    """The reference types integers as int32 unless a range says otherwise."""
    assert c.Play(call_id=CALL_ID, play=[], loop=2**31 - 1).to_wire()["params"]["loop"] == 2**31 - 1
    with pytest.raises(ValidationError, match=r"^play\.loop: 2147483648 is outside"):
        c.Play(call_id=CALL_ID, play=[], loop=2**31)
    with pytest.raises(ValidationError, match=r"^live_transcribe\.start\.speech_timeout: "):
        c.LiveTranscribeStart(lang="en", direction=["local-caller"], speech_timeout=-(2**31) - 1)


_SURROGATE = "a\ud800b"


@pytest.mark.parametrize(
    ("build", "path"),
    [
        (lambda: c.Play(call_id=CALL_ID, play=[relaycall.tts(_SURROGATE)]), "tts.text"),
        (
            lambda: c.Dial(from_="a", to="+1555", url="u", custom_variables={"k": _SURROGATE}),
            "dial.custom_variables.k",
        ),
        (lambda: c.Dial(from_=_SURROGATE, to="+1555", url="u"), "dial.from_"),
        (
            lambda: c.Dial(from_="a", to="+1555", url="u", status_url="https://x/" + _SURROGATE),
            "dial",
        ),
        (lambda: c.UserEvent(call_id=CALL_ID, event={_SURROGATE: 1}), "user_event.event"),
        (lambda: c.UserEvent(call_id=CALL_ID, event={"k": [_SURROGATE]}), "user_event.event"),
        (lambda: c.PlayStop(call_id=CALL_ID, control_id=_SURROGATE), "play.stop.control_id"),
        (lambda: c.AISidecar(call_id=CALL_ID, lang="en", prompt=_SURROGATE), "ai_sidecar.prompt"),
        (
            lambda: c.Tap(
                call_id=CALL_ID, direction="both", device=c.WsDevice(uri="wss://x/" + _SURROGATE)
            ),
            "tap.device.uri",
        ),
        (
            lambda: c.AISidecar(
                call_id=CALL_ID,
                lang="en",
                swaig={"mcp_servers": [{"url": "u", "headers": {"h": _SURROGATE}}]},
            ),
            "ai_sidecar.swaig.mcp_servers[0].headers",
        ),
    ],
)
def test_lone_surrogates_raise_validation_error(build: Callable[[], object], path: str) -> None:
    """A str that is not valid Unicode cannot be sent as UTF-8 JSON."""
    with pytest.raises(ValidationError) as info:
        build()
    assert type(info.value) is ValidationError
    assert info.value.path.startswith(path)


def test_free_form_json_goes_out_as_plain_dicts_and_lists() -> None:
    """Tuples and read-only mappings are accepted, and sent as JSON arrays and objects."""
    event = types.MappingProxyType({"a": (1, (2, 3)), "b": types.MappingProxyType({"c": ()})})
    body = c.UserEvent(call_id=CALL_ID, event=event).to_wire()
    assert body["params"]["event"] == {"a": [1, [2, 3]], "b": {"c": []}}
    assert type(body["params"]["event"]) is dict
    assert type(body["params"]["event"]["a"][1]) is list
    assert json.loads(_send_bytes(body)) == body
    _assert_valid(body)
    swml: dict[str, Any] = {"sections": types.MappingProxyType({"main": ({"hangup": {}},)})}
    sidecar = c.AISidecar(
        call_id=CALL_ID,
        lang="en",
        prompt={"pom": ({"bullets": ("a",)},)},
        swaig={"functions": ({"function": "f"},)},
    )
    for cmd in (
        c.Dial(from_="a", to="+1555", swml=swml),
        c.Transfer(call_id=CALL_ID, dest=swml),
        sidecar,
    ):
        body = cmd.to_wire()
        assert json.loads(_send_bytes(body)) == body
        _assert_valid(body)


def test_validation_errors_redact_secrets() -> None:
    """
    A ValidationError about a bearer token or a SIP password leaves the value out of its message.
    """
    with pytest.raises(ValidationError) as info:
        c.Stream(call_id=CALL_ID, url="wss://x", authorization_bearer_token=["tok-secret"])  # type: ignore[arg-type]
    assert "tok-secret" not in str(info.value)
    with pytest.raises(ValidationError) as info:
        c.Refer(call_id=CALL_ID, device=c.SipReferDevice(to="sip:a@b", password=["pw-secret"]))  # type: ignore[arg-type]
    assert "pw-secret" not in str(info.value)


# ====================================================================================
# 4. Hypothesis
# ====================================================================================

LEGS = ("remote-caller", "local-caller")
SWML_METHODS = SCHEMA["$defs"]["SWMLStep"]["propertyNames"]["enum"]
INT32 = (-(2**31), 2**31 - 1)

texts = st.text(max_size=12)
nonempty = st.text(min_size=1, max_size=12)
bools = st.booleans()
uuids = st.uuids().map(str)
control_ids = st.text(min_size=1, max_size=24)
int32s = st.integers(*INT32)


def ints(lo: int | None = None, hi: int | None = None) -> SearchStrategy[int]:
    return st.integers(INT32[0] if lo is None else lo, INT32[1] if hi is None else hi)


def nums(
    lo: float | None = None, hi: float | None = None, *, exclude_min: bool = False
) -> SearchStrategy[float]:
    floats = st.floats(lo, hi, allow_nan=False, allow_infinity=False, exclude_min=exclude_min)
    ilo = None if lo is None else int(lo) + (1 if exclude_min else 0)
    ihi = None if hi is None else int(hi)
    return st.one_of(floats, st.integers(ilo, ihi))


def enum(*values: Any) -> SearchStrategy[Any]:
    return st.sampled_from(values)


_hosts = st.from_regex(
    r"[a-z0-9]([a-z0-9-]{0,8}[a-z0-9])?(\.[a-z]{2,6}){0,2}(:[0-9]{1,5})?", fullmatch=True
)
_paths = st.from_regex(
    r"(/[A-Za-z0-9._~%!$&'()*+,;=:@-]{0,8}){0,3}(\?[a-z0-9=&]{0,8})?", fullmatch=True
)


def urls(*schemes: str) -> SearchStrategy[str]:
    return st.builds(lambda s, h, p: f"{s}://{h}{p}", st.sampled_from(schemes), _hosts, _paths)


http_urls = urls("http", "https")
uris = st.one_of(
    urls("http", "https", "wss", "ftp"),
    st.from_regex(r"(sip|urn|mailto):[a-z0-9@.:]{1,12}", fullmatch=True),
)


# First octets with no special-purpose block in them (so no private, shared, loopback,
# link-local, documentation, benchmarking, multicast or reserved address).
_PUBLIC_FIRST = [n for n in range(1, 224) if n not in {10, 100, 127, 169, 172, 192, 198, 203}]
public_ipv4 = st.builds(
    lambda first, rest: ".".join(map(str, (first, *rest))),
    st.sampled_from(_PUBLIC_FIRST),
    st.tuples(*[st.integers(0, 255)] * 3),
)
dtmf = st.from_regex(r"[0-9A-Da-d*#]{0,6}", fullmatch=True)

json_scalars = st.one_of(
    st.none(),
    bools,
    st.integers(-(2**63), 2**63),
    st.floats(allow_nan=False, allow_infinity=False),
    texts,
)
json_values = st.recursive(
    json_scalars,
    lambda ch: st.lists(ch, max_size=3) | st.dictionaries(st.text(max_size=6), ch, max_size=3),
    max_leaves=6,
)
json_objects = st.dictionaries(st.text(max_size=6), json_values, max_size=4)

swml_steps = st.builds(lambda m, v: {m: v}, st.sampled_from(SWML_METHODS), json_values)
swml_sections = st.lists(swml_steps, max_size=3)
swml_docs = st.builds(
    lambda others, main, version: {**version, "sections": {**others, "main": main}},
    st.dictionaries(st.text(max_size=6), swml_sections, max_size=2),
    swml_sections,
    st.sampled_from([{}, {"version": "1.0.0"}]),
)

_RESERVED = re.compile(r"(signalwire|sw|rtc|internal)_", re.IGNORECASE)
custom_variables = st.dictionaries(
    st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,10}", fullmatch=True).filter(
        lambda k: not _RESERVED.match(k)
    ),
    st.text(min_size=1, max_size=20),
    max_size=20,
)


def _pom_section(subsections: SearchStrategy[list[Any]] | None) -> SearchStrategy[dict[str, Any]]:
    optional: dict[str, SearchStrategy[Any]] = {
        "title": nonempty,
        "numbered": bools,
        "numberedBullets": bools,
        "body": texts,
        "bullets": st.lists(texts, min_size=1, max_size=3),
    }
    if subsections is not None:
        optional["subsections"] = subsections
    return st.fixed_dictionaries({}, optional=optional).filter(
        lambda d: "body" in d or "bullets" in d
    )


pom_sections = st.recursive(
    _pom_section(None),
    lambda ch: _pom_section(st.lists(ch, min_size=1, max_size=2)),
    max_leaves=4,
)
sidecar_prompts = st.one_of(
    texts,
    st.builds(lambda t: {"text": t}, texts),
    st.builds(lambda t: {"file": t}, texts),
    st.builds(lambda p: {"pom": p}, st.lists(pom_sections, min_size=1, max_size=3)),
)

_param_names = st.text(max_size=8)


def _typed(kind: str, **optional: SearchStrategy[Any]) -> SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries(
        {"type": st.just(kind)}, optional={"description": texts, **optional}
    )


param_leaves = st.one_of(
    _typed("string", enum=st.lists(texts, max_size=3), default=texts),
    _typed("integer", enum=st.lists(int32s, max_size=3), default=int32s),
    _typed("number", enum=st.lists(nums(), max_size=3), default=nums()),
    _typed("boolean", default=bools),
)
param_props = st.recursive(
    param_leaves,
    lambda ch: st.one_of(
        st.fixed_dictionaries(
            {"type": st.just("array"), "items": ch}, optional={"description": texts}
        ),
        _typed(
            "object",
            properties=st.dictionaries(_param_names, ch, max_size=3),
            required=st.lists(_param_names, max_size=2),
        ),
    ),
    max_leaves=5,
)
_webhook: dict[Any, SearchStrategy[Any]] = {
    "web_hook_url": texts,
    "web_hook_auth_user": texts,
    "web_hook_auth_password": texts,
}
swaig_functions = st.fixed_dictionaries(
    {"function": texts},
    optional={
        "description": texts,
        "purpose": texts,
        "parameters": st.fixed_dictionaries(
            {
                "type": st.just("object"),
                "properties": st.dictionaries(_param_names, param_props, max_size=3),
            },
            optional={"required": st.lists(_param_names, max_size=3)},
        ),
        **_webhook,
    },
)
mcp_servers = st.fixed_dictionaries(
    {"url": texts},
    optional={
        "headers": st.dictionaries(texts, texts, max_size=2),
        "resources": bools,
        "resource_vars": st.dictionaries(texts, texts, max_size=2),
    },
)
swaigs = st.fixed_dictionaries(
    {},
    optional={
        "defaults": st.fixed_dictionaries({}, optional=_webhook),
        "functions": st.lists(swaig_functions, max_size=2),
        "mcp_servers": st.lists(mcp_servers, max_size=2),
    },
)
sidecar_directions = st.permutations(LEGS).flatmap(
    lambda legs: st.lists(st.sampled_from(LEGS), max_size=2).map(lambda extra: [*legs, *extra])
)
leg_lists = st.lists(st.sampled_from(LEGS), min_size=1, max_size=3)
filters = st.one_of(
    enum("polite", "rude", "professional", "shakespeare", "gen-z"),
    st.from_regex(r"prompt:[^\n]{1,12}", fullmatch=True),
)


# Per class: (required fields, optional fields), each a strategy of valid values.
Fields = tuple[dict[str, SearchStrategy[Any]], dict[str, SearchStrategy[Any]]]
FIELDS: dict[type, Fields] = {}
MODELS: dict[type, SearchStrategy[Any]] = {}


def _register(cls: type, required: dict[str, Any], optional: dict[str, Any]) -> None:
    FIELDS[cls] = (required, optional)
    names = {a.name for a in _fields(cls)}
    assert names == set(required) | set(optional), (cls, names ^ (set(required) | set(optional)))
    if not issubclass(cls, Command):

        def build(kw: dict[str, Any]) -> Any:
            return cls(**kw)

        MODELS[cls] = st.fixed_dictionaries(required, optional=optional).map(build)


def _model(cls: type) -> SearchStrategy[Any]:
    """Instances of the model *cls*, looked up late (models are registered in any order)."""
    return st.deferred(lambda: MODELS[cls])


def _models(*classes: type) -> SearchStrategy[Any]:
    return st.one_of(*(_model(cls) for cls in classes))


ID = {"call_id": uuids}
CID = {"call_id": uuids, "control_id": control_ids}

# models
_register(c.PlayAudio, {"url": http_urls}, {})
_register(
    c.PlayTTS,
    {"text": texts},
    {
        "language": nonempty,
        "gender": enum("male", "female"),
        "voice": st.from_regex(r"[A-Za-z0-9.-]{1,16}", fullmatch=True),
    },
)
_register(c.PlaySilence, {"duration": nums(0, 3600, exclude_min=True)}, {})
_register(
    c.PlayRingtone,
    {"name": st.sampled_from(SCHEMA["$defs"]["PlayRingtoneName"]["enum"])},
    {"duration": nums(0, exclude_min=True)},
)
_register(
    c.RecordAudio,
    {},
    {
        "beep": bools,
        "format": enum("mp3", "wav", "mp4"),
        "stereo": bools,
        "direction": enum("listen", "speak", "both"),
        "initial_timeout": nums(0),
        "end_silence_timeout": nums(0),
        "max_length": ints(0),
        "terminators": dtmf,
        "input_sensitivity": nums(0, 100),
    },
)
_register(
    c.CollectDigits,
    {"max": ints(1)},
    {"terminators": dtmf, "digit_timeout": nums(0, exclude_min=True)},
)
_register(
    c.CollectSpeech,
    {},
    {
        "end_silence_timeout": nums(0, exclude_min=True),
        "speech_timeout": nums(0, exclude_min=True),
        "language": texts,
        "hints": st.lists(texts, max_size=3),
        "model": texts,
        "engine": enum("Google", "Google.V2", "Deepgram"),
    },
)
_register(
    c.DetectMachine,
    {},
    {
        "initial_timeout": nums(),
        "end_silence_timeout": nums(),
        "machine_ready_timeout": nums(),
        "machine_voice_threshold": nums(),
        "machine_words_threshold": int32s,
        "detect_interruptions": bools,
        "detect_message_end": bools,
    },
)
_register(c.DetectFax, {}, {"tone": enum("CNG", "CED", "cng", "ced")})
_register(c.DetectDigit, {}, {"digits": dtmf})
_tap_codecs = enum("PCMA", "PCMU", "pcma", "pcmu", "OPUS", "opus")
_register(
    c.RtpDevice,
    {"addr": public_ipv4, "port": ints(1, 65535)},
    {"codec": _tap_codecs, "ptime": enum(*range(10, 121, 10))},
)
_register(c.WsDevice, {"uri": urls("ws", "wss")}, {"codec": _tap_codecs})
_sip = st.builds(lambda t: "sip:" + t, texts)
_register(c.SipReferDevice, {"to": _sip}, {"from_": _sip, "username": texts, "password": texts})
_register(c.AIReset, {}, {"full_reset": bools, "user_prompt": texts, "system_prompt": texts})
_register(
    c.SidecarPermissions,
    {},
    {"swaig_allow_swml": bools, "swaig_allow_settings": bools, "swaig_set_global_data": bools},
)
_register(
    c.SidecarParams,
    {},
    {
        "idle_timeout_ms": ints(50, 5000),
        "min_interval_ms": ints(0, 60000),
        "max_iters_per_tick": ints(1, 20),
        "max_history_tokens": ints(1000, 200000),
        "act_on_channel": bools,
        "final_summary": bools,
        "ai_summary": bools,
        "ai_summary_prompt": texts,
        "summary_model": texts | enum("gpt-4o-mini", "gpt-4.1-mini", "gpt-4.1-nano"),
        "live_events": bools,
        "verbose_utterances": bools,
        "speech_engine": enum("deepgram", "google"),
        "speech_timeout": ints(0, 600000),
        "vad_silence_ms": ints(0, 60000),
        "vad_thresh": ints(0, 10000),
        "debug_level": ints(0, 100),
        "debug": bools,
        "transcribe_prompt": texts,
    },
)
_register(c.Summarize, {}, {"webhook": texts, "prompt": texts})
_live_tuning = {
    "webhook": texts,
    "live_events": bools,
    "ai_summary": bools,
    "ai_summary_prompt": texts,
    "speech_engine": enum("deepgram", "google"),
    "speech_timeout": int32s,
    "vad_silence_ms": int32s,
    "vad_thresh": ints(0, 1800),
    "debug_level": ints(0, 2),
}
_register(c.LiveTranscribeStart, {"lang": texts, "direction": leg_lists}, _live_tuning)
_register(
    c.LiveTranslateStart,
    {"from_lang": texts, "to_lang": texts, "direction": leg_lists},
    {
        "from_voice": texts,
        "to_voice": texts,
        "filter_from": filters,
        "filter_to": filters,
        **_live_tuning,
    },
)
_register(c.LiveTranslateInject, {"message": texts, "direction": enum(*LEGS)}, {})

# commands
_status_events = st.lists(enum("created", "ringing", "answered", "ended"), max_size=4)
_codecs = st.sampled_from(SCHEMA["$defs"]["OutboundCallCodec"]["enum"])
# Addresses (reference §4.1): E.164 numbers, SIP URIs and the other forms each field takes.
e164 = st.from_regex(r"\+[1-9][0-9]{1,14}", fullmatch=True)
sip_uris = st.from_regex(r"sips?:[a-z0-9]{1,8}@[a-z0-9]{1,8}\.test", fullmatch=True)
destinations = (
    e164 | sip_uris | st.sampled_from(["verto:alice@example.test", "client:bob", "/private/room-1"])
)
callers = e164 | sip_uris | st.from_regex(r"[A-Za-z][A-Za-z0-9._-]{0,20}", fullmatch=True)
_register(
    c.Dial,
    {"from_": callers},
    {
        "to": destinations,
        "url": nonempty,
        "swml": swml_docs,
        "to_script": texts | swml_docs,
        "username": texts,
        "password": texts,
        "caller_id": callers,
        "fallback_url": texts,
        "status_url": http_urls,
        "status_events": _status_events,
        "url_method": enum("GET", "POST"),
        "codecs": st.lists(_codecs, max_size=3) | texts,
        "timeout": ints(1, 600),
        "max_price_per_minute": nums(0),
        "send_digits": st.from_regex(r"[0-9A-D*#w,]{0,8}", fullmatch=True),
        "region": texts | st.lists(texts, max_size=3),
        "custom_variables": custom_variables,
    },
)
_register(
    c.Update,
    {"call_id": uuids},
    {
        "url": nonempty,
        "swml": swml_docs,
        "fallback_url": texts,
        "status": enum("canceled", "completed"),
        "status_url": uris,
    },
)
_register(c.End, ID, {"reason": enum("hangup", "cancel", "busy", "noAnswer", "decline", "error")})
_register(c.Transfer, {**ID, "dest": e164 | sip_uris | http_urls | swml_docs}, {})
_register(
    c.Play,
    {
        **ID,
        "play": st.lists(
            _models(c.PlayAudio, c.PlayTTS, c.PlaySilence, c.PlayRingtone), max_size=4
        ),
    },
    {
        "control_id": control_ids,
        "volume": nums(-40, 40),
        "direction": enum("listen", "speak", "both"),
        "loop": ints(0),
        "language": nonempty,
        "voice": nonempty,
        "gender": enum("male", "female"),
        "status_url": http_urls,
    },
)
_register(c.PlayVolume, {**CID, "volume": nums(-40, 40)}, {})
_register(
    c.Record,
    ID,
    {"control_id": control_ids, "audio": _models(c.RecordAudio), "status_url": http_urls},
)
_register(c.RecordPause, CID, {"behavior": enum("skip", "silence")})
_register(
    c.Collect,
    ID,
    {
        "control_id": control_ids,
        "digits": _models(c.CollectDigits),
        "speech": _models(c.CollectSpeech),
        "initial_timeout": nums(0, exclude_min=True),
        "continuous": bools,
        "partial_results": bools,
        "send_start_of_input": bools,
        "start_input_timers": bools,
        "status_url": http_urls,
    },
)
_register(
    c.Detect,
    {**ID, "detect": _models(c.DetectMachine, c.DetectFax, c.DetectDigit)},
    {"control_id": control_ids, "timeout": nums(0), "status_url": http_urls},
)
_register(
    c.Tap,
    {
        **ID,
        "direction": enum("listen", "speak", "both"),
        "device": _models(c.RtpDevice, c.WsDevice),
    },
    {"control_id": control_ids, "status_url": http_urls},
)
_register(c.Transcribe, ID, {"control_id": control_ids, "status_url": http_urls})
_register(
    c.Stream,
    {**ID, "url": urls("wss")},
    {
        "control_id": control_ids,
        "name": texts,
        "codec": texts,
        "track": enum("inbound_track", "outbound_track", "both_tracks"),
        "authorization_bearer_token": texts,
        "custom_parameters": json_objects,
        "status_url": http_urls,
        "status_url_method": enum("GET", "POST"),
    },
)
_cls: type[Command[Any]]
for _cls in (
    c.Disconnect,
    c.Denoise,
    c.DenoiseStop,
    c.AIUnhold,
    c.AISidecarStop,
    c.AISidecarStatus,
):
    _register(_cls, ID, {})
for _cls in (
    c.PlayPause,
    c.PlayResume,
    c.PlayStop,
    c.RecordResume,
    c.RecordStop,
    c.CollectStop,
    c.CollectStartInputTimers,
    c.DetectStop,
    c.TapStop,
    c.TranscribeStop,
    c.StreamStop,
    c.SendFaxStop,
    c.ReceiveFaxStop,
):
    _register(_cls, CID, {})
_register(
    c.AIHold,
    ID,
    {"timeout": ints(0) | st.from_regex(r"[0-9]{1,12}", fullmatch=True), "prompt": texts},
)
_register(
    c.AIMessage,
    ID,
    {
        "role": enum("system", "user", "assistant"),
        "message_text": texts,
        "reset": _models(c.AIReset),
        "global_data": json_objects,
    },
)
_register(c.AIStop, ID, {"control_id": texts})
_register(
    c.AISidecar,
    {**ID, "lang": nonempty},
    {
        "prompt": sidecar_prompts,
        "model": texts,
        "direction": sidecar_directions,
        "customer_role": enum(*LEGS),
        "url": uris,
        "swaig": swaigs,
        "permissions": _models(c.SidecarPermissions),
        "global_data": json_objects,
        "hints": st.lists(texts, min_size=1, max_size=3),
        "params": _models(c.SidecarParams),
        "action": _models(c.Summarize),
    },
)
_register(c.AISidecarPoke, {**ID, "text": texts}, {})
_register(c.AISidecarAsk, {**ID, "text": texts}, {})
_register(
    c.LiveTranscribe,
    {**ID, "action": _models(c.LiveTranscribeStart, c.Summarize) | st.just("stop")},
    {},
)
_register(
    c.LiveTranslate,
    {
        **ID,
        "action": _models(c.LiveTranslateStart, c.Summarize, c.LiveTranslateInject)
        | st.just("stop"),
    },
    {"status_url": http_urls},
)
_register(c.Refer, {**ID, "device": _models(c.SipReferDevice)}, {"status_url": http_urls})
_register(c.UserEvent, {**ID, "event": json_objects}, {})


def _fix_cross_field_rules(cls: type, kwargs: dict[str, Any], draw: Any) -> dict[str, Any]:
    """Make drawn kwargs satisfy the rules between fields (exactly one of url/swml...)."""
    if cls in (c.Dial, c.Update) and ("url" in kwargs) == ("swml" in kwargs):
        kwargs.pop(draw(st.sampled_from(["url", "swml"])), None)
        if "url" not in kwargs and "swml" not in kwargs:
            kwargs["url"] = "https://example.com/swml"
    if cls is c.Dial and "to" not in kwargs and "to_script" not in kwargs:
        kwargs["to"] = "+15550001111"
    if cls is c.Collect and "digits" not in kwargs and "speech" not in kwargs:
        kwargs["digits"] = c.CollectDigits(max=1)
    return kwargs


@st.composite
def valid_kwargs(draw: Any, cls: type) -> dict[str, Any]:
    required, optional = FIELDS[cls]
    kwargs = draw(st.fixed_dictionaries(required, optional=optional))
    return _fix_cross_field_rules(cls, kwargs, draw)


def test_strategies_cover_every_class() -> None:
    """
    The hypothesis strategies cover every command and model class, and every model has a command to
    carry it.
    """
    assert set(FIELDS) == set(COMMAND_CLASSES) | set(MODEL_CLASSES)
    assert set(HOSTS) == set(MODEL_CLASSES)


def _check_body(cmd: Command[Any]) -> dict[str, Any]:
    body = cmd.to_wire()
    assert json.loads(_send_bytes(body)) == body
    _assert_valid(body)
    _assert_no_nulls(body)
    return body


@pytest.mark.parametrize("cls", COMMAND_CLASSES, ids=list(BY_NAME))
@given(data=st.data())
def test_valid_params_always_build_a_valid_body(cls: type[Command[Any]], data: Any) -> None:
    """
    Any valid keyword arguments build a body that is schema-valid, null-free and sent as it is; each
    set field is on the wire under its wire name, each unset one absent, and to_wire() gives the
    same body every time.
    """
    kwargs = data.draw(valid_kwargs(cls), label="kwargs")
    cmd = cls(**kwargs)
    body = _check_body(cmd)
    params = body["params"]
    # What was set is on the wire under its wire name; what was not is absent.
    for a in _fields(cls):
        wire = a.metadata.get("wire", a.name)
        if a.metadata.get("omit") or (cls, a.name) in {(c.Record, "audio"), (c.Tap, "direction")}:
            continue
        assert (wire in params) == (getattr(cmd, a.name) is not None), a.name
    assert cmd.to_wire() == body


# A model is checked inside a command that carries it.
_HOST_ID: dict[str, Any] = {"call_id": CALL_ID}
HOSTS: dict[type, Callable[[Any], list[Command[Any]]]] = {
    c.PlayAudio: lambda m: [c.Play(**_HOST_ID, play=[m])],
    c.PlayTTS: lambda m: [c.Play(**_HOST_ID, play=[m])],
    c.PlaySilence: lambda m: [c.Play(**_HOST_ID, play=[m])],
    c.PlayRingtone: lambda m: [c.Play(**_HOST_ID, play=[m])],
    c.RecordAudio: lambda m: [c.Record(**_HOST_ID, audio=m)],
    c.CollectDigits: lambda m: [c.Collect(**_HOST_ID, digits=m)],
    c.CollectSpeech: lambda m: [c.Collect(**_HOST_ID, speech=m)],
    c.DetectMachine: lambda m: [c.Detect(**_HOST_ID, detect=m)],
    c.DetectFax: lambda m: [c.Detect(**_HOST_ID, detect=m)],
    c.DetectDigit: lambda m: [c.Detect(**_HOST_ID, detect=m)],
    c.RtpDevice: lambda m: [c.Tap(**_HOST_ID, direction="both", device=m)],
    c.WsDevice: lambda m: [c.Tap(**_HOST_ID, direction="both", device=m)],
    c.SipReferDevice: lambda m: [c.Refer(**_HOST_ID, device=m)],
    c.AIReset: lambda m: [c.AIMessage(**_HOST_ID, reset=m)],
    c.SidecarPermissions: lambda m: [c.AISidecar(**_HOST_ID, lang="en", permissions=m)],
    c.SidecarParams: lambda m: [c.AISidecar(**_HOST_ID, lang="en", params=m)],
    c.Summarize: lambda m: [
        c.AISidecar(**_HOST_ID, lang="en", action=m),
        c.LiveTranscribe(**_HOST_ID, action=m),
        c.LiveTranslate(**_HOST_ID, action=m),
    ],
    c.LiveTranscribeStart: lambda m: [c.LiveTranscribe(**_HOST_ID, action=m)],
    c.LiveTranslateStart: lambda m: [c.LiveTranslate(**_HOST_ID, action=m)],
    c.LiveTranslateInject: lambda m: [c.LiveTranslate(**_HOST_ID, action=m)],
}

# Strings holding a lone surrogate: valid Python str, not encodable as UTF-8.
_surrogate_texts = st.builds(
    lambda a, b: a + b,
    st.text(max_size=3),
    st.text(
        st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF, categories=["Cs"]),
        min_size=1,
        max_size=2,
    ),
)
_any_leaf = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=True),
    st.text(max_size=8),
    _surrogate_texts,
)
_any_nested = st.recursive(
    _any_leaf,
    lambda ch: (
        st.lists(ch, max_size=3)
        | st.dictionaries(st.text(max_size=6), ch, max_size=3)
        | st.dictionaries(st.integers() | st.booleans() | st.none(), ch, max_size=2)
    ),
    max_leaves=8,
)
_model_instances = st.deferred(lambda: st.one_of(*MODELS.values()))
ANYTHING = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=True),
    st.text(),
    _surrogate_texts,
    st.lists(_any_nested, max_size=4),
    st.dictionaries(st.text(max_size=8), _any_nested, max_size=4),
    _model_instances,
    st.lists(_model_instances, max_size=2),
)


def _check_error(exc: ValidationError, cls: type) -> None:
    assert type(exc) is ValidationError
    assert str(exc).startswith(cls._label)  # type: ignore[attr-defined]


def _variants(value: Any) -> SearchStrategy[Any]:
    """Near misses of a valid value: off by one, wrong type, empty, one item more or less."""
    if isinstance(value, bool):
        return st.sampled_from([not value, int(value), str(value).lower(), None])
    if isinstance(value, int | float):
        basic = [value + 1, value - 1, value * 2 + 1, -value - 1, value + 0.5, float(value),
                 str(value), None]  # fmt: skip
        # Scale-free jumps, so a bound is probed whatever size the valid value had.
        jumps = st.builds(lambda k, sign: value + sign * 10**k, st.integers(0, 9), enum(1, -1))
        return st.sampled_from(basic) | jumps
    if isinstance(value, str):
        return st.sampled_from(["", value + "\n", " " + value, value[1:], value[:-1],
                                value.upper(), value.lower(), value + "x", value * 2, [value],
                                None])  # fmt: skip
    if isinstance(value, list):
        return st.sampled_from([[], value[:1], [*value, *value[:1]], value[1:], [*value, None],
                                [*value, "x"], tuple(value), None])  # fmt: skip
    if isinstance(value, dict):
        return st.sampled_from([{}, {**value, "x": 1},
                                {**value, **{f"{k}_2": v for k, v in value.items()}},
                                dict(list(value.items())[1:]), dict.fromkeys(value),
                                list(value.values()), None])  # fmt: skip
    return st.sampled_from([None, str(value)])


@st.composite
def _perturbed(draw: Any, value: Any) -> Any:
    """*value* with one leaf, somewhere inside it, replaced by a near miss."""
    if isinstance(value, dict) and value and draw(st.booleans()):
        key = draw(st.sampled_from(list(value)))
        return {**value, key: draw(_perturbed(value[key]))}
    if isinstance(value, list) and value and draw(st.booleans()):
        i = draw(st.integers(0, len(value) - 1))
        return [*value[:i], draw(_perturbed(value[i])), *value[i + 1 :]]
    return draw(_variants(value))


def _any_for(cls: type, field: str) -> SearchStrategy[Any]:
    """
    Anything at all; a near miss of a valid value of *field*; or a valid value of
    another field of *cls* (so types get crossed).
    """
    required, optional = FIELDS[cls]
    own = {**required, **optional}
    near_miss = own[field].flatmap(_perturbed)
    crossed = st.sampled_from(list(own.values())).flatmap(lambda s: s)
    # Not st.one_of, which would flatten ANYTHING's own branches and drown the rest.
    return st.sampled_from([ANYTHING, near_miss, near_miss, crossed]).flatmap(lambda s: s)


# Every field of every command and model, each with its own examples: 30% of the
# profile's budget (dev 50 -> 15, ci 200 -> 60), to keep this file near 30 s on dev.
_PER_FIELD = max(10, settings().max_examples * 3 // 10)
_FIELD_CASES = [
    pytest.param(cls, a.name, id=f"{getattr(cls, 'command_name', cls.__name__)}.{a.name}")
    for cls in [*COMMAND_CLASSES, *MODEL_CLASSES]
    for a in _fields(cls)
]


@pytest.mark.parametrize(("cls", "field"), _FIELD_CASES)
@settings(max_examples=_PER_FIELD)
@given(data=st.data())
def test_one_arbitrary_field_builds_a_valid_body_or_raises_validation_error(
    cls: type, field: str, data: Any
) -> None:
    """Our rules are at least as strict as the schema, and nothing but ValidationError escapes."""
    kwargs = data.draw(valid_kwargs(cls), label="valid kwargs")
    kwargs[field] = data.draw(_any_for(cls, field), label="value")
    try:
        obj = cls(**kwargs)
    except ValidationError as exc:
        _check_error(exc, cls)
        return
    commands = [obj] if issubclass(cls, Command) else HOSTS[cls](obj)
    for cmd in commands:
        _check_body(cmd)


# ====================================================================================
# 5. Nothing is sent
# ====================================================================================

_NOT_SENT = [
    "calling.play/volume-99",
    "dial/url-and-swml",
    "calling.tap/rtp-private-addr",
    "dial/custom_variables-1024-chars-over-1024-bytes",
    "calling.ai_sidecar/swaig-unknown-key",
    "calling.stream/url-ws",
]


@pytest.mark.parametrize("case_id", _NOT_SENT)
async def test_invalid_command_is_never_sent(
    relay: relaycall.AsyncRelay, server: Any, case_id: str
) -> None:
    """An invalid command raises ValidationError before anything reaches the server."""
    (case,) = [i for i in INVALID if i.id == case_id]
    with pytest.raises(ValidationError):
        await relay.send(case.build())  # type: ignore[arg-type]
    assert server.seen == []


async def test_every_example_arrives_exactly_as_to_wire_says(
    relay: relaycall.AsyncRelay, server: Any
) -> None:
    """The contrast: valid commands do reach the server, byte for byte as their bodies."""
    for example in EXAMPLES:
        await relay.send(example.command)
    assert server.bodies == [e.wire for e in EXAMPLES]


def test_a_subclass_of_a_model_goes_out_in_the_model_s_wire_shape() -> None:
    """
    A user's subclass of a play item (a tts() item with a default voice) is sent in the
    item's wire shape, {"type": "tts", "params": {...}}, with its values: not as a plain
    dict of its fields (which the API would refuse).
    """
    tts_item = type(relaycall.tts("x"))

    @attrs.frozen(kw_only=True)
    class Joanna(tts_item):  # type: ignore[misc, valid-type]
        voice: str = "polly.Joanna"

    play = c.Play(call_id=CALL_ID, play=[Joanna(text="hi")], control_id="c1")
    assert play.to_wire()["params"]["play"] == [
        {"type": "tts", "params": {"text": "hi", "voice": "polly.Joanna"}}
    ]


# --- the writer against cattrs ---------------------------------------------------------
# Until issue 15, a cattrs converter wrote every body (a function generated per class).
# relaycall now writes them with functions of its own (relaycall._writing), which a
# short-lived process pays far less for; this is the cattrs writer, kept as the reference
# they must match, with its own copy of the free-form JSON copier.


def plain_json(value: Any) -> Any:
    """The cattrs writer's copy of free-form JSON: plain dicts and lists."""
    if isinstance(value, Mapping):
        return {k: plain_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain_json(v) for v in value]
    return value


def _cattrs_writer() -> Any:
    import cattrs  # noqa: PLC0415
    from cattrs.gen import make_dict_unstructure_fn, override  # noqa: PLC0415

    from relaycall._writing import _MODELS  # noqa: PLC0415 - which classes are models

    conv = cattrs.Converter(omit_if_default=True)

    def model_of(t: Any) -> Any:
        return next((k for k in t.__mro__ if k in _MODELS), None) if isinstance(t, type) else None

    def hook(cls: Any) -> Any:
        overrides: dict[str, Any] = {}
        for a in attrs.fields(cls):
            if a.metadata.get("omit"):
                overrides[a.name] = override(omit=True)
                continue
            factory = isinstance(a.default, attrs.Factory)  # type: ignore[arg-type]
            if a.metadata.get("wire") is not None or a.metadata.get("raw") or factory:
                overrides[a.name] = override(
                    rename=a.metadata.get("wire"),
                    unstruct_hook=plain_json if a.metadata.get("raw") else None,
                    omit_if_default=False if factory else None,
                )
        fn = make_dict_unstructure_fn(cls, conv, _cattrs_omit_if_default=True, **overrides)
        shape = getattr(cls, "_shape", None)
        return fn if shape is None else (lambda obj: shape(fn(obj)))

    conv.register_unstructure_hook_factory(
        lambda t: model_of(t) is not None, lambda t: hook(model_of(t))
    )
    return conv


CATTRS = _cattrs_writer()


def _cattrs_body(cmd: Command[Any]) -> dict[str, Any]:
    body: dict[str, Any] = {"command": cmd.command_name}
    if type(cmd)._top_level_id:
        body["id"] = cmd.call_id  # type: ignore[attr-defined]
    body["params"] = CATTRS.unstructure(cmd)
    return body


@pytest.mark.parametrize("case", EXAMPLES, ids=lambda e: e.id)
def test_every_example_is_written_as_cattrs_wrote_it(case: Example) -> None:
    """Each example's body (every field of every command set in some example) is cattrs's."""
    assert case.command.to_wire() == _cattrs_body(case.command)


@pytest.mark.parametrize("cls", COMMAND_CLASSES, ids=list(BY_NAME))
@given(data=st.data())
@settings(max_examples=40)
def test_any_valid_command_is_written_as_cattrs_wrote_it(
    cls: type[Command[Any]], data: Any
) -> None:
    """
    For any valid arguments, to_wire() equals what the cattrs converter relaycall used to write
    with: the same keys in the same order, lists where cattrs made lists, no tuples.
    """
    cmd = cls(**data.draw(valid_kwargs(cls), label="kwargs"))
    body, reference = cmd.to_wire(), _cattrs_body(cmd)
    assert body == reference
    assert json.dumps(body) == json.dumps(reference)  # key order too
    assert json.loads(json.dumps(body)) == body  # JSON arrays and objects only


@pytest.mark.parametrize("host", sorted(HOSTS, key=lambda t: t.__name__), ids=lambda t: t.__name__)
@given(data=st.data())
@settings(max_examples=25)
def test_any_valid_model_is_written_as_cattrs_wrote_it(host: type, data: Any) -> None:
    """Every nested model (play items, devices, detectors, ...) inside a command: as cattrs."""
    model = host(**data.draw(valid_kwargs(host), label="kwargs"))
    for cmd in HOSTS[host](model):
        assert json.dumps(cmd.to_wire()) == json.dumps(_cattrs_body(cmd))


class _Codec(str, Enum):
    PCMU = "PCMU"


def test_unusual_containers_and_str_enums_are_written_as_cattrs_wrote_them() -> None:
    """
    Tuples, read-only mappings and str enum members where a sequence, mapping or string
    goes (what the hypothesis strategies do not draw) give cattrs's JSON.
    """
    dial = c.Dial(
        from_="+15551230000",
        to="+15557650000",
        url="https://example.com/swml",
        codecs=(_Codec.PCMU, "OPUS"),
        region=("us", "eu"),
        status_events=("answered", "ended"),
        custom_variables=types.MappingProxyType({"a": "1"}),
        swml=None,
    )
    play = c.Play(call_id=CALL_ID, play=(relaycall.tts("hi"),), control_id="c1")
    for cmd in (dial, play):
        body = cmd.to_wire()
        assert json.dumps(body) == json.dumps(_cattrs_body(cmd))
        assert json.loads(json.dumps(body)) == body  # arrays are lists, objects dicts


def test_a_model_field_with_another_default_is_refused_when_first_written(
    registry: dict[str, type[Command[Any]]],
) -> None:
    """
    A model field defaulting to something other than None (which cattrs would have left
    out when equal to it) makes the writer raise, rather than write it differently.
    """

    @command("calling.odd_default", label="odd", idempotency=Idempotency.SAFE)
    @attrs.frozen(kw_only=True)
    class OddDefault(Command[Any]):
        call_id: str = call_id_field()
        flag: bool = False

    with pytest.raises(TypeError, match=r"OddDefault\.flag"):
        OddDefault(call_id=CALL_ID).to_wire()
