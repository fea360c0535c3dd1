"""The per-event decision: plain functions the input handler calls, step by step.

The spec's "Checks performed on receipt of a PDU" (server-server API), the roomserver's part:

4. the event passes the auth rules based on its own auth events, else it is rejected;
5. it passes the auth rules based on the state before it, else it is rejected;
6. it passes the auth rules based on the room's current state, else it is "soft failed".

Everything here is pure: the handler loads what a step needs and hands it over.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

from processor.errors import AuthError
from processor.matrix.auth import auth_types_for_event, check_auth, check_auth_events_shape
from processor.matrix.events import Event, server_name_of
from processor.matrix.power_levels import power_levels_of, user_power_level
from processor.matrix.room_versions import RoomVersion
from processor.nids import EventNID, EventTypeNID, StateKeyNID, StateKeyTuple


class Outcome(enum.Enum):
    ACCEPTED = "accepted"
    REJECTED = "rejected"
    SOFT_FAILED = "soft_failed"
    OUTLIER = "outlier"
    DUPLICATE = "duplicate"
    DEAD_LETTERED = "dead_lettered"


def check_against_auth_events(
    event: Event,
    auth_events: Sequence[Event],
    rejected_ids: Iterable[str],
    version: RoomVersion,
    create_event: Event | None = None,
) -> str | None:
    """Step 4. Returns the rejection reason, or None when the event passes.

    v12 (MSC4291): the create event is never listed in auth_events; it is implied by the
    room ID, so the caller passes it as `create_event` and it joins the auth state here.
    """
    rejected = sorted(set(rejected_ids))
    if rejected:
        # Auth rules (all versions): an event whose auth events were rejected is rejected.
        return f"auth events were rejected: {', '.join(rejected)}"
    try:
        check_auth_events_shape(event, auth_events, version)
        auth_state = {e.state_tuple: e for e in auth_events if e.state_tuple}
        if create_event is not None:
            auth_state[("m.room.create", "")] = create_event
        check_auth(event, auth_state, version)
    except AuthError as e:
        return str(e)
    return None


#: Types whose auth rules read more of the event than its type and sender: the create
#: event (rule 1), membership (content), power levels (content) and, in v1–v2, redactions
#: (the redacted event's ID).
_CONTENT_READING_TYPES = frozenset(
    ("m.room.create", "m.room.member", "m.room.power_levels", "m.room.redaction")
)


def auth_verdict_key(
    event: Event, auth_event_nids: tuple[EventNID, ...]
) -> tuple[str, str, tuple[EventNID, ...]] | None:
    """What the verdict of steps 4-5 depends on, for events whose verdict can be reused.

    For a non-state event of any other type, the auth rules (and the checks of its auth
    events) read only its type, its sender and its room, plus the auth events: every message
    a user sends against the same auth events gets the same verdict. None when the rules
    read more than that.
    """
    if event.state_key is not None or event.type in _CONTENT_READING_TYPES:
        return None
    return (event.type, event.sender, auth_event_nids)


def check_against_state(
    event: Event, state: Mapping[tuple[str, str], Event], version: RoomVersion
) -> str | None:
    """Steps 5 and 6: the auth rules against a state (before the event, or current)."""
    try:
        check_auth(event, state, version)
    except AuthError as e:
        return str(e)
    return None


def auth_keys(event: Event, version: RoomVersion) -> list[tuple[str, str]]:
    """The state keys the auth rules read for this event (plus the create event, which v12
    leaves out of the selection but the rules still need)."""
    keys = auth_types_for_event(event, version)
    if ("m.room.create", "") not in keys:
        keys.append(("m.room.create", ""))
    return keys


def state_after(
    state_before: Mapping[StateKeyTuple, EventNID],
    key: StateKeyTuple | None,
    event_nid: EventNID,
    rejected: bool,
) -> Mapping[StateKeyTuple, EventNID]:
    """The state after an event: the state before, plus the event when it is an accepted
    state event. A rejected event changes no state. Returns `state_before` itself when
    nothing changes, so unchanged state is shared, never copied."""
    if key is None or rejected or state_before.get(key) == event_nid:
        return state_before
    after = dict(state_before)
    after[key] = event_nid
    return after


def forward_extremities_after(
    extremities: Sequence[EventNID], reached: Iterable[EventNID], event_nid: EventNID
) -> tuple[EventNID, ...]:
    """Forward extremities are the events with no children yet: the new event replaces the
    extremities it descends from (`reached`: its prev events, or their ancestors when a prev
    event arrived as backfill)."""
    referenced = set(reached)
    kept = [nid for nid in extremities if nid not in referenced and nid != event_nid]
    kept.append(event_nid)
    return tuple(kept)


def state_delta(
    old: Mapping[StateKeyTuple, EventNID], new: Mapping[StateKeyTuple, EventNID]
) -> tuple[dict[StateKeyTuple, EventNID], dict[StateKeyTuple, EventNID]]:
    """(removed, added) entries from `old` to `new`."""
    if old is new:
        return {}, {}
    removed = {k: v for k, v in old.items() if new.get(k) != v}
    added = {k: v for k, v in new.items() if old.get(k) != v}
    return removed, added


def state_delta_of_changes(
    old: Mapping[StateKeyTuple, EventNID], changes: Mapping[StateKeyTuple, EventNID]
) -> tuple[dict[StateKeyTuple, EventNID], dict[StateKeyTuple, EventNID]]:
    """(removed, added) from `old` to `old` with `changes` applied (0: the key is removed),
    without comparing the whole state."""
    removed: dict[StateKeyTuple, EventNID] = {}
    added: dict[StateKeyTuple, EventNID] = {}
    for key, nid in changes.items():
        before = old.get(key)
        if before == nid or (before is None and not nid):
            continue
        if before is not None:
            removed[key] = before
        if nid:
            added[key] = nid
    return removed, added


def redaction_is_valid(
    redaction: Event,
    target_sender: str,
    state_before_redaction: Mapping[tuple[str, str], Event],
    version: RoomVersion,
) -> bool:
    """Whether an accepted redaction may be applied to its target.

    v1, v2: the auth rules already required the sender's redact level or the same domain as
    the redacted event's ID, so an accepted redaction applies. v3+ (room version 3 page,
    "Handling redactions"): the redaction is applied only when the sender has the redact
    power level, or is on the same server as the original event's sender.
    """
    if version.redaction_auth_rule:
        return True
    if server_name_of(redaction.sender) == server_name_of(target_sender):
        return True
    level = user_power_level(redaction.sender, state_before_redaction, version)
    power_levels = state_before_redaction.get(("m.room.power_levels", ""))
    return level >= power_levels_of(power_levels, version).redact




@dataclass(frozen=True, slots=True)
class StateLookup:
    """Adapts a NID state map to the (type, state_key) -> Event view the auth rules read,
    for the few keys an event needs, without materialising the whole state."""

    state: Mapping[StateKeyTuple, EventNID]
    type_nid: Callable[[str], EventTypeNID | None]
    state_key_nid: Callable[[str], StateKeyNID | None]

    def nids_for(self, keys: Iterable[tuple[str, str]]) -> dict[tuple[str, str], EventNID]:
        found: dict[tuple[str, str], EventNID] = {}
        for event_type, state_key in keys:
            t = self.type_nid(event_type)
            s = self.state_key_nid(state_key)
            if t is None or s is None:
                continue
            nid = self.state.get((t, s))
            if nid is not None:
                found[(event_type, state_key)] = nid
        return found


__all__ = [
    "Outcome",
    "StateLookup",
    "auth_keys",
    "check_against_auth_events",
    "check_against_state",
    "forward_extremities_after",
    "redaction_is_valid",
    "state_after",
    "state_delta",
    "state_delta_of_changes",
]
