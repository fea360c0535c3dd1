"""Benchmark: the roomserver end to end through the real topics (README.md, Performance).

Generated traffic (`processor.generate.iter_generate`: many rooms, several servers per room
whose views fork and merge, joins/leaves/invites/bans, power-level and join-rule changes,
messages, redactions, some events that must be rejected or soft-failed) goes through a real
broker and PostgreSQL on this machine, with `roomserver run` in its own process:

(a) sustained end-to-end throughput: the service is up and idle; everything is produced as
    fast as the producer goes; measured from the first send until the output of the last
    accepted event is visible on the output topic (a consumer in this process reads it);
(b) produce-to-output latency at a fixed rate (default 1,000 events/s): each input is
    matched to its output by the event's content hash (unique per event, in both the input
    PDU and the output's copy of it); p50/p99/max of (output seen - send called);
(c) rebuild: `roomserver rebuild` of the input topic of (a) and (b) into a new, empty
    database (no output topic), events/s as it reports it and wall-clock including startup.

Targets (README.md, Performance): (a) >= 10,000 events/s; (b) p99 <= 100 ms at 1,000 events/s;
(c) >= 20,000 events/s.

    eval "$(deploy/local/kafka.sh start | sed 's/^/export /')"
    eval "$(deploy/local/postgres.sh start | sed 's/^/export /')"
    .venv/bin/python tests/benchmarks/bench_e2e.py                  # defaults below
    .venv/bin/python tests/benchmarks/bench_e2e.py --events 20000 --latency-seconds 10
    .venv/bin/python tests/benchmarks/bench_e2e.py --instances 2   # two service processes

KAFKA_BOOTSTRAP_SERVERS and DATABASE_URL (a PostgreSQL server URL; scratch databases are
created on it and dropped afterwards) come from the environment. Topics get unique names
and are deleted afterwards. The machine's other load is printed too: the figures are only
as good as the idle cores.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import msgspec
import psycopg
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from prometheus_client.parser import text_string_to_metric_families
from psycopg import sql

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from processor.config import Settings
from processor.generate import iter_generate
from processor.stream import commands

ROOMSERVER = [sys.executable, "-m", "processor.cli"]


def roomserver_command(switch_interval: float | None) -> list[str]:
    """`roomserver`, optionally with another GIL switch interval (an experiment knob: the
    service runs partitions in threads, whose database round trips wait for the GIL)."""
    if switch_interval is None:
        return ROOMSERVER
    return [
        sys.executable, "-c",
        f"import sys; sys.setswitchinterval({switch_interval}); "
        "from processor.cli import main; sys.exit(main())",
    ]


# ---------------------------------------------------------------- traffic


@dataclass(slots=True)
class Traffic:
    """Encoded input lines, their Kafka keys, and the content hashes of the events that
    must produce an output (accepted ones)."""

    lines: list[bytes] = field(default_factory=list)
    keys: list[bytes] = field(default_factory=list)
    hashes: list[str | None] = field(default_factory=list)

    @property
    def expected_outputs(self) -> int:
        return sum(1 for h in self.hashes if h is not None)


def make_traffic(rooms: int, events: int, version: str, seed: int) -> Traffic:
    encode = msgspec.json.Encoder().encode
    traffic = Traffic()
    for generated in iter_generate(rooms, events, version, seed):
        traffic.lines.append(encode(generated.input))
        traffic.keys.append(generated.room_id.encode())
        accepted = generated.outcome == "accepted" and generated.input["kind"] != "outlier"
        traffic.hashes.append(generated.input["event"]["hashes"]["sha256"] if accepted else None)
    return traffic


# ---------------------------------------------------------------- output watcher


class _Hashes(msgspec.Struct):
    sha256: str = ""


class _Pdu(msgspec.Struct):
    hashes: _Hashes = msgspec.field(default_factory=_Hashes)


class _Output(msgspec.Struct):
    type: str
    event: _Pdu | None = None


_decode_output = msgspec.json.Decoder(_Output).decode


class OutputWatcher:
    """Reads the output topic from its current end; records when each event's output (by
    content hash) is first seen."""

    def __init__(self, settings: Settings, partitions: int) -> None:
        self._settings = settings
        self._partitions = partitions
        self.seen: dict[str, float] = {}
        self.outputs = 0
        self._waiters: list[tuple[set[str], asyncio.Future[None]]] = []
        self._task: asyncio.Task[None] | None = None
        self._consumer: AIOKafkaConsumer | None = None

    async def start(self) -> None:
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self._settings.kafka_bootstrap_servers,
            enable_auto_commit=False,
            isolation_level="read_committed",
            auto_offset_reset="latest",
            fetch_max_wait_ms=5,
            max_partition_fetch_bytes=8 * 1024 * 1024,
        )
        await consumer.start()
        tps = [TopicPartition(self._settings.output_topic, p) for p in range(self._partitions)]
        consumer.assign(tps)
        for tp, end in (await consumer.end_offsets(tps)).items():
            consumer.seek(tp, end)
        self._consumer = consumer
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        assert self._consumer is not None
        while True:
            batches = await self._consumer.getmany(timeout_ms=100, max_records=20_000)
            now = time.perf_counter()
            for records in batches.values():
                for record in records:
                    self.outputs += 1
                    message = _decode_output(record.value or b"")
                    if message.event is not None and message.event.hashes.sha256:
                        self.seen.setdefault(message.event.hashes.sha256, now)
            if batches:
                self._wake()

    def _wake(self) -> None:
        for pending, future in self._waiters:
            pending.difference_update(self.seen.keys() & pending)
            if not pending and not future.done():
                future.set_result(None)

    async def wait_for(self, hashes: set[str], idle_timeout: float = 30.0) -> set[str]:
        """Wait until every hash was seen; returns those still missing when no output
        arrived for `idle_timeout` seconds (a bug, not a slow run)."""
        pending = set(hashes) - self.seen.keys()
        if not pending:
            return set()
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append((pending, future))
        while not future.done():
            before = self.outputs
            try:
                await asyncio.wait_for(asyncio.shield(future), idle_timeout)
            except TimeoutError:
                if self.outputs == before:
                    break
        self._waiters.remove((pending, future))
        return pending

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self._consumer is not None:
            await self._consumer.stop()


# ---------------------------------------------------------------- the service's metrics


async def _metrics_text(port: int) -> str:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(b"GET /metrics HTTP/1.1\r\nHost: bench\r\n\r\n")
        await writer.drain()
        response = await reader.read()
    finally:
        writer.close()
        await writer.wait_closed()
    return response.partition(b"\r\n\r\n")[2].decode()


async def scrape(ports: list[int]) -> dict[str, float]:
    """The services' /metrics, summed over labels and instances (name -> value)."""
    totals: dict[str, float] = {}
    for port in ports:
        for family in text_string_to_metric_families(await _metrics_text(port)):
            for sample in family.samples:
                if sample.name.endswith("_bucket"):
                    continue
                totals[sample.name] = totals.get(sample.name, 0.0) + sample.value
    return totals


