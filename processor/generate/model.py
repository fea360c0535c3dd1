"""What every part of the room simulation shares: outcomes, the generated event, the clock,
and the constants of a generated room (initial power levels, names, words)."""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass, field
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
    "IntendedOutcome",
    "Summary",
    "key_kind",
]

IntendedOutcome = Literal["accepted", "rejected", "soft_failed"]

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
    outcome: IntendedOutcome
    #: What the event exercises ("message", "kick", "reject:ban_without_level", ...).
    kind: str
    #: With `trace`: the state the event was built against (its branch's view) and the
    #: room's current state when it was produced, as (type, state_key) -> event ID.
    state_before: Mapping[tuple[str, str], str] | None = None
    current_state: Mapping[tuple[str, str], str] | None = None
    #: A merge (2–3 prev events): the (type, state_key) pairs on which the states after its
    #: prev events disagree (a key some lack counts), sorted; empty when they agree.
    conflicted_keys: tuple[tuple[str, str], ...] = ()
    #: Those of `conflicted_keys` that some of the states do not hold at all.
    partial_keys: tuple[tuple[str, str], ...] = ()
    #: A merge: the events the states after its prev events hold at the conflicted keys.
    conflicted_events: tuple[str, ...] = ()
    #: Number of prev events.
    prev_count: int = 1
    #: Built on a branch of a fork: ``"<fork number>:<server>"`` (``"<fork number>:*"`` for
    #: the merge that ends the fork); None on the room's state outside forks.
    branch: str | None = None


@dataclass(slots=True)
class Summary:
    """What a generation produced, for the summary `roomserver generate` prints."""

    events: int = 0
    rooms: int = 0
    outcomes: dict[str, int] = field(default_factory=dict)
    #: Events with 2–3 prev events.
    merges: int = 0
    #: Merges whose prev events' states disagree on at least one key.
    conflicted_merges: int = 0
    #: Conflicted merges by the kind of key in conflict (one merge may count in several).
    conflicted_by_kind: dict[str, int] = field(default_factory=dict)

    def add(self, generated: GeneratedEvent) -> None:
        self.events += 1
        self.outcomes[generated.outcome] = self.outcomes.get(generated.outcome, 0) + 1
        if generated.prev_count < 2:
            return
        self.merges += 1
        if not generated.conflicted_keys:
            return
        self.conflicted_merges += 1
        for kind in sorted({key_kind(k) for k in generated.conflicted_keys}):
            self.conflicted_by_kind[kind] = self.conflicted_by_kind.get(kind, 0) + 1

    def per_thousand(self) -> float:
        """Conflicted merges per 1,000 events."""
        return 1000 * self.conflicted_merges / self.events if self.events else 0.0

    def line(self) -> str:
        get = self.outcomes.get
        kinds = ", ".join(f"{k} {n}" for k, n in sorted(self.conflicted_by_kind.items()))
        return (
            f"{self.events} events in {self.rooms} rooms (accepted {get('accepted', 0)}, "
            f"rejected {get('rejected', 0)}, soft-failed {get('soft_failed', 0)}); "
            f"{self.merges} merges, {self.conflicted_merges} with conflicted state "
            f"({self.per_thousand():.1f} per 1,000 events; by key: {kinds or 'none'})"
        )


def key_kind(key: tuple[str, str]) -> str:
    """How the summary groups a conflicted key: power_levels, join_rules, member, other."""
    event_type = key[0]
    if event_type == POWER_LEVELS:
        return "power_levels"
    if event_type == JOIN_RULES:
        return "join_rules"
    if event_type == MEMBER:
        return "member"
    return "other"
