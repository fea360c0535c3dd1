"""What both backends share: a batch's write buffers and the state-snapshot logic.

`BatchBase` implements the `Batch` protocol over a handful of backend primitives (SQL
statements, one round trip each). It buffers inserts of events, state blocks and snapshots,
memberships, room updates and outbox rows and writes them in bulk at commit (`flush`); its
reads consult those buffers first, so a batch sees its own writes.

State: `store_state` plans the snapshot with the pure `processor.core.state_blocks` functions,
finds out which of the planned blocks (and the snapshot itself) already exist — the in-process
cache first, then ONE lookup by hash for the rest — and buffers only the new ones. A block that
contains an event inserted in this very batch cannot exist yet, so the common case (a state
event's delta) costs no lookup at all. Reads fetch a snapshot and every block it is missing in
one round trip, then serve later reads from the shared cache of immutable blocks.
"""

from __future__ import annotations

import enum
from abc import ABC, abstractmethod
from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar

from processor.core import state_blocks
from processor.core.nids import (
    EventNID,
    EventTypeNID,
    RoomNID,
    StateBlockNID,
    StateKeyNID,
    StateKeyTuple,
    StateSnapshotNID,
)
from processor.core.state_blocks import MalformedBlock, SnapshotPlan, StateBlock
from processor.errors import CorruptState, StorageError
from processor.storage.base import (
    EventRecord,
    MembershipRecord,
    OutboxRecord,
    RedactionRecord,
    RoomRecord,
)
from processor.storage.caches import SnapshotMeta, StoreCaches

#: How many composed full states a batch keeps at hand.
COMPOSED_PER_BATCH = 8

#: "No snapshot": the empty state.
NO_SNAPSHOT = StateSnapshotNID(0)

__all__ = ["BatchBase", "NameKind", "NidKind", "PendingWrites", "SnapshotRow"]


class NameKind(enum.Enum):
    """The two string -> NID tables."""

    EVENT_TYPE = "event_types"
    STATE_KEY = "state_keys"


class NidKind(enum.Enum):
    """NIDs the store hands out before the row is written (reserved from a sequence)."""

    EVENT = "event"
    STATE_BLOCK = "state_block"
    STATE_SNAPSHOT = "state_snapshot"


@dataclass(frozen=True, slots=True)
class SnapshotRow:
    meta: SnapshotMeta
    hash: bytes
    room_nid: RoomNID


@dataclass(slots=True)
class PendingWrites:
    """Everything a batch has buffered for its commit."""

    events: dict[EventNID, EventRecord] = field(default_factory=dict)
    events_by_id: dict[str, EventNID] = field(default_factory=dict)
    blocks: dict[StateBlockNID, StateBlock] = field(default_factory=dict)
    block_nids_by_hash: dict[bytes, StateBlockNID] = field(default_factory=dict)
    snapshots: dict[StateSnapshotNID, SnapshotRow] = field(default_factory=dict)
    snapshot_nids_by_hash: dict[bytes, StateSnapshotNID] = field(default_factory=dict)
    rooms: dict[RoomNID, RoomRecord] = field(default_factory=dict)
    memberships: dict[tuple[RoomNID, StateKeyNID], MembershipRecord] = field(
        default_factory=dict
    )
    #: (partition, room_id, stream_position, payload), in append order.
    outbox: list[tuple[int, str, int, bytes]] = field(default_factory=list)
    #: Names assigned NIDs in this batch; published to the shared cache after commit.
    type_nids: dict[str, int] = field(default_factory=dict)
    key_nids: dict[str, int] = field(default_factory=dict)
    #: Redacted JSON of events stored by earlier batches (this batch's own are rewritten in
    #: `events`), and redaction rows: redaction NID -> (redacted event ID, validated).
    redacted_json: dict[EventNID, bytes] = field(default_factory=dict)
    redactions: dict[EventNID, tuple[str, bool]] = field(default_factory=dict)


