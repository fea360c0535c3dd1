"""Forks: several servers extend their own branch of the room for many events, merge some
branches into others on the way, and finally merge them all.

A fork starts from the room's state (its single forward extremity). Two or three servers
with joined users each get a `Branch`: a copy of that view that only their users act on
(`origin` is always the sender's server). Each branch lives for 2–50 events of its own:
messages, profile changes, joins and rejoins, leaves, invites, knocks, kicks, bans, unbans,
power-level and join-rule changes, topics and names, and unauthorised events. Nothing keeps
the branches apart, so they change the same keys: a user banned on one branch changes their
display name or leaves on another, two servers' admins promote and demote, moderators set
different join rules, a topic exists on one branch only (a key absent from the other states).

Mid-fork, a branch sometimes merges one or two other branches' tips into its own (a *partial
merge*) and carries on; the branches it merged carry on too. So later power events on both
sides cite the same member and power-level events in their auth events: their auth chains
cross. A branch whose tip another branch has already merged catches up (takes that branch's
view) instead. The fork ends with a merge of every remaining forward extremity (2–3).

A merge event's state before is the roomserver's resolution of the states after its prev
events (`RoomDag.resolve`); its sender is joined in that resolved state. The keys on which
those states disagree are recorded on the event (`GeneratedEvent.conflicted_keys`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from processor.generate.membership import MembershipActions
from processor.generate.model import POWER_LEVELS
from processor.generate.power import PowerActions
from processor.generate.rejections import RejectedActions
from processor.generate.view import IndexedSet, RoomView

__all__ = ["Branch", "ForkActions"]


@dataclass(slots=True)
class Branch:
    """One server's branch of a fork."""

    server: str
    view: RoomView
    #: Events this branch still gets to send.
    budget: int
    #: Every event that has been this branch's tip or was merged into it: another branch's
    #: tip found here is an ancestor of this branch's tip.
    known: set[str] = field(default_factory=set)

    @property
    def tip(self) -> str:
        return self.view.tips[0]


