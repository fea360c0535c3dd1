"""State resolution for `state_after_events`: exactly what the pipeline does for a new event
whose prev events' states disagree (`_resolve` in the input handler), over the same kind of
`EventSource` (`RoomCache` and `BatchEventSource`: events loaded in batches through the
storage batch, the room's auth index completed with `ensure_indexed`), with one difference:
a query never assigns NIDs, so a (type, state key) with no NID yet is left out, as the
`EventSource` protocol allows (no state can hold it).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence

from processor.matrix.room_versions import room_version
from processor.matrix.state_res import AuthChainIndex, StateResEvent, resolve_state
from processor.nids import EventNID, StateKeyTuple
from processor.pipeline.caches import CacheLimits, RoomCache
from processor.pipeline.event_source import BatchEventSource
from processor.query.database import ReadTx
from processor.storage.base import RoomRecord

__all__ = ["resolve_prev_states"]


class _ReadOnlySource:
    """`BatchEventSource`, but looking NIDs up instead of assigning them."""

    def __init__(self, inner: BatchEventSource, tx: ReadTx) -> None:
        self._inner = inner
        self._tx = tx

    def load(self, nids: Collection[EventNID]) -> Mapping[EventNID, StateResEvent]:
        return self._inner.load(nids)

    def state_key_nids(
        self, keys: Collection[tuple[str, str]]
    ) -> dict[tuple[str, str], StateKeyTuple]:
        batch = self._tx.batch
        types = batch.select_event_type_nids({t for t, _ in keys})
        names = batch.select_state_key_nids({k for _, k in keys})
        return {(t, k): (types[t], names[k]) for t, k in keys if t in types and k in names}

    @property
    def auth_index(self) -> AuthChainIndex:
        return self._inner.auth_index


def resolve_prev_states(
    tx: ReadTx, room: RoomRecord, states: Sequence[Mapping[StateKeyTuple, EventNID]]
) -> dict[StateKeyTuple, EventNID]:
    """The resolution of the states after some prev events (raises `StateResolutionError`
    when an event it needs is not stored). A fresh cache per request: a shared one would
    keep an event's unredacted form after a redaction, which the pipeline forgets."""
    version = room_version(room.room_version)
    cache = RoomCache(CacheLimits(events=100_000, states=8))
    room_state = cache.add_room(room, version)
    source = BatchEventSource(cache, tx.batch, room_state)
    source.ensure_indexed(set().union(*(s.values() for s in states)))
    return resolve_state(version, states, _ReadOnlySource(source, tx))
