"""
The ``relaycall`` command: ``call``, ``events``, ``demo``, ``emulator`` and ``version``.

``relaycall call ...`` and ``relaycall events ...`` are in relaycall/_cli (see
docs/cli.md). The emulator is imported only by the subcommands that run it: an
operator's ``relaycall call end ...`` does not pay for it.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from relaycall._cli._call import add_call_parser, run_call
from relaycall._cli._events import add_events_parser, run_events
from relaycall._version import __version__


def _positive_float(text: str) -> float:
    """``--time-scale``: the emulator's own argument type, imported when a value is given."""
    from relaycall.emulator.__main__ import positive_float  # noqa: PLC0415 - see the docstring

    value: float = positive_float(text)
    return value


def _chosen(argv: Sequence[str]) -> str | None:
    """The subcommand *argv* names: the first word that is not an option (none take values)."""
    return next((word for word in argv if not word.startswith("-")), None)


def build_parser(argv: Sequence[str] = ()) -> argparse.ArgumentParser:
    """
    The ``relaycall`` parser and its subcommands.

    The emulator's options are added only when *argv* chooses ``emulator``: they
    are defined next to the emulator, which is not imported otherwise.
    """
    parser = argparse.ArgumentParser(
        prog="relaycall", description="relaycall: an asyncio client for SignalWire's Calling API"
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    add_call_parser(sub)
    add_events_parser(sub)
    demo = sub.add_parser(
        "demo",
        help="run an IVR against the built-in emulator (offline)",
        description="Dial, play a menu, collect a digit, record a message and hang up, against "
        "an emulator in this process; every command and callback is printed as it happens.",
    )
    demo.add_argument(
        "--time-scale", type=_positive_float, default=10.0, metavar="TIME_SCALE",
        help="how much faster than real time the emulated clock runs (default: %(default)g)",
    )  # fmt: skip
    emulator = sub.add_parser(
        "emulator",
        help="run the Calling API emulator until Ctrl-C",
        usage="%(prog)s [options]",  # one line, so a bad flag is two short lines
    )
    if _chosen(argv) == "emulator":
        from relaycall.emulator.__main__ import DESCRIPTION, add_arguments  # noqa: PLC0415

        emulator.description = DESCRIPTION
        add_arguments(emulator)
    version = sub.add_parser("version", help="print the version", description="Print the version.")
    for each in (demo, emulator, version):
        each.set_defaults(subparser=each)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the ``relaycall`` command line; returns the exit status."""
    args = sys.argv[1:] if argv is None else argv
    ns, extra = build_parser(args).parse_known_args(args)
    if extra:
        # argparse blames the top-level parser (and its usage) for a subcommand's unknown
        # flag; the subcommand's own usage is the one that helps.
        ns.subparser.error(f"unrecognized arguments: {' '.join(extra)}")
    if ns.command == "version":
        print(__version__)  # noqa: T201
        return 0
    if ns.command == "call":
        return run_call(ns)
    if ns.command == "events":
        return run_events(ns)
    if ns.command == "emulator":
        from relaycall.emulator.__main__ import run as run_emulator  # noqa: PLC0415

        return run_emulator(ns)
    from relaycall._demo import main as demo_main  # noqa: PLC0415 - only the demo needs it

    return demo_main(ns.time_scale)


if __name__ == "__main__":
    sys.exit(main())
