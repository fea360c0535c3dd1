"""The `roomserver` command line: one subcommand per mode (see README)."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import IO

from processor import __version__
from processor.config import Settings, load_settings, settings_help
from processor.errors import ConfigError, RoomserverError
from processor.gc_tuning import tune_for_throughput


def _open_input(path: str) -> IO[bytes]:
    return sys.stdin.buffer if path == "-" else open(path, "rb")


def _add_settings_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", help="TOML file with settings (see below)")
    parser.add_argument("--bootstrap-servers", dest="kafka_bootstrap_servers")
    parser.add_argument("--database-url", dest="database_url")
    parser.add_argument("--batch-size", dest="batch_size", type=int)


def _settings(args: argparse.Namespace) -> Settings:
    overrides = {
        name: getattr(args, name, None)
        for name in ("kafka_bootstrap_servers", "database_url", "batch_size", "metrics_port")
    }
    return load_settings(getattr(args, "config", None), overrides=overrides)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="roomserver",
        description=(
            "A Matrix roomserver: reads input room events, checks the authorization rules, "
            "computes room state and publishes output events."
        ),
    )
    parser.add_argument("--version", action="version", version=f"roomserver {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    def kafka_command(name: str, help: str) -> argparse.ArgumentParser:
        """A subcommand that talks to Kafka: it takes every setting (listed in its help)."""
        command = sub.add_parser(
            name,
            help=help,
            epilog=settings_help(),
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        _add_settings_args(command)
        return command

    run = kafka_command("run", "the service: Kafka input -> PostgreSQL -> Kafka output")
    run.add_argument("--metrics-port", dest="metrics_port", type=int)
    produce = kafka_command(
        "produce", "publish JSON-lines InputRoomEvents to the input topic, keyed by room ID"
    )
    produce.add_argument("file", help="JSON-lines file, or - for standard input")
    tail = kafka_command("tail", "print output events as JSON lines")
    tail.add_argument("--from-beginning", action="store_true")
    tail.add_argument("--limit", type=int, default=0, help="stop after N messages")
    rebuild = kafka_command(
        "rebuild", "replay the input topic from offset 0 into an empty database"
    )
    rebuild.add_argument(
        "--output-topic", default="", help="publish outputs to this topic (default: none)"
    )

    ingest = sub.add_parser(
        "ingest", help="embedded mode: process a JSON-lines file with SQLite, no servers"
    )
    ingest.add_argument("file", help="JSON-lines InputRoomEvents, or - for standard input")
    ingest.add_argument(
        "--database", default="roomserver.db", help="SQLite file or PostgreSQL URL"
    )
    ingest.add_argument("--output", help="write output events as JSON lines to this file")
    ingest.add_argument("--server-name", default="", help="this homeserver (local invites)")
    ingest.add_argument("--batch-size", type=int, default=1000)

    state = sub.add_parser("state", help="print a room's state as JSON")
    state.add_argument("--database", default="roomserver.db", help="SQLite file or URL")
    state.add_argument("--room", required=True, help="room ID")
    state.add_argument("--at", help="event ID: the state after it (or before, --before)")
    state.add_argument("--before", action="store_true")
    state.add_argument(
        "--all-events", action="store_true", help="one line per event of the room"
    )

    try:
        from processor.generate import add_generate_command

        add_generate_command(sub)
    except ImportError:  # pragma: no cover - the generator is optional at import time
        pass
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    if args.command is None:
        parser.print_help()
        return 0
    try:
        return _dispatch(args)
    except ConfigError as e:
        print(f"roomserver {args.command}: configuration error: {e}", file=sys.stderr)
        return 2
    except RoomserverError as e:
        print(f"roomserver {args.command}: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def _dispatch(args: argparse.Namespace) -> int:
    command: str = args.command
    if command in ("run", "rebuild", "ingest"):
        tune_for_throughput()
    if command == "ingest":
        return _ingest(args)
    if command == "state":
        return _state(args)
    if command == "generate":
        from processor.generate import run_generate

        return run_generate(args)
    from processor.stream import commands

    settings = _settings(args)
    if command == "run":
        if not settings.database_url:
            raise ConfigError("DATABASE_URL is not set (or pass --database-url)")
        return asyncio.run(commands.run(settings))
    if command == "produce":
        with _open_input(args.file) as stream:
            count = asyncio.run(commands.produce(settings, stream))
        print(f"produced {count} input events to {settings.input_topic}", file=sys.stderr)
        return 0
    if command == "tail":
        return asyncio.run(commands.tail(settings, args.from_beginning, args.limit))
    if command == "rebuild":
        if not settings.database_url:
            raise ConfigError("DATABASE_URL is not set (or pass --database-url)")
        return asyncio.run(commands.rebuild(settings, args.output_topic or None))
    raise ConfigError(f"unknown command {command}")


def _ingest(args: argparse.Namespace) -> int:
    from processor.ingest import ingest, read_lines
    from processor.storage import open_store

    store = open_store(args.database)
    try:
        total = None
        if args.file != "-":
            with open(args.file, "rb") as f:
                total = sum(1 for _ in f)
        output = open(args.output, "wb") if args.output else None  # noqa: SIM115
        try:
            with _open_input(args.file) as stream:
                summary = ingest(
                    store,
                    read_lines(stream),
                    output=output,
                    server_name=args.server_name,
                    batch_size=args.batch_size,
                    progress=True,
                    total=total,
                )
        finally:
            if output is not None:
                output.close()
    finally:
        store.close()
    for line in summary.dead_letters:
        print(f"bad input: {line}", file=sys.stderr)
    print("\n".join(summary.lines()))
    return 0


def _state(args: argparse.Namespace) -> int:
    from processor.room_state import print_room_state
    from processor.storage import open_store

    if not args.database.startswith("postgres") and not Path(args.database).exists():
        raise ConfigError(f"database {args.database} does not exist")
    store = open_store(args.database)
    try:
        for line in print_room_state(
            store, args.room, at=args.at, before=args.before, all_events=args.all_events
        ):
            sys.stdout.write(json.dumps(line, separators=(",", ":")) + "\n")
    finally:
        store.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