async def owned_partitions(port: int) -> set[str]:
    """The input partitions an instance reports lag for: the ones it owns."""
    try:
        text = await _metrics_text(port)
    except OSError:
        return set()  # not listening yet
    return {
        sample.labels["partition"]
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "roomserver_consumer_lag"
    }


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU time of the processes so far (Linux /proc)."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
        total += (int(fields[11]) + int(fields[12])) / ticks
    return total


def describe_cpu(cpu: float, events: int) -> str:
    return f"    service CPU: {cpu:.1f} s, {cpu / events * 1e6:,.0f} µs per input event"


def describe_batches(before: dict[str, float], after: dict[str, float], wall: float) -> str:
    def delta(name: str) -> float:
        return after.get(name, 0.0) - before.get(name, 0.0)

    batches = delta("roomserver_batch_seconds_count")
    if not batches:
        return "    service: no batches"
    events = delta("roomserver_events_total")
    busy = delta("roomserver_batch_seconds_sum")
    return (
        f"    service: {batches:,.0f} batches, {events / batches:,.1f} events per batch, "
        f"{busy / batches * 1000:.1f} ms per batch (handler + commit, without the relay); "
        f"batches busy {busy / wall:.0%} of the phase (summed over partitions); "
        f"{delta('roomserver_state_resolutions_total'):,.0f} state resolutions, "
        f"{delta('roomserver_state_resolution_seconds_sum') * 1000:,.0f} ms"
    )


