"""
Call a list of numbers within the platform's rate limits, with live progress and a summary.

    python examples/bulk_dialer.py numbers.txt     # one number a line; SIGNALWIRE_* credentials
    python examples/bulk_dialer.py --demo 20       # no account: 20 calls to the built-in emulator

Each call: dial, wait for the answer, detect a machine, play a message fitted to who
answered, hang up. A dial whose outcome is unknown is reported, never re-sent.

Rate limits. The platform sets up about one new call per second (more are queued) and
takes 13,800 POSTs per 10 s per project, so this script dials one number a second by
default (1,000 numbers take about 17 minutes) and sends at most 1,300 commands a second.
If SignalWire raised your project's limits, raise them here: ``--calls-per-second 5``
(or BULK_CALLS_PER_SECOND=5) and ``--commands-per-second``. ``--max-calls`` bounds the
calls in progress at once.

Progress: a line with the calls placed, answered, not answered and failed and an ETA,
every few seconds; a progress bar instead when rich is installed
(``pip install 'relaycall[progress]'``) and the output is a terminal. A summary at the end.

Callbacks come back to PUBLIC_URL (forwarded to this script's --port, default PORT or
8080), checked with SIGNALWIRE_SIGNING_KEY. For a local emulator
(SIGNALWIRE_BASE_URL=http://127.0.0.1:8080) PUBLIC_URL may stay unset.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import os
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence

import relaycall
from relaycall import tts
from relaycall.testing import Emulator, Scenario

DEFAULT_CALLS_PER_SECOND = 1.0  # the platform's rate for new calls
DEFAULT_COMMANDS_PER_SECOND = 1300.0  # under the platform's 13,800 POSTs per 10 s


class Tally:
    """What happened so far, and when the rest should be done."""

    def __init__(self, total: int, calls_per_second: float, max_calls: int) -> None:
        self.total = total
        self.calls_per_second = calls_per_second
        self.max_calls = max_calls
        self.started = time.monotonic()
        self.dialling = 0  # numbers taken up (dialled or being dialled)
        self.placed = 0  # dials the platform accepted
        self.answered = 0
        self.unanswered = 0  # busy, no answer, declined...
        self.failed = 0  # errors, dials refused or of unknown outcome
        self.outcomes: collections.Counter[str] = collections.Counter()
        self._seconds = 0.0  # time spent in finished calls, for the ETA

    @property
    def done(self) -> int:
        return sum(self.outcomes.values())

    def finish(self, outcome: str, seconds: float) -> None:
        self.outcomes[outcome] += 1
        self._seconds += seconds

    def eta(self) -> float:
        """
        Seconds until every call is done: the dials left at the paced rate, plus one call's
        mean length (a lower bound until a call has finished).
        """
        if self.done == self.total:
            return 0.0
        mean = self._seconds / self.done if self.done else 0.0
        rate = self.calls_per_second
        if mean > 0:
            rate = min(rate, self.max_calls / mean)  # bounded by the calls in progress instead
        return (self.total - self.dialling) / rate + mean

    def counts(self) -> str:
        return (
            f"placed {self.placed}, answered {self.answered}, "
            f"not answered {self.unanswered}, failed {self.failed}"
        )

    def line(self) -> str:
        return f"{self.done}/{self.total} done: {self.counts()}; ETA {_duration(self.eta())}"


def _duration(seconds: float) -> str:
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


async def one_call(
    relay: relaycall.AsyncRelay, to: str, from_: str, url: str, tally: Tally
) -> None:
    started = time.monotonic()
    tally.dialling += 1
    outcome = await _call(relay, to, from_, url, tally)
    tally.finish(outcome, time.monotonic() - started)


async def _call(relay: relaycall.AsyncRelay, to: str, from_: str, url: str, tally: Tally) -> str:
    try:
        call = await relay.dial(to=to, from_=from_, url=url)  # paced by Limits
    except relaycall.AmbiguousOutcomeError as exc:
        tally.failed += 1
        return f"failed: unknown outcome, not re-sent ({type(exc.cause).__name__})"
    except relaycall.ValidationError as exc:
        tally.failed += 1
        return f"failed: invalid number ({exc})"
    except relaycall.RelayError as exc:
        tally.failed += 1
        return f"failed: dial refused ({type(exc).__name__})"
    tally.placed += 1
    try:
        if await call.wait_for("answered", timeout=90) != "answered":
            tally.unanswered += 1
            return f"not answered: {call.end_reason}"
        tally.answered += 1
        verdict = (await (await call.detect("machine")).wait(timeout=60)).result
        message = "Please call us back." if verdict == "MACHINE" else "Thanks for picking up!"
        await (await call.play(tts(message))).wait(timeout=60)
        return f"answered by {verdict}"
    except relaycall.RelayError as exc:
        tally.failed += 1
        return f"failed: {type(exc).__name__}"
    finally:
        await call.end()  # returns at once if the call is over already


async def dial_all(
    relay: relaycall.AsyncRelay, numbers: Sequence[str], args: argparse.Namespace, tally: Tally
) -> None:
    """Dial every number, with at most ``args.max_calls`` calls in progress at once."""
    todo: Iterator[str] = iter(numbers)

    async def worker() -> None:
        for to in todo:  # shared: each number is taken by one worker
            await one_call(relay, to, args.caller_id, args.url, tally)

    await asyncio.gather(*(worker() for _ in range(min(args.max_calls, len(numbers)))))


@contextlib.asynccontextmanager
async def progress(tally: Tally, style: str, every: float | None) -> AsyncIterator[None]:
    """Show *tally* while the block runs: a rich progress bar, or a line *every* seconds."""
    if style == "auto":
        style = "bar" if sys.stdout.isatty() and _have_rich() else "lines"
    if style == "bar":
        async with _bar(tally):
            yield
        return

    last = ""

    def line() -> None:
        nonlocal last
        if (text := tally.line()) != last:
            print(text, flush=True)
            last = text

    async with _repeating(every or (1 if sys.stdout.isatty() else 5), line):
        yield


@contextlib.asynccontextmanager
async def _repeating(seconds: float, show: Callable[[], None]) -> AsyncIterator[None]:
    """Call *show* every *seconds* while the block runs."""

    async def loop() -> None:
        while True:
            await asyncio.sleep(seconds)
            show()

    ticker = asyncio.create_task(loop())
    try:
        yield
    finally:
        ticker.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await ticker


def _have_rich() -> bool:
    try:
        import rich  # noqa: F401, PLC0415
    except ImportError:
        return False
    return True


@contextlib.asynccontextmanager
async def _bar(tally: Tally) -> AsyncIterator[None]:
    from rich.progress import (  # noqa: PLC0415 - an optional dependency
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
    )

    columns = (
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[counts]}"),
        TextColumn("ETA {task.fields[eta]}"),
        TimeElapsedColumn(),
    )
    with Progress(*columns) as bar:
        task = bar.add_task("calls", total=tally.total, counts="", eta="")

        def refresh() -> None:
            eta = _duration(tally.eta())
            bar.update(task, completed=tally.done, counts=tally.counts(), eta=eta)

        refresh()
        try:
            async with _repeating(0.5, refresh):
                yield
        finally:
            refresh()


def summary(tally: Tally) -> None:
    elapsed = time.monotonic() - tally.started
    rate = tally.placed / elapsed if elapsed else 0.0
    print(f"\n{tally.done} numbers in {_duration(elapsed)} ({rate:.2f} calls placed a second)")
    print(f"  {tally.counts()}")
    for outcome, n in tally.outcomes.most_common():
        print(f"  {n:5d}  {outcome}")


def limits(args: argparse.Namespace) -> relaycall.Limits:
    return relaycall.Limits(
        max_concurrency=100,
        calls_per_second=args.calls_per_second,
        commands_per_second=args.commands_per_second,
    )


async def run(args: argparse.Namespace, numbers: Sequence[str]) -> None:
    tally = Tally(len(numbers), args.calls_per_second, args.max_calls)
    if args.demo is not None:
        # The emulator plays each destination's part: a machine every third call, a busy
        # line every seventh, people otherwise.
        scenarios = {
            to: Scenario(answer="machine" if i % 3 == 2 else "busy" if i % 7 == 6 else "human")
            for i, to in enumerate(numbers)
        }
        async with (
            Emulator(time_scale=20, scenarios=scenarios, limits=limits(args)) as emu,
            progress(tally, args.progress, args.progress_every),
        ):
            await dial_all(emu.relay, numbers, args, tally)
    else:
        public_url = os.environ.get("PUBLIC_URL")
        receiver = relaycall.EventReceiver(
            public_url=f"{public_url.rstrip('/')}/relaycall/events" if public_url else None,
            signing_key=os.environ.get("SIGNALWIRE_SIGNING_KEY"),
        )
        async with (
            relaycall.AsyncRelay(events=receiver, limits=limits(args)) as relay,
            receiver.serve(port=args.port),
            progress(tally, args.progress, args.progress_every),
        ):
            await dial_all(relay, numbers, args, tally)
    summary(tally)


def read_numbers(path: str) -> list[str]:
    """One number a line; blank lines and ``#`` comments are skipped."""
    if path == "-":
        lines = sys.stdin.readlines()
    else:
        with open(path, encoding="utf-8") as f:
            lines = f.readlines()
    return [n for line in lines if (n := line.split("#", 1)[0].strip())]


