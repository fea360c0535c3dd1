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

    def select_outbox(
        self, partition: int, limit: int, after_seq: int = 0
    ) -> list[OutboxRecord]:
        p = self.PARAM
        rows = self._rows(
            "SELECT seq, room_id, stream_position, payload FROM outbox"
            f" WHERE partition = {p} AND seq > {p} ORDER BY seq LIMIT {p}",
            (partition, after_seq, limit),
            binary=True,
        )
        return [OutboxRecord(s, r, pos, bytes(b)) for s, r, pos, b in rows]

    def delete_outbox(self, partition: int, up_to_seq: int) -> None:
        p = self.PARAM
        self._execute(
            f"DELETE FROM outbox WHERE partition = {p} AND seq <= {p}", (partition, up_to_seq)
        )

    def advance_outbox_seq(self, published: int) -> bool:
        """Make the next outbox row's `seq` larger than `published` (the largest `seq` the
        output topics already hold); True when the sequence had to move.

        A rebuilt or restored database numbers its rows from below what its predecessor
        published, and the relay forgets rows at or below the topics' last `seq` as "already
        in Kafka": without this its first outputs would be dropped. Never moves the sequence
        back (rows numbered above `published` keep their order), so any instance may call it
        at any time.
        """
        if self.PARAM == "?":
            # SQLite: AUTOINCREMENT numbers from max(sqlite_sequence.seq, largest rowid) + 1.
            moved = self._execute(
                "UPDATE sqlite_sequence SET seq = ? WHERE name = 'outbox' AND seq < ?",
                (published, published),
            )
            if not self._rows("SELECT 1 FROM sqlite_sequence WHERE name = 'outbox'"):
                moved = self._execute(
                    "INSERT INTO sqlite_sequence (name, seq) VALUES ('outbox', ?)", (published,)
                )
            return moved > 0
        # PostgreSQL: setval is not transactional and would move the sequence back if it
        # raced a larger value; it runs only when the sequence is below `published`, which
        # only a database that never published that far can be (no concurrent nextval there
        # reaches `published` first).
        rows = self._rows(
            "SELECT setval(s, %s) FROM (SELECT pg_get_serial_sequence('outbox', 'seq')::regclass"
            " AS s) q WHERE COALESCE(pg_sequence_last_value(s), 0) < %s",
            (published, published),
        )
        return bool(rows)
