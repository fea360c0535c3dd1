"""State resolution v2 (room versions 2–11) and v2.1 (room version 12, MSC4297).

The spec's algorithm (room version 2 page, "State resolution"), on NIDs:

1. split the state maps into the *unconflicted state map* and the *conflicted state set*;
   the *full conflicted set* is the conflicted state set plus the *auth difference* (v2.1:
   plus the *conflicted state subgraph*);
2. take its *power events* and the events of their auth chains that are in the full
   conflicted set, sort them by the *reverse topological power ordering* and apply the
   *iterative auth checks* to them, starting from the unconflicted state map (v2.1: from an
   empty map);
3. sort the remaining events of the full conflicted set by the *mainline ordering* based on
   the partially resolved power levels, and apply the iterative auth checks to them;
4. put the unconflicted state map back on top.

The unconflicted state is never copied or loaded: the partially resolved state is an overlay
(the keys resolution has decided) over a lookup into the first state map, and only the
unconflicted events the auth rules actually read are loaded.
"""

from __future__ import annotations

import heapq
from collections.abc import Collection, Iterable, Mapping, Sequence

from processor.errors import AuthError, StateResolutionError
from processor.matrix.auth import auth_types_for_event, check_auth
from processor.matrix.events import Event
from processor.matrix.power_levels import CREATE_KEY, user_power_level
from processor.matrix.room_versions import RoomVersion, StateResAlgorithm
from processor.matrix.state_res.source import EventSource, StateResEvent
from processor.nids import (
    EMPTY_STATE_KEY_NID,
    MROOM_CREATE_NID,
    MROOM_POWER_LEVELS_NID,
    EventNID,
    StateKeyTuple,
)

__all__ = ["conflicted_state_keys", "is_power_event", "resolve_v2"]

_PL_KEY: StateKeyTuple = (MROOM_POWER_LEVELS_NID, EMPTY_STATE_KEY_NID)
_CREATE_KEY: StateKeyTuple = (MROOM_CREATE_NID, EMPTY_STATE_KEY_NID)

#: Mainline position of an event with no power-levels event on the mainline ("∞").
_NOT_ON_MAINLINE = 1 << 62

StateMap = Mapping[StateKeyTuple, EventNID]


def conflicted_state_keys(state_sets: Sequence[StateMap]) -> set[StateKeyTuple]:
    """The keys that are not present in every state map with the same event.

    Set operations on the maps' item views run in C, which is several times faster than a
    Python loop over a 10,000-entry state.
    """
    first = state_sets[0]
    conflicted: set[StateKeyTuple] = set()
    first_items = first.items()
    for other in state_sets[1:]:
        conflicted.update(key for key, _ in first_items ^ other.items())
    return conflicted


def is_power_event(event: Event) -> bool:
    """A state event that may remove someone's ability to act: m.room.power_levels,
    m.room.join_rules, or an m.room.member leave or ban sent by someone else (a kick)."""
    if event.state_key is None:
        return False
    if event.type in ("m.room.power_levels", "m.room.join_rules"):
        return event.state_key == ""
    if event.type == "m.room.member":
        return event.membership in ("leave", "ban") and event.sender != event.state_key
    return False


def resolve_v2(
    version: RoomVersion, state_sets: Sequence[StateMap], events: EventSource
) -> dict[StateKeyTuple, EventNID]:
    """Resolve `state_sets` with state resolution v2, or v2.1 when the room version says so."""
    if not state_sets:
        return {}
    conflicted_keys = conflicted_state_keys(state_sets)
    if not conflicted_keys:
        return dict(state_sets[0])
    return _Resolution(version, state_sets, conflicted_keys, events).run()


