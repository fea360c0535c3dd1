"""The m.room.member rules (v1–v5 rule 5, v6–v11 rule 4, v12 rule 5), one table per
membership, each row run in every room version family it applies to.

Rows: (description, versions, join_rule, sender, target, expected) where expected is None
(allowed) or a fragment of the AuthError message. Rule numbers are cited per row as
"v1–v5 / v6–v11 / v12".
"""

from __future__ import annotations

from typing import Any

import pytest

from processor.errors import AuthError
from processor.matrix.events import Event
from tests.unit.matrix.test_auth_fixtures import (
    ALICE,
    ALL_VERSIONS,
    BOB,
    CAROL,
    DAVE,
    EVE,
    FRANK,
    GINA,
    HANK,
    IVAN,
    Room,
    versions,
)


def _expect(room: Room, event: Event, expected: str | None) -> None:
    if expected is None:
        room.check(event)
    else:
        with pytest.raises(AuthError, match=expected):
            room.check(event)


def _expand(rows: list[tuple[Any, ...]]) -> list[Any]:
    """One pytest param per (row, room version)."""
    params = []
    for row in rows:
        description, version_ids, *rest = row
        for version_id in version_ids:
            params.append(pytest.param(version_id, *rest, id=f"v{version_id}-{description}"))
    return params


V1_6 = versions(1, 6)
V1_7 = versions(1, 7)
V1_9 = versions(1, 9)
V7 = versions(7)
V8 = versions(8)
V10 = versions(10)

# --------------------------------------------------------------------------------------------
# join: 5.2 / 4.3 / 5.3

JOIN_ROWS = [
    # x.2.2 / 4.3.2: sender must be the state_key
    ("join for someone else", ALL_VERSIONS, "public", BOB, DAVE, "sender is not the state_key"),
    # x.3: banned before anything else — even in a public room
    ("banned, public room", ALL_VERSIONS, "public", EVE, EVE, "sender is banned"),
    ("banned, invite room", ALL_VERSIONS, "invite", EVE, EVE, "sender is banned"),
    # invite join rule: 5.2.4 / 4.3.4 / 5.3.4
    ("invited user joins", ALL_VERSIONS, "invite", FRANK, FRANK, None),
    ("joined user re-joins", ALL_VERSIONS, "invite", CAROL, CAROL, None),
    ("uninvited user, invite room", ALL_VERSIONS, "invite", DAVE, DAVE, "not invited"),
    ("left user, invite room", ALL_VERSIONS, "invite", HANK, HANK, "not invited"),
    # public: 5.2.5 / 4.3.6 / 5.3.6
    ("stranger joins public room", ALL_VERSIONS, "public", DAVE, DAVE, None),
    ("left user re-joins public room", ALL_VERSIONS, "public", HANK, HANK, None),
    # knock join rule (v7+) behaves as invite for joins; unknown before v7
    ("invited user joins knock room", V7, "knock", FRANK, FRANK, None),
    ("uninvited user, knock room", V7, "knock", DAVE, DAVE, "not invited"),
    ("knocking user cannot join knock room", V7, "knock", GINA, GINA, "not invited"),
    ("knock join rule unknown before v7", V1_6, "knock", FRANK, FRANK, "does not allow"),
    # anything else: 5.2.6 / 4.3.7 / 5.3.7
    ("private join rule", ALL_VERSIONS, "private", DAVE, DAVE, "does not allow"),
    ("invited user, private join rule", ALL_VERSIONS, "private", FRANK, FRANK, "does not allow"),
    ("made-up join rule", ALL_VERSIONS, "everyone", DAVE, DAVE, "does not allow"),
    ("non-string join rule", ALL_VERSIONS, 1, DAVE, DAVE, "does not allow"),
    ("restricted join rule unknown before v8", V1_7, "restricted", FRANK, FRANK, "not allow"),
    (
        "knock_restricted unknown before v10",
        versions(1, 9),
        "knock_restricted",
        FRANK,
        FRANK,
        "does not allow",
    ),
    # restricted / knock_restricted, 4.3.5.1 / 5.3.5.1: invited or joined users just join
    ("invited user, restricted", V8, "restricted", FRANK, FRANK, None),
    ("joined user, restricted", V8, "restricted", CAROL, CAROL, None),
    ("invited user, knock_restricted", V10, "knock_restricted", FRANK, FRANK, None),
    # 4.3.5.2: otherwise an authorising user is needed
    ("stranger without authoriser", V8, "restricted", DAVE, DAVE, "no join_authorised"),
    ("knocker without authoriser", V10, "knock_restricted", GINA, GINA, "no join_authorised"),
    ("banned with authoriser still banned", V8, "restricted", EVE, EVE, "sender is banned"),
]


