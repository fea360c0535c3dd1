"""Benchmark: state storage size and full-state load latency (README.md, Performance).

Workload (driven through the `Store` interface the way the processor drives it, 1,000 events
per batch): a room joined with 6,000 members of initial state, then events up to 100,000 in
total, of which about 5,000 change state (4,000 new members join, so the room grows to 10,000;
the rest are leaves, rejoins, profile changes, topic and power-level changes). About every 50
events the DAG forks: a side branch of a few events (sometimes with a state change) and a
merge event whose resolved state is stored against the main branch's snapshot.

Reported per backend: bytes of state storage (state_blocks + state_snapshots, with indexes
and TOAST: `pg_total_relation_size`; SQLite: `dbstat` pages) per event and per state change;
p50/p99 of loading the full state (~10,000 entries) at random events with a warm and a cold
in-process block cache ("cold" empties the store's caches before each load; the database's
own page cache stays warm); write throughput for the record.

    .venv/bin/python tests/benchmarks/bench_storage.py                       # SQLite only
    DATABASE_URL=postgresql://user@host:port/db .venv/bin/python tests/benchmarks/bench_storage.py
    ... --events 20000 --backends sqlite                                     # a quicker run

With DATABASE_URL set, a scratch database is created on that server and dropped afterwards.
"""

from __future__ import annotations

import argparse
import os
import random
import sqlite3
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from processor.nids import (
    EventNID,
    EventTypeNID,
    RoomNID,
    StateKeyNID,
    StateKeyTuple,
    StateSnapshotNID,
)
from processor.storage import open_store
from processor.storage.base import Batch, Store

TOPIC = (EventTypeNID(1025), StateKeyNID(1))
POWER_LEVELS = (EventTypeNID(2), StateKeyNID(1))
MEMBER = EventTypeNID(5)
MESSAGE = EventTypeNID(1024)
BATCH_EVENTS = 1000
JSON = b'{"content":{"body":"' + b"x" * 200 + b'"}}'


@dataclass
class Workload:
    total_events: int
    initial_members: int
    joins: int
    other_changes: int
    fork_every: int
    seed: int = 1


@dataclass
class Result:
    backend: str
    events: int = 0
    state_changes: int = 0
    snapshots: int = 0
    blocks: int = 0
    block_entries: int = 0
    state_bytes: int = 0
    bytes_detail: dict[str, int] = field(default_factory=dict)
    write_seconds: float = 0.0
    warm_ms: list[float] = field(default_factory=list)
    cold_ms: list[float] = field(default_factory=list)
    state_sizes: list[int] = field(default_factory=list)
    max_blocks: int = 0