# ---------------------------------------------------------------- services


@contextmanager
def scratch_database(server_url: str, label: str) -> Iterator[str]:
    name = f"bench_e2e_{label}_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {} TEMPLATE template0").format(
            sql.Identifier(name)))
    try:
        yield urlunsplit(urlsplit(server_url)._replace(path=f"/{name}"))
    finally:
        with psycopg.connect(server_url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                sql.Identifier(name)))


def service_env(settings: Settings, metrics_port: int = 0) -> dict[str, str]:
    return {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers,
        "DATABASE_URL": settings.database_url,
        "ROOMSERVER_INPUT_TOPIC": settings.input_topic,
        "ROOMSERVER_OUTPUT_TOPIC": settings.output_topic,
        "ROOMSERVER_DEAD_LETTER_TOPIC": settings.dead_letter_topic,
        "ROOMSERVER_INPUT_PARTITIONS": str(settings.input_partitions),
        "ROOMSERVER_CONSUMER_GROUP": settings.consumer_group,
        "ROOMSERVER_BATCH_SIZE": str(settings.batch_size),
        "ROOMSERVER_METRICS_PORT": str(metrics_port),
    }


async def producer_for(settings: Settings, linger_ms: int) -> AIOKafkaProducer:
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap_servers,
        enable_idempotence=True,
        linger_ms=linger_ms,
        max_batch_size=512 * 1024,
    )
    await producer.start()
    return producer


async def delete_topics(settings: Settings) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap_servers)
    await admin.start()
    try:
        await admin.delete_topics(
            [settings.input_topic, settings.output_topic, settings.dead_letter_topic]
        )
    finally:
        await admin.close()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def percentile(sorted_values: list[float], fraction: float) -> float:
    index = min(len(sorted_values) - 1, max(0, round(fraction * len(sorted_values)) - 1))
    return sorted_values[index]


def load_average() -> str:
    one, five, _ = os.getloadavg()
    return f"load average {one:.2f} (1 min), {five:.2f} (5 min) on {os.cpu_count()} cores"


# ---------------------------------------------------------------- phases


async def settled(ports: list[int], partitions: int, timeout: float = 120.0) -> None:
    """Wait until every instance owns partitions and together they own each one once (the
    group has finished rebalancing: a rebalance would stall a measured phase)."""
    deadline = time.monotonic() + timeout
    while True:
        owned = [await owned_partitions(port) for port in ports]
        if all(owned) and sum(map(len, owned)) == partitions:
            return
        if time.monotonic() > deadline:
            raise SystemExit(f"the instances did not share the partitions within {timeout} s")
        await asyncio.sleep(0.2)  # polling the services' metrics, not synchronisation


async def warm_up(settings: Settings, watcher: OutputWatcher, producer: AIOKafkaProducer) -> None:
    """A few rooms' create events through the service, over every partition: each partition
    is connected to everything (relay producer, database connections) once their outputs
    are visible."""
    created = list(iter_generate(4 * settings.input_partitions, 4 * settings.input_partitions,
                                 "10", seed=987654))
    hashes = set()
    for generated in created:
        if generated.outcome == "accepted":
            hashes.add(generated.input["event"]["hashes"]["sha256"])
        await producer.send_and_wait(
            settings.input_topic, msgspec.json.encode(generated.input),
            key=generated.room_id.encode(),
        )
    missing = await watcher.wait_for(hashes, idle_timeout=120)
    if missing:
        raise SystemExit("the service did not process the warm-up events within 120 s")


