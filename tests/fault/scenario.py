"""The scenario of a fault test: generated input (with bad inputs in the middle) on fresh
topics and a fresh database, its clean run, and the progress the service has committed."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable
from pathlib import Path

import psycopg
from psycopg import errors

from processor.config import Settings
from processor.storage import open_store
from tests.fault.exactly_once import (
    Reference,
    check_dead_letters,
    check_outputs,
    check_same_state,
    clean_run,
    malformed_inputs,
    produce_by_room,
    read_topic,
    room_ids,
    traffic_jsonl,
)
from tests.fixtures.kafka import NewTopicFactory


class Progress:
    """What the service has committed, read from its database."""

    APPLICATION_NAME = "roomserver-test-progress"

    def __init__(self, database_url: str, input_topic: str) -> None:
        self._conn = psycopg.connect(
            database_url, autocommit=True, application_name=self.APPLICATION_NAME
        )
        self._topic = input_topic

    def close(self) -> None:
        self._conn.close()

    def processed(self) -> int:
        """Input messages committed: the sum of the stored next offsets."""
        try:
            row = self._conn.execute(
                "SELECT coalesce(sum(next_offset), 0) FROM input_offsets WHERE topic = %s",
                (self._topic,),
            ).fetchone()
        except errors.UndefinedTable:
            return 0  # not migrated yet
        return int(row[0]) if row else 0

    def reached(self, offsets: int) -> Callable[[], bool]:
        return lambda: self.processed() >= offsets

    def outbox(self) -> int:
        """Outputs committed but not yet acknowledged by Kafka."""
        try:
            row = self._conn.execute("SELECT count(*) FROM outbox").fetchone()
        except errors.UndefinedTable:
            return 0
        return int(row[0]) if row else 0

    def done(self, total: int) -> bool:
        return self.processed() >= total and self.outbox() == 0


@dataclasses.dataclass
class Scenario:
    settings: Settings
    inputs: list[bytes]
    bad_inputs: list[bytes]
    rooms: set[str]
    reference: Reference

    def check(self) -> None:
        """Exactly once on both topics, and the clean run's state in the database."""
        s = self.settings
        bootstrap, partitions = s.kafka_bootstrap_servers, s.input_partitions
        outputs = asyncio.run(read_topic(bootstrap, s.output_topic, partitions))
        check_outputs(outputs, self.reference.outputs)
        dead = asyncio.run(read_topic(bootstrap, s.dead_letter_topic, partitions))
        check_dead_letters(dead, self.bad_inputs)
        store = open_store(s.database_url)
        try:
            check_same_state(store, self.reference.store, self.rooms)
        finally:
            store.close()


def make_scenario(
    bootstrap: str,
    database_url: str,
    new_topic: NewTopicFactory,
    tmp_path: Path,
    *,
    rooms: int,
    events: int,
    seed: int,
    batch_size: int,
    produce: bool = True,
) -> Scenario:
    good = traffic_jsonl(rooms=rooms, events=events, version="10", seed=seed)
    ids = room_ids(good)
    bad = malformed_inputs(ids)
    # Bad inputs in the middle of the stream: they must not block the rooms behind them.
    middle = len(good) // 2
    inputs = good[:middle] + bad + good[middle:]
    settings = Settings(
        kafka_bootstrap_servers=bootstrap,
        input_topic=new_topic(3, retention_ms="-1"),
        output_topic=new_topic(3),
        dead_letter_topic=new_topic(3),
        input_partitions=3,
        database_url=database_url,
        batch_size=batch_size,
    )
    settings = dataclasses.replace(settings, consumer_group=f"{settings.input_topic}.group")
    if produce:
        asyncio.run(produce_by_room(bootstrap, settings.input_topic, inputs))
    return Scenario(settings, inputs, bad, ids, clean_run(inputs, tmp_path / "reference.db"))
