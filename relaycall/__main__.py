"""
The ``relaycall`` command: ``relaycall demo`` and ``relaycall emulator``.
"""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    """Run the ``relaycall`` command line."""
    args = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(
        prog="relaycall", description="relaycall: an asyncio client for SignalWire's Calling API"
    )
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="run an IVR against the built-in emulator (offline)")
    demo.add_argument(
        "--time-scale", type=float, default=10.0, help="how much faster than real time (10)"
    )
    sub.add_parser(
        "emulator",
        help="run the Calling API emulator (see 'relaycall emulator --help')",
        add_help=False,
    )
    sub.add_parser("version", help="print the version")
    if args[:1] == ["emulator"]:
        from relaycall.emulator.__main__ import main as emulator_main  # noqa: PLC0415

        return emulator_main(args[1:])
    ns = parser.parse_args(args)
    if ns.command == "version":
        from relaycall._version import __version__  # noqa: PLC0415

        print(__version__)  # noqa: T201
        return 0
    from relaycall._demo import main as demo_main  # noqa: PLC0415

    return demo_main(ns.time_scale)


if __name__ == "__main__":
    sys.exit(main())
