"""Storage: the `Store` interface (`base`) and its PostgreSQL and SQLite backends.

`open_store(url)` picks the backend from the URL:

* ``postgresql://...`` / ``postgres://...`` (or a libpq ``key=value`` string): PostgreSQL;
* ``sqlite:PATH`` / ``sqlite://PATH`` (``sqlite:///tmp/rooms.db`` is ``/tmp/rooms.db``),
  ``sqlite::memory:``, or a bare file path: SQLite.

Call `Store.migrate()` once at start (safe when several processes start at once).
"""

from __future__ import annotations

from typing import Any

from processor.errors import ConfigError
from processor.storage.base import Batch, Store

__all__ = ["Batch", "Store", "open_store", "sqlite_path"]


def sqlite_path(url: str) -> str | None:
    """The SQLite path a URL names, or None when it is not an SQLite URL."""
    if url.startswith("sqlite://"):
        return url[len("sqlite://") :]
    if url.startswith("sqlite:"):
        return url[len("sqlite:") :]
    if "://" in url or "=" in url:
        return None
    return url


def open_store(url: str, **options: Any) -> Store:
    """A store for `url` (see the module docstring). `options` go to the backend's
    constructor (e.g. `max_connections`, `caches`)."""
    if not url:
        raise ConfigError("database URL is empty: set a postgresql:// or sqlite: URL")
    if url.startswith(("postgresql://", "postgres://")) or (
        "=" in url and "://" not in url
    ):
        from processor.storage.postgres import PostgresStore

        return PostgresStore(url, **options)
    path = sqlite_path(url)
    if path is None:
        raise ConfigError(f"database URL {url!r}: expected postgresql://... or sqlite:PATH")
    if not path:
        raise ConfigError(f"database URL {url!r} names no SQLite file")
    from processor.storage.sqlite import SqliteStore

    return SqliteStore(path, **options)
