"""Auth events selection (server-server API) and the checks on an event's own auth_events
(v1–v11 rule 2, v12 rules 2–3)."""

from __future__ import annotations

from typing import Any

import pytest

from processor.errors import AuthError
from processor.matrix.auth import auth_types_for_event, check_auth_events_shape
from processor.matrix.events import Event
from processor.matrix.room_versions import room_version
from tests.unit.matrix.test_auth_fixtures import (
    ALICE,
    ALL_VERSIONS,
    BOB,
    CAROL,
    DAVE,
    FRANK,
    Room,
    make_event,
    versions,
)

CREATE = ("m.room.create", "")
PL = ("m.room.power_levels", "")
JR = ("m.room.join_rules", "")


def _member(user: str) -> tuple[str, str]:
    return ("m.room.member", user)


def _with_create(version_id: str, keys: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """v1–v11 select the create event first; v12 never selects it (MSC4291)."""
    if room_version(version_id).create_event_implicit_in_auth_events:
        return keys
    return [CREATE, *keys]


# --------------------------------------------------------------------------------------------
# selection

SELECTION_ROWS: list[tuple[str, list[str], str, str | None, dict[str, Any], list[Any]]] = [
    # (description, versions, type, state_key, content, expected keys after the create)
    ("message", ALL_VERSIONS, "m.room.message", None, {"body": "x"}, [PL, _member(CAROL)]),
    ("state event", ALL_VERSIONS, "m.room.topic", "", {}, [PL, _member(CAROL)]),
    ("power levels", ALL_VERSIONS, "m.room.power_levels", "", {}, [PL, _member(CAROL)]),
    ("join", ALL_VERSIONS, "m.room.member", CAROL, {"membership": "join"},
     [PL, _member(CAROL), JR]),
    ("invite", ALL_VERSIONS, "m.room.member", DAVE, {"membership": "invite"},
     [PL, _member(CAROL), _member(DAVE), JR]),
    ("knock", ALL_VERSIONS, "m.room.member", CAROL, {"membership": "knock"},
     [PL, _member(CAROL), JR]),
    ("leave", ALL_VERSIONS, "m.room.member", DAVE, {"membership": "leave"},
     [PL, _member(CAROL), _member(DAVE)]),
    ("ban", ALL_VERSIONS, "m.room.member", DAVE, {"membership": "ban"},
     [PL, _member(CAROL), _member(DAVE)]),
    ("third-party invite", ALL_VERSIONS, "m.room.member", DAVE,
     {"membership": "invite", "third_party_invite": {"signed": {"token": "tok"}}},
     [PL, _member(CAROL), _member(DAVE), JR, ("m.room.third_party_invite", "tok")]),
    ("third_party_invite on a join selects nothing", ALL_VERSIONS, "m.room.member", CAROL,
     {"membership": "join", "third_party_invite": {"signed": {"token": "tok"}}},
     [PL, _member(CAROL), JR]),
    ("third_party_invite token not a string", ALL_VERSIONS, "m.room.member", DAVE,
     {"membership": "invite", "third_party_invite": {"signed": {"token": 5}}},
     [PL, _member(CAROL), _member(DAVE), JR]),
    ("third_party_invite not an object", ALL_VERSIONS, "m.room.member", DAVE,
     {"membership": "invite", "third_party_invite": "x"},
     [PL, _member(CAROL), _member(DAVE), JR]),
    ("restricted join authoriser v8+", versions(8), "m.room.member", CAROL,
     {"membership": "join", "join_authorised_via_users_server": BOB},
     [PL, _member(CAROL), JR, _member(BOB)]),
    ("authoriser ignored before v8", versions(1, 7), "m.room.member", CAROL,
     {"membership": "join", "join_authorised_via_users_server": BOB},
     [PL, _member(CAROL), JR]),
    ("authoriser only for joins", versions(8), "m.room.member", CAROL,
     {"membership": "leave", "join_authorised_via_users_server": BOB},
     [PL, _member(CAROL)]),
    ("membership not a string", ALL_VERSIONS, "m.room.member", CAROL, {"membership": 1},
     [PL, _member(CAROL)]),
    ("no membership", ALL_VERSIONS, "m.room.member", CAROL, {}, [PL, _member(CAROL)]),
]


def _expand(rows: list[tuple[Any, ...]]) -> list[Any]:
    params = []
    for description, version_ids, *rest in rows:
        for version_id in version_ids:
            params.append(pytest.param(version_id, *rest, id=f"v{version_id}-{description}"))
    return params


@pytest.mark.parametrize(
    ("version_id", "type", "state_key", "content", "expected"), _expand(SELECTION_ROWS)
)
def test_auth_types_for_event(
    version_id: str,
    type: str,
    state_key: str | None,
    content: dict[str, Any],
    expected: list[tuple[str, str]],
) -> None:
    event = make_event("$e", "!r:a.example", CAROL, type, state_key, content)
    assert auth_types_for_event(event, room_version(version_id)) == _with_create(
        version_id, expected
    )


@pytest.mark.parametrize("version_id", ALL_VERSIONS)
def test_create_event_has_no_auth_events(version_id: str) -> None:
    event = make_event("$c", "!r:a.example", ALICE, "m.room.create", "", {"creator": ALICE})
    assert auth_types_for_event(event, room_version(version_id)) == []


@pytest.mark.parametrize("version_id", ALL_VERSIONS)
def test_target_is_sender_selected_once(version_id: str) -> None:
    event = make_event("$e", "!r", BOB, "m.room.member", BOB, {"membership": "leave"})
    keys = auth_types_for_event(event, room_version(version_id))
    assert keys.count(_member(BOB)) == 1


# --------------------------------------------------------------------------------------------
# shape: v1–v11 rule 2, v12 rules 2–3


def _auth_events(room: Room, *keys: tuple[str, str]) -> list[Event]:
    return [room.state[key] for key in keys]


def _standard_keys(room: Room, sender: str) -> list[tuple[str, str]]:
    keys = [PL, _member(sender)]
    return keys if room.version.create_event_implicit_in_auth_events else [CREATE, *keys]


@pytest.mark.parametrize("version_id", ALL_VERSIONS)
def test_shape_accepts_the_selected_events(version_id: str) -> None:
    room = Room(version_id)
    message = room.event("m.room.message", CAROL, None, {"body": "x"})
    check_auth_events_shape(message, _auth_events(room, *_standard_keys(room, CAROL)), room.version)
    # a subset is fine too: the selection says "if any"
    check_auth_events_shape(message, _auth_events(room, *_standard_keys(room, CAROL)[:-1]),
                            room.version)


@pytest.mark.parametrize("version_id", ALL_VERSIONS)
def test_shape_accepts_a_join_with_join_rules(version_id: str) -> None:
    room = Room(version_id)
    join = room.member(FRANK, "join")
    keys = [*_standard_keys(room, FRANK), JR]
    check_auth_events_shape(join, _auth_events(room, *keys), room.version)


@pytest.mark.parametrize("version_id", ALL_VERSIONS)
def test_shape_rejects_duplicates(version_id: str) -> None:
    # v1–v11 2.1, v12 3.1
    room = Room(version_id)
    message = room.event("m.room.message", CAROL, None, {"body": "x"})
    events = _auth_events(room, *_standard_keys(room, CAROL))
    second_pl = room.event("m.room.power_levels", ALICE, "", {})
    with pytest.raises(AuthError, match="duplicate"):
        check_auth_events_shape(message, [*events, second_pl], room.version)


@pytest.mark.parametrize("version_id", ALL_VERSIONS)
def test_shape_rejects_unselected_types(version_id: str) -> None:
    # v1–v11 2.2, v12 3.2
    room = Room(version_id)
    message = room.event("m.room.message", CAROL, None, {"body": "x"})
    base = _auth_events(room, *_standard_keys(room, CAROL))
    topic = room.event("m.room.topic", ALICE, "", {"topic": "t"})
    for extra in (topic, room.state[JR], room.state[_member(BOB)]):
        with pytest.raises(AuthError, match="not an auth event for this event"):
            check_auth_events_shape(message, [*base, extra], room.version)


@pytest.mark.parametrize("version_id", ALL_VERSIONS)
def test_shape_rejects_join_rules_on_leave(version_id: str) -> None:
    room = Room(version_id)
    leave = room.member(CAROL, "leave")
    events = _auth_events(room, *_standard_keys(room, CAROL), JR)
    with pytest.raises(AuthError, match="not an auth event"):
        check_auth_events_shape(leave, events, room.version)


@pytest.mark.parametrize("version_id", ALL_VERSIONS)
def test_shape_rejects_rejected_auth_events(version_id: str) -> None:
    # v1–v11 2.3, v12 3.3
    room = Room(version_id)
    message = room.event("m.room.message", CAROL, None, {"body": "x"})
    events = _auth_events(room, *_standard_keys(room, CAROL))
    bad = events[-1].event_id
    with pytest.raises(AuthError, match="was rejected"):
        check_auth_events_shape(message, events, room.version, rejected=lambda i: i == bad)
    check_auth_events_shape(message, events, room.version, rejected=lambda i: False)


@pytest.mark.parametrize("version_id", ALL_VERSIONS)
def test_shape_rejects_other_rooms(version_id: str) -> None:
    # v12 3.5 (and the receipt checks in every version)
    room = Room(version_id)
    message = room.event("m.room.message", CAROL, None, {"body": "x"})
    foreign = make_event("$pl", "!elsewhere", ALICE, "m.room.power_levels", "", {})
    events = [e for e in _auth_events(room, *_standard_keys(room, CAROL)) if e.type != PL[0]]
    with pytest.raises(AuthError, match="is in room"):
        check_auth_events_shape(message, [*events, foreign], room.version)


@pytest.mark.parametrize("version_id", versions(1, 11))
def test_shape_requires_the_create_event_v1_v11(version_id: str) -> None:
    # v1–v11 2.4
    room = Room(version_id)
    message = room.event("m.room.message", CAROL, None, {"body": "x"})
    with pytest.raises(AuthError, match=r"no m\.room\.create"):
        check_auth_events_shape(message, _auth_events(room, PL, _member(CAROL)), room.version)


def test_shape_forbids_listing_the_create_event_v12() -> None:
    # v12 3.2: the create event MUST NOT be selected; the room ID implies it.
    room = Room("12")
    message = room.event("m.room.message", CAROL, None, {"body": "x"})
    check_auth_events_shape(message, _auth_events(room, PL, _member(CAROL)), room.version)
    with pytest.raises(AuthError, match="must not be listed"):
        check_auth_events_shape(
            message, _auth_events(room, CREATE, PL, _member(CAROL)), room.version
        )


def test_shape_v12_room_id_must_be_a_room_id() -> None:
    room = Room("12")
    event = make_event("$m", "create", CAROL, "m.room.message", None, {})
    with pytest.raises(AuthError, match="not a create event ID"):
        check_auth_events_shape(event, [], room.version)


@pytest.mark.parametrize("version_id", ALL_VERSIONS)
def test_shape_create_event_has_none(version_id: str) -> None:
    room = Room(version_id)
    check_auth_events_shape(room.create, [], room.version)
    with pytest.raises(AuthError, match="has no auth_events"):
        check_auth_events_shape(room.create, [room.state[PL]], room.version)


@pytest.mark.parametrize("version_id", ALL_VERSIONS)
def test_shape_rejects_message_events_as_auth_events(version_id: str) -> None:
    room = Room(version_id)
    message = room.event("m.room.message", CAROL, None, {"body": "x"})
    other = room.event("m.room.message", CAROL, None, {"body": "y"})
    with pytest.raises(AuthError, match="not a state event"):
        check_auth_events_shape(message, [other], room.version)


@pytest.mark.parametrize("version_id", versions(8))
def test_shape_allows_authoriser_member_event_v8(version_id: str) -> None:
    room = Room(version_id, join_rule="restricted")
    join = room.member(DAVE, "join", extra={"join_authorised_via_users_server": BOB})
    keys = [*_standard_keys(room, DAVE)[:-1], JR, _member(BOB)]
    check_auth_events_shape(join, _auth_events(room, *keys), room.version)


@pytest.mark.parametrize("version_id", versions(1, 7))
def test_shape_rejects_authoriser_member_event_before_v8(version_id: str) -> None:
    room = Room(version_id, join_rule="public")
    join = room.member(DAVE, "join", extra={"join_authorised_via_users_server": BOB})
    keys = [*_standard_keys(room, DAVE)[:-1], JR, _member(BOB)]
    with pytest.raises(AuthError, match="not an auth event"):
        check_auth_events_shape(join, _auth_events(room, *keys), room.version)
