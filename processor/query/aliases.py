"""Room aliases (table `room_aliases`, migration 0003): set, look up, list, remove."""

from __future__ import annotations

from processor.query.database import ReadTx
from processor.query.errors import Conflict

__all__ = ["for_room", "lookup", "remove", "set_alias"]


def lookup(tx: ReadTx, alias: str) -> tuple[str, str] | None:
    """(room ID, creator) of an alias."""
    rows = tx.rows("SELECT room_id, creator FROM room_aliases WHERE alias = %s", (alias,))
    return (rows[0][0], rows[0][1]) if rows else None


def set_alias(tx: ReadTx, alias: str, room_id: str, creator: str) -> bool:
    """Point `alias` at `room_id`. False when it already does; `Conflict` when it names
    another room (an alias is moved by removing it first, as the client API does)."""
    existing = lookup(tx, alias)
    if existing is not None:
        if existing[0] == room_id:
            return False
        raise Conflict(f"alias {alias} already names room {existing[0]}")
    # ON CONFLICT: a concurrent writer may have inserted it since the lookup.
    inserted = tx.rows(
        "INSERT INTO room_aliases (alias, room_id, creator) VALUES (%s, %s, %s)"
        " ON CONFLICT (alias) DO NOTHING RETURNING alias",
        (alias, room_id, creator),
    )
    if not inserted:
        raise Conflict(f"alias {alias} was just created by another request")
    return True


def for_room(tx: ReadTx, room_id: str) -> list[str]:
    rows = tx.rows("SELECT alias FROM room_aliases WHERE room_id = %s ORDER BY alias", (room_id,))
    return [r[0] for r in rows]


def remove(tx: ReadTx, alias: str) -> bool:
    return bool(tx.rows("DELETE FROM room_aliases WHERE alias = %s RETURNING alias", (alias,)))
