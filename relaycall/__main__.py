"""
The ``relaycall`` command: ``relaycall demo``, ``relaycall emulator`` and ``relaycall version``.
"""

from __future__ import annotations

import argparse
import sys

from relaycall._version import __version__
from relaycall.emulator.__main__ import DESCRIPTION as EMULATOR_DESCRIPTION
from relaycall.emulator.__main__ import add_arguments as add_emulator_arguments
from relaycall.emulator.__main__ import positive_float
from relaycall.emulator.__main__ import run as run_emulator


def build_parser() -> argparse.ArgumentParser:
    """The ``relaycall`` parser and its subcommands."""
    parser = argparse.ArgumentParser(
        prog="relaycall", description="relaycall: an asyncio client for SignalWire's Calling API"
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    demo = sub.add_parser(
        "demo",
        help="run an IVR against the built-in emulator (offline)",
        description="Dial, play a menu, collect a digit, record a message and hang up, against "
        "an emulator in this process; every command and callback is printed as it happens.",
    )
    demo.add_argument(
        "--time-scale", type=positive_float, default=10.0,
        help="how much faster than real time the emulated clock runs (default: %(default)g)",
    )  # fmt: skip
    emulator = sub.add_parser(
        "emulator",
        help="run the Calling API emulator until Ctrl-C",
        description=EMULATOR_DESCRIPTION,
        usage="%(prog)s [options]",  # one line, so a bad flag is two short lines
    )
    add_emulator_arguments(emulator)
    version = sub.add_parser("version", help="print the version", description="Print the version.")
    for each in (demo, emulator, version):
        each.set_defaults(subparser=each)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the ``relaycall`` command line; returns the exit status."""
    ns, extra = build_parser().parse_known_args(sys.argv[1:] if argv is None else argv)
    if extra:
        # argparse blames the top-level parser (and its usage) for a subcommand's unknown
        # flag; the subcommand's own usage is the one that helps.
        ns.subparser.error(f"unrecognized arguments: {' '.join(extra)}")
    if ns.command == "version":
        print(__version__)  # noqa: T201
        return 0
    if ns.command == "emulator":
        return run_emulator(ns)
    from relaycall._demo import main as demo_main  # noqa: PLC0415 - only the demo needs it

    return demo_main(ns.time_scale)


if __name__ == "__main__":
    sys.exit(main())
