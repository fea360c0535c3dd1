"""Benchmark: the query API (`roomserver serve`) on PostgreSQL.

Workload: one room of 10,000 members and 100,000 events (v10; 10,000 joins, then messages
with a two-branch fork and merge every 50 events), plus `--small-rooms` rooms of 20
events, built with the pipeline tests' PDU factory (unsigned: the roomserver does not check
signatures, the federation service does) and ingested through the pipeline. Then
`roomserver serve` runs in its own process(es) and a client measures, over HTTP:

- p50/p99 of latest events and state of the big room (selected keys, as a client service
  asks to build an event; and the whole 10,000-member state);
- p50/p99 of state and auth chain as IDs at recent events of the big room;
- p50/p99 of missing events, limit 20;
- throughput of mixed small queries (room version, membership for user, events by ID,
  latest events with selected keys, missing events) from concurrent clients.

    DATABASE_URL=postgresql://user@host:port/postgres .venv/bin/python \\
        tests/benchmarks/bench_query.py [--events 100000 --members 10000 --workers 2]

A scratch database is created on that server and dropped afterwards (`--keep` keeps it).
"""

from __future__ import annotations

import argparse
import io
import os
import random
import socket
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec
import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from processor.generate.pdus import PduFactory
from processor.ingest import ingest, read_lines
from processor.matrix.room_versions import room_version
from processor.storage import open_store
from schemas import query as q
from schemas.client import QueryClient

VERSION = room_version("10")
SERVERS = ["a.test", "b.test", "c.test"]


class Room:
    def __init__(self, name: str) -> None:
        self.factory = PduFactory(VERSION)
        self.room_id = f"!{name}:a.test"
        self.state: dict[tuple[str, str], str] = {}
        self.depth: dict[str, int] = {}
        self.tips: list[str] = []
        self.lines: list[bytes] = []
        self.ts = 1_700_000_000_000
        self.messages: list[str] = []

    def event(
        self, sender: str, etype: str, content: dict[str, Any], state_key: str | None = None,
        prev: list[str] | None = None,
    ) -> str:
        prevs = list(self.tips if prev is None else prev)
        auth: list[str] = []
        for key in (("m.room.create", ""), ("m.room.power_levels", ""), ("m.room.member", sender)):
            if key in self.state:
                auth.append(self.state[key])
        if etype == "m.room.member" and state_key is not None:
            if ("m.room.member", state_key) in self.state and state_key != sender:
                auth.append(self.state[("m.room.member", state_key)])
            if ("m.room.join_rules", "") in self.state:
                auth.append(self.state[("m.room.join_rules", "")])
        depth = max((self.depth[p] for p in prevs), default=0) + 1
        self.ts += 1
        pdu, event_id = self.factory.build(
            room_id=self.room_id, sender=sender, event_type=etype, content=content,
            state_key=state_key, prev_event_ids=prevs, auth_event_ids=auth, depth=depth,
            origin_server_ts=self.ts, signers=[], opaque_event_id=None, redacts=None,
        )
        self.depth[event_id] = depth
        self.lines.append(msgspec.json.encode({"kind": "new", "event": pdu}))
        if prev is None:
            self.tips = [event_id]
        if state_key is not None:
            self.state[(etype, state_key)] = event_id
        return event_id

    def opening(self, creator: str) -> None:
        self.event(creator, "m.room.create", {"room_version": "10", "creator": creator}, "")
        self.event(creator, "m.room.member", {"membership": "join"}, creator)
        self.event(creator, "m.room.power_levels", {"users": {creator: 100}}, "")
        self.event(creator, "m.room.join_rules", {"join_rule": "public"}, "")
        self.event(creator, "m.room.history_visibility", {"history_visibility": "shared"}, "")


def build(members: int, events: int, small_rooms: int, seed: int) -> tuple[Room, list[Room]]:
    rng = random.Random(seed)
    big = Room("big")
    creator = "@creator:a.test"
    big.opening(creator)
    users = [f"@u{i}:{SERVERS[i % 3]}" for i in range(members)]
    for user in users:
        big.event(user, "m.room.member", {"membership": "join"}, user)
    while len(big.lines) < events:
        if len(big.lines) % 50 == 0:
            # A fork: two branches of one message each, merged by a third.
            base = list(big.tips)
            a = big.event(rng.choice(users), "m.room.message", {"body": "a"}, prev=base)
            b = big.event(rng.choice(users), "m.room.message", {"body": "b"}, prev=base)
            big.tips = [a, b]
        big.messages.append(
            big.event(rng.choice(users), "m.room.message", {"msgtype": "m.text", "body": "hi"})
        )
    small = []
    for n in range(small_rooms):
        room = Room(f"small{n}")
        owner = f"@owner{n}:a.test"
        room.opening(owner)
        for i in range(5):
            user = f"@s{n}x{i}:{SERVERS[i % 3]}"
            room.event(user, "m.room.member", {"membership": "join"}, user)
        while len(room.lines) < 20:
            room.messages.append(room.event(owner, "m.room.message", {"body": "x"}))
        small.append(room)
    return big, small


def percentiles(samples: list[float]) -> str:
    samples = sorted(samples)
    p50 = statistics.median(samples) * 1000
    p99 = samples[min(len(samples) - 1, int(len(samples) * 0.99))] * 1000
    return f"p50 {p50:6.2f} ms  p99 {p99:6.2f} ms  (n={len(samples)})"


