"""
SWML on emulated calls: the signed fetch (reference §9.6) and an interpreter
for a documented subset of SWML, on the emulator's scheduler.

A :class:`SwmlRun` executes one call's document step by step. Steps that take
time (``play``, ``sleep``, ``prompt``, ``connect``) reuse the emulated
operations and timers, so their durations are the Calling API's; every other
step takes no emulated time. Known SWML methods the emulator cannot carry out
are logged (a warning naming the call and the method), journaled
(``swml.unsupported``) and skipped. The journal notes are listed in
docs/emulator.md.
"""

from __future__ import annotations

import ast
import asyncio
import contextlib
import json
import logging
import math
import re
import uuid
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from relaycall import commands as c
from relaycall._commands._swml import SWML_METHODS
from relaycall.emulator._clock import Timer
from relaycall.emulator._ops import Collect, Operation, Play, Record
from relaycall.emulator._wav import RATE, wav_size
from relaycall.errors import ValidationError

if TYPE_CHECKING:
    from relaycall.emulator._calls import EmulatedCall
    from relaycall.emulator._outbox import FetchReply

__all__ = ["EXECUTED", "NOT_EMULATED", "DocumentError", "SwmlRun", "check_document"]

logger = logging.getLogger("relaycall.emulator")

#: The SWML methods the emulator executes.
EXECUTED = frozenset(
    """answer play sleep hangup record_call stop_record_call prompt connect transfer execute
    return set unset goto label switch cond""".split()  # noqa: SIM905 - a word list
)
#: The SWML methods it logs, journals and skips.
NOT_EMULATED = frozenset(SWML_METHODS - EXECUTED)

#: How long ``ring:<country>`` (one ring, no duration) plays: one ring cycle.
SINGLE_RING_SECONDS = 6.0
#: Steps one run may execute without waiting (a loop of instant steps is stopped there).
MAX_INSTANT_STEPS = 10_000
#: Nested ``execute`` and inline blocks deeper than this end the run ("nested too deep").
MAX_DEPTH = 64
#: ``transfer`` and fetches per call (the platform documents 32).
MAX_TRANSFERS = 32

_VAR = re.compile(r"[$%]\{([^}]*)\}")
_PATH = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z0-9_]+)*$")
#: Keys holding nested steps: expanded when those steps run, not before.
_NESTED = frozenset({"case", "default", "then", "else", "on_return", "result"})


class DocumentError(Exception):
    """A document the platform would refuse; *code* is its ``relay_script_*`` error code."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


def check_document(doc: Any) -> dict[str, list[Any]]:
    """The sections of SWML document *doc*, or :class:`DocumentError`."""
    if not isinstance(doc, dict):
        raise DocumentError("relay_script_element_wrong_type", "the document is not an object")
    for key in doc:
        if key not in ("version", "sections"):
            raise DocumentError("relay_script_element_undefined", f"unknown element {key!r}")
    if "version" in doc and doc["version"] != "1.0.0":
        raise DocumentError("relay_script_version_invalid", f"version {doc['version']!r}")
    sections = doc.get("sections")
    if sections is None:
        raise DocumentError("relay_script_sections_missing", "the document has no sections")
    if not isinstance(sections, dict):
        raise DocumentError("relay_script_element_wrong_type", "sections is not an object")
    if "main" not in sections:
        raise DocumentError("relay_script_main_section_missing", "sections has no main")
    for name, steps in sections.items():
        if not isinstance(steps, list):
            raise DocumentError("relay_script_element_wrong_type", f"section {name!r} is no list")
        for i, step in enumerate(steps):
            _check_step(f"{name}[{i}]", step)
    return sections


def _check_step(where: str, step: Any) -> None:
    if not isinstance(step, dict) or len(step) != 1:
        raise DocumentError("relay_script_method_missing_name", f"{where} is not a one-key object")
    (method,) = step
    if method not in SWML_METHODS:
        raise DocumentError("relay_script_method_undefined", f"{where}: unknown method {method!r}")


def parse_answer(reply: FetchReply) -> tuple[dict[str, Any] | None, str | None]:
    """A fetched document, or why it cannot be run."""
    if reply.status is None:
        return None, f"fetch failed: {reply.error}"
    if reply.error is not None:
        return None, reply.error
    if reply.status != 200:
        return None, f"answered HTTP {reply.status}"
    try:
        doc = json.loads(reply.body)
    except (ValueError, UnicodeDecodeError):
        return None, "relay_script_parse_error: the answer is not JSON"
    return doc, None


# --- expressions ---------------------------------------------------------------------------------

_JS = [("===", "=="), ("!==", "!="), ("&&", " and "), ("||", " or ")]
_ALLOWED = (
    ast.Expression, ast.BoolOp, ast.And, ast.Or, ast.UnaryOp, ast.Not, ast.USub, ast.Compare,
    ast.Eq, ast.NotEq, ast.Lt, ast.LtE, ast.Gt, ast.GtE, ast.Constant, ast.Name, ast.Attribute,
    ast.Load, ast.BinOp, ast.Add, ast.Sub,
)  # fmt: skip


class ExpressionError(Exception):
    """An expression the emulator cannot evaluate (it runs no JavaScript)."""


def _js_to_python(expr: str) -> str:
    for js, py in _JS:
        expr = expr.replace(js, py)
    expr = re.sub(r"!(?!=)", " not ", expr)
    return re.sub(
        r"\b(true|false|null|undefined)\b",
        lambda m: {"true": "True", "false": "False"}.get(m.group(1), "None"),
        expr,
    )


def _loose(a: Any, b: Any) -> tuple[Any, Any]:
    """JavaScript's ``==`` between a number and a numeric string compares numbers."""
    if isinstance(a, int | float) and isinstance(b, str):
        with contextlib.suppress(ValueError):
            return a, float(b)
    if isinstance(b, int | float) and isinstance(a, str):
        with contextlib.suppress(ValueError):
            return float(a), b
    return a, b


