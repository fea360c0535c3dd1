"""The SQLite backend (stdlib `sqlite3`): the embedded mode's store.

One connection per store, in WAL mode; a batch is `BEGIN IMMEDIATE` ... `COMMIT`, so batches
(and concurrent `migrate` calls, also from other processes) are serialised by SQLite's write
lock, and threads sharing the store are serialised by a lock around each batch. NIDs are
taken from the `nid_counters` table inside the batch's transaction. Arrays of NIDs are stored
as BLOBs of little-endian int64s. Bulk writes at commit use `executemany`; a list of values
in a query is an ``IN (?, ...)`` of at most `_MAX_PARAMS` values at a time.
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

from processor.errors import CorruptState, StorageError
from processor.nids import PREASSIGNED_EVENT_TYPE_NIDS, PREASSIGNED_STATE_KEY_NIDS
from processor.storage.batch import BatchBase
from processor.storage.batch_core import NidKind
from processor.storage.caches import StoreCaches
from processor.storage.schema import check_preassigned, load_migrations, split_statements
from processor.storage.tables import NameKind

__all__ = ["SqliteBatch", "SqliteStore", "pack_nids", "unpack_nids"]

_BIG_ENDIAN = sys.byteorder == "big"
#: Stay well below SQLITE_MAX_VARIABLE_NUMBER (32766 since 3.32) per statement.
_MAX_PARAMS = 5000
#: NIDs taken from a counter at a time.
_RESERVE = 256


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

    # -- primitives ------------------------------------------------------------------------

    def _rows(self, query: str, params: Sequence[Any] = (), *, binary: bool = False) -> list[Any]:
        return self._conn.execute(query, params).fetchall()

    def _select_in(
        self,
        template: str,
        values: Sequence[Any],
        sql_type: str,
        params: Sequence[Any] = (),
        *,
        binary: bool = False,
    ) -> list[Any]:
        rows: list[Any] = []
        for i in range(0, len(values), _MAX_PARAMS):
            part = values[i : i + _MAX_PARAMS]
            query = template.format(p="?", values=f"IN ({','.join('?' * len(part))})")
            rows.extend(self._conn.execute(query, (*params, *part)).fetchall())
        return rows

    def _execute(self, query: str, params: Sequence[Any] = ()) -> int:
        return self._conn.execute(query, params).rowcount

    def _execute_many(self, query: str, rows: Sequence[Sequence[Any]]) -> int:
        return self._conn.executemany(query, rows).rowcount

    def _execute_together(
        self, statements: Sequence[tuple[str, Sequence[Sequence[Any]]]]
    ) -> list[int]:
        # In process: no round trips to save.
        return [self._execute_many(query, rows) if rows else 0 for query, rows in statements]

    def _nid_array(self, nids: Iterable[int]) -> bytes:
        return pack_nids(nids)

    def _nid_tuple(
        self, value: Any, owner_kind: str, owner: object, column: str
    ) -> tuple[Any, ...]:
        return unpack_nids(value, f"{owner_kind} {owner} {column}" if len(value) % 8 else "")

    def _counter(self, kind: str, count: int) -> list[int]:
        (end,) = self._conn.execute(
            "UPDATE nid_counters SET next_nid = next_nid + ? WHERE kind = ? RETURNING next_nid",
            (count, kind),
        ).fetchone()
        return list(range(end - count, end))

    def _reserve_nids(self, kind: NidKind, count: int) -> list[int]:
        # Reserved in runs inside this transaction; what the batch leaves unused is a gap.
        pool = self._nid_pools.setdefault(kind, deque())
        if len(pool) < count:
            pool.extend(self._counter(kind.value, max(count - len(pool), _RESERVE)))
        return [pool.popleft() for _ in range(count)]

    # -- names -----------------------------------------------------------------------------

    def _assign_names(self, kind: NameKind, names: list[str]) -> dict[str, int]:
        found = self._select_nids_by_name(kind, names)
        missing = [n for n in names if n not in found]
        if missing:
            # The batch holds SQLite's write lock: nobody else can assign meanwhile.
            new = dict(zip(missing, self._counter(kind.table, len(missing)), strict=True))
            self._conn.executemany(
                f"INSERT INTO {kind.table} ({kind.nid_column}, {kind.name_column})"
                " VALUES (?, ?)",
                [(nid, name) for name, nid in new.items()],
            )
            found.update(new)
        return found
