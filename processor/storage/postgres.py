"""The PostgreSQL backend (psycopg 3): one transaction per batch, bulk writes at commit.

Round trips per batch: NIDs are reserved from sequences in bulk (`nextval` over
`generate_series`, kept in a per-store pool shared by all threads); at commit, new state
blocks and snapshots go in one pipelined round trip, then a batch's events, event JSON and
outbox rows with binary COPY (or, for a small batch, every row in one pipelined round trip of
INSERTs), memberships and room updates with `executemany`. Reads fetch what the caches lack
in one statement each (`= ANY(array)`), binary results for events, state and the outbox.

psycopg errors are converted to `StorageError` at this boundary.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from typing import Any

import psycopg
from psycopg import sql
from psycopg_pool import ConnectionPool

from processor.errors import StorageError
from processor.nids import (
    PREASSIGNED_EVENT_TYPE_NIDS,
    PREASSIGNED_STATE_KEY_NIDS,
    StateBlockNID,
    StateSnapshotNID,
)
from processor.storage.base import EventRecord, RedactionRecord
from processor.storage.batch import BatchBase, TableRows
from processor.storage.batch_core import NidKind
from processor.storage.caches import SnapshotMeta, StoreCaches
from processor.storage.lock_watch import DEFAULT_STALE_LOCK_SECONDS, StaleLockBreaker
from processor.storage.schema import check_preassigned, load_migrations
from processor.storage.tables import EVENT_COLUMNS, NameKind, event_record

__all__ = ["PostgresBatch", "PostgresStore"]

#: pg_advisory_xact_lock key serialising concurrent migrations ("rsmigrat" as an int).
_MIGRATION_LOCK = 0x72736D6967726174

_SEQUENCES = {
    NidKind.EVENT: "event_nid_seq",
    NidKind.STATE_BLOCK: "state_block_nid_seq",
    NidKind.STATE_SNAPSHOT: "state_snapshot_nid_seq",
}
#: How many NIDs one reservation round trip fetches (unused ones are simply skipped).
_RESERVE = {NidKind.EVENT: 2000, NidKind.STATE_BLOCK: 200, NidKind.STATE_SNAPSHOT: 200}


class PostgresStore:
    """A `Store` on PostgreSQL with a connection pool; safe to share between threads."""

    def __init__(
        self,
        conninfo: str,
        *,
        min_connections: int = 1,
        # Each concurrent batch holds one connection and briefly borrows a second to
        # assign name NIDs (`name_connection`).
        max_connections: int = 24,
        caches: StoreCaches | None = None,
        stale_lock_seconds: float = DEFAULT_STALE_LOCK_SECONDS,
    ) -> None:
        self.caches = caches or StoreCaches()
        self._nid_lock = threading.Lock()
        self._nid_pools: dict[NidKind, deque[int]] = {kind: deque() for kind in NidKind}
        try:
            self._pool = ConnectionPool(
                conninfo,
                min_size=min_connections,
                max_size=max_connections,
                kwargs={"autocommit": True},
                open=True,
                name="roomserver-store",
            )
        except psycopg.Error as e:
            raise StorageError(f"cannot connect to PostgreSQL: {e}") from e
        self._lock_breaker = StaleLockBreaker(self._pool.connection, stale_lock_seconds)

    def name_connection(self) -> AbstractContextManager[psycopg.Connection[Any]]:
        """A connection for assigning name NIDs outside the batch's transaction."""
        return self._pool.connection()

    def migrate(self) -> None:
        try:
            with self._pool.connection() as conn, conn.transaction():
                conn.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))
                conn.execute(
                    "CREATE TABLE IF NOT EXISTS schema_migrations ("
                    " version integer PRIMARY KEY, name text NOT NULL,"
                    " applied_at timestamptz NOT NULL DEFAULT now())"
                )
                applied = {
                    v for (v,) in conn.execute("SELECT version FROM schema_migrations")
                }
                for migration in load_migrations("postgres"):
                    if migration.version in applied:
                        continue
                    conn.execute(migration.sql.encode())  # several statements, no parameters
                    conn.execute(
                        "INSERT INTO schema_migrations (version, name) VALUES (%s, %s)",
                        (migration.version, migration.name),
                    )
                self._insert_preassigned(conn)
        except psycopg.Error as e:
            raise StorageError(f"PostgreSQL migration failed: {e}") from e

    @staticmethod
    def _insert_preassigned(conn: psycopg.Connection[Any]) -> None:
        conn.execute(
            "INSERT INTO event_types (event_type_nid, event_type)"
            " SELECT * FROM unnest(%s::bigint[], %s::text[]) ON CONFLICT DO NOTHING",
            (list(PREASSIGNED_EVENT_TYPE_NIDS.values()), list(PREASSIGNED_EVENT_TYPE_NIDS)),
        )
        conn.execute(
            "INSERT INTO state_keys (state_key_nid, state_key)"
            " SELECT * FROM unnest(%s::bigint[], %s::text[]) ON CONFLICT DO NOTHING",
            (list(PREASSIGNED_STATE_KEY_NIDS.values()), list(PREASSIGNED_STATE_KEY_NIDS)),
        )
        types = dict(
            conn.execute(
                "SELECT event_type, event_type_nid FROM event_types WHERE event_type = ANY(%s)",
                (list(PREASSIGNED_EVENT_TYPE_NIDS),),
            ).fetchall()
        )
        keys = dict(
            conn.execute(
                "SELECT state_key, state_key_nid FROM state_keys WHERE state_key = ANY(%s)",
                (list(PREASSIGNED_STATE_KEY_NIDS),),
            ).fetchall()
        )
        check_preassigned(types, keys)

    @contextmanager
    def batch(self) -> Iterator[PostgresBatch]:
        try:
            with self._pool.connection() as conn:
                pid = conn.info.backend_pid
                self._lock_breaker.begin(pid)
                try:
                    with conn.transaction():
                        batch = PostgresBatch(self, conn)
                        yield batch
                        batch.flush()
                finally:
                    self._lock_breaker.end(pid)
                batch.publish()
        except psycopg.Error as e:
            raise StorageError(f"PostgreSQL: {e}") from e

    def close(self) -> None:
        self._lock_breaker.close()
        self._pool.close()

    def reserve_nids(self, conn: psycopg.Connection[Any], kind: NidKind, count: int) -> list[int]:
        with self._nid_lock:
            pool = self._nid_pools[kind]
            if len(pool) < count:
                fetch = max(count - len(pool), _RESERVE[kind])
                rows = conn.execute(
                    sql.SQL("SELECT nextval({}) FROM generate_series(1, %s)").format(
                        sql.Literal(_SEQUENCES[kind])
                    ),
                    (fetch,),
                ).fetchall()
                pool.extend(r[0] for r in rows)
            return [pool.popleft() for _ in range(count)]


