"""The base of a room simulation: its users, their power, and building events.

`SimulationBase` holds what every kind of action needs — the room's identity, its servers and
users, the view of the room being built on, the DAG bookkeeping (`RoomDag`) — and `_emit`,
which turns an intended event into a signed PDU of the room's version:

- its ``auth_events`` are the auth-event selection (server-server API, "Auth events
  selection") applied to the state of the view it is built on;
- its outcome is the intended one (``rejected`` for a deliberately unauthorised event), except
  that an event built to pass against its view's state is ``soft_failed`` when it fails
  against the room's current state (another branch banned its sender, demoted them, ...);
- an accepted event becomes the view's tip and a forward extremity; nothing is ever built on
  a rejected or soft-failed one.

The actions themselves are mixins over this base: `membership`, `power`, `rejections`,
`branches`; `rooms.RoomSimulation` puts them together.
"""

from __future__ import annotations

import math
import random
from collections import deque
from collections.abc import Callable
from typing import Any

from processor.generate.auth_selection import auth_state_keys
from processor.generate.dag import NO_CONFLICTS, Conflicts, RoomDag
from processor.generate.keys import ServerKey
from processor.generate.model import (
    FIRST_NAMES,
    JOIN_RULES,
    MEMBER,
    POWER_LEVELS,
    WORDS,
    Clock,
    GeneratedEvent,
    IntendedOutcome,
)
from processor.generate.pdus import PduFactory
from processor.generate.view import IndexedSet, RoomView, server_of
from processor.matrix.events import Event
from processor.matrix.room_versions import RoomVersion

__all__ = ["SimulationBase"]

_ALPHABET = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"


