"""Rooms and events (tables `rooms`, `events`, `event_json`).

New events and room updates are buffered (`PendingWrites`) and written at commit; reads
consult the buffers first, so a batch sees its own writes. Changes to events stored by an
earlier batch are written at once (`update_event`), except redactions, which are written at
commit in one statement (`redact_event`) and seen by this batch's reads meanwhile.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import replace

from processor.errors import CorruptState, StorageError
from processor.nids import (
    EventNID,
    EventTypeNID,
    RoomNID,
    StateKeyNID,
    StateSnapshotNID,
)
from processor.storage.base import EventRecord, RoomRecord
from processor.storage.batch_core import BatchCore, NidKind
from processor.storage.tables import EVENT_COLUMNS, ROOM_COLUMNS, event_record, room_record

__all__ = ["EventsMixin"]

_SELECT_EVENTS = (
    f"SELECT {EVENT_COLUMNS} FROM events e JOIN event_json j ON j.event_nid = e.event_nid"
)


class EventsMixin(BatchCore):
    # ================================================================ rooms

    def _select_room_row(self, column: str, value: object) -> RoomRecord | None:
        rows = self._rows(
            f"SELECT {ROOM_COLUMNS} FROM rooms WHERE {column} = {self.PARAM}", (value,)
        )
        return room_record(rows[0], self._nid_tuple) if rows else None

    def select_room(self, room_id: str) -> RoomRecord | None:
        for record in self.pending.rooms.values():
            if record.room_id == room_id:
                return record
        return self._remember_room(self._select_room_row("room_id", room_id))

    def _remember_room(self, record: RoomRecord | None) -> RoomRecord | None:
        if record is not None:
            caches = self._caches
            with caches.lock:
                caches.room_identities.put(record.room_nid, record)
        return record

    def select_room_by_nid(self, room_nid: RoomNID) -> RoomRecord:
        record = self.pending.rooms.get(room_nid) or self._select_room_row("room_nid", room_nid)
        if record is None:
            raise CorruptState(f"unknown room NID {room_nid}")
        return record

    def insert_room(self, room_id: str, version_id: str) -> RoomRecord:
        p = self.PARAM
        rows = self._rows(
            f"INSERT INTO rooms (room_id, room_version) VALUES ({p}, {p})"
            f" RETURNING {ROOM_COLUMNS}",
            (room_id, version_id),
        )
        record = room_record(rows[0], self._nid_tuple)
        self._remember_room(record)
        return record

    def update_room(
        self,
        room_nid: RoomNID,
        *,
        forward_extremities: Iterable[EventNID],
        current_snapshot_nid: StateSnapshotNID,
        last_stream_position: int,
        last_sent_event_id: str | None = None,
    ) -> None:
        # Only the room's immutable part (ID, version) is taken from the record here.
        record = self.pending.rooms.get(room_nid)
        if record is None:
            caches = self._caches
            with caches.lock:
                record = caches.room_identities.get(room_nid)
        if record is None:
            record = self.select_room_by_nid(room_nid)
        self.pending.rooms[room_nid] = replace(
            record,
            forward_extremities=tuple(forward_extremities),
            current_snapshot_nid=self._surviving_snapshot(current_snapshot_nid),
            last_stream_position=last_stream_position,
            last_sent_event_id=last_sent_event_id,
        )

    def select_room_events(self, room_nid: RoomNID) -> list[EventRecord]:
        rows = self._rows(
            f"SELECT event_nid FROM events WHERE room_nid = {self.PARAM} ORDER BY event_nid",
            (room_nid,),
        )
        nids = [EventNID(int(r[0])) for r in rows]
        found = self.select_events(nids)
        return [found[n] for n in nids]

    # ================================================================ events: reading

    def _select_event_rows(self, column: str, values: list[str] | list[int]) -> list[EventRecord]:
        """Stored events whose `column` (``event_id`` or ``event_nid``) is in `values`."""
        rows = self._select_in(
            f"{_SELECT_EVENTS} WHERE e.{column} {{values}}",
            values,
            "text" if column == "event_id" else "bigint",
            binary=True,
        )
        decode = self._nid_tuple
        return [event_record(row, decode) for row in rows]

    def select_events_by_id(self, event_ids: Iterable[str]) -> dict[str, EventRecord]:
        found, missing = self._buffered_events(event_ids)
        if missing:
            self._add_stored_events(found, self._select_event_rows("event_id", missing))
        return found

    def _buffered_events(
        self, event_ids: Iterable[str]
    ) -> tuple[dict[str, EventRecord], list[str]]:
        """The events this batch wrote itself, and the IDs to look for in the tables."""
        pending = self.pending
        found: dict[str, EventRecord] = {}
        missing: list[str] = []
        for event_id in event_ids:
            nid = pending.events_by_id.get(event_id)
            if nid is not None:
                found[event_id] = pending.events[nid]
            else:
                missing.append(event_id)
        return found, list(dict.fromkeys(missing))

    def _add_stored_events(
        self, found: dict[str, EventRecord], rows: Iterable[EventRecord]
    ) -> None:
        for record in rows:
            found[record.event_id] = self._as_redacted(record)

    def select_events(self, nids: Iterable[EventNID]) -> dict[EventNID, EventRecord]:
        pending = self.pending.events
        found: dict[EventNID, EventRecord] = {}
        missing: list[int] = []
        for nid in nids:
            record = pending.get(nid)
            if record is not None:
                found[nid] = record
            else:
                missing.append(nid)
        if missing:
            missing = list(dict.fromkeys(missing))
            for record in self._select_event_rows("event_nid", missing):
                found[record.event_nid] = self._as_redacted(record)
            lost = [n for n in missing if n not in found]
            if lost:
                raise CorruptState(f"unknown event NIDs {sorted(lost)[:10]}")
        return found

    def _as_redacted(self, record: EventRecord) -> EventRecord:
        """A stored row as this batch left it (redacted in it, not yet written)."""
        json = self.pending.redacted_json.get(EventNID(record.event_nid))
        return record if json is None else replace(record, json=json, redacted=True)

    # ================================================================ events: writing

    def insert_event(
        self,
        *,
        event_id: str,
        room_nid: RoomNID,
        type_nid: EventTypeNID,
        state_key_nid: StateKeyNID,
        depth: int,
        outlier: bool,
        rejected: bool,
        rejection_reason: str | None,
        state_snapshot_nid: StateSnapshotNID,
        auth_event_nids: Iterable[EventNID],
        prev_event_nids: Iterable[EventNID],
        json: bytes,
        redacted: bool = False,
    ) -> EventNID:
        if event_id in self.pending.events_by_id:
            raise StorageError(f"event {event_id} inserted twice in one batch")
        if not room_nid or not type_nid:
            raise StorageError(f"event {event_id}: room and type NIDs must not be 0")
        nid = EventNID(self._reserve_nids(NidKind.EVENT, 1)[0])
        self.pending.events[nid] = EventRecord(
            event_nid=nid,
            event_id=event_id,
            room_nid=room_nid,
            type_nid=type_nid,
            state_key_nid=state_key_nid,
            depth=depth,
            outlier=outlier,
            rejected=rejected,
            rejection_reason=rejection_reason,
            state_snapshot_nid=self._surviving_snapshot(state_snapshot_nid),
            auth_event_nids=tuple(auth_event_nids),
            prev_event_nids=tuple(prev_event_nids),
            json=bytes(json),
            redacted=redacted,
        )
        self.pending.events_by_id[event_id] = nid
        return nid

    def update_event(
        self,
        event_nid: EventNID,
        *,
        outlier: bool | None = None,
        state_snapshot_nid: StateSnapshotNID | None = None,
        rejected: bool | None = None,
        rejection_reason: str | None = None,
        prev_event_nids: Sequence[EventNID] | None = None,
    ) -> None:
        if state_snapshot_nid is not None:
            state_snapshot_nid = self._surviving_snapshot(state_snapshot_nid)
        record = self.pending.events.get(event_nid)
        if record is not None:
            self.pending.events[event_nid] = replace(
                record,
                prev_event_nids=(
                    record.prev_event_nids if prev_event_nids is None else tuple(prev_event_nids)
                ),
                outlier=record.outlier if outlier is None else outlier,
                state_snapshot_nid=(
                    record.state_snapshot_nid
                    if state_snapshot_nid is None
                    else state_snapshot_nid
                ),
                rejected=record.rejected if rejected is None else rejected,
                rejection_reason=(
                    record.rejection_reason if rejection_reason is None else rejection_reason
                ),
            )
            return
        p = self.PARAM
        changed = self._execute(
            f"UPDATE events SET outlier = coalesce({p}, outlier),"
            f" state_snapshot_nid = coalesce({p}, state_snapshot_nid),"
            f" rejected = coalesce({p}, rejected),"
            f" rejection_reason = coalesce({p}, rejection_reason),"
            f" prev_event_nids = coalesce({p}, prev_event_nids) WHERE event_nid = {p}",
            (
                outlier, state_snapshot_nid, rejected, rejection_reason,
                None if prev_event_nids is None else self._nid_array(prev_event_nids),
                event_nid,
            ),
        )  # fmt: skip
        if not changed:
            raise CorruptState(f"update_event: unknown event NID {event_nid}")
        if state_snapshot_nid in self.pending.snapshots:
            self.pending.stored_event_snapshots[event_nid] = state_snapshot_nid

    def redact_event(
        self, event_nid: EventNID, redacted_json: bytes, redaction_event_nid: EventNID
    ) -> None:
        record = self.pending.events.get(event_nid)
        if record is not None:
            self.pending.events[event_nid] = replace(
                record, json=bytes(redacted_json), redacted=True
            )
        else:
            # Written at commit with the batch's other redactions (one statement for all);
            # reads in this batch see it through `_as_redacted`.
            self.pending.redacted_json[event_nid] = bytes(redacted_json)
