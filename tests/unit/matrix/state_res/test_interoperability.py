"""Where the spec's wording and the network differ, the network wins: one hand-built DAG per
divergence (docs/interoperability.md has the table). Each test says what the spec's wording
would give, and asserts what the reference homeserver — and so the federation — gives."""

from __future__ import annotations

from processor.matrix.room_versions import room_version
from processor.matrix.state_res import AuthChainIndex
from processor.nids import EventNID, EventTypeNID, StateKeyNID
from tests.unit.matrix.state_res.builder import ALICE, BOB, CHARLIE, EVE, RoomBuilder

V1 = room_version("1")
V10 = room_version("10")
MEMBER = "m.room.member"
PL = "m.room.power_levels"
TOPIC = "m.room.topic"


def test_v1_a_key_no_candidate_passes_keeps_the_last_candidate() -> None:
    """v1, other keys: "the event with the highest depth ... that passes". When none passes,
    the wording leaves the key out; the network keeps the last candidate in that order (the
    lowest depth)."""
    room = RoomBuilder(V1)
    room.start(users={BOB: 50})
    room.join("main", "bob_join", BOB)
    room.fork("main", "a")
    room.fork("main", "b")
    room.send("b", "topic_b", TOPIC, BOB, "", {"topic": "b"})
    room.send("a", "name_a", "m.room.name", ALICE, "", {"name": "a"})
    room.send("a", "topic_a", TOPIC, BOB, "", {"topic": "a"})
    # Alice takes Bob's power away after his topic: once the power levels conflict resolves
    # to this, neither of Bob's topics passes.
    room.send("a", "pl_demote_bob", PL, ALICE, "", room.power_levels({}))
    resolved = room.resolve("a", "b")
    assert resolved[(PL, "")] == "pl_demote_bob"
    assert resolved[(TOPIC, "")] == "topic_b"  # the wording: no topic at all
    assert room.resolve("b", "a")[(TOPIC, "")] == "topic_b"


def test_v1_member_keys_do_not_see_each_others_resolution() -> None:
    """v1, member keys: the wording checks each candidate against R as it grows, so a member
    key resolved earlier (in whatever order) is seen by the next. The network checks every
    member candidate against the unconflicted state plus the resolved power levels and join
    rules only: a conflicted member key is absent while the member keys resolve."""
    room = RoomBuilder(V1)
    room.start(users={BOB: 50})
    room.join("main", "bob_join", BOB)
    room.join("main", "charlie_join", CHARLIE)
    room.fork("main", "a")
    room.fork("main", "b")
    # Bob's own membership conflicts (a rename on branch a) ...
    room.send("a", "bob_rename", MEMBER, BOB, BOB, {"membership": "join", "displayname": "B"})
    # ... and so does Charlie's: a rename on a, Bob's kick (deeper) on b.
    room.send("a", "charlie_rename", MEMBER, CHARLIE, CHARLIE,
              {"membership": "join", "displayname": "C"})
    room.send("b", "name_b", "m.room.name", ALICE, "", {"name": "b"})
    room.send("b", "name_b2", "m.room.name", ALICE, "", {"name": "c"})
    room.send("b", "kick_charlie", MEMBER, BOB, CHARLIE, {"membership": "leave"})
    resolved = room.resolve("a", "b")
    assert resolved[(MEMBER, BOB)] == "bob_rename"
    # With Bob's resolved membership in R the kick would pass and replace the rename; the
    # network checks it without Bob's (conflicted) membership, so it fails.
    assert resolved[(MEMBER, CHARLIE)] == "charlie_rename"
    assert room.resolve("b", "a")[(MEMBER, CHARLIE)] == "charlie_rename"


def test_v2_rejected_events_are_never_admitted_by_the_iterative_auth_checks() -> None:
    """v2 iterative auth checks: the wording admits any event that passes against the
    partially resolved state. The network never admits an event it rejected on receipt (a
    state set from federation can hold one: a join's /state_ids)."""
    room = RoomBuilder(V10)
    room.start(users={BOB: 50})
    room.join("main", "eve_join", EVE)
    room.fork("main", "a")
    room.fork("main", "b")
    room.send("a", "pl_eve", PL, ALICE, "", room.power_levels({BOB: 50, EVE: 50}))
    # Eve sets the topic from branch b's view, where she has no power: rejected there; a
    # faulty server's state for b holds it anyway.
    room.send("b", "topic_eve", TOPIC, EVE, "", {"topic": "e"},
              expect_allowed=False, force_state=True)
    resolved = room.resolve("a", "b")
    assert resolved[(PL, "")] == "pl_eve"
    # Against the resolved power levels Eve's topic passes; it was rejected, so it stays out.
    assert (TOPIC, "") not in resolved


def test_v2_step_1_walks_auth_edges_inside_the_full_conflicted_set_only() -> None:
    """v2 step 1: "enlarge X by adding the events in the auth chain of P which also belong to
    the full conflicted set" would also take an event reached through one outside the set,
    and order it before P through that path. The network follows only auth edges between
    events of the set, for the selection and for the ordering's edges."""
    index = AuthChainIndex()
    key = (EventTypeNID(2), StateKeyNID(1))
    for nid, auth in [(1, []), (2, [1]), (3, [2]), (4, [1, 3]), (5, [4])]:
        index.add(EventNID(nid), key, [EventNID(a) for a in auth])
    # The set: 1, 3, 5 (power event 5; 4 and 2 outside). 5 reaches 3 and 1 only through 4.
    members = {EventNID(1), EventNID(3), EventNID(5)}
    assert index.power_subgraph({EventNID(5)}, members) == {EventNID(5): set()}
    # With 4 in the set: 4 and its direct auth events in the set (1 and 3) join, and 3 is
    # reached, but 3 -> 1 runs through 2 (outside), so no edge orders 1 before 3.
    members.add(EventNID(4))
    assert index.power_subgraph({EventNID(5)}, members) == {
        EventNID(5): {EventNID(4)},
        EventNID(4): {EventNID(1), EventNID(3)},
        EventNID(3): set(),
        EventNID(1): set(),
    }