class ForkActions(MembershipActions, PowerActions, RejectedActions):
    def _fork_action(self) -> bool:
        """Two or three servers build on the current tip at once, then merge."""
        base = self.main
        candidates = [s for s in self._server_names() if base.count("join", s) > 0]
        if len(candidates) < 2 or len(base.tips) != 1:
            return False
        self.rng.shuffle(candidates)
        width = min(len(candidates), self.rng.choice((2, 3, 3)))
        branches = [
            Branch(server, base.copy(), self._branch_budget(), {base.tips[0]})
            for server in candidates[:width]
        ]
        self._in_fork = True
        self._forks += 1
        if self.rng.random() < 0.3:
            self._soft_fail_on_fork(branches)
        if self.rng.random() < 0.4:
            self._cross_on_fork(branches)
        while True:
            active = [b for b in branches if b.budget > 0]
            if not active:
                break
            branch = self.rng.choice(active)
            branch.budget -= 1
            self._branch_step(branch, branches)
        self._branch = f"{self._forks}:*"
        self._merge_all()
        self._branch = None
        self._in_fork = False
        self._hot = IndexedSet()
        return True

    def _branch_budget(self) -> int:
        roll = self.rng.random()
        if roll < 0.5:
            return self.rng.randint(2, 8)
        if roll < 0.88:
            return self.rng.randint(8, 20)
        return self.rng.randint(20, 50)

    def _branch_step(self, branch: Branch, branches: list[Branch]) -> None:
        view, server = branch.view, branch.server
        self._branch = f"{self._forks}:{server}"
        knock = 1.5 if self.version.knock else 0.0
        weights: list[tuple[Callable[[RoomView, str], bool], float]] = [
            (self._message_action, 38),
            (self._profile_action, 4),
            (self._join_action, 6),
            (self._leave_action, 3),
            (self._invite_action, 3),
            (self._knock_action, knock),
            (self._kick_action, 3),
            (self._ban_action, 2.5),
            (self._unban_action, 1.5),
            (self._power_levels_action, 3.5),
            (self._join_rules_action, 2.5),
            (self._topic_action, 2),
            (self._name_action, 1),
            (self._rejected_action, 3),
            (lambda v, s: self._partial_merge(branch, branches), 3),
        ]
        actions = [a for a, _ in weights]
        chosen = self.rng.choices(actions, weights=[w for _, w in weights])[0]
        if not chosen(view, server):
            self._message_action(branch.view, server)
        branch.known.add(branch.tip)

    def _cross_on_fork(self, branches: list[Branch]) -> None:
        """Tangle the branches' auth chains on purpose: an admin on one branch changes the
        power levels, another branch merges that in, and then both send power events
        (kicks, bans, power-level or join-rule changes) — which all cite the same power
        levels event: at the next merge, conflicted power events whose auth chains cross."""
        admins = [
            b for b in branches
            if self._joined_with(b.view, self._required(b.view, POWER_LEVELS, True), b.server)
        ]  # fmt: skip
        if not admins:
            return
        first = self.rng.choice(admins)
        second = self.rng.choice([b for b in branches if b is not first])
        self._branch = f"{self._forks}:{first.server}"
        if not self._power_levels_action(first.view, first.server):
            return
        first.known.add(first.tip)
        self._branch = f"{self._forks}:{second.server}"
        if second.tip in first.known:
            # Diverge first: a merge names no prev event that is an ancestor of another.
            self._message_action(second.view, second.server)
            second.known.add(second.tip)
        if second.tip in first.known or not self._merge_branches(second, [first]):
            return
        for branch in (second, first):
            self._branch = f"{self._forks}:{branch.server}"
            actions = [
                self._kick_action, self._ban_action, self._power_levels_action,
                self._join_rules_action, self._unban_action,
            ]  # fmt: skip
            self.rng.shuffle(actions)
            for action in actions:
                if action(branch.view, branch.server):
                    branch.known.add(branch.tip)
                    break

    def _partial_merge(self, branch: Branch, branches: list[Branch]) -> bool:
        """Merge one or two other branches' tips into this branch (or catch up with a branch
        that has already merged this one)."""
        others = [
            b for b in branches
            if b is not branch and b.tip != branch.tip and b.tip not in branch.known
        ]  # fmt: skip
        if not others:
            return False
        ahead = [b for b in others if branch.tip in b.known]
        if ahead:
            # That server has seen everything this one has: this one catches up.
            leader = self.rng.choice(ahead)
            branch.view = leader.view.copy()
            branch.known = set(leader.known)
            return False  # and sends a message on top
        count = 2 if len(others) >= 2 and self.rng.random() < 0.4 else 1
        return self._merge_branches(branch, self.rng.sample(others, count))

    def _merge_branches(self, branch: Branch, merged: list[Branch]) -> bool:
        """`branch` merges the tips of `merged` into its own."""
        views = [branch.view] + [b.view for b in merged]
        resolved = self._merge(views, branch.server)
        if resolved is None:
            return False
        branch.view = resolved
        for other in merged:
            branch.known |= other.known
        branch.known.add(branch.tip)
        return True

    def _merge(self, views: list[RoomView], server: str | None) -> RoomView | None:
        """A merge event naming each view's tip as a prev event, sent by a user (of
        `server`, if possible) joined in the resolved state; the resolved view with the
        merge event as its tip, or None if it was not accepted."""
        conflicts = self.dag.conflicts(views)
        resolved = self.dag.resolve(views)
        sender = resolved.pick(self.rng, "join", server) or resolved.pick(self.rng, "join")
        if sender is None:
            return None
        body = {"msgtype": "m.text", "body": self._text()}
        generated = self._emit(
            resolved, sender, "m.room.message", body, kind="merge",
            prev_event_ids=[v.tips[0] for v in views], conflicts=conflicts,
        )  # fmt: skip
        return resolved if generated.outcome == "accepted" else None

    def _merge_all(self) -> None:
        """End the fork: merge every forward extremity (each a branch's tip)."""
        extremities = self.dag.extremities
        if len(extremities) == 1:
            self.main = extremities[0][1]
            return
        views = [view for _, view in extremities]
        merged = self._merge(views, None)
        if merged is None:
            # Not expected (the merge is checked against the same states it resolves), but
            # the room must go on from a single extremity: the creator merges.
            raise RuntimeError(f"room {self.room_id}: the merge at the end of a fork failed")
        self.main = merged

    def _soft_fail_on_fork(self, branches: list[Branch]) -> None:
        """A moderator on one branch kicks a user of another branch, whose server has not
        seen the kick yet when that user speaks: the message passes against the state before
        it and fails against the room's current state, so it is soft-failed (server-server
        API "Checks performed on receipt of a PDU", step 6)."""
        first, second = self.rng.sample(branches, 2)
        kicker = self._joined_with(
            first.view, self._named_level(first.view, "kick"), first.server
        )
        if kicker is None:
            return
        level = self._level(first.view, kicker)
        victim = second.view.pick(
            self.rng, "join", second.server,
            lambda u: u != self.creator and self._level(second.view, u) < level,
        )  # fmt: skip
        if victim is None:
            return
        self._branch = f"{self._forks}:{first.server}"
        self._member(first.view, kicker, victim, "leave", kind="kick")
        first.known.add(first.tip)
        body = {"msgtype": "m.text", "body": self._text()}
        self._branch = f"{self._forks}:{second.server}"
        self._emit(second.view, victim, "m.room.message", body, kind="soft_fail")
