"""The m.room.power_levels rule: v1–v5 rule 10, v6–v11 rule 9, v12 rule 10.

Sub-rules (v12 numbering; v6–v11 is one less from .5 on, and v1–v5 has only the users shape
check .1 and no notifications): .1–.3 shapes (integers only from v10; strings v1–v9; floats
v1–v5), .4 creators not in users (v12), .5 no previous event, .6 named levels, .7/.8 events
and notifications, .9/.10 users.

The standard room: ALICE creator (100; v12 above all), BOB and IVAN at 50, CAROL at 0.
"""

from __future__ import annotations

from typing import Any

import pytest

from processor.errors import AuthError
from tests.unit.matrix.test_auth_fixtures import (
    ALICE,
    ALL_VERSIONS,
    BOB,
    CAROL,
    DAVE,
    IVAN,
    Room,
    versions,
)

V1_5 = versions(1, 5)
V1_9 = versions(1, 9)
V6 = versions(6)
V6_9 = versions(6, 9)
V10 = versions(10)


def _expand(rows: list[tuple[Any, ...]]) -> list[Any]:
    params = []
    for description, version_ids, *rest in rows:
        for version_id in version_ids:
            params.append(pytest.param(version_id, *rest, id=f"v{version_id}-{description}"))
    return params


def _base_content(room: Room) -> dict[str, Any]:
    current = room.state[("m.room.power_levels", "")]
    return dict(current.content)


# --------------------------------------------------------------------------------------------
# shapes: .1–.3

SHAPE_ROWS: list[tuple[str, list[str], dict[str, Any], str | None]] = [
    ("integers", ALL_VERSIONS, {"ban": 50, "events": {"m.room.name": 50}}, None),
    ("string named level v1-v9", V1_9, {"ban": "50"}, None),
    ("string named level v10+", V10, {"ban": "50"}, "not an integer"),
    ("padded signed string v1-v9", V1_9, {"kick": " +0050 "}, None),
    ("string with decimal point", V1_9, {"kick": "50.0"}, "not an integer"),
    ("string with underscore", V1_9, {"kick": "5_0"}, "not an integer"),
    ("non-numeric string", ALL_VERSIONS, {"redact": "fifty"}, "not an integer"),
    ("float v1-v5 truncated", V1_5, {"kick": 49.9}, None),
    ("float v6+", V6, {"kick": 49.0}, "not an integer"),
    ("infinite float v1-v5", V1_5, {"kick": float("inf")}, "not an integer"),
    ("NaN v1-v5", V1_5, {"kick": float("nan")}, "not an integer"),
    ("boolean level", ALL_VERSIONS, {"invite": True}, "not an integer"),
    ("null level", ALL_VERSIONS, {"users_default": None}, "not an integer"),
    ("object level", ALL_VERSIONS, {"state_default": {}}, "not an integer"),
    ("events not an object", ALL_VERSIONS, {"events": []}, "events is not an object"),
    ("events value string v10+", V10, {"events": {"m.room.name": "50"}}, "not an integer"),
    ("events value string v1-v9", V1_9, {"events": {"m.room.name": "50"}}, None),
    ("notifications value bad v6+", V6, {"notifications": {"room": "x"}}, "not an integer"),
    ("notifications not object v6+", V6, {"notifications": 5}, "not an object"),
    ("notifications ignored v1-v5", V1_5, {"notifications": {"room": "x"}}, None),
    ("notifications string v6-v9", V6_9, {"notifications": {"room": "50"}}, None),
    ("users not an object", ALL_VERSIONS, {"users": [ALICE]}, "users is not an object"),
    ("users key not a user ID", ALL_VERSIONS, {"users": {"alice": 0}}, "not a valid user ID"),
    ("users key missing server", ALL_VERSIONS, {"users": {"@alice": 0}}, "not a valid user ID"),
    ("users value string v1-v9", V1_9, {"users": {DAVE: "0"}}, None),
    ("users value string v10+", V10, {"users": {DAVE: "0"}}, "not an integer"),
    ("users value float v1-v5", V1_5, {"users": {DAVE: 0.5}}, None),
    ("users value null", ALL_VERSIONS, {"users": {DAVE: None}}, "not an integer"),
    ("beyond canonical JSON range v6+", V6, {"ban": 2**53}, "outside the canonical JSON"),
    ("large string level v1-v5", V1_5, {"users_default": "-9999999999999999999"}, None),
]


