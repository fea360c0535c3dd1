"""What state resolution reads, and the protocol through which the caller supplies it.

State resolution works on numeric IDs. The caller (the processor, backed by storage) owns the
events and hands them over through an `EventSource`:

- `load(nids)` batch-loads the few events resolution needs (the conflicted events, the auth
  difference, their auth events, and the unconflicted events the auth rules read); it is never
  asked for the whole unconflicted state;
- `state_key_nids(keys)` maps the `(type, state_key)` strings the auth rules name to NIDs,
  so they can be looked up in the NID-keyed state maps;
- `auth_index` is the room's `AuthChainIndex`, kept by the caller and grown as events are
  stored, which answers every auth-chain question without loading events.

`InMemoryEventSource` is a dict-backed implementation, for tests and the traffic generator.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from typing import Protocol

from processor.errors import StateResolutionError
from processor.matrix.events import Event
from processor.matrix.state_res.auth_chain import AuthChainIndex
from processor.nids import EventNID, EventTypeNID, StateKeyNID, StateKeyTuple


@dataclass(frozen=True, slots=True)
class StateResEvent:
    """One event as state resolution sees it: the decoded event plus its NIDs."""

    nid: EventNID
    event: Event
    #: (type NID, state key NID) of a state event; None for a message event.
    key: StateKeyTuple | None
    #: NIDs of `event.auth_event_ids`, in the same order.
    auth_nids: tuple[EventNID, ...]
    #: The event was rejected by the authorization rules when it was received.
    rejected: bool = False


class EventSource(Protocol):
    """The caller's side of state resolution (storage batch-loads behind it)."""

    def load(self, nids: Collection[EventNID]) -> Mapping[EventNID, StateResEvent]:
        """The events for these NIDs, in one batch. Raises `StateResolutionError` naming any
        NID it does not know."""
        ...

    def state_key_nids(
        self, keys: Collection[tuple[str, str]]
    ) -> Mapping[tuple[str, str], StateKeyTuple]:
        """NIDs for `(event type, state key)` pairs. A pair with no NID yet is left out: no
        state map can contain it."""
        ...

    @property
    def auth_index(self) -> AuthChainIndex:
        """The room's auth chain index; it must hold every event of the state sets being
        resolved, and (transitively) their auth events."""
        ...


class InMemoryEventSource:
    """A dict-backed `EventSource`: for tests and the embedded mode.

    Events must be added after their auth events (the order in which a room stores them).
    """

    __slots__ = ("_events", "_index", "_key_nids")

    def __init__(self, events: Iterable[StateResEvent] = ()) -> None:
        self._events: dict[EventNID, StateResEvent] = {}
        self._key_nids: dict[tuple[str, str], StateKeyTuple] = {}
        self._index = AuthChainIndex()
        for event in events:
            self.add(event)

    def add(self, event: StateResEvent) -> None:
        """Store an event (idempotent) and index it."""
        if event.nid in self._events:
            return
        self._index.add(event.nid, event.key, event.auth_nids)
        self._events[event.nid] = event
        string_key = event.event.state_tuple
        if string_key is not None and event.key is not None:
            self._key_nids[string_key] = event.key

    def register_state_key(
        self, event_type: str, state_key: str, type_nid: EventTypeNID, key_nid: StateKeyNID
    ) -> None:
        """Name a state key that no stored event has yet (the NID tables of a real store)."""
        self._key_nids[(event_type, state_key)] = (type_nid, key_nid)

    def load(self, nids: Collection[EventNID]) -> Mapping[EventNID, StateResEvent]:
        events = self._events
        try:
            return {nid: events[nid] for nid in nids}
        except KeyError as e:
            raise StateResolutionError(f"state resolution needs event NID {e.args[0]}, which "
                                       "the event source does not hold") from None

    def state_key_nids(
        self, keys: Collection[tuple[str, str]]
    ) -> Mapping[tuple[str, str], StateKeyTuple]:
        known = self._key_nids
        return {key: known[key] for key in keys if key in known}

    @property
    def auth_index(self) -> AuthChainIndex:
        return self._index

    def __len__(self) -> int:
        return len(self._events)
