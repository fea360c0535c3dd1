"""Two batches storing the same state at once (two partitions, in one process or two) both
commit, the first time: the second adopts the rows the first committed (ON CONFLICT on the
unique hashes, processor/storage/state.py) instead of failing on them and being retried.

PostgreSQL only: SQLite runs one batch at a time, so its batches cannot race.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass

import psycopg
import pytest

from processor.nids import EventNID, EventTypeNID, RoomNID, StateKeyNID, StateSnapshotNID
from processor.storage import open_store
from processor.storage.base import Batch, Store
from tests.integration.storage.helpers import State, add_event, add_room, member_events

pytestmark = pytest.mark.integration

MEMBER = EventTypeNID(5)
NONE = StateSnapshotNID(0)
NO_EVENT = EventNID(0)


@dataclass
class Side:
    """What one racing batch stored, and the NIDs it was handed."""

    room_nid: RoomNID
    base: StateSnapshotNID  # committed before the race, different for each side
    stored_event: EventNID  # committed before the race
    # Set by `_race`:
    empty: StateSnapshotNID = NONE
    shared: StateSnapshotNID = NONE
    delta: StateSnapshotNID = NONE
    event: EventNID = NO_EVENT


@pytest.fixture(params=["one store", "two stores"])
def stores(request: pytest.FixtureRequest, database_url: str) -> Iterator[tuple[Store, Store]]:
    """The racing batches' stores: one shared by two threads (two partitions of one process)
    or one each (two processes)."""
    first = open_store(database_url)
    first.migrate()
    second = first if request.param == "one store" else open_store(database_url)
    try:
        yield first, second
    finally:
        first.close()
        if second is not first:
            second.close()


def _prepare(store: Store) -> tuple[Side, Side, State, EventNID]:
    """Two rooms with different committed states, and one committed event both sides put
    into the state they race on."""
    with store.batch() as batch:
        sides = []
        for name in ("a", "b"):
            room = add_room(batch, f"!{name}:example.org").room_nid
            base = batch.store_state(room, member_events(batch, room, 20, prefix=name))
            stored = add_event(batch, room, f"${name}-outlier")
            sides.append(Side(room, base, stored))
        shared_event = add_event(batch, sides[0].room_nid, "$shared", type_nid=5, state_key_nid=1)
    shared: State = {(MEMBER, StateKeyNID(1)): shared_event}
    return sides[0], sides[1], shared, shared_event


def _race(batch: Batch, side: Side, shared: State, shared_event: EventNID) -> None:
    # Identical content on both sides: a snapshot of the empty state, a snapshot of the
    # same one-entry state (its block too), and the same delta block on different bases.
    side.empty = batch.store_state(side.room_nid, {})
    side.shared = batch.store_state(side.room_nid, shared)
    side.delta = batch.store_state_delta(
        side.room_nid, side.base, {(MEMBER, StateKeyNID(1)): shared_event}
    )
    # Rows naming the snapshots: a new event, a stored event, the room.
    side.event = add_event(
        batch, side.room_nid, f"$after-{side.room_nid}", snapshot=side.shared
    )
    batch.update_event(side.stored_event, outlier=False, state_snapshot_nid=side.empty)
    batch.update_room(
        side.room_nid,
        forward_extremities=[side.event],
        current_snapshot_nid=side.shared,
        last_stream_position=1,
    )


def test_two_batches_storing_the_same_state_at_once_both_commit(
    stores: tuple[Store, Store], database_url: str
) -> None:
    a, b, shared, shared_event = _prepare(stores[0])
    # Both batches are open, with their state stored, before either commits.
    barrier = threading.Barrier(2, timeout=30)
    errors: list[BaseException] = []

    def run(store: Store, side: Side) -> None:
        try:
            with store.batch() as batch:
                _race(batch, side, shared, shared_event)
                barrier.wait()
        except BaseException as e:  # collected and re-raised in the test thread
            errors.append(e)
            barrier.abort()

    threads = [
        threading.Thread(target=run, args=(stores[0], a)),
        threading.Thread(target=run, args=(stores[1], b)),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    # Neither saw the other's uncommitted rows: both were handed their own NIDs.
    assert a.empty != b.empty and a.shared != b.shared

    with psycopg.connect(database_url, autocommit=True) as pg:
        # Each content stored once, and every reference points at a stored row.
        empty_rows = pg.execute(
            "SELECT count(*) FROM state_snapshots WHERE cardinality(block_nids) = 0"
        ).fetchone()
        assert empty_rows == (1,)
        dangling = pg.execute(
            "SELECT 'event', event_nid FROM events WHERE state_snapshot_nid <> 0"
            " AND state_snapshot_nid NOT IN (SELECT state_snapshot_nid FROM state_snapshots)"
            " UNION ALL SELECT 'room', room_nid FROM rooms WHERE current_snapshot_nid <> 0"
            " AND current_snapshot_nid NOT IN (SELECT state_snapshot_nid FROM state_snapshots)"
            " UNION ALL SELECT 'snapshot', state_snapshot_nid FROM state_snapshots s"
            " WHERE EXISTS (SELECT 1 FROM unnest(s.block_nids) b WHERE b NOT IN"
            "  (SELECT state_block_nid FROM state_blocks))"
        ).fetchall()
        assert dangling == []
        stored: dict[int, int] = dict(
            pg.execute(
                "SELECT event_nid, state_snapshot_nid FROM events WHERE event_nid = ANY(%s)",
                ([a.event, b.event, a.stored_event, b.stored_event],),
            ).fetchall()
        )
    # Both sides' rows name the one stored snapshot of each content.
    assert stored[a.event] == stored[b.event]
    assert stored[a.stored_event] == stored[b.stored_event]

    # NIDs handed out before the commit stay usable in later batches of the same store,
    # as callers keep them (a room's current state, an event's state before).
    for store, side in ((stores[0], a), (stores[1], b)):
        with store.batch() as batch:
            assert batch.load_state(side.empty) == {}
            assert batch.load_state(side.shared) == shared
            assert batch.load_state_entries(side.delta, shared) == shared
            assert batch.state_difference(side.empty, side.shared) == ({}, shared)
            nid = add_event(batch, side.room_nid, f"$later-{side.room_nid}", snapshot=side.shared)
            grown = dict(shared) | {(MEMBER, StateKeyNID(2)): nid}
            assert batch.load_state(
                batch.store_state(side.room_nid, grown, base_snapshot_nid=side.shared)
            ) == grown
    with psycopg.connect(database_url, autocommit=True) as pg:
        later = pg.execute(
            "SELECT DISTINCT state_snapshot_nid FROM events WHERE event_id LIKE '$later-%'"
        ).fetchall()
    assert later == [(stored[a.event],)]
    # Another process reads everything back.
    other = open_store(database_url)
    try:
        with other.batch() as batch:
            for side in (a, b):
                room = batch.select_room_by_nid(side.room_nid)
                assert batch.load_state(room.current_snapshot_nid) == shared
                event = batch.select_events([side.stored_event])[side.stored_event]
                assert batch.load_state(event.state_snapshot_nid) == {}
    finally:
        other.close()
