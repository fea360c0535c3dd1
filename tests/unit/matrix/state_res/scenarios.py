"""State resolution scenarios, each a small room built from the spec's definitions.

Every scenario builds a room (see `builder.py`) and returns the builder and the state sets
to resolve; the expected results sit in the one-line-per-scenario table of
`test_scenarios.py`. Comments give the reasoning from the spec (room version 2 page, "State
resolution"; MSC4297 for v2.1).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from processor.matrix.room_versions import RoomVersion
from processor.nids import EventNID, StateKeyTuple
from tests.unit.matrix.state_res.builder import ALICE, BOB, CHARLIE, EVE, ZARA, RoomBuilder

StateSets = Sequence[Mapping[StateKeyTuple, EventNID]]
Scenario = Callable[[RoomVersion], tuple[RoomBuilder, StateSets]]

TOPIC = "m.room.topic"
PL = "m.room.power_levels"
JR = "m.room.join_rules"
MEMBER = "m.room.member"


def ban_vs_power_levels(version: RoomVersion) -> tuple[RoomBuilder, StateSets]:
    """Alice demotes Bob while Bob, concurrently, bans Eve. Both are power events; Alice's
    has the more powerful sender so it is ordered first, and Bob's ban then fails the auth
    rules (ban level) against the partially resolved state: Eve stays joined."""
    room = RoomBuilder(version)
    room.start(users={BOB: 50})
    room.join("main", "bob_join", BOB)
    room.join("main", "eve_join", EVE)
    room.fork("main", "a")
    room.fork("main", "b")
    room.send("a", "pl_demote_bob", PL, ALICE, "", room.power_levels({}))
    room.send("b", "ban_eve", MEMBER, BOB, EVE, {"membership": "ban"})
    return room, [room.state("a"), room.state("b")]


def join_rule_evasion(version: RoomVersion) -> tuple[RoomBuilder, StateSets]:
    """Alice makes the room invite-only while Eve, concurrently, joins it as a public room.
    The join rules are a power event, applied first; Eve's join (not a power event) is then
    checked against `invite` in the mainline step and fails."""
    room = RoomBuilder(version)
    room.start(join_rule="public")
    room.fork("main", "a")
    room.fork("main", "b")
    room.send("a", "jr_invite", JR, ALICE, "", {"join_rule": "invite"})
    room.join("b", "eve_join", EVE)
    return room, [room.state("a"), room.state("b")]


def offtopic_power_levels(version: RoomVersion) -> tuple[RoomBuilder, StateSets]:
    """Alice demotes Bob; concurrently Bob promotes Charlie, who sets the topic. Alice's
    power levels win the power ordering, Bob's are rejected, and Charlie's topic (mainline
    step) is rejected against them: no topic."""
    room = RoomBuilder(version)
    room.start(users={BOB: 50})
    room.join("main", "bob_join", BOB)
    room.join("main", "charlie_join", CHARLIE)
    room.fork("main", "a")
    room.fork("main", "b")
    room.send("a", "pl_alice", PL, ALICE, "", room.power_levels({}))
    room.send("b", "pl_bob", PL, BOB, "", room.power_levels({BOB: 50, CHARLIE: 50}))
    room.send("b", "topic_charlie", TOPIC, CHARLIE, "", {"topic": "off topic"})
    return room, [room.state("a"), room.state("b")]


def topic_reset(version: RoomVersion) -> tuple[RoomBuilder, StateSets]:
    """Alice sets a topic; then Bob changes it while Alice, concurrently, demotes Bob. The
    topic does not reset to nothing: Alice's topic (ordered first by origin_server_ts at the
    same mainline position) passes, Bob's fails against the demotion."""
    room = RoomBuilder(version)
    room.start(users={BOB: 50})
    room.join("main", "bob_join", BOB)
    room.send("main", "topic_alice", TOPIC, ALICE, "", {"topic": "one"})
    room.fork("main", "a")
    room.fork("main", "b")
    room.send("a", "topic_bob", TOPIC, BOB, "", {"topic": "two"})
    room.send("b", "pl_demote_bob", PL, ALICE, "", room.power_levels({}))
    return room, [room.state("a"), room.state("b")]


def mainline_sort(version: RoomVersion) -> tuple[RoomBuilder, StateSets]:
    """Two topics on two forks. `topic_late_ts` carries the later origin_server_ts but is
    based on an older power-levels event than `topic_new_pl`, so the mainline ordering
    applies it first and `topic_new_pl` wins (by timestamp alone it would lose)."""
    room = RoomBuilder(version)
    room.start()
    room.send("main", "pl1", PL, ALICE, "", room.power_levels({BOB: 10}))
    room.send("main", "topic1", TOPIC, ALICE, "", {"topic": "1"})
    room.send("main", "pl2", PL, ALICE, "", room.power_levels({BOB: 20}))
    room.fork("main", "a")
    room.fork("main", "b")
    room.send("a", "topic_late_ts", TOPIC, ALICE, "", {"topic": "late"}, ts=10**12)
    room.send("b", "pl3", PL, ALICE, "", room.power_levels({BOB: 30}))
    room.send("b", "topic_new_pl", TOPIC, ALICE, "", {"topic": "new"})
    return room, [room.state("a"), room.state("b")]


