"""
Secrets stay out of error messages, reprs and a traceback's captured locals.

What is measured is what a developer or an error tracker sees when a command
fails: the message, the exception's attributes and every local of every frame
in the traceback (and in its chained causes), as ``pytest --showlocals`` and
error trackers capture them. The secrets: the API token, the Basic header
value, a SIP password, a SWML ``connect.password``, a SWAIG webhook password and
a stream's bearer token. Each flow fails inside relaycall against a real server
on 127.0.0.1 (422, 500, a dropped connection, a read timeout, a refused
connection) or in validation.
"""

from __future__ import annotations

import base64
import os
import subprocess
import sys
import textwrap
import traceback
from collections.abc import Awaitable, Callable
from pathlib import Path
from types import FrameType
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import relaycall
import relaycall.testing
from relaycall import commands as c
from relaycall.errors import MaskedBody, MaskedStr, mask_secrets
from tests.conftest import CALL_ID, PROJECT, TOKEN, Respond, WireServer

SIP_PW = "sip-pw-Hq7Zx4"
SWML_PW = "swml-pw-Kd83Lq"
HOOK_PW = "hook-pw-Lm29Qv"
BEARER = "bearer-Zq19Wk"
BASIC = base64.b64encode(f"{PROJECT}:{TOKEN}".encode()).decode()
SECRETS = {
    "token": TOKEN,
    "basic": BASIC,
    "sip": SIP_PW,
    "swml": SWML_PW,
    "hook": HOOK_PW,
    "bearer": BEARER,
}

SWML = {
    "version": "1.0.0",
    "sections": {"main": [{"connect": {"to": "sip:bob@example.com", "password": SWML_PW}}]},
}
SWAIG = {
    "defaults": {"web_hook_url": "https://hooks.example.com/", "web_hook_auth_password": HOOK_PW},
    "functions": [{"function": "lookup", "web_hook_auth_password": HOOK_PW}],
}


def _safe_repr(value: Any) -> str:
    # pytest and error trackers survive a repr that raises; so must the count.
    try:
        return repr(value)
    except Exception as exc:
        return f"<repr failed: {type(exc).__name__}>"


Skip = Callable[[FrameType, str, Any], bool]


def captured(exc: BaseException, *, skip: Skip = lambda f, n, v: False) -> str:
    """
    Everything a traceback with captured locals can show for *exc*.

    str and repr of each exception in the chain (causes and shown contexts),
    its attributes, and every local of every frame of each traceback. *skip*
    leaves out a local by (frame, name, value).
    """
    parts: list[str] = []
    todo: list[BaseException | None] = [exc]
    seen: set[int] = set()
    while todo:
        e = todo.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        parts += [str(e), _safe_repr(e), _safe_repr(vars(e))]
        tb = e.__traceback__
        while tb is not None:
            for name, value in tb.tb_frame.f_locals.items():
                if not skip(tb.tb_frame, name, value):
                    parts.append(f"{name} = {_safe_repr(value)}")
            tb = tb.tb_next
        todo.append(e.__cause__)
        if not e.__suppress_context__:
            todo.append(e.__context__)
    return "\n".join(parts)


def leaks(text: str) -> dict[str, int]:
    return {name: text.count(s) for name, s in SECRETS.items() if s in text}


# --- flows that fail on the wire --------------------------------------------------------

Flow = Callable[[relaycall.AsyncRelay], Awaitable[Any]]


async def _dial(relay: relaycall.AsyncRelay) -> Any:
    return await relay.dial(
        from_="+15551230000", to="sip:bob@example.com", url="https://example.com/swml",
        username="alice", password=SIP_PW,
    )  # fmt: skip


async def _dial_swml(relay: relaycall.AsyncRelay) -> Any:
    return await relay.dial(from_="+15551230000", to="sip:bob@example.com", swml=SWML)


async def _sidecar(relay: relaycall.AsyncRelay) -> Any:
    return await relay.send(c.AISidecar(call_id=CALL_ID, lang="en-US", swaig=SWAIG))


# No flow keeps a secret in a local of its own: the frame would be captured too.


async def _refer(relay: relaycall.AsyncRelay) -> Any:
    return await relay.send(
        c.Refer(
            call_id=CALL_ID,
            device={"type": "sip", "params": {"to": "sip:bob@example.com", "password": SIP_PW}},  # type: ignore[arg-type]
        )
    )


