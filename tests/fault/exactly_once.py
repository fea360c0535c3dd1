"""The exactly-once checks shared by the fault tests.

The reference is the same input through `ingest` (SQLite, one process, no Kafka, no
faults). After any faults, the service must have put on the output topic every output of the
reference exactly once, in order per room (`stream_position` 1..n, no gap, no duplicate —
docs/architecture.md §3), every dead letter exactly once, and reached the reference's room state.
"""

from __future__ import annotations

import asyncio
import base64
import io
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec
from aiokafka import AIOKafkaProducer

from processor.generate import generate
from processor.generate.traffic import write_jsonl
from processor.ingest import ingest, read_lines
from processor.room_state import room_state_lines
from processor.storage import open_store
from processor.storage.base import Store
from processor.stream.outbox_relay import SEQ_HEADER
from tests.integration.stream.topic_reader import outputs_by_room
from tests.integration.stream.topic_reader import read_topic as read_committed


def traffic_jsonl(rooms: int, events: int, version: str, seed: int) -> list[bytes]:
    """Generated input lines (signed, realistic rooms with forks and rejections)."""
    text = io.StringIO()
    write_jsonl(generate(rooms=rooms, events=events, room_version=version, seed=seed), text)
    return text.getvalue().encode().splitlines()


def malformed_inputs(room_ids: Iterable[str]) -> list[bytes]:
    """One bad input per room, keyed to the room's partition: it must reach the dead-letter
    topic once, without blocking the room."""
    return [
        msgspec.json.encode({"kind": "sideways", "event": {"room_id": room_id}})
        for room_id in sorted(room_ids)
    ]


def line_room_id(line: bytes) -> str:
    room_id = msgspec.json.decode(line)["event"].get("room_id")
    return room_id if isinstance(room_id, str) else ""


async def produce_by_room(bootstrap_servers: str, topic: str, lines: list[bytes]) -> None:
    """Publish input lines keyed by room ID, as a producer service does (docs/architecture.md
    §3)."""
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap_servers,
        enable_idempotence=True,
        linger_ms=5,
        max_request_size=2 * 1024 * 1024,
    )
    try:
        await producer.start()
        pending = [
            await producer.send(topic, line, key=line_room_id(line).encode()) for line in lines
        ]
        await asyncio.gather(*pending)
    finally:
        await producer.stop()


def room_ids(lines: list[bytes]) -> set[str]:
    found: set[str] = set()
    for line in lines:
        room_id = msgspec.json.decode(line)["event"].get("room_id")
        if room_id:
            found.add(room_id)
    return found


@dataclass
class Reference:
    """What a clean run of the input produces."""

    store: Store
    outputs: list[bytes]

    def close(self) -> None:
        self.store.close()


def clean_run(lines: list[bytes], path: Path) -> Reference:
    store = open_store(str(path))
    out = io.BytesIO()
    ingest(store, read_lines(io.BytesIO(b"\n".join(lines) + b"\n")), output=out)
    return Reference(store, out.getvalue().splitlines())


@dataclass(frozen=True)
class Record:
    partition: int
    offset: int
    value: bytes
    headers: dict[str, bytes]


async def read_topic(bootstrap_servers: str, topic: str, partitions: int) -> list[Record]:
    """Every committed record of `topic`, from the beginning to the end offsets seen at the
    start, partition by partition in offset order."""
    return [
        Record(r.partition, r.offset, r.value or b"", dict(r.headers or ()))
        for r in await read_committed(bootstrap_servers, topic, partitions)
    ]


def check_relay_order(records: list[Record]) -> None:
    """Within a partition the relay's `seq` headers strictly increase: nothing sent twice."""
    last: dict[int, int] = {}
    ordered = sorted(records, key=lambda r: (r.partition, r.offset))
    for i, r in enumerate(ordered):
        seq = int(r.headers[SEQ_HEADER])
        if seq <= last.get(r.partition, 0):
            around = [
                (x.partition, x.offset, int(x.headers[SEQ_HEADER]), x.headers.get("room_id"))
                for x in ordered[max(0, i - 30) : i + 10]
            ]
            raise AssertionError(
                f"partition {r.partition} offset {r.offset}: seq {seq} after "
                f"{last[r.partition]} (an outbox row was published twice or out of order); "
                f"(partition, offset, seq, room) around it: {around}"
            )
        last[r.partition] = seq


def check_outputs(records: list[Record], expected: list[bytes]) -> None:
    """Every expected output exactly once, in order per room, and nothing else."""
    check_relay_order(records)
    got = outputs_by_room(r.value for r in records)
    for room_id, messages in got.items():
        positions = [m["stream_position"] for m in messages]
        duplicated = sorted(p for p, n in Counter(positions).items() if n > 1)
        assert not duplicated, f"room {room_id}: stream positions {duplicated} appear twice"
        assert positions == list(range(1, len(positions) + 1)), (
            f"room {room_id}: stream positions out of order or with gaps: {positions}"
        )
    want = outputs_by_room(expected)
    assert sorted(got) == sorted(want), "the output topic's rooms differ from a clean run's"
    for room_id, messages in want.items():
        assert len(got[room_id]) == len(messages), (
            f"room {room_id}: {len(got[room_id])} outputs, a clean run has {len(messages)}"
        )
        for position, (have, want_one) in enumerate(zip(got[room_id], messages, strict=True)):
            assert have == want_one, (
                f"room {room_id}: output {position + 1} differs from a clean run's: "
                + "; ".join(
                    f"{key}: {have.get(key)!r} != {want_one.get(key)!r}"
                    for key in sorted(set(have) | set(want_one))
                    if have.get(key) != want_one.get(key)
                )
            )


def check_prefix(records: list[Record], expected: list[bytes]) -> None:
    """What the topic holds is, room by room, the start of a clean run's outputs."""
    check_relay_order(records)
    got = outputs_by_room(r.value for r in records)
    want = outputs_by_room(expected)
    for room_id, messages in got.items():
        assert room_id in want, f"room {room_id} is not in a clean run's outputs"
        assert [m["stream_position"] for m in messages] == list(range(1, len(messages) + 1))
        for have, want_one in zip(messages, want[room_id], strict=False):
            if have.get("last_sent_event_id", "") is None:  # see check_outputs
                want_one = {**want_one, "last_sent_event_id": None}
            assert have == want_one, f"room {room_id}: output {have['stream_position']} differs"


def check_dead_letters(records: list[Record], bad_inputs: list[bytes]) -> None:
    """Each bad input on the dead-letter topic once, naming its source."""
    check_relay_order(records)
    letters = [msgspec.json.decode(r.value) for r in records]
    sources = Counter((d["partition"], d["offset"]) for d in letters)
    assert all(n == 1 for n in sources.values()), f"dead letters repeated: {sources}"
    originals = sorted(base64.b64decode(d["original"]) for d in letters)
    assert originals == sorted(bad_inputs)


def check_same_state(store: Store, reference: Store, rooms: Iterable[str]) -> None:
    """Each room's current state, and its state after every event, equal the clean run's."""

    def states(source: Store, room_id: str) -> tuple[list[dict[str, Any]], list[Any]]:
        current = list(room_state_lines(source, room_id, at=None, before=False, all_events=False))
        # Event NIDs (the listing order) depend on how the work was batched; event IDs don't.
        every = sorted(
            room_state_lines(source, room_id, at=None, before=False, all_events=True),
            key=lambda line: str(line["event_id"]),
        )
        return current, every

    for room_id in sorted(rooms):
        assert states(store, room_id) == states(reference, room_id), (
            f"room {room_id}: state differs from a clean run's"
        )
