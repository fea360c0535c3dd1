"""The simulation of one room: who does what, and what the roomserver must decide about it.

A `RoomSimulation` plays every user and server of a room. Each step picks an action with a
realistic weight (mostly messages; joins, leaves, invites, kicks, bans, unbans, knocks,
restricted joins, power-level and join-rule changes, topics, names, history visibility,
redactions), builds the event against its own view of the room's state, and records the
outcome the authorization rules must give it:

- ``accepted`` — built to pass the rules against the state before it and the current state;
- ``rejected`` — deliberately unauthorised (a non-member's message, a kick or ban without the
  level, a state event below its required level, a join without an invite, ...). Nothing is
  ever built on a rejected event;
- ``soft_failed`` — passes against the state before it, fails against the current state
  (a message from a user kicked on another branch). Nothing is built on it either.

Forks: a room's servers sometimes build on the same event at once. Each branch belongs to one
server, and only that server's users act on it, so branches change disjoint state keys
(their own users' memberships; the topic or the name on one branch only) and never the power
levels or join rules. A user who vouches for a change on a branch (inviter, kicker, restricted
join authoriser, topic/name setter) keeps their membership until the merge; in v1 rooms each
user's membership changes at most once per fork. The state after merging the branches is
then the union of their changes under every state resolution algorithm (v1, v2, v2.1), which
keeps the expected outcomes exact without resolving state here (the tests check this against
`processor.matrix.state_res`). A merge event names every branch tip in its `prev_events`
(2–3 of them). The one deliberate cross-branch change is the soft-fail scenario's kick.
"""

from __future__ import annotations

import math
import random
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from processor.generate.auth_selection import auth_state_keys
from processor.generate.keys import ServerKey
from processor.generate.pdus import PduFactory
from processor.generate.view import RoomView, StateEntry, server_of
from processor.matrix.room_versions import RoomVersion, StateResAlgorithm

__all__ = ["Clock", "GeneratedEvent", "Outcome", "RoomSimulation"]

Outcome = Literal["accepted", "rejected", "soft_failed"]

MEMBER = "m.room.member"
POWER_LEVELS = "m.room.power_levels"
JOIN_RULES = "m.room.join_rules"

#: The levels a room starts with (those of a typical "private_chat"/"public_chat" preset).
_INITIAL_EVENT_LEVELS = {
    "m.room.name": 50,
    "m.room.power_levels": 100,
    "m.room.history_visibility": 100,
    "m.room.canonical_alias": 50,
    "m.room.avatar": 50,
    "m.room.tombstone": 100,
    "m.room.server_acl": 100,
    "m.room.encryption": 100,
}
_MODERATOR = 50

