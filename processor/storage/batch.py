"""`BatchBase`: the backend-independent batch, composed of one part per concept, and the
commit protocol.

| module | concept | tables |
|---|---|---|
| `names` | event types, state keys <-> NIDs | `event_types`, `state_keys` |
| `events` | rooms and events | `rooms`, `events`, `event_json` |
| `state` | state blocks and snapshots | `state_blocks`, `state_snapshots` |
| `pending_work` | memberships, invites, redactions | `memberships`, `invites`, `redactions` |
| `bookkeeping` | input offsets, outbox | `input_offsets`, `outbox` |

Each part is a mixin over `batch_core.BatchCore` (the buffers and the backend primitives);
the backends (`postgres`, `sqlite`) are thin subclasses that supply those primitives and
override what they do faster. Inserts are buffered (`PendingWrites`) and written in bulk at
commit (`flush`), with the column lists of `tables`; reads consult the buffers first, so a
batch sees its own writes.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from processor.errors import CorruptState
from processor.storage.base import EventRecord, RedactionRecord
from processor.storage.bookkeeping import BookkeepingMixin
from processor.storage.events import EventsMixin
from processor.storage.names import NamesMixin
from processor.storage.pending_work import PendingWorkMixin
from processor.storage.state import StateMixin
from processor.storage.tables import (
    EVENT_JSON,
    EVENTS,
    MEMBERSHIPS,
    MEMBERSHIPS_UPSERT,
    OUTBOX,
    REDACTIONS,
    REDACTIONS_UPSERT,
    Table,
    event_json_row,
    event_row,
)

__all__ = ["BatchBase", "TableRows"]


@dataclass(frozen=True, slots=True)
class TableRows:
    """Rows to insert into a table at commit (`on_conflict`: an upsert clause, or none)."""

    table: Table
    rows: Sequence[Sequence[Any]]
    on_conflict: str = ""


class BatchBase(NamesMixin, EventsMixin, StateMixin, PendingWorkMixin, BookkeepingMixin):
    """The `Batch` protocol (`base`) over the backend primitives of `BatchCore`."""

    # ================================================================ reads spanning concepts

    def select_prefetch(
        self, event_ids: Iterable[str], redacts_event_ids: Iterable[str]
    ) -> tuple[dict[str, EventRecord], dict[str, list[RedactionRecord]]]:
        """What a batch reads first: `select_events_by_id(event_ids)` and the pending
        redactions of `redacts_event_ids`, in one round trip where the backend can."""
        found, missing = self._buffered_events(event_ids)
        wanted = list(dict.fromkeys(redacts_event_ids))
        rows, redaction_rows = self._select_prefetch_rows(missing, wanted)
        self._add_stored_events(found, rows)
        return found, self._pending_redactions(wanted, redaction_rows)

    def _select_prefetch_rows(
        self, event_ids: list[str], redacts_event_ids: list[str]
    ) -> tuple[list[EventRecord], list[RedactionRecord]]:
        events = self._select_event_rows("event_id", event_ids) if event_ids else []
        return events, self._select_redaction_rows(redacts_event_ids)

    # ================================================================ commit protocol

    def flush(self) -> None:
        """Write the buffers; the store commits right after."""
        # State rows first: which snapshot NIDs the other rows name is settled there.
        self._write_state_rows()
        self._write_rows(self._buffered_rows(), self._room_updates())
        self._write_redactions()

    def _buffered_rows(self) -> list[TableRows]:
        pending = self.pending
        writes: list[TableRows] = []
        if pending.events:
            events = list(pending.events.values())
            nid_array = self._nid_array
            writes.append(TableRows(EVENTS, [event_row(e, nid_array) for e in events]))
            writes.append(TableRows(EVENT_JSON, [event_json_row(e) for e in events]))
        if pending.memberships:
            writes.append(
                TableRows(
                    MEMBERSHIPS,
                    [
                        (r.room_nid, r.target_nid, r.membership, r.event_nid)
                        for r in pending.memberships.values()
                    ],
                    MEMBERSHIPS_UPSERT,
                )
            )
        if pending.outbox:
            writes.append(TableRows(OUTBOX, pending.outbox))
        return writes

    def _room_updates(self) -> list[tuple[str, Sequence[Sequence[Any]]]]:
        rooms = self.pending.rooms
        if not rooms:
            return []
        p = self.PARAM
        return [
            (
                f"UPDATE rooms SET forward_extremities = {p}, current_snapshot_nid = {p},"
                f" last_stream_position = {p}, last_sent_event_id = {p} WHERE room_nid = {p}",
                [
                    (self._nid_array(r.forward_extremities), r.current_snapshot_nid,
                     r.last_stream_position, r.last_sent_event_id, r.room_nid)
                    for r in rooms.values()
                ],
            )
        ]  # fmt: skip

    def _write_rows(
        self,
        inserts: list[TableRows],
        statements: list[tuple[str, Sequence[Sequence[Any]]]],
    ) -> None:
        """The buffered rows as INSERTs, a statement per table (PostgreSQL: COPY when many)."""
        p = self.PARAM
        for write in inserts:
            self._execute_many(write.table.insert(p, on_conflict=write.on_conflict), write.rows)
        for query, rows in statements:
            self._execute_many(query, rows)

    def _write_redactions(self) -> None:
        pending = self.pending
        p = self.PARAM
        if pending.redacted_json:
            nids = [(nid,) for nid in pending.redacted_json]
            changed = self._execute_many(
                f"UPDATE events SET redacted = TRUE WHERE event_nid = {p}", nids
            )
            changed += self._execute_many(
                f"UPDATE event_json SET json = {p} WHERE event_nid = {p}",
                [(json, nid) for nid, json in pending.redacted_json.items()],
            )
            if changed != 2 * len(nids):
                raise CorruptState(
                    f"redact_event: some of event NIDs {sorted(pending.redacted_json)[:10]} "
                    "are not stored"
                )
        if pending.redactions:
            self._execute_many(
                REDACTIONS.insert(p, on_conflict=REDACTIONS_UPSERT),
                [(nid, target, ok) for nid, (target, ok) in pending.redactions.items()],
            )

    def publish(self) -> None:
        """After a successful commit: share what this batch created or read."""
        self._caches.add_names(self.pending.type_nids, self.pending.key_nids)
        self._publish_state()