async def throughput(
    settings: Settings, watcher: OutputWatcher, producer: AIOKafkaProducer, traffic: Traffic
) -> float:
    expected = {h for h in traffic.hashes if h is not None}
    started = time.perf_counter()
    futures = [
        await producer.send(settings.input_topic, line, key=key)
        for line, key in zip(traffic.lines, traffic.keys, strict=True)
    ]
    await asyncio.gather(*futures)
    produced = time.perf_counter() - started
    missing = await watcher.wait_for(expected)
    last = max(watcher.seen[h] for h in expected - missing) if expected - missing else started
    seconds = last - started
    print(f"(a) sustained end to end: {len(traffic.lines):,} input events "
          f"({len(expected):,} accepted) produced in {produced:.2f} s "
          f"({len(traffic.lines) / produced:,.0f}/s); last output visible after "
          f"{seconds:.2f} s: {len(traffic.lines) / seconds:,.0f} events/s end to end "
          f"[target >= 10,000]")
    if missing:
        print(f"    WARNING: {len(missing)} accepted events produced no output")
    return seconds


async def latency(
    settings: Settings,
    watcher: OutputWatcher,
    producer: AIOKafkaProducer,
    traffic: Traffic,
    rate: float,
) -> float:
    sent: dict[str, float] = {}
    started = time.perf_counter()
    for index, (line, key, content_hash) in enumerate(
        zip(traffic.lines, traffic.keys, traffic.hashes, strict=True)
    ):
        due = started + index / rate
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)  # pacing the producer, not synchronisation
        if content_hash is not None:
            sent[content_hash] = time.perf_counter()
        await producer.send(settings.input_topic, line, key=key)
    behind = time.perf_counter() - (started + (len(traffic.lines) - 1) / rate)
    missing = await watcher.wait_for(set(sent))
    latencies = sorted(
        (watcher.seen[h] - t) * 1000 for h, t in sent.items() if h in watcher.seen
    )
    if not latencies:
        print("(b) latency: no outputs seen")
        return time.perf_counter() - started
    print(f"(b) produce-to-output latency at {rate:,.0f} events/s over "
          f"{len(traffic.lines):,} events ({len(latencies):,} outputs matched; producer "
          f"finished {behind * 1000:.0f} ms behind schedule): p50 "
          f"{percentile(latencies, 0.50):.1f} ms, p90 {percentile(latencies, 0.90):.1f} ms, "
          f"p99 {percentile(latencies, 0.99):.1f} ms, max {latencies[-1]:.1f} ms "
          f"[target p99 <= 100 ms]")
    if missing:
        print(f"    WARNING: {len(missing)} accepted events produced no output")
    return time.perf_counter() - started


def rebuild(settings: Settings, database_url: str, log_path: Path, processes: int) -> None:
    env = service_env(settings)
    env["DATABASE_URL"] = database_url
    started = time.perf_counter()
    with log_path.open("wb") as log:
        proc = subprocess.run(
            [*ROOMSERVER, "rebuild", "--processes", str(processes)], env=env,
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.PIPE, check=False,
        )
        log.write(proc.stderr)
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        print(f"(c) rebuild FAILED (exit {proc.returncode}); see {log_path}")
        return
    summary = [line for line in proc.stderr.decode().splitlines() if "rebuilt" in line]
    print(f"(c) rebuild --processes {processes}: {summary[-1] if summary else '?'} "
          f"[target >= 20,000 events/s]; "
          f"{wall:.1f} s wall clock including start-up and group join")


# ---------------------------------------------------------------- main


