"""Power-level and join-rule changes, other room state (topic, name, history visibility),
and redactions.

On a branch the sender is one of the branch server's users with the level the change needs,
so two branches whose servers both have admins (or moderators, for join rules) change the
power levels (promotions, demotions, self-demotions, required levels) or the join rules
independently, and the merge has to resolve them.
"""

from __future__ import annotations

from typing import Any

from processor.generate.building import SimulationBase
from processor.generate.model import ADMIN, JOIN_RULES, MODERATOR, POWER_LEVELS
from processor.generate.view import RoomView

__all__ = ["PowerActions"]


class PowerActions(SimulationBase):
    def _power_levels_action(
        self, view: RoomView | None = None, server: str | None = None
    ) -> bool:
        """Authorization rule 10 (v12 numbering): every level changed or removed (other than
        the sender's own) is below the sender's, and no new level is above it."""
        view = view or self.main
        sender = self._joined_with(view, self._required(view, POWER_LEVELS, True), server)
        if sender is None:
            return False
        own = self._level(view, sender)
        pl = view.content(POWER_LEVELS)
        assert pl is not None
        content = {**pl, "users": dict(pl["users"]), "events": dict(pl["events"])}
        users: dict[str, int] = content["users"]
        roll = self.rng.random()
        # Rooms keep a handful of moderators and admins: past a dozen, mostly demotions.
        promote = 0.45 if len(users) < 12 else 0.1
        if roll < promote:
            new = ADMIN if own >= ADMIN and self.rng.random() < 0.35 else MODERATOR
            target = self._target(
                view, "join", lambda u: u != sender and self._level(view, u) < min(new, own)
            )
            if target is None:
                return False
            users[target] = new
            kind = "promote"
        elif roll < 0.75:
            demotable = [u for u, level in users.items() if u != sender and 0 < level < own]
            if not demotable:
                return False
            target = self.rng.choice(demotable)
            if users[target] > MODERATOR and self.rng.random() < 0.5:
                users[target] = MODERATOR
            else:
                del users[target]
            kind = "demote"
        elif roll < 0.82 and users.get(sender, 0) >= ADMIN and sender != self.creator:
            users[sender] = MODERATOR
            kind = "self_demote"
        elif roll < 0.91:
            # Let everyone set the topic, or take that back (state_default applies again).
            if "m.room.topic" in content["events"]:
                del content["events"]["m.room.topic"]
            else:
                content["events"]["m.room.topic"] = 0
            kind = "power_levels"
        else:
            content["invite"] = MODERATOR if content["invite"] == 0 else 0
            kind = "power_levels"
        self._emit(view, sender, POWER_LEVELS, content, "", kind=kind)
        return True

    def _join_rules_action(self, view: RoomView | None = None, server: str | None = None) -> bool:
        view = view or self.main
        sender = self._joined_with(view, self._required(view, JOIN_RULES, True), server)
        if sender is None:
            return False
        rules = ["public", "public", "invite"]
        if self.version.knock:
            rules.append("knock")
        if self.version.restricted_join:
            rules += ["restricted", "restricted"]
        if self.version.knock_restricted:
            rules.append("knock_restricted")
        current = self._join_rule(view)
        rule = self.rng.choice([r for r in rules if r != current])
        content: dict[str, Any] = {"join_rule": rule}
        if rule in ("restricted", "knock_restricted"):
            content["allow"] = [
                {"type": "m.room_membership", "room_id": f"!space{self.room_index}:s1.example"}
            ]
        self._emit(view, sender, JOIN_RULES, content, "", kind=f"join_rules:{rule}")
        return True

    def _state_action(
        self, event_type: str, content: dict[str, Any], kind: str,
        view: RoomView | None = None, server: str | None = None,
    ) -> bool:  # fmt: skip
        view = view or self.main
        sender = self._joined_with(view, self._required(view, event_type, True), server)
        if sender is None:
            return False
        self._emit(view, sender, event_type, content, "", kind=kind)
        return True

    def _topic_action(self, view: RoomView | None = None, server: str | None = None) -> bool:
        return self._state_action(
            "m.room.topic", {"topic": self._text(3, 10)}, "topic", view, server
        )

    def _name_action(self, view: RoomView | None = None, server: str | None = None) -> bool:
        name = f"Room {self.room_index}: {self._text(1, 3)}"
        return self._state_action("m.room.name", {"name": name}, "name", view, server)

    def _history_visibility_action(
        self, view: RoomView | None = None, server: str | None = None
    ) -> bool:
        value = self.rng.choice(("shared", "invited", "joined", "world_readable"))
        return self._state_action(
            "m.room.history_visibility", {"history_visibility": value}, "history_visibility",
            view, server,
        )  # fmt: skip

    def _redaction_action(self) -> bool:
        view = self.main
        if not self._messages:
            return False
        target_id, target_sender = self._messages[self.rng.randrange(len(self._messages))]
        if view.membership(target_sender) == "join" and self.rng.random() < 0.7:
            redactor: str | None = target_sender  # redacting one's own message
        else:
            # A moderator: allowed by the redact level (v1/v2 auth rule; v3+ "Handling
            # redactions").
            redactor = self._joined_with(view, self._named_level(view, "redact"))
        if redactor is None:
            return False
        content: dict[str, Any] = {}
        if self.rng.random() < 0.5:
            content["reason"] = self._text(1, 4)
        self._emit(
            view, redactor, "m.room.redaction", content, kind="redaction", redacts=target_id
        )
        return True
