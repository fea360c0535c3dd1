"""What an operator sees when `produce`, `tail` and `run` cannot do their job: one line on
standard error naming the cause (no traceback, no aiokafka log lines), and a non-zero exit
status. Also: `tail` says that it follows, and how to stop it, unless given --limit."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

from tests.fixtures.kafka import NewTopicFactory
from tests.fixtures.services import free_port
from tests.integration.stream.test_cli import COMMAND_TIMEOUT, ROOMSERVER, roomserver


def one_line(proc: subprocess.CompletedProcess[bytes], status: int) -> str:
    stderr = proc.stderr.decode()
    assert proc.returncode == status, stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    return lines[0]


def topics_env(kafka_bootstrap_servers: str, prefix: str) -> dict[str, str]:
    return {
        "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap_servers,
        "ROOMSERVER_INPUT_TOPIC": f"{prefix}.input",
        "ROOMSERVER_OUTPUT_TOPIC": f"{prefix}.output",
        "ROOMSERVER_DEAD_LETTER_TOPIC": f"{prefix}.dlq",
        "ROOMSERVER_INPUT_PARTITIONS": "1",
    }


def test_unreachable_brokers_are_one_line(tmp_path: Path, database_url: str) -> None:
    nobody = f"127.0.0.1:{free_port()}"
    traffic = tmp_path / "in.jsonl"
    traffic.write_bytes(b"{}\n")
    for args, env in (
        (["produce", str(traffic)], {}),
        (["tail"], {}),
        (["run"], {"DATABASE_URL": database_url}),
        (["dlq", "list"], {}),
    ):
        proc = roomserver(*args, env={"KAFKA_BOOTSTRAP_SERVERS": nobody, **env}, check=False)
        line = one_line(proc, 1)
        assert line.startswith(f"roomserver {args[0]}: cannot connect to Kafka at {nobody}: ")
        assert "Connect call failed" in line


def test_tail_of_a_missing_topic_is_one_line(
    kafka_bootstrap_servers: str, new_topic: NewTopicFactory
) -> None:
    env = topics_env(kafka_bootstrap_servers, new_topic(1))
    line = one_line(roomserver("tail", "--limit", "1", env=env, check=False), 2)
    assert line == (
        f"roomserver tail: configuration error: topic {env['ROOMSERVER_OUTPUT_TOPIC']} does "
        "not exist (ROOMSERVER_OUTPUT_TOPIC; `roomserver run` creates the roomserver's topics)"
    )


def test_produce_refuses_a_line_over_its_limit_naming_it(
    kafka_bootstrap_servers: str, new_topic: NewTopicFactory, tmp_path: Path
) -> None:
    env = topics_env(kafka_bootstrap_servers, new_topic(1))
    traffic = tmp_path / "in.jsonl"
    traffic.write_bytes(b'{"small": 1}\n' + b'"' + b"x" * 1998 + b'"\n' + b'{"after": 1}\n')
    proc = roomserver("produce", "--max-message-bytes", "1000", str(traffic), env=env,
                      check=False)
    assert one_line(proc, 1) == (
        "roomserver produce: line 2 is 2,000 bytes, over the limit of 1,000 "
        "(ROOMSERVER_MAX_PRODUCE_BYTES or --max-message-bytes; the input topic must take it "
        "too); 1 messages were sent before it"
    )


def test_produce_reports_a_line_the_broker_refuses_as_too_large(
    kafka_bootstrap_servers: str, new_topic: NewTopicFactory, tmp_path: Path
) -> None:
    # An input topic that takes less than the producer may send.
    topic = new_topic(1, retention_ms="-1", max_message_bytes="20000")
    env = {**topics_env(kafka_bootstrap_servers, topic), "ROOMSERVER_INPUT_TOPIC": topic}
    traffic = tmp_path / "in.jsonl"
    traffic.write_bytes(b'"' + b"x" * 49_998 + b'"\n')
    line = one_line(roomserver("produce", str(traffic), env=env, check=False), 1)
    assert line.startswith(
        "roomserver produce: the broker refused line 1 (50,000 bytes) as too large"
    ), line


def test_tail_says_it_follows_until_interrupted_unless_limited(
    kafka_bootstrap_servers: str, new_topic: NewTopicFactory, tmp_path: Path
) -> None:
    prefix = new_topic(1)
    env = topics_env(kafka_bootstrap_servers, prefix)
    traffic = tmp_path / "in.jsonl"
    traffic.write_bytes(b"{}\n")
    roomserver("produce", str(traffic), env=env)  # creates the topics
    tail = subprocess.Popen(
        [*ROOMSERVER, "tail"], env={**os.environ, **env},
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    try:
        assert tail.stderr is not None
        # Printed once the consumer has started: the moment to interrupt it.
        first = tail.stderr.readline().decode()
        tail.send_signal(signal.SIGINT)
        _, rest = tail.communicate(timeout=COMMAND_TIMEOUT)
    finally:
        if tail.poll() is None:
            tail.kill()
            tail.communicate()
    assert first == (
        f"following {prefix}.output (new messages only); press Ctrl-C to stop\n"
    )
    assert tail.returncode == 130, rest.decode()
    assert b"Traceback" not in rest, rest.decode()

    # With --limit it ends by itself: no such line. (The input topic, which holds one
    # message, stands in for an output topic.)
    limited = roomserver(
        "tail", "--limit", "1", "--from-beginning",
        env={**env, "ROOMSERVER_OUTPUT_TOPIC": f"{prefix}.input"},
    )
    assert limited.stdout == b"{}\n"
    assert b"following" not in limited.stderr


def test_produce_says_why_it_cannot_create_a_missing_topic(
    kafka_bootstrap_servers: str, new_topic: NewTopicFactory, tmp_path: Path
) -> None:
    """`produce` creates missing topics as `run` does; a topic the broker will not create
    (here an invalid name; in production, no authorisation) is one line with the broker's
    reason, not a wait for a topic that never appears."""
    env = {**topics_env(kafka_bootstrap_servers, new_topic(1)),
           "ROOMSERVER_INPUT_TOPIC": "no spaces allowed"}
    traffic = tmp_path / "in.jsonl"
    traffic.write_bytes(b"{}\n")
    line = one_line(roomserver("produce", str(traffic), env=env, check=False), 2)
    assert line.startswith(
        "roomserver produce: configuration error: cannot create topic 'no spaces allowed': "
        "Topic name is invalid"
    ), line