@pytest.mark.parametrize(
    ("version_id", "join_rule", "sender", "target", "expected"), _expand(JOIN_ROWS)
)
def test_join(
    version_id: str, join_rule: object, sender: str, target: str, expected: str | None
) -> None:
    room = Room(version_id, join_rule=join_rule)
    _expect(room, room.member(target, "join", sender=sender), expected)


def test_no_join_rules_event_reads_as_invite() -> None:
    # With no m.room.join_rules event the reference server reads the join rule as `invite`:
    # invited users may join, strangers may not.
    for version_id in ALL_VERSIONS:
        room = Room(version_id, join_rule=None)
        room.check(room.member(FRANK, "join"))
        with pytest.raises(AuthError, match="not invited"):
            room.check(room.member(DAVE, "join"))


# --------------------------------------------------------------------------------------------
# restricted joins with an authorising user: v8–v11 4.2 and 4.3.5, v12 5.2 and 5.3.5

AUTHORISER_ROWS = [
    # (description, versions, join_rule, authoriser, signed_by, invite_level, expected)
    ("joined authoriser at invite level", V8, "restricted", BOB, "b.example", 0, None),
    ("knock_restricted authoriser", V10, "knock_restricted", BOB, "b.example", 0, None),
    ("authoriser exactly at invite level", V8, "restricted", BOB, "b.example", 50, None),
    ("authoriser below invite level", V8, "restricted", CAROL, "b.example", 50, "below the invite"),
    ("authoriser not joined (invited)", V8, "restricted", FRANK, "c.example", 0, "not joined"),
    ("authoriser never in the room", V8, "restricted", DAVE, "c.example", 0, "not joined"),
    ("authoriser banned", V8, "restricted", EVE, "c.example", 0, "not joined"),
    ("not signed by the authoriser's server", V8, "restricted", BOB, "c.example", 0, "not signed"),
    ("authoriser not a user ID", V8, "restricted", "bob", "b.example", 0, "not a valid user ID"),
]


@pytest.mark.parametrize(
    ("version_id", "join_rule", "authoriser", "signed_by", "invite_level", "expected"),
    _expand(AUTHORISER_ROWS),
)
def test_restricted_join_authoriser(
    version_id: str,
    join_rule: str,
    authoriser: str,
    signed_by: str,
    invite_level: int,
    expected: str | None,
) -> None:
    room = Room(version_id, join_rule=join_rule)
    room.set_power_levels(invite=invite_level)
    pdu = {"signatures": {"c.example": {"ed25519:1": "sig"}, signed_by: {"ed25519:1": "sig"}}}
    event = room.member(
        DAVE, "join", extra={"join_authorised_via_users_server": authoriser}, pdu=pdu
    )
    _expect(room, event, expected)


def test_v12_creator_authorises_restricted_join() -> None:
    # v12: the creator has no entry in users but is above every level (MSC4289).
    room = Room("12", join_rule="restricted")
    room.set_power_levels(invite=100)
    pdu = {"signatures": {"a.example": {"ed25519:1": "sig"}}}
    room.check(
        room.member(DAVE, "join", extra={"join_authorised_via_users_server": ALICE}, pdu=pdu)
    )


def test_authoriser_key_ignored_before_v8() -> None:
    # join_authorised_via_users_server means nothing before restricted rooms (v8).
    for version_id in V1_7:
        room = Room(version_id, join_rule="public")
        room.check(room.member(DAVE, "join", extra={"join_authorised_via_users_server": "x"}))


def test_authoriser_signature_checked_for_any_membership_v8() -> None:
    # 4.2 applies whenever the key is present, not only to joins.
    room = Room("9")
    event = room.member(CAROL, "leave", extra={"join_authorised_via_users_server": BOB})
    with pytest.raises(AuthError, match=r"not signed by b\.example"):
        room.check(event)


# --------------------------------------------------------------------------------------------
# the creator's first join: 5.2.1 / 4.3.1 / 5.3.1


@pytest.mark.parametrize("version_id", ALL_VERSIONS)
def test_creator_first_join_after_create(version_id: str) -> None:
    room = Room(version_id, join_rule=None, power_levels=None, members=False)
    del room.state[("m.room.member", ALICE)]
    room.check(room.member(ALICE, "join", prev_event_ids=("$create",)))


