"""Benchmark: `ingest` throughput (the embedded mode) on generated traffic.

    .venv/bin/python tests/benchmarks/bench_ingest.py [--events 100000] [--rooms 20]
        [--room-version 10] [--database-url postgresql://...]

Generates the traffic once (not timed), then ingests it into a fresh SQLite file and, when a
PostgreSQL URL is given (or DATABASE_URL is set), into a fresh PostgreSQL database. Prints
events/s for each. Target: at least 20,000 events/s with SQLite.
"""

from __future__ import annotations

import argparse
import io
import os
import tempfile
import time
import uuid

import psycopg

from processor.gc_tuning import tune_for_throughput
from processor.generate import generate
from processor.generate.traffic import write_jsonl
from processor.ingest import IngestSummary, ingest, read_lines
from processor.storage import open_store


def _run(url: str, data: bytes) -> tuple[IngestSummary, float]:
    store = open_store(url)
    try:
        started = time.perf_counter()
        summary = ingest(store, read_lines(io.BytesIO(data)), batch_size=1000)
        return summary, time.perf_counter() - started
    finally:
        store.close()


def _fresh_postgres(admin_url: str) -> str:
    name = f"bench_ingest_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base = admin_url.rsplit("/", 1)[0]
    return f"{base}/{name}"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--rooms", type=int, default=20)
    parser.add_argument("--room-version", default="10")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--database-url", default=os.environ.get("DATABASE_URL", ""))
    args = parser.parse_args()
    tune_for_throughput()  # as `roomserver ingest` does

    started = time.perf_counter()
    text = io.StringIO()
    write_jsonl(generate(args.rooms, args.events, args.room_version, args.seed), text)
    data = text.getvalue().encode()
    print(f"generated {args.events} events in {time.perf_counter() - started:.1f} s")

    with tempfile.TemporaryDirectory() as tmp:
        summary, seconds = _run(os.path.join(tmp, "bench.db"), data)
    print(
        f"sqlite:     {summary.events} events in {seconds:.1f} s = "
        f"{summary.events / seconds:,.0f} events/s "
        f"({summary.state_resolutions} state resolutions)"
    )
    if args.database_url:
        url = _fresh_postgres(args.database_url)
        summary, seconds = _run(url, data)
        print(
            f"postgresql: {summary.events} events in {seconds:.1f} s = "
            f"{summary.events / seconds:,.0f} events/s"
        )


if __name__ == "__main__":
    main()
