"""The accepted part of a generated room's DAG, as a roomserver sees it.

`RoomDag` gives every accepted state event a numeric ID and feeds it to an
`InMemoryEventSource`, so the simulation resolves state with the roomserver's own
`processor.matrix.state_res` wherever branches meet: the state before a merge event is the
resolution of the states after its prev events (in prev-event order), and the room's current
state — against which a new event may be soft-failed (server-server API "Checks performed on
receipt of a PDU", step 6) — is the resolution of the states after the forward extremities (in
the order the roomserver keeps them: survivors first, then the newest).

Each forward extremity is kept with the `RoomView` holding the state after it. A view changes
only by sending an event on top of its tip, which removes that tip from the extremities, so
the pairing stays right. Rejected and soft-failed events are never extremities and nothing is
built on them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from processor.errors import AuthError
from processor.generate.model import CREATE, MEMBER
from processor.generate.view import RoomView, StateEntry
from processor.matrix.auth import check_auth
from processor.matrix.events import Event
from processor.matrix.room_versions import RoomVersion
from processor.matrix.state_res import InMemoryEventSource, StateResEvent, resolve_state
from processor.nids import (
    PREASSIGNED_EVENT_TYPE_NIDS,
    PREASSIGNED_STATE_KEY_NIDS,
    EventNID,
    EventTypeNID,
    StateKeyNID,
    StateKeyTuple,
)

__all__ = ["NO_CONFLICTS", "Conflicts", "RoomDag"]

_CREATE_KEY = (CREATE, "")


@dataclass(frozen=True, slots=True)
class Conflicts:
    """Where the states after a merge's prev events disagree, each sorted."""

    #: Keys held with different events, or held by some states and not by others.
    keys: tuple[tuple[str, str], ...] = ()
    #: Those of `keys` that some states do not hold at all.
    partial_keys: tuple[tuple[str, str], ...] = ()
    #: The events the states hold at `keys`.
    event_ids: tuple[str, ...] = ()


NO_CONFLICTS = Conflicts()


