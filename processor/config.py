"""Settings: one object, read from environment variables and an optional TOML file.

Precedence, lowest first: built-in defaults, the TOML file (`--config FILE` or
`ROOMSERVER_CONFIG`), environment variables, command-line flags. Every setting is listed in
`SETTINGS` with its environment variable and help text, so `roomserver run --help` documents
all of them from one place.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from processor.errors import ConfigError


@dataclass(frozen=True, slots=True)
class Settings:
    kafka_bootstrap_servers: str = "127.0.0.1:9092"
    kafka_security_protocol: str = "PLAINTEXT"
    kafka_sasl_mechanism: str = "PLAIN"
    kafka_sasl_username: str = ""
    kafka_sasl_password: str = ""
    kafka_ssl_cafile: str = ""
    input_topic: str = "roomserver.input"
    output_topic: str = "roomserver.output"
    dead_letter_topic: str = "roomserver.input.dlq"
    input_partitions: int = 6
    consumer_group: str = "roomserver"
    database_url: str = ""
    batch_size: int = 500
    metrics_port: int = 0
    server_name: str = ""
    #: The output topic's max.message.bytes; outputs are split below it.
    max_output_message_bytes: int = 1_000_000
    #: Seconds without progress while lag > 0 before /health reports the consumer stalled.
    stall_seconds: float = 60.0


@dataclass(frozen=True, slots=True)
class SettingInfo:
    name: str
    env: str
    help: str


SETTINGS: tuple[SettingInfo, ...] = (
    SettingInfo("kafka_bootstrap_servers", "KAFKA_BOOTSTRAP_SERVERS", "Kafka bootstrap servers"),
    SettingInfo(
        "kafka_security_protocol",
        "KAFKA_SECURITY_PROTOCOL",
        "PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL",
    ),
    SettingInfo("kafka_sasl_mechanism", "KAFKA_SASL_MECHANISM", "PLAIN, SCRAM-SHA-256, ..."),
    SettingInfo("kafka_sasl_username", "KAFKA_SASL_USERNAME", "SASL user name"),
    SettingInfo("kafka_sasl_password", "KAFKA_SASL_PASSWORD", "SASL password"),
    SettingInfo("kafka_ssl_cafile", "KAFKA_SSL_CAFILE", "CA bundle for SSL/SASL_SSL"),
    SettingInfo("input_topic", "ROOMSERVER_INPUT_TOPIC", "input room events topic"),
    SettingInfo("output_topic", "ROOMSERVER_OUTPUT_TOPIC", "output events topic"),
    SettingInfo("dead_letter_topic", "ROOMSERVER_DEAD_LETTER_TOPIC", "dead-letter topic"),
    SettingInfo(
        "input_partitions",
        "ROOMSERVER_INPUT_PARTITIONS",
        "partitions of the input topic when the roomserver creates it",
    ),
    SettingInfo("consumer_group", "ROOMSERVER_CONSUMER_GROUP", "Kafka consumer group"),
    SettingInfo("database_url", "DATABASE_URL", "PostgreSQL URL (or a SQLite file path)"),
    SettingInfo("batch_size", "ROOMSERVER_BATCH_SIZE", "max input messages per transaction"),
    SettingInfo("metrics_port", "ROOMSERVER_METRICS_PORT", "Prometheus /metrics and /health port"),
    SettingInfo(
        "server_name", "ROOMSERVER_SERVER_NAME", "this homeserver's name (local invites)"
    ),
    SettingInfo(
        "max_output_message_bytes",
        "ROOMSERVER_MAX_OUTPUT_MESSAGE_BYTES",
        "largest output message; bigger outputs are split",
    ),
    SettingInfo("stall_seconds", "ROOMSERVER_STALL_SECONDS", "stalled-consumer threshold"),
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
    return settings


def settings_help() -> str:
    """The settings table for `--help`."""
    lines = ["settings (environment variable, or the same name in the TOML file):"]
    defaults = Settings()
    for info in SETTINGS:
        default = getattr(defaults, info.name)
        lines.append(f"  {info.env:<36} {info.help} [{info.name}; default {default!r}]")
    return "\n".join(lines)


__all__ = ["SETTINGS", "Settings", "load_settings", "settings_help"]
