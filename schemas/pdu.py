"""The PDU (persistent data unit: a room event as servers exchange it) in each room version's
wire format, as msgspec Structs.

=========  ==========================================================================
format     room versions and what differs
=========  ==========================================================================
`PduV1`    v1, v2: ``event_id`` carried in the event; ``prev_events`` and
           ``auth_events`` are ``[event_id, {"sha256": hash}]`` pairs.
`PduV3`    v3–v10: no ``event_id`` (it is derived from the reference hash);
           ``prev_events`` and ``auth_events`` are plain lists of event IDs.
`PduV11`   v11: as v3, but ``redacts`` is a content property of ``m.room.redaction``
           (MSC2174), so a top-level ``redacts`` is just an unknown key.
`PduV12`   v12: as v11, but ``room_id`` is absent on the ``m.room.create`` event (the room
           ID is derived from it, MSC4291) and required on every other event.
=========  ==========================================================================

``content`` and ``unsigned`` stay `msgspec.Raw` here: a Struct decode validates the envelope
without building the content objects, and the step that needs content decodes it (the
roomserver's `processor.matrix.pdu.decode_pdu` does, after validating the envelope).
Optional keys default to `msgspec.UNSET`: absent and ``null`` differ in a hashed object, and
a ``null`` ``state_key`` would make it ambiguous whether the event is a state event, so
``null`` is rejected where the spec gives a string. Unknown top-level keys are allowed
(they are covered by the content hash; a Struct ignores them, so hashing must use the JSON
object, never a re-encoded Struct).

The limits are the spec's: at most 20 ``prev_events`` and 10 ``auth_events`` (server-server
API, PDU schema); ``depth`` is a non-negative integer. The 255-byte limit on ``room_id``,
``sender``, ``event_id``, ``type`` and ``state_key`` counts UTF-8 bytes, which a msgspec
``max_length`` (characters) cannot express; `processor.matrix.pdu` checks it.
"""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from msgspec import UNSET, UnsetType

__all__ = [
    "MAX_AUTH_EVENTS",
    "MAX_DEPTH",
    "MAX_ID_BYTES",
    "MAX_PDU_BYTES",
    "MAX_PREV_EVENTS",
    "EventHashes",
    "PduV1",
    "PduV3",
    "PduV11",
    "PduV12",
]

#: A PDU's canonical JSON (signatures included) may not exceed 65,536 bytes.
MAX_PDU_BYTES = 65_536
#: room_id, sender, event_id, type and state_key: at most 255 bytes each.
MAX_ID_BYTES = 255
MAX_PREV_EVENTS = 20
MAX_AUTH_EVENTS = 10
#: depth is a signed 64-bit integer in every implementation.
MAX_DEPTH = 2**63 - 1

_Depth = Annotated[int, msgspec.Meta(ge=0, le=MAX_DEPTH)]
#: A JSON object kept undecoded (the JSON Schema says what it must be).
_RawObject = Annotated[msgspec.Raw, msgspec.Meta(extra_json_schema={"type": "object"})]


class EventHashes(msgspec.Struct, frozen=True):
    """``hashes``: the unpadded-Base64 SHA-256 content hash (other algorithms ignored)."""

    sha256: str


#: v1/v2 reference to another event: ``[event_id, {"sha256": hash}]``.
EventReferenceV1 = tuple[str, dict[str, Any]]

Signatures = dict[str, dict[str, str]]


class PduV1(msgspec.Struct, frozen=True):
    """A PDU of room versions 1 and 2."""

    event_id: str
    room_id: str
    sender: str
    type: str
    content: _RawObject
    depth: _Depth
    origin_server_ts: int
    prev_events: Annotated[list[EventReferenceV1], msgspec.Meta(max_length=MAX_PREV_EVENTS)]
    auth_events: Annotated[list[EventReferenceV1], msgspec.Meta(max_length=MAX_AUTH_EVENTS)]
    hashes: EventHashes
    signatures: Signatures
    state_key: str | UnsetType = UNSET
    redacts: str | UnsetType = UNSET
    origin: str | UnsetType = UNSET
    unsigned: _RawObject = msgspec.field(default_factory=lambda: msgspec.Raw(b"{}"))


class PduV3(msgspec.Struct, frozen=True):
    """A PDU of room versions 3 to 10."""

    room_id: str
    sender: str
    type: str
    content: _RawObject
    depth: _Depth
    origin_server_ts: int
    prev_events: Annotated[list[str], msgspec.Meta(max_length=MAX_PREV_EVENTS)]
    auth_events: Annotated[list[str], msgspec.Meta(max_length=MAX_AUTH_EVENTS)]
    hashes: EventHashes
    signatures: Signatures
    state_key: str | UnsetType = UNSET
    redacts: str | UnsetType = UNSET
    origin: str | UnsetType = UNSET
    unsigned: _RawObject = msgspec.field(default_factory=lambda: msgspec.Raw(b"{}"))


class PduV11(msgspec.Struct, frozen=True):
    """A PDU of room version 11 (``redacts`` lives in content, MSC2174)."""

    room_id: str
    sender: str
    type: str
    content: _RawObject
    depth: _Depth
    origin_server_ts: int
    prev_events: Annotated[list[str], msgspec.Meta(max_length=MAX_PREV_EVENTS)]
    auth_events: Annotated[list[str], msgspec.Meta(max_length=MAX_AUTH_EVENTS)]
    hashes: EventHashes
    signatures: Signatures
    state_key: str | UnsetType = UNSET
    origin: str | UnsetType = UNSET
    unsigned: _RawObject = msgspec.field(default_factory=lambda: msgspec.Raw(b"{}"))


class PduV12(msgspec.Struct, frozen=True):
    """A PDU of room version 12: ``room_id`` is absent on the create event (MSC4291)."""

    sender: str
    type: str
    content: _RawObject
    depth: _Depth
    origin_server_ts: int
    prev_events: Annotated[list[str], msgspec.Meta(max_length=MAX_PREV_EVENTS)]
    auth_events: Annotated[list[str], msgspec.Meta(max_length=MAX_AUTH_EVENTS)]
    hashes: EventHashes
    signatures: Signatures
    room_id: str | UnsetType = UNSET
    state_key: str | UnsetType = UNSET
    origin: str | UnsetType = UNSET
    unsigned: _RawObject = msgspec.field(default_factory=lambda: msgspec.Raw(b"{}"))
