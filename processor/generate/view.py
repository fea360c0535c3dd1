"""One server's view of a generated room: its state and the events it would build on.

The simulation keeps one `RoomView` for the room's current state and, while the room is
forked, one copy per branch. Memberships are indexed by membership and server so that picking
a random joined user of a given server is O(1) even in rooms with thousands of members.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

__all__ = ["IndexedSet", "RoomView", "StateEntry", "server_of"]

StateKey = tuple[str, str]


def server_of(user_id: str) -> str:
    """The server part of a user ID (``@local:server``)."""
    return user_id.split(":", 1)[1]


@dataclass(frozen=True, slots=True)
class StateEntry:
    """A state event as the simulation remembers it."""

    event_id: str
    sender: str
    content: dict[str, Any]


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

    __slots__ = ("_by_membership", "membership_of", "state", "tips")

    def __init__(self) -> None:
        self.state: dict[StateKey, StateEntry] = {}
        self.tips: list[str] = []
        self.membership_of: dict[str, str] = {}
        #: membership -> server -> users
        self._by_membership: dict[str, dict[str, IndexedSet]] = {}

    def copy(self) -> RoomView:
        other = RoomView()
        other.state = dict(self.state)
        other.tips = list(self.tips)
        other.membership_of = dict(self.membership_of)
        other._by_membership = {
            m: {s: users.copy() for s, users in by_server.items()}
            for m, by_server in self._by_membership.items()
        }
        return other

    def set_state(self, event_type: str, state_key: str, entry: StateEntry) -> None:
        self.state[(event_type, state_key)] = entry
        if event_type == "m.room.member":
            old = self.membership_of.get(state_key)
            server = server_of(state_key)
            if old is not None:
                self._by_membership[old][server].discard(state_key)
            new = entry.content["membership"]
            self.membership_of[state_key] = new
            self._by_membership.setdefault(new, {}).setdefault(server, IndexedSet()).add(
                state_key
            )

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
