"""The roomserver's exceptions, by what a caller can do about them.

    RoomserverError
    ├── InvalidEvent            untrusted input is malformed; dead-letter it (from schemas)
    │   └── UnknownRoomVersion  the room version is not one we implement
    ├── AuthError               the event fails the authorization rules; store it as rejected
    ├── StateResolutionError    state resolution was handed inconsistent input
    ├── StorageError            the database failed; roll back and retry
    │   └── CorruptState        an invariant is broken (unknown NID, dangling block); stop
    └── ConfigError             a setting is missing or wrong; fix the configuration

`InvalidEvent` lives in `schemas.errors` (so `schemas` imports without `processor`) and is
re-exported here.
"""

from __future__ import annotations

from schemas.errors import InvalidEvent, SchemaError

__all__ = [
    "AuthError",
    "ConfigError",
    "CorruptState",
    "InvalidEvent",
    "RoomserverError",
    "SchemaError",
    "StateResolutionError",
    "StorageError",
    "UnknownRoomVersion",
]


class RoomserverError(Exception):
    """Base of every error the roomserver raises on purpose."""


class UnknownRoomVersion(InvalidEvent):
    """A room version this roomserver does not implement."""

    def __init__(self, version_id: object) -> None:
        self.version_id = version_id
        super().__init__(
            f"unknown room version {version_id!r}: supported versions are 1 to 12",
            field="room_version",
        )


class AuthError(RoomserverError):
    """The event fails the authorization rules. The message names the rule and the reason,
    e.g. "m.room.member join: sender is banned"."""


class StateResolutionError(RoomserverError):
    """State resolution was given input it cannot resolve (e.g. an event it cannot load)."""


class StorageError(RoomserverError):
    """A storage operation failed; the batch is rolled back and can be retried."""


class CorruptState(StorageError):
    """Stored data breaks an invariant (a snapshot naming unknown blocks, an unknown NID)."""


class ConfigError(RoomserverError):
    """A setting is missing or invalid."""
