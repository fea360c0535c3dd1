"""The SQLite backend (stdlib `sqlite3`): the embedded mode's store.

One connection per store, in WAL mode; a batch is `BEGIN IMMEDIATE` ... `COMMIT`, so batches
(and concurrent `migrate` calls, also from other processes) are serialised by SQLite's write
lock, and threads sharing the store are serialised by a lock around each batch. NIDs are
taken from the `nid_counters` table inside the batch's transaction. Arrays of NIDs are stored
as BLOBs of little-endian int64s. Bulk writes at commit use `executemany`.
"""

from __future__ import annotations

import sqlite3
import sys
import threading
from array import array
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from processor.core.nids import (
    PREASSIGNED_EVENT_TYPE_NIDS,
    PREASSIGNED_STATE_KEY_NIDS,
    EventNID,
    RoomNID,
    StateBlockNID,
    StateSnapshotNID,
)
from processor.errors import CorruptState, StorageError
from processor.storage.base import (
    EventRecord,
    OutboxRecord,
    RedactionRecord,
    RoomRecord,
)
from processor.storage.caches import SnapshotMeta, StoreCaches
from processor.storage.common import BatchBase, NameKind, NidKind, PendingWrites
from processor.storage.schema import check_preassigned, load_migrations, split_statements

__all__ = ["SqliteBatch", "SqliteStore", "pack_nids", "unpack_nids"]

_BIG_ENDIAN = sys.byteorder == "big"
#: Stay well below SQLITE_MAX_VARIABLE_NUMBER (32766 since 3.32) per statement.
_MAX_PARAMS = 5000
#: NIDs taken from a counter at a time.
_RESERVE = 256

_NAME_COLUMNS = {
    NameKind.EVENT_TYPE: ("event_types", "event_type_nid", "event_type"),
    NameKind.STATE_KEY: ("state_keys", "state_key_nid", "state_key"),
}
_EVENT_COLUMNS = (
    "e.event_nid, e.event_id, e.room_nid, e.event_type_nid, e.state_key_nid, e.depth, "
    "e.outlier, e.rejected, e.rejection_reason, e.state_snapshot_nid, e.auth_event_nids, "
    "e.prev_event_nids, j.json, e.redacted"
)
_ROOM_COLUMNS = (
    "room_nid, room_id, room_version, forward_extremities, current_snapshot_nid, "
    "last_stream_position, last_sent_event_id"
)


def pack_nids(nids: Iterable[int]) -> bytes:
    arr = array("q", nids)
    if _BIG_ENDIAN:
        arr.byteswap()
    return arr.tobytes()


def unpack_nids(data: bytes, what: str) -> tuple[Any, ...]:
    """The int64s packed by `pack_nids` (typed Any: callers know which NID type they hold)."""
    if len(data) % 8:
        raise CorruptState(f"{what}: NID array of {len(data)} bytes is not whole int64s")
    arr = array("q")
    arr.frombytes(data)
    if _BIG_ENDIAN:
        arr.byteswap()
    return tuple(arr)


def _chunks(items: Sequence[Any]) -> Iterator[Sequence[Any]]:
    for i in range(0, len(items), _MAX_PARAMS):
        yield items[i : i + _MAX_PARAMS]


def _marks(n: int) -> str:
    return ",".join("?" * n)


def _event(row: tuple[Any, ...]) -> EventRecord:
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
        auth_event_nids=unpack_nids(row[10], f"event {row[1]} auth_event_nids"),
        prev_event_nids=unpack_nids(row[11], f"event {row[1]} prev_event_nids"),
        json=bytes(row[12]),
        redacted=bool(row[13]),
    )


def _room(row: tuple[Any, ...]) -> RoomRecord:
    return RoomRecord(
        room_nid=row[0],
        room_id=row[1],
        room_version=row[2],
        forward_extremities=unpack_nids(row[3], f"room {row[1]} forward_extremities"),
        current_snapshot_nid=row[4],
        last_stream_position=row[5],
        last_sent_event_id=row[6],
    )


#: The page cache of each connection, in KiB.
SQLITE_CACHE_KIB = 256 * 1024
#: WAL pages (4 KiB) between automatic checkpoints.
SQLITE_CHECKPOINT_PAGES = 20_000


