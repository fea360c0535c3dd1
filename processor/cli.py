"""The `roomserver` command line: one subcommand per mode (see README)."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import stat
import sys
from collections.abc import Sequence
from typing import IO

from processor import __version__
from processor.config import KAFKA_COMMANDS, Settings, load_settings, settings_for, settings_help
from processor.errors import ConfigError, CorruptState, NotFound, RoomserverError
from processor.gc_tuning import tune_for_throughput
from schemas.dead_letter import DeadLetterReason


def _open_input(path: str) -> IO[bytes]:
    return sys.stdin.buffer if path == "-" else _open_file(path, "rb", "input")


#: Settings that also have a flag, per command that reads them: (flags, setting, type, help).
#: Secrets never get one (a flag shows in `ps` and in shell history).
_SETTING_FLAGS: dict[str, tuple[str, str, type, str]] = {
    "kafka_bootstrap_servers": (
        "--bootstrap-servers", "kafka_bootstrap_servers", str,
        "Kafka bootstrap servers, host:port[,host:port...] (KAFKA_BOOTSTRAP_SERVERS)",
    ),
    "database_url": (
        "--database-url", "database_url", str,
        "PostgreSQL URL (DATABASE_URL; prefer the variable for a URL with a password)",
    ),
    "batch_size": (
        "--batch-size", "batch_size", int,
        "max input messages per database transaction (ROOMSERVER_BATCH_SIZE)",
    ),
    "metrics_port": (
        "--metrics-port", "metrics_port", int,
        "port of /metrics and /health, 0 = off (ROOMSERVER_METRICS_PORT)",
    ),
    "max_produce_bytes": (
        "--max-message-bytes", "max_produce_bytes", int,
        "largest input message to send (ROOMSERVER_MAX_PRODUCE_BYTES)",
    ),
    "query_host": (
        "--host", "query_host", str, "address to listen on (ROOMSERVER_QUERY_HOST)"
    ),
    "query_port": ("--port", "query_port", int, "port to listen on (ROOMSERVER_QUERY_PORT)"),
    "query_workers": (
        "--workers", "query_workers", int,
        "worker processes, about one per core (ROOMSERVER_QUERY_WORKERS)",
    ),
    "query_max_connections": (
        "--max-connections", "query_max_connections", int,
        "database connections per worker (ROOMSERVER_QUERY_MAX_CONNECTIONS)",
    ),
    "query_read_only": (
        "--read-only", "query_read_only", int,
        "1: no migrations, no alias writes, for a read replica (ROOMSERVER_QUERY_READ_ONLY)",
    ),
}


def _add_settings_args(parser: argparse.ArgumentParser, command: str) -> None:
    """`--config` and a flag for each setting in `_SETTING_FLAGS` that `command` reads."""
    parser.add_argument(
        "--config", metavar="FILE", help="TOML file with settings (see below; ROOMSERVER_CONFIG)"
    )
    for info in settings_for(command):
        if info.name in _SETTING_FLAGS:
            flag, dest, kind, text = _SETTING_FLAGS[info.name]
            parser.add_argument(flag, dest=dest, type=kind, help=text)


def _settings(args: argparse.Namespace) -> Settings:
    overrides = {name: getattr(args, name, None) for name in _SETTING_FLAGS}
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
    sub = parser.add_subparsers(
        dest="command", metavar="COMMAND", help="what to do (COMMAND --help: its options)"
    )

    def kafka_command(
        name: str,
        help: str,
        parent: argparse._SubParsersAction[argparse.ArgumentParser] = sub,
        settings_of: str = "",
    ) -> argparse.ArgumentParser:
        """A subcommand that talks to Kafka: it takes the settings it reads (listed in its
        help, `settings_of` the command whose settings they are)."""
        command = parent.add_parser(
            name,
            help=help,
            description=help,
            epilog=settings_help(settings_of or name),
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        _add_settings_args(command, settings_of or name)
        return command

    kafka_command("run", "the service: Kafka input -> PostgreSQL -> Kafka output")
    produce = kafka_command(
        "produce",
        "publish JSON-lines InputRoomEvents to the input topic, keyed by room ID (the "
        "topics are created when missing, as run does)",
    )
    produce.add_argument("file", help="JSON-lines file, or - for standard input")
    tail = kafka_command(
        "tail", "print output events as JSON lines (follows until Ctrl-C unless --limit)"
    )
    tail.add_argument(
        "--from-beginning",
        action="store_true",
        help="start at the topic's first message (default: new messages only)",
    )
    tail.add_argument(
        "--limit", type=int, default=0, help="stop after N messages (default 0: follow)"
    )
    rebuild = kafka_command(
        "rebuild", "replay the input topic from offset 0 into an empty database"
    )
    rebuild.add_argument(
        "--output-topic", default="", help="publish outputs to this topic (default: none)"
    )
    rebuild.add_argument(
        "--processes", type=int, default=1,
        help="worker processes, each replaying a share of the partitions with its own "
        "database connections (about one per core; default 1)",
    )

    dlq = sub.add_parser(
        "dlq",
        help="list, show and replay dead letters",
        description=(
            "Dead letters are inputs the roomserver could not process, kept on the "
            "dead-letter topic with the reason and the original bytes. A dead letter is "
            "named PARTITION:OFFSET, its place in that topic (the first column of `dlq "
            "list`). Replay sends originals back to the input topic once their cause is "
            "fixed (e.g. the missing prev events have arrived since)."
        ),
    )
    dlq_sub = dlq.add_subparsers(
        dest="dlq_command", metavar="ACTION", required=True,
        help="list, show or replay (ACTION --help: its options)",
    )
    reasons = ", ".join(r.value for r in DeadLetterReason)
    dlq_list = kafka_command(
        "list", "one line per dead letter: ID, reason, source topic[partition]@offset, "
        "message", dlq_sub, "dlq",
    )
    dlq_list.add_argument("--reason", help=f"only those with this reason ({reasons})")
    dlq_show = kafka_command(
        "show", "dead letters in full, one JSON object per line (the original as base64, "
        "and as text when it is UTF-8)", dlq_sub, "dlq",
    )
    dlq_show.add_argument("ids", nargs="+", metavar="ID", help="PARTITION:OFFSET, from list")
    dlq_show.add_argument(
        "--original",
        action="store_true",
        help="print only the original bytes, one message per line",
    )
    dlq_replay = kafka_command(
        "replay", "send dead letters' originals back to the input topic", dlq_sub, "dlq"
    )
    chosen = dlq_replay.add_mutually_exclusive_group(required=True)
    chosen.add_argument(
        "--offset", dest="ids", action="append", metavar="ID",
        help="the dead letter PARTITION:OFFSET (repeatable)",
    )
    chosen.add_argument("--reason", help=f"every dead letter with this reason ({reasons})")
    dlq_replay.add_argument(
        "--dry-run", action="store_true", help="list what would be replayed, send nothing"
    )

    ingest = sub.add_parser(
        "ingest", help="embedded mode: process a JSON-lines file with SQLite, no servers"
    )
    ingest.add_argument("file", help="JSON-lines InputRoomEvents, or - for standard input")
    ingest.add_argument(
        "--database",
        default="roomserver.db",
        help="postgresql://USER@HOST[:PORT]/DBNAME, sqlite:PATH or an SQLite file path "
        "(created if missing; default roomserver.db)",
    )
    ingest.add_argument("--output", help="write output events as JSON lines to this file")
    ingest.add_argument("--server-name", default="", help="this homeserver (local invites)")
    ingest.add_argument(
        "--batch-size", type=int, default=1000,
        help="input lines per database transaction (default 1000)",
    )

    state = sub.add_parser("state", help="print a room's state as JSON")
    state.add_argument(
        "--database",
        default="roomserver.db",
        help="as for ingest; opened read-only (an SQLite file must exist)",
    )
    state.add_argument("--room", required=True, help="room ID")
    state.add_argument("--at", help="event ID: the state after it (or before, --before)")
    state.add_argument(
        "--before", action="store_true", help="with --at: the state before the event"
    )
    state.add_argument(
        "--all-events", action="store_true", help="one line per event of the room"
    )

    kafka_command(
        "serve",
        "the query API over HTTP (JSON): latest events and state, state after events, "
        "events, auth chains, memberships, invites, history visibility, missing events, "
        "state and auth chain, backfill, room versions, aliases; /health, /metrics, "
        "/openapi.json. DATABASE_URL may also be an SQLite file (the embedded mode)",
    )
    _add_query_command(sub)

    try:
        from processor.generate import add_generate_command

        add_generate_command(sub)
    except ImportError:  # pragma: no cover - the generator is optional at import time
        pass
    return parser


def _add_query_command(
    sub: argparse._SubParsersAction[argparse.ArgumentParser],
) -> None:
    """`roomserver query NAME [JSON]`: one subcommand per query API endpoint."""
    from processor.query.commands import command_names
    from schemas.query import ENDPOINTS

    query = sub.add_parser(
        "query",
        help="answer one query API request from a database (as serve would)",
        description="Answer one request of the query API (the same code as `roomserver "
        "serve`) and print the JSON response; an error is one line on stderr (status 4 "
        "for not found, 1 otherwise).",
    )
    actions = query.add_subparsers(
        dest="query_command", metavar="QUERY", required=True,
        help="which query (QUERY --help: its request)",
    )
    for command, name in command_names().items():
        request = ENDPOINTS[name][0]
        doc = (request.__doc__ or "").strip().splitlines() if request is not None else []
        text = doc[0] if doc else f"the {name} query"
        action = actions.add_parser(command, help=text, description=text)
        action.add_argument(
            "--database",
            default="roomserver.db",
            help="as for ingest; opened read-only unless the query changes aliases",
        )
        if request is not None:
            fields = ", ".join(request.__struct_fields__)
            action.add_argument(
                "request", nargs="?", default="-",
                help=f"the request as a JSON object ({fields}), or - for standard input",
            )


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
    if args.command in KAFKA_COMMANDS:
        from processor.stream.log_levels import quiet_kafka_logs

        quiet_kafka_logs(args.verbose)
    try:
        return _dispatch(args)
    except RoomserverError as e:
        # The one place every error the roomserver raises on purpose ends: one line on
        # stderr, never a traceback (a traceback would bury what to do under our internals).
        print(f"roomserver {args.command}: {error_line(e)}", file=sys.stderr)
        return exit_status(e)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader of our output went away (`| head`): stop quietly, like a command
        # killed by SIGPIPE (status 128 + 13). Standard output is pointed at /dev/null so
        # that flushing it at exit does not raise again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141


#: Exit statuses: 1 for a `RoomserverError`, 2 for a `ConfigError` (as argparse's usage
#: errors), 3 for `CorruptState`, so that a supervisor can tell a broken database (restarting
#: would stop again at once: `RestartPreventExitStatus=3`) from a failure worth a restart,
#: 4 for `NotFound` (as `roomserver query` does for a 404: scripts can tell "no such room"
#: from a failure).
EXIT_ERROR = 1
EXIT_CONFIG = 2
EXIT_CORRUPT = 3
EXIT_NOT_FOUND = 4


def exit_status(error: RoomserverError) -> int:
    """The exit status of a command that ended with `error`."""
    if isinstance(error, ConfigError):
        return EXIT_CONFIG
    if isinstance(error, CorruptState):
        return EXIT_CORRUPT
    if isinstance(error, NotFound):
        return EXIT_NOT_FOUND
    return EXIT_ERROR


def error_line(error: RoomserverError) -> str:
    """`error` as the one line the CLI prints: what kind of failure for the two that need
    saying, and the message with its line breaks folded (a database driver's message can
    span lines, a DETAIL under the ERROR)."""
    message = "; ".join(line.strip() for line in str(error).splitlines() if line.strip())
    message = message or type(error).__name__
    if isinstance(error, ConfigError):
        return f"configuration error: {message}"
    if isinstance(error, CorruptState):
        return (
            f"the database is corrupt: {message}; stopping: restore it from a backup or "
            "rebuild it (roomserver rebuild)"
        )
    return message


def _dispatch(args: argparse.Namespace) -> int:
    command: str = args.command
    if command in ("run", "rebuild", "ingest"):
        tune_for_throughput()
    if command == "ingest":
        return _ingest(args)
    if command == "state":
        return _state(args)
    if command == "query":
        return _query(args)
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
    if command == "dlq":
        return _dlq(args, settings)
    if command == "serve":
        from processor.query.commands import serve

        return serve(settings)
    if command == "rebuild":
        from processor.stream import rebuild

        if not settings.database_url:
            raise ConfigError("DATABASE_URL is not set (or pass --database-url)")
        return asyncio.run(
            rebuild.rebuild(settings, args.output_topic or None, processes=args.processes)
        )
    raise ConfigError(f"unknown command {command}")


def _dlq(args: argparse.Namespace, settings: Settings) -> int:
    from processor.stream import commands
    from processor.stream.dead_letters import (
        check_reason,
        count_by_reason,
        parse_id,
        read_dead_letters,
    )

    reason = check_reason(args.reason) if getattr(args, "reason", None) else None
    ids = [parse_id(i) for i in args.ids] if getattr(args, "ids", None) else None
    letters, undecodable = asyncio.run(read_dead_letters(settings, reason=reason, ids=ids))
    if undecodable:
        print(
            f"roomserver dlq: {len(undecodable)} records in {settings.dead_letter_topic} are "
            f"not dead letters (another producer?), skipped: {', '.join(undecodable[:10])}",
            file=sys.stderr,
        )
    out = sys.stdout
    if args.dlq_command == "list":
        for letter in letters:
            out.write(letter.summary() + "\n")
        summary = count_by_reason(letters)
        print(
            f"{len(letters)} dead letters in {settings.dead_letter_topic}"
            + (f" ({summary})" if summary else ""),
            file=sys.stderr,
        )
        return 0
    if args.dlq_command == "show":
        for letter in letters:
            if args.original:
                sys.stdout.buffer.write(letter.record.original_bytes() + b"\n")
            else:
                out.write(json.dumps(letter.as_json(), ensure_ascii=False) + "\n")
        return 0
    # replay
    if args.dry_run:
        for letter in letters:
            out.write(letter.summary() + "\n")
        print(f"would replay {len(letters)} dead letters to {settings.input_topic}",
              file=sys.stderr)
        return 0
    count = asyncio.run(commands.replay(settings, letters))
    print(f"replayed {count} dead letters to {settings.input_topic}", file=sys.stderr)
    return 0


def _utf8_argument(flag: str, value: str) -> str:
    """`value` as given, if it is UTF-8 (argv undecodable as UTF-8 reaches Python as lone
    surrogates, which no database driver can encode)."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ConfigError(f"{flag} {value!r} is not valid UTF-8") from None
    return value