def build_parser() -> argparse.ArgumentParser:
    env = os.environ.get
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0].strip() if __doc__ else "")
    p.add_argument("numbers", nargs="?", help="file of numbers to call, one a line ('-': stdin)")
    p.add_argument("--demo", type=int, metavar="N", help="call N made-up numbers on the emulator")
    p.add_argument(
        "--calls-per-second",
        type=float,
        default=float(env("BULK_CALLS_PER_SECOND", DEFAULT_CALLS_PER_SECOND)),
        help="new calls a second (default %(default)g, the platform's rate; "
        "raise only if SignalWire raised your limit)",
    )
    p.add_argument(
        "--commands-per-second",
        type=float,
        default=float(env("BULK_COMMANDS_PER_SECOND", DEFAULT_COMMANDS_PER_SECOND)),
        help="commands (POSTs) a second (default %(default)g: 13,800 per 10 s with headroom)",
    )
    p.add_argument("--max-calls", type=int, default=100, help="calls in progress at once (100)")
    p.add_argument("--caller-id", default=env("CALLER_ID", "+15551230000"), help="the from number")
    p.add_argument(
        "--url",
        default=env("SWML_URL", "https://example.com/swml"),
        help="where the platform fetches the SWML that starts each call",
    )
    p.add_argument(
        "--port",
        type=int,
        default=int(env("PORT", "8080")),
        help="local port of the callback receiver (default: PORT or 8080; 0 picks one)",
    )
    p.add_argument("--progress", choices=["auto", "bar", "lines"], default="auto")
    p.add_argument(
        "--progress-every",
        type=float,
        metavar="SECONDS",
        help="seconds between progress lines (default: 1 on a terminal, else 5)",
    )
    return p


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if (args.numbers is None) == (args.demo is None):
        parser.error("give a file of numbers, or --demo N")
    positive = (args.calls_per_second, args.commands_per_second, args.max_calls)
    if min(positive) <= 0 or (args.progress_every is not None and args.progress_every <= 0):
        parser.error(
            "--calls-per-second, --commands-per-second, --max-calls and --progress-every"
            " must be positive"
        )
    if args.progress == "bar" and not _have_rich():
        parser.error("--progress bar needs rich: pip install 'relaycall[progress]'")
    numbers: list[str]
    if args.demo is not None:
        numbers = [f"+1555000{i:04d}" for i in range(args.demo)]
    else:
        try:
            numbers = read_numbers(args.numbers)
        except OSError as exc:
            parser.error(f"cannot read {args.numbers}: {exc.strerror}")
    rate = args.calls_per_second
    print(
        f"calling {len(numbers)} numbers at {rate:g} a second "
        f"(about {_duration(len(numbers) / rate)} of dialling)",
        flush=True,
    )
    try:
        asyncio.run(run(args, numbers))
    except relaycall.UsageError as exc:  # a missing credential, most likely
        print(f"bulk_dialer: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
