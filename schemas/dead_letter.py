"""Dead-letter records: inputs the roomserver could not process, with the original bytes.

The dead-letter topic keeps them (no retention limit) so an operator can read the reason,
fix the producer, and re-produce the original.
"""

from __future__ import annotations

import enum
from typing import Literal

import msgspec

__all__ = ["DeadLetter", "DeadLetterReason"]


class DeadLetterReason(enum.Enum):
    """Machine-readable reasons; `DeadLetter.message` says it in a sentence."""

    #: Not JSON, or not an InputRoomEvent.
    MALFORMED = "malformed"
    #: The PDU is malformed for its room version.
    INVALID_EVENT = "invalid_event"
    #: A PDU over 65,536 bytes, or an identifier over 255 bytes.
    OVERSIZED_EVENT = "oversized_event"
    UNKNOWN_ROOM_VERSION = "unknown_room_version"
    #: The room is not known and the input cannot create it.
    UNKNOWN_ROOM = "unknown_room"
    MISSING_AUTH_EVENTS = "missing_auth_events"
    MISSING_PREV_EVENTS = "missing_prev_events"
    #: has_state names events not stored, or a prev event's state is unknown.
    MISSING_STATE_EVENTS = "missing_state_events"


class DeadLetter(msgspec.Struct, frozen=True, tag_field="type", tag="dead_letter"):
    reason: str
    #: A sentence for the operator, naming the field or event IDs.
    message: str
    topic: str
    partition: int
    offset: int
    #: The original message bytes, standard base64.
    original: str


DeadLetterType = Literal["dead_letter"]
