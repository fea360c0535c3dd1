"""`roomserver rebuild` on the real broker and database (docs/architecture.md §1: the input topic
is the
source of truth; replaying it from offset 0 into an empty database rebuilds the same state).

A normal run processes generated traffic (every room version, forks, rejections, soft
failures, one malformed record); a rebuild then replays the input topic into a second,
empty database. The rebuilt database must hold the same state at every event of every room,
and the outputs it publishes to a new topic must equal the original ones, room by room.
"""

from __future__ import annotations

import asyncio
import dataclasses
import io
from pathlib import Path
from typing import Any

import pytest

from processor.config import Settings
from processor.errors import ConfigError
from processor.generate import generate
from processor.generate.traffic import write_jsonl
from processor.ingest import ingest, read_lines
from processor.room_state import room_state_lines
from processor.storage import open_store
from processor.stream import commands, rebuild
from schemas.codecs import decode_dead_letter
from tests.fixtures.kafka import NewTopicFactory
from tests.integration.stream.topic_reader import (
    outputs_by_room,
    read_topic,
    run_to_end,
    service_settings,
)

MALFORMED = b'{"kind": "new", "event": not json'


def _traffic() -> bytes:
    text = io.StringIO()
    write_jsonl(generate(rooms=8, events=1200, room_version="mixed", seed=21), text)
    lines = text.getvalue().encode().splitlines()
    lines.insert(600, MALFORMED)  # dead-lettered in the run and in the rebuild alike
    return b"\n".join(lines) + b"\n"


async def _values(settings: Settings, topic: str) -> list[bytes]:
    records = await read_topic(settings.kafka_bootstrap_servers, topic, settings.input_partitions)
    return [r.value or b"" for r in records]


def _state_at_every_event(database_url: str, room_ids: list[str]) -> dict[str, Any]:
    store = open_store(database_url)
    try:
        return {
            room_id: list(
                room_state_lines(store, room_id, at=None, before=False, all_events=True)
            )
            for room_id in room_ids
        }
    finally:
        store.close()


async def test_rebuild_reaches_the_same_state_and_outputs(
    kafka_bootstrap_servers: str,
    database_url: str,
    second_database: str,
    new_topic: NewTopicFactory,
) -> None:
    prefix = new_topic(1)  # a unique name; the service creates its topics from it
    settings = service_settings(
        kafka_bootstrap_servers, database_url, prefix, 3,
        batch_size=100,
    )
    data = _traffic()
    produced = await commands.produce(settings, io.BytesIO(data))
    assert produced == 1201

    # The original run, until it has processed everything produced (and relayed it all).
    ends = await commands.input_end_offsets(settings)
    assert sum(ends.values()) == 1201
    await run_to_end(settings)
    original = outputs_by_room(
        await _values(settings, settings.output_topic)
    )
    assert len(original) == 8
    (original_dead,) = map(
        decode_dead_letter, await _values(settings, settings.dead_letter_topic)
    )

    # The rebuild, into an empty database, publishing to a new topic.
    rebuilt_topic = f"{prefix}.rebuilt"
    summary = await rebuild.rebuild_database(
        dataclasses.replace(settings, database_url=second_database), rebuilt_topic
    )
    assert summary.events == 1201
    assert summary.dead_letters == 1
    rebuilt = outputs_by_room(
        await _values(settings, rebuilt_topic)
    )
    assert rebuilt == original
    # The rebuild's dead letters go beside its outputs, never into the live DLQ again.
    (rebuilt_dead,) = map(decode_dead_letter, await _values(settings, f"{rebuilt_topic}.dlq"))
    assert rebuilt_dead == original_dead
    assert rebuilt_dead.original_bytes() == MALFORMED
    assert len(await _values(settings, settings.dead_letter_topic)) == 1

    room_ids = sorted(original)
    expected = _state_at_every_event(database_url, room_ids)
    assert sum(len(lines) for lines in expected.values()) == 1200
    assert _state_at_every_event(second_database, room_ids) == expected


async def test_rebuild_without_output_topic_publishes_nothing(
    kafka_bootstrap_servers: str,
    database_url: str,
    second_database: str,
    new_topic: NewTopicFactory,
) -> None:
    prefix = new_topic(1)
    settings = service_settings(
        kafka_bootstrap_servers, database_url, prefix, 2,
        batch_size=50,
    )
    text = io.StringIO()
    write_jsonl(generate(rooms=3, events=300, room_version="10", seed=4), text)
    await commands.produce(settings, io.BytesIO(text.getvalue().encode()))
    ends = await commands.input_end_offsets(settings)
    await run_to_end(settings)
    outputs = await _values(settings, settings.output_topic)

    summary = await rebuild.rebuild_database(
        dataclasses.replace(settings, database_url=second_database), None
    )
    assert summary.events == 300
    # Nothing new on the live topics, nothing left in the rebuilt database's outbox.
    assert await _values(settings, settings.output_topic) == outputs
    assert await _values(settings, settings.dead_letter_topic) == []
    store = open_store(second_database)
    try:
        with store.batch() as batch:
            assert all(batch.select_outbox(p, 10) == [] for p in ends)
    finally:
        store.close()
    room_ids = sorted(outputs_by_room(outputs))
    assert _state_at_every_event(second_database, room_ids) == _state_at_every_event(
        database_url, room_ids
    )


