"""Power levels as the rules read them: value formats per room version, defaults, creators,
and the parse cache never mixing up two events (client-server spec `m.room.power_levels`,
room version pages "stringy"/"floaty" power levels, MSC4289)."""

from __future__ import annotations

from typing import Any

import pytest

from processor.matrix.events import Event
from processor.matrix.power_levels import (
    CREATOR_POWER_LEVEL,
    is_valid_user_id,
    parse_level,
    required_power_level,
    user_power_level,
)
from processor.matrix.room_versions import room_version
from tests.unit.matrix.test_auth_fixtures import (
    ALICE,
    ALL_VERSIONS,
    BOB,
    CAROL,
    DAVE,
    Room,
    make_event,
    versions,
)

PARSE_ROWS: list[tuple[object, list[str], int | None]] = [
    (0, ALL_VERSIONS, 0),
    (-5, ALL_VERSIONS, -5),
    (2**53 - 1, ALL_VERSIONS, 2**53 - 1),
    ("100", versions(1, 9), 100),
    ("000100", versions(1, 9), 100),
    ("+100", versions(1, 9), 100),
    ("-100", versions(1, 9), -100),
    (" 100 ", versions(1, 9), 100),
    (" \t-0050\n", versions(1, 9), -50),
    ("100", versions(10), None),
    ("1e2", versions(1, 9), None),
    ("10.0", versions(1, 9), None),
    ("1_000", versions(1, 9), None),
    ("", versions(1, 9), None),
    ("+", versions(1, 9), None),
    ("--1", versions(1, 9), None),
    ("\u0661", versions(1, 9), None),  # ARABIC-INDIC DIGIT ONE: not a base-10 ASCII digit
    (50.57, versions(1, 5), 50),
    (5.114698e4, versions(1, 5), 51146),
    (-1.5, versions(1, 5), -1),
    (50.0, versions(6), None),
    (float("inf"), versions(1, 5), None),
    (float("nan"), versions(1, 5), None),
    (True, ALL_VERSIONS, None),
    (False, ALL_VERSIONS, None),
    (None, ALL_VERSIONS, None),
    ([1], ALL_VERSIONS, None),
    ({"a": 1}, ALL_VERSIONS, None),
]


@pytest.mark.parametrize(
    ("value", "version_id", "expected"),
    [
        pytest.param(value, v, expected, id=f"v{v}-{value!r}")
        for value, vs, expected in PARSE_ROWS
        for v in vs
    ],
)
def test_parse_level(value: object, version_id: str, expected: int | None) -> None:
    assert parse_level(value, room_version(version_id)) == expected


@pytest.mark.parametrize(
    ("value", "valid"),
    [
        ("@alice:example.org", True),
        ("@a:b", True),
        ("@alice:example.org:8448", True),
        ("alice:example.org", False),
        ("@alice", False),
        ("@:example.org", False),
        ("@alice:", False),
        ("", False),
        (5, False),
        ("@" + "a" * 250 + ":b.c", True),  # 255 bytes
        ("@" + "a" * 251 + ":b.c", False),  # 256 bytes
    ],
)
def test_is_valid_user_id(value: object, valid: bool) -> None:
    assert is_valid_user_id(value) is valid


# --------------------------------------------------------------------------------------------
# user_power_level


@pytest.mark.parametrize("version_id", ALL_VERSIONS)
def test_user_levels_from_power_levels_event(version_id: str) -> None:
    room = Room(version_id)
    version = room.version
    assert user_power_level(BOB, room.state, version) == 50
    assert user_power_level(CAROL, room.state, version) == 0
    room.set_power_levels(users_default=7)
    assert user_power_level(CAROL, room.state, version) == 7
    assert user_power_level(BOB, room.state, version) == 50


@pytest.mark.parametrize("version_id", versions(1, 11))
def test_creator_at_100_without_power_levels(version_id: str) -> None:
    room = Room(version_id, power_levels=None)
    assert user_power_level(ALICE, room.state, room.version) == 100
    assert user_power_level(BOB, room.state, room.version) == 0


@pytest.mark.parametrize("version_id", versions(1, 11))
def test_creator_listed_level_wins_before_v12(version_id: str) -> None:
    room = Room(version_id)
    room.set_power_levels(users={ALICE: 10})
    assert user_power_level(ALICE, room.state, room.version) == 10


