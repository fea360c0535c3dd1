"""Membership actions: messages, joins and rejoins, restricted joins, profile changes,
leaves, invites, knocks, kicks, bans and unbans.

Each takes the view to build on (the room's state by default) and, on a branch, the server
whose users act there. Targets of kicks, bans and unbans may be anyone's users; during a
fork they are often users another branch has just changed (`SimulationBase._target`), which
is what makes merges conflict on memberships and bans.
"""

from __future__ import annotations

from typing import Any

from processor.generate.building import SimulationBase
from processor.generate.view import RoomView, server_of

__all__ = ["MembershipActions"]


class MembershipActions(SimulationBase):
    def _message_action(self, view: RoomView | None = None, server: str | None = None) -> bool:
        view = view or self.main
        sender = None
        if self._in_fork and self.rng.random() < 0.7:
            # Mostly users whose membership the branches agree on: a message from any other
            # needs the room's current state resolved to tell accepted from soft-failed.
            agreed = self.dag.agrees_on_member
            sender = view.pick(self.rng, "join", server, lambda u: agreed(view, u))
        sender = sender or view.pick(self.rng, "join", server)
        if sender is None:
            return False
        msgtype = self.rng.choices(("m.text", "m.notice", "m.emote"), weights=(90, 5, 5))[0]
        self._emit(
            view, sender, "m.room.message", {"msgtype": msgtype, "body": self._text()},
            kind="message",
        )  # fmt: skip
        return True

    def _join_action(self, view: RoomView | None = None, server: str | None = None) -> bool:
        view = view or self.main
        rule = self._join_rule(view)
        # Accepting an invite works under every join rule.
        invited = view.pick(self.rng, "invite", server)
        if invited is not None and self.rng.random() < 0.7:
            self._member(view, invited, invited, "join", kind="join_after_invite")
            return True
        if rule == "public":
            user = self._outsider(view, server)
            kind = "rejoin" if view.membership(user) == "leave" else "join"
            self._member(view, user, user, "join", kind=kind)
            return True
        if rule in ("restricted", "knock_restricted"):
            return self._restricted_join(view, server)
        return False

    def _restricted_join(self, view: RoomView, server: str | None) -> bool:
        """v8+: a join vouched for by a resident user who may invite (rule 5.3.5), signed by
        the joining user's server and by the authorising user's server (rule 5.2)."""
        authoriser = self._joined_with(view, self._named_level(view, "invite"))
        if authoriser is None:
            return False
        if self.rng.random() < 0.3:
            user = view.pick(self.rng, "knock", server)
            user = user or self._outsider(view, server)
        else:
            user = self._outsider(view, server)
        if user == authoriser:
            return False
        self._member(
            view, user, user, "join", kind="restricted_join",
            extra={"join_authorised_via_users_server": authoriser},
            also_signed_by=server_of(authoriser),
        )  # fmt: skip
        return True

    def _profile_action(self, view: RoomView | None = None, server: str | None = None) -> bool:
        """A joined user changes their display name (a join over a join)."""
        view = view or self.main
        user = view.pick(self.rng, "join", server)
        if user is None:
            return False
        name = f"{user[1:].split(':', 1)[0].capitalize()} ({self._text(1, 2).lower()})"
        self._member(view, user, user, "join", kind="profile", extra={"displayname": name})
        return True

    def _leave_action(self, view: RoomView | None = None, server: str | None = None) -> bool:
        view = view or self.main
        roll = self.rng.random()
        if roll < 0.15:
            user = view.pick(self.rng, "invite", server)
            kind = "reject_invite"
        elif roll < 0.25 and self.version.knock:
            user = view.pick(self.rng, "knock", server)
            kind = "retract_knock"
        else:
            user = view.pick(self.rng, "join", server, lambda u: u != self.creator)
            kind = "leave"
        if user is None:
            return False
        self._member(view, user, user, "leave", kind=kind)
        return True

    def _invite_action(self, view: RoomView | None = None, server: str | None = None) -> bool:
        view = view or self.main
        inviter = self._joined_with(view, self._named_level(view, "invite"), server)
        if inviter is None:
            return False
        target = None
        if self.version.knock and self.rng.random() < 0.5:
            target = view.pick(self.rng, "knock")
        if target is None:
            target = self._outsider(view, None)
        if target == inviter:
            return False
        kind = "invite_after_knock" if view.membership(target) == "knock" else "invite"
        self._member(view, inviter, target, "invite", kind=kind)
        return True

    def _kick_action(self, view: RoomView | None = None, server: str | None = None) -> bool:
        view = view or self.main
        kicker = self._joined_with(view, self._named_level(view, "kick"), server)
        if kicker is None:
            return False
        level = self._level(view, kicker)
        membership = self.rng.choices(("join", "invite", "knock"), weights=(8, 1, 1))[0]
        target = self._target(
            view, membership,
            lambda u: u not in (kicker, self.creator) and self._level(view, u) < level,
        )  # fmt: skip
        if target is None:
            return False
        kind = {"join": "kick", "invite": "revoke_invite", "knock": "deny_knock"}[membership]
        self._member(view, kicker, target, "leave", kind=kind, extra={"reason": self._text(1, 4)})
        return True

    def _ban_action(self, view: RoomView | None = None, server: str | None = None) -> bool:
        view = view or self.main
        banner = self._joined_with(view, self._named_level(view, "ban"), server)
        if banner is None:
            return False
        level = self._level(view, banner)
        target: str | None
        if self.rng.random() < 0.8:
            membership = self.rng.choice(("join", "join", "join", "leave", "invite"))
            target = self._target(
                view, membership,
                lambda u: u not in (banner, self.creator) and self._level(view, u) < level,
            )  # fmt: skip
        else:
            target = self._outsider(view, None)  # pre-emptive ban of a non-member
        if target is None or target == banner or self._level(view, target) >= level:
            return False
        extra: dict[str, Any] = {"reason": self._text(1, 4)}
        self._member(view, banner, target, "ban", kind="ban", extra=extra)
        return True

    def _unban_action(self, view: RoomView | None = None, server: str | None = None) -> bool:
        view = view or self.main
        need = max(self._named_level(view, "ban"), self._named_level(view, "kick"))
        unbanner = self._joined_with(view, need, server)
        if unbanner is None:
            return False
        level = self._level(view, unbanner)
        target = self._target(view, "ban", lambda u: self._level(view, u) < level)
        if target is None:
            return False
        self._member(view, unbanner, target, "leave", kind="unban")
        return True

    def _knock_action(self, view: RoomView | None = None, server: str | None = None) -> bool:
        view = view or self.main
        if not self.version.knock or self._join_rule(view) not in ("knock", "knock_restricted"):
            return False
        user = self._outsider(view, server)
        self._member(view, user, user, "knock", kind="knock", extra={"reason": self._text(1, 5)})
        return True
