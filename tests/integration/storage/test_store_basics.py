"""Storage contract, part 1: numeric IDs, rooms, events, migrations, transactions.

Runs on SQLite and PostgreSQL through the `store` fixture. NID rules
(processor/nids.py): never 0, preassigned well-known types and the empty state key,
stable forever.
"""

from __future__ import annotations

import threading

import pytest

from processor.errors import CorruptState, StorageError
from processor.nids import (
    PREASSIGNED_EVENT_TYPE_NIDS,
    PREASSIGNED_STATE_KEY_NIDS,
    EventNID,
    EventTypeNID,
    RoomNID,
    StateKeyNID,
    StateSnapshotNID,
)
from processor.storage import open_store
from processor.storage.base import Store
from processor.storage.schema import load_migrations
from tests.integration.storage.conftest import EmptyDatabase, StoreUnderTest
from tests.integration.storage.helpers import add_event, add_room

# -- NIDs --------------------------------------------------------------------------------------


def test_preassigned_nids_are_in_place(store: StoreUnderTest) -> None:
    with store.store.batch() as batch:
        assert batch.event_type_nids(PREASSIGNED_EVENT_TYPE_NIDS) == PREASSIGNED_EVENT_TYPE_NIDS
        assert batch.state_key_nids(PREASSIGNED_STATE_KEY_NIDS) == PREASSIGNED_STATE_KEY_NIDS
        names = batch.event_type_names(PREASSIGNED_EVENT_TYPE_NIDS.values())
        assert names == {nid: name for name, nid in PREASSIGNED_EVENT_TYPE_NIDS.items()}
        assert batch.state_key_names([StateKeyNID(1)]) == {1: ""}


def test_new_names_get_distinct_nonzero_nids_that_never_change(store: StoreUnderTest) -> None:
    names = ["m.room.message", "m.reaction", "org.example.custom", "m.room.message"]
    with store.store.batch() as batch:
        first = batch.event_type_nids(names)
        keys = batch.state_key_nids(["@alice:example.org", "@bob:example.org"])
    assert set(first) == set(names)
    assert len(set(first.values())) == 3
    assert all(nid > 0 for nid in [*first.values(), *keys.values()])
    assert not set(first.values()) & set(PREASSIGNED_EVENT_TYPE_NIDS.values())
    # The same from another process with cold caches, and names looked up by NID.
    with store.reopen().batch() as batch:
        assert batch.event_type_nids(reversed(names)) == first
        assert batch.event_type_names(first.values()) == {v: k for k, v in first.items()}
        assert batch.state_key_names(keys.values()) == {v: k for k, v in keys.items()}
        assert batch.select_state_key_nids(["@alice:example.org", "@nobody:x"]) == {
            "@alice:example.org": keys["@alice:example.org"]
        }


def test_unknown_type_nid_is_corrupt_state(store: StoreUnderTest) -> None:
    with store.store.batch() as batch, pytest.raises(CorruptState, match="987654"):
        batch.event_type_names([EventTypeNID(987654)])


def test_nids_from_a_rolled_back_batch_are_not_remembered(store: StoreUnderTest) -> None:
    with pytest.raises(RuntimeError), store.store.batch() as batch:
        lost = batch.event_type_nids(["m.lost"])["m.lost"]
        raise RuntimeError("processing failed")
    with store.store.batch() as batch:
        nid = batch.event_type_nids(["m.lost"])["m.lost"]
    with store.reopen().batch() as batch:
        assert batch.event_type_names([nid]) == {nid: "m.lost"}
    assert nid > 0
    del lost  # PostgreSQL never reuses it (sequences); SQLite may, as its row is gone too


# -- rooms -------------------------------------------------------------------------------------