class RoomDriver:
    """Plays the workload into a store, remembering each event's state-before snapshot."""

    def __init__(self, store: Store, workload: Workload) -> None:
        self.store = store
        self.w = workload
        self.rng = random.Random(workload.seed)
        self.events = 0
        self.state_changes = 0
        self.state: dict[StateKeyTuple, EventNID] = {}
        self.snapshot = StateSnapshotNID(0)
        self.room_nid = RoomNID(0)
        self.members: list[StateKeyNID] = []
        self.next_user = 0
        #: (event NID, state-before snapshot NID, size of that state) of every event
        self.samples: list[tuple[StateSnapshotNID, int]] = []

    def _event(
        self, batch: Batch, key: StateKeyTuple | None, snapshot: StateSnapshotNID
    ) -> EventNID:
        self.events += 1
        nid = batch.insert_event(
            event_id=f"$e{self.events}",
            room_nid=self.room_nid,
            type_nid=key[0] if key else MESSAGE,
            state_key_nid=key[1] if key else StateKeyNID(0),
            depth=self.events,
            outlier=False,
            rejected=False,
            rejection_reason=None,
            state_snapshot_nid=snapshot,
            auth_event_nids=(),
            prev_event_nids=(),
            json=JSON,
        )
        self.samples.append((snapshot, len(self.state)))
        return nid

    def _new_users(self, batch: Batch, count: int) -> list[StateKeyNID]:
        names = [f"@user{self.next_user + i}:example.org" for i in range(count)]
        self.next_user += count
        got = batch.state_key_nids(names)
        return [got[n] for n in names]

    def _pick_change(self, batch: Batch, joins_left: int, others_left: int) -> StateKeyTuple:
        if joins_left and self.rng.random() < joins_left / (joins_left + others_left):
            user = self._new_users(batch, 1)[0]
            self.members.append(user)
            return (MEMBER, user)
        roll = self.rng.random()
        if roll < 0.05:
            return TOPIC
        if roll < 0.08:
            return POWER_LEVELS
        return (MEMBER, self.rng.choice(self.members))

    def run(self) -> None:
        w = self.w
        with self.store.batch() as batch:
            self.room_nid = batch.insert_room("!bench:example.org", "10").room_nid
            batch.event_type_nids(["m.room.message", "m.room.topic"])  # 1024, 1025 in order
            create = (EventTypeNID(1), StateKeyNID(1))
            self.state[create] = self._event(batch, create, StateSnapshotNID(0))
            for user in self._new_users(batch, w.initial_members):
                self.members.append(user)
                key = (MEMBER, user)
                self.state[key] = self._event(batch, key, StateSnapshotNID(0))
            # The state a federation join supplies: stored in full, once.
            self.snapshot = batch.store_state(self.room_nid, self.state)
        changes_total = w.joins + w.other_changes
        remaining = w.total_events - self.events
        change_probability = changes_total / remaining
        joins_left, others_left = w.joins, w.other_changes
        while self.events < w.total_events:
            with self.store.batch() as batch:
                for _ in range(BATCH_EVENTS):
                    if self.events >= w.total_events:
                        break
                    if self.rng.random() < 1 / w.fork_every:
                        self._fork(batch)
                        continue
                    if (joins_left or others_left) and self.rng.random() < change_probability:
                        key = self._pick_change(batch, joins_left, others_left)
                        if key[0] == MEMBER and key[1] == self.members[-1] and joins_left:
                            joins_left -= 1
                        else:
                            others_left = max(0, others_left - 1)
                        self._state_event(batch, key)
                    else:
                        self._event(batch, None, self.snapshot)

    def _state_event(self, batch: Batch, key: StateKeyTuple) -> None:
        nid = self._event(batch, key, self.snapshot)
        self.state_changes += 1
        self.state = dict(self.state)
        self.state[key] = nid
        # What the processor does: the state after a state event, against the state before.
        self.snapshot = batch.store_state(
            self.room_nid, self.state, base_snapshot_nid=self.snapshot
        )

    def _fork(self, batch: Batch) -> None:
        # A side branch from the current state: a few events, maybe one state change.
        fork_state, fork_snapshot = self.state, self.snapshot
        side_changes: dict[StateKeyTuple, EventNID] = {}
        for _ in range(self.rng.randint(1, 3)):
            if self.rng.random() < 0.3:
                key = (MEMBER, self.rng.choice(self.members))
                nid = self._event(batch, key, fork_snapshot)
                self.state_changes += 1
                side_changes[key] = nid
                fork_state = fork_state | {key: nid}
                fork_snapshot = batch.store_state(
                    self.room_nid, fork_state, base_snapshot_nid=fork_snapshot
                )
            else:
                self._event(batch, None, fork_snapshot)
        # The main branch moves on meanwhile.
        for _ in range(self.rng.randint(1, 3)):
            self._event(batch, None, self.snapshot)
        # The merge: resolution keeps the side branch's changes (one possible outcome).
        if side_changes:
            self.state = self.state | side_changes
            self.snapshot = batch.store_state(
                self.room_nid, self.state, base_snapshot_nid=self.snapshot
            )
        self._event(batch, None, self.snapshot)


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def measure_loads(store: Store, samples: list[tuple[StateSnapshotNID, int]], result: Result,
                  count: int, rng: random.Random) -> None:
    big = [s for s in samples if s[0]]
    picks = [rng.choice(big) for _ in range(count)]
    clear = store.caches.clear_state  # type: ignore[attr-defined]
    for snapshot, _ in picks:  # cold: empty in-process caches before every load
        clear()
        with store.batch() as batch:
            start = time.perf_counter()
            state = batch.load_state(snapshot)
            result.cold_ms.append((time.perf_counter() - start) * 1000)
        result.state_sizes.append(len(state))
    with store.batch() as batch:  # warm the caches with every sampled snapshot
        for snapshot, _ in picks:
            batch.load_state(snapshot)
    for snapshot, _ in picks:
        with store.batch() as batch:
            start = time.perf_counter()
            batch.load_state(snapshot)
            result.warm_ms.append((time.perf_counter() - start) * 1000)


def state_bytes_postgres(url: str) -> dict[str, int]:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE state_blocks, state_snapshots")
        detail = {}
        for table in ("state_blocks", "state_snapshots"):
            row = conn.execute(
                "SELECT pg_total_relation_size(%s), pg_relation_size(%s),"
                " pg_indexes_size(%s)",
                (table, table, table),
            ).fetchone()
            assert row is not None
            detail[f"{table} total"] = row[0]
            detail[f"{table} heap"] = row[1]
            detail[f"{table} indexes"] = row[2]
            detail[f"{table} toast"] = row[0] - row[1] - row[2]
        return detail


