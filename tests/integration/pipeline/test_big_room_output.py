"""A state-rewriting join into a big room (docs/architecture.md §3: "A state-rewriting join into a
big room
can list 100k state events: no output may exceed the topic's maximum message size, and such
an output must still arrive intact"; a 50,000-member room).

The join's `new_room_event` lists every state event in `adds_state_event_ids`: megabytes of
event IDs. It must come as `part`/`parts` messages sharing one `stream_position`, each within
the maximum message size, and a consumer that collects them with `schemas.output.reassemble`
and applies removes then adds must end with exactly the roomserver's current state.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from types import SimpleNamespace
from typing import Any, cast

import pytest

from processor.ingest import read_lines
from processor.nids import EventNID, EventTypeNID, StateKeyNID
from processor.pipeline.outputs import KAFKA_RECORD_OVERHEAD_BYTES, OutputBuilder, OutputTooLarge
from processor.pipeline.processor import PartitionProcessor
from processor.pipeline.types import BatchResult
from processor.storage.base import Batch, Store
from schemas.codecs import decode_output
from schemas.output import NewRoomEvent, reassemble
from tests.integration.pipeline.rooms import (
    ALICE,
    BOB,
    S3,
    Built,
    RoomBuilder,
    StoreAt,
    as_input,
    encode_lines,
    process,
    sqlite_store,
    state_of,
    store_at,
)

__all__ = ["sqlite_store", "store_at"]

#: What `ingest` allows per output message.
INGEST_MAX_MESSAGE_BYTES = 1_000_000


def _big_room(
    version: str, members: int, *, long_ids: bool = False, chain: bool = False
) -> RoomBuilder:
    """A room on other servers: the usual opening, then `members` joins. Every join hangs
    off the join rules (the DAG shape does not matter to a state-rewriting join), or with
    `chain` each follows the previous one (to be ingested as `new` events)."""
    room = RoomBuilder(version)
    room.create()
    anchor = room.tips
    pad = "x" * 180 if long_ids else ""
    for n in range(members):
        user = f"@u{n}{pad}:{S3}"
        room.event(
            user, "m.room.member", {"membership": "join"}, user, prev=None if chain else anchor,
            sign=False,
        )
    return room


def _join_inputs(room: RoomBuilder) -> tuple[list[dict[str, Any]], Built]:
    """The state as outliers (create, power levels... first: each event's auth events come
    before it), then Bob's join with `has_state`."""
    state_ids = sorted(room.state.values(), key=lambda e: room.depths[e])
    join = room.member(BOB, BOB, "join")
    items = [as_input(room.pdus[e], "outlier", room_version=room.version.id) for e in state_ids]
    items.append(
        as_input(join, room_version=room.version.id, has_state=True, state_event_ids=state_ids)
    )
    return items, join


def _consume(lines: Sequence[bytes], room_id: str) -> tuple[dict[str, str], list[NewRoomEvent]]:
    """A consumer: collect the parts of each stream position, reassemble, apply removes
    then adds. Returns its state (event ID -> event ID set, as a dict for comparison) and
    the parts of the last output."""
    state: set[str] = set()
    parts: list[NewRoomEvent] = []
    last: list[NewRoomEvent] = []
    for line in lines:
        output = decode_output(line)
        assert isinstance(output, NewRoomEvent)
        assert output.room_id == room_id
        parts.append(output)
        if output.part < output.parts:
            continue
        whole = reassemble(parts)
        state.difference_update(whole.removes_state_event_ids)
        state.update(whole.adds_state_event_ids)
        last, parts = parts, []
    assert parts == [], "an output's parts were left incomplete"
    return {e: e for e in state}, last


def test_join_into_a_50k_member_room_arrives_intact(sqlite_store: StoreAt) -> None:
    store = sqlite_store.store
    room = _big_room("10", 50_000)
    items, join = _join_inputs(room)
    done = process(store, items, batch_size=5_000)

    assert done.summary.dead_letters == []
    assert done.outcome(join) == "accepted"
    assert all(len(line) <= INGEST_MAX_MESSAGE_BYTES for line in done.lines)
    consumer, parts = _consume(done.lines, room.room_id)
    assert len(parts) > 1, "50,000 event IDs cannot fit one 1 MB message"
    assert {p.stream_position for p in parts} == {parts[0].stream_position}
    assert [p.part for p in parts] == list(range(1, len(parts) + 1))
    assert parts[0].event is not None and bytes(parts[0].event) != b"null"
    assert all(p.rewrites_state for p in parts)
    assert all(p.latest_event_ids == [join.event_id] for p in parts)

    expected = set(room.state.values())
    assert len(expected) == 50_000 + 4 + 1
    assert set(consumer) == expected
    assert set(state_of(store, room.room_id).values()) == expected


def _handle_with_limit(
    store: Store, items: list[dict[str, Any]], max_message_bytes: int, server_name: str = ""
) -> list[bytes]:
    """The handler with an output topic of a small `max.message.bytes`."""
    processor = PartitionProcessor(server_name, max_message_bytes=max_message_bytes)
    messages = list(read_lines(io.BytesIO(encode_lines(items))))
    with store.batch() as batch:
        result = processor.process(batch, messages)
    assert result.dead_letters == []
    return processor.take_outputs()


