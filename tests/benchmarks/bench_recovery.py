"""Benchmark: how soon a `roomserver run` killed with -9 and restarted works again (issue 16).

One instance (static group membership, `ROOMSERVER_INSTANCE_ID`) processes generated traffic
through a real broker and PostgreSQL; it is killed with SIGKILL in the middle of the stream
and restarted at once with the same ID. Printed, from the restart (the new process's
spawn): when it logs its partitions, and when the output topic shows new outputs. With
`--dynamic` the instance joins without a static ID (as before issue 16): the restart then
waits for the dead member's session to time out.

    eval "$(deploy/local/kafka.sh start | sed 's/^/export /')"
    eval "$(deploy/local/postgres.sh start | sed 's/^/export /')"
    .venv/bin/python tests/benchmarks/bench_recovery.py [--dynamic] [--events 6000]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from aiokafka import AIOKafkaConsumer, TopicPartition

from processor.config import Settings
from processor.stream import commands
from tests.benchmarks.bench_e2e import (
    ROOMSERVER,
    load_average,
    make_traffic,
    producer_for,
    scratch_database,
    service_env,
)

_CONSUMING = re.compile(rb"consuming \S+ partitions")


async def output_count(settings: Settings, partitions: int) -> int:
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap_servers, isolation_level="read_committed"
    )
    await consumer.start()
    try:
        tps = [TopicPartition(settings.output_topic, p) for p in range(partitions)]
        return sum((await consumer.end_offsets(tps)).values())
    finally:
        await consumer.stop()


def start(settings: Settings, instance_id: str, log: Path) -> subprocess.Popen[bytes]:
    env = service_env(settings)
    env["ROOMSERVER_INSTANCE_ID"] = instance_id
    with log.open("wb") as out:
        return subprocess.Popen(
            [*ROOMSERVER, "run"], env=env, stdin=subprocess.DEVNULL, stdout=out,
            stderr=subprocess.STDOUT,
        )


async def main_async(args: argparse.Namespace) -> None:
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "")
    server_url = os.environ.get("DATABASE_URL", "")
    if not bootstrap or not server_url.startswith("postgres"):
        raise SystemExit("set KAFKA_BOOTSTRAP_SERVERS and DATABASE_URL (see the docstring)")
    print(f"bench_recovery: {args.events:,} events, {'dynamic' if args.dynamic else 'static'} "
          f"membership; {load_average()}")
    traffic = make_traffic(200, args.events, "10", seed=5)
    prefix = f"bench.recovery.{uuid.uuid4().hex[:10]}"
    logs = Path(tempfile.mkdtemp(prefix="bench_recovery_"))
    instance = "dynamic" if args.dynamic else "bench-recovery"
    with scratch_database(server_url, "recovery") as database:
        settings = Settings(
            kafka_bootstrap_servers=bootstrap,
            input_topic=f"{prefix}.input",
            output_topic=f"{prefix}.output",
            dead_letter_topic=f"{prefix}.dlq",
            input_partitions=6,
            consumer_group=f"{prefix}.group",
            database_url=database,
            batch_size=100,
        )
        await commands.create_topics(settings)
        first = start(settings, instance, logs / "first.log")
        producer = await producer_for(settings, linger_ms=5)
        try:
            half = len(traffic.lines) // 2
            for line, key in zip(traffic.lines[:half], traffic.keys[:half], strict=True):
                await producer.send(settings.input_topic, line, key=key)
            await producer.flush()
            while await output_count(settings, 6) < half // 4:
                await asyncio.sleep(0.05)  # polling the topic, not synchronisation
            first.send_signal(signal.SIGKILL)
            first.wait()
            before = await output_count(settings, 6)
            restarted_at = time.perf_counter()
            second = start(settings, instance, logs / "second.log")
            for line, key in zip(traffic.lines[half:], traffic.keys[half:], strict=True):
                await producer.send(settings.input_topic, line, key=key)
            await producer.flush()
            assigned = published = None
            while published is None or assigned is None:
                now = time.perf_counter() - restarted_at
                if assigned is None and _CONSUMING.search((logs / "second.log").read_bytes()):
                    assigned = now
                if published is None and await output_count(settings, 6) > before:
                    published = now
                if now > 120:
                    raise SystemExit(f"nothing after 120 s; see {logs}")
                await asyncio.sleep(0.02)  # polling, not synchronisation
            print(f"after kill -9 and restart: partitions assigned after {assigned:.2f} s, "
                  f"first new outputs visible after {published:.2f} s [target <= 2 s]")
            second.send_signal(signal.SIGTERM)
            second.wait(60)
        finally:
            await producer.stop()
            for proc in (first,):
                if proc.poll() is None:
                    proc.kill()
    print(f"logs in {logs}; {load_average()}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=6000)
    parser.add_argument("--dynamic", action="store_true", help="no static membership")
    asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    main()
