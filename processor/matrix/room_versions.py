"""Room versions 1..12 as records of named behaviour flags.

Every place that behaves differently between room versions reads one of these flags; no code
compares version strings. The spec's room version pages are the reference for each flag.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from processor.errors import UnknownRoomVersion


class EventIdFormat(enum.Enum):
    """How an event's ID is obtained."""

    #: v1, v2: the ID is carried in the event (``$opaque:server``).
    IN_EVENT = "in_event"
    #: v3: ``$`` + unpadded standard base64 of the reference hash.
    REFERENCE_HASH_BASE64 = "reference_hash_base64"
    #: v4+: ``$`` + unpadded URL-safe base64 of the reference hash.
    REFERENCE_HASH_URLSAFE = "reference_hash_urlsafe"


class StateResAlgorithm(enum.Enum):
    V1 = "v1"  # room v1
    V2 = "v2"  # room v2..v11
    V2_1 = "v2.1"  # room v12 (MSC4297)


class RedactionAlgorithm(enum.Enum):
    V1 = "v1"  # room v1..v10 (v9 also keeps join_authorised_via_users_server)
    V11 = "v11"  # room v11+ (MSC2176, MSC3821, MSC3989)


@dataclass(frozen=True, slots=True)
class RoomVersion:
    """Everything that changes behaviour between room versions."""

    id: str
    event_id_format: EventIdFormat
    state_res: StateResAlgorithm
    redaction: RedactionAlgorithm
    #: v1, v2: the v1-v2 redaction auth rule (sender's domain must match the redacted event's).
    #: v3+: redactions are accepted by auth and only applied once validated.
    redaction_auth_rule: bool
    #: v1..v5: m.room.aliases has its own auth rule.
    special_case_aliases_auth: bool
    #: v6+: integers within +-(2**53 - 1), no floats (canonical JSON is strict).
    strict_canonical_json: bool
    #: v6+: `notifications` keys are checked on power level changes.
    limit_notifications_power_levels: bool
    #: v7+: the knock membership and join rule.
    knock: bool
    #: v8+: the restricted join rule.
    restricted_join: bool
    #: v9+: redaction keeps `join_authorised_via_users_server` in m.room.member content.
    redaction_keeps_join_authorised_via: bool
    #: v10+: the knock_restricted join rule.
    knock_restricted: bool
    #: v10+: power levels must be integers (no strings, no floats).
    integer_power_levels: bool
    #: v11+: the room creator is the create event's sender (`creator` content key removed).
    implicit_room_creator: bool
    #: v12+: the room ID is `!` + the create event's reference hash (MSC4291).
    room_id_is_create_event_hash: bool
    #: v12+: the create event is implied, never listed in auth_events (MSC4291).
    create_event_implicit_in_auth_events: bool
    #: v12+: creators (sender + `additional_creators`) have unlimited power (MSC4289).
    privileged_creators: bool

    @property
    def event_id_in_event(self) -> bool:
        """v1, v2: PDUs carry `event_id` and list prev/auth events as [id, hashes] pairs."""
        return self.event_id_format is EventIdFormat.IN_EVENT


def _version(n: int) -> RoomVersion:
    if n <= 2:
        id_format = EventIdFormat.IN_EVENT
    elif n == 3:
        id_format = EventIdFormat.REFERENCE_HASH_BASE64
    else:
        id_format = EventIdFormat.REFERENCE_HASH_URLSAFE
    if n == 1:
        state_res = StateResAlgorithm.V1
    elif n <= 11:
        state_res = StateResAlgorithm.V2
    else:
        state_res = StateResAlgorithm.V2_1
    return RoomVersion(
        id=str(n),
        event_id_format=id_format,
        state_res=state_res,
        redaction=RedactionAlgorithm.V1 if n <= 10 else RedactionAlgorithm.V11,
        redaction_auth_rule=n <= 2,
        special_case_aliases_auth=n <= 5,
        strict_canonical_json=n >= 6,
        limit_notifications_power_levels=n >= 6,
        knock=n >= 7,
        restricted_join=n >= 8,
        redaction_keeps_join_authorised_via=n >= 9,
        knock_restricted=n >= 10,
        integer_power_levels=n >= 10,
        implicit_room_creator=n >= 11,
        room_id_is_create_event_hash=n >= 12,
        create_event_implicit_in_auth_events=n >= 12,
        privileged_creators=n >= 12,
    )


KNOWN_ROOM_VERSIONS: dict[str, RoomVersion] = {str(n): _version(n) for n in range(1, 13)}


#: "If `room_version` is absent from the create event's content, the room is a version 1
#: room" (m.room.create, `room_version`).
DEFAULT_ROOM_VERSION = "1"


def room_version_of_create(content: object) -> RoomVersion:
    """The version of the room a create event with this `content` establishes (the
    content's `room_version`, else version 1); `UnknownRoomVersion` if not implemented."""
    version_id = content.get("room_version", DEFAULT_ROOM_VERSION) if isinstance(
        content, dict) else DEFAULT_ROOM_VERSION
    return room_version(version_id)


def create_event_id_of_room(room_id: str) -> str:
    """v12 (MSC4291): a room's ID is its create event's ID with the sigil `!` for `$`, so the
    create event, never listed in `auth_events`, is found from the room ID."""
    return "$" + room_id[1:]


def room_version(version_id: str) -> RoomVersion:
    """The record for a room version identifier, or `UnknownRoomVersion`."""
    try:
        return KNOWN_ROOM_VERSIONS[version_id]
    except (KeyError, TypeError):
        raise UnknownRoomVersion(version_id) from None
