"""The roomserver's exceptions, by what a caller can do about them.

    RoomserverError
    ├── InvalidEvent            untrusted input is malformed; dead-letter it (from schemas)
    │   └── UnknownRoomVersion  the room version is not one we implement
    ├── AuthError               the event fails the authorization rules; store it as rejected
    ├── StateResolutionError    state resolution was handed inconsistent input
    ├── StorageError            the database failed; roll back and retry
    │   └── CorruptState        an invariant is broken (unknown NID, dangling block); stop
    ├── KafkaUnavailable        the brokers cannot be reached or refuse us (address, TLS,
    │                           SASL credentials); fix the connection settings or the broker
    ├── MessageTooLarge         an input is over the producer's size limit; raise it (and
    │                           the broker's) or fix the input
    └── ConfigError             a setting is missing or wrong; fix the configuration
        └── TopicNotFound       a topic the command reads does not exist; create it or fix
                                its name

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
    "KafkaUnavailable",
    "MessageTooLarge",
    "RoomserverError",
    "SchemaError",
    "StateResolutionError",
    "StorageError",
    "TopicNotFound",
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


class KafkaUnavailable(RoomserverError):
    """The Kafka brokers cannot be reached, or refuse the connection (an untrusted
    certificate, wrong SASL credentials). The message names the address and the cause."""


class TopicNotFound(ConfigError):
    """A topic the command needs does not exist (and the command does not create it)."""


class MessageTooLarge(RoomserverError):
    """An input message is larger than the producer may send (`max_produce_bytes`)."""
