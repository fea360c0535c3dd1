"""The rules other than membership and power levels, per room version family:

rule 1 (m.room.create), v12 rule 2 (room ID = create event ID), m.federate (v1–v11 rule 3,
v12 rule 4), m.room.aliases (v1–v5 rule 4), sender joined (v1–v5 rule 6, v6–v11 rule 5,
v12 rule 6), m.room.third_party_invite (7 / 6 / 7), required power level (8 / 7 / 8),
`@` state keys (9 / 8 / 9), m.room.redaction (v1–v2 rule 11).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import pytest

from processor.errors import AuthError
from processor.matrix.auth import check_auth
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

PL_KEY = ("m.room.power_levels", "")
V1_10 = versions(1, 10)
V1_11 = versions(1, 11)
V11 = versions(11)

# --------------------------------------------------------------------------------------------
# rule 1: m.room.create

CREATE_ROWS: list[tuple[str, list[str], dict[str, Any], str | None]] = [
    # (description, versions, overrides, expected)
    ("plain create", ALL_VERSIONS, {}, None),
    ("1.1 prev_events", ALL_VERSIONS, {"prev": ("$x",)}, "no prev_events"),
    ("1.3 unknown room_version", ALL_VERSIONS, {"merge": {"room_version": "99"}},
     "not recognised"),
    ("1.3 room_version not a string", ALL_VERSIONS, {"merge": {"room_version": 12}},
     "not recognised"),
    ("1.3 room_version absent", V11, {"content": {}}, None),
    ("1.3 another known version", ALL_VERSIONS, {"merge": {"room_version": "5"}}, None),
    ("v1-v10 1.4 no creator", V1_10, {"content": {"room_version": "1"}}, "no creator"),
    ("v11+ creator not needed", V11, {"content": {"room_version": "11"}}, None),
    ("v12 1.4 additional creators", ["12"],
     {"merge": {"additional_creators": ["@x:y.example", DAVE]}}, None),
    ("v12 1.4 additional creators empty", ["12"], {"merge": {"additional_creators": []}}, None),
    ("v12 1.4 additional creator not a user ID", ["12"],
     {"merge": {"additional_creators": ["x"]}}, "additional_creators"),
    ("v12 1.4 additional creators not a list", ["12"],
     {"merge": {"additional_creators": DAVE}}, "additional_creators"),
    ("v12 1.4 additional creator not a string", ["12"],
     {"merge": {"additional_creators": [1]}}, "additional_creators"),
    ("v11 ignores additional_creators", V11[:1], {"merge": {"additional_creators": 5}}, None),
    ("v1-v11 1.2 room ID domain differs", V1_11, {"room_id": "!room:b.example"},
     "does not match sender domain"),
    ("v12 1.2 create carries a room_id", ["12"], {"pdu": {"room_id": "!create"}},
     "must not have a room_id"),
    ("v12 room ID not the event ID", ["12"], {"room_id": "!other"}, "not the create event's ID"),
]


def _expand(rows: list[tuple[Any, ...]]) -> list[Any]:
    params = []
    for description, version_ids, *rest in rows:
        for version_id in version_ids:
            params.append(pytest.param(version_id, *rest, id=f"v{version_id}-{description}"))
    return params


@pytest.mark.parametrize(("version_id", "overrides", "expected"), _expand(CREATE_ROWS))
def test_create(version_id: str, overrides: dict[str, Any], expected: str | None) -> None:
    version = room_version(version_id)
    content: dict[str, Any] = {"room_version": version_id}
    if not version.implicit_room_creator:
        content["creator"] = ALICE
    content = overrides.get("content", content) | overrides.get("merge", {})
    default_room_id = "!create" if version.room_id_is_create_event_hash else "!r:a.example"
    event = make_event(
        "$create",
        overrides.get("room_id", default_room_id),
        ALICE,
        "m.room.create",
        "",
        content,
        prev_event_ids=overrides.get("prev", ()),
        pdu=overrides.get("pdu", {}),
    )
    if expected is None:
        check_auth(event, {}, version)
    else:
        with pytest.raises(AuthError, match=expected):
            check_auth(event, {}, version)


# --------------------------------------------------------------------------------------------
# the create event in the state: v1–v11 rule 2.4 (through the auth state), v12 rule 2


@pytest.mark.parametrize("version_id", ALL_VERSIONS)
def test_no_create_event_rejects_everything(version_id: str) -> None:
    room = Room(version_id)
    del room.state[("m.room.create", "")]
    with pytest.raises(AuthError, match="create event"):
        room.check(room.event("m.room.message", CAROL, None, {"body": "x"}))


def test_v12_room_id_must_be_create_event_id() -> None:
    room = Room("12")
    message = room.event("m.room.message", CAROL, None, {"body": "x"})
    room.check(message)
    for room_id in ("!other", "create", "!room:a.example"):
        event = make_event("$m", room_id, CAROL, "m.room.message", None, {"body": "x"})
        with pytest.raises(AuthError, match="room ID"):
            room.check(event)


def test_v11_room_id_is_not_checked_against_create_id() -> None:
    # v1–v11 room IDs are `!opaque:server`, independent of the create event's ID.
    room = Room("11")
    room.check(room.event("m.room.message", CAROL, None, {"body": "x"}))


# --------------------------------------------------------------------------------------------
# m.federate: v1–v11 rule 3, v12 rule 4

FEDERATE_ROWS = [
    # (description, versions, m.federate, sender, expected)
    ("false, other server", ALL_VERSIONS, False, BOB, "does not federate"),
    ("false, creator's server", ALL_VERSIONS, False, ALICE, None),
    ("true, other server", ALL_VERSIONS, True, BOB, None),
    ("absent, other server", ALL_VERSIONS, None, BOB, None),
    ("string 'false' is not false", ALL_VERSIONS, "false", BOB, None),
    ("zero is not false", ALL_VERSIONS, 0, BOB, None),
]


@pytest.mark.parametrize(
    ("version_id", "federate", "sender", "expected"), _expand(FEDERATE_ROWS)
)
def test_m_federate(version_id: str, federate: object, sender: str, expected: str | None) -> None:
    version = room_version(version_id)
    content: dict[str, Any] = {} if version.implicit_room_creator else {"creator": ALICE}
    if federate is not None:
        content["m.federate"] = federate
    room = Room(version_id, create_content=content)
    event = room.event("m.room.message", sender, None, {"body": "x"})
    if expected is None:
        room.check(event)
    else:
        with pytest.raises(AuthError, match=expected):
            room.check(event)


def test_m_federate_false_applies_to_joins_too() -> None:
    room = Room("10", join_rule="public", create_content={"creator": ALICE, "m.federate": False})
    with pytest.raises(AuthError, match="does not federate"):
        room.check(room.member(DAVE, "join"))
    room.check(room.member("@zed:a.example", "join"))


# --------------------------------------------------------------------------------------------
# m.room.aliases: v1–v5 rule 4 (removed in v6, where it is an ordinary state event)

ALIASES_ROWS = [
    # (description, versions, sender, state_key, expected)
    ("own domain, member", versions(1, 5), BOB, "b.example", None),
    ("own domain, not even in the room", versions(1, 5), DAVE, "c.example", None),
    ("other domain", versions(1, 5), BOB, "a.example", "not the sender's domain"),
    ("no state_key", versions(1, 5), BOB, None, "no state_key"),
    ("v6+: non-member", versions(6), DAVE, "c.example", "not joined"),
    ("v6+: member below state_default", versions(6), CAROL, "b.example", "below the required"),
    ("v6+: member at state_default, other domain", versions(6), BOB, "a.example", None),
]


@pytest.mark.parametrize(
    ("version_id", "sender", "state_key", "expected"), _expand(ALIASES_ROWS)
)
def test_aliases(version_id: str, sender: str, state_key: str | None, expected: str | None) -> None:
    room = Room(version_id)
    event = room.event("m.room.aliases", sender, state_key, {"aliases": ["#a:b.example"]})
    if expected is None:
        room.check(event)
    else:
        with pytest.raises(AuthError, match=expected):
            room.check(event)


# --------------------------------------------------------------------------------------------
# sender joined: v1–v5 rule 6, v6–v11 rule 5, v12 rule 6

SENDER_ROWS = [
    ("joined user", ALL_VERSIONS, CAROL, None),
    ("invited user", ALL_VERSIONS, FRANK, "not joined"),
    ("stranger", ALL_VERSIONS, DAVE, "not joined"),
    ("banned user", ALL_VERSIONS, "@eve:c.example", "not joined"),
    ("left user", ALL_VERSIONS, "@hank:c.example", "not joined"),
    ("knocking user", versions(7), "@gina:c.example", "not joined"),
]


@pytest.mark.parametrize(("version_id", "sender", "expected"), _expand(SENDER_ROWS))
def test_sender_must_be_joined(version_id: str, sender: str, expected: str | None) -> None:
    room = Room(version_id)
    for event in (
        room.event("m.room.message", sender, None, {"body": "x"}),
        room.event("org.example.custom", sender, None, {}),
    ):
        if expected is None:
            room.check(event)
        else:
            with pytest.raises(AuthError, match=expected):
                room.check(event)


# --------------------------------------------------------------------------------------------
# m.room.third_party_invite: v1–v5 rule 7, v6–v11 rule 6, v12 rule 7

TPI_ROWS = [
    # (description, versions, levels, sender, expected)
    ("user at invite level 0", ALL_VERSIONS, {}, CAROL, None),
    ("user below invite level", ALL_VERSIONS, {"invite": 50}, CAROL, "below the invite level"),
    ("moderator at invite level", ALL_VERSIONS, {"invite": 50}, BOB, None),
    # allowed by rule 7 before the required-level rule 8 is reached
    ("events level ignored", ALL_VERSIONS, {"events": {"m.room.third_party_invite": 100}},
     CAROL, None),
    ("state_default ignored", ALL_VERSIONS, {"state_default": 100}, CAROL, None),
    ("non-member", ALL_VERSIONS, {}, DAVE, "not joined"),
]


@pytest.mark.parametrize(
    ("version_id", "levels", "sender", "expected"), _expand(TPI_ROWS)
)
def test_third_party_invite_event(
    version_id: str, levels: dict[str, Any], sender: str, expected: str | None
) -> None:
    room = Room(version_id)
    if levels:
        room.set_power_levels(**levels)
    event = room.event(
        "m.room.third_party_invite", sender, "tok", {"display_name": "x", "public_key": "k"}
    )
    if expected is None:
        room.check(event)
    else:
        with pytest.raises(AuthError, match=expected):
            room.check(event)


# --------------------------------------------------------------------------------------------
# required power level: v1–v5 rule 8, v6–v11 rule 7, v12 rule 8

REQUIRED_ROWS = [
    # (description, versions, levels or None for no power-levels event, type, state_key,
    #  sender, expected)
    ("message at events_default 0", ALL_VERSIONS, {}, "m.room.message", None, CAROL, None),
    ("message, events_default 10", ALL_VERSIONS, {"events_default": 10}, "m.room.message",
     None, CAROL, "below the required level 10"),
    ("message, events[type] 10", ALL_VERSIONS, {"events": {"m.room.message": 10}},
     "m.room.message", None, CAROL, "below the required level 10"),
    ("events[type] below events_default", ALL_VERSIONS,
     {"events_default": 100, "events": {"m.room.message": 0}}, "m.room.message", None, CAROL,
     None),
    ("state at state_default 50", ALL_VERSIONS, {}, "m.room.topic", "", CAROL,
     "below the required level 50"),
    ("moderator sets state", ALL_VERSIONS, {}, "m.room.topic", "", BOB, None),
    ("events[type] overrides state_default", ALL_VERSIONS, {"events": {"m.room.topic": 0}},
     "m.room.topic", "", CAROL, None),
    ("state_default 0", ALL_VERSIONS, {"state_default": 0}, "m.room.name", "", CAROL, None),
    ("stringy events level v1-v9", versions(1, 9), {"events": {"m.room.message": "10"}},
     "m.room.message", None, CAROL, "below the required level 10"),
    # The spec's text says 0; the network requires 50 (docs/interoperability.md).
    ("no power levels: state needs 50", ALL_VERSIONS, None, "m.room.topic", "", CAROL,
     "below the required level 50"),
    ("no power levels: the creator may send state", ALL_VERSIONS, None, "m.room.topic", "",
     ALICE, None),
    ("no power levels: messages need 0", ALL_VERSIONS, None, "m.room.message", None, CAROL,
     None),
    ("redaction at events_default (v3+ no special rule)", versions(3),
     {"events_default": 10}, "m.room.redaction", None, CAROL, "below the required level"),
    ("creator above any level", ALL_VERSIONS, {"events": {"m.room.tombstone": 100}},
     "m.room.tombstone", "", ALICE, None),
    ("moderator below a high event level", ALL_VERSIONS, {"events": {"m.room.tombstone": 100}},
     "m.room.tombstone", "", BOB, "below the required level 100"),
]


@pytest.mark.parametrize(
    ("version_id", "levels", "type", "state_key", "sender", "expected"),
    _expand(REQUIRED_ROWS),
)
def test_required_power_level(
    version_id: str,
    levels: dict[str, Any] | None,
    type: str,
    state_key: str | None,
    sender: str,
    expected: str | None,
) -> None:
    if levels is None:
        room = Room(version_id, power_levels=None)
    else:
        room = Room(version_id)
        if levels:
            room.set_power_levels(**levels)
    event = room.event(type, sender, state_key, {"x": 1}, redacts="$e1:a.example")
    if expected is None:
        room.check(event)
    else:
        with pytest.raises(AuthError, match=expected):
            room.check(event)


# --------------------------------------------------------------------------------------------
# `@` state keys: v1–v5 rule 9, v6–v11 rule 8, v12 rule 9

AT_ROWS = [
    ("own user ID", ALL_VERSIONS, BOB, "@bob:b.example", None),
    ("someone else's user ID", ALL_VERSIONS, BOB, "@carol:b.example", "starts with @"),
    ("creator cannot use another's key", ALL_VERSIONS, ALICE, "@bob:b.example", "starts with @"),
    ("bare @", ALL_VERSIONS, BOB, "@", "starts with @"),
    ("@ not first", ALL_VERSIONS, BOB, "x@bob:b.example", None),
    ("empty state key", ALL_VERSIONS, BOB, "", None),
    ("own ID with suffix", ALL_VERSIONS, BOB, "@bob:b.example_x", "starts with @"),
]


@pytest.mark.parametrize(("version_id", "sender", "state_key", "expected"), _expand(AT_ROWS))
def test_at_state_keys(
    version_id: str, sender: str, state_key: str, expected: str | None
) -> None:
    room = Room(version_id)
    event = room.event("org.example.state", sender, state_key, {})
    if expected is None:
        room.check(event)
    else:
        with pytest.raises(AuthError, match=expected):
            room.check(event)


# --------------------------------------------------------------------------------------------
# m.room.redaction: v1–v2 rule 11; from v3 redactions pass auth like any message event

REDACTION_ROWS = [
    # (description, versions, sender, redaction event ID, redacts, expected)
    ("moderator at redact level", versions(1, 2), BOB, "$r:b.example", "$x:a.example", None),
    ("same server as the redacted event", versions(1, 2), CAROL, "$r:b.example", "$x:b.example",
     None),
    ("other server, below redact level", versions(1, 2), CAROL, "$r:b.example", "$x:a.example",
     "below the redact level"),
    ("no redacts, below redact level", versions(1, 2), CAROL, "$r:b.example", None,
     "below the redact level"),
    ("v3+: no redaction auth rule", versions(3), CAROL, "$r", "$x", None),
    ("v3+: still needs membership", versions(3), DAVE, "$r", "$x", "not joined"),
]


@pytest.mark.parametrize(
    ("version_id", "sender", "event_id", "redacts", "expected"), _expand(REDACTION_ROWS)
)
def test_redaction(
    version_id: str, sender: str, event_id: str, redacts: str | None, expected: str | None
) -> None:
    room = Room(version_id)
    event = room.event("m.room.redaction", sender, None, {}, event_id=event_id, redacts=redacts)
    if expected is None:
        room.check(event)
    else:
        with pytest.raises(AuthError, match=expected):
            room.check(event)


def test_redaction_rule_respects_redact_level() -> None:
    room = Room("1")
    room.set_power_levels(redact=75)
    event = room.event(
        "m.room.redaction", BOB, None, {}, event_id="$r:b.example", redacts="$x:a.example"
    )
    with pytest.raises(AuthError, match="below the redact level 75"):
        room.check(event)
    room.set_power_levels(redact=0)
    room.check(
        room.event("m.room.redaction", CAROL, None, {}, event_id="$r:b.example", redacts="$x:a")
    )


# --------------------------------------------------------------------------------------------
# check_auth reads only the keys the rules name (the state of a big room is never walked)


class _LookupOnlyState(Mapping[tuple[str, str], Event]):
    """A state that allows `get`/`[]`/`in` and fails the test on any iteration."""

    def __init__(self, state: dict[tuple[str, str], Event]) -> None:
        self._state = state
        self.looked_up: set[tuple[str, str]] = set()

    def __getitem__(self, key: tuple[str, str]) -> Event:
        self.looked_up.add(key)
        return self._state[key]

    def __iter__(self) -> Iterator[tuple[str, str]]:
        raise AssertionError("check_auth iterated the state")

    def __len__(self) -> int:
        raise AssertionError("check_auth took the length of the state")


@pytest.mark.parametrize("version_id", ALL_VERSIONS)
def test_check_auth_only_looks_up_keys(version_id: str) -> None:
    room = Room(version_id, join_rule="public")
    state = _LookupOnlyState(room.state)
    events = [
        room.event("m.room.message", CAROL, None, {"body": "x"}),
        room.member(DAVE, "join"),
        room.member(CAROL, "leave", sender=BOB),
        room.member(DAVE, "invite", sender=BOB),
        room.member(CAROL, "ban", sender=BOB),
        room.event("m.room.power_levels", ALICE, "", dict(room.state[PL_KEY].content)),
    ]
    for event in events:
        check_auth(event, state, room.version)
    assert state.looked_up <= {
        ("m.room.create", ""),
        PL_KEY,
        ("m.room.join_rules", ""),
        *(("m.room.member", user) for user in (ALICE, BOB, CAROL, DAVE)),
    }
