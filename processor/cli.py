"""The `roomserver` command line: one subcommand per mode (see README)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from processor import __version__


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="roomserver",
        description=(
            "A Matrix roomserver: reads input room events, checks the authorization rules, "
            "computes room state and publishes output events."
        ),
    )
    parser.add_argument("--version", action="version", version=f"roomserver {__version__}")
    parser.add_subparsers(dest="command", metavar="COMMAND")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