@pytest.mark.parametrize(("version_id", "changes", "expected"), _expand(SHAPE_ROWS))
def test_shape_of_initial_power_levels(
    version_id: str, changes: dict[str, Any], expected: str | None
) -> None:
    # No previous power-levels event (.5 allows), so only the shape rules apply; sent by the
    # creator, who may send any state then (state_default is 0 with no power-levels event).
    # v1–v9 have a shape rule for `users` only (10.1 / 9.1): other odd values pass here.
    room = Room(version_id, power_levels=None)
    if not room.version.integer_power_levels and "users" not in changes:
        expected = None
    content: dict[str, Any] = {"users": {}} | changes
    event = room.event("m.room.power_levels", ALICE, "", content)
    if expected is None:
        room.check(event)
    else:
        with pytest.raises(AuthError, match=expected):
            room.check(event)


@pytest.mark.parametrize(("version_id", "changes", "expected"), _expand(SHAPE_ROWS))
def test_shape_of_changed_power_levels(
    version_id: str, changes: dict[str, Any], expected: str | None
) -> None:
    # With a previous event every value is compared with the sender's level (.6–.10), so in
    # every version a value that is not a level is rejected.
    room = Room(version_id)
    content = _base_content(room) | changes
    event = room.event("m.room.power_levels", ALICE, "", content)
    if expected is None:
        room.check(event)
    else:
        with pytest.raises(AuthError, match=expected):
            room.check(event)


@pytest.mark.parametrize("version_id", ALL_VERSIONS)
def test_first_power_levels_event_allows_anything_well_formed(version_id: str) -> None:
    # .5: with no previous event, levels above the sender's own are allowed. Only the
    # creator can send it: with no power levels, a state event needs level 50 (the
    # network's rule; the spec's text says 0: docs/interoperability.md).
    room = Room(version_id, power_levels=None)
    room.check(
        room.event("m.room.power_levels", ALICE, "", {"users": {CAROL: 150}, "ban": 150})
    )
    with pytest.raises(AuthError, match="below the required level 50"):
        room.check(
            room.event("m.room.power_levels", CAROL, "", {"users": {CAROL: 100}, "ban": 100})
        )


# --------------------------------------------------------------------------------------------
# changes: .6–.10

