"""Small builders shared by the storage contract tests."""

from __future__ import annotations

import random
from collections.abc import Iterable

from processor.nids import (
    EventNID,
    EventTypeNID,
    RoomNID,
    StateKeyNID,
    StateKeyTuple,
    StateSnapshotNID,
)
from processor.storage.base import Batch, RoomRecord

State = dict[StateKeyTuple, EventNID]


def add_room(batch: Batch, room_id: str = "!room:example.org") -> RoomRecord:
    return batch.insert_room(room_id, "10")


def add_event(
    batch: Batch,
    room_nid: RoomNID,
    event_id: str,
    *,
    type_nid: int = 1024,
    state_key_nid: int = 0,
    snapshot: int = 0,
    prev: Iterable[int] = (),
    auth: Iterable[int] = (),
    json: bytes | None = None,
    depth: int = 1,
) -> EventNID:
    return batch.insert_event(
        event_id=event_id,
        room_nid=room_nid,
        type_nid=EventTypeNID(type_nid),
        state_key_nid=StateKeyNID(state_key_nid),
        depth=depth,
        outlier=False,
        rejected=False,
        rejection_reason=None,
        state_snapshot_nid=StateSnapshotNID(snapshot),
        auth_event_nids=[EventNID(a) for a in auth],
        prev_event_nids=[EventNID(p) for p in prev],
        json=json if json is not None else b'{"event_id":"%s"}' % event_id.encode(),
    )


def member_events(
    batch: Batch, room_nid: RoomNID, count: int, *, prefix: str = "m"
) -> State:
    """`count` m.room.member state events, stored, as a state map (plus a create event)."""
    keys = batch.state_key_nids([f"@{prefix}{i}:example.org" for i in range(count)])
    state: State = {
        (EventTypeNID(1), StateKeyNID(1)): add_event(
            batch, room_nid, f"${prefix}-create", type_nid=1, state_key_nid=1
        )
    }
    for name, key_nid in keys.items():
        state[(EventTypeNID(5), key_nid)] = add_event(
            batch, room_nid, f"${prefix}-{name}", type_nid=5, state_key_nid=key_nid
        )
    return state


def shuffled(state: State, seed: int = 0) -> State:
    items = list(state.items())
    random.Random(seed).shuffle(items)
    return dict(items)
