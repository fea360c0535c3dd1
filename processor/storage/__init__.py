"""Storage: the `Store` interface (`base`) and its PostgreSQL and SQLite backends.

`open_store(url)` picks the backend by one rule (`parse_database`, documented in the README
for `--database`):

* ``postgresql://...`` or ``postgres://...``: PostgreSQL (a libpq URL);
* ``sqlite:PATH`` (``sqlite:///tmp/rooms.db`` is ``/tmp/rooms.db``, ``sqlite::memory:``
  an in-memory database): SQLite;
* any other value that starts like a URL (``scheme:``), or is the bare word ``postgres`` or
  ``postgresql``, is refused: it was meant as something else than a file name;
* anything else is the path of an SQLite file, taken literally (``=`` and all).

`open_database` is what commands use: it also checks, within a few seconds, that the
database can be reached, and opens read-only commands' SQLite files read-only (never
creating one). Call `Store.migrate()` once at start (safe when several processes start at
once).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from processor.errors import ConfigError, StorageError
from processor.storage.base import Batch, Store

if TYPE_CHECKING:
    from processor.storage.sqlite import SqliteStore

__all__ = [
    "Batch",
    "DatabaseTarget",
    "Store",
    "open_database",
    "open_store",
    "parse_database",
    "sqlite_path",
]

#: Seconds a command waits for PostgreSQL to answer before giving up.
CONNECT_TIMEOUT_SECONDS = 5

_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")
_POSTGRES_PREFIXES = ("postgresql://", "postgres://")


@dataclass(frozen=True, slots=True)
class DatabaseTarget:
    kind: Literal["postgresql", "sqlite"]
    #: The URL (PostgreSQL), or the file path / ":memory:" (SQLite).
    location: str


def parse_database(value: str) -> DatabaseTarget:
    """Which database `value` names, by the rule in the module docstring; `ConfigError`
    (saying what is accepted) for a value it refuses."""
    accepted = "expected postgresql://USER@HOST[:PORT]/DBNAME, sqlite:PATH or a file path"
    if not value:
        raise ConfigError(f"the database is empty: {accepted}")
    if value.startswith(_POSTGRES_PREFIXES):
        return DatabaseTarget("postgresql", value)
    if value.startswith("sqlite:"):
        path = value[len("sqlite://") :] if value.startswith("sqlite://") else value[7:]
        if not path:
            raise ConfigError(f"database {value!r} names no SQLite file: {accepted}")
        return DatabaseTarget("sqlite", path)
    if value in ("postgres", "postgresql") or _SCHEME.match(value):
        raise ConfigError(
            f"database {value!r} is neither a URL we know nor a plain file name: {accepted} "
            f"(for a file of that name, write sqlite:{value})"
        )
    return DatabaseTarget("sqlite", value)


def sqlite_path(url: str) -> str | None:
    """The SQLite path a database value names, or None when it names PostgreSQL or is
    refused."""
    try:
        target = parse_database(url)
    except ConfigError:
        return None
    return target.location if target.kind == "sqlite" else None


def open_store(url: str, **options: Any) -> Store:
    """A store for `url` (see the module docstring). `options` go to the backend's
    constructor (e.g. `max_connections`, `caches`)."""
    target = parse_database(url)
    if target.kind == "postgresql":
        from processor.storage.postgres import PostgresStore

        return PostgresStore(target.location, **options)
    from processor.storage.sqlite import SqliteStore

    return SqliteStore(target.location, **options)


def open_database(value: str, *, read_only: bool) -> Store:
    """A store for a command's ``--database``: `open_store`, but failing within seconds
    with one line when PostgreSQL cannot be reached (rather than the pool retrying for 30
    s), and, when `read_only`, opening an SQLite file only if it is a roomserver database
    (so nothing is ever created or rewritten)."""
    target = parse_database(value)
    if target.kind == "postgresql":
        _check_postgres(target.location)
        return open_store(value)
    path = target.location
    if path != ":memory:":
        file = Path(path)
        if read_only and not file.exists():
            raise ConfigError(f"database {path} does not exist")
        if file.is_dir():
            raise ConfigError(f"database {path} is a directory, not an SQLite file")
        if not read_only and not file.parent.is_dir():
            raise ConfigError(f"database {path}: directory {file.parent} does not exist")
    if not read_only:
        return open_store(value)
    from processor.storage.sqlite import SqliteStore

    store = SqliteStore(path, read_only=True)
    try:
        _check_roomserver_sqlite(store, path)
    except BaseException:
        store.close()
        raise
    return store


def _check_postgres(url: str) -> None:
    import psycopg

    try:
        psycopg.connect(url, connect_timeout=CONNECT_TIMEOUT_SECONDS).close()
    except psycopg.Error as e:
        # psycopg's message spans lines (one per address tried); the first says why.
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise StorageError(f"cannot connect to PostgreSQL: {reason}") from None


def _check_roomserver_sqlite(store: SqliteStore, path: str) -> None:
    try:
        migrated = store.is_migrated()
    except StorageError as e:
        raise ConfigError(f"database {path} is not an SQLite database ({e})") from None
    if not migrated:
        raise ConfigError(
            f"database {path} is not a roomserver database (no tables: ingest into it first)"
        )