CHANGE_ROWS: list[tuple[str, list[str], str, dict[str, Any], dict[str, Any], str | None]] = [
    # (description, versions, sender, previous changes, new changes, expected)
    # .6 named levels
    ("lower kick below own level", ALL_VERSIONS, BOB, {}, {"kick": 40}, None),
    ("set kick to own level", ALL_VERSIONS, BOB, {}, {"kick": 50}, None),
    ("raise ban above own level", ALL_VERSIONS, BOB, {}, {"ban": 60}, "cannot set ban to 60"),
    ("change a level above own", ALL_VERSIONS, BOB, {"invite": 75}, {"invite": 0},
     "cannot change invite from 75"),
    ("remove a level above own", ALL_VERSIONS, BOB, {"redact": 75}, {"redact": None},
     "cannot change redact from 75"),
    ("remove a level below own", ALL_VERSIONS, BOB, {"redact": 25}, {"redact": None}, None),
    ("add a level at own", ALL_VERSIONS, BOB, {}, {"users_default": 50}, None),
    ("add a level above own", ALL_VERSIONS, BOB, {}, {"state_default": 51},
     "cannot set state_default"),
    ("unchanged level above own is fine", ALL_VERSIONS, BOB, {"ban": 75}, {"ban": 75}, None),
    ("same level as string is unchanged v1-v9", V1_9, BOB, {"ban": 75}, {"ban": "75"}, None),
    ("creator raises anything", ALL_VERSIONS, ALICE, {}, {"kick": 100, "ban": 100}, None),
    # .7/.8 events
    ("add event level at own", ALL_VERSIONS, BOB, {}, {"events": {"m.room.name": 50}}, None),
    ("add event level above own", ALL_VERSIONS, BOB, {}, {"events": {"m.room.name": 60}},
     "cannot set events"),
    ("change event level above own", ALL_VERSIONS, BOB, {"events": {"m.room.tombstone": 100}},
     {"events": {"m.room.tombstone": 50}}, "cannot change events"),
    ("remove event level above own", ALL_VERSIONS, BOB, {"events": {"m.room.tombstone": 100}},
     {"events": {}}, "cannot change events"),
    ("keep event level above own", ALL_VERSIONS, BOB, {"events": {"m.room.tombstone": 100}},
     {"events": {"m.room.tombstone": 100, "m.room.name": 10}}, None),
    ("remove event level at own", ALL_VERSIONS, BOB, {"events": {"m.room.name": 50}},
     {"events": {}}, None),
    # .7/.8 notifications, v6+ only
    ("change notifications above own v6+", V6, BOB, {"notifications": {"room": 100}},
     {"notifications": {"room": 20}}, "cannot change notifications"),
    ("add notifications above own v6+", V6, BOB, {}, {"notifications": {"room": 60}},
     "cannot set notifications"),
    ("notifications unchecked v1-v5", V1_5, BOB, {"notifications": {"room": 100}},
     {"notifications": {"room": 20}}, None),
    ("notifications at own level v6+", V6, BOB, {}, {"notifications": {"room": 50}}, None),
    # .9/.10 users
    ("demote user below own", ALL_VERSIONS, BOB, {"users": {CAROL: 10}}, {"users": {CAROL: 0}},
     None),
    ("remove user below own", ALL_VERSIONS, BOB, {"users": {CAROL: 10}}, {"users": {}}, None),
    ("promote user to own level", ALL_VERSIONS, BOB, {}, {"users": {DAVE: 50}}, None),
    ("promote user above own", ALL_VERSIONS, BOB, {}, {"users": {DAVE: 51}},
     "cannot set the level of"),
    ("change peer at own level", ALL_VERSIONS, BOB, {"users": {IVAN: 50}}, {"users": {IVAN: 0}},
     "not below the sender's level"),
    ("remove peer at own level", ALL_VERSIONS, BOB, {"users": {IVAN: 50}}, {"users": {}},
     "not below the sender's level"),
    ("demote self", ALL_VERSIONS, BOB, {"users": {BOB: 50}}, {"users": {BOB: 20}}, None),
    ("remove own entry", ALL_VERSIONS, BOB, {"users": {BOB: 50}}, {"users": {}}, None),
    ("raise self", ALL_VERSIONS, BOB, {"users": {BOB: 50}}, {"users": {BOB: 60}},
     "cannot set the level of @bob"),
    ("keep peer unchanged", ALL_VERSIONS, BOB, {"users": {IVAN: 50}},
     {"users": {IVAN: 50, CAROL: 10}}, None),
    ("user at 0 cannot change anything above 0", ALL_VERSIONS, CAROL, {}, {"users": {DAVE: 1}},
     "below the required level"),
    ("creator demotes moderator", ALL_VERSIONS, ALICE, {"users": {BOB: 50}},
     {"users": {BOB: 0}}, None),
]


@pytest.mark.parametrize(
    ("version_id", "sender", "before", "after", "expected"), _expand(CHANGE_ROWS)
)
def test_power_levels_change(
    version_id: str,
    sender: str,
    before: dict[str, Any],
    after: dict[str, Any],
    expected: str | None,
) -> None:
    room = Room(version_id)
    # Previous event: the standard users plus `before`; bob needs state_default 50 to send it.
    previous = _base_content(room)
    users = dict(previous["users"])
    users.update(before.get("users", {}))
    room.set_power_levels(**(before | {"users": users}))
    content = _base_content(room)
    for key, value in after.items():
        if key == "users":
            new_users = {u: lvl for u, lvl in users.items() if u not in before.get("users", {})}
            new_users.update(value)
            content["users"] = new_users
        elif value is None:
            content.pop(key, None)
        else:
            content[key] = value
    event = room.event("m.room.power_levels", sender, "", content)
    if expected is None:
        room.check(event)
    else:
        with pytest.raises(AuthError, match=expected):
            room.check(event)


# --------------------------------------------------------------------------------------------
# v12: .4 creators cannot be listed, creators are above every level (MSC4289)


