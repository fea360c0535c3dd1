"""`roomserver rebuild`: replay the input topic from offset 0 into an empty database, then
stop — in one process, or with `--processes N`, the partitions split by input size over
worker processes, each with its own connections (the same result either way)."""

from __future__ import annotations

import asyncio
import dataclasses
import sys
import time
import uuid
from dataclasses import dataclass

from processor.config import Settings, redacted_url
from processor.core.decision import Outcome
from processor.errors import ConfigError
from processor.storage import open_store
from processor.stream.commands import check_database, input_end_offsets
from processor.stream.connect import kafka_failures_in_one_line
from processor.stream.service import RoomserverService


def check_empty_database(database_url: str, input_topic: str, partitions: list[int]) -> None:
    """Raise `ConfigError` unless the database holds no input offsets for `input_topic`.

    A rebuild replays from offset 0; into a database that already processed some of the
    topic it would resume half way instead (offsets are sought from the database).
    """
    store = open_store(database_url)
    try:
        store.migrate()
        with store.batch() as batch:
            used = {
                p: offset
                for p in partitions
                if (offset := batch.select_input_offset(input_topic, p))
            }
    finally:
        store.close()
    if used:
        raise ConfigError(
            f"database {redacted_url(database_url)} is not empty: it has processed "
            f"{input_topic} up to offsets {used}; rebuild into a new, empty database"
        )


#: Input messages per transaction in a rebuild, at least: a replay has no latency to keep
#: low, and each batch costs a few round trips per room it touches, so bigger is faster.
REBUILD_BATCH_SIZE = 2000


@dataclass(frozen=True, slots=True)
class RebuildSummary:
    events: int
    dead_letters: int
    seconds: float
    #: CPU time of the roomserver processes that replayed (not the broker's or PostgreSQL's).
    cpu_seconds: float = 0.0
    processes: int = 1

    @property
    def events_per_second(self) -> float:
        return self.events / self.seconds if self.seconds else 0.0

    @property
    def cpu_us_per_event(self) -> float:
        return self.cpu_seconds / self.events * 1e6 if self.events else 0.0


def split_partitions(ends: dict[int, int], processes: int) -> list[list[int]]:
    """The partitions in at most `processes` shares of about equal input: the largest
    partition first, each to the share with the least input so far."""
    shares: list[tuple[int, list[int]]] = [(0, []) for _ in range(min(processes, len(ends)))]
    for partition in sorted(ends, key=lambda p: (-ends[p], p)):
        index = min(range(len(shares)), key=lambda i: (shares[i][0], i))
        size, members = shares[index]
        shares[index] = (size + ends[partition], [*members, partition])
    return [sorted(members) for _, members in shares if members]


@dataclass(frozen=True, slots=True)
class _ShareResult:
    events: int
    dead_letters: int
    cpu_seconds: float


def _rebuild_share(
    settings: Settings,
    output_enabled: bool,
    group_id: str,
    partitions: list[int],
    stop_at: dict[int, int],
    verbose: bool,
) -> _ShareResult:
    """A worker process of `rebuild --processes N`: replays `partitions` (its own database
    connections, relays and caches; one core's worth of Python)."""
    import logging

    from processor.gc_tuning import tune_for_throughput
    from processor.stream.log_levels import quiet_kafka_logs

    # A spawned process starts with Python's defaults: the same set-up as the CLI's.
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    quiet_kafka_logs(verbose)
    tune_for_throughput()
    started = time.process_time()
    service = _rebuild_service(settings, output_enabled, group_id, partitions, stop_at)
    asyncio.run(service.run())
    return _ShareResult(
        service.processed, _dead_letters(service), time.process_time() - started
    )


def _rebuild_service(
    settings: Settings,
    output_enabled: bool,
    group_id: str,
    partitions: list[int],
    stop_at: dict[int, int],
) -> RoomserverService:
    return RoomserverService(
        settings,
        group_id=group_id,
        output_enabled=output_enabled,
        stop_at=stop_at,
        static_membership=False,
        partitions=partitions,
    )


def _dead_letters(service: RoomserverService) -> int:
    dead = service.metrics.registry.get_sample_value(
        "roomserver_events_total", {"outcome": Outcome.DEAD_LETTERED.value}
    )
    return int(dead or 0)


