"""`roomserver run`: the Kafka consumer loop around the input handler.

One consumer in a consumer group reads the input topic. Each assigned partition has a
`PartitionWorker` with its own caches, outbox relay and task: the consume loop only fetches
and hands each partition's records to its worker's queue, so it keeps fetching while
batches run; each worker takes whatever its queue holds (up to the batch size: it never
waits for a batch to fill) and processes it in one database transaction, in a worker
thread, strictly in offset order. Partitions proceed independently: a slow one never holds
up the others. A queue that grows past `QUEUE_BATCHES` batches pauses its partition in the
consumer until the worker catches up (aiokafka then drops what it buffered for it and
fetches it again from the position after the queue's last record: nothing is skipped).

Exactly once (docs/architecture.md §5): the next input offset is stored in PostgreSQL in the
batch's own
transaction, with a compare-and-set on the offset the batch started from, so a stale owner
after a rebalance cannot apply a batch twice; on assignment the consumer seeks to the stored
offset (Kafka's committed offsets exist only for lag tooling); a batch that loses the
compare-and-set is dropped and the partition is read again from the stored offset, never
skipped. Outputs go to the outbox in that transaction and each partition's relay publishes
them in Kafka transactions that fence a previous owner (see `outbox_relay`); a relay that
finds itself fenced makes the consumer rejoin the group.

Failures: a batch whose database transaction fails (`StorageError`) is retried from its first
offset after `RETRY_SECONDS`; a relay pass that fails leaves its rows in the outbox and is
retried; a consumer that stops delivering while lag remains (`Health.stalled`) is replaced.
None of them stops the service. `CorruptState` (stored data breaks an invariant) does: it
would fail the same way on every retry, and dead-lettering the input would carry on from a
database that no longer agrees with the input topic. The batch rolls back (its input offsets
are not stored), one ERROR line names the partition, the offsets and what is corrupt, the
other partitions finish their batches in flight, and `roomserver run` exits with status 3
(see `processor.cli`). SIGTERM (`stop`) ends the loop after the batches in flight, relays
what they committed, and leaves the group.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

from processor.config import Settings
from processor.core.decision import Outcome
from processor.errors import CorruptState, StorageError
from processor.metrics import Health, Metrics, serve_metrics
from processor.pipeline.types import BatchResult, InputMessage
from processor.storage.base import Store
from processor.stream.connect import RETRY_SECONDS, start_client
from processor.stream.consumer import (
    COMMIT_INTERVAL_SECONDS,
    FETCH_MAX_WAIT_MS,
    POLL_TIMEOUT_MS,
    commit_processed,
    start_group_consumer,
)
from processor.stream.database import open_migrated
from processor.stream.instance_id import InstanceId, claim_instance_id
from processor.stream.kafka_settings import kafka_client_options
from processor.stream.lag import watch_input_lag
from processor.stream.outbox_numbering import number_outbox_past
from processor.stream.outbox_relay import (
    OutboxRelay,
    RelayFenced,
    RelayTarget,
    TailReader,
    TailUnreadable,
)
from processor.stream.partition_worker import (
    PROCESSING_THREADS,
    PartitionWorker,
    StaleBatch,
    log_dead_letters,
)
from processor.stream.topics import DEAD_LETTER_MAX_BYTES, ensure_topics

log = logging.getLogger(__name__)


#: A partition whose queue holds this many batches (batch size x this) is paused in the
#: consumer until its worker has taken them: bounded memory, and the next batch is full.
QUEUE_BATCHES = 2


class PartitionListener(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, service: RoomserverService) -> None:
        self._service = service

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        await self._service.release([tp.partition for tp in revoked])

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        await self._service.take([tp.partition for tp in assigned])


class RoomserverService:
    def __init__(
        self,
        settings: Settings,
        *,
        metrics: Metrics | None = None,
        store_factory: Callable[[], Store] | None = None,
        group_id: str | None = None,
        output_enabled: bool = True,
        stop_at: dict[int, int] | None = None,
        static_membership: bool = True,
        partitions: list[int] | None = None,
    ) -> None:
        self.settings = settings
        self.metrics = metrics or Metrics()
        self.health = Health(settings.stall_seconds)
        self._store_factory = store_factory or (lambda: open_migrated(settings.database_url))
        self._group_id = group_id or settings.consumer_group
        self._output_enabled = output_enabled
        self.workers: dict[int, PartitionWorker] = {}
        self._stop = asyncio.Event()
        self._consumer: AIOKafkaConsumer | None = None
        #: Options of the relays' transactional producers (one per partition).
        self._producer_options: dict[str, object] = {}
        #: Set when a relay finds itself fenced: this instance lost partitions without
        #: noticing, so the consumer rejoins the group to learn what it owns.
        self._rejoin = False
        #: A relay's unexpected error (a bug): the service stops with it.
        self._failed: BaseException | None = None
        self._backlog: dict[int, int] = {}
        self._tail_reader: AIOKafkaConsumer | None = None
        self._tail: TailReader | None = None
        self._commit: asyncio.Task[None] | None = None
        self._last_commit = 0.0
        #: Batches in flight at once (`PROCESSING_THREADS`), and the threads they run in:
        #: the relays' short database calls use the default executor, so they never queue
        #: behind batches.
        self._threads = asyncio.Semaphore(PROCESSING_THREADS)
        self._executor: ThreadPoolExecutor | None = None
        self._max_message_bytes = settings.max_output_message_bytes
        #: One store for every partition: it is thread-safe (a connection pool).
        self._store: Store | None = None
        self.processed = 0
        #: Rebuild mode: stop once every partition has reached these offsets.
        self._stop_at = stop_at
        self._positions: dict[int, int] = {}
        #: Static group membership (see `instance_id`): a restart after a crash gets its
        #: partitions back at once. A rebuild's group is its own and lives once: no need.
        self._static_membership = static_membership
        self._instance: InstanceId | None = None
        #: These partitions only, assigned rather than given by the group (a rebuild split
        #: over processes: each owns its share for the whole replay, with no rebalances).
        self._assigned = partitions

    def stop(self) -> None:
        self._stop.set()

    # ------------------------------------------------------------ partitions

    async def take(self, partitions: list[int]) -> None:
        """Start workers for newly assigned partitions, resuming at the stored offsets.

        Runs inside the rebalance callback, so it does only what must happen before the
        first fetch: read the stored offsets (one transaction) and seek. Then each relay's
        task starts: its producer fences the previous owner's, it forgets the outbox rows
        Kafka already holds and publishes the rest (`OutboxRelay.run_once` always recovers
        before sending), beside the processing of new batches.
        """
        assert self._consumer is not None and self._tail is not None
        # Assigned again without a revocation in between: the old worker (and its relay's
        # producer) is closed first, never just dropped.
        await self.release([p for p in partitions if p in self.workers])
        store = self._require_store()
        offsets = await asyncio.to_thread(self._stored_offsets, store, partitions)
        fresh: list[PartitionWorker] = []
        for p in partitions:
            relay = OutboxRelay(
                store,
                p,
                RelayTarget(self.settings.output_topic, self.settings.dead_letter_topic),
                self._tail,
                self._producer_options,
                on_relayed=self._relayed_counter(p),
                on_caught_up=self._caught_up(p),
            )
            worker = PartitionWorker(
                self.settings, self.settings.input_topic, p, store, relay, self._max_message_bytes,
                outputs_enabled=self._output_enabled,
            )
            worker.stored_offset = offsets[p]
            self._positions[p] = offsets[p]
            self._consumer.seek(TopicPartition(self.settings.input_topic, p), offsets[p])
            self.workers[p] = worker
            fresh.append(worker)
        # One line per (re)assignment that says what this instance works on now: the
        # answer to "is it consuming, and what?" (aiokafka's own group chatter is quieted).
        if self.workers:
            log.info(
                "consuming %s partitions [%s] as group %s%s%s",
                self.settings.input_topic,
                ",".join(str(p) for p in sorted(self.workers)),
                self._group_id,
                f" instance {self._instance.value}" if self._instance else "",
                f" (resuming at offsets {', '.join(f'{p}:{offsets[p]}' for p in sorted(offsets))})"
                if offsets else "",
            )
        else:
            log.info(
                "no partition of %s for this instance: group %s has more members than "
                "partitions", self.settings.input_topic, self._group_id,
            )
        for worker in fresh:
            if self._output_enabled:
                worker.relay.start(self._relay_failed(worker.partition))
            worker.task = asyncio.create_task(
                self._work(worker), name=f"partition-{worker.partition}"
            )

    def _stored_offsets(self, store: Store, partitions: list[int]) -> dict[int, int]:
        with store.batch() as batch:
            return {
                p: batch.select_input_offset(self.settings.input_topic, p) or 0
                for p in partitions
            }

    def _require_store(self) -> Store:
        if self._store is None:
            self._store = self._store_factory()
        return self._store

    def _relayed_counter(self, partition: int) -> Callable[[int], None]:
        return lambda n: self._count_backlog(partition, -n)

    def _caught_up(self, partition: int) -> Callable[[int], None]:
        def caught_up(next_offset: int) -> None:
            self._positions[partition] = max(self._positions.get(partition, 0), next_offset)

        return caught_up

    def _count_backlog(self, partition: int, change: int) -> None:
        """Outputs committed and not yet relayed. Rows an earlier owner left are relayed
        but were never counted here: the count stops at 0."""
        backlog = max(0, self._backlog.get(partition, 0) + change)
        self._backlog[partition] = backlog
        self.metrics.outbox_backlog.labels(str(partition)).set(backlog)

    async def release(self, partitions: list[int]) -> None:
        """Stop working on `partitions`: the batches in flight finish, what is queued is
        dropped (the next owner reads it again from the stored offsets), and the relays make
        a last pass, side by side."""

        async def release_one(worker: PartitionWorker) -> None:
            worker.released = True
            worker.arrived.set()
            if worker.task is not None:
                await asyncio.gather(worker.task, return_exceptions=True)
            worker.queue.clear()
            # A last pass relays what the partition committed; what fails stays in the
            # outbox for the next owner.
            await worker.relay.close()
            log.info("partition %d released", worker.partition)

        workers = [w for w in (self.workers.pop(p, None) for p in partitions) if w is not None]
        await asyncio.gather(*(release_one(w) for w in workers))

    def _relay_failed(self, partition: int) -> Callable[[BaseException], None]:
        def failed(e: BaseException) -> None:
            if isinstance(e, RelayFenced):
                if not self._rejoin:
                    log.warning("%s; rejoining the consumer group", e)
                self._rejoin = True
            elif isinstance(e, CorruptState):
                log.error(
                    "partition %d: relaying outputs found the database corrupt (%s); "
                    "stopping: restore from backup or rebuild", partition, e,
                )
                self._failed = e
            elif isinstance(e, KafkaError | StorageError | TailUnreadable):
                log.warning(
                    "partition %d: relaying outputs failed (%s: %s); they stay in the outbox "
                    "and are sent again", partition, type(e).__name__, e,
                )
            else:
                log.error("partition %d: the relay stopped: %r", partition, e)
                self._failed = e

        return failed

    async def _read_again(self, worker: PartitionWorker, why: str) -> None:
        """Drop what was fetched after a stale batch: continue from the stored offset."""
        partition = worker.partition
        store = self._require_store()
        offset = (await asyncio.to_thread(self._stored_offsets, store, [partition]))[partition]
        log.warning("partition %d: %s; reading again from offset %d", partition, why, offset)
        if self._consumer is not None and self.workers.get(partition) is worker:
            # In one step, with no await between them: records queued until now are
            # dropped, and aiokafka returns none fetched before the seek.
            worker.queue.clear()
            worker.arrived.clear()
            tp = TopicPartition(self.settings.input_topic, partition)
            self._consumer.seek(tp, offset)
            self._resume(worker)

    def _resume(self, worker: PartitionWorker) -> None:
        if worker.paused and self._consumer is not None:
            self._consumer.resume(TopicPartition(self.settings.input_topic, worker.partition))
            worker.paused = False

    # ------------------------------------------------------------ the loop

    def _enqueue(self, tp: TopicPartition, messages: list[InputMessage]) -> None:
        """Hand fetched records to their partition's worker; pause a full partition."""
        assert self._consumer is not None
        worker = self.workers.get(tp.partition)
        if worker is None or worker.released:
            # Fetched before the assignment callback set the worker up: read these again
            # rather than lose them.
            self._consumer.seek(tp, messages[0].offset)
            return
        worker.enqueue(messages)
        if not worker.paused and len(worker.queue) >= QUEUE_BATCHES * self.settings.batch_size:
            self._consumer.pause(tp)
            worker.paused = True

    async def _work(self, worker: PartitionWorker) -> None:
        """The partition's task: its queue, a batch at a time, until it is released.

        A batch is taken when a thread is free for it, so it holds everything that arrived
        while the partition waited (up to the batch size), and none waits for more input.
        """
        try:
            while True:
                await worker.arrived.wait()
                if worker.released:
                    return
                async with worker.lock:
                    async with self._threads:
                        if worker.released:
                            return
                        messages = worker.take(self.settings.batch_size)
                        if not messages:
                            continue
                        if len(worker.queue) < self.settings.batch_size:
                            self._resume(worker)
                        retry = await self._handle(worker, messages)
                    if retry:
                        await asyncio.sleep(RETRY_SECONDS)
        except Exception as e:
            # A bug or a broken invariant (`CorruptState`, already logged by `_handle`):
            # the service stops with it.
            if not isinstance(e, CorruptState):
                log.error("partition %d: processing stopped: %r", worker.partition, e)
            if self._failed is None:
                self._failed = e
            raise

    async def _handle(self, worker: PartitionWorker, messages: list[InputMessage]) -> bool:
        """One batch; True when it failed and is to be retried after a pause."""
        started = time.perf_counter()
        try:
            result = await asyncio.get_running_loop().run_in_executor(
                self._executor, worker.process, messages
            )
        except StaleBatch as e:
            # Never carry on after the dropped batch: that would skip it.
            await self._read_again(worker, str(e))
            return False
        except CorruptState as e:
            # Never retried (it would fail the same way forever) nor skipped: the batch
            # rolled back, its offsets are not stored, and the service stops (`_work`), so a
            # restored or rebuilt database processes the batch again.
            log.error(
                "partition %d: the database is corrupt (%s) while processing offsets %d-%d; "
                "stopping: restore from backup or rebuild",
                worker.partition, e, messages[0].offset, messages[-1].offset,
            )
            raise
        except StorageError as e:
            # The database failed (it went away, a lock timed out): the batch rolled back as
            # a whole; retry it, after a pause, rather than crash or skip it. (Offsets below
            # the stored one are skipped by `process`.)
            log.error("partition %d: batch at offset %d failed: %s",
                      worker.partition, messages[0].offset, e)
            worker.put_back(messages)
            return True
        self.metrics.batch_seconds.observe(time.perf_counter() - started)
        if result is not None:
            self._record(worker.partition, result)
        self.processed += len(messages)
        if self._output_enabled:
            # Processed = committed and relayed: the position moves when the relay
            # reports the batch's outputs in Kafka (`_caught_up`).
            worker.relay.notify(messages[-1].offset + 1)
        else:
            self._positions[worker.partition] = messages[-1].offset + 1
        self.health.progressed()
        return False

    def _reached_stop_offsets(self) -> bool:
        if self._stop_at is None:
            return False
        return all(
            end == 0 or self._positions.get(p, 0) >= end for p, end in self._stop_at.items()
        )

    def _record(self, partition: int, result: BatchResult) -> None:
        for outcome, n in result.outcomes.items():
            self.metrics.events.labels(outcome.value).inc(n)
        for dead in result.dead_letters:
            self.metrics.dead_letters.labels(dead.reason.value).inc()
        self.metrics.state_resolutions.inc(result.state_resolutions)
        if result.state_resolution_seconds:
            self.metrics.state_resolution_seconds.observe(result.state_resolution_seconds)
        self._count_backlog(partition, result.outputs + len(result.dead_letters))
        if result.outcomes.get(Outcome.DEAD_LETTERED):
            log_dead_letters(partition, result)

    async def _watch_lag(self) -> None:
        await watch_input_lag(
            self.settings, self.metrics, self.health,
            lambda: {p: self._positions.get(p, 0) for p in self.workers},
        )

    def _commit_for_lag_tooling(self, consumer: AIOKafkaConsumer) -> None:
        self._commit = commit_processed(
            consumer,
            self._commit,
            self.settings.input_topic,
            {p: self._positions[p] for p in self.workers if self._positions.get(p)},
        )

    def _client_options(self) -> dict[str, object]:
        return kafka_client_options(self.settings)

    async def _start_consumer(self) -> AIOKafkaConsumer:
        consumer = await start_group_consumer(
            self.settings, self._group_id, self._instance.value if self._instance else None
        )
        self._consumer = consumer
        if self._assigned is None:
            consumer.subscribe([self.settings.input_topic], listener=PartitionListener(self))
            return consumer
        tps = [TopicPartition(self.settings.input_topic, p) for p in self._assigned]
        consumer.assign(tps)
        # assign() starts a position reset; a seek before it has finished is overwritten.
        for tp in tps:
            await consumer.position(tp)
        await self.take(list(self._assigned))
        return consumer

    async def _stop_consumer(self) -> None:
        """Release every partition, leave the group, and release again what a rebalance
        assigned in between (its workers would otherwise outlive the consumer, relaying
        partitions this instance no longer owns, their producers never closed)."""
        await self.release(list(self.workers))
        if self._consumer is not None:
            await self._consumer.stop()
            self._consumer = None
        await self.release(list(self.workers))

    async def _restart_consumer(self) -> AIOKafkaConsumer | None:
        """A new consumer in place of the current one (None: stopped while waiting for the
        broker)."""
        self.metrics.consumer_restarts.inc()
        await self._stop_consumer()
        while not self._stop.is_set():
            try:
                consumer = await self._start_consumer()
            except KafkaError as e:
                log.warning("starting the consumer failed (%s); retrying", e)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), RETRY_SECONDS)
                continue
            self.health.progressed()
            return consumer
        return None

    async def run(self) -> None:
        """Consume until `stop` (or, in a rebuild, the stop offsets). Whatever ends it, the
        batches in flight finish, the relays make their last passes, and every client,
        task and connection it started is closed."""
        async with contextlib.AsyncExitStack() as cleanup:
            options = self._client_options()
            admin = AIOKafkaAdminClient(**options)
            try:
                # The first contact: unreachable brokers, an untrusted certificate or wrong
                # credentials end the start with one line (`KafkaUnavailable`).
                await start_client(admin, self.settings)
                layout = await ensure_topics(admin, self.settings)
            finally:
                await admin.close()
            self._max_message_bytes = min(
                self._max_message_bytes, layout.output_max_message_bytes
            )
            self._producer_options = {
                # A pass ends with a commit, which sends at once: lingering only delays it.
                "linger_ms": 0,
                "max_batch_size": 256 * 1024,
                # Dead letters carry a whole input (base64) and their topic takes up to
                # 10 MiB; outputs are split below the output topic's limit before they get
                # here.
                "max_request_size": max(self._max_message_bytes, DEAD_LETTER_MAX_BYTES)
                + 64 * 1024,
                **options,
            }
            tail_reader = AIOKafkaConsumer(
                enable_auto_commit=False,
                isolation_level="read_committed",
                # Each tail read reassigns the reader, and aiokafka answers its offset
                # requests only after the fetch in flight returns: with the default (500 ms)
                # every read took half a second, serialised over all partitions (measured:
                # 12 reads, 5.5 s before a restarted instance could process anything).
                fetch_max_wait_ms=FETCH_MAX_WAIT_MS,
                **options,
            )
            cleanup.push_async_callback(tail_reader.stop)
            await tail_reader.start()
            self._tail_reader = tail_reader
            self._tail = TailReader(tail_reader)
            cleanup.push_async_callback(self._close_store)
            await asyncio.to_thread(self._require_store)
            if self._output_enabled:
                await self._number_outbox_past(layout.partitions)
            executor = ThreadPoolExecutor(PROCESSING_THREADS, "roomserver-batch")
            cleanup.callback(executor.shutdown, wait=False)
            self._executor = executor
            if self._static_membership:
                self._instance = claim_instance_id(self.settings)
                if self._instance is not None:
                    cleanup.callback(self._instance.release)
            cleanup.push_async_callback(self._stop_consumer)
            consumer = await self._start_consumer()
            if self.settings.metrics_port:
                server = await serve_metrics(
                    self.settings.metrics_port, self.metrics, self.health.report
                )
                cleanup.callback(server.close)
            cleanup.push_async_callback(_cancelled, asyncio.create_task(self._watch_lag()))
            cleanup.push_async_callback(self._cancel_commit)
            await self._consume(consumer)

    async def _number_outbox_past(self, partitions: int) -> None:
        assert self._tail is not None
        await number_outbox_past(
            self._tail, self._require_store, self.settings, partitions, self._stop
        )

    async def _consume(self, consumer: AIOKafkaConsumer) -> None:
        last_lag = 0.0
        while not self._stop.is_set() and not self._reached_stop_offsets():
            # Everything fetched, every partition: `max_records` would cap the total, and
            # one busy partition would starve the others of input.
            batches = await consumer.getmany(timeout_ms=POLL_TIMEOUT_MS)
            for tp, records in batches.items():
                if records:
                    self._enqueue(tp, [
                        InputMessage(r.value or b"", tp.topic, tp.partition, r.offset)
                        for r in records
                    ])
            if self._failed is not None:
                raise self._failed
            now = time.monotonic()
            if now - self._last_commit > COMMIT_INTERVAL_SECONDS:
                self._last_commit = now
                self._commit_for_lag_tooling(consumer)
            if now - last_lag > 1.0:
                last_lag = now
                # The lag itself is measured by `watch_lag`, beside this loop.
                stalled = self.health.stalled()
                if stalled or self._rejoin:
                    # aiokafka consumers can hang after a broker restart: recreate it. A
                    # fenced relay (see outbox_relay) gets the same: the new consumer joins
                    # the group afresh and is told what it owns now.
                    if stalled:
                        log.warning(
                            "consumer stalled with lag %d; restarting it", self.health.lag
                        )
                    self._rejoin = False
                    await self._cancel_commit()
                    restarted = await self._restart_consumer()
                    if restarted is None:
                        return
                    consumer = restarted

    async def _cancel_commit(self) -> None:
        if self._commit is not None:
            await _cancelled(self._commit)
            self._commit = None

    async def _close_store(self) -> None:
        if self._store is not None:
            await asyncio.to_thread(self._store.close)
            self._store = None

async def _cancelled(task: asyncio.Task[None]) -> None:
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
