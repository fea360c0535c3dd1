"""Read transactions for the query API: one per request, over PostgreSQL or an SQLite file.

Every answer must reflect ONE committed state of the database, never half of a batch that
`run` or `ingest` is committing meanwhile. So each request reads in one transaction:
PostgreSQL ``REPEATABLE READ READ ONLY`` (one snapshot for every statement; read-only, so it
also runs on a hot-standby replica and never takes a row lock a writer could wait on);
SQLite a deferred ``BEGIN`` in WAL mode (the snapshot is fixed at the first read).

The reads go through the backends' own `Batch` classes (the same SQL as the pipeline's
reads), built over a connection this module owns: the query service never calls the
write half of a batch, and never flushes one. After a read it publishes what the batch read
into the store's caches (`Batch.publish`): names and state blocks and snapshots, which are
immutable once committed, so later requests skip those round trips.
"""

from __future__ import annotations

import queue
import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from processor.errors import ConfigError, StorageError
from processor.storage import parse_database
from processor.storage.base import Batch
from processor.storage.sqlite import SqliteBatch, SqliteStore

__all__ = ["QueryDatabase", "ReadTx"]

#: SQLite connections kept for concurrent readers (WAL lets them read side by side).
_SQLITE_READERS = 4


@dataclass(slots=True)
class ReadTx:
    """One read transaction: the storage `Batch` reads, and raw SQL for the query API's own
    tables and reads (written with ``%s`` markers; converted for SQLite)."""

    batch: Batch
    kind: Literal["postgresql", "sqlite"]
    _conn: Any

    def rows(self, query: str, params: Sequence[Any] = ()) -> list[Any]:
        if self.kind == "sqlite":
            return list(self._conn.execute(query.replace("%s", "?"), params).fetchall())
        return list(self._conn.execute(query, params).fetchall())


class QueryDatabase:
    """The database `serve` and `query` read: opens PostgreSQL (a pool shared by the
    request threads) or an SQLite file (read-only connections, never creating it)."""

    def __init__(self, url: str, *, read_only: bool = False, max_connections: int = 8) -> None:
        """`read_only`: refuse the alias writes (a replica, or `roomserver query`)."""
        from processor.storage import open_database

        self.read_only = read_only
        target = parse_database(url)
        self.kind: Literal["postgresql", "sqlite"] = target.kind
        if target.kind == "postgresql":
            from processor.storage.postgres import PostgresStore

            open_database(url, read_only=True).close()  # fails within seconds, one line
            self._pg = PostgresStore(target.location, max_connections=max_connections)
            return
        # Checks that the file exists and is a roomserver database, creating nothing.
        store = open_database(url, read_only=True)
        assert isinstance(store, SqliteStore)
        self._sqlite = store  # holds the shared caches of immutable data
        self._path = target.location
        if self._path == ":memory:":
            raise ConfigError("an in-memory SQLite database holds nothing to query")
        self._readers: queue.SimpleQueue[sqlite3.Connection] = queue.SimpleQueue()
        self._opened: list[sqlite3.Connection] = []
        for _ in range(_SQLITE_READERS):
            self._readers.put(self._sqlite_connection(query_only=True))

    def _sqlite_connection(self, *, query_only: bool) -> sqlite3.Connection:
        try:
            conn = sqlite3.connect(
                Path(self._path), isolation_level=None, check_same_thread=False, timeout=30.0
            )
            if query_only:
                conn.execute("PRAGMA query_only=1")
            conn.execute("PRAGMA busy_timeout=30000")
        except sqlite3.Error as e:
            raise StorageError(f"cannot open SQLite database {self._path}: {e}") from e
        self._opened.append(conn)
        return conn

    def migrate(self) -> None:
        """Apply pending migrations (the alias table) unless read-only: `serve` is often the
        first to start against a database that `run` migrates too (both are idempotent)."""
        if self.read_only:
            return
        if self.kind == "postgresql":
            self._pg.migrate()
        else:
            from processor.storage.sqlite import SqliteStore as Writer

            writer = Writer(self._path)
            try:
                writer.migrate()
            finally:
                writer.close()

    @contextmanager
    def read(self) -> Iterator[ReadTx]:
        """One read-only transaction at one committed state of the database."""
        if self.kind == "postgresql":
            import psycopg

            from processor.storage.postgres import PostgresBatch

            try:
                with self._pg.name_connection() as conn, conn.pipeline():
                    # The pool's connections autocommit: one statement opens the transaction
                    # with its options (conn.transaction() then SET TRANSACTION took two
                    # round trips), one ends it. In pipeline mode BEGIN travels with the
                    # first query and ROLLBACK with the final sync: a read of N queries
                    # costs N round trips, not N + 2.
                    conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
                    try:
                        batch = PostgresBatch(self._pg, conn)
                        yield ReadTx(batch, "postgresql", conn)
                    finally:
                        conn.execute("ROLLBACK")
                    batch.publish()
            except psycopg.Error as e:
                raise StorageError(f"PostgreSQL: {_first_line(e)}") from e
            return
        reader = self._readers.get()
        try:
            reader.execute("BEGIN")
            try:
                sqlite_batch = SqliteBatch(self._sqlite, reader)
                yield ReadTx(sqlite_batch, "sqlite", reader)
            finally:
                reader.execute("ROLLBACK")
            sqlite_batch.publish()
        except sqlite3.Error as e:
            raise StorageError(f"SQLite {self._path}: {e}") from e
        finally:
            self._readers.put(reader)

    @contextmanager
    def write(self) -> Iterator[ReadTx]:
        """One short read-write transaction (aliases only), committed on a clean exit."""
        if self.read_only:
            raise ConfigError("this query service is read-only: it cannot change aliases")
        if self.kind == "postgresql":
            import psycopg

            from processor.storage.postgres import PostgresBatch

            try:
                with self._pg.name_connection() as conn, conn.transaction():
                    yield ReadTx(PostgresBatch(self._pg, conn), "postgresql", conn)
            except psycopg.Error as e:
                raise StorageError(f"PostgreSQL: {_first_line(e)}") from e
            return
        writer = self._sqlite_connection(query_only=False)
        try:
            writer.execute("BEGIN IMMEDIATE")
            try:
                yield ReadTx(SqliteBatch(self._sqlite, writer), "sqlite", writer)
            except BaseException:
                writer.execute("ROLLBACK")
                raise
            writer.execute("COMMIT")
        except sqlite3.Error as e:
            raise StorageError(f"SQLite {self._path}: {e}") from e
        finally:
            writer.close()
            self._opened.remove(writer)

    def close(self) -> None:
        if self.kind == "postgresql":
            self._pg.close()
            return
        for conn in self._opened:
            conn.close()
        self._sqlite.close()


def _first_line(error: Exception) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
