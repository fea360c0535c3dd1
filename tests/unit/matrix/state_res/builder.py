"""A test-side room builder for state resolution: named events on named branches.

Each branch is a linear history with its own (string-keyed) state. `send` picks the event's
auth events from the branch's state by the spec's auth events selection, checks the event
against them with the auth rules (so scenarios are valid rooms unless they say otherwise),
assigns NIDs (type and state key NIDs from local dicts seeded with the preassigned ones) and
stores it in an `InMemoryEventSource`. `fork` starts a new branch from an existing one.
`state(branch)` is the branch's state as a NID map, ready for `resolve_state`.

Event IDs are `$<name>` so tie-breaks on event_id read from the scenario; the room ID of a
v12 room is `!create` (the create event's ID with `!`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from processor.errors import AuthError
from processor.matrix.auth import auth_types_for_event, check_auth
from processor.matrix.events import Event
from processor.matrix.room_versions import RoomVersion
from processor.matrix.state_res import InMemoryEventSource, StateResEvent, resolve_state
from processor.nids import (
    PREASSIGNED_EVENT_TYPE_NIDS,
    PREASSIGNED_STATE_KEY_NIDS,
    EventNID,
    EventTypeNID,
    StateKeyNID,
    StateKeyTuple,
)

ALICE = "@alice:a.test"
BOB = "@bob:b.test"
CHARLIE = "@charlie:c.test"
EVE = "@eve:e.test"
ZARA = "@zara:z.test"

StringState = dict[tuple[str, str], str]


class RoomBuilder:
    def __init__(self, version: RoomVersion, creator: str = ALICE) -> None:
        self.version = version
        self.creator = creator
        self.room_id = "!create" if version.room_id_is_create_event_hash else "!room:a.test"
        self.source = InMemoryEventSource()
        self.by_name: dict[str, StateResEvent] = {}
        self.name_of: dict[EventNID, str] = {}
        self.type_nids: dict[str, EventTypeNID] = dict(PREASSIGNED_EVENT_TYPE_NIDS)
        self.key_nids: dict[str, StateKeyNID] = dict(PREASSIGNED_STATE_KEY_NIDS)
        self.branches: dict[str, StringState] = {}
        self.heads: dict[str, str | None] = {}
        self.depths: dict[str, int] = {}
        self.ts = 0
        self.next_nid = 1

    # -- NIDs -----------------------------------------------------------------------------

    def key(self, event_type: str, state_key: str) -> StateKeyTuple:
        type_nid = self.type_nids.setdefault(
            event_type, EventTypeNID(max(self.type_nids.values()) + 1)
        )
        key_nid = self.key_nids.setdefault(
            state_key, StateKeyNID(max(self.key_nids.values()) + 1)
        )
        return (type_nid, key_nid)

    def nid(self, name: str) -> EventNID:
        return self.by_name[name].nid

    # -- building -------------------------------------------------------------------------

    def start(self, branch: str = "main", *, join_rule: str = "public",
              users: Mapping[str, int] | None = None, **pl_content: Any) -> None:
        """create, the creator's join, power levels (creator at 100 before v12), join rules."""
        self.branches[branch] = {}
        self.heads[branch] = None
        self.depths[branch] = 0
        create_content: dict[str, Any] = {"room_version": self.version.id}
        if not self.version.implicit_room_creator:
            create_content["creator"] = self.creator
        self.send(branch, "create", "m.room.create", self.creator, "", create_content)
        self.send(branch, "alice_join", "m.room.member", self.creator, self.creator,
                  {"membership": "join"})
        self.send(branch, "pl0", "m.room.power_levels", self.creator, "",
                  self.power_levels(users or {}, **pl_content))
        self.send(branch, "jr0", "m.room.join_rules", self.creator, "",
                  {"join_rule": join_rule})

    def power_levels(self, users: Mapping[str, int], **content: Any) -> dict[str, Any]:
        """A power levels content; the creator is at 100 in `users` before v12 and absent from
        it in v12 (MSC4289: creators may not be listed)."""
        all_users = dict(users)
        if self.version.privileged_creators:
            all_users.pop(self.creator, None)
        else:
            all_users.setdefault(self.creator, 100)
        return {"users": all_users, **content}

    def fork(self, source: str, new: str) -> None:
        self.branches[new] = dict(self.branches[source])
        self.heads[new] = self.heads[source]
        self.depths[new] = self.depths[source]

    def join(self, branch: str, name: str, user: str) -> str | None:
        return self.send(branch, name, "m.room.member", user, user, {"membership": "join"})

    def send(
        self,
        branch: str,
        name: str,
        event_type: str,
        sender: str,
        state_key: str | None,
        content: Mapping[str, Any],
        *,
        ts: int | None = None,
        auth_from: str | None = None,
        expect_allowed: bool = True,
        only_if_allowed: bool = False,
        force_state: bool = False,
    ) -> str | None:
        """Add an event at the head of `branch`. Its auth events come from the state of
        `auth_from` (default: the branch). The auth rules must allow it unless
        `expect_allowed` is False (then it is stored as rejected and changes no state).
        With `only_if_allowed`, an event the rules reject is dropped and None returned.
        With `force_state`, a rejected event still enters the branch's state (so that later
        events of the branch cite it, as a faulty or malicious server's events would)."""
        state = self.branches[branch]
        auth_state_names = self.branches[auth_from or branch]
        head = self.heads[branch]
        if ts is None:
            self.ts += 1000
            ts = self.ts
        draft = self._event(name, event_type, sender, state_key, content, (), (), 0, ts)
        selected = [
            auth_state_names[key]
            for key in auth_types_for_event(draft, self.version)
            if key in auth_state_names
        ]
        auth_events = {self.by_name[n].event.state_tuple: self.by_name[n].event for n in selected}
        depth = self.depths[branch] + 1
        event = self._event(
            name, event_type, sender, state_key, content,
            () if head is None else (f"${head}",),
            tuple(f"${n}" for n in selected), depth, ts,
        )
        auth_state: dict[tuple[str, str], Event] = {
            k: v for k, v in auth_events.items() if k is not None
        }
        if self.version.create_event_implicit_in_auth_events and "create" in self.by_name:
            auth_state[("m.room.create", "")] = self.by_name["create"].event
        try:
            check_auth(event, auth_state, self.version)
            allowed = True
        except AuthError as e:
            if only_if_allowed:
                return None
            if expect_allowed:
                raise AssertionError(f"scenario event {name} is not allowed: {e}") from e
            allowed = False
        if allowed and not expect_allowed:
            raise AssertionError(f"scenario event {name} was expected to be rejected")
        key = None if state_key is None else self.key(event_type, state_key)
        stored = StateResEvent(
            nid=EventNID(self.next_nid),
            event=event,
            key=key,
            auth_nids=tuple(self.nid(n) for n in selected),
            rejected=not allowed,
        )
        self.next_nid += 1
        self.source.add(stored)
        self.by_name[name] = stored
        self.name_of[stored.nid] = name
        self.heads[branch] = name
        self.depths[branch] = depth
        if (allowed or force_state) and state_key is not None:
            state[(event_type, state_key)] = name
        return name

    def _event(
        self, name: str, event_type: str, sender: str, state_key: str | None,
        content: Mapping[str, Any], prev: tuple[str, ...], auth: tuple[str, ...], depth: int,
        ts: int,
    ) -> Event:
        pdu: dict[str, Any] = {"type": event_type, "sender": sender, "content": dict(content)}
        room_id = self.room_id
        if event_type == "m.room.create" and self.version.room_id_is_create_event_hash:
            room_id = ""
        return Event(
            event_id=f"${name}",
            room_id=room_id,
            sender=sender,
            type=event_type,
            state_key=state_key,
            content=dict(content),
            prev_event_ids=prev,
            auth_event_ids=auth,
            depth=depth,
            origin_server_ts=ts,
            redacts=None,
            pdu=pdu,
        )

    # -- reading --------------------------------------------------------------------------

    def state(self, branch: str) -> dict[StateKeyTuple, EventNID]:
        """The branch's state as a NID map."""
        return {self.by_name[n].key: self.by_name[n].nid  # type: ignore[misc]
                for n in self.branches[branch].values()}

    def state_of(self, names: Iterable[str]) -> dict[StateKeyTuple, EventNID]:
        """A state map made of the named events (a state set as some server reported it)."""
        out: dict[StateKeyTuple, EventNID] = {}
        for n in names:
            stored = self.by_name[n]
            assert stored.key is not None
            out[stored.key] = stored.nid
        return out

    def names(self, state: Mapping[StateKeyTuple, EventNID]) -> dict[tuple[str, str], str]:
        """A NID state map as {(type, state_key): event name}, for readable assertions."""
        out: dict[tuple[str, str], str] = {}
        for nid in state.values():
            stored = self.by_name[self.name_of[nid]]
            assert stored.event.state_tuple is not None
            out[stored.event.state_tuple] = self.name_of[nid]
        return out

    def resolve(self, *branches_or_states: str | Mapping[StateKeyTuple, EventNID]
                ) -> dict[tuple[str, str], str]:
        """Resolve branches (by name) or NID state maps; the result by event names."""
        state_sets = [self.state(b) if isinstance(b, str) else b for b in branches_or_states]
        return self.names(resolve_state(self.version, state_sets, self.source))
