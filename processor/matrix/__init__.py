"""The pure Matrix core: room versions, canonical JSON, hashing, redaction, auth rules and
state resolution. No I/O, no global state; only the standard library, `schemas` and
`processor.core` are imported here.

The public names below are stable: other parts of the roomserver and their tests use them.
"""

from __future__ import annotations

from processor.matrix.events import Event
from processor.matrix.room_versions import (
    KNOWN_ROOM_VERSIONS,
    EventIdFormat,
    RedactionAlgorithm,
    RoomVersion,
    StateResAlgorithm,
    room_version,
)

__all__ = [
    "KNOWN_ROOM_VERSIONS",
    "Event",
    "EventIdFormat",
    "RedactionAlgorithm",
    "RoomVersion",
    "StateResAlgorithm",
    "room_version",
]
