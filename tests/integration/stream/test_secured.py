"""The Kafka commands through secured services: Kafka with SASL/SCRAM-SHA-512 over TLS, and
PostgreSQL over TLS (verify-full) with a scram-sha-256 password, as the least-privilege role
README.md documents (`secured_services`, `secured_database`).

`produce`, `run`, `tail`, `rebuild` and `dlq` are real subprocesses, as an operator runs them.
A wrong password or an untrusted certificate, on either service, ends a command with one
line naming the cause; no password ever shows in a log line, an error or `--help`.
"""

from __future__ import annotations

import os
import signal
import subprocess
import uuid
from pathlib import Path

import pytest

from processor.cli import build_parser
from tests.fixtures.postgres import database_name
from tests.fixtures.secured import (
    SecuredServices,
    create_least_privilege_database,
    drop_database,
)
from tests.integration.stream.test_cli import COMMAND_TIMEOUT, ROOMSERVER, roomserver
from tests.integration.stream.topic_reader import outputs_by_room, reference_outputs


def secured_env(services: SecuredServices, database: str, prefix: str) -> dict[str, str]:
    return {
        **services.kafka_env,
        "DATABASE_URL": services.role_url(database),
        "ROOMSERVER_INPUT_TOPIC": f"{prefix}.input",
        "ROOMSERVER_OUTPUT_TOPIC": f"{prefix}.output",
        "ROOMSERVER_DEAD_LETTER_TOPIC": f"{prefix}.dlq",
        "ROOMSERVER_INPUT_PARTITIONS": "2",
        "ROOMSERVER_CONSUMER_GROUP": f"{prefix}.group",
        "ROOMSERVER_BATCH_SIZE": "50",
    }


def all_help(env: dict[str, str]) -> str:
    """Every command's --help, with the secrets in the environment."""
    texts = [roomserver("run", "--help", env=env).stdout.decode()]
    saved = dict(os.environ)
    os.environ.update(env)
    try:
        stack = [build_parser()]
        while stack:
            parser = stack.pop()
            texts.append(parser.format_help())
            for action in parser._actions:
                if action.choices and isinstance(action.choices, dict):
                    stack.extend(action.choices.values())
    finally:
        os.environ.clear()
        os.environ.update(saved)
    return "\n".join(texts)


def test_run_produce_tail_and_rebuild_through_sasl_ssl_and_tls(
    secured_services: SecuredServices, secured_database: str, tmp_path: Path
) -> None:
    traffic = tmp_path / "traffic.jsonl"
    roomserver("generate", "--rooms", "2", "--events", "120", "--room-version", "11",
               "--seed", "5", "--output", str(traffic))
    expected = reference_outputs(traffic, tmp_path / "reference.db")

    prefix = f"secured.{uuid.uuid4().hex[:12]}"
    env = secured_env(secured_services, secured_database, prefix)
    seen: list[bytes] = []  # everything the commands printed, searched for secrets below

    produced = roomserver("produce", str(traffic), env=env)
    seen += [produced.stdout, produced.stderr]
    assert f"produced 120 input events to {prefix}.input".encode() in produced.stderr

    run = subprocess.Popen(
        [*ROOMSERVER, "run"], env={**os.environ, **env},
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    try:
        tailed = roomserver("tail", "--from-beginning", "--limit", str(len(expected)), env=env)
    finally:
        run.send_signal(signal.SIGTERM)
        run_out, run_err = run.communicate(timeout=COMMAND_TIMEOUT)
    seen += [tailed.stdout, tailed.stderr, run_out, run_err]
    assert run.returncode == 0, run_err.decode()[-3000:]
    assert outputs_by_room(tailed.stdout.splitlines()) == outputs_by_room(expected)
    assert (
        f"consuming {prefix}.input partitions [0,1] as group {prefix}.group".encode()
        in run_err
    ), run_err.decode()[-3000:]
    # aiokafka's start-up chatter and its transient coordinator errors are not shown.
    for noise in (b"INFO aiokafka", b"Updating subscribed topics", b"CoordinatorNotAvailable",
                  b"Marking the coordinator dead"):
        assert noise not in run_err, run_err.decode()[-3000:]

    rebuilt_name = database_name("secured_rebuild")
    create_least_privilege_database(secured_services, rebuilt_name)
    try:
        rebuilt = roomserver(
            "rebuild", "--output-topic", f"{prefix}.rebuilt",
            env={**env, "DATABASE_URL": secured_services.role_url(rebuilt_name)},
        )
    finally:
        drop_database(secured_services, rebuilt_name)
    seen += [rebuilt.stdout, rebuilt.stderr]
    assert b"rebuilt 120 input events" in rebuilt.stderr
    retailed = roomserver(
        "tail", "--from-beginning", "--limit", str(len(expected)),
        env={**env, "ROOMSERVER_OUTPUT_TOPIC": f"{prefix}.rebuilt"},
    )
    seen += [retailed.stdout, retailed.stderr]
    assert outputs_by_room(retailed.stdout.splitlines()) == outputs_by_room(expected)

    listed = roomserver("dlq", "list", env=env)
    seen += [listed.stdout, listed.stderr]
    assert f"0 dead letters in {prefix}.dlq".encode() in listed.stderr

    printed = b"\n".join(seen).decode(errors="replace") + all_help(env)
    for secret in (secured_services.kafka_password, secured_services.role_password):
        assert secret not in printed


def _wrong_kafka_password(s: SecuredServices) -> dict[str, str]:
    return {"KAFKA_SASL_PASSWORD": "not-" + s.kafka_password}


def _untrusted_kafka_ca(s: SecuredServices) -> dict[str, str]:
    return {"KAFKA_SSL_CAFILE": s.other_ca_file}


@pytest.mark.parametrize(
    ("command", "broken", "cause"),
    [
        (["produce", "-"], _wrong_kafka_password, "SaslAuthenticationFailed"),
        (["tail"], _untrusted_kafka_ca, "CERTIFICATE_VERIFY_FAILED"),
        (["run"], _wrong_kafka_password, "SaslAuthenticationFailed"),
        (["dlq", "list"], _untrusted_kafka_ca, "CERTIFICATE_VERIFY_FAILED"),
        (
            ["run"],
            lambda s: {"DATABASE_URL": s.role_url("{db}", password="not-the-password")},
            'password authentication failed for user "roomserver"',
        ),
        (
            ["rebuild"],
            lambda s: {"DATABASE_URL": s.role_url("{db}", ca=s.other_ca_file)},
            "certificate verify failed",
        ),
    ],
    ids=[
        "produce-kafka-password", "tail-kafka-certificate", "run-kafka-password",
        "dlq-kafka-certificate", "run-database-password", "rebuild-database-certificate",
    ],
)
def test_a_wrong_password_or_an_untrusted_certificate_is_one_line(
    secured_services: SecuredServices,
    secured_database: str,
    command: list[str],
    broken: object,
    cause: str,
) -> None:
    env = secured_env(secured_services, secured_database, f"secured.{uuid.uuid4().hex[:12]}")
    assert callable(broken)
    changes = {k: v.replace("{db}", secured_database) for k, v in broken(secured_services).items()}
    proc = subprocess.run(
        [*ROOMSERVER, *command], env={**os.environ, **env, **changes},
        input=b"", capture_output=True, timeout=COMMAND_TIMEOUT, check=False,
    )
    stderr = proc.stderr.decode()
    assert proc.returncode == 1, stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith(f"roomserver {command[0]}: "), stderr
    assert cause in lines[0], stderr
    for secret in (secured_services.kafka_password, secured_services.role_password):
        assert secret not in stderr
