"""The roomserver's exceptions, by what a caller can do about them.

    RoomserverError               (defined in schemas.errors, re-exported here)
    ├── SchemaError               bytes that are not a valid wire message; dead-letter them
    │   └── InvalidEvent          an untrusted PDU is malformed; dead-letter it
    │       ├── EventTooLarge     over a spec size limit (schemas.errors)
    │       ├── CanonicalJsonError  a value with no canonical JSON encoding (a float, an
    │       │                     integer out of range; processor.matrix.canonical_json)
    │       └── UnknownRoomVersion  a room version we do not implement
    ├── AuthError                 the event fails the authorization rules; store it as rejected
    ├── StateResolutionError      state resolution was handed inconsistent input (an event it
    │                             cannot load); dead-letter the input
    ├── StorageError              the database failed (connection, lock, constraint); roll back
    │                             and retry
    ├── CorruptState              an invariant of the stored data is broken (a snapshot naming a
    │                             block that does not exist, a dangling NID): stop, never retry
    │                             nor dead-letter; restore from backup or rebuild
    ├── NotFound                  a room or event is not in this database; check the ID
    │   ├── RoomNotFound
    │   └── EventNotFound
    ├── KafkaUnavailable          the brokers cannot be reached or refuse us (address, TLS,
    │                             SASL credentials); fix the connection settings or the broker
    ├── MessageTooLarge           an input is over the producer's size limit; raise it (and
    │                             the broker's) or fix the input
    └── ConfigError               a setting or argument is missing or wrong; fix it
        ├── TopicNotFound         a topic the command reads does not exist; create it or fix
        │                         its name
        └── OutputTooLarge        an output cannot be split below the output topic's limit
                                  (processor.pipeline.outputs); raise the limit

`CorruptState` is deliberately not a `StorageError`: a `StorageError` is retried, and retrying
a read of broken data fails the same way forever. The CLI exits 2 for a `ConfigError`, 3 for
`CorruptState` (a supervisor can refuse to restart on it: the next start would stop again),
1 for the others.

`RoomserverError`, `SchemaError`, `InvalidEvent` and `EventTooLarge` live in `schemas.errors`
(so `schemas` imports without `processor`) and are re-exported here, the same classes.
"""

from __future__ import annotations

from schemas.errors import EventTooLarge, InvalidEvent, RoomserverError, SchemaError

__all__ = [
    "AuthError",
    "ConfigError",
    "CorruptState",
    "EventNotFound",
    "EventTooLarge",
    "InvalidEvent",
    "KafkaUnavailable",
    "MessageTooLarge",
    "NotFound",
    "RoomNotFound",
    "RoomserverError",
    "SchemaError",
    "StateResolutionError",
    "StorageError",
    "TopicNotFound",
    "UnknownRoomVersion",
]


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


class CorruptState(RoomserverError):
    """Stored data breaks an invariant (a snapshot naming unknown blocks, an unknown NID).

    Not a `StorageError`: nothing transient caused it, so a retry would fail the same way,
    and dead-lettering the input would carry on with a database that no longer agrees with
    the input topic. The service stops on it; the fix is a restore or a rebuild."""


class NotFound(RoomserverError):
    """A room or event a caller asked about is not in this database (a normal answer to a
    query, not a fault: the message names what is missing)."""


class RoomNotFound(NotFound):
    """No room with this ID is stored here."""

    def __init__(self, room_id: str) -> None:
        self.room_id = room_id
        super().__init__(f"room {room_id} is not in this database")


class EventNotFound(NotFound):
    """No event with this ID is stored here (in the room asked about, if one was)."""

    def __init__(self, event_id: str, room_id: str | None = None) -> None:
        self.event_id = event_id
        self.room_id = room_id
        where = f"room {room_id}" if room_id is not None else "this database"
        super().__init__(f"event {event_id} is not in {where}")


class ConfigError(RoomserverError):
    """A setting or command-line argument is missing or invalid."""


class KafkaUnavailable(RoomserverError):
    """The Kafka brokers cannot be reached, or refuse the connection (an untrusted
    certificate, wrong SASL credentials). The message names the address and the cause."""


class TopicNotFound(ConfigError):
    """A topic the command needs does not exist (and the command does not create it)."""


class MessageTooLarge(RoomserverError):
    """An input message is larger than the producer may send (`max_produce_bytes`)."""
