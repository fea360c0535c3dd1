"""In-process caches of immutable room data, in front of a storage `Batch`.

Events, the state at an event and NIDs never change once written (a redaction replaces an
event's JSON, so it evicts that event). Keeping them in process makes the common case —
an event whose prev event was handled a moment ago — cost no database round trip.

Whatever a failed batch wrote must not survive in here: the caller drops the whole cache
(`RoomCache.clear`) when a batch rolls back.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from processor.core.decision import state_after
from processor.errors import CorruptState, InvalidEvent
from processor.matrix.events import Event
from processor.matrix.pdu import decode_pdu
from processor.matrix.room_versions import RoomVersion, create_event_id_of_room, room_version
from processor.matrix.state_res import AuthChainIndex
from processor.nids import (
    EventNID,
    EventTypeNID,
    RoomNID,
    StateKeyNID,
    StateKeyTuple,
    StateSnapshotNID,
)
from processor.pipeline.types import Decoded, LoadedEvent, StateAt
from processor.storage.base import Batch, EventRecord, RedactionRecord, RoomRecord
from processor.storage.caches import LRU


@dataclass(frozen=True, slots=True)
class CacheLimits:
    """Bounds on what one partition keeps in memory (settings `cache_*` for `run`, flags for
    `ingest`). Everything bounded here is re-read from the database when needed again."""

    #: Decoded events kept (an entry holds the event and its JSON: roughly 1-2 KB).
    events: int = 100_000
    #: State maps kept (snapshots, states after events, resolved states), per kind.
    states: int = 256
    #: Events in the auth chain indexes of the tracked rooms, all rooms together (about
    #: 0.5 KB each). Past it, the rooms least recently used are dropped between batches;
    #: a dropped room's index is rebuilt from storage when a resolution next needs it.
    auth_index_events: int = 400_000
    #: Names (event types, state keys) and room versions remembered by NID.
    names: int = 200_000


class TrackedRoom:
    """What the handler tracks of one room between events: its record, its version, its
    forward extremities, current state and output stream position."""

    def __init__(self, record: RoomRecord, version: RoomVersion, cache: RoomCache) -> None:
        self.record = record
        self.version = version
        self.forward_extremities: tuple[EventNID, ...] = tuple(record.forward_extremities)
        self.current_snapshot_nid = StateSnapshotNID(record.current_snapshot_nid)
        self.stream_position = record.last_stream_position
        #: The event of the room's last new_room_event.
        self.last_sent_event_id = record.last_sent_event_id
        self._current: StateAt | None = None
        self._cache = cache
        #: The batch that last used the room (`RoomCache.trim` drops the coldest rooms).
        self.last_used = 0
        #: The room's auth DAG for state resolution, grown as events are stored or loaded.
        self.auth_index = AuthChainIndex()
        #: Verdicts of the auth rules against an event's own auth events, for the events
        #: whose verdict depends on nothing else (`decision.auth_verdict_key`).
        self.auth_verdicts: dict[tuple[str, str, tuple[EventNID, ...]], str | None] = {}

    def current_state(self, batch: Batch) -> StateAt:
        if self._current is None:
            self._current = self._cache.load_state(batch, self.current_snapshot_nid)
        return self._current

    def set_current(self, state: StateAt) -> None:
        """The new current state; stored as a snapshot once per batch (`store_current`),
        since most current states are superseded within the batch."""
        self._current = state

    def store_current(self, batch: Batch) -> StateSnapshotNID:
        if self._current is not None:
            self.current_snapshot_nid = self._cache.snapshot_for(batch, self, self._current)
        return self.current_snapshot_nid

    def next_stream_position(self) -> int:
        self.stream_position += 1
        return self.stream_position


class RoomCache:
    """Caches shared by every batch of one handler (one partition)."""

    def __init__(self, limits: CacheLimits | None = None) -> None:
        self.limits = limits = limits or CacheLimits()
        events, states = limits.events, limits.states
        self._rooms: dict[str, TrackedRoom] = {}
        #: Counts batches, for the rooms' `last_used`.
        self._clock = 0
        #: Versions of rooms other than the one being handled, by NID (see `_version_of`).
        self._room_versions: dict[RoomNID, RoomVersion] = {}
        self._events: LRU[EventNID, LoadedEvent] = LRU(events)
        self._ids: LRU[str, EventNID] = LRU(events)
        self._states: LRU[StateSnapshotNID, StateAt] = LRU(states)
        self._after: LRU[EventNID, StateAt] = LRU(states)
        self._type_nids: dict[str, EventTypeNID] = {}
        self._state_key_nids: dict[str, StateKeyNID] = {}
        # What `prefetch` found for the batch in progress.
        self._batch_records: dict[str, EventRecord] = {}
        self._absent: set[str] = set()
        self._pending_redactions: dict[str, list[RedactionRecord]] = {}
        #: Resolved states by the states they were resolved from (immutable inputs).
        self._resolved: LRU[frozenset[StateAt], StateAt] = LRU(states)

    def clear(self) -> None:
        """Forget everything (after a rolled-back batch)."""
        self._rooms.clear()
        self._room_versions.clear()
        self._events.clear()
        self._ids.clear()
        self._states.clear()
        self._after.clear()
        self._resolved.clear()
        # Names assigned in a rolled-back SQLite transaction are gone with it.
        self._type_nids.clear()
        self._state_key_nids.clear()
        self._batch_records = {}
        self._absent = set()
        self._pending_redactions = {}

    def trim(self) -> None:
        """Between batches (everything before is committed, so nothing here is the only
        copy): drop the least recently used rooms past `auth_index_events`, and the name
        maps past `names`. Most tracked state is in the LRUs, bounded as it goes; a room's
        auth index and auth verdicts grow with its history and are bounded here."""
        self._clock += 1
        limits = self.limits
        rooms = self._rooms
        # Verdicts are memoised per distinct auth-event tuple: bounded per room by dropping
        # them all (each is recomputed by the auth rules on its next use).
        verdict_limit = max(1, limits.auth_index_events // 10)
        size = 0
        for room in rooms.values():
            if len(room.auth_verdicts) > verdict_limit:
                room.auth_verdicts = {}
            size += len(room.auth_index) + len(room.auth_verdicts)
        if size > limits.auth_index_events:
            # Down to three quarters, so a room set slightly over the limit is not trimmed
            # (and its indexes rebuilt) every batch.
            target = limits.auth_index_events * 3 // 4
            for room in sorted(rooms.values(), key=lambda r: (r.last_used, r.record.room_nid)):
                if size <= target:
                    break
                size -= len(room.auth_index) + len(room.auth_verdicts)
                del rooms[room.record.room_id]
        if len(self._type_nids) + len(self._state_key_nids) > limits.names:
            self._type_nids.clear()
            self._state_key_nids.clear()
        if len(self._room_versions) > limits.names:
            self._room_versions.clear()

    def memory_entries(self) -> dict[str, int]:
        """How many entries each cache holds (for benchmarks and diagnostics)."""
        rooms = self._rooms.values()
        return {
            "rooms": len(self._rooms),
            "auth_index_events": sum(len(r.auth_index) for r in rooms),
            "auth_verdicts": sum(len(r.auth_verdicts) for r in rooms),
            "events": len(self._events),
            "names": len(self._type_nids) + len(self._state_key_nids),
        }

    # ------------------------------------------------------------ NIDs

    def prefetch_nids(self, batch: Batch, types: Iterable[str], keys: Iterable[str]) -> None:
        """Assign the NIDs a batch will need in one round trip per kind."""
        missing_types = {t for t in types if t not in self._type_nids}
        if missing_types:
            self._type_nids.update(batch.event_type_nids(missing_types))
        missing_keys = {k for k in keys if k not in self._state_key_nids}
        if missing_keys:
            self._state_key_nids.update(batch.state_key_nids(missing_keys))

    def type_nid(self, batch: Batch, event_type: str) -> EventTypeNID:
        nid = self._type_nids.get(event_type)
        if nid is None:
            nid = batch.event_type_nids([event_type])[event_type]
            self._type_nids[event_type] = nid
        return nid

    def state_key_nid(self, batch: Batch, state_key: str) -> StateKeyNID:
        nid = self._state_key_nids.get(state_key)
        if nid is None:
            nid = batch.state_key_nids([state_key])[state_key]
            self._state_key_nids[state_key] = nid
        return nid

    def known_type_nid(self, event_type: str) -> EventTypeNID | None:
        return self._type_nids.get(event_type)

    # ------------------------------------------------------------ rooms

    def room(self, batch: Batch, room_id: str) -> TrackedRoom | None:
        room = self._rooms.get(room_id)
        if room is None:
            record = batch.select_room(room_id)
            if record is None:
                return None
            room = self.add_room(record, room_version(record.room_version))
        room.last_used = self._clock
        return room

    def add_room(self, record: RoomRecord, version: RoomVersion) -> TrackedRoom:
        room = TrackedRoom(record, version, self)
        room.last_used = self._clock
        self._rooms[record.room_id] = room
        return room

    # ------------------------------------------------------------ events

    def _version_of(self, batch: Batch, room: TrackedRoom, record: EventRecord) -> RoomVersion:
        """The version of the room `record` is in: usually `room`, but an input may cite an
        event of another room (caught by the caller), whose PDU has that room's format."""
        if record.room_nid == room.record.room_nid:
            return room.version
        version = self._room_versions.get(RoomNID(record.room_nid))
        if version is None:
            other = batch.select_room_by_nid(RoomNID(record.room_nid))
            version = room_version(other.room_version)
            self._room_versions[RoomNID(record.room_nid)] = version
        return version

    def _loaded(self, batch: Batch, room: TrackedRoom, record: EventRecord) -> LoadedEvent:
        version = self._version_of(batch, room, record)
        try:
            event = decode_pdu(record.json, version)
        except InvalidEvent as e:
            raise CorruptState(f"stored event {record.event_id} does not decode: {e}") from e
        key = (
            None
            if record.state_key_nid == 0
            else (EventTypeNID(record.type_nid), StateKeyNID(record.state_key_nid))
        )
        loaded = LoadedEvent(
            nid=EventNID(record.event_nid),
            event_id=record.event_id,
            room_nid=RoomNID(record.room_nid),
            key=key,
            rejected=record.rejected,
            outlier=record.outlier,
            redacted=record.redacted,
            state_snapshot_nid=StateSnapshotNID(record.state_snapshot_nid),
            auth_nids=tuple(EventNID(n) for n in record.auth_event_nids),
            prev_nids=tuple(EventNID(n) for n in record.prev_event_nids),
            event=event,
            json=record.json,
        )
        self._events.put(loaded.nid, loaded)
        self._ids.put(loaded.event_id, loaded.nid)
        return loaded

    def prefetch(self, batch: Batch, decoded: Iterable[Decoded]) -> None:
        """Look up, in one round trip each, the events a batch references, the redactions
        waiting for its events, and the NIDs of its event types and state keys."""
        referenced: set[str] = set()
        own: list[str] = []
        types: set[str] = set()
        # State keys: the state events' own, and the senders' (the auth rules read the
        # sender's membership).
        keys: set[str] = set()
        for item in decoded:
            event = item.event
            own.append(event.event_id)
            types.add(event.type)
            keys.add(event.sender)
            if event.state_key is not None:
                keys.add(event.state_key)
            referenced.add(event.event_id)
            referenced.update(event.prev_event_ids)
            referenced.update(event.auth_event_ids)
            referenced.update(item.item.state_event_ids)
            if item.version.create_event_implicit_in_auth_events:
                referenced.add(create_event_id_of_room(event.room_id))
        self.prefetch_nids(batch, types, keys)
        missing = [event_id for event_id in referenced if self._ids.get(event_id) is None]
        self._batch_records, pending_redactions = batch.select_prefetch(missing, own)
        self._absent = set(missing).difference(self._batch_records)
        self._pending_redactions = {
            event_id: list(records) for event_id, records in pending_redactions.items()
        }

    def pending_redactions(self, event_id: str) -> list[RedactionRecord]:
        return self._pending_redactions.get(event_id, [])

    def add_pending_redaction(self, record: RedactionRecord) -> None:
        self._pending_redactions.setdefault(record.redacts_event_id, []).append(record)

    def event_nid(self, batch: Batch, event_id: str) -> EventNID | None:
        nid = self._ids.get(event_id)
        if nid is not None:
            return nid
        prefetched = self._batch_records.get(event_id)
        if prefetched is not None:
            return EventNID(prefetched.event_nid)
        if event_id in self._absent:
            return None
        found = batch.select_events_by_id([event_id])
        record = found.get(event_id)
        if record is None:
            return None
        self._ids.put(event_id, EventNID(record.event_nid))
        return EventNID(record.event_nid)

    def load_by_id(
        self, batch: Batch, room: TrackedRoom, event_ids: Iterable[str]
    ) -> dict[str, LoadedEvent]:
        found: dict[str, LoadedEvent] = {}
        missing: list[str] = []
        for event_id in event_ids:
            nid = self._ids.get(event_id)
            loaded = self._events.get(nid) if nid is not None else None
            if loaded is not None:
                found[event_id] = loaded
            else:
                missing.append(event_id)
        if missing:
            query = []
            for event_id in missing:
                record = self._batch_records.get(event_id)
                if record is not None:
                    found[event_id] = self._loaded(batch, room, record)
                elif event_id not in self._absent:
                    query.append(event_id)
            if query:
                for event_id, record in batch.select_events_by_id(query).items():
                    found[event_id] = self._loaded(batch, room, record)
        return found

    def load(
        self, batch: Batch, room: TrackedRoom, nids: Iterable[EventNID]
    ) -> dict[EventNID, LoadedEvent]:
        found: dict[EventNID, LoadedEvent] = {}
        missing: list[EventNID] = []
        for nid in nids:
            loaded = self._events.get(nid)
            if loaded is not None:
                found[nid] = loaded
            else:
                missing.append(nid)
        if missing:
            records = batch.select_events(missing)
            for nid in missing:
                record = records.get(nid)
                if record is None:
                    raise CorruptState(f"event NID {nid} is referenced but not stored")
                found[nid] = self._loaded(batch, room, record)
        return found

    def forget(self, nid: EventNID, event_id: str) -> None:
        """Drop an event whose stored form changed (redacted), so the next load reads
        the new form (the batch's reads see its own writes)."""
        self._events.pop(nid)
        self._batch_records.pop(event_id, None)

    def insert_event(
        self,
        batch: Batch,
        room: TrackedRoom,
        event: Event,
        *,
        key: StateKeyTuple | None,
        outlier: bool,
        rejection_reason: str | None,
        state_snapshot_nid: StateSnapshotNID,
        auth_event_nids: tuple[EventNID, ...],
        prev_event_nids: tuple[EventNID, ...],
        json: bytes,
        outlier_nid: EventNID | None = None,
    ) -> LoadedEvent:
        """Store a new event; or, with `outlier_nid`, the processing of an event stored
        before as an outlier (its row gains a state and loses the outlier flag)."""
        if outlier_nid is not None:
            batch.update_event(
                outlier_nid,
                outlier=outlier,
                state_snapshot_nid=state_snapshot_nid,
                rejected=rejection_reason is not None,
                rejection_reason=rejection_reason,
                prev_event_nids=prev_event_nids,
            )
            nid = outlier_nid
        else:
            nid = batch.insert_event(
                room_nid=room.record.room_nid,
                event_id=event.event_id,
                type_nid=key[0] if key else self.type_nid(batch, event.type),
                state_key_nid=key[1] if key else StateKeyNID(0),
                depth=event.depth,
                outlier=outlier,
                rejected=rejection_reason is not None,
                rejection_reason=rejection_reason,
                state_snapshot_nid=state_snapshot_nid,
                auth_event_nids=auth_event_nids,
                prev_event_nids=prev_event_nids,
                json=json,
            )
        loaded = LoadedEvent(
            nid=EventNID(nid),
            event_id=event.event_id,
            room_nid=room.record.room_nid,
            key=key,
            rejected=rejection_reason is not None,
            outlier=outlier,
            redacted=False,
            state_snapshot_nid=state_snapshot_nid,
            auth_nids=auth_event_nids,
            prev_nids=prev_event_nids,
            event=event,
            json=json,
        )
        self._events.put(loaded.nid, loaded)
        self._ids.put(loaded.event_id, loaded.nid)
        self._absent.discard(loaded.event_id)
        self._batch_records.pop(loaded.event_id, None)
        index = room.auth_index
        if all(a in index for a in auth_event_nids):
            index.add(loaded.nid, key, auth_event_nids)
        return loaded

    # ------------------------------------------------------------ state

    def load_state(self, batch: Batch, snapshot_nid: StateSnapshotNID) -> StateAt:
        if snapshot_nid == 0:
            return StateAt({})  # an outlier's: never stored as a snapshot
        state = self._states.get(snapshot_nid)
        if state is None:
            state = StateAt(batch.load_state(snapshot_nid), snapshot_nid)
            self._states.put(snapshot_nid, state)
        return state

    def snapshot_for(self, batch: Batch, room: TrackedRoom, state: StateAt) -> StateSnapshotNID:
        """The snapshot NID of a state, storing it first if it is not stored yet."""
        if state.snapshot_nid == 0:
            if state.base is not None and state.changes is not None:
                base_nid = self.snapshot_for(batch, room, state.base)
                state.snapshot_nid = batch.store_state_delta(
                    room.record.room_nid, base_nid, state.changes
                )
            else:
                state.snapshot_nid = batch.store_state(room.record.room_nid, state.entries)
            state.base = None  # the base may now be forgotten
            self._states.put(state.snapshot_nid, state)
        return state.snapshot_nid

    def state_before(self, batch: Batch, room: TrackedRoom, event: LoadedEvent) -> StateAt:
        return self.load_state(batch, event.state_snapshot_nid)

    def state_after(self, batch: Batch, room: TrackedRoom, event: LoadedEvent) -> StateAt:
        cached = self._after.get(event.nid)
        if cached is not None:
            return cached
        before = self.state_before(batch, room, event)
        entries = state_after(before.entries, event.key, event.nid, event.rejected)
        if entries is before.entries or event.key is None:
            after = before
        else:
            after = StateAt(entries, base=before, changes={event.key: event.nid})
        self._after.put(event.nid, after)
        return after

    def resolved(self, states: frozenset[StateAt]) -> StateAt | None:
        return self._resolved.get(states)

    def remember_resolved(self, states: frozenset[StateAt], result: StateAt) -> None:
        self._resolved.put(states, result)


__all__ = ["CacheLimits", "RoomCache", "TrackedRoom"]