@pytest.mark.parametrize("long_ids", [False, True], ids=["short-ids", "long-user-ids"])
def test_every_part_fits_a_small_message_limit(store_at: StoreAt, long_ids: bool) -> None:
    """The same with 1,500 members and a 40 kB limit, on both backends; with long state
    keys the events are bigger but the IDs are not, which the split must not confuse."""
    store = store_at.store
    room = _big_room("11", 1_500, long_ids=long_ids)
    items, join = _join_inputs(room)
    limit = 40_000
    lines = _handle_with_limit(store, items, limit)
    assert all(len(line) <= limit for line in lines), max(len(line) for line in lines)
    consumer, parts = _consume(lines, room.room_id)
    assert len(parts) > 1
    assert set(consumer) == set(room.state.values())
    assert set(state_of(store, room.room_id).values()) == set(room.state.values())
    del join


def test_a_rewrite_of_a_known_room_removes_then_adds_in_parts(store_at: StoreAt) -> None:
    """Bob's server already had the room with 600 members and left; the rejoin brings a state
    where 600 other users are members: the output removes the old members and adds the new."""
    store = store_at.store
    room = _big_room("10", 600, chain=True)
    before_leave = [as_input(room.pdus[e]) for e in sorted(
        room.state.values(), key=lambda e: room.depths[e])]
    bob_join = room.member(BOB, BOB, "join")
    bob_leave = room.member(BOB, BOB, "leave")
    first = _handle_with_limit(
        store, [*before_leave, as_input(bob_join), as_input(bob_leave)], 20_000
    )
    # Meanwhile the old members leave and new ones join (unseen by Bob's server).
    anchor = room.tips
    for n in range(600):
        user = f"@u{n}:{S3}"
        room.event(user, "m.room.member", {"membership": "leave"}, user, prev=anchor)
        other = f"@v{n}:{S3}"
        room.event(other, "m.room.member", {"membership": "join"}, other, prev=anchor)
    room.event(ALICE, "m.room.name", {"name": "moved on"}, "", prev=anchor)
    items, _ = _join_inputs(room)
    second = _handle_with_limit(store, items, 20_000)
    assert all(len(line) <= 20_000 for line in first + second)
    consumer, parts = _consume(first + second, room.room_id)
    assert len(parts) > 1
    assert sum(len(p.removes_state_event_ids) for p in parts) >= 600
    assert set(consumer) == set(room.state.values())
    assert set(state_of(store, room.room_id).values()) == set(room.state.values())


# ---------------------------------------------------------------- the split, measured


class _Room:
    """The little of `TrackedRoom` that `OutputBuilder` reads."""

    def __init__(self) -> None:
        self.record = SimpleNamespace(room_id="!big:" + S3)
        self.version = SimpleNamespace(id="1")
        self.position = 41

    def next_stream_position(self) -> int:
        self.position += 1
        return self.position


def _build(limit: int, event_json: bytes, ids: dict[EventNID, str], *, latest: int,
           removed: int, transaction_id: str) -> tuple[list[bytes], list[str]]:
    builder = OutputBuilder(0, max_message_bytes=limit, sink="memory")
    builder.begin(cast(Batch, object()), BatchResult())
    nids = list(ids)
    added = {(EventTypeNID(5), StateKeyNID(n)): n for n in nids[removed:]}
    gone = {(EventTypeNID(5), StateKeyNID(n)): n for n in nids[:removed]}
    item = SimpleNamespace(send_as_server=S3, transaction_id=transaction_id)
    builder.new_room_event(
        cast(Any, _Room()), cast(Any, SimpleNamespace(json=event_json, event_id="$e")),
        cast(Any, item), latest=nids[:latest], added=added, removed=gone,
        rewrites_state=False, history_visibility="shared", event_ids=ids,
        last_sent_event_id=None,
    )
    return builder.take(), [ids[n] for n in nids]


def test_parts_are_measured_not_estimated() -> None:
    """Long `latest_event_ids`, a long transaction ID, a 60 kB event and v1-style event IDs
    whose JSON is longer than their characters (non-ASCII, escapes): every message still
    fits, with room for the Kafka record around it."""
    ids = {
        EventNID(n): f"$é\"\\\u0001{n}:{S3}" if n % 2 else f"$ev{n}:{S3}"
        for n in range(1, 4001)
    }
    event_json = b'{"type":"m.room.message","content":{"body":"' + b"x" * 60_000 + b'"}}'
    limit = 100_000
    lines, order = _build(limit, event_json, ids, latest=150, removed=1000,
                          transaction_id="t" * 5000)
    assert len(lines) > 1
    assert all(len(line) <= limit - KAFKA_RECORD_OVERHEAD_BYTES for line in lines)
    parts = [decode_output(line) for line in lines]
    assert all(isinstance(p, NewRoomEvent) for p in parts)
    whole = reassemble(cast(list[NewRoomEvent], parts))
    # Both lists come in event ID order (a replay gives the same bytes).
    assert whole.removes_state_event_ids == sorted(order[:1000])
    assert whole.adds_state_event_ids == sorted(order[1000:])
    assert whole.transaction_id == "t" * 5000
    assert len(whole.latest_event_ids) == 150


def test_an_output_that_cannot_fit_is_a_clear_error() -> None:
    ids = {EventNID(n): f"$ev{n}:{S3}" for n in range(1, 100)}
    with pytest.raises(OutputTooLarge, match=r"max\.message\.bytes"):
        _build(8_000, b"{}", ids, latest=1, removed=0, transaction_id="t" * 8_000)
