"""`roomserver generate`: realistic signed input traffic as JSON lines.

Wired into `processor.cli` by `add_generate_command`; `run_generate` streams the events as
they are generated, so memory stays flat for large `--events`.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import IO, Any

import msgspec

from processor.errors import ConfigError, RoomserverError, UnknownRoomVersion
from processor.generate.model import Summary
from processor.generate.traffic import MIXED, iter_generate

__all__ = ["add_generate_command", "run_generate"]


def add_generate_command(subparsers: Any) -> None:
    """Add the ``generate`` subcommand to `subparsers` (from ``add_subparsers``)."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "generate",
        help="write realistic, signed Matrix input traffic as JSON lines",
        description=(
            "Write realistic input room events (one InputRoomEvent JSON object per line): "
            "several servers per room whose views fork and merge, joins, leaves, invites, "
            "kicks, bans, knocks, restricted joins, power-level and join-rule changes, "
            "messages, redactions, and some unauthorised events that must be rejected. "
            "Forks are long-lived branches of 2-3 servers that change the same state "
            "(power levels, join rules, memberships, bans) and merge 2-3 at a time. "
            "Deterministic for a seed."
        ),
    )
    parser.add_argument("--rooms", type=int, default=1, help="number of rooms (default 1)")
    parser.add_argument(
        "--events", type=int, default=1000, help="total number of events (default 1000)"
    )
    parser.add_argument(
        "--room-version",
        default="10",
        help=f'room version "1".."12", or "{MIXED}" to cycle rooms over 1..12 (default 10)',
    )
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument(
        "--output", default="-", help="file to write, or - for standard output (default -)"
    )
    parser.add_argument(
        "--expected",
        default=None,
        metavar="FILE",
        help=(
            'also write {"event_id": "accepted"|"rejected"|"soft_failed"} as one JSON object '
            "to FILE: the outcome the roomserver must reach for every event"
        ),
    )
    parser.add_argument(
        "--quiet",
        action="store_true",
        help=(
            "do not print the summary (events, outcomes, merges, and merges whose prev "
            "events' states conflict, per 1,000 events) on standard error"
        ),
    )
    parser.set_defaults(handler=run_generate)


def _write(args: argparse.Namespace, out: IO[str], summary: Summary) -> dict[str, str]:
    encoder = msgspec.json.Encoder()
    expected: dict[str, str] = {}
    for generated in iter_generate(args.rooms, args.events, args.room_version, args.seed):
        out.write(encoder.encode(generated.input).decode("utf-8"))
        out.write("\n")
        expected[generated.event_id] = generated.outcome
        summary.add(generated)
    return expected


def _open_text(path: str, what: str) -> IO[str]:
    """`path` opened for writing, or one line (via the CLI) saying why it cannot be."""
    try:
        return open(path, "w", encoding="utf-8")
    except OSError as e:
        raise RoomserverError(f"cannot open {what} {path}: {e.strerror or e}") from None


def run_generate(args: argparse.Namespace) -> int:
    """Run ``roomserver generate`` with parsed `args`; the process exit status."""
    summary = Summary(rooms=args.rooms)
    try:
        if args.output == "-":
            expected = _write(args, sys.stdout, summary)
            sys.stdout.flush()
        else:
            with _open_text(args.output, "output") as out:
                expected = _write(args, out, summary)
    except (UnknownRoomVersion, ConfigError) as e:
        # Wrong arguments (a usage error, status 2 as argparse's); a ValueError from deeper
        # down would be a bug in the generator and keeps its traceback.
        print(f"roomserver generate: {e}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        # `roomserver generate | head` is fine.
        return 0
    if not args.quiet:
        print(f"roomserver generate: {summary.line()}", file=sys.stderr)
    if args.expected is not None:
        with _open_text(args.expected, "--expected file") as f:
            json.dump(expected, f, indent=None)
            f.write("\n")
    return 0
