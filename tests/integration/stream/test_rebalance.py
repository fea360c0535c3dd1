"""Rebalance: a second `roomserver run` instance joins the consumer group mid-stream, later
the first one leaves; nothing is lost or duplicated (docs/architecture.md §5).

Both instances run in this process (two `RoomserverService` tasks, each with its own Kafka
clients and database pool) in one group. Input arrives in three phases so that each
membership — A alone, A and B, B alone — has work to do; the test waits on observable
conditions only: partitions assigned, offsets committed in the database, tasks ended.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Callable
from pathlib import Path

from processor.stream.service import RoomserverService
from tests.fault.exactly_once import produce_by_room
from tests.fault.scenario import Progress, make_scenario
from tests.fault.service_process import WAIT_S, ServiceProcess, wait_for
from tests.fixtures.kafka import NewTopicFactory


async def _until(
    condition: Callable[[], bool], what: str, services: list[asyncio.Task[None]]
) -> None:
    deadline = time.monotonic() + WAIT_S
    while not condition():
        for task in services:
            if task.done():
                raise AssertionError(f"a service ended while waiting for {what}: "
                                     f"{task.exception()!r}")
        assert time.monotonic() < deadline, f"no {what} within {WAIT_S} s"
        await asyncio.sleep(0.02)


async def test_instance_joins_then_leaves_exactly_once(
    kafka_bootstrap_servers: str,
    database_url: str,
    new_topic: NewTopicFactory,
    tmp_path: Path,
) -> None:
    scenario = await asyncio.to_thread(
        make_scenario, kafka_bootstrap_servers, database_url, new_topic, tmp_path,
        rooms=6, events=1500, seed=31, batch_size=20, produce=False,
    )
    settings = scenario.settings
    inputs = scenario.inputs
    phases = [inputs[:500], inputs[500:1000], inputs[1000:]]
    progress = Progress(database_url, settings.input_topic)

    def reached(n: int) -> Callable[[], bool]:
        return lambda: progress.processed() >= n

    async def produce(lines: list[bytes]) -> None:
        await produce_by_room(kafka_bootstrap_servers, settings.input_topic, lines)

    a, b = RoomserverService(settings), RoomserverService(settings)
    running_a = asyncio.create_task(a.run())
    running_b: asyncio.Task[None] | None = None
    try:
        await produce(phases[0])
        await _until(lambda: len(a.workers) == 3, "partitions assigned to A", [running_a])
        await _until(reached(200), "A's first commits", [running_a])

        # B joins while A is still working through phase 1.
        running_b = asyncio.create_task(b.run())
        await _until(
            lambda: bool(b.workers) and len(a.workers) + len(b.workers) == 3,
            "the partitions shared by A and B", [running_a, running_b],
        )
        b_before = b.processed
        a_before = a.processed
        await produce(phases[1])
        await _until(reached(1000), "phase 2 committed", [running_a, running_b])
        assert a.processed > a_before and b.processed > b_before, "both instances worked"

        # A leaves (gracefully: it finishes its batch, relays, leaves the group).
        a.stop()
        await asyncio.wait_for(running_a, WAIT_S)
        await _until(lambda: len(b.workers) == 3, "B owning every partition", [running_b])
        await produce(phases[2])
        await _until(lambda: progress.done(len(inputs)), "all input committed and relayed",
                     [running_b])
    finally:
        a.stop()
        b.stop()
        await asyncio.gather(running_a, *([running_b] if running_b else []),
                             return_exceptions=True)
        progress.close()
    await asyncio.to_thread(scenario.check)


def test_paused_instance_is_fenced_when_it_wakes_up(
    kafka_bootstrap_servers: str,
    database_url: str,
    new_topic: NewTopicFactory,
    tmp_path: Path,
) -> None:
    """A "zombie": instance A freezes (SIGSTOP) right after a commit, past its session
    timeout; the group gives its partitions to B, which carries on. When A wakes up it is
    still mid-batch or mid-relay and believes it owns the partitions: its database writes
    are fenced by the stored offsets, its relay by B's transactional producers. Nothing is
    lost or duplicated."""
    scenario = make_scenario(
        kafka_bootstrap_servers, database_url, new_topic, tmp_path,
        rooms=6, events=1500, seed=32, batch_size=20, produce=False,
    )
    # A may freeze inside a database transaction, holding locks B needs: PostgreSQL ends
    # such a session after idle_in_transaction_session_timeout (60 s by default in the
    # service; 2 s here, through libpq options in the URL, which the service keeps).
    settings = dataclasses.replace(
        scenario.settings,
        database_url=database_url
        + "?options=-c%20idle_in_transaction_session_timeout%3D2000",
    )
    inputs = scenario.inputs
    first, second = inputs[:900], inputs[900:]
    progress = Progress(database_url, settings.input_topic)
    a = ServiceProcess(settings, tmp_path / "a.log")
    b: ServiceProcess | None = None
    try:
        asyncio.run(produce_by_room(kafka_bootstrap_servers, settings.input_topic, first))
        wait_for(progress.reached(300), a, "A's first commits")
        a.pause()
        paused_at = progress.processed()
        b = ServiceProcess(settings, tmp_path / "b.log")
        # B gets the partitions once A's session has timed out, then carries on.
        wait_for(progress.reached(paused_at + 100), b, "B's commits after A froze")
        asyncio.run(produce_by_room(kafka_bootstrap_servers, settings.input_topic, second))
        wait_for(progress.reached(paused_at + 200), b, "B working on the second half")
        a.resume()
        # Both carry on after A rejoins the group: wait until the rest is done.
        wait_for(lambda: progress.done(len(inputs)), b, "all input committed and relayed")
        assert a.terminate(WAIT_S) == 0, a.log()
        assert b.terminate(WAIT_S) == 0, b.log()
    finally:
        progress.close()
        a.close()
        if b is not None:
            b.close()
    scenario.check()
