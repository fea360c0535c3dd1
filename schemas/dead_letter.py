"""Dead-letter records: inputs the roomserver could not process, with the original bytes.

The dead-letter topic keeps them (no retention limit) so an operator can read the reason,
fix the producer, and re-produce the original.
"""

from __future__ import annotations

import base64
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
    """One input the roomserver could not process, with where it came from and why."""

    #: A `DeadLetterReason` value (machine-readable; new reasons may be added).
    reason: str
    #: A sentence for the operator, naming the field or event IDs.
    message: str
    #: Where the original came from.
    topic: str
    partition: int
    offset: int
    #: The original message bytes, standard base64 (padded).
    original: str

    @classmethod
    def of(
        cls,
        original: bytes,
        *,
        reason: DeadLetterReason,
        message: str,
        topic: str,
        partition: int,
        offset: int,
    ) -> DeadLetter:
        """A record for the message `original` read at `topic`/`partition`/`offset`."""
        return cls(
            reason=reason.value,
            message=message,
            topic=topic,
            partition=partition,
            offset=offset,
            original=base64.b64encode(original).decode("ascii"),
        )

    def original_bytes(self) -> bytes:
        """The original message, ready to be re-produced once the producer is fixed."""
        return base64.b64decode(self.original, validate=True)


DeadLetterType = Literal["dead_letter"]
