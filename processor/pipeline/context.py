"""`RoomContext`: one room inside the batch in progress — the storage batch, the caches and
the room's tracked state — which every processing step reads and writes through.

It also holds the reads several steps share: events by ID or NID (a missing one is a dead
letter naming what is missing), the events of a state the auth rules read, and the room's
history visibility.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from processor.core import decision
from processor.matrix.events import Event
from processor.matrix.visibility import DEFAULT_HISTORY_VISIBILITY
from processor.nids import (
    EMPTY_STATE_KEY_NID,
    MROOM_HISTORY_VISIBILITY_NID,
    EventNID,
    StateKeyTuple,
)
from processor.pipeline.caches import RoomCache, TrackedRoom
from processor.pipeline.types import DeadLetterError, LoadedEvent, StateAt
from processor.storage.base import Batch
from schemas.dead_letter import DeadLetterReason


@dataclass(slots=True)  # not frozen: a frozen __init__ costs 2x, per event
class RoomContext:
    batch: Batch
    cache: RoomCache
    room: TrackedRoom

    # -- events -----------------------------------------------------------------------------

    def load(self, nids: Iterable[EventNID]) -> dict[EventNID, LoadedEvent]:
        return self.cache.load(self.batch, self.room, nids)

    def load_one(self, nid: EventNID) -> LoadedEvent:
        return self.cache.load(self.batch, self.room, (nid,))[nid]

    def load_by_id(self, event_ids: Iterable[str]) -> dict[str, LoadedEvent]:
        return self.cache.load_by_id(self.batch, self.room, event_ids)

    def require(
        self, event_ids: Sequence[str], reason: DeadLetterReason, what: str
    ) -> list[LoadedEvent]:
        """The events `event_ids` name, all stored and in this room; else a dead letter."""
        found = self.load_by_id(event_ids)
        missing = [event_id for event_id in event_ids if event_id not in found]
        if missing:
            raise DeadLetterError(reason, f"{what} events not stored: {', '.join(missing)}")
        loaded = [found[event_id] for event_id in event_ids]
        for e in loaded:
            if e.room_nid != self.room.record.room_nid:
                raise DeadLetterError(
                    DeadLetterReason.INVALID_EVENT,
                    f"{what} event {e.event_id} is in another room",
                )
        return loaded

    def state_key_tuple(self, event: Event) -> StateKeyTuple | None:
        if event.state_key is None:
            return None
        return (
            self.cache.type_nid(self.batch, event.type),
            self.cache.state_key_nid(self.batch, event.state_key),
        )

    # -- state ------------------------------------------------------------------------------

    def state_after(self, event: LoadedEvent) -> StateAt:
        return self.cache.state_after(self.batch, self.room, event)

    def current_state(self) -> StateAt:
        return self.room.current_state(self.batch)

    def auth_nids(
        self, event: Event, state: Mapping[StateKeyTuple, EventNID]
    ) -> dict[tuple[str, str], EventNID]:
        """The events of `state` the auth rules read for `event`, by key."""
        keys = decision.auth_keys(event, self.room.version)
        return decision.StateLookup(
            state,
            lambda t: self.cache.type_nid(self.batch, t),
            lambda k: self.cache.state_key_nid(self.batch, k),
        ).nids_for(keys)

    def events_by_key(
        self, nids: Mapping[tuple[str, str], EventNID]
    ) -> dict[tuple[str, str], Event]:
        loaded = self.load(nids.values())
        return {k: loaded[nid].event for k, nid in nids.items()}

    def auth_state(
        self, event: Event, state: Mapping[StateKeyTuple, EventNID]
    ) -> dict[tuple[str, str], Event]:
        """The events of `state` the auth rules read for `event`."""
        return self.events_by_key(self.auth_nids(event, state))

    def history_visibility(self, state: Mapping[StateKeyTuple, EventNID] | None = None) -> str:
        """m.room.history_visibility in `state` (default: the room's current state), as it
        is written (outputs pass it on as the event says it)."""
        if state is None:
            state = self.current_state().entries
        nid = state.get((MROOM_HISTORY_VISIBILITY_NID, EMPTY_STATE_KEY_NID))
        if nid is None:
            return DEFAULT_HISTORY_VISIBILITY
        value = self.load_one(nid).event.content.get("history_visibility")
        return value if isinstance(value, str) else DEFAULT_HISTORY_VISIBILITY
