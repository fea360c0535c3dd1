"""Errors raised when decoding untrusted bytes, and the base of all the roomserver's errors.

Decoding never raises anything but `SchemaError` (and its subclass `InvalidEvent`), whose
message names the field and the problem, in msgspec's style:
"Expected `str`, got `int` - at `$.room_id`".

`RoomserverError` is defined here, not in `processor.errors` (which re-exports it, the same
class), because `schemas` must import without `processor` (producers and consumers use it on
its own) and a `SchemaError` must still be a `RoomserverError`: every error the roomserver
raises on purpose is one, so the CLI and the service catch them all in one place.
"""

from __future__ import annotations


class RoomserverError(Exception):
    """Base of every error the roomserver raises on purpose (the tree is drawn in
    `processor.errors`)."""


class SchemaError(RoomserverError, ValueError):
    """Bytes that are not a valid wire message. `field` is a JSON path like `$.event.sender`.

    Also a `ValueError`, as msgspec's own decoding errors are, so that consumers of `schemas`
    that catch `ValueError` keep working."""

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
