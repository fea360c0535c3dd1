"""`InputRoomEvent`: what producers (federation API, client API) put on the input topic.

Kafka key: the room ID. New fields get defaults and are appended, never reordered.
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

__all__ = ["InputKind", "InputRoomEvent"]

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
    #: Needed only when the room is not known yet and the event is not its create event.
    room_version: str | None = None
    #: The server that sent the event.
    origin: str | None = None
    #: The state before the event is supplied (`state_event_ids`, all stored already).
    #: On a `new` event this rewrites the room's state (a join over federation).
    has_state: bool = False
    state_event_ids: list[str] = msgspec.field(default_factory=list)
    #: "" = do not federate; passed through to the output.
    send_as_server: str = ""
    #: The client's transaction, passed through.
    transaction_id: str | None = None