async def _stream(relay: relaycall.AsyncRelay) -> Any:
    return await relay.send(
        c.Stream(
            call_id=CALL_ID, url="wss://stream.example.com/", authorization_bearer_token=BEARER
        )
    )


async def _execute(relay: relaycall.AsyncRelay) -> Any:
    return await relay.execute(
        "calling.custom", call_id=CALL_ID, params={"device": {"password": SIP_PW}}
    )


FLOWS: dict[str, Flow] = {
    "dial": _dial,
    "dial-swml": _dial_swml,
    "ai_sidecar-swaig": _sidecar,
    "refer": _refer,
    "stream": _stream,
    "execute": _execute,
}
FAULTS = {
    "422": Respond(status=422, body={"errors": [{"code": "invalid", "message": "refused"}]}),
    "500": Respond(status=500, body={"error": "boom"}),
    "dropped": Respond(drop=True),
}


async def _fail(relay: relaycall.AsyncRelay, flow: Flow) -> BaseException:
    with relaycall.testing.instant_retries():
        try:
            await flow(relay)
        except relaycall.RelayError as exc:
            return exc
    raise AssertionError("the flow was expected to fail")


@pytest.mark.parametrize("fault", list(FAULTS))
@pytest.mark.parametrize("flow", list(FLOWS))
async def test_a_failed_command_shows_no_secret_in_captured_locals(
    server: WireServer, fault: str, flow: str
) -> None:
    """422, 500 (AmbiguousOutcomeError for dial) and a dropped connection: 0 secrets shown."""
    server.reply(*[FAULTS[fault]] * 5)  # enough for every retry
    async with relaycall.AsyncRelay(PROJECT, TOKEN, base_url=server.base_url) as relay:
        exc = await _fail(relay, FLOWS[flow])
    text = captured(exc)
    assert leaks(text) == {}
    # The capture holds what relaycall sent (headers and body, masked): it could have leaked.
    assert "Relaycall-Attempt" in text
    assert "<redacted>" in text
    # ...and the server got the real values.
    seen = server.seen[0]
    assert seen.headers["Authorization"] == f"Basic {BASIC}"
    assert any(s in seen.raw.decode() for s in (SIP_PW, SWML_PW, HOOK_PW, BEARER))


async def test_a_read_timeout_shows_no_secret(server: WireServer) -> None:
    """A dial whose reply never comes (AmbiguousOutcomeError from ReadTimeout): 0 secrets shown."""
    server.reply(Respond(delay=5))
    timeout = relaycall.Timeout(connect=1, read=0.2, total=1)
    async with relaycall.AsyncRelay(
        PROJECT, TOKEN, base_url=server.base_url, timeout=timeout
    ) as relay:
        exc = await _fail(relay, _dial)
    assert isinstance(exc, relaycall.AmbiguousOutcomeError)
    assert isinstance(exc.cause, relaycall.ReadTimeout)
    assert leaks(captured(exc)) == {}


async def test_a_refused_connection_shows_no_secret(closed_port: int) -> None:
    """ConnectError, whose cause's traceback runs through aiohttp's own frames: 0 secrets."""
    base_url = f"http://127.0.0.1:{closed_port}"
    async with relaycall.AsyncRelay(PROJECT, TOKEN, base_url=base_url, retry=None) as relay:
        exc = await _fail(relay, _dial)
    assert isinstance(exc, relaycall.ConnectError)
    text = captured(exc)
    assert "aiohttp" in text  # aiohttp's frames (its request headers) were captured
    assert leaks(text) == {}


async def test_ambiguous_outcome_body_is_what_was_sent(server: WireServer) -> None:
    """exc.body is equal to the JSON sent (for reconciliation); only its repr is masked."""
    server.reply(Respond(status=500))
    async with relaycall.AsyncRelay(PROJECT, TOKEN, base_url=server.base_url) as relay:
        exc = await _fail(relay, _dial_swml)
    assert isinstance(exc, relaycall.AmbiguousOutcomeError)
    assert exc.body == server.bodies[0]
    assert exc.body["params"]["swml"]["sections"]["main"][0]["connect"]["password"] == SWML_PW
    assert SWML_PW not in repr(exc.body)
    assert SWML_PW not in str(exc)


