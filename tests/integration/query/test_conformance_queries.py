"""The query API over the 12 conformance rooms ingested into PostgreSQL through the
pipeline. The expectations are independent of the roomserver: the reference homeserver's
state before every event (`<room>.expected.jsonl`) and the input PDUs themselves (their prev
and auth events), walked here in plain Python."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from processor.room_state import room_state_lines
from processor.storage import open_store
from tests.integration.query.conftest import Served, conformance_rooms, ingest_conformance


@dataclass
class RoomData:
    name: str
    room_id: str
    order: list[str] = field(default_factory=list)
    pdus: dict[str, dict[str, Any]] = field(default_factory=dict)
    state_before: dict[str, set[tuple[str, str, str]]] = field(default_factory=dict)
    rejected: dict[str, bool] = field(default_factory=dict)

    def refs(self, event_id: str, key: str) -> list[str]:
        # v1/v2 list [event_id, {hashes}] pairs; later versions plain IDs.
        return [r[0] if isinstance(r, list) else r for r in self.pdus[event_id][key]]


def _load() -> list[RoomData]:
    rooms = []
    for room in conformance_rooms():
        expected = [json.loads(line) for line in room.expected.read_text().splitlines()]
        lines = [json.loads(line) for line in room.lines()]
        data = RoomData(room.name, "")
        for row, item in zip(expected, lines, strict=True):
            event_id = row["event_id"]
            data.order.append(event_id)
            data.pdus[event_id] = item["event"]
            data.state_before[event_id] = {tuple(e) for e in row["state_before"]}
            data.rejected[event_id] = row["rejected"]
            if "room_id" in item["event"] and not data.room_id:
                data.room_id = item["event"]["room_id"]
        if not data.room_id:  # v12: the room ID is the create event's ID with "!"
            data.room_id = "!" + data.order[0][1:]
        rooms.append(data)
    return rooms


ROOMS = _load()


@pytest.fixture(scope="module")
def filled(served: Served) -> Iterator[Served]:
    ingest_conformance(served.url)
    yield served


@pytest.mark.parametrize("room", ROOMS, ids=lambda r: r.name)
def test_state_after_events_is_the_reference_state_before_each_event(
    filled: Served, room: RoomData
) -> None:
    resolved = 0
    for event_id in room.order[1:]:
        prevs = room.refs(event_id, "prev_events")
        status, body = filled.post(
            "/query/state_after_events", {"room_id": room.room_id, "prev_event_ids": prevs}
        )
        assert status == 200, body
        got = {tuple(e) for e in body["state"]}
        assert got == room.state_before[event_id], f"{room.name} {event_id}"
        resolved += body["resolved"]
    assert resolved > 0, "no event of the room merged disagreeing states"


def test_state_after_events_selected_pairs(filled: Served) -> None:
    room = ROOMS[3]
    event_id = room.order[-1]
    wanted = [["m.room.create", ""], ["m.room.power_levels", ""], ["m.room.nothing", "x"]]
    status, body = filled.post(
        "/query/state_after_events",
        {"room_id": room.room_id, "prev_event_ids": room.refs(event_id, "prev_events"),
         "state_keys": wanted, "include_pdus": True},
    )
    assert status == 200, body
    expected = {e for e in room.state_before[event_id] if [e[0], e[1]] in wanted}
    assert {tuple(e) for e in body["state"]} == expected
    assert set(body["pdus"]) == {e[2] for e in expected}


@pytest.mark.parametrize("room", ROOMS[::4], ids=lambda r: r.name)
def test_state_and_auth_chain_ids(filled: Served, room: RoomData) -> None:
    for event_id in room.order[-5:]:
        status, body = filled.post(
            "/query/state_and_auth_chain",
            {"room_id": room.room_id, "event_id": event_id, "ids_only": True},
        )
        assert status == 200, body
        state = room.state_before[event_id]
        assert set(body["state_ids"]) == {e[2] for e in state}
        assert set(body["auth_chain_ids"]) == _auth_chain(room, [e[2] for e in state])
        # PDUs: the same events.
        status, full = filled.post(
            "/query/state_and_auth_chain", {"room_id": room.room_id, "event_id": event_id}
        )
        assert status == 200
        assert len(full["pdus"]) == len(state)
        assert len(full["auth_chain"]) == len(body["auth_chain_ids"])


def _auth_chain(room: RoomData, starts: list[str]) -> set[str]:
    seen: set[str] = set()
    todo = [a for s in starts for a in room.refs(s, "auth_events")]
    while todo:
        event_id = todo.pop()
        if event_id not in seen:
            seen.add(event_id)
            todo.extend(room.refs(event_id, "auth_events"))
    return seen


def test_auth_chain_of_events(filled: Served) -> None:
    room = ROOMS[5]
    starts = room.order[-3:]
    status, body = filled.post(
        "/query/auth_chain", {"event_ids": [*starts, "$unknown"], "include_pdus": True}
    )
    assert status == 200, body
    assert set(body["auth_chain_ids"]) == _auth_chain(room, starts)
    assert body["missing"] == ["$unknown"]
    depths = [p["depth"] for p in body["pdus"]]
    assert depths == sorted(depths)


@pytest.mark.parametrize("room", ROOMS, ids=lambda r: r.name)
def test_latest_events_and_state_is_the_current_state(filled: Served, room: RoomData) -> None:
    store = open_store(filled.url)
    try:
        (current,) = room_state_lines(
            store, room.room_id, at=None, before=False, all_events=False
        )
        record = None
        with store.batch() as batch:
            record = batch.select_room(room.room_id)
            assert record is not None
            extremities = {
                r.event_id for r in batch.select_events(record.forward_extremities).values()
            }
    finally:
        store.close()
    status, body = filled.post("/query/latest_events_and_state", {"room_id": room.room_id})
    assert status == 200, body
    assert body["room_exists"] and body["room_version"] == room.name.rsplit("-v", 1)[1]
    assert body["state"] == current["state"]
    assert {e["event_id"] for e in body["latest_events"]} == extremities
    for latest in body["latest_events"]:
        assert latest["depth"] == room.pdus[latest["event_id"]]["depth"]
    # Only the pairs asked for, with their PDUs.
    status, part = filled.post(
        "/query/latest_events_and_state",
        {"room_id": room.room_id, "state_keys": [["m.room.create", ""]], "include_pdus": True},
    )
    assert status == 200
    assert part["state"] == [e for e in current["state"] if e[0] == "m.room.create"]
    assert set(part["pdus"]) == {part["state"][0][2]}


def test_latest_events_of_an_unknown_room(filled: Served) -> None:
    status, body = filled.post("/query/latest_events_and_state", {"room_id": "!nope:x"})
    assert status == 200
    assert body["room_exists"] is False and body["state"] == []


@pytest.mark.parametrize("room", ROOMS[::3], ids=lambda r: r.name)
def test_memberships_for_room_now_and_at_an_event(filled: Served, room: RoomData) -> None:
    event_id = room.order[-1]
    after = set(room.state_before[event_id])
    if not room.rejected[event_id] and "state_key" in room.pdus[event_id]:
        pdu = room.pdus[event_id]
        after = {e for e in after if (e[0], e[1]) != (pdu["type"], pdu["state_key"])}
        after.add((pdu["type"], pdu["state_key"], event_id))
    members = {e[1]: e[2] for e in after if e[0] == "m.room.member"}
    expected = {
        user: (room.pdus[eid]["content"]["membership"], eid) for user, eid in members.items()
    }
    status, body = filled.post(
        "/query/memberships_for_room",
        {"room_id": room.room_id, "at_event_id": event_id, "joined_only": False},
    )
    assert status == 200, body
    assert {m["user_id"]: (m["membership"], m["event_id"]) for m in body["memberships"]} == (
        expected
    )
    status, joined = filled.post(
        "/query/memberships_for_room", {"room_id": room.room_id, "at_event_id": event_id}
    )
    assert {m["user_id"] for m in joined["memberships"]} == {
        u for u, (m, _) in expected.items() if m == "join"
    }
    # Now: every member of the current state, and each one's own answer agrees.
    status, now = filled.post(
        "/query/memberships_for_room", {"room_id": room.room_id, "joined_only": False}
    )
    assert status == 200
    for member in now["memberships"][:5]:
        status, mine = filled.post(
            "/query/membership_for_user", {"room_id": room.room_id, "user_id": member["user_id"]}
        )
        assert status == 200
        assert mine["membership"] == member["membership"]
        assert mine["event_id"] == member["event_id"]
        assert mine["joined"] == (member["membership"] == "join")
    status, nobody = filled.post(
        "/query/membership_for_user", {"room_id": room.room_id, "user_id": "@nobody:x"}
    )
    assert (status, nobody["membership"], nobody["joined"]) == (200, None, False)


def test_events_by_id_flags_rejected_events(filled: Served) -> None:
    room = next(r for r in ROOMS if any(r.rejected.values()))
    rejected = [e for e in room.order if room.rejected[e]][:3]
    accepted = [e for e in room.order if not room.rejected[e]][:3]
    status, body = filled.post("/query/events", {"event_ids": [*rejected, *accepted, "$nope"]})
    assert status == 200, body
    flags = {e["event_id"]: e["rejected"] for e in body["events"]}
    assert flags == {**dict.fromkeys(rejected, True), **dict.fromkeys(accepted, False)}
    assert body["missing"] == ["$nope"]
    for event in body["events"]:
        assert event["room_id"] == room.room_id
        assert event["pdu"]["depth"] == room.pdus[event["event_id"]]["depth"]
    # Limited to a room: events of other rooms count as missing.
    elsewhere = next(r for r in ROOMS if r is not room)
    status, other = filled.post(
        "/query/events", {"event_ids": accepted, "room_id": elsewhere.room_id}
    )
    assert status == 200 and other["events"] == [] and other["missing"] == accepted
