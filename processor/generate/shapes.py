"""The shapes of generated traffic that make state resolution work: counted per room version.

`ShapeCounter` reads `GeneratedEvent`s (what `iter_generate` yields) and counts, per room
version:

- merges (events with 2–3 prev events) and *conflicted* merges: the states after the prev
  events disagree on at least one key (held with different events, or held by some states
  and not by others);
- conflicted merges by what conflicts: the power levels, the join rules, memberships, a ban
  against anything else at a member key, a key some states lack (``partial``), other state;
- conflicted merges with *crossing auth chains*: two conflicted power events (power levels,
  join rules, kicks, bans) built on different branches whose auth chains share an event built
  during the same fork — a branch cited, through a partial merge, what the other branch's
  power events cite (or one cites the other's power event itself).

It reads only the events (their PDUs' ``auth_events``) and the generator's notes on each
(`GeneratedEvent.branch`, `conflicted_keys`, `partial_keys`, `conflicted_events`).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from processor.generate.model import MEMBER, GeneratedEvent, key_kind

__all__ = ["ShapeCounter", "Shapes"]


@dataclass(slots=True)
class Shapes:
    """The counts for one room version (or all)."""

    events: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)
    merges: int = 0
    #: Merges of three branches.
    merges3: int = 0
    conflicted: int = 0
    #: Conflicted merges by kind: power_levels, join_rules, member, ban, partial, other.
    by_kind: Counter[str] = field(default_factory=Counter)
    #: Conflicted merges whose conflicted power events' auth chains cross.
    crossing: int = 0

    def per_thousand(self, count: int | None = None) -> float:
        """`count` (default: conflicted merges) per 1,000 events."""
        value = self.conflicted if count is None else count
        return 1000 * value / self.events if self.events else 0.0

    def add(self, other: Shapes) -> None:
        self.events += other.events
        self.outcomes += other.outcomes
        self.merges += other.merges
        self.merges3 += other.merges3
        self.conflicted += other.conflicted
        self.by_kind += other.by_kind
        self.crossing += other.crossing


@dataclass(frozen=True, slots=True)
class _Node:
    auth: tuple[str, ...]
    #: The fork it was built in (None outside forks) and the branch's server ("*" for the
    #: merge that ends a fork).
    fork: str | None
    server: str | None
    power: bool
    membership: str | None


class ShapeCounter:
    """Feed it every generated event, in order (`add`); read `by_version`, `total`."""

    def __init__(self) -> None:
        self.by_version: dict[str, Shapes] = {}
        self._nodes: dict[str, _Node] = {}

    def total(self) -> Shapes:
        total = Shapes()
        for version in sorted(self.by_version, key=int):
            total.add(self.by_version[version])
        return total

    def add(self, generated: GeneratedEvent) -> None:
        version = generated.input["room_version"]
        shapes = self.by_version.get(version)
        if shapes is None:
            shapes = self.by_version[version] = Shapes()
        shapes.events += 1
        shapes.outcomes[generated.outcome] += 1
        pdu = generated.input["event"]
        if generated.outcome == "accepted" and "state_key" in pdu:
            self._remember(generated, pdu)
        if generated.prev_count < 2:
            return
        shapes.merges += 1
        if generated.prev_count >= 3:
            shapes.merges3 += 1
        if not generated.conflicted_keys:
            return
        shapes.conflicted += 1
        kinds = {key_kind(key) for key in generated.conflicted_keys}
        if generated.partial_keys:
            kinds.add("partial")
        nodes = [self._nodes[e] for e in generated.conflicted_events]
        if any(n.membership == "ban" for n in nodes):
            kinds.add("ban")
        shapes.by_kind.update(kinds)
        if self._crossing(generated):
            shapes.crossing += 1

    def _remember(self, generated: GeneratedEvent, pdu: dict[str, object]) -> None:
        auth = pdu["auth_events"]
        assert isinstance(auth, list)
        auth_ids = tuple(a[0] if isinstance(a, list) else a for a in auth)
        content = pdu["content"]
        assert isinstance(content, dict)
        membership = content.get("membership") if pdu["type"] == MEMBER else None
        power = pdu["type"] in ("m.room.power_levels", "m.room.join_rules") or (
            membership in ("leave", "ban") and pdu["sender"] != pdu["state_key"]
        )
        fork = server = None
        if generated.branch is not None:
            fork, server = generated.branch.split(":", 1)
        self._nodes[generated.event_id] = _Node(
            auth_ids, fork, server, power, membership if isinstance(membership, str) else None
        )

    def _crossing(self, merge: GeneratedEvent) -> bool:
        if merge.branch is None:
            return False
        fork = merge.branch.split(":", 1)[0]
        chains: list[tuple[str | None, set[str]]] = []
        for event_id in merge.conflicted_events:
            node = self._nodes[event_id]
            if node.power and node.fork == fork:
                chains.append((node.server, self._chain_in_fork(event_id, fork)))
        for i, (server, chain) in enumerate(chains):
            for other_server, other_chain in chains[i + 1 :]:
                if server != other_server and not chain.isdisjoint(other_chain):
                    return True
        return False

    def _chain_in_fork(self, event_id: str, fork: str) -> set[str]:
        """The event and its auth ancestors built during `fork`."""
        seen = {event_id}
        stack = [event_id]
        nodes = self._nodes
        while stack:
            for parent in nodes[stack.pop()].auth:
                node = nodes.get(parent)
                if node is not None and node.fork == fork and parent not in seen:
                    seen.add(parent)
                    stack.append(parent)
        return seen
