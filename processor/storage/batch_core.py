"""What every part of a batch stands on: its write buffers and the backend primitives.

A batch (`processor.storage.batch.BatchBase`) is composed of one mixin per concept —
`names`, `events` (rooms and events), `state`, `pending_work` (memberships, invites,
redactions), `bookkeeping` (input offsets, outbox) — each a subclass of `BatchCore`, which
holds the batch's buffers (`PendingWrites`) and declares the few primitives a backend
(`postgres.PostgresBatch`, `sqlite.SqliteBatch`) supplies: run a statement, select rows whose
column is in a list, bind or read an array of NIDs, reserve fresh NIDs. Everything else is
written once, over these primitives, with the shared column lists of `tables`.
"""

from __future__ import annotations

import enum
from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from processor.core.state_blocks import StateBlock
from processor.nids import EventNID, RoomNID, StateBlockNID, StateKeyNID, StateSnapshotNID
from processor.storage.base import EventRecord, MembershipRecord, RoomRecord
from processor.storage.caches import SnapshotMeta, StoreCaches

__all__ = ["BatchCore", "NidKind", "PendingWrites", "SnapshotRow"]


class NidKind(enum.Enum):
    """NIDs the store hands out before the row is written (reserved from a sequence)."""

    EVENT = "event"
    STATE_BLOCK = "state_block"
    STATE_SNAPSHOT = "state_snapshot"


@dataclass(frozen=True, slots=True)
class SnapshotRow:
    meta: SnapshotMeta
    hash: bytes
    room_nid: RoomNID


@dataclass(slots=True)
class PendingWrites:
    """Everything a batch has buffered for its commit."""

    events: dict[EventNID, EventRecord] = field(default_factory=dict)
    events_by_id: dict[str, EventNID] = field(default_factory=dict)
    blocks: dict[StateBlockNID, StateBlock] = field(default_factory=dict)
    block_nids_by_hash: dict[bytes, StateBlockNID] = field(default_factory=dict)
    snapshots: dict[StateSnapshotNID, SnapshotRow] = field(default_factory=dict)
    snapshot_nids_by_hash: dict[bytes, StateSnapshotNID] = field(default_factory=dict)
    #: Stored events given one of this batch's snapshots (`update_event`, written at once):
    #: rewritten at commit if that snapshot turns out to be stored already (`state`).
    stored_event_snapshots: dict[EventNID, StateSnapshotNID] = field(default_factory=dict)
    #: Set at commit: this batch's snapshot NIDs whose content another batch stored first ->
    #: that batch's NID (`state.StateMixin._write_state_rows`).
    snapshot_aliases: dict[StateSnapshotNID, StateSnapshotNID] = field(default_factory=dict)
    rooms: dict[RoomNID, RoomRecord] = field(default_factory=dict)
    memberships: dict[tuple[RoomNID, StateKeyNID], MembershipRecord] = field(
        default_factory=dict
    )
    #: (partition, room_id, stream_position, payload), in append order.
    outbox: list[tuple[int, str, int, bytes]] = field(default_factory=list)
    #: Names assigned NIDs in this batch; published to the shared cache after commit.
    type_nids: dict[str, int] = field(default_factory=dict)
    key_nids: dict[str, int] = field(default_factory=dict)
    #: Redacted JSON of events stored by earlier batches (this batch's own are rewritten in
    #: `events`), and redaction rows: redaction NID -> (redacted event ID, validated).
    redacted_json: dict[EventNID, bytes] = field(default_factory=dict)
    redactions: dict[EventNID, tuple[str, bool]] = field(default_factory=dict)


class BatchCore(ABC):
    """A batch's buffers and the primitives its backend supplies (one round trip each)."""

    def __init__(self, caches: StoreCaches) -> None:
        self._caches = caches
        self.pending = PendingWrites()

    #: The driver's query parameter marker ("?" for sqlite3, "%s" for psycopg).
    PARAM: ClassVar[str]

    @abstractmethod
    def _rows(self, query: str, params: Sequence[Any] = (), *, binary: bool = False) -> list[Any]:
        """Run a query in the batch's transaction; its rows. `binary`: a hint that the rows
        hold bytea or arrays, which PostgreSQL then sends in binary."""

    @abstractmethod
    def _select_in(
        self,
        template: str,
        values: Sequence[Any],
        sql_type: str,
        params: Sequence[Any] = (),
        *,
        binary: bool = False,
    ) -> list[Any]:
        """The rows of `template` with ``{values}`` replaced by a test that a column is one of
        `values` (of PostgreSQL type `sql_type`: ``bigint``, ``text``, ``bytea``) and ``{p}``
        by the parameter marker, whose `params` all come before ``{values}``. PostgreSQL:
        ``= ANY(array)``; SQLite: ``IN (?, ...)`` in chunks, so a template's ORDER BY holds
        within a chunk only."""

    @abstractmethod
    def _execute(self, query: str, params: Sequence[Any] = ()) -> int:
        """Run a statement in the batch's transaction; the number of rows it changed."""

    @abstractmethod
    def _execute_many(self, query: str, rows: Sequence[Sequence[Any]]) -> int:
        """Run a statement once per row; the number of rows changed in all."""

    @abstractmethod
    def _execute_together(
        self, statements: Sequence[tuple[str, Sequence[Sequence[Any]]]]
    ) -> list[int]:
        """`_execute_many` of each (query, rows), in one round trip where the backend can;
        the rows changed by each."""

    @abstractmethod
    def _nid_array(self, nids: Iterable[int]) -> Any:
        """A list of NIDs as the driver binds it to an array column."""

    @abstractmethod
    def _nid_tuple(
        self, value: Any, owner_kind: str, owner: object, column: str
    ) -> tuple[Any, ...]:
        """An array column's value as NIDs (`tables.NidDecoder`); `CorruptState` when it
        cannot be read."""

    @abstractmethod
    def _reserve_nids(self, kind: NidKind, count: int) -> list[int]:
        """`count` fresh NIDs of `kind` (never 0, never handed out before)."""

    # -- shared by several concepts ------------------------------------------------------------

    def _surviving_snapshot(self, snapshot_nid: StateSnapshotNID) -> StateSnapshotNID:
        """`snapshot_nid`, or the NID of the identical snapshot stored instead of it (an
        earlier batch of this store lost the race to store it: `state`). Every snapshot NID a
        caller hands in goes through this, as callers keep NIDs across batches."""
        aliases = self._caches.snapshot_aliases
        if not aliases:  # the usual case: no race lost since the store opened
            return snapshot_nid
        with self._caches.lock:
            return aliases.get(snapshot_nid, snapshot_nid)