def test_room_round_trip(store: StoreUnderTest) -> None:
    with store.store.batch() as batch:
        assert batch.select_room("!room:example.org") is None
        room = add_room(batch)
        assert room.room_nid > 0
        assert room.forward_extremities == ()
        assert room.current_snapshot_nid == 0 and room.last_stream_position == 0
        assert batch.select_room("!room:example.org") == room
    with store.store.batch() as batch:
        batch.update_room(
            room.room_nid,
            forward_extremities=[EventNID(7), EventNID(3)],
            current_snapshot_nid=StateSnapshotNID(0),
            last_stream_position=12,
        )
        seen = batch.select_room("!room:example.org")  # the batch sees its own update
        assert seen is not None and seen.forward_extremities == (7, 3)
    with store.reopen().batch() as batch:
        again = batch.select_room("!room:example.org")
        assert again is not None
        assert again.forward_extremities == (7, 3)
        assert again.last_stream_position == 12
        assert again.room_version == "10"
        assert batch.select_room_by_nid(room.room_nid) == again
        with pytest.raises(CorruptState, match="room NID 999"):
            batch.select_room_by_nid(RoomNID(999))


# -- events ------------------------------------------------------------------------------------


def test_event_round_trip(store: StoreUnderTest) -> None:
    body = b'{"type":"m.room.message","content":{"body":"caf\xc3\xa9 \\u0000"}}'
    with store.store.batch() as batch:
        room = add_room(batch)
        create = add_event(batch, room.room_nid, "$create", type_nid=1, state_key_nid=1)
        nid = batch.insert_event(
            event_id="$msg",
            room_nid=room.room_nid,
            type_nid=EventTypeNID(1024),
            state_key_nid=StateKeyNID(0),
            depth=2**40,
            outlier=True,
            rejected=True,
            rejection_reason="m.room.member: sender is banned",
            state_snapshot_nid=StateSnapshotNID(0),
            auth_event_nids=[create],
            prev_event_nids=[create, EventNID(create + 100)],
            json=body,
        )
        assert nid > 0 and nid != create
        in_batch = batch.select_events_by_id(["$msg"])["$msg"]
    with store.reopen().batch() as batch:
        stored = batch.select_events_by_id(["$msg", "$unknown"])
        assert list(stored) == ["$msg"]
        record = stored["$msg"]
        assert record == in_batch
        assert record.event_nid == nid
        assert record.json == body
        assert record.depth == 2**40
        assert record.outlier and record.rejected
        assert record.rejection_reason == "m.room.member: sender is banned"
        assert record.auth_event_nids == (create,)
        assert record.prev_event_nids == (create, create + 100)
        assert not record.redacted and not record.is_state
        assert batch.select_events([nid, create])[create].state_key_tuple == (1, 1)


def test_unknown_event_nid_is_corrupt_state(store: StoreUnderTest) -> None:
    with store.store.batch() as batch, pytest.raises(CorruptState, match="unknown event NIDs"):
        batch.select_events([EventNID(424242)])


def test_redact_and_update_events(store: StoreUnderTest) -> None:
    with store.store.batch() as batch:
        room = add_room(batch)
        old = add_event(batch, room.room_nid, "$old")
    with store.store.batch() as batch:
        new = add_event(batch, room.room_nid, "$new")
        redaction = add_event(batch, room.room_nid, "$redaction", type_nid=6)
        batch.redact_event(old, b"{}", redaction)  # committed before
        batch.redact_event(new, b'{"r":1}', redaction)  # still buffered
        batch.update_event(old, outlier=True, state_snapshot_nid=StateSnapshotNID(0))
        batch.update_event(new, rejected=True, rejection_reason="late")
        # An outlier processed later gains the prev events it now has (committed row and
        # buffered row alike).
        batch.update_event(old, prev_event_nids=[new])
        batch.update_event(new, prev_event_nids=[old, redaction])
        # The batch reads its own redaction before it is written.
        assert batch.select_events([old])[old].json == b"{}"
    # Redacting an event that is not stored fails the batch at commit.
    with pytest.raises(CorruptState), store.store.batch() as batch:
        batch.redact_event(EventNID(555555), b"{}", redaction)
    with store.reopen().batch() as batch:
        records = batch.select_events_by_id(["$old", "$new"])
        assert records["$old"].json == b"{}" and records["$old"].redacted
        assert records["$old"].outlier
        assert records["$new"].json == b'{"r":1}' and records["$new"].redacted
        assert records["$new"].rejected and records["$new"].rejection_reason == "late"
        assert tuple(records["$old"].prev_event_nids) == (new,)
        assert tuple(records["$new"].prev_event_nids) == (old, redaction)