# --- the interpreter -----------------------------------------------------------------------------


class Frame:
    """A list of steps being executed: a section, or an inline block (a case, ``then``...)."""

    __slots__ = ("boundary", "inline", "jumps", "name", "on_return", "params", "pc", "result",
                 "sections", "steps")  # fmt: skip

    def __init__(
        self,
        sections: Mapping[str, list[Any]],
        name: str,
        steps: list[Any] | None = None,
        *,
        inline: bool = False,
    ) -> None:
        self.sections = sections
        self.name = name
        self.steps: list[Any] = steps if steps is not None else list(sections.get(name, []))
        self.pc = 0
        self.inline = inline
        #: An ``execute``'s frame: where ``return`` comes back to.
        self.boundary = False
        self.on_return: list[Any] | None = None
        self.result: Any = None
        self.params: dict[str, Any] | None = None
        self.jumps: dict[int, int] = {}


class SwmlRun:
    """
    The SWML document running on one call.

    Attributes:
        state: ``fetching``, ``running``, ``waiting`` (a play, prompt or fetch),
            ``sleeping``, ``connecting``, ``bridged`` or ``ended``.
        ended_why: Why it ended: ``completed`` (ran to its end: the call is hung up),
            ``hangup``, ``return``, ``taken_over`` (a Calling API command arrived during a
            ``sleep``), ``replaced`` (update or transfer), ``call_ended``, ``error``.
        vars: The script variables (``set``, ``prompt_value``...).
    """

    def __init__(
        self,
        call: EmulatedCall,
        *,
        envs: Mapping[str, Any] | None = None,
        params: Mapping[str, Any] | None = None,
        headers: list[dict[str, str]] | None = None,
        sip_data: Mapping[str, Any] | None = None,
    ) -> None:
        self.call = call
        self.emu = call.emu
        self.clock = call.emu.clock
        self.vars: dict[str, Any] = {}
        self.envs: dict[str, Any] = dict(envs or {})
        self.params: dict[str, Any] = dict(params or {})
        self.headers = list(headers or [])
        self.sip_data = dict(sip_data) if sip_data is not None else None
        self.state = "fetching"
        self.ended_why: str | None = None
        self.error: str | None = None
        self.url: str | None = None
        self.fetches = 0
        self.steps_run = 0
        self.frames: list[Frame] = []
        self.peers: list[EmulatedCall] = []
        self._groups: list[list[Any]] = []
        self._connect: dict[str, Any] = {}
        self._op: Operation | None = None
        self._timer: Timer | None = None
        self._max_timer: Timer | None = None
        self._task: asyncio.Task[None] | None = None
        self._stepping = False
        self._loaded = asyncio.Event()

    def __repr__(self) -> str:
        return f"<SwmlRun call={self.call.id} state={self.state}>"

    def summary(self) -> dict[str, Any]:
        return {
            "state": self.state,
            "ended_why": self.ended_why,
            "error": self.error,
            "steps_run": self.steps_run,
            "vars": dict(self.vars),
        }

    @property
    def is_over(self) -> bool:
        return self.state == "ended"

    async def loaded(self) -> None:
        """Return once the first document was fetched and started (or the fetch failed)."""
        await self._loaded.wait()

    # --- the fetch ----------------------------------------------------------------------------

    def call_object(self) -> dict[str, Any]:
        """The fetch body's ``call`` (reference §9.6): the call as it is now."""
        call = self.call
        state = call.status if call.status in ("created", "ringing", "answered") else "ended"
        info: dict[str, Any] = {
            "call_id": call.id,
            "node_id": call.node_id,
            "segment_id": call.segment_id,
            "call_state": state,
            "direction": call.direction,
            "type": call.device_type,
            "from": call.from_,
            "to": call.to,
            "headers": list(self.headers),
            "project_id": project_uuid(self.emu.config.project_id),
            "space_id": project_uuid(self.emu.config.space_id),
        }
        if call.device_type == "phone":
            info["from_number"] = call.from_
            info["to_number"] = call.to
        if call.device_type == "sip" and self.sip_data is not None:
            info["sip_data"] = dict(self.sip_data)
        return info

    def fetch_body(self) -> dict[str, Any]:
        """The JSON the platform POSTs to the SWML URL."""
        return {
            "call": self.call_object(),
            "vars": dict(self.vars),
            "envs": dict(self.envs),
            "params": dict(self.params),
        }

    def fetch(self, url: str, *, method: str = "POST", fallback: str | None = None) -> None:
        """Fetch the document at *url* (then *fallback* if that fails) and run it."""
        self.state = "fetching"
        self._task = asyncio.get_running_loop().create_task(
            self._fetch_and_run(url, method, fallback)
        )
        self.emu.swml_tasks.add(self._task)
        self._task.add_done_callback(self.emu.swml_tasks.discard)

    async def _fetch_and_run(self, url: str, method: str, fallback: str | None) -> None:
        try:
            doc, why = await self._get(url, method)
            if doc is None and fallback:
                doc, why = await self._get(fallback, method)
            if self.is_over:
                return
            if doc is None:
                self._fail("fetch", why or "no document")
                return
            self.run(doc)
        finally:
            self._loaded.set()

    async def _get(self, url: str, method: str) -> tuple[dict[str, Any] | None, str | None]:
        outbox = self.emu.outbox
        short = url.split("?", maxsplit=1)[0]
        if not outbox.reachable(url):
            self.emu.note(self.call.id, "swml.skipped", {"url": url})
            return None, f"{short} is not a loopback host (allow_external_callbacks is off)"
        self.fetches += 1
        if self.fetches > MAX_TRANSFERS:
            return None, "relay_script_too_many_transfers"
        body = self.fetch_body()
        reply = await outbox.fetch(url, body, method=method)
        doc, why = parse_answer(reply)
        note: dict[str, Any] = {
            "url": url,
            "method": method,
            "body": body,
            "status": reply.status,
            "content_type": reply.content_type,
        }
        if doc is not None:
            try:
                check_document(doc)
            except DocumentError as exc:
                doc, why = None, str(exc)
        if doc is None:
            note["error"] = why
        else:
            note["document"] = doc
            if reply.content_type != "application/json":
                logger.warning(
                    "emulator: call %s: the SWML from %s came as %r, not application/json",
                    self.call.id, short, reply.content_type,
                )  # fmt: skip
        self.emu.note(self.call.id, "swml.fetch", note)
        if why is not None:
            logger.warning("emulator: call %s: SWML fetch from %s: %s", self.call.id, short, why)
        self.url = url
        return doc, why

    # --- running ------------------------------------------------------------------------------

    def run(self, doc: Mapping[str, Any]) -> None:
        """Run *doc* from its ``main`` section (replacing whatever ran before)."""
        if self.is_over:
            return
        try:
            sections = check_document(doc)
        except DocumentError as exc:
            self._fail("document", str(exc))
            return
        self._stop_waiting()
        self.frames = [Frame(sections, "main")]
        self.state = "running"
        self._loaded.set()
        self._go()

    def _go(self) -> None:
        """Execute steps until one waits or the document ends, at one emulated instant."""
        with self.clock.instant():
            self._steps()

    def _steps(self) -> None:
        instant = 0
        while self.state == "running":
            instant += 1
            if instant > MAX_INSTANT_STEPS:
                self._fail("loop", f"{MAX_INSTANT_STEPS} steps without waiting")
                return
            if not self.frames:
                self._finish("completed")
                self.call.end("hangup")
                return
            frame = self.frames[-1]
            if frame.pc >= len(frame.steps):
                self.frames.pop()
                if frame.boundary:
                    self._returned(frame, None)
                continue
            index = frame.pc
            step = frame.steps[index]
            frame.pc += 1
            ((method, raw),) = step.items()
            self.steps_run += 1
            self.emu.note(
                self.call.id, "swml.step", {"section": frame.name, "index": index, "method": method}
            )
            self._stepping = True
            try:
                self._step(frame, index, method, raw)
            except (ValidationError, ValueError, TypeError, KeyError) as exc:
                self._step_error(method, "relay_script_method_parameter_invalid_value", str(exc))
            finally:
                self._stepping = False

    def _resume(self) -> None:
        """What the run waited for is over: carry on (now, or when the current step returns)."""
        if self.is_over:
            return
        self._op = None
        self.state = "running"
        if not self._stepping:
            self._go()

    def _step(self, frame: Frame, index: int, method: str, raw: Any) -> None:
        if method not in EXECUTED:
            logger.warning(
                "emulator: call %s: SWML method %r is not emulated; skipped", self.call.id, method
            )
            self.emu.note(
                self.call.id, "swml.unsupported",
                {"method": method, "section": frame.name, "index": index},
            )  # fmt: skip
            return
        if method == "goto":
            self._goto(frame, index, self.expand(raw))
            return
        params = raw if method in ("switch", "cond", "execute", "connect") else self.expand(raw)
        getattr(self, f"_m_{method}")(params)

    def _step_error(self, method: str, code: str, message: str) -> None:
        """A step the platform would report as a script error: logged, journaled, skipped."""
        self.vars["script_error"] = code
        logger.warning(
            "emulator: call %s: SWML %s: %s: %s; skipped", self.call.id, method, code, message
        )
        self.emu.note(
            self.call.id, "swml.error", {"method": method, "code": code, "message": message}
        )

    # --- ending ------------------------------------------------------------------------------

    def _finish(self, why: str) -> None:
        if self.is_over:
            return
        self.state = "ended"
        self.ended_why = why
        self._stop_waiting()
        self.clock.cancel(self._max_timer)
        self._max_timer = None
        self._loaded.set()
        self.emu.note(self.call.id, "swml.end", {"why": why, "steps_run": self.steps_run})

    def _stop_waiting(self) -> None:
        self.clock.cancel(self._timer)
        self._timer = None
        op, self._op = self._op, None
        if op is not None and not op.done:
            op.on_done = None
            op.stop()
        for peer in self.peers:
            peer.watchers[:] = [w for w in peer.watchers if w != self._peer_event]
            if peer.is_live and self.state == "connecting":
                peer.end("cancel")
        self.peers = []

    def _fail(self, what: str, why: str) -> None:
        """The document cannot be run: logged, journaled, and the call is hung up."""
        self.error = why
        logger.warning("emulator: call %s: SWML %s failed: %s; hanging up", self.call.id, what, why)
        self._finish("error")
        if self.call.is_live:
            self.call.end("error" if not self.call.is_answered else "hangup")

    def on_call_end(self) -> None:
        """The call is ending: stop, and hang up a connected peer."""
        bridged = [p for p in self.peers if p.is_live]
        was_bridged = self.state == "bridged"
        self._finish("call_ended")
        if self._task is not None and not self._task.done():
            self._task.cancel()
        if was_bridged:
            for peer in bridged:
                peer.end("hangup")

    def take_over(self) -> bool:
        """A Calling API command reached the call: a sleeping document stops there."""
        if self.state != "sleeping":
            return False
        self._finish("taken_over")
        return True

    def replace(self) -> None:
        """An update or a Calling API transfer brings another document."""
        self._finish("replaced")

    # --- variables ---------------------------------------------------------------------------

    def lookup(self, path: str) -> Any:
        """The value of a variable path (``call.from``, ``vars.x``, ``prompt_value``), or None."""
        parts = path.strip().split(".")
        root: Any
        if parts[0] == "call":
            root, parts = self.call_object(), parts[1:]
        elif parts[0] in ("vars", "envs", "params"):
            root, parts = (
                {"vars": self.vars, "envs": self.envs, "params": self.params}[parts[0]],
                parts[1:],
            )
        else:
            root = self.vars if parts[0] in self.vars else self.params
        for part in parts:
            if isinstance(root, Mapping):
                root = root.get(part)
            elif isinstance(root, list) and part.isdigit() and int(part) < len(root):
                root = root[int(part)]
            else:
                return None
        return root

    def evaluate(self, expr: str) -> Any:
        """A JavaScript-like condition (comparisons, ``&&``, ``||``, ``!``, variable paths)."""
        text = _VAR.sub(lambda m: m.group(1), expr)
        try:
            tree = ast.parse(_js_to_python(text).strip(), mode="eval")
        except SyntaxError as exc:
            raise ExpressionError(f"cannot evaluate {expr!r}") from exc
        for node in ast.walk(tree):
            if not isinstance(node, _ALLOWED):
                raise ExpressionError(f"cannot evaluate {expr!r} ({type(node).__name__})")
        return self._eval(tree.body)

    def _eval(self, node: ast.AST) -> Any:
        if isinstance(node, ast.Constant):
            return node.value
        if isinstance(node, ast.Name | ast.Attribute):
            return self.lookup(ast.unparse(node))
        if isinstance(node, ast.BoolOp):
            values = [self._eval(v) for v in node.values]
            return all(values) if isinstance(node.op, ast.And) else any(values)
        if isinstance(node, ast.UnaryOp):
            value = self._eval(node.operand)
            return (not value) if isinstance(node.op, ast.Not) else -value
        if isinstance(node, ast.BinOp):
            a, b = self._eval(node.left), self._eval(node.right)
            if isinstance(node.op, ast.Add):
                if isinstance(a, str) or isinstance(b, str):
                    return f"{'' if a is None else a}{'' if b is None else b}"
                return (a or 0) + (b or 0)
            return (a or 0) - (b or 0)
        if isinstance(node, ast.Compare):
            left = self._eval(node.left)
            for op, right_node in zip(node.ops, node.comparators, strict=True):
                right = self._eval(right_node)
                a, b = _loose(left, right)
                if not _compare(op, a, b):
                    return False
                left = right
            return True
        raise ExpressionError(type(node).__name__)  # pragma: no cover - filtered above

    def _substitute(self, text: str) -> Any:
        whole = _VAR.fullmatch(text)
        if whole is not None:
            value = self._var(whole.group(1))
            return "" if value is None else value
        return _VAR.sub(lambda m: _text(self._var(m.group(1))), text)

    def _var(self, expr: str) -> Any:
        if _PATH.match(expr.strip()):
            return self.lookup(expr)
        try:
            return self.evaluate(expr)
        except ExpressionError:
            logger.warning("emulator: call %s: SWML cannot evaluate ${%s}", self.call.id, expr)
            return None

    def expand(self, value: Any) -> Any:
        """*value* with its ``${...}`` / ``%{...}`` substituted (nested steps left for later)."""
        if isinstance(value, str):
            return self._substitute(value) if ("${" in value or "%{" in value) else value
        if isinstance(value, list):
            return [self.expand(v) for v in value]
        if isinstance(value, dict):
            return {k: v if k in _NESTED else self.expand(v) for k, v in value.items()}
        return value

    # --- control flow --------------------------------------------------------------------------

    def _push(self, steps: Any, *, inline: bool = True) -> None:
        if not isinstance(steps, list):
            raise TypeError("a block of steps must be a list")
        try:
            for i, step in enumerate(steps):
                _check_step(f"block[{i}]", step)
        except DocumentError as exc:
            raise ValueError(str(exc)) from None
        if len(self.frames) >= MAX_DEPTH:
            self._fail("nesting", "relay_script_nested_too_deep")
            return
        top = self.frames[-1]
        self.frames.append(Frame(top.sections, top.name, list(steps), inline=inline))

    def _m_label(self, params: Any) -> None:
        """A label does nothing when reached."""

    def _goto(self, frame: Frame, index: int, params: Any) -> None:
        if not isinstance(params, dict) or not isinstance(params.get("label"), str):
            raise ValueError("goto needs a label")
        most = int(params.get("max", 100))
        when = params.get("when")
        if when is not None:
            try:
                if not self.evaluate(str(when)):
                    return
            except ExpressionError as exc:
                self._step_error("goto", "relay_script_js_eval_error", str(exc))
                return
        if frame.jumps.get(index, 0) >= most:
            return
        # The label is in this block or in the section around it.
        for depth in range(len(self.frames) - 1, -1, -1):
            target = self.frames[depth]
            for i, step in enumerate(target.steps):
                if isinstance(step, dict) and step.get("label") == params["label"]:
                    frame.jumps[index] = frame.jumps.get(index, 0) + 1
                    del self.frames[depth + 1 :]
                    target.pc = i + 1
                    return
            if not target.inline:
                break
        raise ValueError(f"no label {params['label']!r} in section {frame.name!r}")

    def _m_set(self, params: Any) -> None:
        if not isinstance(params, dict):
            raise TypeError("set takes an object")
        self.vars.update(params)

    def _m_unset(self, params: Any) -> None:
        names = [params] if isinstance(params, str) else params
        if not isinstance(names, list):
            raise TypeError("unset takes a name or a list of names")
        for name in names:
            self.vars.pop(str(name), None)

    def _m_switch(self, params: Any) -> None:
        if not isinstance(params, dict) or not isinstance(params.get("variable"), str):
            raise ValueError("switch needs a variable")
        self._switch(params, params["variable"])

    def _switch(self, params: Mapping[str, Any], variable: str) -> None:
        name = _VAR.sub(lambda m: m.group(1), variable)
        value = self.lookup(name)
        cases = params.get("case") or {}
        if not isinstance(cases, dict):
            raise TypeError("switch.case must be an object")
        key = _text(value)
        if key in cases:
            self._push(cases[key])
        elif "default" in params:
            self._push(params["default"])
        else:
            self.emu.note(
                self.call.id, "swml.error",
                {"method": "switch", "code": "relay_script_method_no_matching_condition",
                 "message": f"{name} is {value!r}"},
            )  # fmt: skip

    def _m_cond(self, params: Any) -> None:
        if not isinstance(params, list):
            raise TypeError("cond takes a list of conditions")
        for branch in params:
            if not isinstance(branch, dict):
                raise TypeError("each cond entry is an object")
            if "when" in branch:
                try:
                    ok = self.evaluate(str(self.expand(branch["when"])))
                except ExpressionError as exc:
                    self._step_error("cond", "relay_script_js_eval_error", str(exc))
                    return
                if ok:
                    self._push(branch.get("then", []))
                    return
            elif "else" in branch:
                self._push(branch["else"])
                return

    def _m_transfer(self, params: Any) -> None:
        if not isinstance(params, dict) or "dest" not in params:
            raise ValueError("transfer needs a dest")
        self._jump(params, subroutine=False)

    def _m_execute(self, params: Any) -> None:
        if not isinstance(params, dict) or "dest" not in params:
            raise ValueError("execute needs a dest")
        self._jump(
            {k: v if k in _NESTED else self.expand(v) for k, v in params.items()}, subroutine=True
        )

    def _jump(self, params: Mapping[str, Any], *, subroutine: bool) -> None:
        dest = params["dest"]
        new_params = params.get("params")
        if new_params is not None and not isinstance(new_params, dict):
            raise TypeError("params must be an object")
        frame_params = dict(new_params or {})
        top = self.frames[-1] if self.frames else None
        if isinstance(dest, str) and top is not None and dest in top.sections:
            self._enter(Frame(top.sections, dest), frame_params, params, subroutine=subroutine)
            return
        if isinstance(dest, str) and dest.startswith(("http://", "https://")):
            self.state = "waiting"
            saved = self.params
            self.params = frame_params
            self._task = asyncio.get_running_loop().create_task(
                self._fetch_then_enter(dest, saved, params, subroutine)
            )
            self.emu.swml_tasks.add(self._task)
            self._task.add_done_callback(self.emu.swml_tasks.discard)
            return
        doc: Any = dest
        if isinstance(dest, str):
            try:
                doc = json.loads(dest)
            except ValueError:
                raise ValueError(f"dest {dest!r} is no section, URL or SWML document") from None
        try:
            sections = check_document(doc)
        except DocumentError as exc:
            raise ValueError(str(exc)) from None
        self._enter(Frame(sections, "main"), frame_params, params, subroutine=subroutine)

    async def _fetch_then_enter(
        self, url: str, saved: dict[str, Any], params: Mapping[str, Any], subroutine: bool
    ) -> None:
        doc, why = await self._get(url, "POST")
        if self.is_over:
            return
        self.params = saved
        if doc is None:
            self._fail("fetch", why or "no document")
            return
        self.state = "running"
        self._enter(Frame(check_document(doc), "main"), self.params_of(params), params,
                    subroutine=subroutine)  # fmt: skip
        self._go()

    @staticmethod
    def params_of(params: Mapping[str, Any]) -> dict[str, Any]:
        value = params.get("params")
        return dict(value) if isinstance(value, dict) else {}

    def _enter(
        self, frame: Frame, params: dict[str, Any], step: Mapping[str, Any], *, subroutine: bool
    ) -> None:
        if subroutine:
            if len(self.frames) >= MAX_DEPTH:
                self._fail("nesting", "relay_script_nested_too_deep")
                return
            frame.boundary = True
            frame.params = self.params
            frame.on_return = step.get("on_return")
            frame.result = step.get("result")
            self.frames.append(frame)
        else:
            self.frames = [frame]
        self.params = params

    def _m_return(self, params: Any) -> None:
        while self.frames:
            frame = self.frames.pop()
            if frame.boundary:
                self._returned(frame, params)
                return
        self.vars["return_value"] = params
        self._finish("return")
        self.call.end("hangup")

    def _returned(self, frame: Frame, value: Any) -> None:
        self.vars["return_value"] = value
        if frame.params is not None:
            self.params = frame.params
        if not self.frames:
            return
        if frame.on_return:
            self._push(frame.on_return)
        result = frame.result
        if isinstance(result, dict):
            self._switch(result, result.get("variable", "return_value"))
        elif isinstance(result, list):
            self._m_cond(result)

    # --- the call ------------------------------------------------------------------------------

    def _m_answer(self, params: Any) -> None:
        call = self.call
        if not call.is_answered:
            call.answer("human")
        seconds = 14400.0
        if isinstance(params, dict) and params.get("max_duration") is not None:
            seconds = float(params["max_duration"])
        self.clock.cancel(self._max_timer)
        self._max_timer = self.clock.after(seconds, self._max_duration)

    def _max_duration(self) -> None:
        if self.call.is_live:
            self.emu.note(self.call.id, "swml.max_duration")
            self.call.end("hangup")

    def _m_hangup(self, params: Any) -> None:
        reason = (params or {}).get("reason", "hangup") if isinstance(params, dict) else "hangup"
        if reason not in ("hangup", "busy", "decline"):
            raise ValueError(f"hangup reason {reason!r}")
        self._finish("hangup")
        self.call.end(reason)

    def _m_sleep(self, params: Any) -> None:
        value: Any = params.get("duration") if isinstance(params, dict) else params
        if isinstance(value, bool) or not isinstance(value, int | float | str):
            raise TypeError(f"sleep duration {value!r}")
        ms = float(value)
        if ms == -1:
            self.state = "sleeping"
            return
        if not ms >= 0 or not math.isfinite(ms):
            raise ValueError(f"sleep duration {value!r}")
        self.state = "sleeping"
        self._timer = self.clock.after(ms / 1000.0, self._resume)

    def _wait_for(self, op: Operation, then: Callable[[Operation], None] | None = None) -> None:
        """Start *op* on the call and continue (or run *then*) once it is over."""
        call = self.call
        key = (op.kind, op.control_id)
        if key in call.ops:
            raise ValueError(f"a {op.kind} {op.control_id!r} already runs")
        call.ops[key] = op

        def done(finished: Operation) -> None:
            if self.is_over or self._op is not finished:
                return
            if then is not None:
                self._op = None
                then(finished)
            else:
                self._resume()

        op.on_done = done
        self._op = op
        self.state = "waiting"
        op.begin()

    def _play_command(self, params: Mapping[str, Any], urls: Any) -> c.Play:
        items = [self._play_item(u) for u in (urls if isinstance(urls, list) else [urls])]
        gender = params.get("say_gender")
        return c.Play(
            call_id=self.call.id,
            control_id=str(uuid.uuid4()),
            play=items,
            volume=float(params["volume"]) if params.get("volume") is not None else None,
            language=params.get("say_language"),
            gender=gender if gender in ("male", "female") else None,
            voice=params.get("say_voice"),
            status_url=params.get("status_url"),
        )

    @staticmethod
    def _play_item(url: Any) -> Any:
        if not isinstance(url, str):
            raise TypeError(f"a play URL is a string, not {url!r}")
        scheme, sep, rest = url.partition(":")
        if sep and scheme == "say":
            return c.PlayTTS(text=rest.lstrip())
        if sep and scheme == "silence":
            return c.PlaySilence(duration=float(rest))
        if sep and scheme == "ring":
            duration, _, name = rest.strip().rpartition(":")
            return c.PlayRingtone(
                name=name.strip().lower(),
                duration=float(duration) if duration.strip() else SINGLE_RING_SECONDS,
            )
        if url.startswith(("http://", "https://")):
            return c.PlayAudio(url=url)
        raise ValueError(f"{url!r} is not a playable URL (http(s), say:, silence:, ring:)")

    def _m_play(self, params: Any) -> None:
        if not isinstance(params, dict):
            raise TypeError("play takes an object")
        urls = params.get("urls", params.get("url"))
        if urls is None:
            raise ValueError("play needs url or urls")
        cmd = self._play_command(params, urls)
        if params.get("auto_answer", True) not in (False, "false") and not self.call.is_answered:
            self.call.answer("human")
        self._wait_for(Play(self.call, cmd))

    def _m_prompt(self, params: Any) -> None:
        if not isinstance(params, dict) or params.get("play") is None:
            raise ValueError("prompt needs play")
        speech_keys = ("speech_timeout", "speech_end_timeout", "speech_language", "speech_hints",
                       "speech_engine")  # fmt: skip
        speech = None
        digits = None
        if any(params.get(k) is not None for k in speech_keys):
            speech = c.CollectSpeech(
                end_silence_timeout=_opt_float(params.get("speech_end_timeout")),
                speech_timeout=_opt_float(params.get("speech_timeout")),
                language=params.get("speech_language"),
                hints=params.get("speech_hints"),
                engine=params.get("speech_engine"),
            )
        else:
            digits = c.CollectDigits(
                max=int(params.get("max_digits", 1)),
                terminators=params.get("terminators") or None,
                digit_timeout=float(params.get("digit_timeout", 5.0)),
            )
        collect = c.Collect(
            call_id=self.call.id,
            control_id=str(uuid.uuid4()),
            digits=digits,
            speech=speech,
            initial_timeout=float(params.get("initial_timeout", 5.0)),
            start_input_timers=True,
            status_url=params.get("status_url"),
        )
        play = self._play_command({k: v for k, v in params.items() if k != "status_url"},
                                  params["play"])  # fmt: skip
        if not self.call.is_answered:
            self.call.answer("human")
        for name in ("prompt_result", "prompt_value", "prompt_digit_terminator"):
            self.vars.pop(name, None)

        def listen(_: Operation) -> None:
            self._wait_for(Collect(self.call, collect), self._prompted)

        self._wait_for(Play(self.call, play), listen)

    def _prompted(self, op: Operation) -> None:
        assert isinstance(op, Collect)
        result = op.final_result or {"type": "no_input", "params": {}}
        kind = result.get("type")
        params = result.get("params") or {}
        if kind == "digit":
            self.vars["prompt_result"] = "match_digits"
            self.vars["prompt_value"] = params.get("digits", "")
            self.vars["prompt_digit_terminator"] = params.get("terminator", "")
        elif kind == "speech":
            self.vars["prompt_result"] = "match_speech"
            self.vars["prompt_value"] = params.get("text", "")
        else:
            self.vars["prompt_result"] = kind if kind in ("no_input", "no_match") else "failed"
        self._resume()

    def _m_record_call(self, params: Any) -> None:
        params = params if isinstance(params, dict) else {}
        control_id = str(params.get("control_id") or uuid.uuid4())
        max_length = params.get("max_length")
        cmd = c.Record(
            call_id=self.call.id,
            control_id=control_id,
            audio=c.RecordAudio(
                beep=params.get("beep"),
                format=params.get("format", "wav"),
                stereo=params.get("stereo"),
                direction=params.get("direction", "both"),
                initial_timeout=float(params.get("initial_timeout", 0.0)),
                end_silence_timeout=float(params.get("end_silence_timeout", 0.0)),
                max_length=math.ceil(float(max_length)) if max_length is not None else None,
                terminators=params.get("terminators") or None,
                input_sensitivity=_opt_float(params.get("input_sensitivity")),
            ),
            status_url=params.get("status_url"),
        )
        self.vars["record_control_id"] = control_id
        if ("record", control_id) in self.call.ops:
            self.vars["record_call_result"] = "failed"
            self._step_error("record_call", "relay_script_method_execute_failed",
                             f"a recording {control_id!r} already runs")  # fmt: skip
            return
        op = SwmlRecording(self.call, cmd)
        op.terminators = params.get("terminators") or ""
        self.call.ops[(op.kind, control_id)] = op
        self.vars["record_call_url"] = op.recording_url()
        self.vars["record_call_result"] = "success"
        op.begin()

    def _m_stop_record_call(self, params: Any) -> None:
        wanted = params.get("control_id") if isinstance(params, dict) else None
        control_id = wanted or self.vars.get("record_control_id")
        op = self.call.ops.get(("record", str(control_id)))
        if op is None:
            raise ValueError(f"no recording {control_id!r} runs")
        op.stop()

    # --- connect --------------------------------------------------------------------------------

    def _m_connect(self, raw: Any) -> None:
        if not isinstance(raw, dict):
            raise TypeError("connect takes an object")
        params = {k: v if k in _NESTED else self.expand(v) for k, v in raw.items()}
        if "to" in params:
            groups: list[list[Any]] = [[{"to": params["to"]}]]
        elif "serial" in params:
            groups = [[d] for d in params["serial"]]
        elif "parallel" in params:
            groups = [list(params["parallel"])]
        elif "serial_parallel" in params:
            groups = [list(g) for g in params["serial_parallel"]]
        else:
            raise ValueError("connect needs to, serial, parallel or serial_parallel")
        for group in groups:
            for dest in group:
                to = dest.get("to") if isinstance(dest, dict) else None
                if not isinstance(to, str) or not to:
                    raise ValueError("each connect destination needs a 'to'")
                if to.startswith("queue:"):
                    logger.warning(
                        "emulator: call %s: SWML connect to a queue is not emulated; skipped",
                        self.call.id,
                    )
                    self.emu.note(self.call.id, "swml.unsupported",
                                  {"method": "connect", "to": to})  # fmt: skip
                    return
        self.vars.pop("connect_result", None)
        self._groups = groups
        self._connect = params
        self.state = "connecting"
        self._ring_next()

    def _ring_next(self) -> None:
        if not self._groups:
            self.vars["connect_result"] = "failed"
            self.emu.note(self.call.id, "swml.connect", {"result": "failed"})
            self._after_connect()
            return
        group = self._groups.pop(0)
        params = self._connect
        default_timeout = float(params.get("timeout", 60))
        self.peers = []
        for dest in group:
            peer = self.emu.dial_peer(
                self.call,
                to=dest["to"],
                from_=str(dest.get("from") or params.get("from") or self.call.from_),
                timeout=float(dest.get("timeout", default_timeout)),
            )
            peer.watchers.append(self._peer_event)
            self.peers.append(peer)

    def _peer_event(self, peer: EmulatedCall, what: str) -> None:
        if self.is_over or peer not in self.peers:
            return
        if self.state == "connecting" and what == "answered":
            for other in self.peers:
                if other is not peer and other.is_live:
                    other.watchers[:] = [w for w in other.watchers if w != self._peer_event]
                    other.end("cancel")
            self.peers = [peer]
            if not self.call.is_answered:
                self.call.answer("human")
            self.call.bridged_to = peer.to
            self.vars["connect_result"] = "connected"
            self.state = "bridged"
            self.emu.note(self.call.id, "swml.connect",
                          {"result": "connected", "to": peer.to, "peer": peer.id})  # fmt: skip
        elif self.state == "connecting" and what == "ended":
            if all(not p.is_live for p in self.peers):
                self._ring_next()
        elif self.state == "bridged" and what == "ended":
            self.call.bridged_to = None
            self.peers = []
            self.emu.note(self.call.id, "swml.bridge_ended", {"peer": peer.id})
            self._after_connect()

    def _after_connect(self) -> None:
        result = self._connect.get("result")
        self.state = "running"
        try:
            if isinstance(result, dict):
                self._switch(result, result.get("variable", "connect_result"))
            elif isinstance(result, list):
                self._m_cond(result)
        except (ValueError, TypeError) as exc:
            self._step_error("connect", "relay_script_method_parameter_invalid_value", str(exc))
        self._resume()


