"""The service's database connection: migrated at start, with an idle-in-transaction
timeout so a paused former owner's locks do not block its successor for ever; and moving the
outbox sequence (see `outbox_numbering`)."""

from __future__ import annotations

from urllib.parse import quote

from processor.storage import open_store
from processor.storage.base import Store

#: A paused instance (a "zombie", see `outbox_relay`) can be stopped in the middle of a
#: batch's transaction, holding row locks its successor needs: PostgreSQL ends a session
#: left idle inside a transaction for this long, and the successor carries on. Our batches
#: never wait this long between two statements.
IDLE_IN_TRANSACTION_TIMEOUT_MS = 60_000


def with_idle_timeout(database_url: str) -> str:
    """`database_url` with `idle_in_transaction_session_timeout` set, unless the URL already
    sets libpq `options` (the operator's choice wins)."""
    if not database_url.startswith(("postgresql://", "postgres://")) or "options=" in database_url:
        return database_url
    option = quote(f"-c idle_in_transaction_session_timeout={IDLE_IN_TRANSACTION_TIMEOUT_MS}")
    return f"{database_url}{'&' if '?' in database_url else '?'}options={option}"


def advance_outbox_seq(store: Store, published: int) -> bool:
    with store.batch() as batch:
        return batch.advance_outbox_seq(published)


def open_migrated(database_url: str) -> Store:
    store = open_store(with_idle_timeout(database_url))
    store.migrate()
    return store