def test_inserting_an_event_twice_fails(store: StoreUnderTest) -> None:
    with store.store.batch() as batch:
        room = add_room(batch)
        add_event(batch, room.room_nid, "$dup")
        with pytest.raises(StorageError, match=r"\$dup"):
            add_event(batch, room.room_nid, "$dup")
    with pytest.raises(StorageError), store.store.batch() as batch:
        add_event(batch, room.room_nid, "$dup")


def test_many_events_in_one_batch(store: StoreUnderTest) -> None:
    with store.store.batch() as batch:
        room = add_room(batch)
        nids = [add_event(batch, room.room_nid, f"$e{i}", prev=[i]) for i in range(3000)]
    assert len(set(nids)) == 3000 and min(nids) > 0
    with store.reopen().batch() as batch:
        records = batch.select_events(nids)
        assert [records[n].event_id for n in nids] == [f"$e{i}" for i in range(3000)]


# -- transactions and migrations ----------------------------------------------------------------


def test_an_exception_rolls_the_whole_batch_back(store: StoreUnderTest) -> None:
    with store.store.batch() as batch:
        room = add_room(batch)
    with pytest.raises(ValueError, match="boom"), store.store.batch() as batch:
        add_event(batch, room.room_nid, "$gone")
        batch.update_room(
            room.room_nid,
            forward_extremities=[EventNID(1)],
            current_snapshot_nid=StateSnapshotNID(0),
            last_stream_position=5,
        )
        assert batch.claim_input_offset("roomserver.input", 0, 0, 10)
        batch.append_outbox(0, room.room_id, 1, b"output")
        batch.insert_invite(room.room_nid, "@bob:example.org", EventNID(1))
        add_room(batch, "!other:example.org")
        raise ValueError("boom")
    with store.reopen().batch() as batch:
        assert batch.select_events_by_id(["$gone"]) == {}
        again = batch.select_room(room.room_id)
        assert again == room
        assert batch.select_room("!other:example.org") is None
        assert batch.select_input_offset("roomserver.input", 0) is None
        assert batch.select_outbox(0, 10) == []
    assert store.count("invites") == 0


def test_migrate_is_idempotent_and_safe_when_processes_race(store: StoreUnderTest) -> None:
    store.store.migrate()  # again: nothing to do
    errors: list[BaseException] = []
    barrier = threading.Barrier(3)

    def start() -> None:
        other = open_store(store.url)
        try:
            barrier.wait()
            other.migrate()
        except BaseException as e:  # collected and re-raised in the test thread
            errors.append(e)
        finally:
            other.close()

    threads = [threading.Thread(target=start) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    # Each shipped migration applied exactly once.
    assert store.count("schema_migrations") == len(load_migrations(store.kind))
    assert store.count("event_types") == len(PREASSIGNED_EVENT_TYPE_NIDS)


def test_migrations_race_on_a_fresh_database(empty_database: EmptyDatabase) -> None:
    # Several processes starting at once on an EMPTY database: the case the lock exists for.
    stores = [open_store(empty_database.url) for _ in range(4)]
    errors: list[BaseException] = []
    barrier = threading.Barrier(len(stores))

    def start(s: Store) -> None:
        try:
            barrier.wait()
            s.migrate()
        except BaseException as e:  # collected and re-raised in the test thread
            errors.append(e)

    threads = [threading.Thread(target=start, args=(s,)) for s in stores]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    try:
        assert errors == []
        with stores[0].batch() as batch:
            assert batch.state_key_nids([""]) == {"": 1}
    finally:
        for s in stores:
            s.close()
