"""Benchmark: resident memory of the embedded mode after many events over many rooms
(issue 16: at most 1 GiB per process after 1M events over 10,000 rooms).

    .venv/bin/python tests/benchmarks/bench_memory.py [--events 1000000] [--rooms 10000]
        [--cache-events N] [--cache-states N] [--cache-auth-index-events N]

Generates the traffic in chunks (so the input itself is not what fills the memory), ingests
it into a fresh SQLite file with the given cache limits, and prints the peak RSS and what
the caches hold every `--report-every` events.
"""

from __future__ import annotations

import argparse
import io
import os
import resource
import tempfile
import time
from collections.abc import Iterator

from processor.gc_tuning import tune_for_throughput
from processor.generate import generate
from processor.generate.traffic import write_jsonl
from processor.pipeline.caches import CacheLimits
from processor.pipeline.processor import PartitionProcessor
from processor.pipeline.types import InputMessage
from processor.storage import open_store


def _rss_mib() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def _messages(rooms: int, events: int, version: str, seed: int) -> Iterator[InputMessage]:
    text = io.StringIO()
    write_jsonl(generate(rooms, events, version, seed), text)
    for n, line in enumerate(text.getvalue().encode().splitlines(), 1):
        yield InputMessage(line, "file", 0, n)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--rooms", type=int, default=10_000)
    parser.add_argument("--room-version", default="10")
    parser.add_argument("--batch-size", type=int, default=1000)
    parser.add_argument("--report-every", type=int, default=50_000)
    defaults = CacheLimits()
    parser.add_argument("--cache-events", type=int, default=defaults.events)
    parser.add_argument("--cache-states", type=int, default=defaults.states)
    parser.add_argument("--cache-auth-index-events", type=int,
                        default=defaults.auth_index_events)
    args = parser.parse_args()
    tune_for_throughput()
    limits = CacheLimits(events=args.cache_events, states=args.cache_states,
                         auth_index_events=args.cache_auth_index_events)
    messages = _messages(args.rooms, args.events, args.room_version, 1)
    print(f"{args.events} events over {args.rooms} rooms (generated at the first batch)")
    with tempfile.TemporaryDirectory() as tmp:
        store = open_store(os.path.join(tmp, "bench.db"))
        store.migrate()
        processor = PartitionProcessor("", cache_limits=limits)
        done, next_report, started = 0, args.report_every, time.process_time()
        batch: list[InputMessage] = []
        for message in messages:
            batch.append(message)
            if len(batch) < args.batch_size:
                continue
            with store.batch() as b:
                processor.process(b, batch)
            processor.take_outputs()
            done += len(batch)
            batch = []
            if done >= next_report:
                next_report += args.report_every
                print(f"{done:>9,} events: RSS {_rss_mib():6.0f} MiB, "
                      f"{(time.process_time() - started) / done * 1e6:.0f} us CPU/event, "
                      f"caches {processor.cache.memory_entries()}", flush=True)
        if batch:
            with store.batch() as b:
                processor.process(b, batch)
        store.close()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS {peak:.0f} MiB (includes the generated input held in memory)")


if __name__ == "__main__":
    main()