class SqliteStore:
    """A `Store` in one SQLite file (or ":memory:"); safe to share between threads."""

    def __init__(
        self, path: str | Path, *, caches: StoreCaches | None = None, read_only: bool = False
    ) -> None:
        """`read_only`: for commands that only read (`state`): nothing is written, not even
        the journal mode, which would turn an empty or foreign file into a database (the
        caller checks that the file exists: connecting creates a missing one)."""
        self.caches = caches or StoreCaches()
        self.path = str(path)
        self._lock = threading.Lock()
        self._begin = "BEGIN" if read_only else "BEGIN IMMEDIATE"
        try:
            self._conn = sqlite3.connect(
                self.path, isolation_level=None, check_same_thread=False, timeout=60.0
            )
            if read_only:
                # Refuses every write through this connection. (Not `mode=ro`: a read-only
                # connection to a WAL database leaves -wal and -shm files behind, which a
                # read-write one removes when it closes; opening never writes by itself.)
                self._conn.execute("PRAGMA query_only=1")
            elif self.path != ":memory:":
                self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=NORMAL")
            # The default page cache is 2 MB: the event indexes outgrow it within minutes of
            # ingest, and every insert then reads pages back from the file.
            self._conn.execute(f"PRAGMA cache_size=-{SQLITE_CACHE_KIB}")
            # A checkpoint (WAL pages copied back, with an fsync) every ~80 MB of WAL rather
            # than every 4 MB: a batch dirties ~1,000 index pages, so the default checkpointed
            # every few batches (measured: commits took half the time with this).
            self._conn.execute(f"PRAGMA wal_autocheckpoint={SQLITE_CHECKPOINT_PAGES}")
            self._conn.execute("PRAGMA busy_timeout=60000")
        except sqlite3.Error as e:
            raise StorageError(f"cannot open SQLite database {self.path}: {e}") from e

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        conn = self._conn
        with self._lock:
            try:
                conn.execute(self._begin)
            except sqlite3.Error as e:
                raise StorageError(f"SQLite {self.path}: cannot begin: {e}") from e
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            else:
                try:
                    conn.execute("COMMIT")
                except sqlite3.Error as e:
                    conn.execute("ROLLBACK")
                    raise StorageError(f"SQLite {self.path}: commit failed: {e}") from e

    def migrate(self) -> None:
        try:
            with self._transaction() as conn:
                conn.execute(
                    "CREATE TABLE IF NOT EXISTS schema_migrations ("
                    " version INTEGER PRIMARY KEY, name TEXT NOT NULL,"
                    " applied_at TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP)"
                )
                applied = {v for (v,) in conn.execute("SELECT version FROM schema_migrations")}
                for migration in load_migrations("sqlite"):
                    if migration.version in applied:
                        continue
                    for statement in split_statements(migration.sql):
                        conn.execute(statement)
                    conn.execute(
                        "INSERT INTO schema_migrations (version, name) VALUES (?, ?)",
                        (migration.version, migration.name),
                    )
                conn.executemany(
                    "INSERT OR IGNORE INTO event_types (event_type_nid, event_type) VALUES (?, ?)",
                    [(nid, name) for name, nid in PREASSIGNED_EVENT_TYPE_NIDS.items()],
                )
                conn.executemany(
                    "INSERT OR IGNORE INTO state_keys (state_key_nid, state_key) VALUES (?, ?)",
                    [(nid, name) for name, nid in PREASSIGNED_STATE_KEY_NIDS.items()],
                )
                types = dict(
                    conn.execute(
                        "SELECT event_type, event_type_nid FROM event_types"
                        " WHERE event_type_nid < 1024"
                    )
                )
                keys = dict(
                    conn.execute(
                        "SELECT state_key, state_key_nid FROM state_keys WHERE state_key_nid < 1024"
                    )
                )
                check_preassigned(types, keys)
        except sqlite3.Error as e:
            raise StorageError(f"SQLite migration of {self.path} failed: {e}") from e

    @contextmanager
    def batch(self) -> Iterator[SqliteBatch]:
        try:
            with self._transaction() as conn:
                batch = SqliteBatch(self, conn)
                yield batch
                batch.flush()
            batch.publish()
        except sqlite3.Error as e:
            raise StorageError(f"SQLite {self.path}: {e}") from e

    def is_migrated(self) -> bool:
        """Whether the file holds the roomserver's tables (`migrate` has run on it)."""
        try:
            with self._lock:
                row = self._conn.execute(
                    "SELECT 1 FROM sqlite_master"
                    " WHERE type = 'table' AND name = 'schema_migrations'"
                ).fetchone()
        except sqlite3.Error as e:
            raise StorageError(f"SQLite {self.path}: {e}") from e
        return row is not None

    def close(self) -> None:
        with self._lock:
            self._conn.close()


