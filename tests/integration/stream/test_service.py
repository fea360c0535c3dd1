"""`roomserver run` on the real broker and database: generated rooms through the topics.

The same input through `ingest` (SQLite, no Kafka) is the reference: the service must emit
the same outputs per room, in order, once each, and reach the same state; a consumer that
applies the outputs' state deltas ends with the roomserver's current state.
"""

from __future__ import annotations

import asyncio
import io
import json
from pathlib import Path

from aiokafka import AIOKafkaConsumer

from processor.config import Settings
from processor.generate import generate
from processor.generate.traffic import write_jsonl
from processor.ingest import ingest, read_lines
from processor.room_state import room_state_lines
from processor.storage import open_store
from processor.stream import commands
from processor.stream.service import RoomserverService
from tests.fixtures.kafka import NewTopicFactory
from tests.integration.stream.topic_reader import outputs_by_room, service_settings


def _traffic_jsonl(rooms: int, events: int, version: str, seed: int) -> bytes:
    text = io.StringIO()
    write_jsonl(generate(rooms=rooms, events=events, room_version=version, seed=seed), text)
    return text.getvalue().encode()


async def _read_outputs(settings: Settings, count: int) -> list[bytes]:
    consumer = AIOKafkaConsumer(
        settings.output_topic,
        bootstrap_servers=settings.kafka_bootstrap_servers,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        isolation_level="read_committed",
        # The service creates the output topic; see it as soon as it exists.
        metadata_max_age_ms=500,
    )
    got: list[bytes] = []
    try:
        await consumer.start()
        async for record in consumer:
            got.append(record.value or b"")
            if len(got) >= count:
                break
    finally:
        await consumer.stop()
    return got


async def test_run_matches_ingest(
    kafka_bootstrap_servers: str,
    database_url: str,
    new_topic: NewTopicFactory,
    tmp_path: Path,
) -> None:
    data = _traffic_jsonl(rooms=4, events=600, version="10", seed=11)

    reference_store = open_store(str(tmp_path / "reference.db"))
    reference_out = io.BytesIO()
    ingest(reference_store, read_lines(io.BytesIO(data)), output=reference_out)
    expected = reference_out.getvalue().splitlines()

    prefix = new_topic(1)  # a unique name; the service creates its own topics from it
    settings = service_settings(
        kafka_bootstrap_servers, database_url, prefix, 3,
        batch_size=100,
    )
    service = RoomserverService(settings)
    running = asyncio.create_task(service.run())
    try:
        produced = await commands.produce(settings, io.BytesIO(data))
        assert produced == 600
        reading = asyncio.create_task(_read_outputs(settings, len(expected)))
        # The service failing ends the wait too, with its own exception.
        done, _ = await asyncio.wait(
            [reading, running], timeout=120, return_when=asyncio.FIRST_COMPLETED
        )
        assert reading in done, "no complete output within 120 s"
        outputs = reading.result()
    finally:
        service.stop()
        await running

    assert outputs_by_room(outputs) == outputs_by_room(expected)
    # No extra outputs after the expected ones: the relay sent each exactly once.
    store = open_store(database_url)
    try:
        with store.batch() as batch:
            assert batch.select_outbox(0, 10) == []
        for room_id in outputs_by_room(expected):
            assert list(room_state_lines(store, room_id, at=None, before=False,
                                         all_events=False)) == list(
                room_state_lines(reference_store, room_id, at=None, before=False,
                                 all_events=False)
            )
    finally:
        store.close()
        reference_store.close()


def test_state_deltas_rebuild_the_current_state(tmp_path: Path) -> None:
    """A consumer applying removes then adds ends with the roomserver's current state."""
    data = _traffic_jsonl(rooms=3, events=500, version="11", seed=5)
    store = open_store(str(tmp_path / "rs.db"))
    out = io.BytesIO()
    try:
        ingest(store, read_lines(io.BytesIO(data)), output=out)
        for room_id, messages in outputs_by_room(out.getvalue().splitlines()).items():
            state: set[str] = set()
            positions = [m["stream_position"] for m in messages]
            assert positions == list(range(1, len(positions) + 1))
            for message in messages:
                if message["type"] == "new_room_event":
                    state.difference_update(message["removes_state_event_ids"])
                    state.update(message["adds_state_event_ids"])
            (current,) = room_state_lines(store, room_id, at=None, before=False,
                                          all_events=False)
            assert state == {entry[2] for entry in current["state"]}
            json.dumps(current)
    finally:
        store.close()
