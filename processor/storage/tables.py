"""The tables as the code sees them: ONE column list per table, and the functions that turn
records into rows and rows into records, shared by both backends.

Writing: a `Table` names its columns once, in the order its row builder (`event_row`,
`block_row`, ...) produces values; the plain INSERT (both backends) and PostgreSQL's binary
COPY are both generated from it, so the two can never disagree. Reading: `EVENT_COLUMNS` and
`ROOM_COLUMNS` are the SELECT lists that `event_record` and `room_record` map back.

The backends differ only in how an array of NIDs is stored (PostgreSQL ``bigint[]``, SQLite a
BLOB of int64s) and how booleans come back (SQLite: 0/1): the row functions take the array
encoder or decoder as an argument and normalise booleans. The schema itself lives in
`migrations/`; processor/storage/README.md lists the tables and which module writes them.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from processor.core import state_blocks
from processor.core.state_blocks import StateBlock
from processor.storage.base import EventRecord, RoomRecord
from processor.storage.caches import SnapshotMeta

__all__ = [
    "EVENTS",
    "EVENT_COLUMNS",
    "EVENT_JSON",
    "MEMBERSHIPS",
    "OUTBOX",
    "REDACTIONS",
    "ROOM_COLUMNS",
    "STATE_BLOCKS",
    "STATE_SNAPSHOTS",
    "NameKind",
    "NidDecoder",
    "NidEncoder",
    "Table",
    "block_row",
    "event_json_row",
    "event_record",
    "event_row",
    "room_record",
    "snapshot_row",
]

#: How a backend binds a sequence of NIDs to an array column.
NidEncoder = Callable[[Iterable[int]], Any]
#: How a backend reads an array column back: (stored value, owner kind, owner ID, column) ->
#: the NIDs. The rest only names the culprit in the `CorruptState` for an unreadable value
#: (formatted only then: rows are mapped by the thousand).
NidDecoder = Callable[[Any, str, object, str], tuple[Any, ...]]


class NameKind(enum.Enum):
    """The two string <-> NID tables: (table, NID column, name column)."""

    EVENT_TYPE = ("event_types", "event_type_nid", "event_type")
    STATE_KEY = ("state_keys", "state_key_nid", "state_key")

    @property
    def table(self) -> str:
        return self.value[0]

    @property
    def nid_column(self) -> str:
        return self.value[1]

    @property
    def name_column(self) -> str:
        return self.value[2]


@dataclass(frozen=True, slots=True)
class Table:
    name: str
    columns: tuple[str, ...]
    #: PostgreSQL types of `columns`, for binary COPY.
    pg_types: tuple[str, ...]

    def insert(self, param: str, *, on_conflict: str = "") -> str:
        """INSERT of one row, with the driver's parameter marker; `on_conflict` is appended
        (``ON CONFLICT ...``)."""
        marks = ", ".join([param] * len(self.columns))
        statement = f"INSERT INTO {self.name} ({', '.join(self.columns)}) VALUES ({marks})"
        return f"{statement} {on_conflict}" if on_conflict else statement

    def copy(self) -> str:
        return f"COPY {self.name} ({', '.join(self.columns)}) FROM STDIN (FORMAT BINARY)"


# -- writing: a column list per table and the matching row builder -----------------------------

EVENTS = Table(
    "events",
    (
        "event_nid", "room_nid", "event_type_nid", "state_key_nid", "depth", "outlier",
        "rejected", "redacted", "state_snapshot_nid", "auth_event_nids", "prev_event_nids",
        "rejection_reason", "event_id",
    ),
    (
        "int8", "int8", "int8", "int8", "int8", "bool", "bool", "bool", "int8", "int8[]",
        "int8[]", "text", "text",
    ),
)  # fmt: skip


def event_row(e: EventRecord, nid_array: NidEncoder) -> tuple[Any, ...]:
    return (
        e.event_nid, e.room_nid, e.type_nid, e.state_key_nid, e.depth, e.outlier, e.rejected,
        e.redacted, e.state_snapshot_nid, nid_array(e.auth_event_nids),
        nid_array(e.prev_event_nids), e.rejection_reason, e.event_id,
    )  # fmt: skip


EVENT_JSON = Table("event_json", ("event_nid", "json"), ("int8", "bytea"))


def event_json_row(e: EventRecord) -> tuple[Any, ...]:
    return (e.event_nid, e.json)


STATE_BLOCKS = Table(
    "state_blocks",
    ("state_block_nid", "hash", "entry_count", "data"),
    ("int8", "bytea", "int4", "bytea"),
)


def block_row(nid: int, block: StateBlock) -> tuple[Any, ...]:
    return (nid, block.hash, len(block), state_blocks.encode_block(block.entries))


STATE_SNAPSHOTS = Table(
    "state_snapshots",
    ("state_snapshot_nid", "hash", "room_nid", "chunk_count", "chunk_level", "block_nids"),
    ("int8", "bytea", "int8", "int2", "int2", "int8[]"),
)


def snapshot_row(
    meta: SnapshotMeta, snapshot_hash: bytes, room_nid: int, nid_array: NidEncoder
) -> tuple[Any, ...]:
    return (
        meta.snapshot_nid, snapshot_hash, room_nid, meta.chunk_count, meta.chunk_level,
        nid_array(meta.block_nids),
    )  # fmt: skip


#: Rows are (room_nid, target_nid, membership, event_nid); upserted (the last one wins).
MEMBERSHIPS = Table(
    "memberships",
    ("room_nid", "target_nid", "membership", "event_nid"),
    ("int8", "int8", "text", "int8"),
)
MEMBERSHIPS_UPSERT = (
    "ON CONFLICT (room_nid, target_nid) DO UPDATE"
    " SET membership = excluded.membership, event_nid = excluded.event_nid"
)

#: Rows are (redaction_event_nid, redacts_event_id, validated); upserted (validated later).
REDACTIONS = Table(
    "redactions",
    ("redaction_event_nid", "redacts_event_id", "validated"),
    ("int8", "text", "bool"),
)
REDACTIONS_UPSERT = (
    "ON CONFLICT (redaction_event_nid) DO UPDATE"
    " SET redacts_event_id = excluded.redacts_event_id, validated = excluded.validated"
)

#: Rows are (partition, room_id, stream_position, payload); `seq` is assigned by the table.
OUTBOX = Table(
    "outbox",
    ("partition", "room_id", "stream_position", "payload"),
    ("int4", "text", "int8", "bytea"),
)


# -- reading: the SELECT lists and the record mappers ----------------------------------------------

#: Events joined with their JSON (`events e JOIN event_json j`), as `event_record` reads them.
EVENT_COLUMNS = (
    "e.event_nid, e.event_id, e.room_nid, e.event_type_nid, e.state_key_nid, e.depth, "
    "e.outlier, e.rejected, e.rejection_reason, e.state_snapshot_nid, e.auth_event_nids, "
    "e.prev_event_nids, j.json, e.redacted"
)


def event_record(row: tuple[Any, ...], nids: NidDecoder) -> EventRecord:
    return EventRecord(
        event_nid=row[0],
        event_id=row[1],
        room_nid=row[2],
        type_nid=row[3],
        state_key_nid=row[4],
        depth=row[5],
        outlier=bool(row[6]),
        rejected=bool(row[7]),
        rejection_reason=row[8],
        state_snapshot_nid=row[9],
        auth_event_nids=nids(row[10], "event", row[1], "auth_event_nids"),
        prev_event_nids=nids(row[11], "event", row[1], "prev_event_nids"),
        json=bytes(row[12]),
        redacted=bool(row[13]),
    )


ROOM_COLUMNS = (
    "room_nid, room_id, room_version, forward_extremities, current_snapshot_nid, "
    "last_stream_position, last_sent_event_id"
)


def room_record(row: tuple[Any, ...], nids: NidDecoder) -> RoomRecord:
    return RoomRecord(
        room_nid=row[0],
        room_id=row[1],
        room_version=row[2],
        forward_extremities=nids(row[3], "room", row[1], "forward_extremities"),
        current_snapshot_nid=row[4],
        last_stream_position=row[5],
        last_sent_event_id=row[6],
    )
