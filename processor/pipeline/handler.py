"""Input handling: each input message through the processing steps, in order
(docs/architecture.md, "The data path"):

    bytes ─ 1 decode (decode.py) ─ room (rooms.py) ─ 2a auth: own auth events (auth_checks.py)
          ─ 4 state before (state_before.py) ─ 2b/2c auth: state before, current state
          ─ 3 store ─ redactions (redactions.py) ─ 5 room advance (room_advance.py)
          ─ 6 outputs (outputs.py), invites (membership.py)

`InputHandler.handle_batch` runs a list of input messages inside one storage `Batch` (one
database transaction). The Matrix logic itself lives in the pure core (`processor.matrix`,
`processor.core.decision`); the steps load what it needs, call it, and write the result.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from processor.core.decision import Outcome
from processor.matrix.events import Event
from processor.nids import EventNID, RoomNID, StateKeyTuple, StateSnapshotNID
from processor.pipeline import auth_checks, membership, redactions, room_advance, state_before
from processor.pipeline.caches import RoomCache, TrackedRoom
from processor.pipeline.context import RoomContext
from processor.pipeline.decode import BatchDecoder
from processor.pipeline.outputs import OutputBuilder
from processor.pipeline.rooms import room_of
from processor.pipeline.types import (
    BatchResult,
    DeadLetteredInput,
    DeadLetterError,
    Decoded,
    InputMessage,
    LoadedEvent,
    StateAt,
)
from processor.storage.base import Batch
from schemas.input import InputRoomEvent

log = logging.getLogger(__name__)


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
        self._server_name = server_name
        self._cache = cache
        self._outputs = outputs

    def handle_batch(self, batch: Batch, messages: Sequence[InputMessage]) -> BatchResult:
        result = BatchResult()
        touched: dict[RoomNID, TrackedRoom] = {}
        self._outputs.begin(batch, result)
        # Step 1 for the whole batch first, so what the events reference is looked up in
        # one round trip instead of one per event.
        decoder = BatchDecoder(self._cache, batch)
        decoded = [decoder.decode(message) for message in messages]
        self._cache.prefetch(batch, [d for d in decoded if isinstance(d, Decoded)])
        for message, item in zip(messages, decoded, strict=True):
            event_id: str | None = None
            try:
                if isinstance(item, DeadLetterError):
                    raise item
                event_id = item.event.event_id
                outcome = self._handle(batch, item, touched, result)
            except DeadLetterError as e:
                result.dead_letters.append(DeadLetteredInput(message, e.reason, e.detail))
                self._outputs.dead_letter(message, e.reason, e.detail)
                outcome = Outcome.DEAD_LETTERED
            result.count(outcome)
            # A duplicate keeps the outcome it had the first time.
            recorded = self._record_outcomes and outcome is not Outcome.DUPLICATE
            if recorded and event_id is not None:
                result.event_outcomes[event_id] = outcome
        for room in touched.values():
            batch.update_room(
                room.record.room_nid,
                forward_extremities=room.forward_extremities,
                current_snapshot_nid=room.store_current(batch),
                last_stream_position=room.stream_position,
                last_sent_event_id=room.last_sent_event_id,
            )
        return result

    def _handle(
        self,
        batch: Batch,
        decoded: Decoded,
        touched: dict[RoomNID, TrackedRoom],
        result: BatchResult,
    ) -> Outcome:
        """The steps after decoding, for one event; raises `DeadLetterError` for what it
        cannot process."""
        item, event = decoded.item, decoded.event
        stored_nid = self._cache.event_nid(batch, event.event_id)
        if stored_nid is not None and item.kind == "outlier":
            return Outcome.DUPLICATE
        ctx = RoomContext(batch, self._cache, room_of(self._cache, batch, decoded))
        # An event stored before is a no-op, unless it was stored as an outlier and now
        # arrives to be processed (`new`/`old`): then it gets its state now — a rejected
        # outlier too, since events after it may name it as a prev event, and the state
        # after it (the state before it) is what they build on.
        outlier_nid: EventNID | None = None
        if stored_nid is not None:
            if not ctx.load_one(stored_nid).outlier:
                return Outcome.DUPLICATE
            outlier_nid = stored_nid
        touched[ctx.room.record.room_nid] = ctx.room
        key = ctx.state_key_tuple(event)

        # Step 2a: auth against the event's own auth events (not stored: not processed).
        own = auth_checks.check_own_auth_events(ctx, event)
        if item.kind == "outlier":
            outlier = self._store(ctx, event, item, key, (), own.events, own.rejected, None)
            if own.rejected:
                return Outcome.REJECTED
            # An invite of a local user into a room this server is not in arrives as an
            # outlier: it is still the user's invite.
            membership.announce_invites(ctx, self._outputs, self._server_name, outlier)
            return Outcome.OUTLIER

        # Step 4: the state before the event.
        prevs = state_before.prev_events(ctx, event.prev_event_ids, item)
        before = state_before.state_before(ctx, item, prevs, result)
        # Steps 2b and 2c: auth against the state before, soft fail against the current.
        rejected, soft_failed = auth_checks.check_against_states(ctx, item, own, before)

        # Step 3: store (NIDs assigned, the state before as a snapshot).
        loaded = self._store(
            ctx, event, item, key, prevs, own.events, rejected, before, outlier_nid=outlier_nid
        )
        if rejected is not None:
            log.debug("rejected %s: %s", event.event_id, rejected)
            return Outcome.REJECTED
        loaded = redactions.apply_pending_redactions(ctx, self._outputs, loaded)
        if item.kind == "old":
            self._backfilled(ctx, loaded, before)
            return Outcome.ACCEPTED
        if soft_failed is not None:
            log.debug("soft-failed %s: %s", event.event_id, soft_failed)
            return Outcome.SOFT_FAILED

        # Step 5: forward extremities and the current state.
        removed, added = room_advance.advance_room(ctx, loaded, item, prevs, result)
        # Step 6: outputs.
        self._publish(ctx, loaded, item, removed, added)
        if event.type == "m.room.redaction":
            redactions.handle_redaction(ctx, self._outputs, loaded, before.entries)
        return Outcome.ACCEPTED

    def _store(
        self,
        ctx: RoomContext,
        event: Event,
        item: InputRoomEvent,
        key: StateKeyTuple | None,
        prevs: Sequence[LoadedEvent],
        auth_events: Sequence[LoadedEvent],
        rejected: str | None,
        before: StateAt | None,
        *,
        outlier_nid: EventNID | None = None,
    ) -> LoadedEvent:
        """Step 3. `before` None: an outlier (stored without state)."""
        snapshot = StateSnapshotNID(0)
        if before is not None:
            snapshot = ctx.cache.snapshot_for(ctx.batch, ctx.room, before)
        if rejected is not None and "\x00" in rejected:
            # A reason may quote the event's content; it is SQL text, which cannot hold NUL.
            rejected = rejected.replace("\x00", "\\u0000")
        return ctx.cache.insert_event(
            ctx.batch,
            ctx.room,
            event,
            key=key,
            outlier=before is None,
            rejection_reason=rejected,
            state_snapshot_nid=snapshot,
            auth_event_nids=tuple(e.nid for e in auth_events),
            prev_event_nids=tuple(e.nid for e in prevs),
            json=bytes(item.event),
            outlier_nid=outlier_nid,
        )

    def _backfilled(self, ctx: RoomContext, loaded: LoadedEvent, before: StateAt) -> None:
        """An accepted `old` event: announced with the visibility in effect at it; the
        room's current state and extremities stay as they are."""
        at_event = ctx.state_after(loaded).entries
        self._outputs.old_room_event(ctx.room, loaded, ctx.history_visibility(at_event))
        if loaded.event.type == "m.room.redaction":
            # A backfilled redaction is history like any other: it applies too.
            redactions.handle_redaction(ctx, self._outputs, loaded, before.entries)

    def _publish(
        self,
        ctx: RoomContext,
        loaded: LoadedEvent,
        item: InputRoomEvent,
        removed: dict[StateKeyTuple, EventNID],
        added: dict[StateKeyTuple, EventNID],
    ) -> None:
        """Step 6: the new_room_event, and the invite outputs it causes."""
        room = ctx.room
        extremities = room.forward_extremities
        referenced = {*extremities, *added.values(), *removed.values()}
        event_ids = {nid: e.event_id for nid, e in ctx.load(referenced).items()}
        self._outputs.new_room_event(
            room,
            loaded,
            item,
            latest=extremities,
            added=added,
            removed=removed,
            rewrites_state=item.has_state,
            history_visibility=ctx.history_visibility(),
            event_ids=event_ids,
            last_sent_event_id=room.last_sent_event_id,
        )
        room.last_sent_event_id = loaded.event_id
        membership.announce_invites(ctx, self._outputs, self._server_name, loaded)


__all__ = ["InputHandler"]
