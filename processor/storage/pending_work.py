"""Work the processor keeps track of between events: memberships, invites and redactions
(tables `memberships`, `invites`, `redactions`).

Memberships and redaction rows are buffered and upserted at commit (the last write in a batch
wins); invites are written at once, as `retire_invites` must see them. Pending (not yet
validated) redactions are read with the batch's first read (`BatchBase.select_prefetch`).
"""

from __future__ import annotations

from collections.abc import Iterable

from processor.nids import EventNID, RoomNID, StateKeyNID
from processor.storage.base import MembershipRecord, RedactionRecord
from processor.storage.batch_core import BatchCore

__all__ = ["PendingWorkMixin"]


class PendingWorkMixin(BatchCore):
    # -- memberships -----------------------------------------------------------------------

    def set_membership(
        self,
        room_nid: RoomNID,
        target_state_key_nid: StateKeyNID,
        membership: str,
        event_nid: EventNID,
    ) -> None:
        self.pending.memberships[(room_nid, target_state_key_nid)] = MembershipRecord(
            room_nid, target_state_key_nid, membership, event_nid
        )

    # -- invites ---------------------------------------------------------------------------

    def insert_invite(self, room_nid: RoomNID, target_user_id: str, event_nid: EventNID) -> None:
        p = self.PARAM
        self._execute(
            f"INSERT INTO invites (event_nid, room_nid, target_user_id) VALUES ({p}, {p}, {p})"
            " ON CONFLICT (event_nid) DO NOTHING",
            (event_nid, room_nid, target_user_id),
        )

    def retire_invites(self, room_nid: RoomNID, target_user_id: str) -> list[EventNID]:
        """Mark the user's active invites in the room retired; return their event NIDs."""
        p = self.PARAM
        rows = self._rows(
            "UPDATE invites SET retired = TRUE"
            f" WHERE room_nid = {p} AND target_user_id = {p} AND NOT retired"
            " RETURNING event_nid",
            (room_nid, target_user_id),
        )
        return sorted(EventNID(r[0]) for r in rows)

    # -- redactions ------------------------------------------------------------------------

    def insert_redaction(
        self, redaction_event_nid: EventNID, redacts_event_id: str, validated: bool
    ) -> None:
        self.pending.redactions[redaction_event_nid] = (redacts_event_id, validated)

    def _select_redaction_rows(self, redacts_event_ids: list[str]) -> list[RedactionRecord]:
        rows = self._select_in(
            "SELECT redaction_event_nid, redacts_event_id, validated FROM redactions"
            " WHERE redacts_event_id {values}",
            redacts_event_ids,
            "text",
        )
        return [RedactionRecord(r[0], r[1], bool(r[2])) for r in rows]

    def _pending_redactions(
        self, wanted: list[str], rows: Iterable[RedactionRecord]
    ) -> dict[str, list[RedactionRecord]]:
        """The redactions of `rows` (stored ones) and of this batch's buffer that target
        `wanted` and are not validated yet, by target, oldest first."""
        records = {r.redaction_event_nid: r for r in rows}
        targets = set(wanted)
        for nid, (target, validated) in self.pending.redactions.items():
            if target in targets:
                records[nid] = RedactionRecord(nid, target, validated)
            else:
                records.pop(nid, None)
        found: dict[str, list[RedactionRecord]] = {}
        for nid in sorted(records):
            record = records[nid]
            if not record.validated:
                found.setdefault(record.redacts_event_id, []).append(record)
        return found