_FIRST_NAMES = (
    "alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi", "ivan", "judy",
    "mallory", "niaj", "olivia", "peggy", "rupert", "sybil", "trent", "victor", "walter",
    "yasmin",
)  # fmt: skip
_WORDS = (
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


@dataclass(slots=True)
class _Branch:
    view: RoomView
    server: str
    budget: int


class RoomSimulation:
    """Generates the events of one room, in the order they are to be produced."""

    def __init__(
        self,
        rng: random.Random,
        version: RoomVersion,
        servers: list[ServerKey],
        clock: Clock,
        room_index: int,
        *,
        trace: bool = False,
    ) -> None:
        self.rng = rng
        self.trace = trace
        self.version = version
        self.servers = servers
        self.keys = {s.server_name: s for s in servers}
        self.clock = clock
        self.room_index = room_index
        self.pdus = PduFactory(version)
        self._v1_state_res = version.state_res is StateResAlgorithm.V1
        self._in_fork = False
        self.room_id = ""
        self.creator = ""
        self.main = RoomView()
        # Fork bookkeeping (empty outside forks), see `_fork_action`:
        #: users who must not act at all (kicked on another branch);
        self._frozen: set[str] = set()
        #: users whose membership vouched for another's change (inviters, authorisers,
        #: kickers): their own membership must not change until the merge;
        self._pinned: set[str] = set()
        #: users whose membership changed on some branch.
        self._touched: set[str] = set()
        self._depth: dict[str, int] = {}
        self._pending: deque[GeneratedEvent] = deque()
        self._user_counts: dict[str, int] = {s.server_name: 0 for s in servers}
        #: Recent accepted messages (event ID, sender), the targets of redactions.
        self._messages: deque[tuple[str, str]] = deque(maxlen=64)
        self._started = False

    # -- driving ---------------------------------------------------------------------------

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
            (self._power_levels_action, 1.2),
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

    # -- users and power ---------------------------------------------------------------------

    def _new_user(self, server: str) -> str:
        n = self._user_counts[server]
        self._user_counts[server] = n + 1
        name = _FIRST_NAMES[n % len(_FIRST_NAMES)]
        suffix = "" if n < len(_FIRST_NAMES) else str(n // len(_FIRST_NAMES))
        return f"@{name}{suffix}:{server}"

    def _server_names(self) -> list[str]:
        return [s.server_name for s in self.servers]

    def _outsider(self, view: RoomView, server: str | None) -> str:
        """A user who is not in the room (left earlier, or new), on `server` if given."""
        server = server or self.rng.choice(self._server_names())
        if self.rng.random() < 0.4:
            user = view.pick(self.rng, "leave", server, self._changeable)
            if user is not None:
                return user
        return self._new_user(server)

    def _free(self, user: str) -> bool:
        """May act (send messages, set state) on the branch being built."""
        return user not in self._frozen

    def _changeable(self, user: str) -> bool:
        """May have their own membership changed now. In a fork: not pinned by a change they
        vouched for and, in v1 rooms, not changed yet in this fork. v1 state resolution
        re-checks each conflicted membership against the other resolved memberships (room
        v1 page, "State resolution"), so a second change of the same user, or a change that
        depends on another change in the same fork, may resolve to the older state."""
        if user in self._frozen or user in self._pinned:
            return False
        return not (self._v1_state_res and user in self._touched)

    def _vouch(self, user: str) -> bool:
        """May vouch for another user's membership change (invite, kick, authorise a
        restricted join): their own membership is unchanged in this fork."""
        return user not in self._frozen and user not in self._touched
    def _level(self, view: RoomView, user: str) -> float:
        if self.version.privileged_creators and user == self.creator:
            return math.inf  # v12 (MSC4289): creators have infinite power
        pl = view.content(POWER_LEVELS)
        if pl is None:
            return 100 if user == self.creator else 0
        level: int = pl["users"].get(user, pl["users_default"])
        return level

    def _required(self, view: RoomView, event_type: str, is_state: bool) -> int:
        pl = view.content(POWER_LEVELS)
        if pl is None:
            return 0
        default = pl["state_default"] if is_state else pl["events_default"]
        level: int = pl["events"].get(event_type, default)
        return level

    def _named_level(self, view: RoomView, name: str) -> int:
        pl = view.content(POWER_LEVELS)
        assert pl is not None
        level: int = pl[name]
        return level

    def _joined_with(
        self, view: RoomView, at_least: float, server: str | None = None, *, vouch: bool = False
    ) -> str | None:
        """A joined user with at least level `at_least`. With `vouch`, one who may vouch for
        another's membership change, pinned for the rest of the fork."""
        allowed = self._vouch if vouch else self._free
        user = view.pick(
            self.rng, "join", server, lambda u: allowed(u) and self._level(view, u) >= at_least
        )
        if user is not None and vouch and self._in_fork:
            self._pinned.add(user)
        return user

    def _joined_below(
        self, view: RoomView, below: float, server: str | None = None
    ) -> str | None:
        return view.pick(
            self.rng, "join", server, lambda u: self._free(u) and self._level(view, u) < below
        )

    def _join_rule(self, view: RoomView) -> str:
        content = view.content(JOIN_RULES)
        return "invite" if content is None else str(content["join_rule"])

    # -- emitting ----------------------------------------------------------------------------

    def _opaque_event_id(self, server: str) -> str:
        alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
        local = "".join(alphabet[self.rng.randrange(62)] for _ in range(18))
        return f"${local}:{server}"

    def _emit(
        self,
        view: RoomView,
        sender: str,
        event_type: str,
        content: dict[str, Any],
        state_key: str | None = None,
        *,
        kind: str,
        outcome: Outcome = "accepted",
        prev_event_ids: list[str] | None = None,
        also_signed_by: str | None = None,
        redacts: str | None = None,
    ) -> str:
        origin = server_of(sender)
        prev = list(view.tips) if prev_event_ids is None else prev_event_ids
        auth_ids = [
            view.state[key].event_id
            for key in auth_state_keys(self.version, event_type, sender, state_key, content)
            if key in view.state
        ]
        depth = max((self._depth[p] for p in prev), default=0) + 1
        signers = [self.keys[origin]]
        if also_signed_by is not None and also_signed_by != origin:
            signers.append(self.keys[also_signed_by])
        is_v12_create = event_type == "m.room.create" and self.version.room_id_is_create_event_hash
        pdu, event_id = self.pdus.build(
            room_id=None if is_v12_create else self.room_id,
            sender=sender,
            event_type=event_type,
            content=content,
            state_key=state_key,
            prev_event_ids=prev,
            auth_event_ids=auth_ids,
            depth=depth,
            origin_server_ts=self.clock.tick(),
            signers=signers,
            opaque_event_id=(
                self._opaque_event_id(origin) if self.version.event_id_in_event else None
            ),
            redacts=redacts,
        )
        if is_v12_create:
            self.room_id = self.pdus.room_id_of_create(pdu)
        self._depth[event_id] = depth
        state_before = current_state = None
        if self.trace:
            state_before = {key: entry.event_id for key, entry in view.state.items()}
            current_state = {key: entry.event_id for key, entry in self.main.state.items()}
        self._pending.append(
            GeneratedEvent(
                input={
                    "kind": "new",
                    "event": pdu,
                    "room_version": self.version.id,
                    "origin": origin,
                    "send_as_server": "",
                },
                event_id=event_id,
                room_id=self.room_id,
                outcome=outcome,
                kind=kind,
                state_before=state_before,
                current_state=current_state,
            )
        )
        if outcome == "accepted":
            view.tips = [event_id]
            if state_key is not None:
                entry = StateEntry(event_id, sender, content)
                view.set_state(event_type, state_key, entry)
                if view is not self.main:
                    # The room's current state is the union of the branches' changes.
                    self.main.set_state(event_type, state_key, entry)
            elif event_type == "m.room.message":
                self._messages.append((event_id, sender))
        return event_id

    def _member(
        self,
        view: RoomView,
        sender: str,
        target: str,
        membership: str,
        *,
        kind: str,
        outcome: Outcome = "accepted",
        extra: dict[str, Any] | None = None,
        also_signed_by: str | None = None,
    ) -> str:
        content: dict[str, Any] = {"membership": membership}
        if membership == "join":
            content["displayname"] = target[1:].split(":", 1)[0].capitalize()
        if extra:
            content.update(extra)
        if self._in_fork and outcome == "accepted":
            self._touched.add(target)
        return self._emit(
            view, sender, MEMBER, content, target,
            kind=kind, outcome=outcome, also_signed_by=also_signed_by,
        )  # fmt: skip

    def _text(self, low: int = 2, high: int = 14) -> str:
        words = [self.rng.choice(_WORDS) for _ in range(self.rng.randint(low, high))]
        return " ".join(words).capitalize()

    # -- the room's beginning ------------------------------------------------------------------

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
                "users": users, "users_default": 0, "events": dict(_INITIAL_EVENT_LEVELS),
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

    # -- accepted actions ------------------------------------------------------------------------

    def _message_action(self, view: RoomView | None = None, server: str | None = None) -> bool:
        view = view or self.main
        sender = view.pick(self.rng, "join", server, self._free)
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
        invited = view.pick(self.rng, "invite", server, self._changeable)
        if invited is not None and self.rng.random() < 0.7:
            self._member(view, invited, invited, "join", kind="join_after_invite")
            return True
        if rule == "public":
            user = self._outsider(view, server)
            self._member(view, user, user, "join", kind="join")
            return True
        if rule in ("restricted", "knock_restricted"):
            return self._restricted_join(view, server)
        return False

    def _restricted_join(self, view: RoomView, server: str | None) -> bool:
        """v8+: a join vouched for by a resident user who may invite (rule 5.3.5), signed by
        the joining user's server and by the authorising user's server (rule 5.2)."""
        authoriser = self._joined_with(
            view, self._named_level(view, "invite"), server, vouch=True
        )
        if authoriser is None:
            return False
        if self.rng.random() < 0.3:
            user = view.pick(self.rng, "knock", server, self._changeable)
            user = user or self._outsider(view, server)
        else:
            user = self._outsider(view, server)
        self._member(
            view, user, user, "join", kind="restricted_join",
            extra={"join_authorised_via_users_server": authoriser},
            also_signed_by=server_of(authoriser),
        )  # fmt: skip
        return True

    def _leave_action(self, view: RoomView | None = None, server: str | None = None) -> bool:
        view = view or self.main
        roll = self.rng.random()
        if roll < 0.15:
            user = view.pick(self.rng, "invite", server, self._changeable)
            kind = "reject_invite"
        elif roll < 0.25 and self.version.knock:
            user = view.pick(self.rng, "knock", server, self._changeable)
            kind = "retract_knock"
        else:
            user = view.pick(
                self.rng, "join", server, lambda u: self._changeable(u) and u != self.creator
            )
            kind = "leave"
        if user is None:
            return False
        self._member(view, user, user, "leave", kind=kind)
        return True

    def _invite_action(self, view: RoomView | None = None, server: str | None = None) -> bool:
        view = view or self.main
        inviter = self._joined_with(view, self._named_level(view, "invite"), server, vouch=True)
        if inviter is None:
            return False
        target = None
        if self.version.knock and self.rng.random() < 0.5:
            target = view.pick(self.rng, "knock", server, self._changeable)
        if target is None:
            target = self._outsider(view, server)
        kind = "invite_after_knock" if view.membership(target) == "knock" else "invite"
        self._member(view, inviter, target, "invite", kind=kind)
        return True

    def _kick_action(self) -> bool:
        view = self.main
        kicker = self._joined_with(view, self._named_level(view, "kick"))
        if kicker is None:
            return False
        level = self._level(view, kicker)
        membership = self.rng.choices(("join", "invite", "knock"), weights=(8, 1, 1))[0]
        target = view.pick(
            self.rng, membership, None,
            lambda u: u not in (kicker, self.creator) and self._level(view, u) < level,
        )  # fmt: skip
        if target is None:
            return False
        kind = {"join": "kick", "invite": "revoke_invite", "knock": "deny_knock"}[membership]
        self._member(view, kicker, target, "leave", kind=kind, extra={"reason": self._text(1, 4)})
        return True

    def _ban_action(self) -> bool:
        view = self.main
        banner = self._joined_with(view, self._named_level(view, "ban"))
        if banner is None:
            return False
        level = self._level(view, banner)
        if self.rng.random() < 0.8:
            target = view.pick(
                self.rng, "join", None,
                lambda u: u not in (banner, self.creator) and self._level(view, u) < level,
            )  # fmt: skip
        else:
            target = self._outsider(view, None)  # pre-emptive ban of a non-member
        if target is None or self._level(view, target) >= level:
            return False
        self._member(view, banner, target, "ban", kind="ban", extra={"reason": self._text(1, 4)})
        return True

    def _unban_action(self) -> bool:
        view = self.main
        need = max(self._named_level(view, "ban"), self._named_level(view, "kick"))
        unbanner = self._joined_with(view, need)
        if unbanner is None:
            return False
        level = self._level(view, unbanner)
        target = view.pick(self.rng, "ban", None, lambda u: self._level(view, u) < level)
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

    def _power_levels_action(self) -> bool:
        view = self.main
        if self.main.membership(self.creator) != "join":
            return False
        pl = view.content(POWER_LEVELS)
        assert pl is not None
        content = {**pl, "users": dict(pl["users"]), "events": dict(pl["events"])}
        roll = self.rng.random()
        moderators = [u for u, lvl in pl["users"].items() if lvl == _MODERATOR]
        if roll < 0.5:
            user = view.pick(self.rng, "join", None, lambda u: self._level(view, u) == 0)
            if user is None:
                return False
            content["users"][user] = _MODERATOR
            kind = "promote"
        elif roll < 0.75 and moderators:
            del content["users"][self.rng.choice(moderators)]
            kind = "demote"
        else:
            # Let everyone set the topic, or take that back (state_default applies again).
            if "m.room.topic" in content["events"]:
                del content["events"]["m.room.topic"]
            else:
                content["events"]["m.room.topic"] = 0
            kind = "power_levels"
        self._emit(view, self.creator, POWER_LEVELS, content, "", kind=kind)
        return True

    def _join_rules_action(self) -> bool:
        view = self.main
        sender = self._joined_with(view, self._required(view, JOIN_RULES, True))
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
        # In a fork the sender stays joined until the merge: v1 state resolution re-checks
        # the topic/name against the resolved memberships, where a later leave would win.
        sender = self._joined_with(
            view, self._required(view, event_type, True), server, vouch=self._in_fork
        )
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

    def _history_visibility_action(self) -> bool:
        value = self.rng.choice(("shared", "invited", "joined", "world_readable"))
        return self._state_action(
            "m.room.history_visibility", {"history_visibility": value}, "history_visibility"
        )

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

    # -- unauthorised events ---------------------------------------------------------------------

    def _rejected_action(self) -> bool:
        """One event the authorization rules must reject (rule numbers of the v12 page)."""
        view = self.main
        options: list[Callable[[RoomView], bool]] = [
            self._reject_non_member_message,
            self._reject_kick_without_level,
            self._reject_ban_without_level,
            self._reject_state_below_level,
            self._reject_join_without_invite,
            self._reject_power_levels_without_level,
            self._reject_banned_join,
            self._reject_invite_by_non_member,
        ]
        if self.version.knock:
            options.append(self._reject_knock_wrong_join_rule)
        if self.version.restricted_join:
            options.append(self._reject_restricted_join_bad_authoriser)
        self.rng.shuffle(options)
        return any(option(view) for option in options)

    def _reject(
        self, view: RoomView, sender: str, event_type: str, content: dict[str, Any],
        state_key: str | None = None, *, kind: str, also_signed_by: str | None = None,
    ) -> bool:  # fmt: skip
        self._emit(
            view, sender, event_type, content, state_key, kind=f"reject:{kind}",
            outcome="rejected", also_signed_by=also_signed_by,
        )  # fmt: skip
        return True

    def _reject_non_member_message(self, view: RoomView) -> bool:
        # Rule 6: the sender's membership is not join.
        sender = self._outsider(view, None)
        content = {"msgtype": "m.text", "body": self._text()}
        return self._reject(view, sender, "m.room.message", content, kind="non_member_message")

    def _reject_kick_without_level(self, view: RoomView) -> bool:
        # Rule 5.5.4/5.5.5: the sender is below the kick level.
        sender = self._joined_below(view, self._named_level(view, "kick"))
        if sender is None:
            return False
        target = view.pick(self.rng, "join", None, lambda u: u != sender)
        if target is None:
            return False
        content = {"membership": "leave"}
        return self._reject(view, sender, MEMBER, content, target, kind="kick_without_level")

    def _reject_ban_without_level(self, view: RoomView) -> bool:
        # Rule 5.6.2/5.6.3: the sender is below the ban level.
        sender = self._joined_below(view, self._named_level(view, "ban"))
        if sender is None:
            return False
        target = view.pick(self.rng, "join", None, lambda u: u != sender)
        if target is None:
            return False
        content = {"membership": "ban"}
        return self._reject(view, sender, MEMBER, content, target, kind="ban_without_level")

    def _reject_state_below_level(self, view: RoomView) -> bool:
        # Rule 8: the event type's required level is above the sender's.
        event_type, content = self.rng.choice(
            (
                ("m.room.topic", {"topic": self._text(2, 6)}),
                ("m.room.name", {"name": self._text(1, 3)}),
                ("m.room.history_visibility", {"history_visibility": "joined"}),
            )
        )
        sender = self._joined_below(view, self._required(view, event_type, True))
        if sender is None:
            return False
        return self._reject(view, sender, event_type, content, "", kind="state_below_level")

    def _reject_join_without_invite(self, view: RoomView) -> bool:
        # Rule 5.3.4/5.3.7 (invite, knock) and 5.3.5.2 (restricted without an authoriser).
        if self._join_rule(view) == "public":
            return False
        user = self._outsider(view, None)
        content = {"membership": "join"}
        return self._reject(view, user, MEMBER, content, user, kind="join_without_invite")

    def _reject_power_levels_without_level(self, view: RoomView) -> bool:
        # Rule 8: m.room.power_levels needs level 100.
        sender = self._joined_below(view, self._required(view, POWER_LEVELS, True))
        if sender is None:
            return False
        pl = view.content(POWER_LEVELS)
        assert pl is not None
        content = {**pl, "users": {**pl["users"], sender: _MODERATOR}}
        return self._reject(
            view, sender, POWER_LEVELS, content, "", kind="power_levels_without_level"
        )

    def _reject_banned_join(self, view: RoomView) -> bool:
        # Rule 5.3.3: the sender is banned.
        user = view.pick(self.rng, "ban")
        if user is None:
            return False
        return self._reject(view, user, MEMBER, {"membership": "join"}, user, kind="banned_join")

    def _reject_invite_by_non_member(self, view: RoomView) -> bool:
        # Rule 5.4.2: the inviter is not joined.
        sender = self._outsider(view, None)
        target = self._outsider(view, None)
        if target == sender:
            return False
        content = {"membership": "invite"}
        return self._reject(view, sender, MEMBER, content, target, kind="invite_by_non_member")

    def _reject_knock_wrong_join_rule(self, view: RoomView) -> bool:
        # Rule 5.7.1 (v7+): knocking where the join rule is not knock/knock_restricted.
        if self._join_rule(view) in ("knock", "knock_restricted"):
            return False
        user = self._outsider(view, None)
        content = {"membership": "knock"}
        return self._reject(view, user, MEMBER, content, user, kind="knock_wrong_join_rule")

    def _reject_restricted_join_bad_authoriser(self, view: RoomView) -> bool:
        # Rule 5.3.5.2 (v8+): the authorising user is not a joined member.
        if self._join_rule(view) not in ("restricted", "knock_restricted"):
            return False
        authoriser = view.pick(self.rng, "leave")
        if authoriser is None:
            return False
        user = self._outsider(view, None)
        if user == authoriser:
            return False
        content = {"membership": "join", "join_authorised_via_users_server": authoriser}
        return self._reject(
            view, user, MEMBER, content, user, kind="restricted_join_bad_authoriser",
            also_signed_by=server_of(authoriser),
        )  # fmt: skip

    # -- forks -------------------------------------------------------------------------------------

    def _fork_action(self) -> bool:
        """Two or three servers build on the current tip at once, then one merges."""
        base = self.main
        candidates = [s for s in self._server_names() if base.count("join", s) > 0]
        if len(candidates) < 2:
            return False
        self.rng.shuffle(candidates)
        width = min(len(candidates), self.rng.choice((2, 2, 3)))
        branches = [
            _Branch(base.copy(), server, self.rng.randint(1, 6)) for server in candidates[:width]
        ]
        self._in_fork = True
        if self.rng.random() < 0.3:
            self._soft_fail_on_fork(branches)
        topic_branch, name_branch = self.rng.choice(branches), self.rng.choice(branches)
        while any(b.budget > 0 for b in branches):
            branch = self.rng.choice([b for b in branches if b.budget > 0])
            branch.budget -= 1
            view, server = branch.view, branch.server
            roll = self.rng.random()
            done = False
            if roll < 0.08:
                done = self._join_action(view, server)
            elif roll < 0.12:
                done = self._leave_action(view, server)
            elif roll < 0.16:
                done = self._invite_action(view, server)
            elif roll < 0.20 and branch is topic_branch:
                done = self._topic_action(view, server)
            elif roll < 0.22 and branch is name_branch:
                done = self._name_action(view, server)
            elif roll < 0.24:
                done = self._knock_action(view, server)
            if not done:
                self._message_action(view, server)
        self._in_fork = False
        self._frozen, self._pinned, self._touched = set(), set(), set()
        progressed = [b.view.tips for b in branches if b.view.tips != base.tips]
        tips = [t for branch_tips in progressed for t in branch_tips]
        if len(tips) >= 2:
            sender = base.pick(self.rng, "join")
            assert sender is not None  # the creator never leaves
            body = {"msgtype": "m.text", "body": self._text()}
            self._emit(base, sender, "m.room.message", body, kind="merge", prev_event_ids=tips)
        elif tips:
            base.tips = tips
        return True

    def _soft_fail_on_fork(self, branches: list[_Branch]) -> None:
        """A moderator on one branch kicks a user of another branch, whose server has not
        seen the kick yet when that user speaks: the message passes against the state before
        it and fails against the room's current state, so it is soft-failed (server-server
        API "Checks performed on receipt of a PDU", step 6)."""
        first, second = self.rng.sample(branches, 2)
        kicker = self._joined_with(
            first.view, self._named_level(first.view, "kick"), first.server, vouch=True
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
        self._member(first.view, kicker, victim, "leave", kind="kick")
        self._frozen.add(victim)
        body = {"msgtype": "m.text", "body": self._text()}
        self._emit(
            second.view, victim, "m.room.message", body, kind="soft_fail", outcome="soft_failed"
        )