async def rebuild_database(
    settings: Settings,
    output_topic: str | None,
    *,
    dead_letter_topic: str | None = None,
    progress: bool | None = None,
    batch_size: int | None = None,
    processes: int = 1,
) -> RebuildSummary:
    """Replay the input topic from offset 0 into the empty database `settings.database_url`.

    Stops once every partition has reached the end offset it had when the rebuild started.
    Uses a consumer group of its own, so the running service is not disturbed. With
    `output_topic`, outputs are published there and dead letters to `dead_letter_topic`
    (default `<output_topic>.dlq`): never to the live topics, which already hold them. With
    none, nothing is published (stream positions still advance exactly as in the original
    run). `progress`: a progress bar with ETA on standard error (default: when it is a TTY).
    `batch_size`: input messages per transaction (default: `settings.batch_size`, at least
    `REBUILD_BATCH_SIZE`); the rebuilt state does not depend on it. `processes`: worker
    processes, each replaying its share of the partitions with its own database connections
    (one process uses about one core: the GIL); rooms never span partitions, so the rebuilt
    state is the same whatever the split.
    """
    if processes < 1:
        raise ConfigError(f"--processes must be at least 1, not {processes}")
    if output_topic in (settings.input_topic, settings.output_topic):
        raise ConfigError(
            f"rebuild output topic {output_topic} is a live topic of the service: choose a "
            "new one (or none), or every output would appear twice"
        )
    await asyncio.to_thread(check_database, settings.database_url)
    ends = await input_end_offsets(settings)
    await asyncio.to_thread(
        check_empty_database, settings.database_url, settings.input_topic, sorted(ends)
    )
    settings = dataclasses.replace(
        settings, batch_size=batch_size or max(settings.batch_size, REBUILD_BATCH_SIZE)
    )
    if output_topic:
        settings = dataclasses.replace(
            settings,
            output_topic=output_topic,
            dead_letter_topic=dead_letter_topic or f"{output_topic}.dlq",
        )
    group_id = f"{settings.consumer_group}.rebuild.{uuid.uuid4().hex[:12]}"
    output_enabled = output_topic is not None
    # The partitions are assigned, not shared by the group: no rebalance ever moves one, and
    # the replay starts without waiting for a group to form.
    shares = split_partitions(ends, processes)
    if len(shares) > 1:
        return await _rebuild_in_processes(settings, output_enabled, group_id, shares, ends)
    service = _rebuild_service(settings, output_enabled, group_id, sorted(ends), ends)
    total = sum(ends.values())
    show = sys.stderr.isatty() if progress is None else progress
    started = time.perf_counter()
    cpu_started = time.process_time()
    reporter = asyncio.create_task(_show_progress(service, total)) if show else None
    try:
        await service.run()
    finally:
        if reporter is not None:
            reporter.cancel()
            await asyncio.gather(reporter, return_exceptions=True)
    return RebuildSummary(
        service.processed,
        _dead_letters(service),
        time.perf_counter() - started,
        time.process_time() - cpu_started,
    )


async def _rebuild_in_processes(
    settings: Settings,
    output_enabled: bool,
    group_id: str,
    shares: list[list[int]],
    ends: dict[int, int],
) -> RebuildSummary:
    import logging
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    verbose = logging.getLogger().isEnabledFor(logging.DEBUG)
    loop = asyncio.get_running_loop()
    started = time.perf_counter()
    # spawn: a fork would copy this process's event loop and Kafka clients.
    with ProcessPoolExecutor(
        len(shares), mp_context=multiprocessing.get_context("spawn")
    ) as pool:
        results = await asyncio.gather(*(
            loop.run_in_executor(
                pool, _rebuild_share, settings, output_enabled, group_id, share,
                {p: ends[p] for p in share}, verbose,
            )
            for share in shares
        ))
    return RebuildSummary(
        sum(r.events for r in results),
        sum(r.dead_letters for r in results),
        time.perf_counter() - started,
        sum(r.cpu_seconds for r in results),
        len(shares),
    )


@kafka_failures_in_one_line
async def rebuild(
    settings: Settings,
    output_topic: str | None,
    dead_letter_topic: str | None = None,
    processes: int = 1,
) -> int:
    """`roomserver rebuild`: see `rebuild_database`."""
    summary = await rebuild_database(
        settings, output_topic, dead_letter_topic=dead_letter_topic, processes=processes
    )
    print(
        f"rebuilt {summary.events} input events in {summary.seconds:.1f} s "
        f"({summary.events_per_second:,.0f} events/s, {summary.cpu_us_per_event:,.0f} µs CPU "
        f"per event in {summary.processes} process{'es' if summary.processes > 1 else ''}; "
        f"{summary.dead_letters} dead-lettered)",
        file=sys.stderr,
    )
    return 0


async def _show_progress(service: RoomserverService, total: int) -> None:
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TaskProgressColumn,
        TextColumn,
        TimeRemainingColumn,
    )

    with Progress(
        TextColumn("rebuild"),
        BarColumn(),
        MofNCompleteColumn(),
        TaskProgressColumn(),
        TimeRemainingColumn(),
        transient=False,
    ) as bar:
        task = bar.add_task("rebuild", total=total)
        while True:  # a display refresh until cancelled, not synchronisation
            bar.update(task, completed=service.processed)
            await asyncio.sleep(0.25)
