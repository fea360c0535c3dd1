"""One server's view of a generated room: its state and the events it would build on.

The simulation keeps one `RoomView` for the room's current state and, while the room is
forked, one per branch. Memberships are indexed by membership and server so that picking a
random joined user of a given server is O(1) even in rooms with thousands of members. Each
view also keeps its state as numeric IDs (`nids`), the form `processor.matrix.state_res`
resolves, and a `token` that changes whenever its state does (a cache key).
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from processor.nids import EventNID, StateKeyTuple

__all__ = ["IndexedSet", "RoomView", "StateEntry", "server_of"]

StateKey = tuple[str, str]

#: View tokens: a fresh number whenever a view's state changes.
_tokens = itertools.count(1)


def server_of(user_id: str) -> str:
    """The server part of a user ID (``@local:server``)."""
    return user_id.split(":", 1)[1]


@dataclass(frozen=True, slots=True)
class StateEntry:
    """A state event as the simulation remembers it."""

    event_id: str
    sender: str
    content: dict[str, Any]
    event_type: str
    state_key: str
    #: The event's numeric ID and (type NID, state key NID), for state resolution.
    nid: EventNID
    key_nids: StateKeyTuple


class IndexedSet:
    """A set with O(1) add, remove and uniform random choice, iterating in a deterministic
    order (the order depends only on the sequence of operations)."""

    __slots__ = ("_index", "_items")

    def __init__(self, items: list[str] | None = None) -> None:
        self._items: list[str] = list(items or [])
        self._index: dict[str, int] = {item: i for i, item in enumerate(self._items)}

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, item: object) -> bool:
        return item in self._index

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __getitem__(self, n: int) -> str:
        return self._items[n]

    def add(self, item: str) -> None:
        if item not in self._index:
            self._index[item] = len(self._items)
            self._items.append(item)

    def discard(self, item: str) -> None:
        i = self._index.pop(item, None)
        if i is None:
            return
        last = self._items.pop()
        if i < len(self._items):
            self._items[i] = last
            self._index[last] = i

    def choice(self, rng: random.Random) -> str:
        return self._items[rng.randrange(len(self._items))]

    def copy(self) -> IndexedSet:
        return IndexedSet(self._items)


class RoomView:
    """The state of a room as one server sees it, plus its forward extremities (`tips`)."""

    __slots__ = ("_by_membership", "membership_of", "nids", "state", "tips", "token")

    def __init__(self) -> None:
        self.state: dict[StateKey, StateEntry] = {}
        #: The same state as (type NID, state key NID) -> event NID.
        self.nids: dict[StateKeyTuple, EventNID] = {}
        self.tips: list[str] = []
        self.membership_of: dict[str, str] = {}
        #: membership -> server -> users
        self._by_membership: dict[str, dict[str, IndexedSet]] = {}
        self.token = next(_tokens)

    def copy(self) -> RoomView:
        other = RoomView()
        other.state = dict(self.state)
        other.nids = dict(self.nids)
        other.tips = list(self.tips)
        other.membership_of = dict(self.membership_of)
        other._by_membership = {
            m: {s: users.copy() for s, users in by_server.items()}
            for m, by_server in self._by_membership.items()
        }
        other.token = self.token  # same state
        return other

    def set_state(self, entry: StateEntry) -> None:
        event_type, state_key = entry.event_type, entry.state_key
        self.state[(event_type, state_key)] = entry
        self.nids[entry.key_nids] = entry.nid
        self.token = next(_tokens)
        if event_type == "m.room.member":
            self._unindex(state_key)
            new = entry.content["membership"]
            self.membership_of[state_key] = new
            self._by_membership.setdefault(new, {}).setdefault(
                server_of(state_key), IndexedSet()
            ).add(state_key)

    def remove_state(self, key: StateKey) -> None:
        """Drop a key (a resolution that left it out)."""
        entry = self.state.pop(key, None)
        if entry is None:
            return
        del self.nids[entry.key_nids]
        self.token = next(_tokens)
        if entry.event_type == "m.room.member":
            self._unindex(entry.state_key)
            del self.membership_of[entry.state_key]

    def _unindex(self, user_id: str) -> None:
        old = self.membership_of.get(user_id)
        if old is not None:
            self._by_membership[old][server_of(user_id)].discard(user_id)

    def resolved(
        self, resolved: Mapping[StateKeyTuple, EventNID], entries: Mapping[EventNID, StateEntry]
    ) -> RoomView:
        """A copy of this view whose state is `resolved` (tips unchanged): only the keys
        where they differ are touched, in a deterministic order (this view's keys, then the
        resolved map's)."""
        other = self.copy()
        ours = self.nids
        for key_nids, nid in ours.items():
            if resolved.get(key_nids) != nid:
                entry = entries[nid]
                new = resolved.get(key_nids)
                if new is None:
                    other.remove_state((entry.event_type, entry.state_key))
                else:
                    other.set_state(entries[new])
        for key_nids, nid in resolved.items():
            if key_nids not in ours:
                other.set_state(entries[nid])
        return other

    def content(self, event_type: str, state_key: str = "") -> dict[str, Any] | None:
        entry = self.state.get((event_type, state_key))
        return None if entry is None else entry.content

    def membership(self, user_id: str) -> str | None:
        return self.membership_of.get(user_id)

    def count(self, membership: str, server: str | None = None) -> int:
        by_server = self._by_membership.get(membership, {})
        if server is not None:
            users = by_server.get(server)
            return 0 if users is None else len(users)
        return sum(len(users) for users in by_server.values())

    def users(self, membership: str, server: str | None = None) -> list[str]:
        """Every user with `membership` (on `server`), in deterministic order."""
        by_server = self._by_membership.get(membership, {})
        if server is not None:
            return list(by_server.get(server, ()))
        return [u for name in sorted(by_server) for u in by_server[name]]

    def pick(
        self,
        rng: random.Random,
        membership: str,
        server: str | None = None,
        where: Callable[[str], bool] | None = None,
    ) -> str | None:
        """A random user with `membership` (on `server`) for whom `where` holds, or None."""
        by_server = self._by_membership.get(membership, {})
        if server is None:
            pools = [by_server[name] for name in sorted(by_server)]
        else:
            pools = [by_server[server]] if server in by_server else []
        total = sum(len(p) for p in pools)
        if total == 0:
            return None
        # A few random draws usually succeed; fall back to a scan so that a rare candidate
        # is still found.
        for _ in range(6):
            n = rng.randrange(total)
            for pool in pools:
                if n < len(pool):
                    user = pool[n]
                    break
                n -= len(pool)
            if where is None or where(user):
                return user
        if where is None:
            return None
        candidates = [u for pool in pools for u in pool if where(u)]
        return rng.choice(candidates) if candidates else None
