"""The simulation of one room: who does what, and what the roomserver must decide about it.

A `RoomSimulation` plays every user and server of a room. Each step picks an action with a
realistic weight (mostly messages; joins and rejoins, leaves, invites, kicks, bans, unbans,
knocks, restricted joins, power-level and join-rule changes, topics, names, history
visibility, redactions, and forks), builds the event against its own view of the room's
state, and records the outcome the authorization rules must give it:

- ``accepted`` — passes against the state before it and the room's current state;
- ``rejected`` — deliberately unauthorised (a non-member's message, a kick or ban without the
  level, a state event below its required level, a join without an invite, an admin demoting
  an equal, ...). Nothing is ever built on a rejected event;
- ``soft_failed`` — passes against the state before it (its branch's view), fails against
  the room's current state (a message from a user kicked or banned on another branch).
  Nothing is built on it either.

Forks (`branches`) are where the room's servers disagree: long-lived branches that change the
same state keys — power levels, join rules, memberships, bans — and merge 2–3 at a time, with
the state before each merge resolved by the roomserver's own state resolution (`dag`). The
actions live in mixins: `membership`, `power`, `rejections`, `branches`; the event building
in `building`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from processor.generate.branches import ForkActions
from processor.generate.model import (
    INITIAL_EVENT_LEVELS,
    JOIN_RULES,
    POWER_LEVELS,
    Clock,
    GeneratedEvent,
    IntendedOutcome,
)

__all__ = ["Clock", "GeneratedEvent", "IntendedOutcome", "RoomSimulation"]


class RoomSimulation(ForkActions):
    """Generates the events of one room, in the order they are to be produced."""

    _started = False

    def next_event(self) -> GeneratedEvent:
        """The next event of this room."""
        while not self._pending:
            if not self._started:
                self._started = True
                self._create_room()
            else:
                self._step()
        return self._pending.popleft()

    def _step(self) -> None:
        joined = self.main.count("join")
        weights: list[tuple[Callable[[], bool], float]] = [
            (self._message_action, 48),
            (self._join_action, 30 if joined < 5 else 7),
            (self._leave_action, 3 if joined > 3 else 0.5),
            (self._invite_action, 4),
            (self._kick_action, 1.5),
            (self._ban_action, 1),
            (self._unban_action, 1.5 if self.main.count("ban") else 0),
            (self._knock_action, 3 if self.version.knock else 0),
            (self._power_levels_action, 1.5),
            (self._join_rules_action, 1.2),
            (self._topic_action, 2),
            (self._name_action, 1),
            (self._history_visibility_action, 0.5),
            (self._redaction_action, 3),
            (self._rejected_action, 4),
            (self._fork_action, 3 if joined >= 3 else 0),
        ]
        actions = [a for a, _ in weights]
        chosen = self.rng.choices(actions, weights=[w for _, w in weights])[0]
        if not chosen():
            self._message_action()

    def _create_room(self) -> None:
        version = self.version
        first = self.servers[0].server_name
        self.creator = self._new_user(first)
        if not version.room_id_is_create_event_hash:
            local = "".join(self.rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(18))
            self.room_id = f"!{local}:{first}"
        create_content: dict[str, Any] = {"room_version": version.id}
        if not version.implicit_room_creator:
            create_content["creator"] = self.creator  # v1–v10; v11+ uses the sender
        view = self.main
        self._emit(view, self.creator, "m.room.create", create_content, "", kind="create")
        self._member(view, self.creator, self.creator, "join", kind="join")
        users: dict[str, int] = {}
        if not version.privileged_creators:
            users[self.creator] = 100  # v12 forbids listing creators (MSC4289)
        self._emit(
            view, self.creator, POWER_LEVELS,
            {
                "users": users, "users_default": 0, "events": dict(INITIAL_EVENT_LEVELS),
                "events_default": 0, "state_default": 50, "ban": 50, "kick": 50,
                "redact": 50, "invite": 0, "notifications": {"room": 50},
            },
            "", kind="power_levels",
        )  # fmt: skip
        self._emit(view, self.creator, JOIN_RULES, {"join_rule": "public"}, "", kind="join_rules")
        self._emit(
            view, self.creator, "m.room.history_visibility",
            {"history_visibility": "shared"}, "", kind="history_visibility",
        )  # fmt: skip
        self._emit(
            view, self.creator, "m.room.name", {"name": f"Room {self.room_index}"}, "",
            kind="name",
        )  # fmt: skip