@pytest.mark.parametrize("version_id", ALL_VERSIONS)
def test_creator_join_not_right_after_create_needs_join_rules(version_id: str) -> None:
    room = Room(version_id, join_rule=None, power_levels=None, members=False)
    del room.state[("m.room.member", ALICE)]
    with pytest.raises(AuthError, match="not invited"):
        room.check(room.member(ALICE, "join", prev_event_ids=("$create", "$other")))


@pytest.mark.parametrize("version_id", ALL_VERSIONS)
def test_non_creator_cannot_join_right_after_create(version_id: str) -> None:
    room = Room(version_id, join_rule=None, power_levels=None, members=False)
    with pytest.raises(AuthError, match="not invited"):
        room.check(room.member(DAVE, "join", prev_event_ids=("$create",)))


@pytest.mark.parametrize(
    ("version_id", "allowed"), [(v, n >= 11) for n, v in enumerate(ALL_VERSIONS, 1)]
)
def test_creator_is_content_creator_until_v10_then_sender(version_id: str, allowed: bool) -> None:
    # v1–v10: "the state_key is the creator" (content.creator); v11+: the create's sender.
    room = Room(
        version_id,
        join_rule=None,
        power_levels=None,
        members=False,
        create_content={"creator": DAVE},
    )
    del room.state[("m.room.member", ALICE)]
    alice_join = room.member(ALICE, "join", prev_event_ids=("$create",))
    dave_join = room.member(DAVE, "join", prev_event_ids=("$create",))
    if allowed:
        room.check(alice_join)
        with pytest.raises(AuthError):
            room.check(dave_join)
    else:
        room.check(dave_join)
        with pytest.raises(AuthError):
            room.check(alice_join)


def test_v12_additional_creator_has_no_first_join_shortcut() -> None:
    # v12 5.3.1 names only the sender of the create event.
    room = Room(
        "12", join_rule=None, power_levels=None, members=False,
        create_content={"additional_creators": [DAVE]},
    )
    with pytest.raises(AuthError, match="not invited"):
        room.check(room.member(DAVE, "join", prev_event_ids=("$create",)))


# --------------------------------------------------------------------------------------------
# invite (without third_party_invite): 5.3.2–5.3.5 / 4.4.2–4.4.5 / 5.4.2–5.4.5

INVITE_ROWS = [
    # (description, versions, invite_level, sender, target, expected)
    ("moderator invites stranger", ALL_VERSIONS, 0, BOB, DAVE, None),
    ("user at 0 invites, invite level 0", ALL_VERSIONS, 0, CAROL, DAVE, None),
    ("user below invite level", ALL_VERSIONS, 50, CAROL, DAVE, "below the invite level"),
    ("user at invite level", ALL_VERSIONS, 50, BOB, DAVE, None),
    ("sender not joined (invited)", ALL_VERSIONS, 0, FRANK, DAVE, "sender is not joined"),
    ("sender never in room", ALL_VERSIONS, 0, DAVE, HANK, "sender is not joined"),
    ("sender banned", ALL_VERSIONS, 0, EVE, DAVE, "sender is not joined"),
    ("target already joined", ALL_VERSIONS, 0, BOB, CAROL, "target is already join"),
    ("target banned", ALL_VERSIONS, 0, BOB, EVE, "target is already ban"),
    ("target banned, sender at 100", ALL_VERSIONS, 0, ALICE, EVE, "target is already ban"),
    ("re-invite an invited user", ALL_VERSIONS, 0, BOB, FRANK, None),
    ("invite a left user", ALL_VERSIONS, 0, BOB, HANK, None),
    ("invite a knocking user", V7, 0, BOB, GINA, None),
    ("invite level above everyone but the creator", ALL_VERSIONS, 75, BOB, DAVE, "below"),
    ("creator above a high invite level", ALL_VERSIONS, 100, ALICE, DAVE, None),
]


@pytest.mark.parametrize(
    ("version_id", "invite_level", "sender", "target", "expected"), _expand(INVITE_ROWS)
)
def test_invite(
    version_id: str, invite_level: int, sender: str, target: str, expected: str | None
) -> None:
    room = Room(version_id)
    room.set_power_levels(invite=invite_level)
    _expect(room, room.member(target, "invite", sender=sender), expected)


