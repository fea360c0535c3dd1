"""The `store` fixture: every storage contract test runs on SQLite and on PostgreSQL.

`store` yields a `StoreUnderTest`: a migrated store plus what a test needs to look behind it
(open a second store on the same database with cold caches, run raw SQL to count or corrupt
rows). PostgreSQL's `database_url` fixture is requested lazily, so the SQLite half runs with
no PostgreSQL server at all.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import pytest

from processor.storage import open_store
from processor.storage.base import Store
from processor.storage.sqlite import unpack_nids


@dataclass
class StoreUnderTest:
    kind: str  # "sqlite" | "postgres"
    url: str
    store: Store
    _opened: list[Store] = field(default_factory=list)

    def reopen(self) -> Store:
        """Another store on the same database: its own connections, empty caches."""
        other = open_store(self.url)
        self._opened.append(other)
        return other

    def sql(self, statement: str) -> list[tuple[Any, ...]]:
        """Run raw SQL outside the store (committed at once); returns rows, if any."""
        if self.kind == "sqlite":
            conn = sqlite3.connect(self.url.removeprefix("sqlite://"), isolation_level=None)
            try:
                return conn.execute(statement).fetchall()
            finally:
                conn.close()
        with psycopg.connect(self.url, autocommit=True) as pg:
            cur = pg.execute(statement)
            return cur.fetchall() if cur.description else []

    def count(self, table: str) -> int:
        return int(self.sql(f"SELECT count(*) FROM {table}")[0][0])

    def block_nids(self, snapshot_nid: int) -> tuple[int, ...]:
        """The stored row's block NIDs, in order (SQLite packs the array into a BLOB)."""
        rows = self.sql(
            "SELECT block_nids FROM state_snapshots"
            f" WHERE state_snapshot_nid = {int(snapshot_nid)}"
        )
        assert len(rows) == 1, f"no state snapshot {snapshot_nid}"
        value = rows[0][0]
        if self.kind == "sqlite":
            return tuple(unpack_nids(value, "block_nids"))
        return tuple(value)

    def close(self) -> None:
        for other in self._opened:
            other.close()
        self.store.close()


@dataclass(frozen=True)
class EmptyDatabase:
    kind: str
    url: str


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.integration)])
def empty_database(request: pytest.FixtureRequest, tmp_path: Path) -> EmptyDatabase:
    """An empty database of each backend (no schema yet)."""
    if request.param == "sqlite":
        return EmptyDatabase("sqlite", f"sqlite://{tmp_path / 'roomserver.db'}")
    return EmptyDatabase("postgres", request.getfixturevalue("database_url"))


@pytest.fixture
def store(empty_database: EmptyDatabase) -> Iterator[StoreUnderTest]:
    """A migrated store on each backend."""
    under_test = StoreUnderTest(
        empty_database.kind, empty_database.url, open_store(empty_database.url)
    )
    under_test.store.migrate()
    try:
        yield under_test
    finally:
        under_test.close()
