"""Settings: one object, read from environment variables and an optional TOML file.

Precedence, lowest first: built-in defaults, the TOML file (`--config FILE` or
`ROOMSERVER_CONFIG`), environment variables, command-line flags. Every setting is listed in
`SETTINGS` with its environment variable, help text and the commands that use it, so each
command's `--help` documents exactly the settings it reads, from one place.

Secrets (`SettingInfo.secret`: the SASL password, and a password inside `DATABASE_URL`) are
never printed: `--help` shows no value of them, and log lines and error messages use
`redacted_url`.
"""

from __future__ import annotations

import dataclasses
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from processor.errors import ConfigError


@dataclass(frozen=True, slots=True)
class Settings:
    #: The local broker's port (deploy/local/kafka.sh), so the commands work out of the box
    #: beside it; Kafka's usual 9092 would be a broker this project never starts.
    kafka_bootstrap_servers: str = "127.0.0.1:19092"
    kafka_security_protocol: str = "PLAINTEXT"
    kafka_sasl_mechanism: str = "PLAIN"
    kafka_sasl_username: str = ""
    #: Out of repr (like database_url, which may hold a password): a logged Settings or a
    #: failing test's assertion message must not show it.
    kafka_sasl_password: str = field(default="", repr=False)
    kafka_ssl_cafile: str = ""
    input_topic: str = "roomserver.input"
    output_topic: str = "roomserver.output"
    dead_letter_topic: str = "roomserver.input.dlq"
    input_partitions: int = 6
    consumer_group: str = "roomserver"
    database_url: str = field(default="", repr=False)
    batch_size: int = 500
    metrics_port: int = 0
    server_name: str = ""
    #: The output topic's max.message.bytes; outputs are split below it.
    max_output_message_bytes: int = 1_000_000
    #: Seconds without progress while lag > 0 before /health reports the consumer stalled.
    stall_seconds: float = 60.0
    #: The consumer's static group membership ID (Kafka's group.instance.id): an instance
    #: restarted with the same ID gets its partitions back at once. "" = derived from the
    #: host name (`processor.stream.instance_id`); "dynamic" = no static membership.
    instance_id: str = ""
    #: How long the group waits for a silent member before giving its partitions away.
    session_timeout_ms: int = 10_000
    #: The largest input message `produce` sends (its producer's max_request_size, less the
    #: record overhead). Kafka's own default is 1 MiB; the local broker takes 10 MiB.
    max_produce_bytes: int = 1_048_576
    #: `serve`: where the query API listens, its worker processes, its database connections
    #: per worker, and 1 = refuse alias writes (a read replica).
    query_host: str = "127.0.0.1"
    query_port: int = 8780
    query_workers: int = 1
    query_max_connections: int = 8
    query_read_only: int = 0


#: The commands that read settings (the others take flags only).
KAFKA_COMMANDS = frozenset({"run", "produce", "tail", "rebuild", "dlq"})
_CONNECT = KAFKA_COMMANDS
#: `produce` creates the topics when missing, as `run` does, so it reads their layout too.
_TOPICS = frozenset({"run", "produce", "rebuild"})
_SERVICE = frozenset({"run", "rebuild"})


@dataclass(frozen=True, slots=True)
class SettingInfo:
    name: str
    env: str
    help: str
    #: The commands that use it (their --help lists it).
    commands: frozenset[str] = _SERVICE
    #: Never printed (no default or value in --help, redacted in messages).
    secret: bool = False


