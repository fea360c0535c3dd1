"""Errors raised when decoding untrusted bytes.

Decoding never raises anything but `SchemaError` (and its subclass `InvalidEvent`), whose
message names the field and the problem, in msgspec's style:
"Expected `str`, got `int` - at `$.room_id`".
"""

from __future__ import annotations


class SchemaError(ValueError):
    """Bytes that are not a valid wire message. `field` is a JSON path like `$.event.sender`."""

    def __init__(self, message: str, field: str | None = None) -> None:
        self.field = field
        if field is not None and " - at `" not in message:
            message = f"{message} - at `{field}`"
        super().__init__(message)


class InvalidEvent(SchemaError):
    """A PDU that is malformed for its room version (bad shape, over a size limit, bad ID)."""


class EventTooLarge(InvalidEvent):
    """A PDU over one of the spec's size limits: 65,536 bytes of canonical JSON, or a
    ``room_id``/``sender``/``event_id``/``type``/``state_key`` over 255 bytes."""