class RoomDag:
    """Numeric IDs, forward extremities and the current state of one generated room."""

    __slots__ = (
        "_current",
        "_event_nids",
        "_key_nids",
        "_names",
        "_state_key_nids",
        "_type_nids",
        "entries",
        "extremities",
        "source",
        "version",
    )

    def __init__(self, version: RoomVersion) -> None:
        self.version = version
        self.source = InMemoryEventSource()
        self._type_nids: dict[str, EventTypeNID] = dict(PREASSIGNED_EVENT_TYPE_NIDS)
        self._state_key_nids: dict[str, StateKeyNID] = dict(PREASSIGNED_STATE_KEY_NIDS)
        self._key_nids: dict[tuple[str, str], StateKeyTuple] = {}
        self._names: dict[StateKeyTuple, tuple[str, str]] = {}
        self._event_nids: dict[str, EventNID] = {}
        #: Every accepted state event by NID.
        self.entries: dict[EventNID, StateEntry] = {}
        #: (event ID, the view whose state is the state after it), in the roomserver's order.
        self.extremities: list[tuple[str, RoomView]] = []
        #: (sorted tokens of the extremities' views, their resolution)
        self._current: tuple[tuple[int, ...], Mapping[StateKeyTuple, EventNID]] | None = None

    # -- numeric IDs -------------------------------------------------------------------------

    def key_nids(self, event_type: str, state_key: str) -> StateKeyTuple:
        key = self._key_nids.get((event_type, state_key))
        if key is None:
            type_nid = self._type_nids.setdefault(
                event_type, EventTypeNID(len(self._type_nids) + 100)
            )
            key_nid = self._state_key_nids.setdefault(
                state_key, StateKeyNID(len(self._state_key_nids) + 100)
            )
            key = self._key_nids[(event_type, state_key)] = (type_nid, key_nid)
            self._names[key] = (event_type, state_key)
        return key

    def add_state_event(self, event: Event, content: dict[str, Any]) -> StateEntry:
        """Record an accepted state event (after its auth events; `content` is its content as
        a dict); its `StateEntry`."""
        assert event.state_key is not None
        nid = EventNID(len(self._event_nids) + 1)
        self._event_nids[event.event_id] = nid
        key = self.key_nids(event.type, event.state_key)
        auth_nids = tuple(self._event_nids[a] for a in event.auth_event_ids)
        self.source.add(StateResEvent(nid=nid, event=event, key=key, auth_nids=auth_nids))
        entry = StateEntry(
            event.event_id, event.sender, content, event.type, event.state_key,
            nid, key,
        )  # fmt: skip
        self.entries[nid] = entry
        return entry

    # -- merges --------------------------------------------------------------------------------

    def resolve(self, views: Sequence[RoomView]) -> RoomView:
        """The state before a merge of `views`' tips (in that order), as a copy of the first
        view (tips unchanged) holding the resolved state."""
        resolved = resolve_state(self.version, [v.nids for v in views], self.source)
        return views[0].resolved(resolved, self.entries)

    def conflicts(self, views: Sequence[RoomView]) -> Conflicts:
        """Where the views' states disagree (see `Conflicts`)."""
        first = views[0].nids.items()
        keys: set[StateKeyTuple] = set()
        for other in views[1:]:
            keys.update(key for key, _ in first ^ other.nids.items())
        names: set[tuple[str, str]] = set()
        partial: set[tuple[str, str]] = set()
        event_ids: set[str] = set()
        for key in keys:
            for view in views:
                nid = view.nids.get(key)
                if nid is None:
                    partial.add(self._names[key])
                else:
                    entry = self.entries[nid]
                    names.add((entry.event_type, entry.state_key))
                    event_ids.add(entry.event_id)
        return Conflicts(tuple(sorted(names)), tuple(sorted(partial)), tuple(sorted(event_ids)))

    # -- forward extremities and the current state ---------------------------------------------

    def advance(self, event_id: str, prev_event_ids: Iterable[str], view: RoomView) -> None:
        """An accepted event: it replaces the extremities it names as prev events."""
        prev = set(prev_event_ids)
        kept = [(e, v) for e, v in self.extremities if e not in prev]
        kept.append((event_id, view))
        self.extremities = kept

    def agrees(self, view: RoomView, keys: Iterable[tuple[str, str]]) -> bool:
        """Every extremity's state holds the same events as `view` at `keys`: then the
        current state does too, with no resolution needed."""
        others = [v.state for _, v in self.extremities if v is not view]
        if not others:
            return True
        own = view.state
        for key in keys:
            entry = own.get(key)
            for state in others:
                if state.get(key) is not entry:
                    return False
        return True

    def agrees_on_member(self, view: RoomView, user_id: str) -> bool:
        """`agrees` for one user's membership."""
        key = (MEMBER, user_id)
        entry = view.state.get(key)
        return all(v.state.get(key) is entry for _, v in self.extremities)

    def current_nids(self) -> Mapping[StateKeyTuple, EventNID]:
        """The room's current state: the resolution of the extremities' states."""
        extremities = self.extremities
        if len(extremities) == 1:
            return extremities[0][1].nids
        tokens = tuple(sorted(v.token for _, v in extremities))
        if self._current is None or self._current[0] != tokens:
            sets = [v.nids for _, v in extremities]
            self._current = (tokens, resolve_state(self.version, sets, self.source))
        return self._current[1]

    def current_ids(self) -> dict[tuple[str, str], str]:
        """The current state as (type, state_key) -> event ID."""
        entries = self.entries
        result = {}
        for nid in self.current_nids().values():
            entry = entries[nid]
            result[(entry.event_type, entry.state_key)] = entry.event_id
        return result

    def passes_current(self, event: Event, keys: Iterable[tuple[str, str]]) -> bool:
        """Does `event` pass the authorization rules against the current state?"""
        current = self.current_nids()
        wanted = list(keys)
        if _CREATE_KEY not in wanted:
            wanted.append(_CREATE_KEY)
        nids = {}
        for key in wanted:
            key_nids = self._key_nids.get(key)
            nid = None if key_nids is None else current.get(key_nids)
            if nid is not None:
                nids[key] = nid
        loaded = self.source.load(list(nids.values()))
        state = {key: loaded[nid].event for key, nid in nids.items()}
        try:
            check_auth(event, state, self.version)
        except AuthError:
            return False
        return True
