"""The Kafka commands as an operator runs them: `roomserver generate | produce`, `run`,
`tail`, `rebuild`, `run --help`, and configuration errors (exit code 2, a clear message).

Each command is a real subprocess (`python -m processor.cli`, what the `roomserver` script
runs) against the real broker and database. The expected outputs come from the embedded
mode (`ingest`, SQLite), which runs the same core without Kafka.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from processor.config import settings_for
from tests.fixtures.kafka import NewTopicFactory
from tests.integration.stream.topic_reader import outputs_by_room, reference_outputs

ROOMSERVER = [sys.executable, "-m", "processor.cli"]
#: A guard against a hung command, not a synchronisation: every command ends on its own.
COMMAND_TIMEOUT = 120


def roomserver(
    *args: str, env: dict[str, str] | None = None, check: bool = True
) -> subprocess.CompletedProcess[bytes]:
    proc = subprocess.run(
        [*ROOMSERVER, *args],
        env={**os.environ, **(env or {})},
        stdin=subprocess.DEVNULL,
        capture_output=True,
        timeout=COMMAND_TIMEOUT,
        check=False,
    )
    if check and proc.returncode != 0:
        pytest.fail(f"roomserver {' '.join(args)} exited {proc.returncode}:\n"
                    f"{proc.stderr.decode()[-3000:]}")
    return proc


def service_env(
    kafka_bootstrap_servers: str, database_url: str, prefix: str
) -> dict[str, str]:
    return {
        "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap_servers,
        "DATABASE_URL": database_url,
        "ROOMSERVER_INPUT_TOPIC": f"{prefix}.input",
        "ROOMSERVER_OUTPUT_TOPIC": f"{prefix}.output",
        "ROOMSERVER_DEAD_LETTER_TOPIC": f"{prefix}.dlq",
        "ROOMSERVER_INPUT_PARTITIONS": "2",
        "ROOMSERVER_CONSUMER_GROUP": f"{prefix}.group",
        "ROOMSERVER_BATCH_SIZE": "100",
    }


def test_generate_produce_run_tail_and_rebuild(
    kafka_bootstrap_servers: str,
    database_url: str,
    second_database: str,
    new_topic: NewTopicFactory,
    tmp_path: Path,
) -> None:
    traffic = tmp_path / "traffic.jsonl"
    roomserver("generate", "--rooms", "3", "--events", "300", "--room-version", "11",
               "--seed", "8", "--output", str(traffic))
    expected = reference_outputs(traffic, tmp_path / "reference.db")

    env = service_env(kafka_bootstrap_servers, database_url, new_topic(1))
    produced = roomserver("produce", str(traffic), env=env)
    assert f"produced 300 input events to {env['ROOMSERVER_INPUT_TOPIC']}".encode() in (
        produced.stderr
    )

    run = subprocess.Popen(
        [*ROOMSERVER, "run"], env={**os.environ, **env},
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    try:
        # tail returns once it has printed `--limit` outputs: when the service made them.
        tailed = roomserver("tail", "--from-beginning", "--limit", str(len(expected)), env=env)
    finally:
        run.send_signal(signal.SIGTERM)
        _, run_err = run.communicate(timeout=COMMAND_TIMEOUT)
    assert run.returncode == 0, run_err.decode()[-3000:]
    assert outputs_by_room(tailed.stdout.splitlines()) == outputs_by_room(expected)

    rebuilt = roomserver(
        "rebuild", "--database-url", second_database,
        "--output-topic", f"{env['ROOMSERVER_OUTPUT_TOPIC']}.rebuilt", env=env,
    )
    assert b"rebuilt 300 input events" in rebuilt.stderr
    retailed = roomserver(
        "tail", "--from-beginning", "--limit", str(len(expected)),
        env={**env, "ROOMSERVER_OUTPUT_TOPIC": f"{env['ROOMSERVER_OUTPUT_TOPIC']}.rebuilt"},
    )
    assert outputs_by_room(retailed.stdout.splitlines()) == outputs_by_room(expected)


def test_run_help_lists_every_setting_it_reads() -> None:
    help_text = roomserver("run", "--help").stdout.decode()
    for info in settings_for("run"):
        assert info.env in help_text, info.env
        assert f"[{info.name}" in help_text, info.name


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        ([], {"ROOMSERVER_BATCH_SIZE": "many"}, "setting batch_size: expected int, got 'many'"),
        (["--batch-size", "0"], {}, "setting batch_size: must be at least 1"),
        ([], {"ROOMSERVER_STALL_SECONDS": "soon"}, "setting stall_seconds: expected float"),
        ([], {"DATABASE_URL": ""}, "DATABASE_URL is not set"),
        (["--config", "{bad_toml}"], {}, "unknown setting 'batch_sise'"),
        (["--config", "{missing}"], {}, "No such file or directory"),
    ],
)
def test_a_wrong_setting_is_a_clear_error_with_exit_code_2(
    args: list[str], env: dict[str, str], message: str, tmp_path: Path
) -> None:
    bad_toml = tmp_path / "bad.toml"
    bad_toml.write_text("batch_sise = 5\n")
    paths = {"bad_toml": str(bad_toml), "missing": str(tmp_path / "missing.toml")}
    proc = roomserver(
        "run", *[a.format(**paths) for a in args],
        env={"DATABASE_URL": "postgresql://nobody@127.0.0.1:1/none", **env}, check=False,
    )
    assert proc.returncode == 2, proc.stderr.decode()
    stderr = proc.stderr.decode()
    assert "roomserver run: configuration error:" in stderr
    assert message in stderr


def test_an_input_topic_that_forgets_is_refused_at_start(
    kafka_bootstrap_servers: str, database_url: str, new_topic: NewTopicFactory
) -> None:
    """The input topic is replayed to rebuild the database: it must keep every message."""
    forgetful = new_topic(2, retention_ms="604800000")
    env = service_env(kafka_bootstrap_servers, database_url, forgetful)
    env["ROOMSERVER_INPUT_TOPIC"] = forgetful
    proc = roomserver("run", env=env, check=False)
    assert proc.returncode == 2, proc.stderr.decode()[-3000:]
    assert f"topic {forgetful}: retention.ms is 604800000, must be -1" in proc.stderr.decode()
