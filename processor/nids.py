"""Numeric IDs (NIDs): the roomserver's internal integer names for Matrix string IDs.

A NID is never 0 (0 means "none"), never leaves the roomserver, and is never reused.
Well-known event types and the empty state key are preassigned.
"""

from __future__ import annotations

from typing import NewType

RoomNID = NewType("RoomNID", int)
EventNID = NewType("EventNID", int)
EventTypeNID = NewType("EventTypeNID", int)
StateKeyNID = NewType("StateKeyNID", int)
StateSnapshotNID = NewType("StateSnapshotNID", int)
StateBlockNID = NewType("StateBlockNID", int)

#: (event type NID, state key NID): one key of a room's state.
StateKeyTuple = tuple[EventTypeNID, StateKeyNID]


MROOM_CREATE_NID = EventTypeNID(1)
MROOM_POWER_LEVELS_NID = EventTypeNID(2)
MROOM_JOIN_RULES_NID = EventTypeNID(3)
MROOM_THIRD_PARTY_INVITE_NID = EventTypeNID(4)
MROOM_MEMBER_NID = EventTypeNID(5)
MROOM_REDACTION_NID = EventTypeNID(6)
MROOM_HISTORY_VISIBILITY_NID = EventTypeNID(7)

PREASSIGNED_EVENT_TYPE_NIDS: dict[str, EventTypeNID] = {
    "m.room.create": MROOM_CREATE_NID,
    "m.room.power_levels": MROOM_POWER_LEVELS_NID,
    "m.room.join_rules": MROOM_JOIN_RULES_NID,
    "m.room.third_party_invite": MROOM_THIRD_PARTY_INVITE_NID,
    "m.room.member": MROOM_MEMBER_NID,
    "m.room.redaction": MROOM_REDACTION_NID,
    "m.room.history_visibility": MROOM_HISTORY_VISIBILITY_NID,
}

EMPTY_STATE_KEY_NID = StateKeyNID(1)
PREASSIGNED_STATE_KEY_NIDS: dict[str, StateKeyNID] = {"": EMPTY_STATE_KEY_NID}
