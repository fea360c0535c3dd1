"""Invites for local users (docs/architecture.md §3: `new_invite_event` / `retire_invite_event`).

The roomserver runs as `s2.example` here (Bob's and Carol's server). An accepted invite of a
local user is announced with `new_invite_event`; when the user's membership moves on (join,
reject = leave by the invitee, revoke = leave by someone else, ban) the invite is retired
with `retire_invite_event`. Remote users' invites are none of this server's business.
"""

from __future__ import annotations

import json

import pytest

from processor.storage.base import Store
from schemas.output import NewInviteEvent, NewRoomEvent, RetireInviteEvent
from tests.integration.pipeline.rooms import (
    ALICE,
    BOB,
    CAROL,
    DAVE,
    S2,
    Built,
    Processed,
    RoomBuilder,
    StoreAt,
    as_input,
    inputs,
    process,
    store_at,
)

__all__ = ["store_at"]


def _room(store: Store, version: str = "10") -> RoomBuilder:
    room = RoomBuilder(version)
    events = room.create(join_rule="invite")
    events.append(room.member(DAVE, DAVE, "join", accept=False))  # invite-only: rejected
    done = process(store, inputs(events), server_name=S2)
    assert done.outcome(events[-1]) == "rejected"
    return room


def _run(store: Store, *items: Built) -> Processed:
    return process(store, [as_input(i) for i in items], server_name=S2)


@pytest.mark.parametrize("version", ["1", "7", "10", "12"])
def test_invite_of_a_local_user_is_announced(store_at: StoreAt, version: str) -> None:
    store = store_at.store
    room = _room(store, version)
    invite = room.member(ALICE, BOB, "invite")
    done = _run(store, invite)
    new, announced = done.outputs
    assert isinstance(new, NewRoomEvent)
    assert isinstance(announced, NewInviteEvent)
    assert announced.target_user_id == BOB
    assert json.loads(bytes(announced.event)) == invite.pdu
    assert announced.room_version == version
    assert announced.stream_position == new.stream_position + 1


@pytest.mark.parametrize(
    ("sender", "membership"),
    [(BOB, "join"), (BOB, "leave"), (ALICE, "leave"), (ALICE, "ban")],
    ids=["accepted", "rejected", "revoked", "banned"],
)
def test_invite_is_retired_when_the_membership_moves_on(
    store_at: StoreAt, sender: str, membership: str
) -> None:
    store = store_at.store
    room = _room(store)
    invite = room.member(ALICE, BOB, "invite")
    _run(store, invite)

    change = room.member(sender, BOB, membership)
    done = _run(store, change)
    assert done.outcome(change) == "accepted"
    new, retired = done.outputs
    assert isinstance(new, NewRoomEvent)
    assert isinstance(retired, RetireInviteEvent)
    assert retired.event_id == invite.event_id
    assert retired.target_user_id == BOB
    assert retired.retired_by_event_id == change.event_id
    assert retired.membership == membership

    # Retired once: a later membership change announces nothing more.
    if membership == "join":
        leave = room.member(BOB, BOB, "leave")
        done = _run(store, leave)
        assert [type(o) for o in done.outputs] == [NewRoomEvent]


def test_a_new_invite_after_a_retired_one_is_announced_again(store_at: StoreAt) -> None:
    store = store_at.store
    room = _room(store)
    first = room.member(ALICE, CAROL, "invite")
    reject = room.member(CAROL, CAROL, "leave")
    second = room.member(ALICE, CAROL, "invite")
    done = _run(store, first, reject, second)
    kinds = [(type(o).__name__, getattr(o, "event_id", None)) for o in done.outputs]
    assert kinds == [
        ("NewRoomEvent", None),
        ("NewInviteEvent", None),
        ("NewRoomEvent", None),
        ("RetireInviteEvent", first.event_id),
        ("NewRoomEvent", None),
        ("NewInviteEvent", None),
    ]
    [_, announced] = [o for o in done.outputs if isinstance(o, NewInviteEvent)]
    assert json.loads(bytes(announced.event)) == second.pdu


def test_invite_of_a_remote_user_is_not_announced(store_at: StoreAt) -> None:
    store = store_at.store
    room = _room(store)
    invite = room.member(ALICE, DAVE, "invite")
    join = room.member(DAVE, DAVE, "join")
    done = _run(store, invite, join)
    assert [type(o) for o in done.outputs] == [NewRoomEvent, NewRoomEvent]


def test_rejected_invite_is_not_announced(store_at: StoreAt) -> None:
    store = store_at.store
    room = _room(store)
    # Dave is not in the room, so he cannot invite (membership rule: sender not joined).
    invite = room.member(DAVE, BOB, "invite", accept=False)
    done = _run(store, invite)
    assert done.outcome(invite) == "rejected"
    assert done.lines == []


def test_without_a_server_name_no_user_is_local(store_at: StoreAt) -> None:
    store = store_at.store
    room = _room(store)
    invite = room.member(ALICE, BOB, "invite")
    done = process(store, [as_input(invite)])
    assert [type(o) for o in done.outputs] == [NewRoomEvent]


def test_invite_into_a_room_this_server_is_not_in_is_announced(store_at: StoreAt) -> None:
    """The invite of a local user into a remote room arrives as an outlier (with its auth
    events, also outliers, and the room's version): it is still the user's invite."""
    store = store_at.store
    room = RoomBuilder("10")
    events = room.create(join_rule="invite")
    invite = room.member(ALICE, BOB, "invite")
    items = [as_input(e, "outlier", room_version="10") for e in events]
    items.append(as_input(invite, "outlier", room_version="10"))
    done = process(store, items, server_name=S2)
    assert done.outcome(invite) == "outlier"
    [announced] = done.outputs
    assert isinstance(announced, NewInviteEvent)
    assert announced.target_user_id == BOB
    assert json.loads(bytes(announced.event)) == invite.pdu