async def test_pytest_showlocals_output_holds_no_secret(tmp_path: Path) -> None:
    """
    The issue's measure: a pytest run with --showlocals -vv over failing flows prints 0 secrets.

    Before the fix it printed the Basic header 44 times and the SIP password 31.
    """
    test_file = tmp_path / "test_flows.py"
    test_file.write_text(_PYTEST_FLOWS)
    env = {
        **os.environ,
        "RC_TOKEN": TOKEN,
        "RC_SIP": SIP_PW,
        "RC_SWML": SWML_PW,
        "RC_HOOK": HOOK_PW,
        "PYTHONPATH": str(Path(relaycall.__file__).parents[1]),
    }
    done = subprocess.run(  # noqa: ASYNC221 - the child pytest is the measurement
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-p", "no:randomly",
         "--showlocals", "-vv", "--tb=long", "-o", "addopts=", str(test_file)],
        capture_output=True, text=True, cwd=tmp_path, env=env, timeout=60, check=False,
    )  # fmt: skip
    out = done.stdout + done.stderr
    assert "4 failed" in out, out[-3000:]
    for shown in (
        "UnprocessableEntityError",
        "AmbiguousOutcomeError",
        "ConnectError",
        "Relaycall-Attempt",
    ):
        assert shown in out
    assert leaks(out) == {}


_PYTEST_FLOWS = textwrap.dedent(
    '''
    """Each test fails inside relaycall; the secrets come from the environment."""
    import asyncio
    import os
    import socket

    from aiohttp import web

    import relaycall

    PROJECT = "a2c2f1d0-0000-4000-8000-00000000beef"
    CALL_ID = "6f1c1c1e-1111-4222-8333-944444444444"


    async def _against(status, flow):
        async def answer(request):
            await request.read()
            return web.json_response({"errors": [{"message": "no"}]}, status=status)

        app = web.Application()
        app.router.add_post("/api/calling/calls", answer)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]
        try:
            async with relaycall.AsyncRelay(
                PROJECT, os.environ["RC_TOKEN"], base_url=f"http://127.0.0.1:{port}"
            ) as relay:
                await flow(relay)
        finally:
            await runner.cleanup()


    def _sip_dial(relay):
        return relay.dial(
            from_="+15551230000", to="sip:bob@example.com", url="https://example.com/swml",
            username="alice", password=os.environ["RC_SIP"],
        )


    def test_dial_refused_by_the_server():
        asyncio.run(_against(422, _sip_dial))


    def test_dial_outcome_unknown():
        asyncio.run(_against(500, lambda relay: relay.dial(
            from_="+15551230000", to="sip:bob@example.com", swml={"sections": {"main": [
                {"connect": {"to": "sip:bob@example.com", "password": os.environ["RC_SWML"]}}
            ]}},
        )))


    def test_sidecar_with_webhook_password():
        asyncio.run(_against(422, lambda relay: relay.send(relaycall.commands.AISidecar(
            call_id=CALL_ID, lang="en-US",
            swaig={"defaults": {"web_hook_auth_password": os.environ["RC_HOOK"]}},
        ))))


    def test_connection_refused():
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]

        async def run():
            async with relaycall.AsyncRelay(
                PROJECT, os.environ["RC_TOKEN"], base_url=f"http://127.0.0.1:{port}", retry=None
            ) as relay:
                await _sip_dial(relay)

        asyncio.run(run())
    '''
)


# --- validation -----------------------------------------------------------------------


def _bad_swml_step() -> None:
    step = {"connect": {"to": "sip:bob@example.com", "password": SWML_PW}, "extra": 1}
    c.Dial(from_="+15551230000", to="+15557650000", swml={"sections": {"main": [step]}})


def _swml_sections_a_list() -> None:
    sections = [{"connect": {"password": SWML_PW}}]
    c.Dial(from_="+15551230000", to="+15557650000", swml={"sections": sections})


def _swml_password_not_text() -> None:
    step = {"connect": {"to": "sip:bob@example.com", "password": SWML_PW + "\ud800"}}
    c.Dial(from_="+15551230000", to="+15557650000", swml={"sections": {"main": [step]}})


def _swaig_unknown_key() -> None:
    fn = {"function": "f", "web_hook_auth_password": HOOK_PW, "bogus": 1}
    c.AISidecar(call_id=CALL_ID, lang="en", swaig={"functions": [fn]})


def _swaig_defaults_a_list() -> None:
    c.AISidecar(
        call_id=CALL_ID, lang="en", swaig={"defaults": [{"web_hook_auth_password": HOOK_PW}]}
    )


def _swaig_functions_not_a_list() -> None:
    c.AISidecar(
        call_id=CALL_ID, lang="en", swaig={"functions": {"web_hook_auth_password": HOOK_PW}}
    )


