"""`InputRoomEvent`: what producers (federation API, client API) put on the input topic.

Kafka key: the room ID. New fields get defaults and are appended, never reordered.
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

__all__ = ["MAX_PASSED_THROUGH_CHARS", "InputKind", "InputRoomEvent"]

#: The longest `send_as_server`, `transaction_id` and `origin` (characters). They are passed
#: through to the output, which has to fit the output topic's message size whatever a
#: producer sends, so they are bounded where they are decoded: a server name is at most 255
#: characters (appendix "Server Name"), and 255 is ample for a client's transaction ID.
MAX_PASSED_THROUGH_CHARS = 255
#: Event IDs are at most 255 bytes ("Size limits"); room version IDs at most 32 characters.
_EventId = Annotated[str, msgspec.Meta(max_length=255)]
_Bounded = Annotated[str, msgspec.Meta(max_length=MAX_PASSED_THROUGH_CHARS)]

#: outlier: store + auth-check only; new: full processing; old: backfill (state computed,
#: current state and extremities untouched, emits old_room_event).
InputKind = Literal["outlier", "new", "old"]


class InputRoomEvent(msgspec.Struct, frozen=True, forbid_unknown_fields=False):
    kind: InputKind
    #: The PDU exactly as received over federation (kept as raw JSON bytes).
    event: Annotated[
        msgspec.Raw,
        msgspec.Meta(
            description="The PDU exactly as received over federation",
            extra_json_schema={"type": "object"},
        ),
    ]
    #: A hint, never authoritative: a room's version is the one its create event names.
    #: Only the create event establishes a room; an event of a room not known yet is
    #: dead-lettered (decoded with this version, to name what it misses), whatever it says.
    room_version: Annotated[str, msgspec.Meta(max_length=32)] | None = None
    #: The server that sent the event.
    origin: _Bounded | None = None
    #: The state before the event is supplied (`state_event_ids`, all stored already).
    #: On a `new` event this rewrites the room's state (a join over federation).
    has_state: bool = False
    state_event_ids: list[_EventId] = msgspec.field(default_factory=list)
    #: "" = do not federate; passed through to the output.
    send_as_server: _Bounded = ""
    #: The client's transaction, passed through.
    transaction_id: _Bounded | None = None
