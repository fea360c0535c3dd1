"""Versioned schema migrations: the SQL files under `migrations/<backend>/NNNN_name.sql`.

Each backend applies, inside ONE transaction holding a lock that serialises concurrent
starters (PostgreSQL: an advisory transaction lock; SQLite: BEGIN IMMEDIATE), every migration
whose version is not yet in `schema_migrations`, then (re)inserts the preassigned NIDs of
`processor.nids`. A process starting while another migrates waits, then finds nothing to do.
"""

from __future__ import annotations

import re
import sqlite3
from dataclasses import dataclass
from importlib import resources

from processor.errors import CorruptState
from processor.nids import PREASSIGNED_EVENT_TYPE_NIDS, PREASSIGNED_STATE_KEY_NIDS

__all__ = [
    "Migration",
    "check_preassigned",
    "load_migrations",
    "split_statements",
]

_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    sql: str


def load_migrations(backend: str) -> list[Migration]:
    """The migrations shipped for `backend` ("postgres" or "sqlite"), in version order."""
    folder = resources.files("processor.storage").joinpath("migrations", backend)
    found: list[Migration] = []
    for entry in folder.iterdir():
        match = _NAME.match(entry.name)
        if match:
            found.append(Migration(int(match[1]), match[2], entry.read_text("utf-8")))
    found.sort(key=lambda m: m.version)
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise RuntimeError(f"duplicate migration versions for {backend}: {versions}")
    return found


def split_statements(script: str) -> list[str]:
    """Split an SQLite script into statements (sqlite3's executescript would COMMIT first)."""
    statements: list[str] = []
    current = ""
    for line in script.splitlines(keepends=True):
        current += line
        if sqlite3.complete_statement(current):
            if current.strip():
                statements.append(current.strip())
            current = ""
    if current.strip() and not all(
        ln.strip().startswith("--") or not ln.strip() for ln in current.splitlines()
    ):
        raise ValueError(f"incomplete SQL statement at the end of a migration: {current!r}")
    return statements


def check_preassigned(
    found_types: dict[str, int], found_keys: dict[str, int]
) -> None:
    """Raise if a preassigned name is stored under another NID (an older schema gave it one
    before it became well known): the NIDs in processor/nids.py must hold."""
    for wanted, found, what in (
        (PREASSIGNED_EVENT_TYPE_NIDS, found_types, "event type"),
        (PREASSIGNED_STATE_KEY_NIDS, found_keys, "state key"),
    ):
        for name, nid in wanted.items():
            if found.get(name) != nid:
                raise CorruptState(
                    f"preassigned {what} {name!r} must have NID {nid}, "
                    f"the database has {found.get(name)}"
                )
