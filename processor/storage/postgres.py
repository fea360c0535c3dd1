"""The PostgreSQL backend (psycopg 3): one transaction per batch, bulk writes at commit.

Round trips per batch: NIDs are reserved from sequences in bulk (`nextval` over
`generate_series`, kept in a per-store pool shared by all threads); a batch's events, event
JSON, state blocks, snapshots and outbox rows are written with binary COPY, memberships with
one `unnest` upsert, room updates in one pipelined `executemany`. Reads fetch what the caches
lack in one statement each (`= ANY(array)`), binary results for state blocks.

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

from processor.core.nids import (
    PREASSIGNED_EVENT_TYPE_NIDS,
    PREASSIGNED_STATE_KEY_NIDS,
    EventNID,
    RoomNID,
    StateBlockNID,
    StateSnapshotNID,
)
from processor.core.state_blocks import encode_block
from processor.errors import StorageError
from processor.storage.base import (
    EventRecord,
    OutboxRecord,
    RedactionRecord,
    RoomRecord,
)
from processor.storage.caches import SnapshotMeta, StoreCaches
from processor.storage.common import BatchBase, NameKind, NidKind, PendingWrites
from processor.storage.lock_watch import DEFAULT_STALE_LOCK_SECONDS, StaleLockBreaker
from processor.storage.schema import check_preassigned, load_migrations

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


_SELECT_REDACTIONS = (
    "SELECT redaction_event_nid, redacts_event_id, validated FROM redactions"
    " WHERE redacts_event_id = ANY(%s::text[]) ORDER BY redaction_event_nid"
)


def _event(row: tuple[Any, ...]) -> EventRecord:
    return EventRecord(
        event_nid=row[0],
        event_id=row[1],
        room_nid=row[2],
        type_nid=row[3],
        state_key_nid=row[4],
        depth=row[5],
        outlier=row[6],
        rejected=row[7],
        rejection_reason=row[8],
        state_snapshot_nid=row[9],
        auth_event_nids=tuple(row[10]),
        prev_event_nids=tuple(row[11]),
        json=bytes(row[12]),
        redacted=row[13],
    )


def _room(row: tuple[Any, ...]) -> RoomRecord:
    return RoomRecord(
        room_nid=row[0],
        room_id=row[1],
        room_version=row[2],
        forward_extremities=tuple(row[3]),
        current_snapshot_nid=row[4],
        last_stream_position=row[5],
        last_sent_event_id=row[6],
    )


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

    def _rows(self, query: str | sql.Composed, params: Sequence[Any] = ()) -> list[Any]:
        return self._conn.execute(query, params).fetchall()

    def _execute_many(self, query: str, rows: Sequence[Sequence[Any]]) -> int:
        with self._conn.cursor() as cur:
            cur.executemany(query, rows)
            return cur.rowcount

    def _execute(self, query: str, params: Sequence[Any] = ()) -> int:
        return self._conn.execute(query, params).rowcount

    # -- NIDs ------------------------------------------------------------------------------

    def _assign_names(self, kind: NameKind, names: list[str]) -> dict[str, int]:
        table, nid_col, name_col = (sql.Identifier(x) for x in _NAME_COLUMNS[kind])
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

    def _select_nids_by_name(self, kind: NameKind, names: list[str]) -> dict[str, int]:
        table, nid_col, name_col = (sql.Identifier(x) for x in _NAME_COLUMNS[kind])
        query = sql.SQL("SELECT {n}, {i} FROM {t} WHERE {n} = ANY(%s::text[])").format(
            t=table, n=name_col, i=nid_col
        )
        return dict(self._rows(query, (names,)))

    def _select_names_by_nid(self, kind: NameKind, nids: list[int]) -> dict[int, str]:
        table, nid_col, name_col = (sql.Identifier(x) for x in _NAME_COLUMNS[kind])
        query = sql.SQL("SELECT {i}, {n} FROM {t} WHERE {i} = ANY(%s::bigint[])").format(
            t=table, n=name_col, i=nid_col
        )
        return dict(self._rows(query, (nids,)))

    def _reserve_nids(self, kind: NidKind, count: int) -> list[int]:
        return self._store.reserve_nids(self._conn, kind, count)

    # -- rooms -----------------------------------------------------------------------------

    def _select_room_row(
        self, *, room_id: str | None = None, room_nid: int | None = None
    ) -> RoomRecord | None:
        if room_id is not None:
            rows = self._rows(f"SELECT {_ROOM_COLUMNS} FROM rooms WHERE room_id = %s", (room_id,))
        else:
            rows = self._rows(
                f"SELECT {_ROOM_COLUMNS} FROM rooms WHERE room_nid = %s", (room_nid,)
            )
        return _room(rows[0]) if rows else None

    def _insert_room_row(self, room_id: str, version_id: str) -> RoomRecord:
        rows = self._rows(
            f"INSERT INTO rooms (room_id, room_version) VALUES (%s, %s) RETURNING {_ROOM_COLUMNS}",
            (room_id, version_id),
        )
        return _room(rows[0])

    # -- events ----------------------------------------------------------------------------

    def _select_prefetch_rows(
        self, event_ids: list[str], redacts_event_ids: list[str]
    ) -> tuple[list[EventRecord], list[RedactionRecord]]:
        # Both queries sent before either result is read: one round trip (pipeline mode).
        conn = self._conn
        with conn.pipeline(), conn.cursor(binary=True) as events, conn.cursor() as redactions:
            if event_ids:
                events.execute(
                    f"SELECT {_EVENT_COLUMNS} FROM events e"
                    " JOIN event_json j ON j.event_nid = e.event_nid"
                    " WHERE e.event_id = ANY(%s::text[])",
                    (event_ids,),
                )
            redactions.execute(_SELECT_REDACTIONS, (redacts_event_ids,))
            event_rows = [_event(row) for row in events.fetchall()] if event_ids else []
            return event_rows, [RedactionRecord(*row) for row in redactions.fetchall()]

    def _select_event_rows(
        self, *, event_ids: list[str] | None = None, nids: list[int] | None = None
    ) -> list[EventRecord]:
        where, arg = ("e.event_id = ANY(%s::text[])", event_ids) if event_ids is not None else (
            "e.event_nid = ANY(%s::bigint[])",
            nids,
        )
        with self._conn.cursor(binary=True) as cur:
            cur.execute(
                f"SELECT {_EVENT_COLUMNS} FROM events e"
                f" JOIN event_json j ON j.event_nid = e.event_nid WHERE {where}",
                (arg,),
            )
            return [_event(row) for row in cur.fetchall()]

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
            "UPDATE events SET outlier = coalesce(%s, outlier),"
            " state_snapshot_nid = coalesce(%s, state_snapshot_nid),"
            " rejected = coalesce(%s, rejected),"
            " rejection_reason = coalesce(%s, rejection_reason),"
            " prev_event_nids = coalesce(%s, prev_event_nids) WHERE event_nid = %s",
            (
                outlier, state_snapshot_nid, rejected, rejection_reason,
                prev_event_nids, event_nid,
            ),
        )
        return cur.rowcount

    # -- state -----------------------------------------------------------------------------

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
        with self._conn.cursor(binary=True) as cur:
            cur.execute(
                "SELECT 0, hash, state_block_nid FROM state_blocks WHERE hash = ANY(%s::bytea[])"
                " UNION ALL SELECT 1, hash, state_snapshot_nid FROM state_snapshots"
                " WHERE hash = ANY(%s::bytea[])",
                (block_hashes, snapshot_hashes),
            )
            rows = cur.fetchall()
        found: tuple[dict[bytes, int], dict[bytes, int]] = ({}, {})
        for kind, digest, nid in rows:
            found[kind][bytes(digest)] = nid
        return found

    # -- memberships, invites, redactions --------------------------------------------------

    def insert_invite(self, room_nid: RoomNID, target_user_id: str, event_nid: EventNID) -> None:
        self._conn.execute(
            "INSERT INTO invites (event_nid, room_nid, target_user_id) VALUES (%s, %s, %s)"
            " ON CONFLICT (event_nid) DO NOTHING",
            (event_nid, room_nid, target_user_id),
        )

    def retire_invites(self, room_nid: RoomNID, target_user_id: str) -> list[EventNID]:
        rows = self._rows(
            "UPDATE invites SET retired = true"
            " WHERE room_nid = %s AND target_user_id = %s AND NOT retired RETURNING event_nid",
            (room_nid, target_user_id),
        )
        return sorted(EventNID(r[0]) for r in rows)

    def _select_redaction_rows(self, redacts_event_ids: list[str]) -> list[RedactionRecord]:
        rows = self._rows(_SELECT_REDACTIONS, (redacts_event_ids,))
        return [RedactionRecord(*row) for row in rows]

    # -- bookkeeping -----------------------------------------------------------------------

    def select_input_offset(self, topic: str, partition: int) -> int | None:
        rows = self._rows(
            "SELECT next_offset FROM input_offsets WHERE topic = %s AND partition = %s",
            (topic, partition),
        )
        return int(rows[0][0]) if rows else None

    def select_outbox(self, partition: int, limit: int) -> list[OutboxRecord]:
        with self._conn.cursor(binary=True) as cur:
            cur.execute(
                "SELECT seq, room_id, stream_position, payload FROM outbox"
                " WHERE partition = %s ORDER BY seq LIMIT %s",
                (partition, limit),
            )
            return [OutboxRecord(s, r, p, bytes(b)) for s, r, p, b in cur.fetchall()]

    def delete_outbox(self, partition: int, up_to_seq: int) -> None:
        self._conn.execute(
            "DELETE FROM outbox WHERE partition = %s AND seq <= %s", (partition, up_to_seq)
        )

    # -- commit ----------------------------------------------------------------------------

    def flush(self) -> None:
        pending = self.pending
        if len(pending.events) + len(pending.outbox) >= COPY_FROM_ROWS:
            super().flush()
            return
        # A small batch (a quiet stream: a handful of events per poll): every statement in
        # one round trip (pipeline mode) instead of a COPY and a round trip each.
        with self._conn.pipeline():
            self._insert_pending_rows(pending)
        self._write_redactions(pending)

    def _nid_array(self, nids: Iterable[int]) -> list[int]:
        return list(nids)

    def _write_pending(self, pending: PendingWrites) -> None:
        conn = self._conn
        with conn.cursor() as cur:
            if pending.events:
                events = list(pending.events.values())
                with cur.copy(
                    "COPY events (event_nid, room_nid, event_type_nid, state_key_nid, depth,"
                    " outlier, rejected, redacted, state_snapshot_nid, auth_event_nids,"
                    " prev_event_nids, rejection_reason, event_id) FROM STDIN (FORMAT BINARY)"
                ) as copy:
                    copy.set_types(
                        ["int8", "int8", "int8", "int8", "int8", "bool", "bool", "bool",
                         "int8", "int8[]", "int8[]", "text", "text"]
                    )
                    for e in events:
                        copy.write_row(
                            (e.event_nid, e.room_nid, e.type_nid, e.state_key_nid, e.depth,
                             e.outlier, e.rejected, e.redacted, e.state_snapshot_nid,
                             list(e.auth_event_nids), list(e.prev_event_nids),
                             e.rejection_reason, e.event_id)
                        )
                with cur.copy(
                    "COPY event_json (event_nid, json) FROM STDIN (FORMAT BINARY)"
                ) as copy:
                    copy.set_types(["int8", "bytea"])
                    for e in events:
                        copy.write_row((e.event_nid, e.json))
            if pending.blocks:
                with cur.copy(
                    "COPY state_blocks (state_block_nid, hash, entry_count, data)"
                    " FROM STDIN (FORMAT BINARY)"
                ) as copy:
                    copy.set_types(["int8", "bytea", "int4", "bytea"])
                    for nid, block in pending.blocks.items():
                        copy.write_row((nid, block.hash, len(block), encode_block(block.entries)))
            if pending.snapshots:
                with cur.copy(
                    "COPY state_snapshots (state_snapshot_nid, hash, room_nid, chunk_count,"
                    " chunk_level, block_nids) FROM STDIN (FORMAT BINARY)"
                ) as copy:
                    copy.set_types(["int8", "bytea", "int8", "int2", "int2", "int8[]"])
                    for row in pending.snapshots.values():
                        meta = row.meta
                        copy.write_row(
                            (meta.snapshot_nid, row.hash, row.room_nid, meta.chunk_count,
                             meta.chunk_level, list(meta.block_nids))
                        )
            self._write_memberships_and_rooms(pending)
            if pending.outbox:
                with cur.copy(
                    "COPY outbox (partition, room_id, stream_position, payload)"
                    " FROM STDIN (FORMAT BINARY)"
                ) as copy:
                    copy.set_types(["int4", "text", "int8", "bytea"])
                    for item in pending.outbox:
                        copy.write_row(item)