def _mcp_header_not_text() -> None:
    server = {"url": "https://mcp.example.com", "headers": {"Authorization": BEARER + "\ud800"}}
    c.AISidecar(call_id=CALL_ID, lang="en", swaig={"mcp_servers": [server]})


def _refer_device_unknown_key() -> None:
    device = {"type": "sip", "params": {"to": "sip:b@example.com", "password": SIP_PW, "x": 1}}
    c.Refer(call_id=CALL_ID, device=device)  # type: ignore[arg-type]


def _refer_device_a_list() -> None:
    device = [{"type": "sip", "params": {"to": "sip:b@example.com", "password": SIP_PW}}]
    c.Refer(call_id=CALL_ID, device=device)  # type: ignore[arg-type]


def _transfer_dest_swml_malformed() -> None:
    c.Transfer(
        call_id=CALL_ID, dest={"sections": {"main": [{"connect": {"password": SWML_PW}}]}, "x": 1}
    )


def _sip_password_not_a_string() -> None:
    c.Dial(from_="+15551230000", to="sip:b@example.com", url="https://e.com/", password=[SIP_PW])  # type: ignore[arg-type]


MALFORMED = {
    f.__name__.lstrip("_"): f
    for f in (
        _bad_swml_step, _swml_sections_a_list, _swml_password_not_text, _swaig_unknown_key,
        _swaig_defaults_a_list, _swaig_functions_not_a_list, _mcp_header_not_text,
        _refer_device_unknown_key, _refer_device_a_list, _transfer_dest_swml_malformed,
        _sip_password_not_a_string,
    )
}  # fmt: skip


@pytest.mark.parametrize("case", list(MALFORMED))
def test_a_malformed_object_around_a_password_masks_it(case: str) -> None:
    """
    The issue's cases: the message and the exception never show the password.

    Nor does any relaycall frame of the traceback. The one frame left holding
    it is the generated ``__init__`` whose parameter *is* the caller's own
    object (the dict the caller passed), like the caller's own frame.
    """
    with pytest.raises(relaycall.ValidationError) as info:
        MALFORMED[case]()
    exc = info.value
    assert leaks(str(exc)) == {}
    assert leaks(repr(exc.value)) == {}
    text = captured(exc, skip=_the_callers)
    assert leaks(text) == {}, text


def _the_callers(frame: FrameType, name: str, value: Any) -> bool:
    """
    The caller's own frame (the case above), and the generated __init__'s parameter
    that is the object the caller passed, exactly as the caller holds it.
    """
    if frame.f_code.co_filename == __file__:
        return True
    code = frame.f_code
    parameters = code.co_varnames[: code.co_argcount + code.co_kwonlyargcount]
    return code.co_filename.startswith("<attrs generated") and name in parameters[1:]


def test_validation_tracebacks_end_at_the_failing_field() -> None:
    """The checks' own frames (each holding the value) are dropped from the traceback."""
    with pytest.raises(relaycall.ValidationError) as info:
        _bad_swml_step()
    names = [frame.name for frame in traceback.extract_tb(info.value.__traceback__)]
    assert "swml_check" not in names
    assert "_step_check" not in names
    assert names[-1] == "validate"


secret_keys = st.sampled_from(
    ["password", "Password", "web_hook_auth_password", "sippassword", "authorization",
     "Authorization", "authorization_bearer_token", "api_key", "x-api-key", "client_secret",
     "token", "access_token", "passwd"]
)  # fmt: skip
# Every secret value holds this mark; nothing else does.
MARK = "\u2620"
secret_values = st.one_of(
    st.text(max_size=6).map(lambda t: MARK + t),
    st.lists(st.just(MARK), min_size=1, max_size=2),
    st.fixed_dictionaries({"k": st.just(MARK)}),
    st.integers().map(lambda i: f"{MARK}{i}"),
)
plain = st.one_of(
    st.none(), st.booleans(), st.integers(), st.text(max_size=4).filter(lambda t: MARK not in t)
)
plain_keys = st.text(max_size=6).filter(lambda t: MARK not in t)
trees = st.recursive(
    plain,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.dictionaries(plain_keys, inner, max_size=3),
        st.builds(lambda k, v, rest: {**rest, k: v}, secret_keys, secret_values,
                  st.dictionaries(plain_keys, inner, max_size=2)),
    ),
    max_leaves=8,
)  # fmt: skip


