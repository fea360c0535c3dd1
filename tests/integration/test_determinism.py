"""Determinism through the real services: the conformance rooms through `roomserver
run` (Kafka in, PostgreSQL) with an input topic of 1 and of 3 partitions, then through
`roomserver rebuild` into a fresh PostgreSQL database, give byte-identical
`roomserver state --all-events` output, after and `--before`, for every room, as `ingest`
into SQLite (`tests.conformance.dumps.baseline()`).

The twelve rooms are interleaved line by line and produced keyed by room ID, so partitions
and batches mix rooms, and on 3 partitions the rooms are processed in another order than the
file's. `run` is the real command line in a child process configured through the
environment, as deployed; the test waits until the database's stored input offsets reach
the topic's end offsets, then stops it with SIGTERM.
"""

from __future__ import annotations

import asyncio
import dataclasses
import io
import time
from pathlib import Path

import pytest

from processor.config import Settings
from processor.storage import open_store
from processor.stream import commands, rebuild
from tests.conformance.dumps import baseline, differences, dump, input_bytes, input_lines
from tests.fault.service_process import ServiceProcess
from tests.fixtures.kafka import NewTopicFactory
from tests.integration.stream.topic_reader import service_settings

#: A bound on the wait for the service to catch up, not a synchronisation.
CATCH_UP_TIMEOUT_S = 120.0
POLL_INTERVAL_S = 0.2


def _stored_offsets(settings: Settings, partitions: list[int]) -> dict[int, int]:
    """The next input offset the database has committed, per partition (0: none yet)."""
    store = open_store(settings.database_url)
    try:
        store.migrate()  # the service may not have created its tables yet
        with store.batch() as batch:
            return {
                p: batch.select_input_offset(settings.input_topic, p) or 0 for p in partitions
            }
    finally:
        store.close()


async def _run_until_caught_up(settings: Settings, ends: dict[int, int], log: Path) -> None:
    """`roomserver run` until its database has processed every partition up to `ends`."""
    service = ServiceProcess(settings, log)
    try:
        deadline = time.monotonic() + CATCH_UP_TIMEOUT_S
        while (stored := await asyncio.to_thread(_stored_offsets, settings, sorted(ends))) \
                != ends:
            code = service.exit_code()
            if code is not None:
                pytest.fail(f"roomserver run exited ({code}) before catching up:\n"
                            f"{service.log()}")
            if time.monotonic() > deadline:
                pytest.fail(f"roomserver run processed up to {stored} of {ends} within "
                            f"{CATCH_UP_TIMEOUT_S} s:\n{service.log()}")
            await asyncio.sleep(POLL_INTERVAL_S)  # polling interval of the condition above
        assert await asyncio.to_thread(service.terminate, 60) == 0, service.log()
    finally:
        service.close()


@pytest.mark.parametrize("partitions", [1, 3])
async def test_run_and_rebuild_match_ingest(
    partitions: int,
    kafka_bootstrap_servers: str,
    database_url: str,
    second_database: str,
    new_topic: NewTopicFactory,
    tmp_path: Path,
) -> None:
    reference = await asyncio.to_thread(baseline)  # before the service competes for the CPU
    prefix = new_topic(1)  # a unique name; `produce` creates the service's topics from it
    settings = service_settings(kafka_bootstrap_servers, database_url, prefix, partitions)
    assert await commands.produce(settings, io.BytesIO(input_bytes())) == len(input_lines())
    ends = await commands.input_end_offsets(settings)
    assert len(ends) == partitions and sum(ends.values()) == len(input_lines())
    if partitions > 1:
        assert all(ends.values()), f"a partition got no room: {ends}"

    await _run_until_caught_up(settings, ends, tmp_path / "run.log")
    found = differences(
        reference, await asyncio.to_thread(dump, database_url),
        f"run ({partitions} partition{'s' if partitions > 1 else ''})",
    )
    assert not found, found

    summary = await rebuild.rebuild_database(
        dataclasses.replace(settings, database_url=second_database), None, progress=False
    )
    assert summary.events == len(input_lines()) and summary.dead_letters == 0
    found = differences(
        reference, await asyncio.to_thread(dump, second_database),
        f"rebuild ({partitions} partition{'s' if partitions > 1 else ''})",
    )
    assert not found, found