def test_v12_creator_in_users_rejected() -> None:
    room = Room("12")
    content = _base_content(room) | {"users": {BOB: 50, ALICE: 100}}
    with pytest.raises(AuthError, match="a room creator"):
        room.check(room.event("m.room.power_levels", ALICE, "", content))


def test_v12_additional_creator_in_users_rejected() -> None:
    room = Room("12", create_content={"additional_creators": [DAVE]})
    content = _base_content(room) | {"users": {BOB: 50, DAVE: 0}}
    with pytest.raises(AuthError, match="a room creator"):
        room.check(room.event("m.room.power_levels", ALICE, "", content))


def test_v12_creator_in_first_power_levels_rejected() -> None:
    # .4 comes before .5 (no previous event).
    room = Room("12", power_levels=None)
    with pytest.raises(AuthError, match="a room creator"):
        room.check(room.event("m.room.power_levels", ALICE, "", {"users": {ALICE: 100}}))


@pytest.mark.parametrize("version_id", versions(1, 11))
def test_creator_listed_in_users_before_v12(version_id: str) -> None:
    room = Room(version_id)
    content = _base_content(room)
    room.check(room.event("m.room.power_levels", ALICE, "", content))


def test_v12_creator_may_set_any_level() -> None:
    room = Room("12")
    content = _base_content(room) | {
        "users": {BOB: 2**53 - 1},
        "ban": 2**53 - 1,
        "events": {"m.room.tombstone": 2**53 - 1},
    }
    room.check(room.event("m.room.power_levels", ALICE, "", content))


def test_v12_additional_creator_outranks_top_user() -> None:
    room = Room("12", create_content={"additional_creators": [CAROL]})
    room.set_power_levels(users={BOB: 9000})
    content = _base_content(room) | {"users": {BOB: 0}}
    room.check(room.event("m.room.power_levels", CAROL, "", content))
    # and bob, at 9000, cannot kick carol
    with pytest.raises(AuthError, match="cannot kick"):
        room.check(room.member(CAROL, "leave", sender=BOB))


def test_v12_creators_cannot_act_on_each_other() -> None:
    room = Room("12", create_content={"additional_creators": [CAROL]})
    room.set_power_levels(users={BOB: 50})
    with pytest.raises(AuthError, match="cannot ban"):
        room.check(room.member(ALICE, "ban", sender=CAROL))
    with pytest.raises(AuthError, match="cannot kick"):
        room.check(room.member(CAROL, "leave", sender=ALICE))


def test_v11_additional_creators_mean_nothing() -> None:
    room = Room("11", create_content={"additional_creators": [CAROL]})
    with pytest.raises(AuthError, match="cannot ban"):
        room.check(room.member(BOB, "ban", sender=CAROL))


# --------------------------------------------------------------------------------------------
# reading odd previous events


@pytest.mark.parametrize("version_id", V1_9)
def test_stringy_previous_levels_are_read_as_integers(version_id: str) -> None:
    room = Room(version_id)
    room.set_power_levels(users={ALICE: "100", BOB: " 50 "}, ban="+60")
    # bob at 50 cannot change ban (60 > 50): .6.1
    content = _base_content(room) | {"ban": 40}
    with pytest.raises(AuthError, match="cannot change ban from 60"):
        room.check(room.event("m.room.power_levels", BOB, "", content))
    # and bob's stringy 50 is a real 50: he can kick carol
    room.check(room.member(CAROL, "leave", sender=BOB))


@pytest.mark.parametrize("version_id", versions(10))
def test_v10_stringy_previous_levels_read_as_defaults(version_id: str) -> None:
    # An (invalid) stringy level in the state is not a level in v10+: the default applies.
    room = Room(version_id)
    room.set_power_levels(users={BOB: "100"})
    with pytest.raises(AuthError, match="cannot kick"):
        room.check(room.member(CAROL, "leave", sender=BOB))


@pytest.mark.parametrize("version_id", ALL_VERSIONS)
def test_power_levels_content_not_an_object_value_types(version_id: str) -> None:
    room = Room(version_id)
    contents: list[dict[str, Any]] = [{"users": None}, {"events": "x"}, {"users": {BOB: []}}]
    for content in contents:
        with pytest.raises(AuthError, match=r"m\.room\.power_levels"):
            room.check(room.event("m.room.power_levels", ALICE, "", content))