# --------------------------------------------------------------------------------------------
# leave: 5.4 / 4.5 / 5.5

LEAVE_ROWS = [
    # (description, versions, levels, sender, target, expected)
    ("joined user leaves", ALL_VERSIONS, {}, CAROL, CAROL, None),
    ("invited user rejects invite", ALL_VERSIONS, {}, FRANK, FRANK, None),
    ("knocking user retracts knock", V7, {}, GINA, GINA, None),
    ("left user leaves again", ALL_VERSIONS, {}, HANK, HANK, "not one that can be left"),
    ("banned user cannot leave", ALL_VERSIONS, {}, EVE, EVE, "not one that can be left"),
    ("stranger cannot leave", ALL_VERSIONS, {}, DAVE, DAVE, "not one that can be left"),
    # kicks: 5.4.4 / 4.5.4 / 5.5.4
    ("moderator kicks user", ALL_VERSIONS, {}, BOB, CAROL, None),
    ("moderator kicks invited user", ALL_VERSIONS, {}, BOB, FRANK, None),
    ("moderator kicks stranger", ALL_VERSIONS, {}, BOB, DAVE, None),
    ("user cannot kick moderator", ALL_VERSIONS, {}, CAROL, BOB, "cannot kick"),
    ("user cannot kick user at same level", ALL_VERSIONS, {"kick": 0}, CAROL, HANK, "cannot kick"),
    ("moderator cannot kick peer", ALL_VERSIONS, {}, BOB, IVAN, "cannot kick"),
    ("moderator cannot kick creator", ALL_VERSIONS, {}, BOB, ALICE, "cannot kick"),
    ("creator kicks moderator", ALL_VERSIONS, {}, ALICE, BOB, None),
    ("moderator below kick level", ALL_VERSIONS, {"kick": 75}, BOB, CAROL, "cannot kick"),
    ("kick by non-member", ALL_VERSIONS, {}, DAVE, CAROL, "sender is not joined"),
    ("kick by invited user", ALL_VERSIONS, {}, FRANK, CAROL, "sender is not joined"),
    # unban: 5.4.3 / 4.5.3 / 5.5.3 — needs the ban level *and* the kick level
    ("moderator unbans", ALL_VERSIONS, {}, BOB, EVE, None),
    ("unban needs ban level", ALL_VERSIONS, {"ban": 75}, BOB, EVE, "below the ban level"),
    ("unban needs kick level too", ALL_VERSIONS, {"kick": 75}, BOB, EVE, "cannot kick"),
    ("creator unbans above ban level", ALL_VERSIONS, {"ban": 75}, ALICE, EVE, None),
    ("user cannot unban", ALL_VERSIONS, {}, CAROL, EVE, "below the ban level"),
]


@pytest.mark.parametrize(
    ("version_id", "levels", "sender", "target", "expected"), _expand(LEAVE_ROWS)
)
def test_leave(
    version_id: str, levels: dict[str, int], sender: str, target: str, expected: str | None
) -> None:
    room = Room(version_id)
    if levels:
        room.set_power_levels(**levels)
    _expect(room, room.member(target, "leave", sender=sender), expected)


# --------------------------------------------------------------------------------------------
# ban: 5.5 / 4.6 / 5.6

BAN_ROWS = [
    ("moderator bans user", ALL_VERSIONS, {}, BOB, CAROL, None),
    ("moderator bans stranger", ALL_VERSIONS, {}, BOB, DAVE, None),
    ("moderator re-bans banned user", ALL_VERSIONS, {}, BOB, EVE, None),
    ("user cannot ban", ALL_VERSIONS, {}, CAROL, HANK, "cannot ban"),
    ("user cannot ban even at ban level 0 a peer", ALL_VERSIONS, {"ban": 0}, CAROL, DAVE,
     "cannot ban"),
    ("moderator cannot ban peer", ALL_VERSIONS, {}, BOB, IVAN, "cannot ban"),
    ("moderator cannot ban creator", ALL_VERSIONS, {}, BOB, ALICE, "cannot ban"),
    ("creator bans moderator", ALL_VERSIONS, {}, ALICE, BOB, None),
    ("moderator below ban level", ALL_VERSIONS, {"ban": 51}, BOB, CAROL, "cannot ban"),
    ("ban by non-member", ALL_VERSIONS, {}, DAVE, CAROL, "sender is not joined"),
    ("ban by left user", ALL_VERSIONS, {}, HANK, CAROL, "sender is not joined"),
    ("self-ban by moderator", ALL_VERSIONS, {}, BOB, BOB, "cannot ban"),
]