@pytest.mark.parametrize("version_id", versions(1, 10))
def test_creator_is_content_creator_v1_v10(version_id: str) -> None:
    room = Room(version_id, power_levels=None, create_content={"creator": DAVE})
    assert user_power_level(DAVE, room.state, room.version) == 100
    assert user_power_level(ALICE, room.state, room.version) == 0


def test_creator_is_sender_v11() -> None:
    room = Room("11", power_levels=None, create_content={"creator": DAVE})
    assert user_power_level(ALICE, room.state, room.version) == 100
    assert user_power_level(DAVE, room.state, room.version) == 0


def test_v12_creators_above_every_level() -> None:
    room = Room("12", create_content={"additional_creators": [DAVE]})
    room.set_power_levels(users={BOB: 2**53 - 1})
    for creator in (ALICE, DAVE):
        assert user_power_level(creator, room.state, room.version) == CREATOR_POWER_LEVEL
    assert user_power_level(BOB, room.state, room.version) < CREATOR_POWER_LEVEL
    assert user_power_level(CAROL, room.state, room.version) == 0


def test_v12_creators_without_power_levels() -> None:
    room = Room("12", power_levels=None, create_content={"additional_creators": [DAVE]})
    assert user_power_level(ALICE, room.state, room.version) == CREATOR_POWER_LEVEL
    assert user_power_level(DAVE, room.state, room.version) == CREATOR_POWER_LEVEL
    assert user_power_level(BOB, room.state, room.version) == 0


def test_no_create_event_means_no_creator() -> None:
    version = room_version("12")
    assert user_power_level(ALICE, {}, version) == 0
    assert user_power_level(ALICE, {}, room_version("1")) == 0


# --------------------------------------------------------------------------------------------
# required_power_level


@pytest.mark.parametrize("version_id", ALL_VERSIONS)
def test_required_levels_defaults(version_id: str) -> None:
    room = Room(version_id, power_levels={})
    version = room.version
    assert required_power_level("m.room.message", False, room.state, version) == 0
    assert required_power_level("m.room.topic", True, room.state, version) == 50


@pytest.mark.parametrize("version_id", ALL_VERSIONS)
def test_required_levels_without_power_levels_event(version_id: str) -> None:
    # State needs 50 as the network reads it (the spec's text says 0; see
    # docs/interoperability.md); messages need 0.
    room = Room(version_id, power_levels=None)
    assert required_power_level("m.room.topic", True, room.state, room.version) == 50
    assert required_power_level("m.room.power_levels", True, room.state, room.version) == 50
    assert required_power_level("m.room.message", False, room.state, room.version) == 0


@pytest.mark.parametrize("version_id", ALL_VERSIONS)
def test_required_levels_from_content(version_id: str) -> None:
    content: dict[str, Any] = {
        "events_default": 5,
        "state_default": 60,
        "events": {"m.room.name": 70, "m.room.message": 1},
    }
    room = Room(version_id, power_levels=content)
    version = room.version
    assert required_power_level("m.room.message", False, room.state, version) == 1
    assert required_power_level("m.reaction", False, room.state, version) == 5
    assert required_power_level("m.room.topic", True, room.state, version) == 60
    assert required_power_level("m.room.name", True, room.state, version) == 70
    # `events` applies whatever the event is, state or not
    assert required_power_level("m.room.name", False, room.state, version) == 70


# --------------------------------------------------------------------------------------------
# the parse cache


def _pl(event_id: str, content: dict[str, Any]) -> Event:
    return make_event(event_id, "!r:a.example", ALICE, "m.room.power_levels", "", content)


def test_two_events_with_one_id_never_share_levels() -> None:
    version = room_version("10")
    first = {("m.room.power_levels", ""): _pl("$same", {"users": {BOB: 10}})}
    second = {("m.room.power_levels", ""): _pl("$same", {"users": {BOB: 20}})}
    for _ in range(3):
        assert user_power_level(BOB, first, version) == 10
        assert user_power_level(BOB, second, version) == 20


def test_one_event_read_in_two_version_families() -> None:
    event = _pl("$pl", {"users": {BOB: "30"}})
    state = {("m.room.power_levels", ""): event}
    assert user_power_level(BOB, state, room_version("9")) == 30
    assert user_power_level(BOB, state, room_version("10")) == 0


def test_many_power_levels_events_stay_correct() -> None:
    # More events than the cache holds: every read is still right.
    version = room_version("11")
    states = [
        {("m.room.power_levels", ""): _pl(f"$pl{n}", {"users": {BOB: n}})} for n in range(3000)
    ]
    for n in (0, 2999, 1500, 0):
        assert user_power_level(BOB, states[n], version) == n