SETTINGS: tuple[SettingInfo, ...] = (
    SettingInfo(
        "kafka_bootstrap_servers", "KAFKA_BOOTSTRAP_SERVERS",
        "Kafka bootstrap servers, host:port[,host:port...]", _CONNECT,
    ),
    SettingInfo(
        "kafka_security_protocol",
        "KAFKA_SECURITY_PROTOCOL",
        "PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL",
        _CONNECT,
    ),
    SettingInfo(
        "kafka_sasl_mechanism", "KAFKA_SASL_MECHANISM",
        "PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512", _CONNECT,
    ),
    SettingInfo("kafka_sasl_username", "KAFKA_SASL_USERNAME", "SASL user name", _CONNECT),
    SettingInfo(
        "kafka_sasl_password", "KAFKA_SASL_PASSWORD",
        "SASL password (environment or file only, never a flag)", _CONNECT, secret=True,
    ),
    SettingInfo(
        "kafka_ssl_cafile", "KAFKA_SSL_CAFILE",
        "PEM file of the CAs that sign the brokers' certificates (SSL, SASL_SSL; "
        "default: the system's)",
        _CONNECT,
    ),
    SettingInfo(
        "input_topic", "ROOMSERVER_INPUT_TOPIC", "input room events topic",
        frozenset({"run", "produce", "rebuild", "dlq"}),
    ),
    SettingInfo(
        "output_topic", "ROOMSERVER_OUTPUT_TOPIC", "output events topic",
        frozenset({"run", "produce", "tail", "rebuild"}),
    ),
    SettingInfo(
        "dead_letter_topic", "ROOMSERVER_DEAD_LETTER_TOPIC", "dead-letter topic",
        frozenset({"run", "produce", "rebuild", "dlq"}),
    ),
    SettingInfo(
        "input_partitions",
        "ROOMSERVER_INPUT_PARTITIONS",
        "partitions of the input topic when the roomserver creates it",
        _TOPICS,
    ),
    SettingInfo("consumer_group", "ROOMSERVER_CONSUMER_GROUP", "Kafka consumer group"),
    SettingInfo(
        "database_url", "DATABASE_URL",
        "PostgreSQL URL, e.g. postgresql://roomserver@db:5432/roomserver"
        "?sslmode=verify-full&sslrootcert=ca.pem (a password in it is never printed)",
        _SERVICE | {"serve"},
    ),
    SettingInfo("batch_size", "ROOMSERVER_BATCH_SIZE", "max input messages per transaction"),
    SettingInfo(
        "metrics_port", "ROOMSERVER_METRICS_PORT", "Prometheus /metrics and /health port",
        frozenset({"run"}),
    ),
    SettingInfo(
        "server_name", "ROOMSERVER_SERVER_NAME", "this homeserver's name (local invites)"
    ),
    SettingInfo(
        "max_output_message_bytes",
        "ROOMSERVER_MAX_OUTPUT_MESSAGE_BYTES",
        "largest output message; bigger outputs are split",
        _TOPICS,
    ),
    SettingInfo(
        "stall_seconds", "ROOMSERVER_STALL_SECONDS", "stalled-consumer threshold",
        frozenset({"run"}),
    ),
    SettingInfo(
        "instance_id", "ROOMSERVER_INSTANCE_ID",
        "static consumer-group membership ID, unique per instance and the same across its "
        "restarts (default: host name and a per-host slot; 'dynamic': none)",
        frozenset({"run"}),
    ),
    SettingInfo(
        "session_timeout_ms", "ROOMSERVER_SESSION_TIMEOUT_MS",
        "ms without heartbeats before the group gives a member's partitions away",
        frozenset({"run"}),
    ),
    SettingInfo(
        "max_produce_bytes",
        "ROOMSERVER_MAX_PRODUCE_BYTES",
        "largest input message produce and dlq replay send (the broker's "
        "message.max.bytes must allow it)",
        frozenset({"produce", "dlq"}),
    ),
    SettingInfo(
        "query_host", "ROOMSERVER_QUERY_HOST", "address the query API listens on",
        frozenset({"serve"}),
    ),
    SettingInfo(
        "query_port", "ROOMSERVER_QUERY_PORT", "port of the query API", frozenset({"serve"})
    ),
    SettingInfo(
        "query_workers", "ROOMSERVER_QUERY_WORKERS",
        "query API worker processes (about one per core)", frozenset({"serve"}),
    ),
    SettingInfo(
        "query_max_connections", "ROOMSERVER_QUERY_MAX_CONNECTIONS",
        "database connections per query API worker", frozenset({"serve"}),
    ),
    SettingInfo(
        "query_read_only", "ROOMSERVER_QUERY_READ_ONLY",
        "1: no migrations, no alias writes (a read replica)", frozenset({"serve"}),
    ),
)

_FIELDS = {f.name: f for f in dataclasses.fields(Settings)}


def _coerce(name: str, value: object) -> Any:
    kind = type(getattr(Settings(), name))
    try:
        if kind is int and not isinstance(value, bool):
            return int(value)  # type: ignore[call-overload]
        if kind is float:
            return float(value)  # type: ignore[arg-type]
        if kind is str:
            if not isinstance(value, str):
                raise TypeError
            return value
    except (TypeError, ValueError):
        pass
    raise ConfigError(f"setting {name}: expected {kind.__name__}, got {value!r}")


def load_settings(
    config_file: str | Path | None = None,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, object] | None = None,
) -> Settings:
    """Defaults < TOML file < environment < explicit overrides (from CLI flags)."""
    env = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    path = config_file or env.get("ROOMSERVER_CONFIG")
    if path:
        try:
            with open(path, "rb") as f:
                table = tomllib.load(f)
        except OSError as e:
            raise ConfigError(f"config file {path}: {e.strerror}") from e
        except tomllib.TOMLDecodeError as e:
            raise ConfigError(f"config file {path}: {e}") from e
        for key, value in table.items():
            if key not in _FIELDS:
                raise ConfigError(f"config file {path}: unknown setting {key!r}")
            values[key] = _coerce(key, value)
    for info in SETTINGS:
        if info.env in env:
            values[info.name] = _coerce(info.name, env[info.env])
    for key, value in (overrides or {}).items():
        if value is not None:
            values[key] = _coerce(key, value)
    settings = Settings(**values)
    if settings.batch_size < 1:
        raise ConfigError("setting batch_size: must be at least 1")
    if settings.max_produce_bytes < 1:
        raise ConfigError("setting max_produce_bytes: must be at least 1")
    return settings


def settings_for(command: str) -> tuple[SettingInfo, ...]:
    """The settings `command` reads."""
    return tuple(info for info in SETTINGS if command in info.commands)


def settings_help(command: str = "run") -> str:
    """The table of the settings `command` reads, for its `--help`. Shows defaults, never
    the values in effect (which may be secrets), and no default for a secret."""
    lines = ["settings (environment variable, or the same name in the TOML file):"]
    defaults = Settings()
    for info in settings_for(command):
        default = "" if info.secret else f"; default {getattr(defaults, info.name)!r}"
        lines.append(f"  {info.env:<36} {info.help} [{info.name}{default}]")
    return "\n".join(lines)


def redacted_url(url: str) -> str:
    """`url` without the password in its user info (`user:***@host`), for messages."""
    # libpq also takes the password as a query parameter, or in a key=value string.
    url = _PASSWORD_PARAMETER.sub(r"\1***", url)
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparseable URL>"
    if parts.password is None:
        return url
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{parts.username or ''}:***@{host}"))


_PASSWORD_PARAMETER = re.compile(r"((?:^|[?&\s])password\s*=\s*)('[^']*'|[^&\s]*)")


__all__ = [
    "KAFKA_COMMANDS",
    "SETTINGS",
    "Settings",
    "load_settings",
    "redacted_url",
    "settings_for",
    "settings_help",
]