#: From this many buffered rows on, a batch is written with COPY; below, with INSERTs in
#: one pipelined round trip.
COPY_FROM_ROWS = 64


class PostgresBatch(BatchBase):
    def __init__(self, store: PostgresStore, conn: psycopg.Connection[Any]) -> None:
        super().__init__(store.caches)
        self._store = store
        self._conn = conn

    PARAM = "%s"

    # -- primitives ------------------------------------------------------------------------

    def _rows(self, query: str, params: Sequence[Any] = (), *, binary: bool = False) -> list[Any]:
        if not binary:
            return self._conn.execute(query, params).fetchall()
        with self._conn.cursor(binary=True) as cur:
            cur.execute(query, params)
            return cur.fetchall()

    def _select_in(
        self,
        template: str,
        values: Sequence[Any],
        sql_type: str,
        params: Sequence[Any] = (),
        *,
        binary: bool = False,
    ) -> list[Any]:
        query = template.format(p="%s", values=f"= ANY(%s::{sql_type}[])")
        return self._rows(query, (*params, list(values)), binary=binary)

    def _execute(self, query: str, params: Sequence[Any] = ()) -> int:
        return self._conn.execute(query, params).rowcount

    def _execute_many(self, query: str, rows: Sequence[Sequence[Any]]) -> int:
        with self._conn.cursor() as cur:
            cur.executemany(query, rows)
            return cur.rowcount

    def _execute_together(
        self, statements: Sequence[tuple[str, Sequence[Sequence[Any]]]]
    ) -> list[int]:
        conn = self._conn
        cursors = [conn.cursor() for _ in statements]
        try:
            with conn.pipeline():
                for cur, (query, rows) in zip(cursors, statements, strict=True):
                    if rows:
                        cur.executemany(query, rows)
            # Row counts are known once the pipeline has synced.
            return [
                cur.rowcount if rows else 0
                for cur, (_, rows) in zip(cursors, statements, strict=True)
            ]
        finally:
            for cur in cursors:
                cur.close()

    def _nid_array(self, nids: Iterable[int]) -> list[int]:
        return list(nids)

    def _nid_tuple(
        self, value: Any, owner_kind: str, owner: object, column: str
    ) -> tuple[Any, ...]:
        return tuple(value)  # psycopg reads bigint[] as a list

    def _reserve_nids(self, kind: NidKind, count: int) -> list[int]:
        return self._store.reserve_nids(self._conn, kind, count)

    # -- names -----------------------------------------------------------------------------

    def _assign_names(self, kind: NameKind, names: list[str]) -> dict[str, int]:
        table, nid_col, name_col = (sql.Identifier(x) for x in kind.value)
        # Rows inserted by the CTE are invisible to the second SELECT (same snapshot), so the
        # UNION returns each name once; ORDER BY keeps concurrent inserters deadlock-free.
        query = sql.SQL(
            "WITH input AS (SELECT DISTINCT unnest(%s::text[]) AS name),"
            " ins AS (INSERT INTO {t} ({n}) SELECT name FROM input"
            "  WHERE NOT EXISTS (SELECT 1 FROM {t} x WHERE x.{n} = input.name) ORDER BY name"
            " ON CONFLICT DO NOTHING RETURNING {i}, {n})"
            " SELECT {n}, {i} FROM ins"
            " UNION ALL SELECT t.{n}, t.{i} FROM {t} t JOIN input ON t.{n} = input.name"
        ).format(t=table, n=name_col, i=nid_col)
        # Names are immutable and shared by every room, so they are assigned in a short
        # transaction of their own: a batch never holds locks on name rows until it commits.
        # (Two partitions' batches that inserted shared user IDs in opposite orders within
        # their long transactions deadlocked.) A name assigned for a batch that then rolls
        # back is harmless: it is reused when the batch is retried.
        with self._store.name_connection() as conn:
            with conn.transaction():
                found = dict(conn.execute(query, (names,)).fetchall())
            if len(found) < len(names):
                # Another transaction committed some of them while we waited on its lock.
                missing = [n for n in names if n not in found]
                select = sql.SQL("SELECT {n}, {i} FROM {t} WHERE {n} = ANY(%s::text[])").format(
                    t=table, n=name_col, i=nid_col
                )
                found.update(dict(conn.execute(select, (missing,)).fetchall()))
        return found

    # -- reads in one round trip -----------------------------------------------------------

    def _select_prefetch_rows(
        self, event_ids: list[str], redacts_event_ids: list[str]
    ) -> tuple[list[EventRecord], list[RedactionRecord]]:
        # Both queries sent before either result is read: one round trip (pipeline mode).
        conn = self._conn
        with conn.pipeline(), conn.cursor(binary=True) as events, conn.cursor() as redactions:
            if event_ids:
                events.execute(
                    f"SELECT {EVENT_COLUMNS} FROM events e"
                    " JOIN event_json j ON j.event_nid = e.event_nid"
                    " WHERE e.event_id = ANY(%s::text[])",
                    (event_ids,),
                )
            redactions.execute(
                "SELECT redaction_event_nid, redacts_event_id, validated FROM redactions"
                " WHERE redacts_event_id = ANY(%s::text[])",
                (redacts_event_ids,),
            )
            event_rows = (
                [event_record(row, self._nid_tuple) for row in events.fetchall()]
                if event_ids
                else []
            )
            return event_rows, [RedactionRecord(*row) for row in redactions.fetchall()]

    def _fetch_state(
        self, snapshot_nids: Sequence[int], block_nids: Sequence[int]
    ) -> tuple[list[SnapshotMeta], list[tuple[int, bytes, bytes]]]:
        with self._conn.cursor(binary=True) as cur:
            cur.execute(
                "WITH s AS (SELECT state_snapshot_nid, block_nids, chunk_count, chunk_level"
                "  FROM state_snapshots WHERE state_snapshot_nid = ANY(%(s)s::bigint[]))"
                " SELECT 0, state_snapshot_nid, block_nids, chunk_count, chunk_level,"
                "  NULL::bytea, NULL::bytea FROM s"
                " UNION ALL"
                " SELECT 1, b.state_block_nid, NULL, NULL, NULL, b.hash, b.data"
                "  FROM state_blocks b WHERE b.state_block_nid IN"
                "  (SELECT unnest(block_nids) FROM s UNION SELECT unnest(%(b)s::bigint[]))",
                {"s": list(snapshot_nids), "b": list(block_nids)},
            )
            rows = cur.fetchall()
        metas: list[SnapshotMeta] = []
        blocks: list[tuple[int, bytes, bytes]] = []
        for kind, nid, nids, chunk_count, chunk_level, block_hash, data in rows:
            if kind == 0:
                metas.append(
                    SnapshotMeta(
                        StateSnapshotNID(nid),
                        tuple(StateBlockNID(b) for b in nids),
                        chunk_count,
                        chunk_level,
                    )
                )
            else:
                blocks.append((nid, block_hash, data))
        return metas, blocks

    def _lookup_state_hashes(
        self, block_hashes: list[bytes], snapshot_hashes: list[bytes]
    ) -> tuple[dict[bytes, int], dict[bytes, int]]:
        rows = self._rows(
            "SELECT 0, hash, state_block_nid FROM state_blocks WHERE hash = ANY(%s::bytea[])"
            " UNION ALL SELECT 1, hash, state_snapshot_nid FROM state_snapshots"
            " WHERE hash = ANY(%s::bytea[])",
            (block_hashes, snapshot_hashes),
            binary=True,
        )
        found: tuple[dict[bytes, int], dict[bytes, int]] = ({}, {})
        for kind, digest, nid in rows:
            found[kind][bytes(digest)] = nid
        return found

    # -- commit ----------------------------------------------------------------------------

    def _write_rows(
        self,
        inserts: list[TableRows],
        statements: list[tuple[str, Sequence[Sequence[Any]]]],
    ) -> None:
        pending = self.pending
        if len(pending.events) + len(pending.outbox) < COPY_FROM_ROWS:
            # A small batch (a quiet stream: a handful of events per poll): every statement
            # in one round trip (pipeline mode) instead of a COPY and a round trip each.
            with self._conn.pipeline():
                super()._write_rows(inserts, statements)
            return
        copied = [w for w in inserts if not w.on_conflict]  # COPY cannot upsert
        with self._conn.cursor() as cur:
            for write in copied:
                with cur.copy(write.table.copy()) as copy:
                    copy.set_types(list(write.table.pg_types))
                    for row in write.rows:
                        copy.write_row(row)
        super()._write_rows([w for w in inserts if w.on_conflict], statements)