class SwmlRecording(Record):
    """A ``record_call``: in the background, reporting in SWML's record_call shape."""

    def __init__(self, call: EmulatedCall, cmd: c.Record) -> None:
        super().__init__(call, cmd)
        # It listens for its terminators only: scripted input is left for prompts.
        self.wants_digits = self.wants_speech = False

    def finished_params(self, frames: int) -> dict[str, Any]:
        return {
            "state": "finished",
            "record": {
                "url": self.recording_url(),
                "duration": frames / RATE,
                "size": wav_size(frames),
                "format": self.audio.format or "wav",
            },
        }


_COMPARE: dict[type[ast.cmpop], Callable[[Any, Any], bool]] = {
    ast.Eq: lambda a, b: a == b, ast.NotEq: lambda a, b: a != b,
    ast.Lt: lambda a, b: a < b, ast.LtE: lambda a, b: a <= b,
    ast.Gt: lambda a, b: a > b, ast.GtE: lambda a, b: a >= b,
}  # fmt: skip


def _compare(op: ast.cmpop, a: Any, b: Any) -> bool:
    try:
        return bool(_COMPARE[type(op)](a, b))
    except TypeError:  # None < 1, "a" < 1: false, as JavaScript's comparisons of unlike values
        return False


def project_uuid(value: str) -> str:
    """
    *value* when it is a UUID, else a stable UUID made from it: §9.6 types ``project_id``
    and ``space_id`` as UUIDs, and the emulator's default project id is ``test-project``.
    """
    try:
        return str(uuid.UUID(value))
    except ValueError:
        return str(uuid.uuid5(uuid.NAMESPACE_URL, f"relaycall-emulator:{value}"))


def _opt_float(value: Any) -> float | None:
    return None if value is None else float(value)


def _text(value: Any) -> str:
    """A variable as it reads inside a string."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, dict | list):
        return json.dumps(value, separators=(",", ":"))
    return str(value)
