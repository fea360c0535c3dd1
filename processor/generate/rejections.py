"""Deliberately unauthorised events: each must be rejected by the authorization rules
against the state of the view it is built on (rule numbers of the room version 12 page).

On a branch the sender is one of the branch server's users where the rule allows a choice.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from processor.generate.building import SimulationBase
from processor.generate.model import ADMIN, MEMBER, MODERATOR, POWER_LEVELS
from processor.generate.view import RoomView, server_of

__all__ = ["RejectedActions"]


class RejectedActions(SimulationBase):
    def _rejected_action(self, view: RoomView | None = None, server: str | None = None) -> bool:
        """One event the authorization rules must reject."""
        view = view or self.main
        options: list[Callable[[RoomView, str | None], bool]] = [
            self._reject_non_member_message,
            self._reject_kick_without_level,
            self._reject_ban_without_level,
            self._reject_state_below_level,
            self._reject_join_without_invite,
            self._reject_power_levels_without_level,
            self._reject_banned_join,
            self._reject_invite_by_non_member,
            self._reject_kick_higher,
            self._reject_demote_equal,
        ]
        if self.version.knock:
            options.append(self._reject_knock_wrong_join_rule)
        if self.version.restricted_join:
            options.append(self._reject_restricted_join_bad_authoriser)
        self.rng.shuffle(options)
        return any(option(view, server) for option in options)

    def _reject(
        self, view: RoomView, sender: str, event_type: str, content: dict[str, Any],
        state_key: str | None = None, *, kind: str, also_signed_by: str | None = None,
    ) -> bool:  # fmt: skip
        self._emit(
            view, sender, event_type, content, state_key, kind=f"reject:{kind}",
            outcome="rejected", also_signed_by=also_signed_by,
        )  # fmt: skip
        return True

    def _reject_non_member_message(self, view: RoomView, server: str | None) -> bool:
        # Rule 6: the sender's membership is not join.
        sender = self._outsider(view, server)
        content = {"msgtype": "m.text", "body": self._text()}
        return self._reject(view, sender, "m.room.message", content, kind="non_member_message")

    def _reject_kick_without_level(self, view: RoomView, server: str | None) -> bool:
        # Rule 5.5.4/5.5.5: the sender is below the kick level.
        sender = self._joined_below(view, self._named_level(view, "kick"), server)
        if sender is None:
            return False
        target = view.pick(self.rng, "join", None, lambda u: u != sender)
        if target is None:
            return False
        content = {"membership": "leave"}
        return self._reject(view, sender, MEMBER, content, target, kind="kick_without_level")

    def _reject_kick_higher(self, view: RoomView, server: str | None) -> bool:
        # Rule 5.5.5: the target's level is not below the sender's (a moderator kicking an
        # admin or another moderator).
        kick = self._named_level(view, "kick")
        sender = self._joined_with(view, kick, server)
        if sender is None:
            return False
        level = self._level(view, sender)
        target = view.pick(
            self.rng, "join", None, lambda u: u != sender and self._level(view, u) >= level
        )
        if target is None:
            return False
        content = {"membership": "leave"}
        return self._reject(view, sender, MEMBER, content, target, kind="kick_higher")

    def _reject_ban_without_level(self, view: RoomView, server: str | None) -> bool:
        # Rule 5.6.2/5.6.3: the sender is below the ban level.
        sender = self._joined_below(view, self._named_level(view, "ban"), server)
        if sender is None:
            return False
        target = view.pick(self.rng, "join", None, lambda u: u != sender)
        if target is None:
            return False
        content = {"membership": "ban"}
        return self._reject(view, sender, MEMBER, content, target, kind="ban_without_level")

    def _reject_state_below_level(self, view: RoomView, server: str | None) -> bool:
        # Rule 8: the event type's required level is above the sender's.
        event_type, content = self.rng.choice(
            (
                ("m.room.topic", {"topic": self._text(2, 6)}),
                ("m.room.name", {"name": self._text(1, 3)}),
                ("m.room.history_visibility", {"history_visibility": "joined"}),
            )
        )
        sender = self._joined_below(view, self._required(view, event_type, True), server)
        if sender is None:
            return False
        return self._reject(view, sender, event_type, content, "", kind="state_below_level")

    def _reject_join_without_invite(self, view: RoomView, server: str | None) -> bool:
        # Rule 5.3.4/5.3.7 (invite, knock) and 5.3.5.2 (restricted without an authoriser).
        if self._join_rule(view) == "public":
            return False
        user = self._outsider(view, server)
        if view.membership(user) is not None and view.membership(user) != "leave":
            return False
        content = {"membership": "join"}
        return self._reject(view, user, MEMBER, content, user, kind="join_without_invite")

    def _reject_power_levels_without_level(self, view: RoomView, server: str | None) -> bool:
        # Rule 8: m.room.power_levels needs level 100.
        sender = self._joined_below(view, self._required(view, POWER_LEVELS, True), server)
        if sender is None:
            return False
        pl = view.content(POWER_LEVELS)
        assert pl is not None
        content = {**pl, "users": {**pl["users"], sender: MODERATOR}}
        return self._reject(
            view, sender, POWER_LEVELS, content, "", kind="power_levels_without_level"
        )

    def _reject_demote_equal(self, view: RoomView, server: str | None) -> bool:
        # Rule 10.5: an admin lowers the level of a user at or above their own (another
        # admin, or the creator before v12).
        sender = self._joined_with(view, self._required(view, POWER_LEVELS, True), server)
        if sender is None:
            return False
        level = self._level(view, sender)
        pl = view.content(POWER_LEVELS)
        assert pl is not None
        users: dict[str, int] = dict(pl["users"])
        equal = [u for u, lvl in users.items() if u != sender and lvl >= level]
        if not equal:
            return False
        target = self.rng.choice(equal)
        users[target] = MODERATOR if users[target] >= ADMIN else 0
        content = {**pl, "users": users}
        return self._reject(view, sender, POWER_LEVELS, content, "", kind="demote_equal")

    def _reject_banned_join(self, view: RoomView, server: str | None) -> bool:
        # Rule 5.3.3: the sender is banned.
        user = view.pick(self.rng, "ban", server)
        if user is None:
            return False
        return self._reject(view, user, MEMBER, {"membership": "join"}, user, kind="banned_join")

    def _reject_invite_by_non_member(self, view: RoomView, server: str | None) -> bool:
        # Rule 5.4.2: the inviter is not joined.
        sender = self._outsider(view, server)
        target = self._outsider(view, None)
        if target == sender:
            return False
        content = {"membership": "invite"}
        return self._reject(view, sender, MEMBER, content, target, kind="invite_by_non_member")

    def _reject_knock_wrong_join_rule(self, view: RoomView, server: str | None) -> bool:
        # Rule 5.7.1 (v7+): knocking where the join rule is not knock/knock_restricted.
        if self._join_rule(view) in ("knock", "knock_restricted"):
            return False
        user = self._outsider(view, server)
        content = {"membership": "knock"}
        return self._reject(view, user, MEMBER, content, user, kind="knock_wrong_join_rule")

    def _reject_restricted_join_bad_authoriser(self, view: RoomView, server: str | None) -> bool:
        # Rule 5.3.5.2 (v8+): the authorising user is not a joined member.
        if self._join_rule(view) not in ("restricted", "knock_restricted"):
            return False
        authoriser = view.pick(self.rng, "leave")
        if authoriser is None:
            return False
        user = self._outsider(view, server)
        if user == authoriser:
            return False
        content = {"membership": "join", "join_authorised_via_users_server": authoriser}
        return self._reject(
            view, user, MEMBER, content, user, kind="restricted_join_bad_authoriser",
            also_signed_by=server_of(authoriser),
        )  # fmt: skip
