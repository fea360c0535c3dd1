"""Storage contract, part 2: state snapshots made of content-addressed blocks
(processor/storage/README.md, "State").

Both backends: a snapshot round-trips; identical blocks and snapshots are stored once; a
snapshot with a base shares the base's blocks; the 64-block limit re-blocks; lookups by key
and differences agree with the full state; cold caches read the same; dangling references
raise CorruptState.
"""

from __future__ import annotations

import random

import pytest

from processor.core.state_blocks import MAX_BLOCKS
from processor.errors import CorruptState
from processor.nids import EventNID, EventTypeNID, StateKeyNID, StateSnapshotNID
from tests.integration.storage.conftest import StoreUnderTest
from tests.integration.storage.helpers import State, add_event, add_room, member_events, shuffled

CREATE = (EventTypeNID(1), StateKeyNID(1))


def test_empty_and_unknown_snapshots(store: StoreUnderTest) -> None:
    with store.store.batch() as batch:
        assert batch.load_state(StateSnapshotNID(0)) == {}
        empty = batch.store_state(add_room(batch).room_nid, {})
        assert empty > 0
        assert batch.load_state(empty) == {}
        with pytest.raises(CorruptState, match="unknown state snapshot NID 31337"):
            batch.load_state(StateSnapshotNID(31337))


def test_state_round_trips_within_the_batch_and_cold(store: StoreUnderTest) -> None:
    with store.store.batch() as batch:
        room = add_room(batch)
        state = member_events(batch, room.room_nid, 500)
        snapshot = batch.store_state(room.room_nid, state)
        assert batch.load_state(snapshot) == state
    with store.store.batch() as batch:  # warm
        assert batch.load_state(snapshot) == state
    with store.reopen().batch() as batch:  # cold
        assert batch.load_state(snapshot) == state


def test_identical_states_are_stored_once(store: StoreUnderTest) -> None:
    with store.store.batch() as batch:
        room = add_room(batch)
        state = member_events(batch, room.room_nid, 300)
        first = batch.store_state(room.room_nid, state)
        assert batch.store_state(room.room_nid, shuffled(state)) == first
    blocks, snapshots = store.count("state_blocks"), store.count("state_snapshots")
    with store.store.batch() as batch:  # warm caches
        assert batch.store_state(room.room_nid, shuffled(state, 1)) == first
    with store.reopen().batch() as batch:  # another process: found by hash in the database
        assert batch.store_state(room.room_nid, shuffled(state, 2)) == first
    assert (store.count("state_blocks"), store.count("state_snapshots")) == (blocks, snapshots)


def test_a_state_change_adds_one_small_block(store: StoreUnderTest) -> None:
    with store.store.batch() as batch:
        room = add_room(batch)
        state = member_events(batch, room.room_nid, 2000)
        base = batch.store_state(room.room_nid, state)
    blocks_before = store.count("state_blocks")
    with store.store.batch() as batch:
        target = next(k for k in state if k[0] == 5)
        leave = add_event(batch, room.room_nid, "$leave", type_nid=5, state_key_nid=target[1])
        after = dict(state) | {target: leave}
        snapshot = batch.store_state(room.room_nid, after, base_snapshot_nid=base)
        assert snapshot != base
        # Unchanged state with a base is the base itself.
        assert batch.store_state(room.room_nid, after, base_snapshot_nid=snapshot) == snapshot
    base_blocks = store.block_nids(base)
    new_blocks = store.block_nids(snapshot)
    assert new_blocks[: len(base_blocks)] == base_blocks
    assert len(new_blocks) == len(base_blocks) + 1
    assert store.count("state_blocks") == blocks_before + 1
    with store.reopen().batch() as batch:
        assert batch.load_state(snapshot) == after
        assert batch.load_state(base) == state


def test_store_state_delta_matches_store_state(store: StoreUnderTest) -> None:
    with store.store.batch() as batch:
        room = add_room(batch)
        state = member_events(batch, room.room_nid, 100)
        base = batch.store_state(room.room_nid, state)
        gone = next(k for k in state if k[0] == 5)
        nid = add_event(batch, room.room_nid, "$topic", type_nid=1024, state_key_nid=1)
        topic = (EventTypeNID(1024), StateKeyNID(1))
        via_delta = batch.store_state_delta(
            room.room_nid, base, {gone: EventNID(0), topic: nid, CREATE: state[CREATE]}
        )
        expected = {k: v for k, v in state.items() if k != gone} | {topic: nid}
        assert batch.load_state(via_delta) == expected
        assert batch.store_state(room.room_nid, expected, base_snapshot_nid=base) == via_delta
        assert batch.store_state_delta(room.room_nid, base, {CREATE: state[CREATE]}) == base


