"""What every part of the room simulation shares: outcomes, the generated event, the clock,
and the constants of a generated room (initial power levels, names, words)."""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

__all__ = [
    "ADMIN",
    "CREATE",
    "FIRST_NAMES",
    "INITIAL_EVENT_LEVELS",
    "JOIN_RULES",
    "MEMBER",
    "MODERATOR",
    "POWER_LEVELS",
    "WORDS",
    "Clock",
    "GeneratedEvent",
    "Outcome",
]

Outcome = Literal["accepted", "rejected", "soft_failed"]

CREATE = "m.room.create"
MEMBER = "m.room.member"
POWER_LEVELS = "m.room.power_levels"
JOIN_RULES = "m.room.join_rules"

#: The levels a room starts with (those of a typical "private_chat"/"public_chat" preset).
INITIAL_EVENT_LEVELS = {
    "m.room.name": 50,
    "m.room.power_levels": 100,
    "m.room.history_visibility": 100,
    "m.room.canonical_alias": 50,
    "m.room.avatar": 50,
    "m.room.tombstone": 100,
    "m.room.server_acl": 100,
    "m.room.encryption": 100,
}
MODERATOR = 50
ADMIN = 100

FIRST_NAMES = (
    "alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi", "ivan", "judy",
    "mallory", "niaj", "olivia", "peggy", "rupert", "sybil", "trent", "victor", "walter",
    "yasmin",
)  # fmt: skip
WORDS = (
    "hello", "room", "matrix", "server", "federation", "state", "event", "join", "today",
    "meeting", "lunch", "release", "bug", "fix", "deploy", "thanks", "sure", "later", "why",
    "the", "a", "is", "it", "we", "should", "could", "maybe", "great", "idea", "soon", "coffee",
    "kafka", "python", "tests", "green", "again", "please", "review", "this", "that",
)  # fmt: skip


class Clock:
    """``origin_server_ts`` from a counter shared by every room, never the wall clock: the
    output depends only on the seed. Strictly increasing, so newer events sort later in
    state resolution's tie-breaks."""

    def __init__(self, rng: random.Random, start: int = 1_700_000_000_000) -> None:
        self._rng = rng
        self._now = start

    def tick(self) -> int:
        self._now += self._rng.randint(1, 2_000)
        return self._now


@dataclass(frozen=True, slots=True)
class GeneratedEvent:
    """One produced input and the outcome the roomserver must reach for it."""

    input: dict[str, Any]
    event_id: str
    room_id: str
    outcome: Outcome
    #: What the event exercises ("message", "kick", "reject:ban_without_level", ...).
    kind: str
    #: With `trace`: the state the event was built against (its branch's view) and the
    #: room's current state when it was produced, as (type, state_key) -> event ID.
    state_before: Mapping[tuple[str, str], str] | None = None
    current_state: Mapping[tuple[str, str], str] | None = None
    #: A merge (2–3 prev events): the (type, state_key) pairs on which the states after its
    #: prev events disagree (a key some lack counts), sorted; empty when they agree.
    conflicted_keys: tuple[tuple[str, str], ...] = ()
    #: Number of prev events.
    prev_count: int = 1
