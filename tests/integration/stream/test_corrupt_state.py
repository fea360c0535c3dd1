"""A corrupt database stops `roomserver run`: `CorruptState` is never retried
(it would fail the same way forever) nor dead-lettered (the database would carry on
disagreeing with the input topic).

The real service runs as a child process on the real broker and PostgreSQL. It processes a
room and stops; the test then points every state snapshot at a state block that does not
exist and produces more events of the room. The restarted service (cold caches) must read a
snapshot for the first of them, log one clear ERROR line and exit with status 3, without
storing the input offset past that event, dead-lettering it or publishing anything for it.
Every wait is on something observable (the stored offsets, the outbox, the process's exit),
bounded by a timeout.
"""

from __future__ import annotations

import asyncio
import dataclasses
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import msgspec
import psycopg
import pytest

from processor.config import Settings
from tests.fault.exactly_once import produce_by_room, read_topic, traffic_jsonl
from tests.fault.scenario import Progress
from tests.fault.service_process import WAIT_S, ServiceProcess, wait_for
from tests.fixtures.kafka import NewTopicFactory

PARTITIONS = 3


@pytest.fixture
def processes() -> Iterator[list[ServiceProcess]]:
    """Every child the test starts; any still running at the end is killed."""
    started: list[ServiceProcess] = []
    yield started
    for proc in started:
        proc.close()


def _split(lines: list[bytes], later: int) -> tuple[list[bytes], list[bytes]]:
    """The input before and after the corruption: the later part starts with a `new` event
    (an outlier is stored without state, so it would read no snapshot)."""
    cut = len(lines) - later
    while msgspec.json.decode(lines[cut]).get("kind", "new") != "new":
        cut -= 1
    return lines[:cut], lines[cut:]


def _stored_offsets(database_url: str, topic: str) -> dict[int, int]:
    with psycopg.connect(database_url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT partition, next_offset FROM input_offsets WHERE topic = %s", (topic,)
        ).fetchall()
    return {int(p): int(o) for p, o in rows}


def _corrupt_every_snapshot(database_url: str) -> int:
    """Point every state snapshot at one state block NID that no block has: the dangling
    reference a lost or half-restored `state_blocks` table leaves. The number of snapshots."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        cursor = conn.execute(
            "UPDATE state_snapshots SET block_nids = ARRAY["
            "(SELECT coalesce(max(state_block_nid), 0) + 1000 FROM state_blocks)]::bigint[]"
        )
        return cursor.rowcount


def _count(bootstrap: str, topic: str) -> int:
    return len(asyncio.run(read_topic(bootstrap, topic, PARTITIONS)))


def test_a_corrupt_snapshot_stops_the_service(
    kafka_bootstrap_servers: str,
    database_url: str,
    new_topic: NewTopicFactory,
    tmp_path: Path,
    processes: list[ServiceProcess],
) -> None:
    lines = traffic_jsonl(rooms=1, events=60, version="10", seed=13)
    before, after = _split(lines, later=10)
    settings = Settings(
        kafka_bootstrap_servers=kafka_bootstrap_servers,
        input_topic=new_topic(PARTITIONS, retention_ms="-1"),
        output_topic=new_topic(PARTITIONS),
        dead_letter_topic=new_topic(PARTITIONS),
        input_partitions=PARTITIONS,
        database_url=database_url,
        batch_size=20,
    )
    settings = dataclasses.replace(settings, consumer_group=f"{settings.input_topic}.group")
    bootstrap = settings.kafka_bootstrap_servers
    asyncio.run(produce_by_room(bootstrap, settings.input_topic, before))

    progress = Progress(database_url, settings.input_topic)
    try:
        first = ServiceProcess(settings, tmp_path / "run-1.log")
        processes.append(first)
        wait_for(lambda: progress.done(len(before)), first, "the room processed and relayed")
        assert first.terminate(WAIT_S) == 0, first.log()
    finally:
        progress.close()
    offsets = _stored_offsets(database_url, settings.input_topic)
    # One room: one partition holds all of it.
    ((partition, next_offset),) = [(p, o) for p, o in offsets.items() if o]
    assert next_offset == len(before)
    outputs = _count(bootstrap, settings.output_topic)
    assert outputs > 0
    assert _count(bootstrap, settings.dead_letter_topic) == 0

    assert _corrupt_every_snapshot(database_url) > 0
    asyncio.run(produce_by_room(bootstrap, settings.input_topic, after))

    # A new process: its caches are cold, so the first new event's state is read from the
    # corrupt snapshots. (A new group: the offsets live in the database anyway.)
    second = ServiceProcess(
        dataclasses.replace(settings, consumer_group=f"{settings.consumer_group}.2"),
        tmp_path / "run-2.log",
    )
    processes.append(second)
    try:
        status = second.wait(WAIT_S)
    except subprocess.TimeoutExpired:
        pytest.fail(f"the service is still running {WAIT_S} s after the corruption "
                    f"(retrying it?):\n{second.log()}")
    log = second.log(last=100_000)
    assert status == 3, log

    corrupt = re.compile(
        rf"ERROR processor\.stream\.service: partition {partition}: the database is corrupt "
        rf"\(state snapshot \d+ names state blocks that do not exist: \[\d+\]\) while "
        rf"processing offsets {next_offset}-\d+; stopping: restore from backup or rebuild$",
        re.MULTILINE,
    )
    assert len(corrupt.findall(log)) == 1, log  # once: not retried
    assert "Traceback" not in log, log
    assert log.rstrip("\n").splitlines()[-1].startswith(
        "roomserver run: the database is corrupt: state snapshot "
    ), log

    # Nothing past the event was committed, dead-lettered or published.
    assert _stored_offsets(database_url, settings.input_topic) == offsets
    assert _count(bootstrap, settings.dead_letter_topic) == 0
    assert _count(bootstrap, settings.output_topic) == outputs
