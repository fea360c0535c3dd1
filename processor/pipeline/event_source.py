"""State resolution's `EventSource` for the pipeline: events loaded through the caches (and
the batch, for what they do not hold), state keys named through the caches' NIDs, and the
room's auth chain index, completed from storage when a resolution needs events it lacks."""

from __future__ import annotations

from collections.abc import Collection, Iterable

from processor.matrix.state_res import AuthChainIndex, StateResEvent
from processor.nids import EventNID, StateKeyTuple
from processor.pipeline.caches import RoomCache, TrackedRoom
from processor.pipeline.types import LoadedEvent
from processor.storage.base import Batch


class BatchEventSource:
    """State resolution's `EventSource`, backed by the cache and the batch."""

    def __init__(self, cache: RoomCache, batch: Batch, room: TrackedRoom) -> None:
        self._cache = cache
        self._batch = batch
        self._room = room

    def load(self, nids: Collection[EventNID]) -> dict[EventNID, StateResEvent]:
        # A stored event that does not load is `CorruptState`: it stops the processor, never
        # becomes a dead letter (the event is not at fault, the database is).
        loaded = self._cache.load(self._batch, self._room, nids)
        return {nid: _state_res_event(e) for nid, e in loaded.items()}

    def state_key_nids(
        self, keys: Collection[tuple[str, str]]
    ) -> dict[tuple[str, str], StateKeyTuple]:
        found: dict[tuple[str, str], StateKeyTuple] = {}
        for event_type, state_key in keys:
            found[(event_type, state_key)] = (
                self._cache.type_nid(self._batch, event_type),
                self._cache.state_key_nid(self._batch, state_key),
            )
        return found

    @property
    def auth_index(self) -> AuthChainIndex:
        return self._room.auth_index

    def ensure_indexed(self, nids: Iterable[EventNID]) -> None:
        """Load what the room's auth index lacks (after a restart, or events stored before
        their auth events were indexed) and add it, auth events first."""
        index = self._room.auth_index
        pending: dict[EventNID, LoadedEvent] = {}
        frontier = index.missing(nids)
        while frontier:
            loaded = self._cache.load(self._batch, self._room, frontier)
            pending.update(loaded)
            frontier = {
                a
                for e in loaded.values()
                for a in e.auth_nids
                if a not in index and a not in pending
            }
        # Add in an order where every event follows its auth events (iterative DFS).
        for root in list(pending):
            stack: list[tuple[EventNID, bool]] = [(root, False)]
            while stack:
                nid, expanded = stack.pop()
                if nid in index:
                    continue
                event = pending[nid]
                if expanded:
                    index.add(nid, event.key, event.auth_nids)
                    continue
                stack.append((nid, True))
                stack.extend((a, False) for a in event.auth_nids if a not in index)


def _state_res_event(e: LoadedEvent) -> StateResEvent:
    return StateResEvent(
        nid=e.nid, event=e.event, key=e.key, auth_nids=e.auth_nids, rejected=e.rejected
    )


__all__ = ["BatchEventSource"]
