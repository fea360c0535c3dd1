"""`roomserver dlq` against the real broker: an event whose prev event has not arrived is
dead-lettered (and logged with its reason); `dlq list` and `dlq show` report it with its
source and original bytes; once the prev event has arrived, `dlq replay` sends it back to
the input topic and the service accepts it."""

from __future__ import annotations

import base64
import io
import json
import logging

import msgspec
import pytest

from processor.config import Settings
from processor.generate import iter_generate
from processor.generate.model import GeneratedEvent
from processor.stream import commands
from schemas.dead_letter import DeadLetterReason
from tests.fixtures.kafka import NewTopicFactory
from tests.integration.stream.test_cli import roomserver
from tests.integration.stream.topic_reader import read_topic, run_to_end, service_settings


def _late_event() -> tuple[GeneratedEvent, GeneratedEvent, list[GeneratedEvent]]:
    """From generated traffic: an accepted message `prev`, an accepted event `late` whose
    only prev event it is, and `setup`, the events before `prev`, which hold all of
    `late`'s auth events. Produced without `prev`, `late` lacks exactly its prev event; its
    state (after `prev`) and so its outcome are the same whenever `prev` arrives."""
    generated = list(iter_generate(1, 60, "10", seed=2))
    ids = [g.event_id for g in generated]
    for late in generated:
        prevs = late.input["event"]["prev_events"]
        if late.outcome != "accepted" or len(prevs) != 1 or prevs[0] not in ids:
            continue
        i = ids.index(prevs[0])
        prev = generated[i]
        if (
            prev.input["event"]["type"] == "m.room.message"
            and prev.outcome == "accepted"
            and set(late.input["event"]["auth_events"]) <= set(ids[:i])
        ):
            return prev, late, generated[:i]
    pytest.fail("the generated traffic has no such pair of events")


def cli_env(settings: Settings) -> dict[str, str]:
    return {
        "KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers,
        "ROOMSERVER_INPUT_TOPIC": settings.input_topic,
        "ROOMSERVER_DEAD_LETTER_TOPIC": settings.dead_letter_topic,
    }


async def test_a_dead_letter_is_listed_shown_and_replayed_once_its_cause_is_fixed(
    kafka_bootstrap_servers: str,
    database_url: str,
    new_topic: NewTopicFactory,
    caplog: pytest.LogCaptureFixture,
) -> None:
    settings = service_settings(kafka_bootstrap_servers, database_url, new_topic(1), 1)
    prev, late, setup = _late_event()
    encode = msgspec.json.encode
    late_line = encode(late.input)

    lines = [encode(g.input) for g in setup] + [late_line]
    await commands.produce(settings, io.BytesIO(b"\n".join(lines) + b"\n"))
    with caplog.at_level(logging.WARNING, logger="processor.stream.service"):
        await run_to_end(settings)
    assert (
        f"partition 0 offset {len(setup)}: dead-lettered (missing_prev_events): "
        f"prev events not stored: {prev.event_id}"
    ) in caplog.messages

    env = cli_env(settings)
    listed = roomserver("dlq", "list", env=env)
    assert listed.stdout.decode().splitlines() == [
        f"0:0  missing_prev_events  {settings.input_topic}[0]@{len(setup)}  "
        f"prev events not stored: {prev.event_id}"
    ]
    assert f"1 dead letters in {settings.dead_letter_topic} (missing_prev_events: 1)" in (
        listed.stderr.decode()
    )
    assert roomserver("dlq", "list", "--reason", "malformed", env=env).stdout == b""

    (shown,) = roomserver("dlq", "show", "0:0", env=env).stdout.decode().splitlines()
    record = json.loads(shown)
    assert (record["id"], record["reason"], record["topic"], record["partition"],
            record["offset"]) == ("0:0", "missing_prev_events", settings.input_topic, 0,
                                  len(setup))
    assert base64.b64decode(record["original"]) == late_line
    assert record["original_text"] == late_line.decode()
    assert roomserver("dlq", "show", "0:0", "--original", env=env).stdout == late_line + b"\n"

    missing = roomserver("dlq", "show", "0:7", env=env, check=False)
    assert missing.returncode == 2
    assert "no dead letter at 0:7" in missing.stderr.decode()

    # The cause is fixed: the prev event arrives. Then the dead letter is replayed.
    await commands.produce(settings, io.BytesIO(encode(prev.input) + b"\n"))
    dry = roomserver(
        "dlq", "replay", "--reason", DeadLetterReason.MISSING_PREV_EVENTS.value, "--dry-run",
        env=env,
    )
    assert b"would replay 1 dead letters" in dry.stderr
    assert dry.stdout.startswith(b"0:0  missing_prev_events")
    assert await commands.input_end_offsets(settings) == {0: len(setup) + 2}
    replayed = roomserver("dlq", "replay", "--offset", "0:0", env=env)
    assert f"replayed 1 dead letters to {settings.input_topic}".encode() in replayed.stderr
    await run_to_end(settings)

    inputs = await read_topic(kafka_bootstrap_servers, settings.input_topic, 1)
    assert inputs[-1].value == late_line
    assert (b"roomserver-replay-of", f"{settings.dead_letter_topic}:0:0".encode()) in [
        (k.encode(), v) for k, v in inputs[-1].headers
    ]
    outputs = [
        msgspec.json.decode(r.value or b"")
        for r in await read_topic(kafka_bootstrap_servers, settings.output_topic, 1)
    ]
    published = [o["event"] for o in outputs]
    assert published[-2:] == [prev.input["event"], late.input["event"]]
    # Nothing new was dead-lettered: the replayed input was accepted.
    assert len(await read_topic(kafka_bootstrap_servers, settings.dead_letter_topic, 1)) == 1


def test_bad_dead_letter_ids_reasons_and_topics_are_one_line_errors(
    kafka_bootstrap_servers: str, new_topic: NewTopicFactory
) -> None:
    prefix = new_topic(1)
    env = {
        "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap_servers,
        "ROOMSERVER_DEAD_LETTER_TOPIC": f"{prefix}.missing-dlq",
    }
    for args, message, status in (
        (["replay", "--offset", "zero"], "expected PARTITION:OFFSET", 2),
        (["replay", "--reason", "gremlins"], "unknown dead-letter reason 'gremlins'", 2),
        (["list"], f"topic {prefix}.missing-dlq does not exist", 2),
    ):
        proc = roomserver("dlq", *args, env=env, check=False)
        stderr = proc.stderr.decode()
        assert proc.returncode == status, stderr
        assert message in stderr
        assert len(stderr.strip().splitlines()) == 1, stderr
