"""Input handling: one input message through the six steps of the design (§1), in one place.

    bytes ─ decode ─ room version ─ event ID ─ auth (own auth events) ─ state before
          ─ auth (state before) ─ soft-fail (current state) ─ store ─ extremities/current state
          ─ outputs

`InputHandler.handle_batch` runs a list of input messages inside one storage `Batch` (one
database transaction). The Matrix logic itself lives in the pure core (`processor.matrix`,
`processor.core.decision`); this module loads what each step needs, calls it, and writes the
result. `RoomCache` keeps immutable data (events, state maps) in process between batches; it
is dropped whenever a batch fails, because it may hold that batch's uncommitted writes.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NoReturn

import msgspec

from processor.core import decision
from processor.core.decision import Outcome
from processor.core.nids import (
    EMPTY_STATE_KEY_NID,
    MROOM_HISTORY_VISIBILITY_NID,
    EventNID,
    RoomNID,
    StateKeyTuple,
    StateSnapshotNID,
)
from processor.errors import InvalidEvent, SchemaError, StateResolutionError
from processor.matrix.canonical_json import canonical_json
from processor.matrix.events import Event
from processor.matrix.pdu import decode_pdu
from processor.matrix.redaction import redact
from processor.matrix.room_versions import RoomVersion, room_version
from processor.matrix.state_res import resolve_state
from processor.matrix.state_res.v2 import conflicted_state_keys
from processor.pipeline.caches import LoadedEvent, RoomCache, RoomState, StateAt
from processor.pipeline.outputs import OutputBuilder
from processor.storage.base import Batch, RedactionRecord
from schemas.codecs import decode_input
from schemas.dead_letter import DeadLetterReason
from schemas.input import InputRoomEvent

log = logging.getLogger(__name__)

#: Auth verdicts kept per room for reuse (see `decision.auth_verdict_key`).
AUTH_VERDICTS_PER_ROOM = 4096


@dataclass(slots=True)  # not frozen: a frozen __init__ costs 2x, per event
class InputMessage:
    """One input record: its bytes and where it came from (for dead letters)."""

    value: bytes
    topic: str
    partition: int
    offset: int


@dataclass(slots=True)
class DeadLetter:
    message: InputMessage
    reason: DeadLetterReason
    detail: str


@dataclass(slots=True)
class BatchResult:
    outcomes: dict[Outcome, int] = field(default_factory=dict)
    dead_letters: list[DeadLetter] = field(default_factory=list)
    state_resolutions: int = 0
    state_resolution_seconds: float = 0.0
    outputs: int = 0
    #: Event ID -> outcome (only when the handler records outcomes).
    event_outcomes: dict[str, Outcome] = field(default_factory=dict)

    def count(self, outcome: Outcome) -> None:
        self.outcomes[outcome] = self.outcomes.get(outcome, 0) + 1


class _DeadLetterError(Exception):
    def __init__(self, reason: DeadLetterReason, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


class _PeekPDU(msgspec.Struct):
    """Just enough of a PDU to find its room version before decoding it for real."""

    type: Any = None
    state_key: Any = None
    room_id: Any = None
    #: Read only for a create event: left raw, so the others' content is skipped, not built.
    content: msgspec.Raw = msgspec.Raw(b"null")


_peek_decoder = msgspec.json.Decoder(_PeekPDU)


@dataclass(slots=True)  # not frozen: a frozen __init__ costs 2x, per event
class _OwnAuth:
    """Step 2a's result: the event's auth events, the verdict, and what it read by key."""

    event: Event
    events: list[LoadedEvent]
    rejected: str | None
    checked: dict[tuple[str, str], EventNID]


@dataclass(slots=True)  # not frozen: a frozen __init__ costs 2x, per event
class Decoded:
    """An input message after step 1."""

    item: InputRoomEvent
    event: Event
    version: RoomVersion


class InputHandler:
    """Processes input messages against one store. Not thread-safe: one per partition."""

    def __init__(
        self,
        server_name: str,
        cache: RoomCache,
        outputs: OutputBuilder,
        *,
        record_outcomes: bool = False,
    ) -> None:
        self._record_outcomes = record_outcomes
        self._event_id: str | None = None
        #: Versions of the rooms whose create events are in the batch being decoded.
        self._batch_versions: dict[str, RoomVersion] = {}
        self._server_name = server_name
        self._cache = cache
        self._outputs = outputs

    # ---------------------------------------------------------------- batch

    def handle_batch(self, batch: Batch, messages: Sequence[InputMessage]) -> BatchResult:
        result = BatchResult()
        touched: dict[RoomNID, RoomState] = {}
        self._outputs.begin(batch, result)
        # Step 1 for the whole batch first, so what the events reference is looked up in
        # one round trip instead of one per event.
        self._batch_versions = {}
        decoded = [self._decode(batch, message) for message in messages]
        self._cache.prefetch(
            batch, [d for d in decoded if isinstance(d, Decoded)]
        )
        for message, item in zip(messages, decoded, strict=True):
            self._event_id = None
            try:
                if isinstance(item, _DeadLetterError):
                    raise item
                self._event_id = item.event.event_id
                outcome = self._handle(batch, item, touched, result)
            except _DeadLetterError as e:
                result.dead_letters.append(DeadLetter(message, e.reason, e.detail))
                self._outputs.dead_letter(message, e.reason, e.detail)
                outcome = Outcome.DEAD_LETTERED
            result.count(outcome)
            # A duplicate keeps the outcome it had the first time.
            recorded = self._record_outcomes and outcome is not Outcome.DUPLICATE
            if recorded and self._event_id is not None:
                result.event_outcomes[self._event_id] = outcome
        for room in touched.values():
            batch.update_room(
                room.record.room_nid,
                forward_extremities=room.forward_extremities,
                current_snapshot_nid=room.store_current(batch),
                last_stream_position=room.stream_position,
                last_sent_event_id=room.last_sent_event_id,
            )
        return result

    def _decode(self, batch: Batch, message: InputMessage) -> Decoded | _DeadLetterError:
        """Step 1: decode and validate for the room version; compute the event ID."""
        try:
            try:
                item = decode_input(message.value)
            except SchemaError as e:
                raise _DeadLetterError(DeadLetterReason.MALFORMED, str(e)) from e
            version = self._room_version(batch, item)
            try:
                event = decode_pdu(item.event, version, root="$.event")
            except InvalidEvent as e:
                raise _DeadLetterError(_invalid_reason(e), str(e)) from e
        except _DeadLetterError as e:
            return e
        if event.type == "m.room.create" and event.state_key == "":
            self._batch_versions.setdefault(event.room_id, version)
        return Decoded(item, event, version)

    # ---------------------------------------------------------------- one event

    def _handle(
        self,
        batch: Batch,
        decoded: Decoded,
        touched: dict[RoomNID, RoomState],
        result: BatchResult,
    ) -> Outcome:
        """Steps 2-6 for one decoded event; raises `_DeadLetterError` for what it cannot
        process."""
        item, event = decoded.item, decoded.event
        stored_nid = self._cache.event_nid(batch, event.event_id)
        if stored_nid is not None and item.kind == "outlier":
            return Outcome.DUPLICATE
        room = self._room_of(batch, decoded)
        # An event stored before is a no-op, unless it was stored as an outlier and now
        # arrives to be processed (`new`/`old`): then it gets its state now — a rejected
        # outlier too, since events after it may name it as a prev event, and the state
        # after it (the state before it) is what they build on.
        outlier_nid: EventNID | None = None
        if stored_nid is not None:
            stored = self._cache.load(batch, room, [stored_nid])[stored_nid]
            if not stored.outlier:
                return Outcome.DUPLICATE
            outlier_nid = stored_nid
        touched[room.record.room_nid] = room
        key = self._state_key_tuple(batch, event)

        # Step 2a: auth against the event's own auth events (not stored: not processed).
        own = self._check_own_auth_events(batch, room, event)
        if item.kind == "outlier":
            outlier = self._store(
                batch, room, event, item, key, (), own.events, own.rejected, None, outlier=True
            )
            if own.rejected:
                return Outcome.REJECTED
            # An invite of a local user into a room this server is not in arrives as an
            # outlier: it is still the user's invite.
            self._invites(batch, room, outlier)
            return Outcome.OUTLIER

        # Step 4: the state before the event.
        prev_events = self._prev_events(batch, room, event, item)
        state_before = self._state_before(batch, room, event, item, prev_events, result)
        # Steps 2b and 2c: auth against the state before, soft fail against the current.
        rejected, soft_failed = self._check_against_states(batch, room, item, own, state_before)

        loaded = self._store(
            batch, room, event, item, key, prev_events, own.events, rejected, state_before,
            outlier=False, outlier_nid=outlier_nid,
        )
        if rejected is not None:
            log.debug("rejected %s: %s", event.event_id, rejected)
            return Outcome.REJECTED
        if self._cache.pending_redactions(loaded.event_id):
            self._apply_pending_redactions(batch, room, loaded)
            # Once redacted, the redacted form is what is served, its own output included.
            loaded = self._cache.load(batch, room, [loaded.nid])[loaded.nid]
        if item.kind == "old":
            self._backfilled(batch, room, loaded, state_before)
            return Outcome.ACCEPTED
        if soft_failed is not None:
            log.debug("soft-failed %s: %s", event.event_id, soft_failed)
            return Outcome.SOFT_FAILED

        # Step 5: forward extremities and the current state.
        removed, added = self._advance_room(batch, room, loaded, item, prev_events, result)
        # Step 6: outputs.
        self._publish(batch, room, loaded, item, removed, added)
        if event.type == "m.room.redaction":
            self._handle_redaction(batch, room, loaded, state_before.entries)
        return Outcome.ACCEPTED

    def _room_of(self, batch: Batch, decoded: Decoded) -> RoomState:
        event, version = decoded.event, decoded.version
        room = self._cache.room(batch, event.room_id)
        if room is None:
            if event.type != "m.room.create" or event.state_key != "":
                self._unknown_room(batch, decoded)
            return self._create_room(batch, event, decoded.item, version)
        if room.version is not version:
            raise _DeadLetterError(
                DeadLetterReason.INVALID_EVENT,
                f"event {event.event_id} claims room version {version.id} but room "
                f"{event.room_id} is version {room.version.id}",
            )
        return room

    def _check_own_auth_events(self, batch: Batch, room: RoomState, event: Event) -> _OwnAuth:
        """Step 2a. Auth events that are not stored make the event unprocessable."""
        auth_events = self._require(
            batch, room, event.auth_event_ids, DeadLetterReason.MISSING_AUTH_EVENTS, "auth"
        )
        implied_create = self._implied_create_event(batch, room, event)
        verdict_key = decision.auth_verdict_key(event, tuple(e.nid for e in auth_events))
        verdicts = room.auth_verdicts
        if verdict_key is not None and verdict_key in verdicts:
            rejected = verdicts[verdict_key]
        else:
            rejected = decision.check_against_auth_events(
                event,
                [e.event for e in auth_events],
                [e.event_id for e in auth_events if e.rejected],
                room.version,
                implied_create.event if implied_create is not None else None,
            )
            if verdict_key is not None:
                if len(verdicts) >= AUTH_VERDICTS_PER_ROOM:
                    verdicts.clear()
                verdicts[verdict_key] = rejected
        checked = {e.event.state_tuple: e.nid for e in auth_events if e.event.state_tuple}
        if implied_create is not None:
            checked[("m.room.create", "")] = implied_create.nid
        return _OwnAuth(event, auth_events, rejected, checked)

    def _prev_events(
        self, batch: Batch, room: RoomState, event: Event, item: InputRoomEvent
    ) -> list[LoadedEvent]:
        if not item.has_state:
            return self._require(
                batch, room, event.prev_event_ids, DeadLetterReason.MISSING_PREV_EVENTS, "prev"
            )
        # A join over federation: the state is supplied, and the prev events (the resident
        # server's extremities) are usually not stored here; keep those that are.
        found = self._cache.load_by_id(batch, room, event.prev_event_ids)
        return [
            found[i]
            for i in event.prev_event_ids
            if i in found and found[i].room_nid == room.record.room_nid
        ]

    def _check_against_states(
        self,
        batch: Batch,
        room: RoomState,
        item: InputRoomEvent,
        own: _OwnAuth,
        state_before: StateAt,
    ) -> tuple[str | None, str | None]:
        """Steps 2b (reject) and 2c (soft fail; `new` events only, and not a state-rewriting
        join, which is checked against the state it brings). A check is skipped when the
        state hands over exactly the events an earlier check already read: the auth rules
        are a function of the event and those events."""
        event, rejected, checked = own.event, own.rejected, own.checked
        if rejected is not None:
            return rejected, None
        before_nids = self._auth_nids(batch, room, event, state_before.entries)
        if before_nids != checked:
            rejected = decision.check_against_state(
                event, self._auth_events(batch, room, before_nids), room.version
            )
            if rejected is not None:
                return rejected, None
        if item.kind != "new" or item.has_state:
            return None, None
        current = room.current_state(batch).entries
        if current is state_before.entries:
            return None, None
        current_nids = self._auth_nids(batch, room, event, current)
        if current_nids == before_nids:
            return None, None
        soft_failed = decision.check_against_state(
            event, self._auth_events(batch, room, current_nids), room.version
        )
        return None, soft_failed

    def _backfilled(
        self, batch: Batch, room: RoomState, loaded: LoadedEvent, state_before: StateAt
    ) -> None:
        """An accepted `old` event: announced with the visibility in effect at it; the
        room's current state and extremities stay as they are."""
        at_event = self._cache.state_after(batch, room, loaded).entries
        self._outputs.old_room_event(
            room, loaded, self._history_visibility(batch, room, at_event)
        )
        if loaded.event.type == "m.room.redaction":
            # A backfilled redaction is history like any other: it applies too.
            self._handle_redaction(batch, room, loaded, state_before.entries)

    def _advance_room(
        self,
        batch: Batch,
        room: RoomState,
        loaded: LoadedEvent,
        item: InputRoomEvent,
        prev_events: Sequence[LoadedEvent],
        result: BatchResult,
    ) -> tuple[dict[StateKeyTuple, EventNID], dict[StateKeyTuple, EventNID]]:
        """Step 5: the new forward extremities and current state; returns the current
        state's change as (removed, added)."""
        old_current = room.current_state(batch)
        after = self._cache.state_after(batch, room, loaded)
        if item.has_state:
            extremities: tuple[EventNID, ...] = (loaded.nid,)
        else:
            extremities = decision.forward_extremities_after(
                room.forward_extremities,
                self._extremities_reached(batch, room, prev_events),
                loaded.nid,
            )
        if len(extremities) == 1:
            new_current = after
        else:
            tips = self._cache.load(batch, room, extremities)
            new_current = self._resolve(
                batch, room, [self._cache.state_after(batch, room, tips[n]) for n in extremities],
                result, prefer=old_current,
            )
        if (
            new_current.changes is not None
            and new_current.base is not None
            and new_current.base.entries is old_current.entries
        ):
            # The common case: the new current state is the old one plus this event.
            removed, added = decision.state_delta_of_changes(
                old_current.entries, new_current.changes
            )
        else:
            removed, added = decision.state_delta(old_current.entries, new_current.entries)
        room.forward_extremities = extremities
        room.set_current(new_current)
        self._update_memberships(batch, room, added)
        return removed, added

    def _publish(
        self,
        batch: Batch,
        room: RoomState,
        loaded: LoadedEvent,
        item: InputRoomEvent,
        removed: Mapping[StateKeyTuple, EventNID],
        added: Mapping[StateKeyTuple, EventNID],
    ) -> None:
        """Step 6: the new_room_event, and the invite outputs it causes."""
        extremities = room.forward_extremities
        referenced = {*extremities, *added.values(), *removed.values()}
        event_ids = {
            nid: e.event_id for nid, e in self._cache.load(batch, room, referenced).items()
        }
        self._outputs.new_room_event(
            room,
            loaded,
            item,
            latest=extremities,
            added=added,
            removed=removed,
            rewrites_state=item.has_state,
            history_visibility=self._history_visibility(batch, room),
            event_ids=event_ids,
            last_sent_event_id=room.last_sent_event_id,
        )
        room.last_sent_event_id = loaded.event_id
        self._invites(batch, room, loaded)

    # ---------------------------------------------------------------- steps

    def _extremities_reached(
        self, batch: Batch, room: RoomState, prev_events: Sequence[LoadedEvent]
    ) -> set[EventNID]:
        """The forward extremities that are ancestors of a new event (so no longer
        extremities). Usually its prev events are the extremities themselves; a prev event
        that is not one (a backfilled `old` event, say) is walked back, no deeper than the
        shallowest extremity."""
        extremities = set(room.forward_extremities)
        reached: set[EventNID] = set()
        if not extremities:
            return reached
        floor: int | None = None
        seen: set[EventNID] = set()
        stack = list(prev_events)
        while stack:
            event = stack.pop()
            if event.nid in seen:
                continue
            seen.add(event.nid)
            if event.nid in extremities:
                reached.add(event.nid)
                continue
            if floor is None:
                floor = min(
                    e.event.depth for e in self._cache.load(batch, room, extremities).values()
                )
            if event.event.depth > floor and event.prev_nids:
                stack.extend(self._cache.load(batch, room, event.prev_nids).values())
        return reached

    def _room_version(self, batch: Batch, item: InputRoomEvent) -> RoomVersion:
        try:
            peek = _peek_decoder.decode(item.event)
        except (msgspec.DecodeError, msgspec.ValidationError) as e:
            raise _DeadLetterError(DeadLetterReason.MALFORMED, f"event: {e}") from e
        if peek.type == "m.room.create" and peek.state_key == "":
            try:
                content = msgspec.json.decode(peek.content)
            except msgspec.DecodeError as e:
                raise _DeadLetterError(DeadLetterReason.MALFORMED, f"event: {e}") from e
            if not isinstance(content, dict):
                content = {}
            # Room versions: a create event without `room_version` creates a v1 room.
            version_id = content.get("room_version", "1")
            try:
                return room_version(version_id)
            except InvalidEvent as e:
                raise _DeadLetterError(DeadLetterReason.UNKNOWN_ROOM_VERSION, str(e)) from e
        if not isinstance(peek.room_id, str):
            raise _DeadLetterError(
                DeadLetterReason.INVALID_EVENT, "Expected `str` - at `$.event.room_id`"
            )
        if "\x00" in peek.room_id:
            # Looked up as SQL text, which cannot hold it (see `decode_pdu`).
            raise _DeadLetterError(
                DeadLetterReason.INVALID_EVENT,
                "Expected a string without U+0000 - at `$.event.room_id`",
            )
        room = self._cache.room(batch, peek.room_id)
        if room is not None:
            return room.version
        created = self._batch_versions.get(peek.room_id)
        if created is not None:
            return created
        if item.room_version is None:
            raise _DeadLetterError(
                DeadLetterReason.UNKNOWN_ROOM,
                f"room {peek.room_id} is not known and the input names no room_version",
            )
        try:
            return room_version(item.room_version)
        except InvalidEvent as e:
            raise _DeadLetterError(DeadLetterReason.UNKNOWN_ROOM_VERSION, str(e)) from e

    def _unknown_room(self, batch: Batch, decoded: Decoded) -> NoReturn:
        """An event other than a create event, in a room not established: dead-lettered.
        Only the room's create event establishes it (and its version, from its content):
        any other event of the room cites that create event among its auth events (v12:
        implies it by the room ID), so it could not be checked anyway — and registering the
        room from it, with the version its input claims, would make that claim the room's
        version for good (a v11 claim on a v1 room dead-letters every real event)."""
        event, item = decoded.event, decoded.item
        if item.kind == "new" and not item.has_state:
            raise _DeadLetterError(
                DeadLetterReason.UNKNOWN_ROOM,
                f"room {event.room_id} is not known: send its create event first, "
                "or the event with has_state and its state",
            )
        wanted = list(event.auth_event_ids)
        if decoded.version.create_event_implicit_in_auth_events:
            wanted.append("$" + event.room_id[1:])
        missing = [i for i in wanted if self._cache.event_nid(batch, i) is None]
        if missing:
            raise _DeadLetterError(
                DeadLetterReason.MISSING_AUTH_EVENTS,
                f"auth events not stored: {', '.join(missing)} (room {event.room_id} is not "
                "known: its create event comes first)",
            )
        raise _DeadLetterError(
            DeadLetterReason.UNKNOWN_ROOM,
            f"room {event.room_id} is not known: send its create event first",
        )

    def _create_room(
        self, batch: Batch, event: Event, item: InputRoomEvent, version: RoomVersion
    ) -> RoomState:
        """Establish a room from its create event. The event is checked first (it needs
        nothing stored): a create event that would be rejected, or dead-lettered after the
        room was registered, must not establish the room, or a forged one with another
        version would lock the real one out."""
        if event.auth_event_ids:
            rejected: str | None = "m.room.create: a create event has no auth_events"
        else:
            rejected = decision.check_against_auth_events(event, [], [], version)
        if rejected is None and item.has_state and item.state_event_ids:
            rejected = "a create event has no state before it (state_event_ids)"
        if rejected is not None:
            raise _DeadLetterError(
                DeadLetterReason.INVALID_EVENT,
                f"create event {event.event_id} does not establish room {event.room_id}: "
                f"{rejected}",
            )
        record = batch.insert_room(event.room_id, version.id)
        return self._cache.add_room(record, version)

    def _implied_create_event(
        self, batch: Batch, room: RoomState, event: Event
    ) -> LoadedEvent | None:
        """v12 (MSC4291): the create event is implied by the room ID, never listed in
        auth_events; its ID is the room ID with `$` for `!`."""
        if not room.version.create_event_implicit_in_auth_events or event.type == (
            "m.room.create"
        ):
            return None
        create_id = "$" + room.record.room_id[1:]
        create = self._cache.load_by_id(batch, room, [create_id]).get(create_id)
        if create is None:
            raise _DeadLetterError(
                DeadLetterReason.MISSING_AUTH_EVENTS,
                f"auth events not stored: {create_id} (the room's create event)",
            )
        return create

    def _state_key_tuple(self, batch: Batch, event: Event) -> StateKeyTuple | None:
        if event.state_key is None:
            return None
        return (self._cache.type_nid(batch, event.type), self._cache.state_key_nid(
            batch, event.state_key))

    def _require(
        self,
        batch: Batch,
        room: RoomState,
        event_ids: Sequence[str],
        reason: DeadLetterReason,
        what: str,
    ) -> list[LoadedEvent]:
        found = self._cache.load_by_id(batch, room, event_ids)
        missing = [event_id for event_id in event_ids if event_id not in found]
        if missing:
            raise _DeadLetterError(reason, f"{what} events not stored: {', '.join(missing)}")
        loaded = [found[event_id] for event_id in event_ids]
        for e in loaded:
            if e.room_nid != room.record.room_nid:
                raise _DeadLetterError(
                    DeadLetterReason.INVALID_EVENT,
                    f"{what} event {e.event_id} is in another room",
                )
        return loaded

    def _state_before(
        self,
        batch: Batch,
        room: RoomState,
        event: Event,
        item: InputRoomEvent,
        prev_events: Sequence[LoadedEvent],
        result: BatchResult,
    ) -> StateAt:
        if item.has_state:
            state_events = self._require(
                batch,
                room,
                item.state_event_ids,
                DeadLetterReason.MISSING_STATE_EVENTS,
                "state",
            )
            entries: dict[StateKeyTuple, EventNID] = {}
            for e in state_events:
                if e.key is None:
                    raise _DeadLetterError(
                        DeadLetterReason.INVALID_EVENT,
                        f"state event {e.event_id} is not a state event",
                    )
                entries[e.key] = e.nid
            return StateAt(entries)
        if not prev_events:
            return StateAt({})
        for prev in prev_events:
            if prev.outlier:
                raise _DeadLetterError(
                    DeadLetterReason.MISSING_STATE_EVENTS,
                    f"prev event {prev.event_id} is an outlier: the state after it is not known",
                )
        afters = [self._cache.state_after(batch, room, prev) for prev in prev_events]
        first = afters[0]
        if all(a is first or a.entries is first.entries or (
            a.snapshot_nid != 0 and a.snapshot_nid == first.snapshot_nid) for a in afters):
            return first
        return self._resolve(batch, room, afters, result)

    def _resolve(
        self,
        batch: Batch,
        room: RoomState,
        states: Sequence[StateAt],
        result: BatchResult,
        prefer: StateAt | None = None,
    ) -> StateAt:
        """The resolution of `states`, kept as one of them (`prefer` when it is one, else one
        already stored) plus the changes at the conflicted keys, so that storing it and
        comparing it with that state never walk the whole state."""
        distinct = frozenset({id(s.entries): s for s in states}.values())
        if len(distinct) == 1:
            return states[0]
        # The same states resolve to the same state: a message on one branch of a fork
        # leaves the extremities' states as they were.
        cached = self._cache.resolved(distinct)
        if cached is not None:
            return cached
        result.state_resolutions += 1
        started = time.perf_counter()
        source = self._cache.event_source(batch, room)
        state_sets = [s.entries for s in distinct]
        try:
            source.ensure_indexed(set().union(*(entries.values() for entries in state_sets)))
            resolved = resolve_state(room.version, state_sets, source)
        except StateResolutionError as e:
            raise _DeadLetterError(DeadLetterReason.MISSING_STATE_EVENTS, str(e)) from e
        finally:
            result.state_resolution_seconds += time.perf_counter() - started
        base = _resolution_base(distinct, prefer)
        # Resolution keeps every unconflicted entry, so only the conflicted keys, and keys no
        # input holds (an event of the auth difference that passes the iterative auth checks
        # enters the state: v2 step 2), can differ from any one input; a key resolved away
        # becomes a removal (0).
        changed_keys = conflicted_state_keys(state_sets)
        changed_keys.update(resolved.keys() - base.entries.keys())
        changes = {
            key: resolved.get(key, EventNID(0))
            for key in changed_keys
            if resolved.get(key) != base.entries.get(key)
        }
        state = StateAt(resolved, base=base, changes=changes)
        self._cache.remember_resolved(distinct, state)
        return state

    def _auth_nids(
        self,
        batch: Batch,
        room: RoomState,
        event: Event,
        state: Mapping[StateKeyTuple, EventNID],
    ) -> dict[tuple[str, str], EventNID]:
        """The events of `state` the auth rules read for `event`, by key."""
        keys = decision.auth_keys(event, room.version)
        return decision.StateLookup(
            state,
            lambda t: self._cache.type_nid(batch, t),
            lambda k: self._cache.state_key_nid(batch, k),
        ).nids_for(keys)

    def _auth_events(
        self, batch: Batch, room: RoomState, nids: Mapping[tuple[str, str], EventNID]
    ) -> dict[tuple[str, str], Event]:
        loaded = self._cache.load(batch, room, nids.values())
        return {k: loaded[nid].event for k, nid in nids.items()}

    def _auth_state(
        self,
        batch: Batch,
        room: RoomState,
        event: Event,
        state: Mapping[StateKeyTuple, EventNID],
    ) -> dict[tuple[str, str], Event]:
        return self._auth_events(batch, room, self._auth_nids(batch, room, event, state))

    def _store(
        self,
        batch: Batch,
        room: RoomState,
        event: Event,
        item: InputRoomEvent,
        key: StateKeyTuple | None,
        prev_events: Sequence[LoadedEvent],
        auth_events: Sequence[LoadedEvent],
        rejected: str | None,
        state_before: StateAt | None,
        *,
        outlier: bool,
        outlier_nid: EventNID | None = None,
    ) -> LoadedEvent:
        snapshot = StateSnapshotNID(0)
        if state_before is not None:
            snapshot = self._cache.snapshot_for(batch, room, state_before)
        if rejected is not None and "\x00" in rejected:
            # A reason may quote the event's content; it is SQL text, which cannot hold NUL.
            rejected = rejected.replace("\x00", "\\u0000")
        return self._cache.insert_event(
            batch,
            room,
            event,
            key=key,
            outlier=outlier,
            rejection_reason=rejected,
            state_snapshot_nid=snapshot,
            auth_event_nids=tuple(e.nid for e in auth_events),
            prev_event_nids=tuple(e.nid for e in prev_events),
            json=bytes(item.event),
            outlier_nid=outlier_nid,
        )

    def _history_visibility(
        self,
        batch: Batch,
        room: RoomState,
        state: Mapping[StateKeyTuple, EventNID] | None = None,
    ) -> str:
        """m.room.history_visibility in `state` (default: the room's current state)."""
        if state is None:
            state = room.current_state(batch).entries
        nid = state.get((MROOM_HISTORY_VISIBILITY_NID, EMPTY_STATE_KEY_NID))
        if nid is None:
            return "shared"
        value = self._cache.load(batch, room, [nid])[nid].event.content.get(
            "history_visibility"
        )
        return value if isinstance(value, str) else "shared"

    def _update_memberships(
        self, batch: Batch, room: RoomState, added: Mapping[StateKeyTuple, EventNID]
    ) -> None:
        member_type = self._cache.known_type_nid("m.room.member")
        if not added or member_type is None:
            return
        members = [(k, nid) for k, nid in added.items() if k[0] == member_type]
        if not members:
            return
        loaded = self._cache.load(batch, room, [nid for _, nid in members])
        for (_, target), nid in members:
            membership = loaded[nid].event.membership
            if isinstance(membership, str):
                batch.set_membership(room.record.room_nid, target, membership, nid)

    def _is_local(self, user_id: str) -> bool:
        return bool(self._server_name) and user_id.partition(":")[2] == self._server_name

    def _invites(self, batch: Batch, room: RoomState, loaded: LoadedEvent) -> None:
        event = loaded.event
        if event.type != "m.room.member" or event.state_key is None:
            return
        target = event.state_key
        if not self._is_local(target):
            return
        retired = batch.retire_invites(room.record.room_nid, target)
        if retired:
            ids = self._cache.load(batch, room, retired)
            for nid in retired:
                self._outputs.retire_invite_event(room, ids[nid], loaded, target)
        if event.membership == "invite":
            batch.insert_invite(room.record.room_nid, target, loaded.nid)
            self._outputs.new_invite_event(room, loaded, target)

    def _handle_redaction(
        self,
        batch: Batch,
        room: RoomState,
        redaction: LoadedEvent,
        state_before: Mapping[StateKeyTuple, EventNID],
    ) -> None:
        target_id = redaction.event.redacts
        if not isinstance(target_id, str):
            return
        targets = self._cache.load_by_id(batch, room, [target_id])
        target = targets.get(target_id)
        if target is None:
            # Not here yet: applied when the target arrives (see _apply_pending_redactions).
            batch.insert_redaction(redaction.nid, target_id, False)
            self._cache.add_pending_redaction(
                RedactionRecord(redaction.nid, target_id, validated=False)
            )
            return
        self._apply_redaction(batch, room, redaction, target, state_before)

    def _apply_pending_redactions(self, batch: Batch, room: RoomState, loaded: LoadedEvent) -> None:
        for record in self._cache.pending_redactions(loaded.event_id):
            redaction_nid = record.redaction_event_nid
            redaction = self._cache.load(batch, room, [redaction_nid])[redaction_nid]
            if redaction.rejected or redaction.room_nid != room.record.room_nid:
                continue
            before = self._cache.state_before(batch, room, redaction)
            self._apply_redaction(batch, room, redaction, loaded, before.entries)

    def _apply_redaction(
        self,
        batch: Batch,
        room: RoomState,
        redaction: LoadedEvent,
        target: LoadedEvent,
        state_before: Mapping[StateKeyTuple, EventNID],
    ) -> None:
        if target.redacted or target.room_nid != room.record.room_nid:
            return
        auth_state = self._auth_state(batch, room, redaction.event, state_before)
        if not decision.redaction_is_valid(
            redaction.event, target.event.sender, auth_state, room.version
        ):
            batch.insert_redaction(redaction.nid, target.event_id, False)
            return
        redacted = canonical_json(redact(dict(target.event.pdu), room.version))
        batch.redact_event(target.nid, redacted, redaction.nid)
        batch.insert_redaction(redaction.nid, target.event_id, True)
        self._cache.forget(target.nid, target.event_id)
        self._outputs.redacted_event(room, target.event_id, redaction)


def _resolution_base(states: Collection[StateAt], prefer: StateAt | None) -> StateAt:
    """The input a resolved state is expressed against: `prefer` (the room's current state)
    when it is one of them, else one that is stored already, else any."""
    for state in states:
        if prefer is not None and state.entries is prefer.entries:
            return state
    for state in states:
        if state.snapshot_nid:
            return state
    return next(iter(states))


def _invalid_reason(error: InvalidEvent) -> DeadLetterReason:
    from processor.errors import UnknownRoomVersion
    from schemas.errors import EventTooLarge

    if isinstance(error, UnknownRoomVersion):
        return DeadLetterReason.UNKNOWN_ROOM_VERSION
    if isinstance(error, EventTooLarge):
        # Over 65,536 bytes, or an identifier over 255 bytes ("Size limits").
        return DeadLetterReason.OVERSIZED_EVENT
    return DeadLetterReason.INVALID_EVENT


__all__ = [
    "BatchResult",
    "DeadLetter",
    "InputHandler",
    "InputMessage",
]