def _hosts(tree: Any) -> list[Callable[[], Any]]:
    step = {"connect": tree}
    return [
        lambda: c.Dial(from_="+15551230000", to="+15557650000", swml=tree),
        lambda: c.Dial(from_="+15551230000", to="+15557650000", swml={"sections": tree}),
        lambda: c.Dial(from_="+15551230000", to="+15557650000",
                       swml={"sections": {"main": [step, tree]}}),
        lambda: c.Dial(from_="+15551230000", to_script=tree, url="https://e.com/"),
        lambda: c.Transfer(call_id=CALL_ID, dest=tree),
        lambda: c.AISidecar(call_id=CALL_ID, lang="en", swaig=tree),
        lambda: c.AISidecar(call_id=CALL_ID, lang="en", swaig={"functions": [tree]}),
        lambda: c.AISidecar(call_id=CALL_ID, lang="en", swaig={"defaults": tree}),
        lambda: c.Refer(call_id=CALL_ID, device=tree),
        lambda: c.Refer(call_id=CALL_ID, device={"type": "sip", "params": tree}),
        lambda: c.Stream(call_id=CALL_ID, url="wss://s.example.com/", custom_parameters=tree),
        lambda: c.UserEvent(call_id=CALL_ID, event=tree),
    ]  # type: ignore[arg-type]  # fmt: skip


@settings(max_examples=150, deadline=None)
@given(tree=trees)
def test_no_validation_message_shows_a_secret(tree: Any) -> None:
    """Any JSON-like value with secrets at password-like keys, in any free-form field."""
    for build in _hosts(tree):
        try:
            build()
        except relaycall.ValidationError as exc:
            shown = f"{exc} {exc.value!r}"
        else:
            continue
        assert MARK not in shown


# --- what holds the secrets ----------------------------------------------------------------


async def test_the_session_holds_the_token_masked(server: WireServer) -> None:
    """vars(relay) and the headers dict show no token; the wire gets the real Basic header."""
    async with relaycall.AsyncRelay(PROJECT, TOKEN, base_url=server.base_url) as relay:
        assert leaks(repr(vars(relay))) == {}
        assert isinstance(relay._transport.headers["Authorization"], MaskedStr)
        await relay.execute("calling.end", call_id=CALL_ID)
    assert server.seen[0].headers["Authorization"] == f"Basic {BASIC}"


def test_the_token_is_masked_in_a_failing_constructor() -> None:
    """AsyncRelay raising after it read the token (a bad timeout) shows no token in its frame."""
    with pytest.raises(relaycall.UsageError) as info:
        relaycall.AsyncRelay(PROJECT, TOKEN, base_url="http://127.0.0.1:1", timeout="soon")  # type: ignore[arg-type]
    assert leaks(captured(info.value, skip=lambda f, n, v: f.f_code.co_filename == __file__)) == {}


def test_command_reprs_mask_secrets_in_free_form_json() -> None:
    """repr(Dial(swml=...)) and repr(AISidecar(swaig=...)) show no password; the body does."""
    dial = c.Dial(from_="+15551230000", to="sip:b@example.com", swml=SWML, password=SIP_PW)
    sidecar = c.AISidecar(call_id=CALL_ID, lang="en", swaig=SWAIG)
    assert leaks(repr(dial)) == {}
    assert leaks(repr(sidecar)) == {}
    assert dial.to_wire()["params"]["swml"] == SWML
    assert "'<redacted>'" in repr(dial)


def test_masking_copies_only_what_holds_a_secret() -> None:
    """mask_secrets leaves the caller's objects untouched and returns clean ones as they are."""
    clean = {"sections": {"main": [{"answer": {}}]}}
    assert mask_secrets(clean) is clean
    masked = mask_secrets(SWML)
    assert masked == SWML
    assert masked is not SWML
    assert type(SWML["sections"]["main"][0]["connect"]["password"]) is str  # not modified
    assert repr(masked).count("<redacted>") == 1


def test_a_masked_body_is_the_same_bytes() -> None:
    """MaskedBody is the bytes aiohttp sends; its repr masks the password and keeps the rest."""
    raw = b'{"command":"dial","params":{"to":"sip:b@example.com","password":"%s"}}' % (
        SIP_PW.encode()
    )
    body = MaskedBody(raw)
    assert body == raw
    assert bytes(body) == raw
    assert SIP_PW not in repr(body)
    assert "sip:b@example.com" in repr(body)
