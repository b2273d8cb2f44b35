"""
Every ```python block of README.md and docs/**/*.md runs here, as printed.

How a block runs is said by an HTML comment on the line before its fence (blank lines
between are allowed), invisible once rendered::

    <!-- doctest: MODE [key=value ...] -->

- No marker, or ``program [expect=TEXT]``: a complete program. It is saved as ``snippet.py``
  in an empty folder and run with ``python snippet.py``; it must exit with status 0 (and
  print TEXT, when given) and receive callbacks. Its environment points it at an
  emulator this test runs: ``SIGNALWIRE_BASE_URL``, ``SIGNALWIRE_PROJECT_ID``,
  ``SIGNALWIRE_API_TOKEN``, ``SIGNALWIRE_SIGNING_KEY``, and ``PUBLIC_URL`` /
  ``PORT`` (a free loopback port, and its URL) for a receiver of its own.
- ``emulator``: a fragment, run in this process as the body of an async function (``await``
  and ``async with`` at top level are fine) once these names are bound: ``asyncio``, ``os``,
  ``pytest``, ``relaycall``, ``AsyncRelay``, ``commands``, ``tts``; ``emu``, a started
  :class:`relaycall.testing.Emulator` (signing its callbacks, its journal empty, and the
  SIGNALWIRE_* variables pointing at it); ``relay`` and ``receiver``, its AsyncRelay and
  EventReceiver; ``call``, an answered call on ``relay``; ``caller`` and ``customer``, a
  from and a to number (the customer presses 1 when asked and hangs up 10 s after
  answering); ``swml_url``; ``port`` and ``public_url``, a free loopback port and a receiver
  URL on it. A block of ``>>>`` examples runs as a doctest with the same names.
- ``pytest``: a test module. It is saved as ``test_snippet.py`` in an empty folder (no pytest
  configuration anywhere up the tree) and run with ``python -m pytest``, which must pass.
- ``app server=uvicorn|python post=PATH expect=TEXT``: a web application module, saved as
  ``app.py`` in an empty folder and served on a free loopback port (``uvicorn app:app``, or
  ``python app.py`` with ``PORT`` set), with the environment of a program. Once it listens,
  ``POST PATH`` must answer 2xx with TEXT in the body, the emulator's callbacks must all have
  been accepted, and the server must stop cleanly on SIGTERM.
- ``command ready=TEXT`` (before a ``sh`` block): each command line (a ``# comment`` is
  dropped) starts a server as a user would type it in the repository's root, ``relaycall``
  being the console script installed next to this Python and ``python`` this Python, and
  with the port after ``--port`` replaced by a free one. It must print TEXT, then stop
  cleanly on SIGINT (Ctrl-C). With ``exits=0``, a program that ends by itself: it must
  print TEXT and exit with status 0, within a minute.
- ``example test=FILE::NAME`` (before a ``sh`` block): how to run an example that needs
  more than this file can give it (credentials, an emulator, Redis, a second terminal),
  not run here: the test NAME in FILE (tests/test_examples.py...) runs it. Checked here:
  that test exists, and it (or a helper of its module it calls) names each example the
  block runs (``examples/NAME.py``, ``examples.NAME:app``).
- ``skip reason="..."``: not run, and reported as skipped with the reason. Keep these rare:
  ``test_few_blocks_are_skipped`` counts them.

A marker this file does not know, or one that does not precede a ``python`` block (a ``sh``
block for ``command``), is an error. Other blocks (``sh``, ``json``, ``console``...) are not
run: the README's two set-up commands are what CI itself runs.
"""

from __future__ import annotations

import ast
import asyncio
import contextlib
import doctest
import inspect
import os
import re
import shlex
import signal
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import attrs
import pytest

import relaycall
from relaycall import commands, tts
from relaycall.testing import Emulator, Scenario
from tests._programs import (
    PYTHON,
    REPO,
    SIGNING_KEY,
    Program,
    assert_callbacks_received,
    free_port,
    program_env,
    run_program,
)