class BatchBase(ABC):
    """The backend-independent part of a batch. Subclasses supply the SQL."""

    def __init__(self, caches: StoreCaches) -> None:
        self._caches = caches
        self.pending = PendingWrites()
        #: Full states composed in this batch (the processor stores a state event's state
        #: after against the state before, usually the previous snapshot of this batch).
        self._composed: OrderedDict[StateSnapshotNID, Mapping[StateKeyTuple, EventNID]] = (
            OrderedDict()
        )

    # ================================================================ backend primitives

    #: The driver's query parameter marker ("?" for sqlite3, "%s" for psycopg).
    PARAM: ClassVar[str]

    @abstractmethod
    def _rows(self, query: str, params: Sequence[Any] = ()) -> list[Any]:
        """Run a query in the batch's transaction; its rows."""

    @abstractmethod
    def _execute(self, query: str, params: Sequence[Any] = ()) -> int:
        """Run a statement in the batch's transaction; the number of rows it changed."""

    @abstractmethod
    def _assign_names(self, kind: NameKind, names: list[str]) -> dict[str, int]:
        """NIDs for `names`, inserting the missing ones; one round trip."""

    @abstractmethod
    def _select_nids_by_name(self, kind: NameKind, names: list[str]) -> dict[str, int]: ...

    @abstractmethod
    def _select_names_by_nid(self, kind: NameKind, nids: list[int]) -> dict[int, str]: ...

    @abstractmethod
    def _reserve_nids(self, kind: NidKind, count: int) -> list[int]:
        """`count` fresh NIDs of `kind` (never 0, never handed out before)."""

    @abstractmethod
    def _select_room_row(
        self, *, room_id: str | None = None, room_nid: int | None = None
    ) -> RoomRecord | None: ...

    @abstractmethod
    def _insert_room_row(self, room_id: str, version_id: str) -> RoomRecord: ...

    @abstractmethod
    def _select_event_rows(
        self, *, event_ids: list[str] | None = None, nids: list[int] | None = None
    ) -> list[EventRecord]: ...

    @abstractmethod
    def _update_event_row(
        self,
        event_nid: int,
        *,
        outlier: bool | None,
        state_snapshot_nid: int | None,
        rejected: bool | None,
        rejection_reason: str | None,
        prev_event_nids: Sequence[int] | None,
    ) -> int:
        """Returns the number of rows changed."""

    @abstractmethod
    def _execute_many(self, query: str, rows: Sequence[Sequence[Any]]) -> int:
        """Returns the number of rows changed."""

    @abstractmethod
    def _nid_array(self, nids: Iterable[int]) -> Any:
        """A list of NIDs as the driver binds it to an array column."""

    @abstractmethod
    def _fetch_state(
        self, snapshot_nids: Sequence[int], block_nids: Sequence[int]
    ) -> tuple[list[SnapshotMeta], list[tuple[int, bytes, bytes]]]:
        """ONE round trip: the snapshots' rows, and (nid, hash, data) of every block they
        name plus `block_nids`. Missing rows are simply absent."""

    @abstractmethod
    def _lookup_state_hashes(
        self, block_hashes: list[bytes], snapshot_hashes: list[bytes]
    ) -> tuple[dict[bytes, int], dict[bytes, int]]:
        """ONE round trip: NIDs of stored blocks and snapshots with these hashes."""

    @abstractmethod
    def insert_invite(self, room_nid: RoomNID, target_user_id: str, event_nid: EventNID) -> None:
        ...

    @abstractmethod
    def retire_invites(self, room_nid: RoomNID, target_user_id: str) -> list[EventNID]: ...

    def insert_redaction(
        self, redaction_event_nid: EventNID, redacts_event_id: str, validated: bool
    ) -> None:
        self.pending.redactions[redaction_event_nid] = (redacts_event_id, validated)

    @abstractmethod
    def _select_redaction_rows(self, redacts_event_ids: list[str]) -> list[RedactionRecord]: ...

    @abstractmethod
    def select_input_offset(self, topic: str, partition: int) -> int | None: ...

    @abstractmethod
    def select_outbox(self, partition: int, limit: int) -> list[OutboxRecord]: ...

    @abstractmethod
    def delete_outbox(self, partition: int, up_to_seq: int) -> None: ...

    @abstractmethod
    def _write_pending(self, pending: PendingWrites) -> None:
        """Write every buffered row, in bulk (called once, just before commit)."""

    # ================================================================ commit protocol

    def flush(self) -> None:
        """Write the buffers; the store commits right after."""
        self._write_pending(self.pending)
        self._write_redactions(self.pending)

    def _insert_pending_rows(self, pending: PendingWrites) -> None:
        """The buffered rows as plain INSERTs, a statement per table."""
        p = self.PARAM
        nid_array = self._nid_array
        if pending.events:
            events = list(pending.events.values())
            self._execute_many(
                "INSERT INTO events (event_nid, room_nid, event_type_nid, state_key_nid, depth,"
                " outlier, rejected, redacted, state_snapshot_nid, auth_event_nids,"
                " prev_event_nids, rejection_reason, event_id)"
                f" VALUES ({', '.join([p] * 13)})",
                [
                    (e.event_nid, e.room_nid, e.type_nid, e.state_key_nid, e.depth,
                     e.outlier, e.rejected, e.redacted, e.state_snapshot_nid,
                     nid_array(e.auth_event_nids), nid_array(e.prev_event_nids),
                     e.rejection_reason, e.event_id)
                    for e in events
                ],
            )
            self._execute_many(
                f"INSERT INTO event_json (event_nid, json) VALUES ({p}, {p})",
                [(e.event_nid, e.json) for e in events],
            )
        if pending.blocks:
            self._execute_many(
                "INSERT INTO state_blocks (state_block_nid, hash, entry_count, data)"
                f" VALUES ({p}, {p}, {p}, {p})",
                [
                    (nid, block.hash, len(block), state_blocks.encode_block(block.entries))
                    for nid, block in pending.blocks.items()
                ],
            )
        if pending.snapshots:
            self._execute_many(
                "INSERT INTO state_snapshots (state_snapshot_nid, hash, room_nid, chunk_count,"
                f" chunk_level, block_nids) VALUES ({p}, {p}, {p}, {p}, {p}, {p})",
                [
                    (row.meta.snapshot_nid, row.hash, row.room_nid, row.meta.chunk_count,
                     row.meta.chunk_level, nid_array(row.meta.block_nids))
                    for row in pending.snapshots.values()
                ],
            )
        self._write_memberships_and_rooms(pending)
        if pending.outbox:
            self._execute_many(
                "INSERT INTO outbox (partition, room_id, stream_position, payload)"
                f" VALUES ({p}, {p}, {p}, {p})",
                pending.outbox,
            )

    def _write_memberships_and_rooms(self, pending: PendingWrites) -> None:
        p = self.PARAM
        if pending.memberships:
            self._execute_many(
                "INSERT INTO memberships (room_nid, target_nid, membership, event_nid)"
                f" VALUES ({p}, {p}, {p}, {p}) ON CONFLICT (room_nid, target_nid) DO UPDATE"
                " SET membership = excluded.membership, event_nid = excluded.event_nid",
                [
                    (r.room_nid, r.target_nid, r.membership, r.event_nid)
                    for r in pending.memberships.values()
                ],
            )
        if pending.rooms:
            self._execute_many(
                f"UPDATE rooms SET forward_extremities = {p}, current_snapshot_nid = {p},"
                f" last_stream_position = {p}, last_sent_event_id = {p} WHERE room_nid = {p}",
                [
                    (self._nid_array(r.forward_extremities), r.current_snapshot_nid,
                     r.last_stream_position, r.last_sent_event_id, r.room_nid)
                    for r in pending.rooms.values()
                ],
            )

    def _write_redactions(self, pending: PendingWrites) -> None:
        p = self.PARAM
        if pending.redacted_json:
            nids = [(nid,) for nid in pending.redacted_json]
            changed = self._execute_many(
                f"UPDATE events SET redacted = TRUE WHERE event_nid = {p}", nids
            )
            changed += self._execute_many(
                f"UPDATE event_json SET json = {p} WHERE event_nid = {p}",
                [(json, nid) for nid, json in pending.redacted_json.items()],
            )
            if changed != 2 * len(nids):
                raise CorruptState(
                    f"redact_event: some of event NIDs {sorted(pending.redacted_json)[:10]} "
                    "are not stored"
                )
        if pending.redactions:
            self._execute_many(
                "INSERT INTO redactions (redaction_event_nid, redacts_event_id, validated)"
                f" VALUES ({p}, {p}, {p}) ON CONFLICT (redaction_event_nid) DO UPDATE"
                " SET redacts_event_id = excluded.redacts_event_id,"
                " validated = excluded.validated",
                [(nid, target, ok) for nid, (target, ok) in pending.redactions.items()],
            )

    def publish(self) -> None:
        """After a successful commit: share what this batch created or read."""
        p = self.pending
        caches = self._caches
        caches.add_names(p.type_nids, p.key_nids)
        caches.add_blocks(p.blocks.items())
        caches.add_snapshots((row.hash, row.meta) for row in p.snapshots.values())
        caches.add_states(self._composed.items())

    # ================================================================ NIDs

    def _nids(
        self, kind: NameKind, names: Iterable[str], *, assign: bool
    ) -> dict[str, int]:
        caches = self._caches
        cache = caches.type_nids if kind is NameKind.EVENT_TYPE else caches.key_nids
        local = self.pending.type_nids if kind is NameKind.EVENT_TYPE else self.pending.key_nids
        found: dict[str, int] = {}
        missing: list[str] = []
        with caches.lock:
            for name in names:
                if name in found:
                    continue
                nid = local.get(name) or cache.get(name)
                if nid is None:
                    missing.append(name)
                else:
                    found[name] = nid
        if missing:
            missing = list(dict.fromkeys(missing))
            got = (
                self._assign_names(kind, missing)
                if assign
                else self._select_nids_by_name(kind, missing)
            )
            if assign and len(got) != len(missing):
                lost = [n for n in missing if n not in got]
                raise StorageError(f"{kind.value}: no NID assigned for {lost[:5]!r}")
            local.update(got)
            found.update(got)
        return found

    def event_type_nids(self, types: Iterable[str]) -> dict[str, EventTypeNID]:
        return self._nids(NameKind.EVENT_TYPE, types, assign=True)  # type: ignore[return-value]

    def state_key_nids(self, keys: Iterable[str]) -> dict[str, StateKeyNID]:
        return self._nids(NameKind.STATE_KEY, keys, assign=True)  # type: ignore[return-value]

    def select_state_key_nids(self, keys: Iterable[str]) -> dict[str, StateKeyNID]:
        return self._nids(NameKind.STATE_KEY, keys, assign=False)  # type: ignore[return-value]

    def select_event_type_nids(self, types: Iterable[str]) -> dict[str, EventTypeNID]:
        return self._nids(NameKind.EVENT_TYPE, types, assign=False)  # type: ignore[return-value]

    def _names(self, kind: NameKind, nids: Iterable[int]) -> dict[int, str]:
        caches = self._caches
        cache = caches.type_names if kind is NameKind.EVENT_TYPE else caches.key_names
        local = self.pending.type_nids if kind is NameKind.EVENT_TYPE else self.pending.key_nids
        found: dict[int, str] = {}
        missing: list[int] = []
        with caches.lock:
            for nid in nids:
                name = cache.get(nid)
                if name is None:
                    missing.append(nid)
                else:
                    found[nid] = name
        if missing:
            missing = list(dict.fromkeys(missing))
            got = self._select_names_by_nid(kind, missing)
            lost = [n for n in missing if n not in got]
            if lost:
                raise CorruptState(f"unknown {kind.value} NIDs {sorted(lost)[:10]}")
            found.update(got)
            local.update({name: nid for nid, name in got.items()})
        return found

    def event_type_names(self, nids: Iterable[EventTypeNID]) -> dict[EventTypeNID, str]:
        return self._names(NameKind.EVENT_TYPE, nids)  # type: ignore[return-value]

    def state_key_names(self, nids: Iterable[StateKeyNID]) -> dict[StateKeyNID, str]:
        return self._names(NameKind.STATE_KEY, nids)  # type: ignore[return-value]

    # ================================================================ rooms

    def select_room(self, room_id: str) -> RoomRecord | None:
        for record in self.pending.rooms.values():
            if record.room_id == room_id:
                return record
        return self._remember_room(self._select_room_row(room_id=room_id))

    def _remember_room(self, record: RoomRecord | None) -> RoomRecord | None:
        if record is not None:
            caches = self._caches
            with caches.lock:
                caches.room_identities.put(record.room_nid, record)
        return record

    def select_room_by_nid(self, room_nid: RoomNID) -> RoomRecord:
        record = self.pending.rooms.get(room_nid) or self._select_room_row(room_nid=room_nid)
        if record is None:
            raise CorruptState(f"unknown room NID {room_nid}")
        return record

    def insert_room(self, room_id: str, version_id: str) -> RoomRecord:
        record = self._insert_room_row(room_id, version_id)
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
            current_snapshot_nid=current_snapshot_nid,
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

    # ================================================================ bookkeeping

    def claim_input_offset(
        self, topic: str, partition: int, expected: int, next_offset: int
    ) -> bool:
        p = self.PARAM
        if self._execute(
            f"UPDATE input_offsets SET next_offset = {p}"
            f" WHERE topic = {p} AND partition = {p} AND next_offset = {p}",
            (next_offset, topic, partition, expected),
        ):
            return True
        if expected != 0:
            return False
        return self._execute(
            f"INSERT INTO input_offsets (topic, partition, next_offset) VALUES ({p}, {p}, {p})"
            " ON CONFLICT (topic, partition) DO NOTHING",
            (topic, partition, next_offset),
        ) == 1

    # ================================================================ events

    def select_events_by_id(self, event_ids: Iterable[str]) -> dict[str, EventRecord]:
        found, missing = self._buffered_events(event_ids)
        if missing:
            self._add_stored_events(found, self._select_event_rows(event_ids=missing))
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

    def select_prefetch(
        self, event_ids: Iterable[str], redacts_event_ids: Iterable[str]
    ) -> tuple[dict[str, EventRecord], dict[str, list[RedactionRecord]]]:
        """What a batch reads first: `select_events_by_id(event_ids)` and
        `select_pending_redactions(redacts_event_ids)`, in one round trip where the
        backend can."""
        found, missing = self._buffered_events(event_ids)
        wanted = list(dict.fromkeys(redacts_event_ids))
        rows, redaction_rows = self._select_prefetch_rows(missing, wanted)
        self._add_stored_events(found, rows)
        return found, self._pending_redactions(wanted, redaction_rows)

    def _select_prefetch_rows(
        self, event_ids: list[str], redacts_event_ids: list[str]
    ) -> tuple[list[EventRecord], list[RedactionRecord]]:
        events = self._select_event_rows(event_ids=event_ids) if event_ids else []
        return events, self._select_redaction_rows(redacts_event_ids)

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
            for record in self._select_event_rows(nids=missing):
                found[record.event_nid] = self._as_redacted(record)
            lost = [n for n in missing if n not in found]
            if lost:
                raise CorruptState(f"unknown event NIDs {sorted(lost)[:10]}")
        return found

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
            state_snapshot_nid=state_snapshot_nid,
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
        changed = self._update_event_row(
            event_nid,
            outlier=outlier,
            state_snapshot_nid=state_snapshot_nid,
            rejected=rejected,
            rejection_reason=rejection_reason,
            prev_event_nids=None if prev_event_nids is None else list(prev_event_nids),
        )
        if not changed:
            raise CorruptState(f"update_event: unknown event NID {event_nid}")

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

    def _as_redacted(self, record: EventRecord) -> EventRecord:
        """A stored row as this batch left it (redacted in it, not yet written)."""
        json = self.pending.redacted_json.get(EventNID(record.event_nid))
        return record if json is None else replace(record, json=json, redacted=True)

    # ================================================================ memberships etc.

    def set_membership(
        self,
        room_nid: RoomNID,
        target_state_key_nid: StateKeyNID,
        membership: str,
        event_nid: EventNID,
    ) -> None:
        self.pending.memberships[(room_nid, target_state_key_nid)] = MembershipRecord(
            room_nid, target_state_key_nid, membership, event_nid
        )

    def _pending_redactions(
        self, wanted: list[str], rows: Iterable[RedactionRecord]
    ) -> dict[str, list[RedactionRecord]]:
        """The redactions of `rows` (stored ones) and of this batch's buffer that target
        `wanted` and are not validated yet, by target, oldest first."""
        records = {r.redaction_event_nid: r for r in rows}
        targets = set(wanted)
        for nid, (target, validated) in self.pending.redactions.items():
            if target in targets:
                records[nid] = RedactionRecord(nid, target, validated)
            else:
                records.pop(nid, None)
        found: dict[str, list[RedactionRecord]] = {}
        for nid in sorted(records):
            record = records[nid]
            if not record.validated:
                found.setdefault(record.redacts_event_id, []).append(record)
        return found

    def append_outbox(
        self, partition: int, room_id: str, stream_position: int, payload: bytes
    ) -> None:
        self.pending.outbox.append((partition, room_id, stream_position, bytes(payload)))

    # ================================================================ state: reading

    def _load_snapshots(
        self, snapshot_nids: Sequence[StateSnapshotNID]
    ) -> dict[StateSnapshotNID, tuple[SnapshotMeta, list[StateBlock]]]:
        """The snapshots and their blocks, in order: caches first, then ONE round trip."""
        pending = self.pending
        caches = self._caches
        metas: dict[StateSnapshotNID, SnapshotMeta] = {}
        blocks: dict[StateBlockNID, StateBlock] = {}
        unknown_snapshots: list[int] = []
        with caches.lock:
            for nid in snapshot_nids:
                row = pending.snapshots.get(nid)
                meta = row.meta if row is not None else caches.snapshots.get(nid)
                if meta is None:
                    unknown_snapshots.append(nid)
                    continue
                metas[nid] = meta
                for block_nid in meta.block_nids:
                    block = pending.blocks.get(block_nid) or caches.blocks.get(block_nid)
                    if block is not None:
                        blocks[block_nid] = block
        missing_blocks = [
            b for meta in metas.values() for b in meta.block_nids if b not in blocks
        ]
        if unknown_snapshots or missing_blocks:
            rows, block_rows = self._fetch_state(unknown_snapshots, missing_blocks)
            for meta in rows:
                metas[meta.snapshot_nid] = meta
            fetched: list[tuple[StateBlockNID, StateBlock]] = []
            for row_nid, block_hash, data in block_rows:
                block_nid = StateBlockNID(row_nid)
                if block_nid in blocks:
                    continue
                try:
                    entries = state_blocks.decode_block(data)
                except MalformedBlock as e:
                    raise CorruptState(f"state block {block_nid} is unreadable: {e}") from e
                block = StateBlock(entries, bytes(block_hash))
                blocks[block_nid] = block
                fetched.append((block_nid, block))
            # Rows read from the state tables are committed (a batch writes its own only at
            # commit) and immutable: share them right away.
            caches.add_blocks(fetched)
            caches.add_snapshots((b"", meta) for meta in rows)
        result: dict[StateSnapshotNID, tuple[SnapshotMeta, list[StateBlock]]] = {}
        for nid in snapshot_nids:
            meta = metas.get(nid)
            if meta is None:
                raise CorruptState(f"unknown state snapshot NID {nid}")
            lost = [b for b in meta.block_nids if b not in blocks]
            if lost:
                raise CorruptState(
                    f"state snapshot {nid} names state blocks that do not exist: {lost[:10]}"
                )
            result[nid] = (meta, [blocks[b] for b in meta.block_nids])
        return result

    def _snapshot_plan(self, snapshot_nid: StateSnapshotNID) -> SnapshotPlan:
        meta, blocks = self._load_snapshots([snapshot_nid])[snapshot_nid]
        return SnapshotPlan(tuple(blocks), meta.chunk_count, meta.chunk_level)

    def load_state(self, snapshot_nid: StateSnapshotNID) -> dict[StateKeyTuple, EventNID]:
        """The full state at a snapshot (0 = the empty state). The caller owns the dict."""
        if not snapshot_nid:
            return {}
        return dict(self._composed_state(snapshot_nid))

    def _composed_state(self, snapshot_nid: StateSnapshotNID) -> Mapping[StateKeyTuple, EventNID]:
        """The full state, shared with the caches: never mutate it."""
        state = self._composed.get(snapshot_nid)
        if state is not None:
            return state
        with self._caches.lock:
            state = self._caches.states.get(snapshot_nid)
        if state is None:
            _, blocks = self._load_snapshots([snapshot_nid])[snapshot_nid]
            state = state_blocks.compose(b.entries for b in blocks)
        self._remember_composed(snapshot_nid, state)
        return state

    def _remember_composed(
        self, snapshot_nid: StateSnapshotNID, state: Mapping[StateKeyTuple, EventNID]
    ) -> None:
        composed = self._composed
        composed[snapshot_nid] = state
        composed.move_to_end(snapshot_nid)
        while len(composed) > COMPOSED_PER_BATCH:
            composed.popitem(last=False)

    def load_state_entries(
        self, snapshot_nid: StateSnapshotNID, keys: Iterable[StateKeyTuple]
    ) -> dict[StateKeyTuple, EventNID]:
        """The events at `keys` (absent keys left out), without composing the full state."""
        if not snapshot_nid:
            return {}
        _, blocks = self._load_snapshots([snapshot_nid])[snapshot_nid]
        entries = [b.entries for b in blocks]
        found: dict[StateKeyTuple, EventNID] = {}
        for key in keys:
            event = state_blocks.lookup(entries, key)
            if event is not None:
                found[key] = event
        return found

    def state_difference(
        self, old_snapshot_nid: StateSnapshotNID, new_snapshot_nid: StateSnapshotNID
    ) -> tuple[dict[StateKeyTuple, EventNID], dict[StateKeyTuple, EventNID]]:
        """(removed, added): apply removes then adds to the old state to get the new one."""
        wanted = [n for n in (old_snapshot_nid, new_snapshot_nid) if n]
        loaded = self._load_snapshots(wanted) if wanted else {}
        old = loaded[old_snapshot_nid][1] if old_snapshot_nid else []
        new = loaded[new_snapshot_nid][1] if new_snapshot_nid else []
        return state_blocks.state_difference(old, new)

    # ================================================================ state: writing

    def store_state(
        self,
        room_nid: RoomNID,
        state: Mapping[StateKeyTuple, EventNID],
        *,
        base_snapshot_nid: StateSnapshotNID = NO_SNAPSHOT,
    ) -> StateSnapshotNID:
        """The snapshot of `state`, stored once. With a base, the base's blocks are reused and
        only the difference is written (a delta block)."""
        if not base_snapshot_nid:
            return self._store_plan(room_nid, state_blocks.plan_full_snapshot(state))
        base_state = self._composed_state(base_snapshot_nid)
        changes = state_blocks.compute_changes(base_state, state)
        if not changes:
            return base_snapshot_nid
        base = self._snapshot_plan(base_snapshot_nid)
        snapshot_nid = self._store_plan(room_nid, state_blocks.plan_snapshot(base, changes))
        self._remember_composed(snapshot_nid, dict(state))
        return snapshot_nid

    def store_state_delta(
        self,
        room_nid: RoomNID,
        base_snapshot_nid: StateSnapshotNID,
        changes: Mapping[StateKeyTuple, EventNID],
    ) -> StateSnapshotNID:
        if not base_snapshot_nid:
            return self._store_plan(
                room_nid, state_blocks.plan_full_snapshot({k: v for k, v in changes.items() if v})
            )
        base = self._snapshot_plan(base_snapshot_nid)
        entries = [b.entries for b in base.blocks]
        effective = {
            k: v for k, v in changes.items() if (state_blocks.lookup(entries, k) or 0) != v
        }
        if not effective:
            return base_snapshot_nid
        return self._store_plan(room_nid, state_blocks.plan_snapshot(base, effective))

    def _store_plan(self, room_nid: RoomNID, plan: SnapshotPlan) -> StateSnapshotNID:
        pending = self.pending
        caches = self._caches
        snap_hash = plan.hash
        block_nids: dict[bytes, int] = {}
        unknown: list[StateBlock] = []
        with caches.lock:
            known_snapshot = pending.snapshot_nids_by_hash.get(
                snap_hash
            ) or caches.snapshot_nids_by_hash.get(snap_hash)
            if known_snapshot is not None:
                return known_snapshot
            for block in plan.blocks:
                if block.hash in block_nids:
                    continue
                known = pending.block_nids_by_hash.get(
                    block.hash
                ) or caches.block_nids_by_hash.get(block.hash)
                if known is None:
                    unknown.append(block)
                else:
                    block_nids[block.hash] = known
        # A block holding an event first inserted in this batch cannot be stored already.
        new_events = pending.events
        surely_new = [b for b in unknown if any(e in new_events for e in b.entries.values())]
        maybe_stored = [b for b in unknown if b not in surely_new]
        if maybe_stored or not surely_new:
            found_blocks, found_snapshots = self._lookup_state_hashes(
                [b.hash for b in maybe_stored], [] if surely_new else [snap_hash]
            )
            if snap_hash in found_snapshots:
                found_nid = StateSnapshotNID(found_snapshots[snap_hash])
                with caches.lock:
                    caches.snapshot_nids_by_hash.put(snap_hash, found_nid)
                return found_nid
            block_nids.update(found_blocks)
        new_blocks = [b for b in dict.fromkeys(unknown) if b.hash not in block_nids]
        if new_blocks:
            for block, reserved in zip(
                new_blocks,
                self._reserve_nids(NidKind.STATE_BLOCK, len(new_blocks)),
                strict=True,
            ):
                block_nids[block.hash] = reserved
                pending.blocks[StateBlockNID(reserved)] = block
                pending.block_nids_by_hash[block.hash] = StateBlockNID(reserved)
        snapshot_nid = StateSnapshotNID(self._reserve_nids(NidKind.STATE_SNAPSHOT, 1)[0])
        meta = SnapshotMeta(
            snapshot_nid,
            tuple(StateBlockNID(block_nids[b.hash]) for b in plan.blocks),
            plan.chunk_count,
            plan.chunk_level,
        )
        pending.snapshots[snapshot_nid] = SnapshotRow(meta, snap_hash, room_nid)
        pending.snapshot_nids_by_hash[snap_hash] = snapshot_nid
        return snapshot_nid