@pytest.mark.parametrize(
    ("version_id", "levels", "sender", "target", "expected"), _expand(BAN_ROWS)
)
def test_ban(
    version_id: str, levels: dict[str, int], sender: str, target: str, expected: str | None
) -> None:
    room = Room(version_id)
    if levels:
        room.set_power_levels(**levels)
    _expect(room, room.member(target, "ban", sender=sender), expected)


# --------------------------------------------------------------------------------------------
# knock: v7–v11 4.7, v12 5.7

KNOCK_ROWS = [
    ("stranger knocks on knock room", V7, "knock", DAVE, DAVE, None),
    ("left user knocks", V7, "knock", HANK, HANK, None),
    ("re-knock", V7, "knock", GINA, GINA, None),
    ("knock on knock_restricted room", V10, "knock_restricted", DAVE, DAVE, None),
    ("knock_restricted unknown in v7-v9", versions(7, 9), "knock_restricted", DAVE, DAVE,
     "does not allow knocking"),
    ("knock on public room", V7, "public", DAVE, DAVE, "does not allow knocking"),
    ("knock on invite room", V7, "invite", DAVE, DAVE, "does not allow knocking"),
    ("knock on restricted room", V8, "restricted", DAVE, DAVE, "does not allow knocking"),
    ("knock for someone else", V7, "knock", BOB, DAVE, "sender is not the state_key"),
    ("invited user cannot knock", V7, "knock", FRANK, FRANK, "already invite"),
    ("joined user cannot knock", V7, "knock", CAROL, CAROL, "already join"),
    ("banned user cannot knock", V7, "knock", EVE, EVE, "already ban"),
    ("knock is an unknown membership before v7", V1_6, "knock", DAVE, DAVE, "unknown membership"),
]


@pytest.mark.parametrize(
    ("version_id", "join_rule", "sender", "target", "expected"), _expand(KNOCK_ROWS)
)
def test_knock(
    version_id: str, join_rule: str, sender: str, target: str, expected: str | None
) -> None:
    room = Room(version_id, join_rule=join_rule)
    _expect(room, room.member(target, "knock", sender=sender), expected)


# --------------------------------------------------------------------------------------------
# malformed member events: 5.1 / 4.1 / 5.1 and unknown memberships 5.6 / 4.8 / 5.8

MALFORMED_ROWS: list[tuple[str, list[str], dict[str, Any], str | None]] = [
    ("no membership", ALL_VERSIONS, {}, "has no membership"),
    ("membership null", ALL_VERSIONS, {"membership": None}, "not a string"),
    ("membership a number", ALL_VERSIONS, {"membership": 1}, "not a string"),
    ("membership a list", ALL_VERSIONS, {"membership": ["join"]}, "not a string"),
    ("membership an object", ALL_VERSIONS, {"membership": {"a": 1}}, "not a string"),
    ("unknown membership", ALL_VERSIONS, {"membership": "dance"}, "unknown membership"),
    ("membership wrong case", ALL_VERSIONS, {"membership": "JOIN"}, "unknown membership"),
]


@pytest.mark.parametrize(("version_id", "content", "expected"), _expand(MALFORMED_ROWS))
def test_malformed_member_event(
    version_id: str, content: dict[str, Any], expected: str
) -> None:
    room = Room(version_id, join_rule="public")
    _expect(room, room.event("m.room.member", DAVE, DAVE, content), expected)


@pytest.mark.parametrize("version_id", ALL_VERSIONS)
def test_member_event_without_state_key(version_id: str) -> None:
    room = Room(version_id, join_rule="public")
    event = room.event("m.room.member", DAVE, None, {"membership": "join"})
    with pytest.raises(AuthError, match="no state_key"):
        room.check(event)


@pytest.mark.parametrize("version_id", ALL_VERSIONS)
def test_malformed_membership_in_state_is_no_membership(version_id: str) -> None:
    # A state member event whose membership is not a string counts as no membership.
    room = Room(version_id)
    room.state[("m.room.member", CAROL)] = room.event(
        "m.room.member", CAROL, CAROL, {"membership": ["join"]}
    )
    with pytest.raises(AuthError, match="not joined"):
        room.check(room.event("m.room.message", CAROL, None, {"body": "hi"}))
    with pytest.raises(AuthError, match="not invited"):
        room.check(room.member(CAROL, "join"))