DOCUMENTS = [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md"))]
RUN_LANGUAGES = {"python", "py", "pycon"}
#: mode -> (options it requires, options it may take)
MODES: dict[str, tuple[set[str], set[str]]] = {
    "program": (set(), {"expect"}),
    "emulator": (set(), set()),
    "pytest": (set(), set()),
    "app": ({"server", "post", "expect"}, set()),
    "skip": ({"reason"}, set()),
    "command": ({"ready"}, {"exits"}),
    "example": ({"test"}, set()),
}
SHELL_LANGUAGES = {"sh", "shell", "bash"}
#: The modes of ``sh`` blocks.
SHELL_MODES = {"command", "example"}
MAX_SKIPPED = 2

CALLER = "+15551230000"
CUSTOMER = "+15557650000"
OTHER = "+15557650001"
SWML_URL = "https://example.com/swml"

_FENCE = re.compile(r"^ {0,3}(?P<fence>`{3,}|~{3,})\s*(?P<info>[^`]*?)\s*$")
_MARKER = re.compile(r"^\s*<!--\s*doctest:(?P<spec>.*?)-->\s*$")


@attrs.frozen
class Block:
    """One fenced code block: where it is, its language, its code and how to run it."""

    path: Path
    line: int  # of the first line of code (1-based)
    language: str
    code: str
    mode: str
    options: dict[str, str]

    @property
    def where(self) -> str:
        return f"{self.path.relative_to(REPO)}:{self.line}"


def parse_marker(spec: str, where: str) -> tuple[str, dict[str, str]]:
    words = shlex.split(spec)
    if not words:
        raise ValueError(f"{where}: an empty doctest marker")
    mode, *rest = words
    if mode not in MODES:
        raise ValueError(f"{where}: unknown doctest mode {mode!r} (known: {sorted(MODES)})")
    options: dict[str, str] = {}
    for word in rest:
        key, eq, value = word.partition("=")
        required, optional = MODES[mode]
        if not eq or key not in required | optional:
            raise ValueError(f"{where}: {mode!r} takes {sorted(required | optional)}, not {word!r}")
        options[key] = value
    missing = MODES[mode][0] - options.keys()
    if missing:
        raise ValueError(f"{where}: {mode!r} needs {sorted(missing)}")
    if mode == "skip" and not options["reason"].strip():
        raise ValueError(f"{where}: a skipped block needs a reason")
    if mode == "app" and options["server"] not in ("uvicorn", "python"):
        raise ValueError(f"{where}: server must be uvicorn or python")
    return mode, options


def parse_blocks(path: Path, text: str) -> list[Block]:
    """The fenced code blocks of a Markdown document, with their markers checked."""
    lines = text.splitlines()
    blocks: list[Block] = []
    i = 0
    while i < len(lines):
        opening = _FENCE.match(lines[i])
        if opening is None:
            marker = _MARKER.match(lines[i])
            if marker is not None:
                j = i + 1
                while j < len(lines) and not lines[j].strip():
                    j += 1
                following = _FENCE.match(lines[j]) if j < len(lines) else None
                language = following["info"].split()[0] if following and following["info"] else ""
                shell = marker["spec"].split()[:1] in (["command"], ["example"])
                if language not in (SHELL_LANGUAGES if shell else RUN_LANGUAGES):
                    kind = "an sh" if shell else "a python"
                    raise ValueError(
                        f"{path.name}:{i + 1}: a doctest marker not before {kind} block"
                    )
            i += 1
            continue
        fence, info = opening["fence"], opening["info"]
        language = info.split()[0].lower() if info else ""
        end = i + 1
        while end < len(lines) and not (
            lines[end].strip().startswith(fence[0] * len(fence))
            and not lines[end].strip().strip(fence[0])
        ):
            end += 1
        code = "\n".join(lines[i + 1 : end]) + "\n"
        where = f"{path.name}:{i + 2}"
        k = i - 1
        while k >= 0 and not lines[k].strip():
            k -= 1
        marker = _MARKER.match(lines[k]) if k >= 0 else None
        mode, options = parse_marker(marker["spec"], where) if marker else ("program", {})
        blocks.append(Block(path, i + 2, language, code, mode, options))
        i = end + 1
    return blocks


def runnable_blocks() -> list[Block]:
    return [
        block
        for path in DOCUMENTS
        for block in parse_blocks(path, path.read_text(encoding="utf-8"))
        if block.language in RUN_LANGUAGES or block.mode in SHELL_MODES
    ]


BLOCKS = runnable_blocks()


# --- the emulator prelude ------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def emulator_prelude(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[dict[str, Any]]:
    """The names an ``emulator`` block may use (see the module docstring)."""
    customer = Scenario(dtmf="1", hangup_after=10)
    async with Emulator(
        time_scale=100, signing_key=SIGNING_KEY, scenarios={CUSTOMER: customer}
    ) as emu:
        for name, value in program_env(emu).items():
            if name.startswith("SIGNALWIRE_"):
                monkeypatch.setenv(name, value)
        call = await emu.relay.dial(from_=CALLER, to=OTHER, url=SWML_URL)
        assert await call.wait_for("answered", timeout=5) == "answered"
        await emu.idle()
        emu.journal.clear()  # a block sees only what it did itself
        port = free_port()
        yield {
            "asyncio": asyncio,
            "os": os,
            "pytest": pytest,
            "relaycall": relaycall,
            "AsyncRelay": relaycall.AsyncRelay,
            "commands": commands,
            "tts": tts,
            "emu": emu,
            "relay": emu.relay,
            "receiver": emu.receiver,
            "call": call,
            "caller": CALLER,
            "customer": CUSTOMER,
            "swml_url": SWML_URL,
            "port": port,
            "public_url": f"http://127.0.0.1:{port}/relaycall/events",
        }


async def run_fragment(block: Block, names: dict[str, Any]) -> None:
    if block.code.lstrip().startswith(">>>"):
        run_doctest(block, names)
        return
    # Leading newlines keep tracebacks pointing at the document's own line numbers.
    source = "\n" * (block.line - 1) + block.code
    code = compile(source, str(block.path), "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
    result = eval(code, names)  # the documentation's own code
    if inspect.iscoroutine(result):
        await asyncio.wait_for(result, 30)


def run_doctest(block: Block, names: dict[str, Any]) -> None:
    test = doctest.DocTestParser().get_doctest(
        block.code, dict(names), block.where, str(block.path), block.line - 1
    )
    report: list[str] = []
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    result = runner.run(test, out=report.append, clear_globs=False)
    assert result.attempted > 0
    assert result.failed == 0, "".join(report)


# --- the other modes ----------------------------------------------------------------------------


async def run_program_block(block: Block, folder: Path) -> None:
    (folder / "snippet.py").write_text(block.code)
    async with Emulator(time_scale=100, signing_key=SIGNING_KEY) as emu:
        port = free_port()
        env = program_env(emu, PUBLIC_URL=f"http://127.0.0.1:{port}", PORT=str(port))
        code, out = await run_program([PYTHON, "snippet.py"], env=env, cwd=folder)
        assert code == 0, f"{block.where} failed:\n{out}"
        assert block.options.get("expect", "") in out, out
        assert_callbacks_received(emu)


async def run_pytest_block(block: Block, folder: Path) -> None:
    (folder / "test_snippet.py").write_text(block.code)
    code, out = await run_program(
        [PYTHON, "-m", "pytest", "test_snippet.py"], env=program_env(None), cwd=folder
    )
    assert "configfile:" not in out, f"a pytest configuration was found:\n{out}"
    assert code == 0, f"{block.where} failed under pytest:\n{out}"
    assert re.search(r"\b\d+ passed\b", out), out


async def run_app_block(block: Block, folder: Path) -> None:
    (folder / "app.py").write_text(block.code)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    if block.options["server"] == "uvicorn":
        argv = [PYTHON, "-m", "uvicorn", "app:app", "--host", "127.0.0.1", "--port", str(port)]
    else:
        argv = [PYTHON, "app.py"]
    async with Emulator(time_scale=100, signing_key=SIGNING_KEY) as emu:
        env = program_env(emu, PUBLIC_URL=base, PORT=str(port))
        app = await Program(argv, env=env, cwd=folder).start()
        try:
            await app.wait_for_output(r"[Rr]unning on http")
            async with (
                aiohttp.ClientSession() as http,
                http.post(base + block.options["post"]) as resp,
            ):
                body = await resp.text()
                assert 200 <= resp.status < 300, f"{resp.status} {body}\n{app.output}"
            assert block.options["expect"] in body, body
        finally:
            code = await app.stop()
        assert_callbacks_received(emu)
        # uvicorn re-raises the SIGTERM it handled once its graceful shutdown is done.
        assert code in (0, -signal.SIGTERM), app.output
        assert "Traceback" not in app.output, app.output


async def run_command_block(block: Block, folder: Path) -> None:
    for line in block.code.splitlines():
        argv = shlex.split(line, comments=True)
        if not argv:
            continue
        if argv[0] == "relaycall":
            argv[0] = str(Path(PYTHON).parent / "relaycall")
        elif argv[0] in ("python", "python3"):
            argv[0] = PYTHON
        if "--port" in argv:
            argv[argv.index("--port") + 1] = str(free_port())
        server = await Program(argv, env=program_env(None), cwd=REPO).start()
        ends = "exits" in block.options
        try:
            await server.wait_for_output(re.escape(block.options["ready"]), timeout=60)
        finally:
            if server.returncode is None and not ends:
                server.interrupt()
            code = await server.wait(60 if ends else 20)
        assert code == int(block.options.get("exits", "0")), server.output
        assert "Traceback" not in server.output, server.output


def check_example_block(block: Block) -> None:
    """The test an ``example`` marker names exists and runs each example the block runs."""
    file, sep, name = block.options["test"].partition("::")
    path = REPO / file
    assert sep, f"{block.where}: test= takes FILE::NAME, not {block.options['test']!r}"
    assert path.is_file(), f"{block.where}: no test file {file}"
    source = path.read_text(encoding="utf-8")
    functions = {
        node.name: node
        for node in ast.parse(source).body
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
    }
    test = functions.get(name)
    assert test is not None, f"{block.where}: no test {name} in {file}"
    called = {n.func.id for n in ast.walk(test) if isinstance(n, ast.Call)
              and isinstance(n.func, ast.Name)}  # fmt: skip
    runs = "".join(
        ast.get_source_segment(source, functions[f]) or ""
        for f in {name} | called & functions.keys()
    )
    examples = set(re.findall(r"\bexamples[/.](\w+)", block.code))
    assert examples, f"{block.where}: the block runs no examples/NAME.py"
    missing = sorted(e for e in examples if not re.search(rf"\b{e}\b", runs))
    assert not missing, f"{block.where}: {file}::{name} does not run {missing}"


# --- the tests ----------------------------------------------------------------------------------


@pytest.mark.parametrize("block", BLOCKS, ids=lambda b: b.where)
async def test_block_runs(block: Block, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The block runs as its marker says (a complete program when unmarked) and succeeds."""
    if block.mode == "skip":
        pytest.skip(block.options["reason"])
    elif block.mode == "emulator":
        async with emulator_prelude(monkeypatch) as names:
            await run_fragment(block, names)
    elif block.mode == "program":
        await run_program_block(block, tmp_path)
    elif block.mode == "pytest":
        await run_pytest_block(block, tmp_path)
    elif block.mode == "command":
        await run_command_block(block, tmp_path)
    elif block.mode == "example":
        check_example_block(block)
    else:
        await run_app_block(block, tmp_path)


def test_few_blocks_are_skipped() -> None:
    """Almost every block runs: skipped ones are few, and each says why."""
    skipped = [b.where for b in BLOCKS if b.mode == "skip"]
    assert len(skipped) <= MAX_SKIPPED, skipped


def test_the_documents_have_blocks_of_every_mode() -> None:
    """The parser finds the README's blocks (a parser that finds nothing would pass)."""
    modes = {b.mode for b in BLOCKS}
    assert {"program", "emulator", "pytest", "app", "command", "example"} <= modes
    assert {b.options["server"] for b in BLOCKS if b.mode == "app"} == {"uvicorn", "python"}


@pytest.mark.parametrize(
    ("markdown", "error"),
    [
        ("<!-- doctest: emulater -->\n```python\npass\n```\n", "unknown doctest mode"),
        ("<!-- doctest: skip -->\n```python\npass\n```\n", "needs ['reason']"),
        ('<!-- doctest: skip reason="" -->\n```python\npass\n```\n', "needs a reason"),
        ("<!-- doctest: app server=uvicorn -->\n```python\npass\n```\n", "needs"),
        ("<!-- doctest: pytest -->\n```sh\nls\n```\n", "not before a python block"),
        ("<!-- doctest: command ready=x -->\n```python\npass\n```\n", "not before an sh block"),
        ("<!-- doctest: emulator timeout=3 -->\n```python\npass\n```\n", "takes []"),
        ("<!-- doctest: example -->\n```sh\nls\n```\n", "needs ['test']"),
        ("<!-- doctest: example test=x -->\n```python\npass\n```\n", "not before an sh block"),
    ],
    ids=[
        "unknown-mode",
        "no-reason",
        "empty-reason",
        "app-incomplete",
        "not-python",
        "command-not-sh",
        "unknown-option",
        "example-without-test",
        "example-not-sh",
    ],
)
def test_bad_markers_are_errors(markdown: str, error: str) -> None:
    """A misspelt or incomplete marker fails the run instead of silently changing it."""
    with pytest.raises(ValueError, match=re.escape(error)):
        parse_blocks(REPO / "README.md", markdown)


async def test_a_failing_unmarked_block_fails(tmp_path: Path) -> None:
    """An unmarked block is a program that must succeed: one that fails, fails its test."""
    (block,) = parse_blocks(REPO / "README.md", "```python\nraise SystemExit(3)\n```\n")
    assert block.mode == "program"
    with pytest.raises(AssertionError, match=r"README\.md:2 failed"):
        await run_program_block(block, tmp_path)


@pytest.mark.parametrize(
    ("test", "code", "error"),
    [
        ("tests/test_examples.py::test_nope", "python examples/quickstart.py", "no test test_nope"),
        ("tests/nope.py::test_x", "python examples/quickstart.py", "no test file tests/nope.py"),
        (
            "tests/test_examples.py::test_quickstart_runs_on_the_built_in_emulator",
            "python examples/bulk_dialer.py",
            "does not run ['bulk_dialer']",
        ),
        (
            "tests/test_examples.py::test_quickstart_runs_on_the_built_in_emulator",
            "curl localhost:8000",
            "runs no examples/NAME.py",
        ),
    ],
    ids=["no-such-test", "no-such-file", "another-example", "no-example"],
)
def test_an_example_marker_must_name_the_test_that_runs_it(
    test: str, code: str, error: str
) -> None:
    """An ``example`` block is not run here: its marker must name a test that exists and
    runs the examples the block shows, or the block fails."""
    markdown = f"<!-- doctest: example test={test} -->\n```sh\n{code}\n```\n"
    (block,) = parse_blocks(REPO / "README.md", markdown)
    with pytest.raises(AssertionError, match=re.escape(error)):
        check_example_block(block)
    good = "tests/test_examples.py::test_quickstart_runs_on_the_built_in_emulator"
    markdown = f"<!-- doctest: example test={good} -->\n```sh\npython examples/quickstart.py\n```\n"
    (block,) = parse_blocks(REPO / "README.md", markdown)
    check_example_block(block)


async def test_a_command_block_that_ends_must_end_well(tmp_path: Path) -> None:
    """A ``command exits=0`` block runs to its end: printing the text is not enough, the
    program must also exit with status 0."""
    markdown = (
        '<!-- doctest: command exits=0 ready="done" -->\n```sh\n'
        "python -c \"print('done'); raise SystemExit(3)\"\n```\n"
    )
    (block,) = parse_blocks(REPO / "README.md", markdown)
    with pytest.raises(AssertionError, match="done"):
        await run_command_block(block, tmp_path)
    (block,) = parse_blocks(REPO / "README.md", markdown.replace("SystemExit(3)", "SystemExit(0)"))
    await run_command_block(block, tmp_path)