def test_many_changes_stay_within_64_blocks_and_keep_sharing(store: StoreUnderTest) -> None:
    # Hundreds of successive changes to a 3000-member room, each snapshot built on the last:
    # no snapshot may exceed 64 blocks, re-blocking happens, every snapshot still reads back
    # right (cold), and most blocks are shared (far fewer rows than a full copy per change).
    rng = random.Random(6)
    with store.store.batch() as batch:
        room = add_room(batch)
        state = member_events(batch, room.room_nid, 3000)
        snapshot = batch.store_state(room.room_nid, state)
    members = sorted(k for k in state if k[0] == 5)
    history: list[tuple[StateSnapshotNID, State]] = [(snapshot, dict(state))]
    for round_ in range(6):
        with store.store.batch() as batch:
            for i in range(150):
                target = rng.choice(members)
                nid = add_event(
                    batch, room.room_nid, f"$change-{round_}-{i}", type_nid=5,
                    state_key_nid=target[1],
                )  # fmt: skip
                state[target] = nid
                snapshot = batch.store_state_delta(room.room_nid, snapshot, {target: nid})
                history.append((snapshot, dict(state)))
    assert all(len(store.block_nids(snap)) <= MAX_BLOCKS for snap, _ in history)
    entries_written = sum(
        int(n) for (n,) in store.sql("SELECT entry_count FROM state_blocks")
    )
    # 900 changes to a 3000-entry state: a full copy each time would be 2.7M entries.
    assert entries_written < 60_000
    chunk_sets = set()
    with store.reopen().batch() as batch:
        for snap, expected in history[:: 37] + history[-3:]:
            assert batch.load_state(snap) == expected
            chunk_sets.add(store.block_nids(snap)[:3])
    assert len(chunk_sets) > 1  # the deltas were folded into new chunks at least once


def test_load_state_entries_without_the_full_state(store: StoreUnderTest) -> None:
    with store.store.batch() as batch:
        room = add_room(batch)
        state = member_events(batch, room.room_nid, 200)
        base = batch.store_state(room.room_nid, state)
        member = next(k for k in state if k[0] == 5)
        leave = add_event(batch, room.room_nid, "$leave", type_nid=5, state_key_nid=member[1])
        changes = {member: leave, CREATE: EventNID(0)}
        snapshot = batch.store_state_delta(room.room_nid, base, changes)
    power_levels = (EventTypeNID(2), StateKeyNID(1))
    with store.reopen().batch() as batch:
        found = batch.load_state_entries(snapshot, [member, CREATE, power_levels])
        assert found == {member: leave}
        assert batch.load_state_entries(base, [CREATE]) == {CREATE: state[CREATE]}


def test_difference_between_snapshots(store: StoreUnderTest) -> None:
    with store.store.batch() as batch:
        room = add_room(batch)
        state = member_events(batch, room.room_nid, 300)
        root = batch.store_state(room.room_nid, state)
        members = sorted(k for k in state if k[0] == 5)
        left, right = dict(state), dict(state)
        left_snap = right_snap = root
        for i in range(20):
            key = members[i * 7]
            nid = add_event(batch, room.room_nid, f"$l{i}", type_nid=5, state_key_nid=key[1])
            left[key] = nid
            left_snap = batch.store_state(room.room_nid, left, base_snapshot_nid=left_snap)
        for i in range(5):
            key = members[i * 11]
            nid = add_event(batch, room.room_nid, f"$r{i}", type_nid=5, state_key_nid=key[1])
            right[key] = nid
            right_snap = batch.store_state(room.room_nid, right, base_snapshot_nid=right_snap)
        del right[members[-1]]
        right_snap = batch.store_state(room.room_nid, right, base_snapshot_nid=right_snap)
    with store.reopen().batch() as batch:
        removed, added = batch.state_difference(left_snap, right_snap)
        assert removed == {k: v for k, v in left.items() if right.get(k) != v}
        assert added == {k: v for k, v in right.items() if left.get(k) != v}
        # Applying removes then adds to the old state gives the new one (the output contract).
        rebuilt = {k: v for k, v in left.items() if k not in removed} | added
        assert rebuilt == right
        assert batch.state_difference(root, root) == ({}, {})
        assert batch.state_difference(StateSnapshotNID(0), root) == ({}, state)


def test_snapshot_naming_a_missing_block_is_corrupt_state(store: StoreUnderTest) -> None:
    with store.store.batch() as batch:
        room = add_room(batch)
        state = member_events(batch, room.room_nid, 50)
        snapshot = batch.store_state(room.room_nid, state)
    block = store.block_nids(snapshot)[0]
    store.sql(f"DELETE FROM state_blocks WHERE state_block_nid = {block}")
    message = rf"snapshot {snapshot} names .*{block}"
    with store.reopen().batch() as batch, pytest.raises(CorruptState, match=message):
        batch.load_state(snapshot)


def test_unreadable_block_is_corrupt_state(store: StoreUnderTest) -> None:
    with store.store.batch() as batch:
        room = add_room(batch)
        snapshot = batch.store_state(room.room_nid, member_events(batch, room.room_nid, 5))
    block = store.block_nids(snapshot)[0]
    garbage = "x'07'" if store.kind == "sqlite" else "'\\x07'::bytea"
    store.sql(f"UPDATE state_blocks SET data = {garbage} WHERE state_block_nid = {block}")
    message = f"state block {block} is unreadable"
    with store.reopen().batch() as batch, pytest.raises(CorruptState, match=message):
        batch.load_state_entries(snapshot, [CREATE])


def test_state_written_in_a_rolled_back_batch_is_forgotten(store: StoreUnderTest) -> None:
    with store.store.batch() as batch:
        room = add_room(batch)
        state = member_events(batch, room.room_nid, 40)
    with pytest.raises(RuntimeError), store.store.batch() as batch:
        batch.store_state(room.room_nid, state)
        raise RuntimeError("crash before commit")
    # The same content again must really be written (no cached NID of a row that never was).
    with store.store.batch() as batch:
        snapshot = batch.store_state(room.room_nid, state)
    with store.reopen().batch() as batch:
        assert batch.load_state(snapshot) == state