def _open_file(path: str, mode: str, what: str) -> IO[bytes]:
    """`path` opened in binary `mode`, or one line saying why it cannot be."""
    try:
        return open(path, mode)
    except OSError as e:
        raise RoomserverError(f"cannot open {what} {path}: {e.strerror or e}") from None


def _count_lines(stream: IO[bytes]) -> int | None:
    """The number of lines of a regular file, for the progress bar, read from the start
    and rewound; None for a pipe or terminal (`-`, `/dev/stdin`, `<(...)`), which can be
    read only once."""
    try:
        if not stat.S_ISREG(os.fstat(stream.fileno()).st_mode):
            return None
        total = sum(1 for _ in stream)
        stream.seek(0)
    except (OSError, ValueError):
        return None
    return total


def _ingest(args: argparse.Namespace) -> int:
    from processor.ingest import ingest, read_lines
    from processor.storage import open_database

    database = _utf8_argument("--database", args.database)
    # The input and output first: a wrong path must not leave a new database behind.
    stream = sys.stdin.buffer if args.file == "-" else _open_file(args.file, "rb", "input")
    with stream:
        total = _count_lines(stream)
        output = _open_file(args.output, "wb", "output file") if args.output else None
        try:
            store = open_database(database, read_only=False)
            try:
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
                store.close()
        finally:
            if output is not None:
                output.close()
    for line in summary.dead_letters:
        print(f"bad input: {line}", file=sys.stderr)
    print("\n".join(summary.lines()))
    return 0


def _state(args: argparse.Namespace) -> int:
    from processor.room_state import room_state_lines
    from processor.storage import open_database

    room = _utf8_argument("--room", args.room)
    at = None if args.at is None else _utf8_argument("--at", args.at)
    store = open_database(_utf8_argument("--database", args.database), read_only=True)
    try:
        for line in room_state_lines(
            store, room, at=at, before=args.before, all_events=args.all_events
        ):
            sys.stdout.write(json.dumps(line, separators=(",", ":")) + "\n")
    finally:
        store.close()
    return 0


def _query(args: argparse.Namespace) -> int:
    from processor.query.commands import command_names, run_query

    name = command_names()[args.query_command]
    raw = getattr(args, "request", None)
    if raw is None:
        body = b""
    elif raw == "-":
        body = sys.stdin.buffer.read()
    else:
        body = _utf8_argument("request", raw).encode()
    database = _utf8_argument("--database", args.database)
    return run_query(
        database, name, body, sys.stdout, read_only=not name.startswith(("alias/set",
                                                                         "alias/remove"))
    )


if __name__ == "__main__":
    sys.exit(main())