async def test_rebuild_refuses_a_database_that_is_not_empty(
    kafka_bootstrap_servers: str, database_url: str, new_topic: NewTopicFactory
) -> None:
    prefix = new_topic(1)
    settings = service_settings(
        kafka_bootstrap_servers, database_url, prefix, 1,
    )
    text = io.StringIO()
    write_jsonl(generate(rooms=1, events=20, room_version="10", seed=1), text)
    await commands.produce(settings, io.BytesIO(text.getvalue().encode()))
    await run_to_end(settings)

    with pytest.raises(ConfigError, match=r"is not empty: it has processed .* up to offsets"):
        await rebuild.rebuild_database(settings, f"{prefix}.rebuilt")
    with pytest.raises(ConfigError, match="is a live topic"):
        await rebuild.rebuild_database(settings, settings.output_topic)


def test_rebuild_of_a_missing_topic_is_a_configuration_error(
    kafka_bootstrap_servers: str, database_url: str, new_topic: NewTopicFactory
) -> None:
    settings = Settings(
        kafka_bootstrap_servers=kafka_bootstrap_servers,
        input_topic=f"{new_topic(1)}.missing",
        database_url=database_url,
    )
    with pytest.raises(ConfigError, match="does not exist"):
        asyncio.run(rebuild.rebuild_database(settings, None))


async def test_a_rebuilt_database_publishes_its_first_outputs(
    kafka_bootstrap_servers: str,
    database_url: str,
    second_database: str,
    new_topic: NewTopicFactory,
    tmp_path: Path,
) -> None:
    """Switching the service to a rebuilt database (README, "Rebuilding into a new
    database"): its outbox starts numbering below the last `roomserver-seq` the output topic
    holds, and the relay forgets rows at or below it as already published. The service
    numbers past it at start, so the outputs of what arrives after the switch are
    published, after the old ones, in `seq` order."""
    prefix = new_topic(1)
    settings = service_settings(
        kafka_bootstrap_servers, database_url, prefix, 2,
        batch_size=50,
    )
    before_switch = io.StringIO()
    write_jsonl(generate(rooms=3, events=300, room_version="10", seed=4), before_switch)
    await commands.produce(settings, io.BytesIO(before_switch.getvalue().encode()))
    await run_to_end(settings)
    published = len(await _values(settings, settings.output_topic))
    summary = await rebuild.rebuild_database(
        dataclasses.replace(settings, database_url=second_database), None
    )
    assert summary.events == 300

    # New rooms after the switch: their outputs are the same as `ingest` gives them alone.
    after_switch = io.StringIO()
    write_jsonl(generate(rooms=2, events=120, room_version="10", seed=77), after_switch)
    data = after_switch.getvalue().encode()
    reference = open_store(str(tmp_path / "reference.db"))
    reference_out = io.BytesIO()
    try:
        ingest(reference, read_lines(io.BytesIO(data)), output=reference_out)
    finally:
        reference.close()
    expected = outputs_by_room(reference_out.getvalue().splitlines())
    await commands.produce(settings, io.BytesIO(data))
    await run_to_end(dataclasses.replace(settings, database_url=second_database))

    records = await read_topic(
        settings.kafka_bootstrap_servers, settings.output_topic, settings.input_partitions
    )
    after = outputs_by_room(r.value or b"" for r in records)
    assert {room: after.get(room) for room in expected} == expected
    assert len(records) == published + sum(map(len, expected.values()))
    for partition in range(settings.input_partitions):
        seqs = [
            int(dict(r.headers)["roomserver-seq"]) for r in records if r.partition == partition
        ]
        assert seqs == sorted(set(seqs)), f"partition {partition}: seq not increasing"
    store = open_store(second_database)
    try:
        with store.batch() as batch:
            assert all(batch.select_outbox(p, 10) == [] for p in range(2))
    finally:
        store.close()


async def test_rebuild_in_two_processes_reaches_the_same_state(
    kafka_bootstrap_servers: str,
    database_url: str,
    second_database: str,
    new_topic: NewTopicFactory,
) -> None:
    """`rebuild --processes 2`: the partitions split over two worker processes, each with its
    own database connections, give the same state at every event of every room, and the
    same outputs per room, as one process."""
    prefix = new_topic(1)
    settings = service_settings(
        kafka_bootstrap_servers, database_url, prefix, 3,
        batch_size=100,
    )
    produced = await commands.produce(settings, io.BytesIO(_traffic()))
    assert produced == 1201

    one = await rebuild.rebuild_database(settings, f"{prefix}.one")
    two = await rebuild.rebuild_database(
        dataclasses.replace(settings, database_url=second_database), f"{prefix}.two",
        processes=2,
    )
    assert (one.processes, two.processes) == (1, 2)
    assert (two.events, two.dead_letters) == (one.events, one.dead_letters) == (1201, 1)
    outputs = outputs_by_room(await _values(settings, f"{prefix}.one"))
    assert len(outputs) == 8
    assert outputs_by_room(await _values(settings, f"{prefix}.two")) == outputs
    room_ids = sorted(outputs)
    expected = _state_at_every_event(database_url, room_ids)
    assert sum(len(lines) for lines in expected.values()) == 1200
    assert _state_at_every_event(second_database, room_ids) == expected
