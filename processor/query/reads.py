"""The query API's own reads: light event rows ("skeletons"), event IDs, memberships, and the
process-wide caches of what never changes once written.

A skeleton is what graph walks read of an event (ID, room, depth, key, auth and prev events,
rejected, the snapshot of the state before it), fetched without the JSON: the auth chain of a
10,000-member room's state is ~10,000 events, and their PDUs are megabytes nobody asked for.

Cached in process (thread-safe, bounded): skeletons of events that are not outliers (an
outlier's row changes when it is processed later; a processed event's never does), the
membership of member events (redaction keeps `membership`), the server part of state keys,
and room NIDs' IDs and versions.
"""

from __future__ import annotations

import threading
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from typing import Any

import msgspec

from processor.errors import CorruptState
from processor.matrix.visibility import server_name_of
from processor.nids import EventNID, RoomNID
from processor.query.database import ReadTx
from processor.storage.caches import LRU
from processor.storage.sqlite import unpack_nids

__all__ = ["QueryCaches", "Skeleton", "StateView", "load_skeletons", "memberships_of"]

_SKELETON_COLUMNS = (
    "event_nid, event_id, room_nid, depth, event_type_nid, state_key_nid, auth_event_nids,"
    " prev_event_nids, rejected, outlier, state_snapshot_nid"
)
#: SQLite statements stay well below its limit of bound parameters.
_SQLITE_CHUNK = 5000


@dataclass(frozen=True, slots=True)
class Skeleton:
    nid: EventNID
    event_id: str
    room_nid: RoomNID
    depth: int
    type_nid: int
    #: 0 = not a state event.
    state_key_nid: int
    auth_nids: tuple[EventNID, ...]
    prev_nids: tuple[EventNID, ...]
    rejected: bool
    outlier: bool
    #: The state before the event (0: none known).
    snapshot_nid: int


@dataclass(frozen=True, slots=True)
class StateView:
    """What history visibility needs of one state for one server: the visibility, and the
    state key NIDs of the server's users joined and invited in it."""

    visibility: str
    joined: frozenset[int]
    invited: frozenset[int]


class QueryCaches:
    """Immutable data shared by every request of one process."""

    def __init__(self, *, events: int = 500_000, views: int = 4096) -> None:
        self.lock = threading.Lock()
        #: (state snapshot NID, server name) -> its `StateView` (states never change).
        self.views: LRU[tuple[int, str], StateView] = LRU(views)
        self.skeletons: LRU[int, Skeleton] = LRU(events)
        self.memberships: LRU[int, str | None] = LRU(events)
        self.key_servers: LRU[int, str] = LRU(events)
        self.rooms: dict[int, tuple[str, str]] = {}


def _skeleton(row: tuple[Any, ...], sqlite: bool) -> Skeleton:
    auth, prev = row[6], row[7]
    if sqlite:
        auth = unpack_nids(auth, f"event {row[1]} auth events")
        prev = unpack_nids(prev, f"event {row[1]} prev events")
    return Skeleton(
        EventNID(row[0]), row[1], RoomNID(row[2]), row[3], row[4], row[5],
        tuple(auth), tuple(prev), bool(row[8]), bool(row[9]), row[10],
    )


def _select(tx: ReadTx, column: str, keys: list[Any]) -> list[Skeleton]:
    if tx.kind == "postgresql":
        cast = "bigint" if column == "event_nid" else "text"
        rows = tx.rows(
            f"SELECT {_SKELETON_COLUMNS} FROM events WHERE {column} = ANY(%s::{cast}[])",
            (keys,),
        )
        return [_skeleton(r, False) for r in rows]
    found: list[Skeleton] = []
    for i in range(0, len(keys), _SQLITE_CHUNK):
        part = keys[i : i + _SQLITE_CHUNK]
        marks = ",".join("%s" for _ in part)
        rows = tx.rows(f"SELECT {_SKELETON_COLUMNS} FROM events WHERE {column} IN ({marks})", part)
        found.extend(_skeleton(r, True) for r in rows)
    return found


def load_skeletons(
    tx: ReadTx, caches: QueryCaches, nids: Iterable[int]
) -> dict[EventNID, Skeleton]:
    """Skeletons of stored events by NID; a NID that is not stored is a broken reference."""
    found: dict[EventNID, Skeleton] = {}
    missing: list[int] = []
    with caches.lock:
        for nid in nids:
            cached = caches.skeletons.get(nid)
            if cached is None:
                missing.append(nid)
            else:
                found[EventNID(nid)] = cached
    if missing:
        missing = list(dict.fromkeys(missing))
        loaded = _select(tx, "event_nid", missing)
        _remember(caches, loaded)
        found.update((s.nid, s) for s in loaded)
        lost = [n for n in missing if n not in found]
        if lost:
            raise CorruptState(f"unknown event NIDs {sorted(lost)[:10]}")
    return found


