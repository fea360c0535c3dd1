"""Exactly-once bookkeeping: input offsets and the outbox (tables `input_offsets`, `outbox`).

Both are written in the batch's transaction, so they commit or vanish together with its
effects (README.md, "Delivery is exactly once"): the offset claimed is where the partition
resumes, and the outbox rows are what the relay (`processor.stream.outbox_relay`) publishes,
in commit order per partition, then deletes.
"""

from __future__ import annotations

from processor.storage.base import OutboxRecord
from processor.storage.batch_core import BatchCore

__all__ = ["BookkeepingMixin"]


class BookkeepingMixin(BatchCore):
    # -- input offsets ---------------------------------------------------------------------

    def select_input_offset(self, topic: str, partition: int) -> int | None:
        p = self.PARAM
        rows = self._rows(
            f"SELECT next_offset FROM input_offsets WHERE topic = {p} AND partition = {p}",
            (topic, partition),
        )
        return int(rows[0][0]) if rows else None

    def claim_input_offset(
        self, topic: str, partition: int, expected: int, next_offset: int
    ) -> bool:
        p = self.PARAM
        if self._execute(
            f"UPDATE input_offsets SET next_offset = {p}"
            f" WHERE topic = {p} AND partition = {p} AND next_offset = {p}",
            (next_offset, topic, partition, expected),
        ):
            return True
        if expected != 0:
            return False
        return self._execute(
            f"INSERT INTO input_offsets (topic, partition, next_offset) VALUES ({p}, {p}, {p})"
            " ON CONFLICT (topic, partition) DO NOTHING",
            (topic, partition, next_offset),
        ) == 1

    # -- outbox ----------------------------------------------------------------------------

    def append_outbox(
        self, partition: int, room_id: str, stream_position: int, payload: bytes
    ) -> None:
        self.pending.outbox.append((partition, room_id, stream_position, bytes(payload)))

    def select_outbox(self, partition: int, limit: int) -> list[OutboxRecord]:
        p = self.PARAM
        rows = self._rows(
            "SELECT seq, room_id, stream_position, payload FROM outbox"
            f" WHERE partition = {p} ORDER BY seq LIMIT {p}",
            (partition, limit),
            binary=True,
        )
        return [OutboxRecord(s, r, pos, bytes(b)) for s, r, pos, b in rows]

    def delete_outbox(self, partition: int, up_to_seq: int) -> None:
        p = self.PARAM
        self._execute(
            f"DELETE FROM outbox WHERE partition = {p} AND seq <= {p}", (partition, up_to_seq)
        )
