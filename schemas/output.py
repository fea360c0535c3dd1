"""Output events: what the roomserver publishes on the output topic, a tagged union on `type`.

Every output carries the room's ``room_id`` and its ``stream_position``: per room, strictly
increasing, with no gaps, so a consumer detects duplicates (a position it has seen) and gaps
(a position it skipped). The Kafka key is the room ID; the headers carry ``room_id`` and the
message type so a consumer can skip what it does not need without decoding.

===================  ======================================================================
type                 meaning
===================  ======================================================================
new_room_event       an event was added to the room's timeline (a ``new`` input); carries
                     the change to the current state: apply ``removes_state_event_ids``
                     then ``adds_state_event_ids`` to your copy of the current state.
old_room_event       a backfilled event (an ``old`` input): no current-state change.
new_invite_event     a local user was invited.
retire_invite_event  an invite ended (accepted, rejected, revoked) by a later membership.
redacted_event       an event was redacted: ``redacted_because`` is the redaction event.
===================  ======================================================================

Big state changes (continuation parts)
--------------------------------------
A state-rewriting join into a 50k-member room lists every state event of the room: megabytes
of event IDs, over Kafka's default 1 MB message limit. No output may exceed the topic's
maximum message size, so the roomserver splits such a ``new_room_event`` into ``parts``
messages that share one ``stream_position``:

- ``part`` counts from 1 to ``parts`` (both 1 for an unsplit message);
- part 1 carries the event and every other field; parts 2.. carry ``event: null`` and repeat
  the scalar fields;
- each part carries a slice of ``removes_state_event_ids`` and ``adds_state_event_ids``
  (the removes come first across the parts, then the adds).

A consumer collects parts 1..``parts`` of one ``stream_position`` (they are consecutive on
the partition), then applies all the removes and then all the adds; `reassemble` does the
collecting. A consumer that restarts in the middle of a split message starts again at part 1.

Schema evolution: new fields get defaults and are appended; fields are never reordered or
removed.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Literal

import msgspec

from schemas.errors import SchemaError

__all__ = [
    "HistoryVisibility",
    "NewInviteEvent",
    "NewRoomEvent",
    "OldRoomEvent",
    "OutputEvent",
    "OutputType",
    "RedactedEvent",
    "RetireInviteEvent",
    "reassemble",
]

#: The room's history visibility at the event (``m.room.history_visibility``).
HistoryVisibility = str

OutputType = Literal[
    "new_room_event", "old_room_event", "new_invite_event", "retire_invite_event",
    "redacted_event",
]

_NULL = msgspec.Raw(b"null")

#: A PDU as raw JSON, copied byte for byte from storage (never re-encoded).
RawEvent = Annotated[
    msgspec.Raw,
    msgspec.Meta(
        description="The event (PDU) as JSON, exactly as stored",
        extra_json_schema={"type": ["object", "null"]},
    ),
]


class _Output(msgspec.Struct, frozen=True, tag_field="type"):
    room_id: str
    #: Per room, strictly increasing and gap-free (all parts of a split message share it).
    stream_position: int


class NewRoomEvent(_Output, frozen=True, tag="new_room_event"):
    """An event added to the room (input kind ``new``) and the current-state change."""

    #: The event; ``null`` on continuation parts (``part`` > 1).
    event: RawEvent
    room_version: str
    #: The room's forward extremities after the event.
    latest_event_ids: list[str]
    #: Current-state change: apply the removes, then the adds.
    adds_state_event_ids: list[str] = msgspec.field(default_factory=list)
    removes_state_event_ids: list[str] = msgspec.field(default_factory=list)
    #: The event sent in the room's previous new_room_event, if known.
    last_sent_event_id: str | None = None
    #: The input supplied the state before the event (a join over federation): the adds and
    #: removes replace the consumer's view rather than extend it.
    rewrites_state: bool = False
    history_visibility: HistoryVisibility = "shared"
    #: "" = do not federate.
    send_as_server: str = ""
    transaction_id: str | None = None
    #: This message's number among the messages of one split output, from 1.
    part: int = 1
    #: How many messages this output was split into (1 = not split).
    parts: int = 1


class OldRoomEvent(_Output, frozen=True, tag="old_room_event"):
    """A backfilled event (input kind ``old``): current state is unchanged."""

    event: RawEvent
    room_version: str = ""
    history_visibility: HistoryVisibility = "shared"


class NewInviteEvent(_Output, frozen=True, tag="new_invite_event"):
    """A local user was invited to the room."""

    event: RawEvent
    room_version: str = ""
    target_user_id: str = ""


class RetireInviteEvent(_Output, frozen=True, tag="retire_invite_event"):
    """An invite ended: the invited user's membership changed after it."""

    #: The invite event.
    event_id: str
    target_user_id: str = ""
    #: The membership event that ended the invite.
    retired_by_event_id: str = ""
    #: That event's membership (join, leave, ban...).
    membership: str = ""


class RedactedEvent(_Output, frozen=True, tag="redacted_event"):
    """An event was redacted (the redaction passed its checks)."""

    redacted_event_id: str
    #: The m.room.redaction event.
    redacted_because: RawEvent


OutputEvent = NewRoomEvent | OldRoomEvent | NewInviteEvent | RetireInviteEvent | RedactedEvent


def reassemble(parts: Sequence[NewRoomEvent]) -> NewRoomEvent:
    """One `NewRoomEvent` from all the parts of a split one (see the module docstring).

    Raises `SchemaError` (a `ValueError`) if the parts are not exactly parts 1..N of one
    stream position: they came off the wire, so a mismatch is bad input, not a bug.
    """
    if not parts:
        raise SchemaError("no parts to reassemble")
    first = parts[0]
    numbers = [p.part for p in parts]
    if numbers != list(range(1, first.parts + 1)):
        raise SchemaError(
            f"room {first.room_id} stream position {first.stream_position}: expected parts "
            f"1..{first.parts} in order, got {numbers}"
        )
    for p in parts:
        if (p.room_id, p.stream_position, p.parts) != (
            first.room_id, first.stream_position, first.parts,
        ):
            raise SchemaError(
                f"part {p.part} belongs to room {p.room_id} stream position "
                f"{p.stream_position}, not {first.room_id} {first.stream_position}"
            )
    if len(parts) == 1:
        return first
    removes = [event_id for p in parts for event_id in p.removes_state_event_ids]
    adds = [event_id for p in parts for event_id in p.adds_state_event_ids]
    return msgspec.structs.replace(
        first,
        adds_state_event_ids=adds,
        removes_state_event_ids=removes,
        part=1,
        parts=1,
    )
