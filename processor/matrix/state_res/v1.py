"""State resolution v1 (room version 1), as the room version 1 page specifies it.

The resolved state R starts as the union of the state maps without the conflicting keys
(a *conflict*: the maps hold different events for one key; a key some maps lack is not a
conflict). Then, for m.room.power_levels, then m.room.join_rules, then each m.room.member key:
sort the conflicting events by ascending `depth` then descending `sha1(event_id)`, put the
first into R, and keep replacing it with the next one for as long as the next one passes the
authorization rules against R. Every other conflicting key gets the event with the highest
depth and lowest sha1(event_id) that passes the authorization rules against R.

Known difference: the reference server's v1 implementation checks each candidate against
its own auth events overlaid with the previous candidate rather than against R, and orders by
depth descending. The spec text is followed here (the issue asks for the spec where servers
differ); room version 1 is known to reset state either way (see the spec's warning).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence

from processor.core.nids import (
    MROOM_JOIN_RULES_NID,
    MROOM_MEMBER_NID,
    MROOM_POWER_LEVELS_NID,
    EventNID,
    StateKeyTuple,
)
from processor.errors import AuthError, StateResolutionError
from processor.matrix.auth import auth_types_for_event, check_auth
from processor.matrix.events import Event
from processor.matrix.room_versions import RoomVersion
from processor.matrix.state_res.source import EventSource, StateResEvent

__all__ = ["resolve_v1"]

StateMap = Mapping[StateKeyTuple, EventNID]


def _sha1(event: StateResEvent) -> bytes:
    return hashlib.sha1(event.event.event_id.encode("utf-8")).digest()


def resolve_v1(
    version: RoomVersion, state_sets: Sequence[StateMap], events: EventSource
) -> dict[StateKeyTuple, EventNID]:
    """Resolve `state_sets` with the room version 1 algorithm."""
    if not state_sets:
        return {}
    candidates: dict[StateKeyTuple, set[EventNID]] = {}
    resolved: dict[StateKeyTuple, EventNID] = {}
    for state in state_sets:
        for key, nid in state.items():
            held = resolved.get(key)
            if held is None:
                if key not in candidates:
                    resolved[key] = nid
                else:
                    candidates[key].add(nid)
            elif held != nid:
                del resolved[key]
                candidates[key] = {held, nid}
    if not candidates:
        return resolved
    return _V1Resolution(version, resolved, candidates, events).run()


class _V1Resolution:
    def __init__(
        self,
        version: RoomVersion,
        resolved: dict[StateKeyTuple, EventNID],
        candidates: dict[StateKeyTuple, set[EventNID]],
        events: EventSource,
    ) -> None:
        self.version = version
        self.resolved = resolved
        self.candidates = candidates
        self.source = events
        self.loaded: dict[EventNID, StateResEvent] = {}

    def _load(self, nids: Iterable[EventNID]) -> None:
        missing = {nid for nid in nids if nid not in self.loaded}
        if missing:
            found = self.source.load(missing)
            for nid in missing:
                if nid not in found:
                    raise StateResolutionError(
                        f"the event source did not return event NID {nid}"
                    )
                self.loaded[nid] = found[nid]

    def _allowed(self, nid: EventNID) -> bool:
        """Would the event be allowed by the authorization rules in state R?"""
        event = self.loaded[nid].event
        wanted = auth_types_for_event(event, self.version)
        key_nids = self.source.state_key_nids(wanted)
        in_state = {
            string_key: self.resolved[key]
            for string_key, key in key_nids.items()
            if key in self.resolved
        }
        self._load(in_state.values())
        auth_state: dict[tuple[str, str], Event] = {
            string_key: self.loaded[state_nid].event for string_key, state_nid in in_state.items()
        }
        try:
            check_auth(event, auth_state, self.version)
        except AuthError:
            return False
        return True

    def run(self) -> dict[StateKeyTuple, EventNID]:
        candidates = self.candidates
        self._load(nid for nids in candidates.values() for nid in nids)
        # Power levels, then join rules, then each member key (in state key NID order, so
        # that the result does not depend on the order of the state sets).
        auth_keys = [
            key
            for type_nid in (MROOM_POWER_LEVELS_NID, MROOM_JOIN_RULES_NID, MROOM_MEMBER_NID)
            for key in sorted(candidates)
            if key[0] == type_nid
        ]
        for key in auth_keys:
            self._resolve_auth_key(key)
        for key in sorted(candidates):
            if key[0] not in (MROOM_POWER_LEVELS_NID, MROOM_JOIN_RULES_NID, MROOM_MEMBER_NID):
                self._resolve_other_key(key)
        return self.resolved

    def _resolve_auth_key(self, key: StateKeyTuple) -> None:
        """Ascending depth, then descending sha1(event_id): the first goes into R
        unconditionally, each next one while it passes the auth rules against R."""
        loaded = self.loaded
        ordered = sorted(self.candidates[key], key=lambda nid: _sha1(loaded[nid]), reverse=True)
        ordered.sort(key=lambda nid: loaded[nid].event.depth)
        self.resolved[key] = ordered[0]
        for nid in ordered[1:]:
            if not self._allowed(nid):
                break
            self.resolved[key] = nid

    def _resolve_other_key(self, key: StateKeyTuple) -> None:
        """The highest depth, then lowest sha1(event_id), that passes the auth rules in R."""
        loaded = self.loaded
        ordered = sorted(
            self.candidates[key],
            key=lambda nid: (-loaded[nid].event.depth, _sha1(loaded[nid])),
        )
        for nid in ordered:
            if self._allowed(nid):
                self.resolved[key] = nid
                return