async def main_async(args: argparse.Namespace) -> None:
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "")
    server_url = os.environ.get("DATABASE_URL", "")
    if not bootstrap or not server_url.startswith("postgres"):
        raise SystemExit("set KAFKA_BOOTSTRAP_SERVERS and DATABASE_URL (see the docstring)")
    print(f"bench_e2e: {args.events:,} events over {args.rooms} rooms (room version "
          f"{args.room_version}), {args.partitions} partitions, batch size {args.batch_size}, "
          f"{args.instances} service instance(s); "
          f"{load_average()}")

    started = time.perf_counter()
    load = (
        Traffic() if args.skip_throughput
        else make_traffic(args.rooms, args.events, args.room_version, seed=args.seed)
    )
    paced = make_traffic(
        args.rooms, int(args.rate * args.latency_seconds), args.room_version,
        seed=args.seed + 1,
    )
    print(f"generated {len(load.lines) + len(paced.lines):,} events in "
          f"{time.perf_counter() - started:.1f} s (not measured)")

    prefix = f"bench.e2e.{uuid.uuid4().hex[:10]}"
    logs = Path(tempfile.mkdtemp(prefix="bench_e2e_"))
    with scratch_database(server_url, "run") as run_db:
        settings = Settings(
            kafka_bootstrap_servers=bootstrap,
            input_topic=f"{prefix}.input",
            output_topic=f"{prefix}.output",
            dead_letter_topic=f"{prefix}.dlq",
            input_partitions=args.partitions,
            consumer_group=f"{prefix}.group",
            database_url=run_db,
            batch_size=args.batch_size,
        )
        await commands.create_topics(settings)
        ports = [free_port() for _ in range(args.instances)]
        services = []
        for n, port in enumerate(ports):
            with (logs / f"run{n or ''}.log").open("wb") as log:
                services.append(subprocess.Popen(
                    [*roomserver_command(args.switch_interval), "run"],
                    env=service_env(settings, port), stdin=subprocess.DEVNULL,
                    stdout=log, stderr=subprocess.STDOUT,
                ))
        watcher = OutputWatcher(settings, args.partitions)
        await watcher.start()
        producer = await producer_for(settings, linger_ms=5)
        paced_producer = await producer_for(settings, linger_ms=0)
        try:
            await settled(ports, args.partitions)
            await warm_up(settings, watcher, producer)
            pids = [service.pid for service in services]
            if not args.skip_throughput:
                before = await scrape(ports)
                cpu = cpu_seconds(pids)
                wall = await throughput(settings, watcher, producer, load)
                print(describe_batches(before, await scrape(ports), wall))
                print(describe_cpu(cpu_seconds(pids) - cpu, len(load.lines)))
            if args.latency_seconds > 0:
                before = await scrape(ports)
                cpu = cpu_seconds(pids)
                wall = await latency(settings, watcher, paced_producer, paced, args.rate)
                print(describe_batches(before, await scrape(ports), wall))
                print(describe_cpu(cpu_seconds(pids) - cpu, len(paced.lines)))
        finally:
            await producer.stop()
            await paced_producer.stop()
            await watcher.stop()
            for service in services:
                service.send_signal(signal.SIGTERM)
            for n, service in enumerate(services):
                code = service.wait(timeout=120)
                if code != 0:
                    print(f"the service exited {code}; see {logs}/run{n or ''}.log")
        if not args.skip_rebuild:
            for processes in args.rebuild_processes:
                # Each into an empty database of its own, the first one's dropped first.
                with scratch_database(server_url, "rebuild") as into:
                    rebuild(settings, into, logs / f"rebuild{processes}.log", processes)
        await delete_topics(settings)
    print(f"logs in {logs}; {load_average()}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=50_000, help="events for (a)")
    parser.add_argument("--rooms", type=int, default=500)
    parser.add_argument("--room-version", default="10", help='"1".."12" or "mixed"')
    parser.add_argument("--partitions", type=int, default=6)
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument("--rate", type=float, default=1000.0, help="events/s for (b)")
    parser.add_argument("--latency-seconds", type=float, default=20.0, help="length of (b)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--instances", type=int, default=1,
        help="`roomserver run` processes in the consumer group (each takes a share of the "
        "partitions: the design's unit of scaling, and a process per core beats the GIL)",
    )
    parser.add_argument(
        "--rebuild-processes", type=lambda text: [int(n) for n in text.split(",")],
        default=[1], help="`roomserver rebuild --processes N` for (c); N,M,...: one rebuild "
        "each, one after the other (default 1)",
    )
    parser.add_argument("--skip-throughput", action="store_true")
    parser.add_argument("--skip-rebuild", action="store_true")
    parser.add_argument(
        "--switch-interval", type=float, default=None,
        help="run the service with sys.setswitchinterval(S) (default: Python's 0.005)",
    )
    asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    main()
