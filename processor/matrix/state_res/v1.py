"""State resolution v1 (room version 1), as the network runs it.

The resolved state starts as the union of the state maps without the conflicting keys (a
*conflict*: the maps hold different events for one key; a key some maps lack is not a
conflict). The conflicts are then settled in four stages, each checking its candidates
against the unconflicted state plus what the *earlier* stages resolved:

1. m.room.power_levels; 2. m.room.join_rules; 3. every m.room.member key; 4. every other key.

Stages 1–3 order a key's candidates by ascending `depth`, then descending sha1(event_id); the
first is taken unconditionally and each next one replaces it while it passes the
authorization rules with the one before it in place. Stage 4 takes the event with the
highest depth, then lowest sha1(event_id), that passes them — and when none does, the last
one in that order.

Where this differs from the room version 1 page's wording (which checks every candidate
against one growing resolved state R, so that a member key sees the members resolved before
it, and leaves a key with no passing candidate out), the reference homeserver's behaviour is
the network's, and is followed here (docs/interoperability.md, "v1").
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence

from processor.errors import AuthError, StateResolutionError
from processor.matrix.auth import auth_types_for_event, check_auth
from processor.matrix.events import Event
from processor.matrix.room_versions import RoomVersion
from processor.matrix.state_res.source import EventSource, StateResEvent
from processor.nids import (
    MROOM_JOIN_RULES_NID,
    MROOM_MEMBER_NID,
    MROOM_POWER_LEVELS_NID,
    EventNID,
    StateKeyTuple,
)

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
        #: the unconflicted state, then each stage's results once the stage is done
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

    def _allowed(self, nid: EventNID, override: tuple[StateKeyTuple, EventNID] | None) -> bool:
        """Would the event pass the authorization rules against the state resolved by the
        earlier stages (with `override` in place, if given)?"""
        event = self.loaded[nid].event
        wanted = auth_types_for_event(event, self.version)
        key_nids = self.source.state_key_nids(wanted)
        state = self.resolved
        in_state: dict[tuple[str, str], EventNID] = {}
        for string_key, key in key_nids.items():
            state_nid = override[1] if override and override[0] == key else state.get(key)
            if state_nid is not None:
                in_state[string_key] = state_nid
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
        auth_types = (MROOM_POWER_LEVELS_NID, MROOM_JOIN_RULES_NID, MROOM_MEMBER_NID)
        for type_nid in auth_types:
            stage = {
                key: self._resolve_auth_key(key) for key in candidates if key[0] == type_nid
            }
            self.resolved.update(stage)
        stage = {
            key: self._resolve_other_key(key) for key in candidates if key[0] not in auth_types
        }
        self.resolved.update(stage)
        return self.resolved

    def _resolve_auth_key(self, key: StateKeyTuple) -> EventNID:
        """Ascending depth, then descending sha1(event_id): the first unconditionally, then
        each next one for as long as it passes with the one before it in place."""
        loaded = self.loaded
        ordered = sorted(self.candidates[key], key=lambda nid: _sha1(loaded[nid]), reverse=True)
        ordered.sort(key=lambda nid: loaded[nid].event.depth)
        chosen = ordered[0]
        for nid in ordered[1:]:
            if not self._allowed(nid, (key, chosen)):
                break
            chosen = nid
        return chosen

    def _resolve_other_key(self, key: StateKeyTuple) -> EventNID:
        """The highest depth, then lowest sha1(event_id), that passes; else the last."""
        loaded = self.loaded
        ordered = sorted(
            self.candidates[key],
            key=lambda nid: (-loaded[nid].event.depth, _sha1(loaded[nid])),
        )
        for nid in ordered:
            if self._allowed(nid, None):
                return nid
        return ordered[-1]