def state_bytes_sqlite(path: str) -> dict[str, int]:
    conn = sqlite3.connect(path)
    try:
        conn.execute("VACUUM")
        detail: dict[str, int] = {}
        for table in ("state_blocks", "state_snapshots"):
            rows = conn.execute(
                "SELECT name FROM sqlite_master WHERE tbl_name = ? AND type IN ('table','index')",
                (table,),
            ).fetchall()
            total = 0
            for (name,) in rows:
                try:
                    (size,) = conn.execute(
                        "SELECT sum(pgsize) FROM dbstat WHERE name = ?", (name,)
                    ).fetchone()
                except sqlite3.OperationalError:  # no dbstat: count pages instead
                    size = None
                size = size or 0
                detail[f"{table} {name}"] = size
                total += size
            detail[f"{table} total"] = total
        return detail
    finally:
        conn.close()


@contextmanager
def scratch_postgres(server_url: str) -> Iterator[str]:
    name = f"bench_storage_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield urlunsplit(urlsplit(server_url)._replace(path=f"/{name}"))
    finally:
        with psycopg.connect(server_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def run_backend(backend: str, url: str, workload: Workload, loads: int) -> Result:
    store = open_store(url)
    store.migrate()
    driver = RoomDriver(store, workload)
    start = time.perf_counter()
    driver.run()
    result = Result(backend)
    result.write_seconds = time.perf_counter() - start
    result.events = driver.events
    result.state_changes = driver.state_changes
    with store.batch() as batch:
        final = batch.load_state(driver.snapshot)
        assert final == driver.state, "final state does not round-trip"
    measure_loads(store, driver.samples, result, loads, random.Random(2))
    store.close()
    counts = (
        "SELECT (SELECT count(*) FROM state_blocks), (SELECT count(*) FROM state_snapshots),"
        " (SELECT coalesce(sum(entry_count), 0) FROM state_blocks)"
    )
    if backend == "postgres":
        result.bytes_detail = state_bytes_postgres(url)
        with psycopg.connect(url, autocommit=True) as pg:
            row = pg.execute(
                f"{counts}, (SELECT max(cardinality(block_nids)) FROM state_snapshots)"
            ).fetchone()
    else:
        path = url.removeprefix("sqlite://")
        result.bytes_detail = state_bytes_sqlite(path)
        lite = sqlite3.connect(path)
        # SQLite packs block_nids as int64s in a BLOB.
        row = lite.execute(
            f"{counts}, (SELECT max(length(block_nids)) / 8 FROM state_snapshots)"
        ).fetchone()
        lite.close()
    assert row is not None
    result.blocks, result.snapshots, result.block_entries, result.max_blocks = row
    result.state_bytes = sum(v for k, v in result.bytes_detail.items() if k.endswith(" total"))
    return result


def report(r: Result) -> None:
    print(f"\n== {r.backend} ==")
    print(f"events {r.events:,}, state changes {r.state_changes:,}, "
          f"snapshots {r.snapshots:,}, blocks {r.blocks:,} holding {r.block_entries:,} entries")
    print(f"write: {r.write_seconds:.1f} s ({r.events / r.write_seconds:,.0f} events/s "
          "through the Store, incl. the driver's own work)")
    print(f"state storage: {r.state_bytes:,} bytes = {r.state_bytes / r.events:.1f} B/event, "
          f"{r.state_bytes / max(1, r.state_changes):.0f} B/state change "
          "(target <= 100 B/event)")
    for k, v in r.bytes_detail.items():
        print(f"    {k:40s} {v:>12,}")
    print(f"full-state loads: {len(r.cold_ms)} random events, state size "
          f"{min(r.state_sizes):,}..{max(r.state_sizes):,} entries, "
          f"at most {r.max_blocks} blocks per snapshot")
    for name, values, target in (("warm", r.warm_ms, 5), ("cold", r.cold_ms, 30)):
        print(f"    {name}: p50 {statistics.median(values):.2f} ms, "
              f"p99 {percentile(values, 99):.2f} ms (target p99 <= {target} ms)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--initial-members", type=int, default=6_000)
    parser.add_argument("--joins", type=int, default=4_000)
    parser.add_argument("--other-changes", type=int, default=900)
    parser.add_argument("--fork-every", type=int, default=50)
    parser.add_argument("--loads", type=int, default=300, help="random full-state loads")
    parser.add_argument(
        "--backends", default="sqlite,postgres", help="comma-separated: sqlite,postgres"
    )
    args = parser.parse_args()
    workload = Workload(
        args.events, args.initial_members, args.joins, args.other_changes, args.fork_every
    )
    backends = args.backends.split(",")
    print(f"workload: {workload}")
    if "sqlite" in backends:
        with tempfile.TemporaryDirectory() as tmp:
            report(run_backend("sqlite", f"sqlite://{tmp}/bench.db", workload, args.loads))
    if "postgres" in backends:
        server = os.environ.get("DATABASE_URL")
        if not server:
            print("\n== postgres == skipped: set DATABASE_URL to a PostgreSQL server")
        else:
            with scratch_postgres(server) as url:
                report(run_backend("postgres", url, workload, args.loads))


if __name__ == "__main__":
    main()
