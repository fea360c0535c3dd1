"""The storage interface the processor is written against, and the records it returns.

One `Store` per process (thread-safe); one `Batch` per input batch = ONE database transaction,
committed on clean exit of `Store.batch()` and rolled back on an exception. Reads inside a
batch see that batch's own writes, including writes still buffered for the commit.

NIDs are never 0 (0 means "none"); see `processor.nids`. Every method that takes NIDs
read from the database raises `CorruptState` when one of them does not exist: a dangling NID is
a broken invariant, never "not found".
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Protocol

from processor.nids import (
    EventNID,
    EventTypeNID,
    RoomNID,
    StateKeyNID,
    StateKeyTuple,
    StateSnapshotNID,
)

__all__ = [
    "Batch",
    "EventRecord",
    "MembershipRecord",
    "OutboxRecord",
    "RedactionRecord",
    "RoomRecord",
    "Store",
]


@dataclass(frozen=True, slots=True)
class RoomRecord:
    room_nid: RoomNID
    room_id: str
    room_version: str
    forward_extremities: tuple[EventNID, ...]
    #: The room's current state; 0 = none yet.
    current_snapshot_nid: StateSnapshotNID
    #: The stream position of the room's last output event (0 = none yet).
    last_stream_position: int
    #: The event of the room's last new_room_event (None = none yet).
    last_sent_event_id: str | None = None


@dataclass(slots=True)  # not frozen: a frozen __init__ costs 2x, per event
class EventRecord:
    event_nid: EventNID
    event_id: str
    room_nid: RoomNID
    type_nid: EventTypeNID
    #: 0 = not a state event.
    state_key_nid: StateKeyNID
    depth: int
    outlier: bool
    rejected: bool
    rejection_reason: str | None
    #: The state BEFORE the event; 0 = none (outliers, rejected events before state is known).
    state_snapshot_nid: StateSnapshotNID
    auth_event_nids: tuple[EventNID, ...]
    prev_event_nids: tuple[EventNID, ...]
    #: The PDU bytes as received, or its redacted form once `redacted`.
    json: bytes
    redacted: bool

    @property
    def is_state(self) -> bool:
        return self.state_key_nid != 0

    @property
    def state_key_tuple(self) -> StateKeyTuple:
        return (self.type_nid, self.state_key_nid)


@dataclass(frozen=True, slots=True)
class MembershipRecord:
    room_nid: RoomNID
    target_nid: StateKeyNID
    membership: str
    event_nid: EventNID


@dataclass(frozen=True, slots=True)
class RedactionRecord:
    redaction_event_nid: EventNID
    redacts_event_id: str
    #: True once the redaction has been checked against (and applied to) its target.
    validated: bool


@dataclass(frozen=True, slots=True)
class OutboxRecord:
    #: Increasing within a partition, in commit order.
    seq: int
    room_id: str
    stream_position: int
    payload: bytes


class Batch(Protocol):
    """One database transaction. See the module docstring."""

    # -- NIDs (assigned in one round trip per call; cached in process once committed) ------
    def event_type_nids(self, types: Iterable[str]) -> dict[str, EventTypeNID]: ...
    def state_key_nids(self, keys: Iterable[str]) -> dict[str, StateKeyNID]: ...
    def event_type_names(self, nids: Iterable[EventTypeNID]) -> dict[EventTypeNID, str]: ...
    def state_key_names(self, nids: Iterable[StateKeyNID]) -> dict[StateKeyNID, str]: ...
    def select_state_key_nids(self, keys: Iterable[str]) -> dict[str, StateKeyNID]:
        """Existing NIDs only (no assignment): unknown keys are left out."""
        ...

    def select_event_type_nids(self, types: Iterable[str]) -> dict[str, EventTypeNID]:
        """Existing NIDs only (no assignment): unknown types are left out."""
        ...

    # -- rooms -----------------------------------------------------------------------------
    def select_room(self, room_id: str) -> RoomRecord | None: ...
    def select_room_by_nid(self, room_nid: RoomNID) -> RoomRecord: ...
    def insert_room(self, room_id: str, version_id: str) -> RoomRecord: ...
    def update_room(
        self,
        room_nid: RoomNID,
        *,
        forward_extremities: Iterable[EventNID],
        current_snapshot_nid: StateSnapshotNID,
        last_stream_position: int,
        last_sent_event_id: str | None = None,
    ) -> None: ...

    # -- events ----------------------------------------------------------------------------
    def select_events_by_id(self, event_ids: Iterable[str]) -> dict[str, EventRecord]: ...

    def select_prefetch(
        self, event_ids: Iterable[str], redacts_event_ids: Iterable[str]
    ) -> tuple[dict[str, EventRecord], dict[str, list[RedactionRecord]]]:
        """What a batch reads first: the stored events of `event_ids` (as
        `select_events_by_id`) and the not-yet-validated redactions of `redacts_event_ids`,
        by redacted event ID, oldest first; in one round trip where the backend can."""
        ...
    def select_events(self, nids: Iterable[EventNID]) -> dict[EventNID, EventRecord]: ...
    def insert_event(
        self,
        *,
        event_id: str,
        room_nid: RoomNID,
        type_nid: EventTypeNID,
        state_key_nid: StateKeyNID,
        depth: int,
        outlier: bool,
        rejected: bool,
        rejection_reason: str | None,
        state_snapshot_nid: StateSnapshotNID,
        auth_event_nids: Iterable[EventNID],
        prev_event_nids: Iterable[EventNID],
        json: bytes,
        redacted: bool = False,
    ) -> EventNID: ...
    def update_event(
        self,
        event_nid: EventNID,
        *,
        outlier: bool | None = None,
        state_snapshot_nid: StateSnapshotNID | None = None,
        rejected: bool | None = None,
        rejection_reason: str | None = None,
        prev_event_nids: Sequence[EventNID] | None = None,
    ) -> None:
        """Change an event's processing fields (e.g. an outlier later processed as new:
        it gains a state, and its prev events now that they are stored)."""
        ...

    def redact_event(
        self, event_nid: EventNID, redacted_json: bytes, redaction_event_nid: EventNID
    ) -> None: ...

    # -- state -----------------------------------------------------------------------------
    def store_state(
        self,
        room_nid: RoomNID,
        state: Mapping[StateKeyTuple, EventNID],
        *,
        base_snapshot_nid: StateSnapshotNID = ...,
    ) -> StateSnapshotNID: ...
    def store_state_delta(
        self,
        room_nid: RoomNID,
        base_snapshot_nid: StateSnapshotNID,
        changes: Mapping[StateKeyTuple, EventNID],
    ) -> StateSnapshotNID:
        """The snapshot `base` with `changes` applied (event NID 0 removes a key). Cheaper
        than `store_state` when the caller knows what changed (no full-state comparison)."""
        ...

    def load_state(self, snapshot_nid: StateSnapshotNID) -> dict[StateKeyTuple, EventNID]: ...
    def load_state_entries(
        self, snapshot_nid: StateSnapshotNID, keys: Iterable[StateKeyTuple]
    ) -> dict[StateKeyTuple, EventNID]: ...
    def state_difference(
        self, old_snapshot_nid: StateSnapshotNID, new_snapshot_nid: StateSnapshotNID
    ) -> tuple[dict[StateKeyTuple, EventNID], dict[StateKeyTuple, EventNID]]: ...

    # -- memberships / invites / redactions ------------------------------------------------
    def set_membership(
        self,
        room_nid: RoomNID,
        target_state_key_nid: StateKeyNID,
        membership: str,
        event_nid: EventNID,
    ) -> None: ...
    def insert_invite(self, room_nid: RoomNID, target_user_id: str, event_nid: EventNID) -> None:
        ...

    def retire_invites(self, room_nid: RoomNID, target_user_id: str) -> list[EventNID]:
        """Mark the user's active invites in the room retired; return their event NIDs."""
        ...

    def insert_redaction(
        self, redaction_event_nid: EventNID, redacts_event_id: str, validated: bool
    ) -> None: ...

    # -- exactly-once bookkeeping ----------------------------------------------------------
    def select_input_offset(self, topic: str, partition: int) -> int | None: ...
    def claim_input_offset(
        self, topic: str, partition: int, expected: int, next_offset: int
    ) -> bool:
        """Compare-and-set: move the stored offset from `expected` (0 = none stored) to
        `next_offset`. False when another transaction moved it first: the caller must roll
        back (a stale owner after a rebalance). PostgreSQL re-checks the condition after
        waiting for a concurrent writer of the row, so two owners cannot both win."""
        ...

    def select_room_events(self, room_nid: RoomNID) -> list[EventRecord]:
        """Every event of a room, in the order they were stored (event NID order)."""
        ...
    def append_outbox(
        self, partition: int, room_id: str, stream_position: int, payload: bytes
    ) -> None: ...
    def select_outbox(
        self, partition: int, limit: int, after_seq: int = 0
    ) -> list[OutboxRecord]:
        """The partition's first `limit` rows numbered above `after_seq`, in `seq` order."""
        ...
    def delete_outbox(self, partition: int, up_to_seq: int) -> None: ...
    def advance_outbox_seq(self, published: int) -> bool:
        """Number the next outbox rows above `published`; never backwards. True if moved."""
        ...


class Store(Protocol):
    def migrate(self) -> None:
        """Apply pending versioned migrations; idempotent; safe when processes race."""
        ...

    def batch(self) -> AbstractContextManager[Batch]: ...
    def close(self) -> None: ...