def prefetch_ancestors(
    tx: ReadTx, caches: QueryCaches, nids: Collection[int], levels: int
) -> None:
    """Load into the cache the skeletons of the ancestors of `nids` through prev events, up
    to `levels` generations, in ONE round trip (PostgreSQL; a recursive query over the prev
    event arrays), so a breadth-first walk of `levels` steps costs no round trip per step.
    SQLite reads are local calls: nothing to save there."""
    if tx.kind != "postgresql" or not nids or levels < 1:
        return
    rows = tx.rows(
        "WITH RECURSIVE walk(nid, lvl) AS ("
        " SELECT unnest(prev_event_nids), 1 FROM events WHERE event_nid = ANY(%s::bigint[])"
        " UNION"
        " SELECT unnest(e.prev_event_nids), w.lvl + 1 FROM events e"
        "  JOIN walk w ON e.event_nid = w.nid WHERE w.lvl < %s)"
        f" SELECT {_SKELETON_COLUMNS} FROM events"
        " WHERE event_nid IN (SELECT nid FROM walk)",
        (list(nids), levels),
    )
    _remember(caches, (_skeleton(r, False) for r in rows))


def skeletons_and_ancestors(
    tx: ReadTx, caches: QueryCaches, event_ids: Collection[str], levels: int
) -> dict[str, Skeleton]:
    """`skeletons_by_id`, and (PostgreSQL) their ancestors up to `levels` generations into
    the cache, in ONE round trip: what a walk back from those events starts with."""
    if tx.kind != "postgresql" or not event_ids or levels < 1:
        found = skeletons_by_id(tx, caches, event_ids)
        prefetch_ancestors(tx, caches, [s.nid for s in found.values()], levels)
        return found
    ids = list(dict.fromkeys(event_ids))
    rows = tx.rows(
        "WITH RECURSIVE walk(nid, lvl) AS ("
        " SELECT unnest(prev_event_nids), 1 FROM events WHERE event_id = ANY(%s::text[])"
        " UNION"
        " SELECT unnest(e.prev_event_nids), w.lvl + 1 FROM events e"
        "  JOIN walk w ON e.event_nid = w.nid WHERE w.lvl < %s)"
        f" SELECT {_SKELETON_COLUMNS}, true FROM events WHERE event_id = ANY(%s::text[])"
        f" UNION ALL SELECT {_SKELETON_COLUMNS}, false FROM events"
        " WHERE event_nid IN (SELECT nid FROM walk)",
        (ids, levels, ids),
    )
    skeletons = [(_skeleton(r[:-1], False), r[-1]) for r in rows]
    _remember(caches, (s for s, _ in skeletons))
    return {s.event_id: s for s, given in skeletons if given}


def skeletons_by_id(
    tx: ReadTx, caches: QueryCaches, event_ids: Collection[str]
) -> dict[str, Skeleton]:
    """Skeletons of the stored events among `event_ids` (unknown IDs left out)."""
    if not event_ids:
        return {}
    loaded = _select(tx, "event_id", list(dict.fromkeys(event_ids)))
    _remember(caches, loaded)
    return {s.event_id: s for s in loaded}


def _remember(caches: QueryCaches, skeletons: Iterable[Skeleton]) -> None:
    with caches.lock:
        for s in skeletons:
            if not s.outlier:
                caches.skeletons.put(s.nid, s)


class _Membership(msgspec.Struct):
    content: dict[str, Any] = {}


_MEMBERSHIP = msgspec.json.Decoder(_Membership)


def memberships_of(
    tx: ReadTx, caches: QueryCaches, nids: Collection[EventNID]
) -> dict[EventNID, str | None]:
    """`content.membership` of member events (None when missing or not a string)."""
    found: dict[EventNID, str | None] = {}
    missing: list[EventNID] = []
    with caches.lock:
        for nid in nids:
            value = caches.memberships.get(nid)
            if value is None:
                missing.append(nid)
            else:
                found[nid] = value
    if missing:
        records = tx.batch.select_events(missing)
        with caches.lock:
            for nid, record in records.items():
                try:
                    membership = _MEMBERSHIP.decode(record.json).content.get("membership")
                except msgspec.DecodeError as e:
                    raise CorruptState(f"stored event {record.event_id} does not decode") from e
                value = membership if isinstance(membership, str) else None
                found[nid] = value
                if value is not None:
                    caches.memberships.put(nid, value)
    return found


def servers_of_keys(
    tx: ReadTx, caches: QueryCaches, key_nids: Collection[int]
) -> dict[int, str]:
    """The server part of state keys (user IDs, for member events)."""
    found: dict[int, str] = {}
    missing: list[int] = []
    with caches.lock:
        for nid in key_nids:
            server = caches.key_servers.get(nid)
            if server is None:
                missing.append(nid)
            else:
                found[nid] = server
    if missing:
        names = tx.batch.state_key_names(missing)  # type: ignore[arg-type]
        with caches.lock:
            for nid, name in names.items():
                server = server_name_of(name)
                found[nid] = server
                caches.key_servers.put(nid, server)
    return found


def event_ids_of(
    tx: ReadTx, caches: QueryCaches, nids: Iterable[int]
) -> dict[EventNID, str]:
    return {nid: s.event_id for nid, s in load_skeletons(tx, caches, nids).items()}


def room_of(tx: ReadTx, caches: QueryCaches, room_nid: int) -> tuple[str, str]:
    """(room ID, room version) of a room NID."""
    with caches.lock:
        known = caches.rooms.get(room_nid)
    if known is None:
        record = tx.batch.select_room_by_nid(RoomNID(room_nid))
        known = (record.room_id, record.room_version)
        with caches.lock:
            caches.rooms[room_nid] = known
    return known
