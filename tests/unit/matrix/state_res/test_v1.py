"""State resolution v1 (room version 1 page, "State resolution"), one test per rule of the
text: union without conflicts; power levels by ascending depth, each next one only while it
passes the auth rules against R; other keys by highest depth that passes."""

from __future__ import annotations

from processor.matrix.room_versions import room_version
from tests.unit.matrix.state_res.builder import ALICE, BOB, EVE, ZARA, RoomBuilder

V1 = room_version("1")
TOPIC = "m.room.topic"
PL = "m.room.power_levels"
MEMBER = "m.room.member"


def _forked_room() -> RoomBuilder:
    room = RoomBuilder(V1)
    room.start(users={BOB: 50})
    room.join("main", "bob_join", BOB)
    room.fork("main", "a")
    room.fork("main", "b")
    return room


def test_union_of_unconflicted_keys_including_keys_only_some_states_hold() -> None:
    # "A conflict occurs between states where those states have different event_ids for the
    # same (event_type, state_key)": a key only one state holds is not a conflict.
    room = _forked_room()
    room.join("a", "zara_join", ZARA)
    room.join("b", "eve_join", EVE)
    resolved = room.resolve("a", "b")
    assert resolved[(MEMBER, ZARA)] == "zara_join"
    assert resolved[(MEMBER, EVE)] == "eve_join"
    assert resolved[(PL, "")] == "pl0"


def test_other_conflicts_pick_the_highest_depth() -> None:
    room = _forked_room()
    room.send("a", "topic_shallow", TOPIC, ALICE, "", {"topic": "a"}, ts=9_000_000)
    room.send("b", "filler", "m.room.name", ALICE, "", {"name": "b"})
    room.send("b", "topic_deep", TOPIC, ALICE, "", {"topic": "b"})
    assert room.resolve("a", "b")[(TOPIC, "")] == "topic_deep"
    assert room.resolve("b", "a")[(TOPIC, "")] == "topic_deep"


def test_other_conflicts_skip_events_that_fail_auth_in_r() -> None:
    # Bob's deeper topic fails against R once Alice's demotion of Bob (the power levels
    # conflict, resolved first) is in R: the shallower topic is picked.
    room = _forked_room()
    room.send("a", "pl_demote_bob", PL, ALICE, "", room.power_levels({}))
    room.send("a", "topic_alice", TOPIC, ALICE, "", {"topic": "a"})
    room.send("b", "filler", "m.room.name", BOB, "", {"name": "b"})
    room.send("b", "filler2", "m.room.name", BOB, "", {"name": "c"})
    room.send("b", "topic_bob", TOPIC, BOB, "", {"topic": "b"})
    resolved = room.resolve("a", "b")
    assert resolved[(PL, "")] == "pl_demote_bob"
    assert resolved[(TOPIC, "")] == "topic_alice"


def test_power_levels_ascending_depth_later_one_applied_when_allowed() -> None:
    room = _forked_room()
    room.send("a", "pl_a", PL, ALICE, "", room.power_levels({BOB: 40}))
    room.send("b", "filler", "m.room.name", ALICE, "", {"name": "b"})
    room.send("b", "pl_b", PL, ALICE, "", room.power_levels({BOB: 30}))
    assert room.resolve("a", "b")[(PL, "")] == "pl_b"
    assert room.resolve("b", "a")[(PL, "")] == "pl_b"


def test_power_levels_stop_at_the_first_not_allowed() -> None:
    # Sorted by ascending depth: Alice's demotion of Bob (shallower) goes into R first;
    # Bob's deeper power levels event is then not allowed in R (Bob is at 0): stop.
    room = _forked_room()
    room.send("a", "pl_demote_bob", PL, ALICE, "", room.power_levels({}))
    room.send("b", "filler", "m.room.name", BOB, "", {"name": "b"})
    room.send("b", "pl_bob", PL, BOB, "", room.power_levels({BOB: 50}, events_default=10))
    assert room.resolve("a", "b")[(PL, "")] == "pl_demote_bob"


def test_member_conflict_ban_then_rejoin_not_allowed() -> None:
    # Eve's membership: the ban is shallower than Eve's rename, so it goes into R first; the
    # rename is then checked against R, where Eve is banned: not allowed, so the ban stays.
    room = _forked_room()
    room.join("main", "eve_join", EVE)
    room.fork("main", "a")
    room.fork("main", "b")
    room.send("a", "ban_eve", MEMBER, ALICE, EVE, {"membership": "ban"})
    room.send("b", "filler", "m.room.name", ALICE, "", {"name": "b"})
    room.send("b", "eve_rename", MEMBER, EVE, EVE, {"membership": "join", "displayname": "E"})
    assert room.resolve("a", "b")[(MEMBER, EVE)] == "ban_eve"


def test_single_state_resolves_to_itself() -> None:
    room = _forked_room()
    state = room.state("a")
    assert room.resolve(state) == room.names(state)
