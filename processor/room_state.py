"""`roomserver state`: a room's state now, or after/before an event, as JSON objects."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from processor.errors import EventNotFound, RoomNotFound
from processor.nids import StateSnapshotNID
from processor.storage.base import Batch, EventRecord, Store


def _state_lines(
    batch: Batch, room_id: str, event: EventRecord | None, snapshot: StateSnapshotNID,
    extra: EventRecord | None,
) -> dict[str, Any]:
    if event is not None and event.outlier:
        # An outlier was stored without state: the state at it is not known.
        return {
            "room_id": room_id,
            "event_id": event.event_id,
            "rejected": event.rejected,
            "state": None,
        }
    entries = dict(batch.load_state(snapshot)) if snapshot else {}
    if extra is not None and extra.is_state and not extra.rejected:
        entries[extra.state_key_tuple] = extra.event_nid
    records = batch.select_events(entries.values())
    types = batch.event_type_names({k[0] for k in entries})
    keys = batch.state_key_names({k[1] for k in entries})
    state = sorted(
        [types[t], keys[s], records[nid].event_id] for (t, s), nid in entries.items()
    )
    return {
        "room_id": room_id,
        "event_id": event.event_id if event is not None else None,
        "rejected": event.rejected if event is not None else False,
        "state": state,
    }


def room_state_lines(
    store: Store, room_id: str, *, at: str | None, before: bool, all_events: bool
) -> Iterator[dict[str, Any]]:
    with store.batch() as batch:
        room = batch.select_room(room_id)
        if room is None:
            raise RoomNotFound(room_id)
        if all_events:
            for record in batch.select_room_events(room.room_nid):
                yield _state_lines(
                    batch, room_id, record, record.state_snapshot_nid,
                    None if before else record,
                )
            return
        if at is None:
            yield _state_lines(batch, room_id, None, room.current_snapshot_nid, None)
            return
        found = batch.select_events_by_id([at]).get(at)
        if found is None or found.room_nid != room.room_nid:
            raise EventNotFound(at, room_id)
        yield _state_lines(
            batch, room_id, found, found.state_snapshot_nid, None if before else found
        )