def msc4297_problem_a(version: RoomVersion) -> tuple[RoomBuilder, StateSets]:
    """MSC4297 problem A: Bob (admin) sets the join rules twice, then leaves. One state set
    (from a faulty /state) carries the older join rules. Both agree that Bob left, so under
    v2 the replayed join rules both fail against the unconflicted state ("sender not
    joined"): the room loses its join rules. v2.1 replays from an empty map, reading Bob's
    membership from the events' own auth events: the newer join rules win."""
    room = RoomBuilder(version)
    room.start(users={BOB: 100})
    room.join("main", "bob_join", BOB)
    room.send("main", "jr_invite", JR, BOB, "", {"join_rule": "invite"})
    room.send("main", "jr_public", JR, BOB, "", {"join_rule": "public"})
    room.send("main", "bob_leave", MEMBER, BOB, BOB, {"membership": "leave"})
    correct = room.state("main")
    stale = dict(correct)
    stale.update(room.state_of(["jr_invite"]))
    return room, [correct, stale]


def msc4297_problem_b(version: RoomVersion) -> tuple[RoomBuilder, StateSets]:
    """MSC4297 problem B: Alice promotes Bob, Bob promotes Charlie, Zara joins (her join
    cites Bob's power levels). One state set (from a faulty /state) carries the original
    power levels. Both auth chains hold every power-levels event, so the auth difference
    misses Alice's promotion of Bob: under v2 Bob's promotion of Charlie is replayed right
    after the original power levels and fails (a state reset to the original levels). v2.1
    adds the conflicted state subgraph (the path between the two conflicted power levels),
    replays Alice's promotion in between, and keeps Bob's."""
    room = RoomBuilder(version)
    room.start()
    room.join("main", "bob_join", BOB)
    room.join("main", "charlie_join", CHARLIE)
    room.send("main", "pl_promote_bob", PL, ALICE, "", room.power_levels({BOB: 50}))
    room.send("main", "pl_promote_charlie", PL, BOB, "",
              room.power_levels({BOB: 50, CHARLIE: 50}))
    room.join("main", "zara_join", ZARA)
    correct = room.state("main")
    stale = dict(correct)
    stale.update(room.state_of(["pl0"]))
    return room, [correct, stale]


def kick_then_rejoin(version: RoomVersion) -> tuple[RoomBuilder, StateSets]:
    """Alice kicks Eve on one fork (a power event); on the other Eve changes her display
    name (a join, not a power event) — citing her old join, not the kick. The kick is
    applied first; Eve's join is then allowed again (public room) and, coming later in the
    mainline ordering, wins."""
    room = RoomBuilder(version)
    room.start()
    room.join("main", "eve_join", EVE)
    room.fork("main", "a")
    room.fork("main", "b")
    room.send("a", "kick_eve", MEMBER, ALICE, EVE, {"membership": "leave"})
    room.send("b", "eve_rename", MEMBER, EVE, EVE, {"membership": "join", "displayname": "E"})
    return room, [room.state("a"), room.state("b")]


def ban_beats_rename(version: RoomVersion) -> tuple[RoomBuilder, StateSets]:
    """Alice bans Eve while Eve changes her display name: the ban (power event) goes first
    and Eve's membership update is then rejected (a banned user cannot join)."""
    room = RoomBuilder(version)
    room.start()
    room.join("main", "eve_join", EVE)
    room.fork("main", "a")
    room.fork("main", "b")
    room.send("a", "ban_eve", MEMBER, ALICE, EVE, {"membership": "ban"})
    room.send("b", "eve_rename", MEMBER, EVE, EVE, {"membership": "join", "displayname": "E"})
    return room, [room.state("a"), room.state("b")]


def three_forks(version: RoomVersion) -> tuple[RoomBuilder, StateSets]:
    """Three forks each set the topic under the same power levels; origin_server_ts orders
    them and the latest wins; a member who joined on one fork only is kept."""
    room = RoomBuilder(version)
    room.start()
    for fork in ("a", "b", "c"):
        room.fork("main", fork)
    room.send("a", "topic_a", TOPIC, ALICE, "", {"topic": "a"}, ts=3_000_000)
    room.send("b", "topic_b", TOPIC, ALICE, "", {"topic": "b"}, ts=1_000_000)
    room.send("c", "topic_c", TOPIC, ALICE, "", {"topic": "c"}, ts=2_000_000)
    room.join("c", "zara_join", ZARA)
    return room, [room.state("a"), room.state("b"), room.state("c")]


def rejected_auth_event_not_used(version: RoomVersion) -> tuple[RoomBuilder, StateSets]:
    """Eve's join of an invite-only room was rejected, yet her server sends a topic citing
    it (the topic's own auth events make it look allowed). "Rejected auth events are
    deliberately excluded from use in the iterative auth checks": with Eve's membership
    absent from the state, the topic's auth check cannot use her rejected join, so it fails
    and Alice's earlier topic stays."""
    room = RoomBuilder(version)
    room.start(join_rule="invite", users={EVE: 50})
    room.fork("main", "a")
    room.fork("main", "b")
    room.send("b", "topic_alice", TOPIC, ALICE, "", {"topic": "alice"})
    room.send("a", "eve_join", MEMBER, EVE, EVE, {"membership": "join"},
              expect_allowed=False, force_state=True)
    room.send("a", "topic_eve", TOPIC, EVE, "", {"topic": "eve"})
    state_a = room.state("a")
    del state_a[room.key(MEMBER, EVE)]
    return room, [state_a, room.state("b")]


SCENARIOS: dict[str, Scenario] = {
    f.__name__: f
    for f in (
        ban_vs_power_levels,
        join_rule_evasion,
        offtopic_power_levels,
        topic_reset,
        mainline_sort,
        msc4297_problem_a,
        msc4297_problem_b,
        kick_then_rejoin,
        ban_beats_rename,
        three_forks,
        rejected_auth_event_not_used,
    )
}