class SimulationBase:
    """State and helpers shared by the action mixins (see the module docstring)."""

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
        self.dag = RoomDag(version)
        self.room_id = ""
        self.creator = ""
        #: The room's state when it is not forked (during a fork: the state at its base).
        self.main = RoomView()
        self._in_fork = False
        #: Users whose membership changed on some branch of the current fork: targets that
        #: make the branches conflict at the merge.
        self._hot = IndexedSet()
        #: The branch being built on (``"<fork number>:<server>"``; ``"<fork number>:*"``
        #: for the merge that ends a fork), None outside forks.
        self._branch: str | None = None
        self._forks = 0
        self._depth: dict[str, int] = {}
        self._pending: deque[GeneratedEvent] = deque()
        self._user_counts: dict[str, int] = {s.server_name: 0 for s in servers}
        #: Recent accepted messages (event ID, sender), the targets of redactions.
        self._messages: deque[tuple[str, str]] = deque(maxlen=64)

    # -- users and power ---------------------------------------------------------------------

    def _new_user(self, server: str) -> str:
        n = self._user_counts[server]
        self._user_counts[server] = n + 1
        name = FIRST_NAMES[n % len(FIRST_NAMES)]
        suffix = "" if n < len(FIRST_NAMES) else str(n // len(FIRST_NAMES))
        return f"@{name}{suffix}:{server}"

    def _server_names(self) -> list[str]:
        return [s.server_name for s in self.servers]

    def _outsider(self, view: RoomView, server: str | None) -> str:
        """A user who is not in the room (left earlier — a rejoin —, or new), on `server`
        if given."""
        server = server or self.rng.choice(self._server_names())
        if self.rng.random() < 0.4:
            user = view.pick(self.rng, "leave", server)
            if user is not None:
                return user
        return self._new_user(server)

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
        self, view: RoomView, at_least: float, server: str | None = None
    ) -> str | None:
        """A joined user (of `server`) with at least level `at_least`."""
        return view.pick(self.rng, "join", server, lambda u: self._level(view, u) >= at_least)

    def _joined_below(
        self, view: RoomView, below: float, server: str | None = None
    ) -> str | None:
        return view.pick(self.rng, "join", server, lambda u: self._level(view, u) < below)

    def _target(
        self, view: RoomView, membership: str, where: Callable[[str], bool]
    ) -> str | None:
        """A user with `membership` for whom `where` holds: during a fork, often one whose
        membership another branch changed (so that the branches conflict)."""
        if self._in_fork and self._hot and self.rng.random() < 0.6:
            hot = [u for u in self._hot if view.membership(u) == membership and where(u)]
            if hot:
                return self.rng.choice(hot)
        return view.pick(self.rng, membership, None, where)

    def _join_rule(self, view: RoomView) -> str:
        content = view.content(JOIN_RULES)
        return "invite" if content is None else str(content["join_rule"])

    def _text(self, low: int = 2, high: int = 14) -> str:
        return " ".join(self.rng.choices(WORDS, k=self.rng.randint(low, high))).capitalize()

    # -- emitting ----------------------------------------------------------------------------

    def _opaque_event_id(self, server: str) -> str:
        local = "".join(self.rng.choices(_ALPHABET, k=18))
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
        outcome: IntendedOutcome = "accepted",
        prev_event_ids: list[str] | None = None,
        also_signed_by: str | None = None,
        redacts: str | None = None,
        conflicts: Conflicts = NO_CONFLICTS,
    ) -> GeneratedEvent:
        """Build, sign and queue an event on `view` (see the module docstring)."""
        version = self.version
        origin = server_of(sender)
        prev = list(view.tips) if prev_event_ids is None else prev_event_ids
        keys = auth_state_keys(version, event_type, sender, state_key, content)
        state = view.state
        auth_ids = [state[key].event_id for key in keys if key in state]
        depth = max((self._depth[p] for p in prev), default=0) + 1
        signers = [self.keys[origin]]
        if also_signed_by is not None and also_signed_by != origin:
            signers.append(self.keys[also_signed_by])
        is_v12_create = event_type == "m.room.create" and version.room_id_is_create_event_hash
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
            opaque_event_id=self._opaque_event_id(origin) if version.event_id_in_event else None,
            redacts=redacts,
        )
        if is_v12_create:
            self.room_id = self.pdus.room_id_of_create(pdu)
        dag = self.dag
        event: Event | None = None
        if outcome == "accepted" and not dag.agrees(
            view, self._deciding_keys(keys, event_type, sender, state_key, content)
        ):
            event = self._decoded(pdu, event_id, content, prev, auth_ids, redacts)
            if not dag.passes_current(event, keys):
                outcome = "soft_failed"
        state_before = current_state = None
        if self.trace:
            state_before = {key: entry.event_id for key, entry in view.state.items()}
            current_state = dag.current_ids() if dag.extremities else {}
        generated = GeneratedEvent(
            input={
                "kind": "new",
                "event": pdu,
                "room_version": version.id,
                "origin": origin,
                "send_as_server": "",
            },
            event_id=event_id,
            room_id=self.room_id,
            outcome=outcome,
            kind=kind,
            state_before=state_before,
            current_state=current_state,
            conflicted_keys=conflicts.keys,
            partial_keys=conflicts.partial_keys,
            conflicted_events=conflicts.event_ids,
            prev_count=len(prev),
            branch=self._branch,
        )
        self._pending.append(generated)
        if outcome == "accepted":
            self._depth[event_id] = depth
            view.tips = [event_id]
            if state_key is not None:
                if event is None:
                    event = self._decoded(pdu, event_id, content, prev, auth_ids, redacts)
                view.set_state(dag.add_state_event(event, content))
            elif event_type == "m.room.message":
                self._messages.append((event_id, sender))
            dag.advance(event_id, prev, view)
        return generated

    def _deciding_keys(
        self, keys: list[tuple[str, str]], event_type: str, sender: str,
        state_key: str | None, content: dict[str, Any],
    ) -> list[tuple[str, str]]:  # fmt: skip
        """The auth keys whose value can decide whether the event passes (fewer keys, fewer
        resolutions of the current state):

        - a message needs its sender joined and at the level `events_default`: the generated
          rooms never change that (0) or list m.room.message, and no level is below 0, so
          whichever power levels the current state holds pass it;
        - the rules for a join without an authoriser, a knock and one's own leave never read
          the power levels (v12 rules 5.3, 5.7, 5.5.1)."""
        if event_type == "m.room.message":
            return [key for key in keys if key[0] == MEMBER]
        if event_type == MEMBER and (
            (content["membership"] == "join" and "join_authorised_via_users_server" not in content)
            or content["membership"] == "knock"
            or (content["membership"] == "leave" and sender == state_key)
        ):
            return [key for key in keys if key[0] != POWER_LEVELS]
        return keys

    def _decoded(
        self,
        pdu: dict[str, Any],
        event_id: str,
        content: dict[str, Any],
        prev: list[str],
        auth_ids: list[str],
        redacts: str | None,
    ) -> Event:
        """The `Event` the authorization rules and state resolution read (the PDU keeps only
        its signatures: the rules read nothing else of it here)."""
        return Event(
            event_id=event_id,
            room_id=self.room_id,
            sender=pdu["sender"],
            type=pdu["type"],
            state_key=pdu.get("state_key"),
            content=content,
            prev_event_ids=tuple(prev),
            auth_event_ids=tuple(auth_ids),
            depth=pdu["depth"],
            origin_server_ts=pdu["origin_server_ts"],
            redacts=redacts,
            pdu={"signatures": pdu["signatures"]},
        )

    def _member(
        self,
        view: RoomView,
        sender: str,
        target: str,
        membership: str,
        *,
        kind: str,
        outcome: IntendedOutcome = "accepted",
        extra: dict[str, Any] | None = None,
        also_signed_by: str | None = None,
    ) -> GeneratedEvent:
        content: dict[str, Any] = {"membership": membership}
        if membership == "join":
            content["displayname"] = target[1:].split(":", 1)[0].capitalize()
        if extra:
            content.update(extra)
        generated = self._emit(
            view, sender, MEMBER, content, target,
            kind=kind, outcome=outcome, also_signed_by=also_signed_by,
        )  # fmt: skip
        if self._in_fork and generated.outcome == "accepted":
            self._hot.add(target)
        return generated