def timed(call: Callable[[], object], n: int) -> list[float]:
    call()  # warm
    out = []
    for _ in range(n):
        t = time.perf_counter()
        call()
        out.append(time.perf_counter() - t)
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000, help="events of the big room")
    parser.add_argument("--members", type=int, default=10_000, help="members of the big room")
    parser.add_argument("--small-rooms", type=int, default=500, help="rooms of 20 events")
    parser.add_argument("--workers", type=int, default=2, help="serve worker processes")
    parser.add_argument("--clients", type=int, default=8, help="concurrent clients (mixed)")
    parser.add_argument("--seconds", type=float, default=10.0, help="mixed load duration")
    parser.add_argument("--samples", type=int, default=300, help="samples per latency figure")
    parser.add_argument("--database", help="reuse this already-filled database URL")
    parser.add_argument("--keep", action="store_true", help="keep the scratch database")
    args = parser.parse_args()
    server_url = os.environ.get("DATABASE_URL")
    if not server_url and not args.database:
        print("set DATABASE_URL to a PostgreSQL server (a scratch database is made there)")
        return 2

    started = time.perf_counter()
    big, small = build(args.members, args.events, args.small_rooms, 1)
    print(f"built {len(big.lines)} + {sum(len(r.lines) for r in small)} events "
          f"in {time.perf_counter() - started:.0f} s", flush=True)
    if args.database:
        url = args.database
    else:
        assert server_url is not None
        name = f"bench_query_{uuid.uuid4().hex[:8]}"
        with psycopg.connect(server_url, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        url = server_url.rsplit("/", 1)[0] + "/" + name
        store = open_store(url)
        started = time.perf_counter()
        try:
            payload = b"\n".join(big.lines + [line for r in small for line in r.lines])
            summary = ingest(store, read_lines(io.BytesIO(payload)), batch_size=1000)
        finally:
            store.close()
        print(f"ingested {summary.events} events in {time.perf_counter() - started:.0f} s",
              flush=True)

    port = free_port()
    env = {**os.environ, "DATABASE_URL": url}
    server = subprocess.Popen(
        [sys.executable, "-m", "processor.cli", "serve", "--port", str(port),
         "--workers", str(args.workers)],
        env=env,
    )
    try:
        client = QueryClient(f"http://127.0.0.1:{port}")
        deadline = time.monotonic() + 60
        while True:
            try:
                client.supported_room_versions()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                client.close()
                time.sleep(0.2)  # the server process is starting (not a test)
        figures(client, big, small, args, port)
    finally:
        server.terminate()
        server.wait(30)
        if not args.database and not args.keep:
            with psycopg.connect(server_url, autocommit=True) as conn:  # type: ignore[arg-type]
                conn.execute(f'DROP DATABASE "{url.rsplit("/", 1)[1]}" WITH (FORCE)')
        elif args.keep:
            print(f"kept {url}")
    return 0


def figures(
    client: QueryClient, big: Room, small: list[Room], args: argparse.Namespace, port: int
) -> None:
    rng = random.Random(2)
    n = args.samples
    keys = [("m.room.create", ""), ("m.room.power_levels", ""), ("m.room.join_rules", ""),
            ("m.room.member", "@u7:b.test")]
    selected = q.LatestEventsAndStateRequest(room_id=big.room_id, state_keys=keys)
    print("latest events and state, big room, 4 keys:   ",
          percentiles(timed(lambda: client.latest_events_and_state(selected), n)))
    whole = q.LatestEventsAndStateRequest(room_id=big.room_id)
    print("latest events and state, big room, whole:    ",
          percentiles(timed(lambda: client.latest_events_and_state(whole), max(50, n // 5))))
    recent = big.messages[-2000:]

    def state_ids() -> None:
        client.state_and_auth_chain(q.StateAndAuthChainRequest(
            room_id=big.room_id, event_id=rng.choice(recent), ids_only=True))
    print("state and auth chain (IDs), big room:        ",
          percentiles(timed(state_ids, max(50, n // 5))))

    def missing() -> None:
        latest = rng.choice(big.messages[-50_000:])
        client.missing_events(q.MissingEventsRequest(
            room_id=big.room_id, latest_events=[latest], server_name="b.test", limit=20))
    print("missing events, limit 20, big room:          ", percentiles(timed(missing, n)))

    # Mixed small queries from concurrent clients.
    def one(c: QueryClient, r: random.Random) -> None:
        room = r.choice(small)
        kind = r.randrange(5)
        if kind == 0:
            c.room_version(q.RoomVersionRequest(room_id=room.room_id))
        elif kind == 1:
            user = next(iter(k[1] for k in room.state if k[0] == "m.room.member"))
            c.membership_for_user(q.MembershipForUserRequest(room_id=room.room_id, user_id=user))
        elif kind == 2:
            c.events(q.EventsRequest(event_ids=r.sample(room.messages, 3)))
        elif kind == 3:
            c.latest_events_and_state(q.LatestEventsAndStateRequest(
                room_id=room.room_id, state_keys=keys[:3]))
        else:
            c.missing_events(q.MissingEventsRequest(
                room_id=room.room_id, latest_events=[room.messages[-1]], server_name="a.test",
                limit=5))

    counts = [0] * args.clients
    stop = time.monotonic() + args.seconds

    def worker(i: int) -> None:
        c = QueryClient(f"http://127.0.0.1:{port}")
        r = random.Random(i)
        while time.monotonic() < stop:
            one(c, r)
            counts[i] += 1
        c.close()

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(args.clients)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    rate = sum(counts) / (time.perf_counter() - started)
    print(f"mixed small queries, {args.clients} clients, {args.workers} workers: "
          f"{rate:,.0f} queries/s")


if __name__ == "__main__":
    raise SystemExit(main())