class _Resolution:
    """One run of the algorithm; holds the loaded events and the partially resolved state."""

    def __init__(
        self,
        version: RoomVersion,
        state_sets: Sequence[StateMap],
        conflicted_keys: set[StateKeyTuple],
        events: EventSource,
    ) -> None:
        self.version = version
        self.v2_1 = version.state_res is StateResAlgorithm.V2_1
        self.state_sets = state_sets
        self.first = state_sets[0]
        self.conflicted_keys = conflicted_keys
        self.source = events
        self.index = events.auth_index
        self.loaded: dict[EventNID, StateResEvent] = {}
        #: (type, state_key) -> NID key, for the keys the auth rules read
        self.key_nids: dict[tuple[str, str], StateKeyTuple] = {}
        #: per event: the (type, state_key) pairs the auth rules read for it
        self.auth_types: dict[EventNID, list[tuple[str, str]]] = {}
        #: the keys resolution has decided so far (over `_base`)
        self.overlay: dict[StateKeyTuple, EventNID] = {}
        #: v12: the room's create event, implied by the room ID (MSC4291)
        self.create_event: Event | None = None
        #: v2.1 (MSC4297 modification 1): iterative auth checks start from an empty map,
        #: so the unconflicted state is not read until it is put back at the end.
        self.use_unconflicted_base = not self.v2_1

    # -- the algorithm --------------------------------------------------------------------

    def run(self) -> dict[StateKeyTuple, EventNID]:
        index = self.index
        conflicted_keys = self.conflicted_keys
        conflicted_events = {
            state[key] for state in self.state_sets for key in conflicted_keys if key in state
        }
        full_conflicted_set = conflicted_events | index.auth_difference(
            self.state_sets, conflicted_keys
        )
        if self.v2_1:
            # MSC4297 modification 2: the events on auth paths between conflicted events.
            full_conflicted_set |= index.conflicted_subgraph(conflicted_events)
        self._load_for(full_conflicted_set)

        # Only state events can be resolved into the state (the auth chain holds nothing else).
        full_conflicted_set = {
            nid for nid in full_conflicted_set if self.loaded[nid].key is not None
        }
        power_events = {
            nid for nid in full_conflicted_set if is_power_event(self.loaded[nid].event)
        }
        # Step 1. The power events, and the events of the full conflicted set reachable from
        # them by auth edges inside that set (the network's reading: see `power_subgraph`),
        # in reverse topological power order over those same edges.
        power_subgraph = index.power_subgraph(sorted(power_events), full_conflicted_set)
        selected = set(power_subgraph)
        self._iterative_auth_checks(self._reverse_topological_power_order(power_subgraph))

        # Step 3. The rest, by mainline ordering on the partially resolved power levels.
        remaining = full_conflicted_set - selected
        self._iterative_auth_checks(self._mainline_order(remaining))

        # Step 5. Put the unconflicted state map back on top.
        first = self.first
        result = dict(first)
        for key in conflicted_keys:
            result.pop(key, None)
        for key, nid in self.overlay.items():
            if key in conflicted_keys or key not in first:
                result[key] = nid
        return result

    def _base(self, key: StateKeyTuple) -> EventNID | None:
        """The unconflicted state map, read without materialising it."""
        if not self.use_unconflicted_base or key in self.conflicted_keys:
            return None
        return self.first.get(key)

    def _current(self, key: StateKeyTuple) -> EventNID | None:
        nid = self.overlay.get(key)
        return nid if nid is not None else self._base(key)

    # -- loading --------------------------------------------------------------------------

    def _load(self, nids: Iterable[EventNID]) -> None:
        loaded = self.loaded
        missing = {nid for nid in nids if nid not in loaded}
        if not missing:
            return
        found = self.source.load(missing)
        for nid in missing:
            event = found.get(nid)
            if event is None:
                raise StateResolutionError(f"the event source did not return event NID {nid}")
            loaded[nid] = event

    def _load_for(self, full_conflicted_set: Collection[EventNID]) -> None:
        """Everything the rest of the run reads, in a few batches: the full conflicted set,
        its events' auth events (the fallback of the iterative auth checks and the power
        ordering's tie-break), the unconflicted events the auth rules will read, and (v12)
        the create event."""
        self._load(full_conflicted_set)
        loaded = self.loaded
        self._load({a for nid in full_conflicted_set for a in loaded[nid].auth_nids})

        version = self.version
        wanted: set[tuple[str, str]] = {CREATE_KEY}
        for nid in full_conflicted_set:
            types = auth_types_for_event(loaded[nid].event, version)
            self.auth_types[nid] = types
            wanted.update(types)
        self.key_nids = dict(self.source.state_key_nids(wanted))

        if self.use_unconflicted_base:
            base = (self._base(key) for key in self.key_nids.values())
            self._load(nid for nid in base if nid is not None)
        if version.create_event_implicit_in_auth_events:
            self.create_event = self._room_create_event()

    def _room_create_event(self) -> Event:
        """v12: the create event is never among `auth_events`; its ID is the room ID with `$`
        (MSC4291), and it is in every state map of the room."""
        candidates = {state[_CREATE_KEY] for state in self.state_sets if _CREATE_KEY in state}
        if not candidates:
            raise StateResolutionError("no m.room.create event in the state sets being resolved")
        self._load(candidates)
        if len(candidates) == 1:
            return self.loaded[candidates.pop()].event
        some_event = next(iter(self.loaded.values())).event
        for nid in sorted(candidates):
            create = self.loaded[nid].event
            if create.event_id[1:] == some_event.room_id[1:]:
                return create
        raise StateResolutionError(
            f"the state sets name m.room.create events {sorted(candidates)}, none of which is "
            f"the create event of room {some_event.room_id}"
        )

    # -- orderings ------------------------------------------------------------------------

    def _sender_power_level(self, event: StateResEvent) -> int:
        """The sender's power level "when looking at their respective auth_events"."""
        auth_state: dict[tuple[str, str], Event] = {}
        loaded = self.loaded
        for auth_nid in event.auth_nids:
            auth_event = loaded[auth_nid].event
            state_tuple = auth_event.state_tuple
            if state_tuple is not None:
                auth_state[state_tuple] = auth_event
        if self.create_event is not None:
            auth_state[CREATE_KEY] = self.create_event
        return user_power_level(event.event.sender, auth_state, self.version)

    def _reverse_topological_power_order(
        self, after: Mapping[EventNID, Collection[EventNID]]
    ) -> list[EventNID]:
        """Kahn's algorithm over `after` (each event mapped to the events it must follow),
        taking at each step the smallest ready event by (sender's power level descending,
        origin_server_ts, event_id)."""
        if not after:
            return []
        loaded = self.loaded
        waiting: dict[EventNID, int] = {}
        unblocks: dict[EventNID, list[EventNID]] = {nid: [] for nid in after}
        for nid, before in after.items():
            waiting[nid] = len(before)
            for ancestor in before:
                unblocks[ancestor].append(nid)

        def sort_key(nid: EventNID) -> tuple[int, int, str, EventNID]:
            event = loaded[nid]
            return (
                -self._sender_power_level(event),
                event.event.origin_server_ts,
                event.event.event_id,
                nid,
            )

        ready = [sort_key(nid) for nid, count in waiting.items() if count == 0]
        heapq.heapify(ready)
        order: list[EventNID] = []
        while ready:
            nid = heapq.heappop(ready)[3]
            order.append(nid)
            for dependent in unblocks[nid]:
                waiting[dependent] -= 1
                if waiting[dependent] == 0:
                    heapq.heappush(ready, sort_key(dependent))
        if len(order) != len(after):
            raise StateResolutionError("the auth events of the full conflicted set form a cycle")
        return order

    def _mainline_order(self, nids: Collection[EventNID]) -> list[EventNID]:
        """Sort by mainline position (descending: events based on an older power-levels event
        first), then origin_server_ts, then event_id."""
        if not nids:
            return []
        index = self.index
        mainline: dict[EventNID, int] = {}
        # "based on the power level in the partially resolved state obtained in step 2". In
        # v2.1 that state started empty, so when the power levels are not conflicted there is
        # no power-levels event in it and every position is ∞ (ordering by origin_server_ts,
        # then event_id): the spec's text, followed literally.
        power_levels = self._current(_PL_KEY)
        depth = 0
        while power_levels is not None:
            mainline[power_levels] = depth
            depth += 1
            power_levels = index.power_levels_parent(power_levels)

        # Position of a power-levels event's first mainline ancestor (itself included),
        # memoised: events of a room share most of their power-levels history.
        memo: dict[EventNID, int] = {}

        def position_from(power_levels: EventNID | None) -> int:
            walked: list[EventNID] = []
            position = _NOT_ON_MAINLINE
            while power_levels is not None:
                if power_levels in mainline:
                    position = mainline[power_levels]
                    break
                known = memo.get(power_levels)
                if known is not None:
                    position = known
                    break
                walked.append(power_levels)
                power_levels = index.power_levels_parent(power_levels)
            for pl in walked:
                memo[pl] = position
            return position

        loaded = self.loaded

        def sort_key(nid: EventNID) -> tuple[int, int, str]:
            event = loaded[nid].event
            position = position_from(index.power_levels_parent(nid))
            return (-position, event.origin_server_ts, event.event_id)

        return sorted(nids, key=sort_key)

    # -- iterative auth checks ------------------------------------------------------------

    def _iterative_auth_checks(self, order: Iterable[EventNID]) -> None:
        """Apply each event to the partially resolved state if the auth rules allow it.

        The auth events an event is checked against are its own auth events (those not
        rejected: "Rejected auth events are deliberately excluded"), each replaced by the
        partially resolved state's event for that key where it has one.

        An event that was rejected when it was received is never admitted. The spec lets
        iterative auth checks admit an event that passes against the resolved state however
        it fared on receipt; the reference homeserver keeps the rejection (it cannot undo
        one), and the network follows it (docs/interoperability.md, "rejected events").
        """
        loaded, key_nids, version = self.loaded, self.key_nids, self.version
        overlay, conflicted_keys = self.overlay, self.conflicted_keys
        base: StateMap = self.first if self.use_unconflicted_base else {}
        for nid in order:
            state_event = loaded[nid]
            event_key = state_event.key
            if event_key is None or state_event.rejected:
                continue
            auth_state: dict[tuple[str, str], Event] = {}
            for auth_nid in state_event.auth_nids:
                auth_event = loaded[auth_nid]
                state_tuple = auth_event.event.state_tuple
                if state_tuple is not None and not auth_event.rejected:
                    auth_state[state_tuple] = auth_event.event
            for string_key in self.auth_types[nid]:
                key = key_nids.get(string_key)
                if key is None:
                    continue
                # `_current`, inlined: this loop runs for every auth key of every event.
                state_nid = overlay.get(key)
                if state_nid is None and key not in conflicted_keys:
                    state_nid = base.get(key)
                if state_nid is not None:
                    auth_state[string_key] = loaded[state_nid].event
            if self.create_event is not None:
                auth_state[CREATE_KEY] = self.create_event
            try:
                check_auth(state_event.event, auth_state, version)
            except AuthError:
                continue
            overlay[event_key] = nid
