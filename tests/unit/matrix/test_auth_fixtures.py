"""A small room for the authorization-rule tests: users at known levels and memberships.

No tests here; the `test_auth_*` modules import `Room` and the user IDs. Events are built as
`Event` values directly, so each test states exactly the content and state it relies on.

The standard room (`Room(version_id)`): created by ALICE (level 100; in v12 a creator, above
every level), BOB and IVAN at 50, CAROL at 0, all joined; EVE banned, FRANK invited, HANK left,
GINA knocking (v7+ only), DAVE never seen. Power levels default otherwise (ban/kick/redact 50,
invite 0, state_default 50, events_default 0); join rule `invite`.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from typing import Any

from processor.matrix.auth import check_auth
from processor.matrix.events import Event
from processor.matrix.room_versions import RoomVersion, room_version

__all__ = [
    "ALICE",
    "ALL_VERSIONS",
    "BOB",
    "CAROL",
    "DAVE",
    "EVE",
    "FRANK",
    "GINA",
    "HANK",
    "IVAN",
    "Room",
    "make_event",
    "versions",
]

ALICE = "@alice:a.example"
BOB = "@bob:b.example"
CAROL = "@carol:b.example"
IVAN = "@ivan:b.example"
DAVE = "@dave:c.example"
EVE = "@eve:c.example"
FRANK = "@frank:c.example"
GINA = "@gina:c.example"
HANK = "@hank:c.example"

ALL_VERSIONS = [str(n) for n in range(1, 13)]

_DEFAULT = object()


def versions(first: int, last: int = 12) -> list[str]:
    """Room version IDs first..last inclusive."""
    return [str(n) for n in range(first, last + 1)]


def make_event(
    event_id: str,
    room_id: str,
    sender: str,
    type: str,
    state_key: str | None = None,
    content: Mapping[str, Any] | None = None,
    *,
    prev_event_ids: tuple[str, ...] = (),
    auth_event_ids: tuple[str, ...] = (),
    redacts: str | None = None,
    pdu: Mapping[str, Any] | None = None,
) -> Event:
    return Event(
        event_id=event_id,
        room_id=room_id,
        sender=sender,
        type=type,
        state_key=state_key,
        content={} if content is None else content,
        prev_event_ids=prev_event_ids,
        auth_event_ids=auth_event_ids,
        depth=1,
        origin_server_ts=0,
        redacts=redacts,
        pdu={} if pdu is None else pdu,
    )


class Room:
    """A room's state as a map (type, state_key) -> Event, and a factory for new events."""

    def __init__(
        self,
        version_id: str,
        *,
        join_rule: object = "invite",
        power_levels: Any = _DEFAULT,
        create_content: Mapping[str, Any] | None = None,
        members: bool = True,
    ) -> None:
        self.version: RoomVersion = room_version(version_id)
        self._ids = itertools.count(1)
        self.state: dict[tuple[str, str], Event] = {}
        if create_content is None:
            create_content = {"room_version": version_id}
            if not self.version.implicit_room_creator:
                create_content["creator"] = ALICE
        if self.version.room_id_is_create_event_hash:
            self.room_id = "!create"
        else:
            self.room_id = "!room:a.example"
        self.create = make_event(
            "$create", self.room_id, ALICE, "m.room.create", "", create_content
        )
        self.state[("m.room.create", "")] = self.create
        self.set_member(ALICE, "join")
        if power_levels is _DEFAULT:
            users = {BOB: 50, IVAN: 50}
            if not self.version.privileged_creators:
                users[ALICE] = 100
            power_levels = {"users": users}
        if power_levels is not None:
            self.set_state("m.room.power_levels", "", ALICE, power_levels)
        if join_rule is not None:
            self.set_state("m.room.join_rules", "", ALICE, {"join_rule": join_rule})
        if members:
            for user in (BOB, CAROL, IVAN):
                self.set_member(user, "join")
            self.set_member(EVE, "ban", sender=BOB)
            self.set_member(FRANK, "invite", sender=BOB)
            self.set_member(HANK, "leave")
            if self.version.knock:
                self.set_member(GINA, "knock")

    def next_id(self) -> str:
        # v1–v2 event IDs carry the server name; the redaction rule reads it.
        return f"$e{next(self._ids)}:a.example"

    def event(
        self,
        type: str,
        sender: str,
        state_key: str | None = None,
        content: Mapping[str, Any] | None = None,
        *,
        event_id: str | None = None,
        prev_event_ids: tuple[str, ...] = ("$latest",),
        redacts: str | None = None,
        pdu: Mapping[str, Any] | None = None,
    ) -> Event:
        return make_event(
            event_id or self.next_id(),
            self.room_id,
            sender,
            type,
            state_key,
            content,
            prev_event_ids=prev_event_ids,
            redacts=redacts,
            pdu=pdu,
        )

    def member(
        self,
        target: str,
        membership: object,
        *,
        sender: str | None = None,
        extra: Mapping[str, Any] | None = None,
        prev_event_ids: tuple[str, ...] = ("$latest",),
        pdu: Mapping[str, Any] | None = None,
    ) -> Event:
        content: dict[str, Any] = {"membership": membership}
        if extra:
            content.update(extra)
        return self.event(
            "m.room.member",
            sender or target,
            target,
            content,
            prev_event_ids=prev_event_ids,
            pdu=pdu,
        )

    def set_state(
        self, type: str, state_key: str, sender: str, content: Mapping[str, Any]
    ) -> Event:
        event = self.event(type, sender, state_key, content)
        self.state[(type, state_key)] = event
        return event

    def set_member(self, target: str, membership: str, *, sender: str | None = None) -> Event:
        event = self.member(target, membership, sender=sender)
        self.state[("m.room.member", target)] = event
        return event

    def set_power_levels(self, **changes: Any) -> Event:
        """Replace the power-levels event with the current content updated by `changes`."""
        current = self.state.get(("m.room.power_levels", ""))
        content = dict(current.content) if current is not None else {}
        content.update(changes)
        return self.set_state("m.room.power_levels", "", ALICE, content)

    def check(self, event: Event) -> None:
        check_auth(event, self.state, self.version)