class SqliteBatch(BatchBase):
    def __init__(self, store: SqliteStore, conn: sqlite3.Connection) -> None:
        super().__init__(store.caches)
        self._conn = conn
        self._nid_pools: dict[NidKind, deque[int]] = {}

    PARAM = "?"

    def _rows(self, query: str, params: Sequence[Any] = ()) -> list[Any]:
        return self._conn.execute(query, params).fetchall()

    def _execute_many(self, query: str, rows: Sequence[Sequence[Any]]) -> int:
        return self._conn.executemany(query, rows).rowcount

    def _execute(self, query: str, params: Sequence[Any] = ()) -> int:
        return self._conn.execute(query, params).rowcount

    # -- NIDs ------------------------------------------------------------------------------

    def _counter(self, kind: str, count: int) -> list[int]:
        (end,) = self._conn.execute(
            "UPDATE nid_counters SET next_nid = next_nid + ? WHERE kind = ? RETURNING next_nid",
            (count, kind),
        ).fetchone()
        return list(range(end - count, end))

    def _assign_names(self, kind: NameKind, names: list[str]) -> dict[str, int]:
        table, nid_col, name_col = _NAME_COLUMNS[kind]
        found = self._select_nids_by_name(kind, names)
        missing = [n for n in names if n not in found]
        if missing:
            new = dict(zip(missing, self._counter(table, len(missing)), strict=True))
            self._conn.executemany(
                f"INSERT INTO {table} ({nid_col}, {name_col}) VALUES (?, ?)",
                [(nid, name) for name, nid in new.items()],
            )
            found.update(new)
        return found

    def _select_nids_by_name(self, kind: NameKind, names: list[str]) -> dict[str, int]:
        table, nid_col, name_col = _NAME_COLUMNS[kind]
        found: dict[str, int] = {}
        for part in _chunks(names):
            found.update(
                self._rows(
                    f"SELECT {name_col}, {nid_col} FROM {table}"
                    f" WHERE {name_col} IN ({_marks(len(part))})",
                    part,
                )
            )
        return found

    def _select_names_by_nid(self, kind: NameKind, nids: list[int]) -> dict[int, str]:
        table, nid_col, name_col = _NAME_COLUMNS[kind]
        found: dict[int, str] = {}
        for part in _chunks(nids):
            found.update(
                self._rows(
                    f"SELECT {nid_col}, {name_col} FROM {table}"
                    f" WHERE {nid_col} IN ({_marks(len(part))})",
                    part,
                )
            )
        return found

    def _reserve_nids(self, kind: NidKind, count: int) -> list[int]:
        # Reserved in runs inside this transaction; what the batch leaves unused is a gap.
        pool = self._nid_pools.setdefault(kind, deque())
        if len(pool) < count:
            pool.extend(self._counter(kind.value, max(count - len(pool), _RESERVE)))
        return [pool.popleft() for _ in range(count)]

    # -- rooms -----------------------------------------------------------------------------

    def _select_room_row(
        self, *, room_id: str | None = None, room_nid: int | None = None
    ) -> RoomRecord | None:
        if room_id is not None:
            rows = self._rows(f"SELECT {_ROOM_COLUMNS} FROM rooms WHERE room_id = ?", (room_id,))
        else:
            rows = self._rows(f"SELECT {_ROOM_COLUMNS} FROM rooms WHERE room_nid = ?", (room_nid,))
        return _room(rows[0]) if rows else None

    def _insert_room_row(self, room_id: str, version_id: str) -> RoomRecord:
        rows = self._rows(
            f"INSERT INTO rooms (room_id, room_version) VALUES (?, ?) RETURNING {_ROOM_COLUMNS}",
            (room_id, version_id),
        )
        return _room(rows[0])

    # -- events ----------------------------------------------------------------------------

    def _select_event_rows(
        self, *, event_ids: list[str] | None = None, nids: list[int] | None = None
    ) -> list[EventRecord]:
        column, keys = ("e.event_id", event_ids) if event_ids is not None else (
            "e.event_nid",
            nids or [],
        )
        records: list[EventRecord] = []
        for part in _chunks(keys or []):
            rows = self._rows(
                f"SELECT {_EVENT_COLUMNS} FROM events e"
                f" JOIN event_json j ON j.event_nid = e.event_nid"
                f" WHERE {column} IN ({_marks(len(part))})",
                part,
            )
            records.extend(_event(row) for row in rows)
        return records

    def _update_event_row(
        self,
        event_nid: int,
        *,
        outlier: bool | None,
        state_snapshot_nid: int | None,
        rejected: bool | None,
        rejection_reason: str | None,
        prev_event_nids: Sequence[int] | None,
    ) -> int:
        cur = self._conn.execute(
            "UPDATE events SET outlier = coalesce(?, outlier),"
            " state_snapshot_nid = coalesce(?, state_snapshot_nid),"
            " rejected = coalesce(?, rejected),"
            " rejection_reason = coalesce(?, rejection_reason),"
            " prev_event_nids = coalesce(?, prev_event_nids) WHERE event_nid = ?",
            (
                outlier, state_snapshot_nid, rejected, rejection_reason,
                None if prev_event_nids is None else pack_nids(prev_event_nids), event_nid,
            ),
        )
        return cur.rowcount

    # -- state -----------------------------------------------------------------------------

    def _fetch_state(
        self, snapshot_nids: Sequence[int], block_nids: Sequence[int]
    ) -> tuple[list[SnapshotMeta], list[tuple[int, bytes, bytes]]]:
        metas: list[SnapshotMeta] = []
        wanted: dict[int, None] = dict.fromkeys(block_nids)
        for part in _chunks(list(snapshot_nids)):
            for nid, packed, chunk_count, chunk_level in self._rows(
                "SELECT state_snapshot_nid, block_nids, chunk_count, chunk_level"
                f" FROM state_snapshots WHERE state_snapshot_nid IN ({_marks(len(part))})",
                part,
            ):
                nids = unpack_nids(packed, f"state snapshot {nid} block_nids")
                metas.append(
                    SnapshotMeta(
                        StateSnapshotNID(nid),
                        tuple(StateBlockNID(b) for b in nids),
                        chunk_count,
                        chunk_level,
                    )
                )
                wanted.update(dict.fromkeys(nids))
        blocks: list[tuple[int, bytes, bytes]] = []
        for part in _chunks(list(wanted)):
            blocks.extend(
                self._rows(
                    "SELECT state_block_nid, hash, data FROM state_blocks"
                    f" WHERE state_block_nid IN ({_marks(len(part))})",
                    part,
                )
            )
        return metas, blocks

    def _lookup_state_hashes(
        self, block_hashes: list[bytes], snapshot_hashes: list[bytes]
    ) -> tuple[dict[bytes, int], dict[bytes, int]]:
        found: tuple[dict[bytes, int], dict[bytes, int]] = ({}, {})
        for index, (table, column, hashes) in enumerate(
            (
                ("state_blocks", "state_block_nid", block_hashes),
                ("state_snapshots", "state_snapshot_nid", snapshot_hashes),
            )
        ):
            for part in _chunks(hashes):
                found[index].update(
                    (bytes(h), n)
                    for h, n in self._rows(
                        f"SELECT hash, {column} FROM {table} WHERE hash IN ({_marks(len(part))})",
                        part,
                    )
                )
        return found

    # -- memberships, invites, redactions --------------------------------------------------

    def insert_invite(self, room_nid: RoomNID, target_user_id: str, event_nid: EventNID) -> None:
        self._conn.execute(
            "INSERT OR IGNORE INTO invites (event_nid, room_nid, target_user_id) VALUES (?, ?, ?)",
            (event_nid, room_nid, target_user_id),
        )

    def retire_invites(self, room_nid: RoomNID, target_user_id: str) -> list[EventNID]:
        rows = self._rows(
            "UPDATE invites SET retired = 1"
            " WHERE room_nid = ? AND target_user_id = ? AND NOT retired RETURNING event_nid",
            (room_nid, target_user_id),
        )
        return sorted(EventNID(r[0]) for r in rows)

    def _select_redaction_rows(self, redacts_event_ids: list[str]) -> list[RedactionRecord]:
        records: list[RedactionRecord] = []
        for part in _chunks(redacts_event_ids):
            rows = self._rows(
                "SELECT redaction_event_nid, redacts_event_id, validated FROM redactions"
                f" WHERE redacts_event_id IN ({_marks(len(part))}) ORDER BY redaction_event_nid",
                part,
            )
            records.extend(RedactionRecord(r[0], r[1], bool(r[2])) for r in rows)
        return records

    # -- bookkeeping -----------------------------------------------------------------------

    def select_input_offset(self, topic: str, partition: int) -> int | None:
        rows = self._rows(
            "SELECT next_offset FROM input_offsets WHERE topic = ? AND partition = ?",
            (topic, partition),
        )
        return int(rows[0][0]) if rows else None

    def select_outbox(self, partition: int, limit: int) -> list[OutboxRecord]:
        rows = self._rows(
            "SELECT seq, room_id, stream_position, payload FROM outbox"
            " WHERE partition = ? ORDER BY seq LIMIT ?",
            (partition, limit),
        )
        return [OutboxRecord(s, r, p, bytes(b)) for s, r, p, b in rows]

    def delete_outbox(self, partition: int, up_to_seq: int) -> None:
        self._conn.execute(
            "DELETE FROM outbox WHERE partition = ? AND seq <= ?", (partition, up_to_seq)
        )

    # -- commit ----------------------------------------------------------------------------

    def _write_pending(self, pending: PendingWrites) -> None:
        self._insert_pending_rows(pending)

    def _nid_array(self, nids: Iterable[int]) -> bytes:
        return pack_nids(nids)
