"""The query API over hand-built rooms (signed PDUs of `RoomBuilder`, ingested through the
pipeline into PostgreSQL), whose expectations follow from how the rooms were built:
history visibility for servers that have, had and never had members; missing events and
backfill over a forked DAG; invites; redactions; aliases."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from processor.storage import open_store
from tests.integration.pipeline.rooms import (
    ALICE,
    BOB,
    CAROL,
    DAVE,
    S2,
    S3,
    Built,
    RoomBuilder,
    inputs,
    process,
)
from tests.integration.query.conftest import Served

NEVER = "never.example"  # a server that never had a member anywhere


@dataclass
class VisibilityRoom:
    """create, alice joins; visibility V; m1; bob (S2) invited; m2; bob joins; m3; bob
    leaves; m4; dave (S3) joins; m5."""

    visibility: str
    room: RoomBuilder
    messages: dict[str, Built] = field(default_factory=dict)
    bob_join: Built | None = None


def _visibility_room(visibility: str) -> tuple[VisibilityRoom, list[Built]]:
    room = RoomBuilder("10")
    events = room.create(ALICE)
    events.append(
        room.event(ALICE, "m.room.history_visibility", {"history_visibility": visibility}, "")
    )
    built = VisibilityRoom(visibility, room)

    def message(name: str) -> None:
        built.messages[name] = room.message(ALICE, name)
        events.append(built.messages[name])

    message("m1")
    events.append(room.member(ALICE, BOB, "invite"))
    message("m2")
    built.bob_join = room.member(BOB, BOB, "join")
    events.append(built.bob_join)
    message("m3")
    events.append(room.member(BOB, BOB, "leave"))
    message("m4")
    events.append(room.member(DAVE, DAVE, "join"))
    message("m5")
    return built, events


@dataclass
class DagRoom:
    """A shared room where alice and bob (S2) are joined: c1..c10, then a fork (a1, a2, a3
    on one branch, b1 on the other) merged by `merge`, then d1..d5; then the history
    visibility becomes joined (`hv`), x1, x2, dave (S3) joins, y1, y2."""

    room: RoomBuilder
    ids: dict[str, str] = field(default_factory=dict)

    def depth(self, name: str) -> int:
        return self.room.depths[self.ids[name]]


def _dag_room() -> tuple[DagRoom, list[Built]]:
    room = RoomBuilder("10")
    events = room.create(ALICE)
    events.append(
        room.event(ALICE, "m.room.history_visibility", {"history_visibility": "shared"}, "")
    )
    events.append(room.member(BOB, BOB, "join"))
    dag = DagRoom(room)

    def add(name: str, built: Built) -> str:
        dag.ids[name] = built.event_id
        events.append(built)
        return built.event_id

    for i in range(1, 11):
        add(f"c{i}", room.message(ALICE, f"c{i}"))
    base = dag.ids["c10"]
    a = base
    for i in range(1, 4):
        a = add(f"a{i}", room.message(ALICE, f"a{i}", prev=[a]))
    b = add("b1", room.message(BOB, "b1", prev=[base]))
    add("merge", room.message(ALICE, "merge", prev=[a, b]))
    for i in range(1, 6):
        add(f"d{i}", room.message(ALICE, f"d{i}"))
    add("hv", room.event(ALICE, "m.room.history_visibility", {"history_visibility": "joined"}, ""))
    add("x1", room.message(ALICE, "x1"))
    add("x2", room.message(ALICE, "x2"))
    add("dave", room.member(DAVE, DAVE, "join"))
    add("y1", room.message(ALICE, "y1"))
    add("y2", room.message(DAVE, "y2"))
    return dag, events


@dataclass
class Rooms:
    visibility: dict[str, VisibilityRoom]
    dag: DagRoom
    invites: RoomBuilder
    carol_invite: Built
    redacted: Built
    redaction: Built


@pytest.fixture(scope="module")
def rooms(served: Served) -> Iterator[Rooms]:
    items: list[dict[str, Any]] = []
    visibility = {}
    for v in ("world_readable", "shared", "invited", "joined"):
        built, events = _visibility_room(v)
        visibility[v] = built
        items += inputs(events)
    dag, events = _dag_room()
    items += inputs(events)
    invites = RoomBuilder("10")
    events = invites.create(ALICE)
    carol_invite = invites.member(ALICE, CAROL, "invite")
    redacted = invites.message(ALICE, "a secret")
    redaction = invites.redaction(ALICE, redacted.event_id)
    items += inputs([*events, carol_invite, redacted, redaction])
    store = open_store(served.url)
    try:
        done = process(store, items)
    finally:
        store.close()
    assert {o.value for o in done.summary.event_outcomes.values()} == {"accepted"}
    assert not done.summary.dead_letters
    yield Rooms(visibility, dag, invites, carol_invite, redacted, redaction)


# ------------------------------------------------------------------ history visibility

#: visibility -> server -> the messages it may see.
EXPECTED_VISIBLE = {
    "world_readable": {
        S2: {"m1", "m2", "m3", "m4", "m5"},
        S3: {"m1", "m2", "m3", "m4", "m5"},
        NEVER: {"m1", "m2", "m3", "m4", "m5"},
    },
    # S2's bob was invited at m2 and joined at m3 (left since); S3's dave is joined now.
    "shared": {S2: {"m2", "m3"}, S3: {"m1", "m2", "m3", "m4", "m5"}, NEVER: set()},
    "invited": {S2: {"m2", "m3"}, S3: {"m5"}, NEVER: set()},
    "joined": {S2: {"m3"}, S3: {"m5"}, NEVER: set()},
}


@pytest.mark.parametrize("visibility", sorted(EXPECTED_VISIBLE))
def test_server_allowed_to_see_event(served: Served, rooms: Rooms, visibility: str) -> None:
    built = rooms.visibility[visibility]
    for server, expected in EXPECTED_VISIBLE[visibility].items():
        seen = set()
        for name, message in built.messages.items():
            status, body = served.post(
                "/query/server_allowed_to_see_event",
                {"server_name": server, "event_id": message.event_id},
            )
            assert status == 200, body
            if body["allowed"]:
                seen.add(name)
        assert seen == expected, (visibility, server)
    # A user's own join is visible to their server (the state after it holds the join).
    assert built.bob_join is not None
    status, body = served.post(
        "/query/server_allowed_to_see_event",
        {"server_name": S2, "event_id": built.bob_join.event_id},
    )
    assert (status, body["allowed"]) == (200, True)


def test_server_allowed_to_see_an_unknown_event(served: Served, rooms: Rooms) -> None:
    status, body = served.post(
        "/query/server_allowed_to_see_event", {"server_name": S2, "event_id": "$nope:x"}
    )
    assert (status, body["errcode"]) == (404, "M_NOT_FOUND")


# ------------------------------------------------------------------ missing events


def _names(rooms: Rooms, body: dict[str, Any]) -> list[str]:
    """The DAG room's names of the returned PDUs (v10 PDUs carry no event ID: each is found
    by its content hash, unique here)."""
    dag = rooms.dag
    by_hash = {pdu["hashes"]["sha256"]: event_id for event_id, pdu in dag.room.pdus.items()}
    by_id = {v: k for k, v in dag.ids.items()}
    return [by_id.get(by_hash[p["hashes"]["sha256"]], "?") for p in body["pdus"]]


def _missing(served: Served, rooms: Rooms, **request: Any) -> list[str]:
    dag = rooms.dag
    body: dict[str, Any] = {"room_id": dag.room.room_id, "server_name": S2}
    for key in ("latest_events", "earliest_events"):
        if key in request:
            request[key] = [dag.ids[n] for n in request[key]]
    body.update(request)
    status, answer = served.post("/query/missing_events", body)
    assert status == 200, answer
    depths = [p["depth"] for p in answer["pdus"]]
    assert depths == sorted(depths), "not ordered by depth"
    return _names(rooms, answer)


def test_missing_events_between_latest_and_earliest(served: Served, rooms: Rooms) -> None:
    got = _missing(served, rooms, latest_events=["d2"], earliest_events=["c8"], limit=100)
    # Everything d2 descends from that c8 is not (c8 and its ancestors excluded), without d2.
    assert sorted(got) == sorted(["c9", "c10", "a1", "a2", "a3", "b1", "merge", "d1"])
    assert got[:2] == ["c9", "c10"] and got[-2:] == ["merge", "d1"]


def test_missing_events_limit_takes_the_nearest(served: Served, rooms: Rooms) -> None:
    assert _missing(served, rooms, latest_events=["d5"], limit=3) == ["d2", "d3", "d4"]
    # Breadth-first over the fork: the merge's two parents before a3's parent.
    assert sorted(_missing(served, rooms, latest_events=["d1"], limit=3)) == sorted(
        ["merge", "a3", "b1"]
    )


def test_missing_events_min_depth(served: Served, rooms: Rooms) -> None:
    dag = rooms.dag
    got = _missing(
        served, rooms, latest_events=["merge"], limit=100, min_depth=dag.depth("c9")
    )
    assert sorted(got) == sorted(["c9", "c10", "a1", "a2", "a3", "b1"])


def test_missing_events_leaves_out_what_the_server_may_not_see(
    served: Served, rooms: Rooms
) -> None:
    dag = rooms.dag
    # Since `hv` the room is "joined": dave's server sees from his join on, bob's all.
    since = {"latest_events": ["y2"], "limit": 100, "min_depth": dag.depth("hv")}
    body = {**since, "server_name": S3}
    assert _missing(served, rooms, **body) == ["dave", "y1"]
    assert _missing(served, rooms, **{**since, "server_name": S2}) == [
        "hv", "x1", "x2", "dave", "y1"
    ]
    assert _missing(served, rooms, **{**since, "server_name": NEVER}) == []


def test_missing_events_of_unknown_events_is_404(served: Served, rooms: Rooms) -> None:
    status, body = served.post(
        "/query/missing_events",
        {"room_id": rooms.dag.room.room_id, "latest_events": ["$nope:x"], "server_name": S2},
    )
    assert (status, body["errcode"]) == (404, "M_NOT_FOUND")
    status, body = served.post(
        "/query/missing_events",
        {"room_id": "!nope:x", "latest_events": ["$nope:x"], "server_name": S2},
    )
    assert (status, body["errcode"]) == (404, "M_NOT_FOUND")


# ------------------------------------------------------------------ backfill


def _backfill(
    served: Served, rooms: Rooms, start: list[str], limit: int, server: str
) -> list[str]:
    dag = rooms.dag
    status, body = served.post(
        "/query/backfill",
        {"room_id": dag.room.room_id, "event_ids": [dag.ids[s] for s in start],
         "limit": limit, "server_name": server},
    )
    assert status == 200, body
    depths = [p["depth"] for p in body["pdus"]]
    assert depths == sorted(depths)
    return _names(rooms, body)


def test_backfill_includes_the_given_events_and_honours_the_limit(
    served: Served, rooms: Rooms
) -> None:
    assert _backfill(served, rooms, ["d5"], 4, S2) == ["d2", "d3", "d4", "d5"]
    assert _backfill(served, rooms, ["d5"], 0, S2) == []


def test_backfill_is_breadth_first(served: Served, rooms: Rooms) -> None:
    # From the merge: itself, then both parents (a3 and the shallower b1), not a3's parent a2
    # (deeper than b1, which a walk by depth alone would take first).
    assert sorted(_backfill(served, rooms, ["merge"], 3, S2)) == sorted(["merge", "a3", "b1"])
    assert sorted(_backfill(served, rooms, ["merge"], 5, S2)) == sorted(
        ["merge", "a3", "b1", "a2", "c10"]
    )


def test_backfill_honours_history_visibility(served: Served, rooms: Rooms) -> None:
    # Breadth-first from y2, 7 events: y2 y1 dave x2 x1 hv d5. Dave's server may see his join
    # and after it, and d5 (shared at d5, and dave is joined now); not x1, x2, hv.
    assert _backfill(served, rooms, ["y2"], 7, S3) == ["d5", "dave", "y1", "y2"]
    assert _backfill(served, rooms, ["y2"], 7, NEVER) == []
    assert _backfill(served, rooms, ["y2"], 7, S2) == ["d5", "hv", "x1", "x2", "dave", "y1", "y2"]
    # The same answer as asking about each event (a walk shares its verdicts per state: the
    # history visibility event changes the state after it, the messages do not).
    for name in ("d5", "hv", "x1", "x2", "dave", "y1", "y2"):
        status, body = served.post(
            "/query/server_allowed_to_see_event",
            {"server_name": S3, "event_id": rooms.dag.ids[name]},
        )
        assert (status, body["allowed"]) == (200, name in ("d5", "dave", "y1", "y2")), name


# ------------------------------------------------------------------ invites, redactions


def test_invites_for_user_pending_then_retired_by_a_join(served: Served, rooms: Rooms) -> None:
    room = rooms.invites
    status, body = served.post("/query/invites_for_user", {"user_id": CAROL})
    assert status == 200, body
    assert [(i["room_id"], i["event_id"], i["inviter"]) for i in body["invites"]] == [
        (room.room_id, rooms.carol_invite.event_id, ALICE)
    ]
    assert body["invites"][0]["pdu"] == rooms.carol_invite.pdu
    assert served.post("/query/invites_for_user", {"user_id": "@nobody:x"}) == (
        200, {"invites": []}
    )
    join = room.member(CAROL, CAROL, "join")
    store = open_store(served.url)
    try:
        assert process(store, inputs([join])).outcome(join) == "accepted"
    finally:
        store.close()
    assert served.post("/query/invites_for_user", {"user_id": CAROL}) == (200, {"invites": []})
    status, mine = served.post(
        "/query/membership_for_user", {"room_id": room.room_id, "user_id": CAROL}
    )
    assert (mine["membership"], mine["event_id"], mine["joined"]) == ("join", join.event_id, True)


def test_events_by_id_return_the_redacted_form(served: Served, rooms: Rooms) -> None:
    status, body = served.post(
        "/query/events", {"event_ids": [rooms.redacted.event_id, rooms.redaction.event_id]}
    )
    assert status == 200, body
    redacted, redaction = body["events"]
    assert redacted["redacted"] is True and redacted["rejected"] is False
    assert redacted["pdu"]["content"] == {}
    assert rooms.redacted.pdu["content"]["body"] == "a secret"
    assert redacted["pdu"]["sender"] == ALICE and "hashes" in redacted["pdu"]
    assert redaction["redacted"] is False
    assert redaction["pdu"] == rooms.redaction.pdu


# ------------------------------------------------------------------ aliases


def test_aliases(served: Served, rooms: Rooms) -> None:
    room_id = rooms.invites.room_id
    other = rooms.dag.room.room_id
    alias = "#lobby:s1.example"
    assert served.post("/alias/set", {"alias": alias, "room_id": room_id, "creator": ALICE}) == (
        200, {"created": True}
    )
    # Again, the same room: nothing changes; another room: 409.
    assert served.post("/alias/set", {"alias": alias, "room_id": room_id, "creator": BOB}) == (
        200, {"created": False}
    )
    status, body = served.post("/alias/set", {"alias": alias, "room_id": other, "creator": BOB})
    assert (status, body["errcode"]) == (409, "M_ROOM_IN_USE")
    assert served.post("/alias/set", {"alias": "#b:x", "room_id": room_id, "creator": BOB}) == (
        200, {"created": True}
    )
    assert served.post("/alias/resolve", {"alias": alias}) == (200, {"room_id": room_id})
    assert served.post("/alias/creator", {"alias": alias}) == (200, {"creator": ALICE})
    assert served.post("/alias/list", {"room_id": room_id}) == (
        200, {"aliases": ["#b:x", alias]}
    )
    assert served.post("/alias/list", {"room_id": other}) == (200, {"aliases": []})
    assert served.post("/alias/remove", {"alias": alias}) == (200, {"removed": True})
    assert served.post("/alias/remove", {"alias": alias}) == (200, {"removed": False})
    for path in ("/alias/resolve", "/alias/creator"):
        status, body = served.post(path, {"alias": alias})
        assert (status, body["errcode"]) == (404, "M_NOT_FOUND")
    assert served.post("/alias/list", {"room_id": room_id}) == (200, {"aliases": ["#b:x"]})
    # Moved by removing it first.
    assert served.post("/alias/set", {"alias": alias, "room_id": other, "creator": BOB}) == (
        200, {"created": True}
    )
    assert served.post("/alias/resolve", {"alias": alias}) == (200, {"room_id": other})
    # Unknown room: 404; not an alias: 400 naming the field.
    status, body = served.post("/alias/set", {"alias": "#c:x", "room_id": "!no:x", "creator": BOB})
    assert (status, body["errcode"]) == (404, "M_NOT_FOUND")
    status, body = served.post("/alias/resolve", {"alias": "lobby"})
    assert status == 400 and "$.alias" in body["error"]
