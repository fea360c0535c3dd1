"""`roomserver state`: a room's state now, after an event, before it (`--before`),
or at every event (`--all-events`), as JSON lines
`{"room_id", "event_id", "rejected", "state": [[type, state_key, event_id], ...]}`.

The expected states come from the generator's trace, not from the roomserver: with
`trace=True` every generated event records the state it was built on (its prev events'
resolved state, checked against real state resolution in tests/unit/generate) and the
room's current state when it was produced. Run through `processor.cli.main`, on SQLite and
PostgreSQL.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from processor.cli import main
from processor.generate import GeneratedEvent, iter_generate
from processor.storage import open_store
from tests.integration.pipeline.rooms import (
    ALICE,
    RoomBuilder,
    StoreAt,
    as_input,
    inputs,
    process,
    store_at,
)

__all__ = ["store_at"]

Key = tuple[str, str]


def _traffic(version: str, events: int, seed: int) -> list[GeneratedEvent]:
    return list(iter_generate(1, events, version, seed, trace=True))


def _state_after(g: GeneratedEvent) -> dict[Key, str]:
    """The state before plus the event itself unless rejected: a soft-failed state event
    (one another branch's change overrides in the current state) still has its state after
    it; only the room's current state leaves it out."""
    assert g.state_before is not None
    state = dict(g.state_before)
    key = _key(g)
    if key is not None and g.outcome != "rejected":
        state[key] = g.event_id
    return state


def _key(g: GeneratedEvent) -> Key | None:
    pdu = g.input["event"]
    return (pdu["type"], pdu["state_key"]) if "state_key" in pdu else None


def _current(generated: list[GeneratedEvent]) -> dict[Key, str]:
    """The room's current state after the last event: the current state it was produced
    against, plus itself when accepted (a soft-failed event changes nothing)."""
    last = generated[-1]
    assert last.current_state is not None
    state = dict(last.current_state)
    key = _key(last)
    if key is not None and last.outcome == "accepted":
        state[key] = last.event_id
    return state


def _state(capsys: pytest.CaptureFixture[str], *argv: str) -> list[dict[str, Any]]:
    code = main(["state", *argv])
    out = capsys.readouterr().out
    assert code == 0, out
    return [json.loads(line) for line in out.splitlines()]


def _as_map(line: Mapping[str, Any]) -> dict[Key, str]:
    state = line["state"]
    assert state == sorted(state), "entries are sorted"
    result = {(t, k): e for t, k, e in state}
    assert len(result) == len(state), "one entry per (type, state_key)"
    return result


@pytest.fixture
def ingested(store_at: StoreAt) -> tuple[StoreAt, list[GeneratedEvent]]:
    generated = _traffic("10", 250, seed=11)
    done = process(store_at.store, [g.input for g in generated], batch_size=50)
    assert done.summary.dead_letters == []
    return store_at, generated


def test_current_state(
    ingested: tuple[StoreAt, list[GeneratedEvent]], capsys: pytest.CaptureFixture[str]
) -> None:
    at, generated = ingested
    room_id = generated[0].room_id
    [line] = _state(capsys, "--database", at.url, "--room", room_id)
    assert line["room_id"] == room_id
    assert line["event_id"] is None
    assert line["rejected"] is False
    assert _as_map(line) == _current(generated)


def test_state_at_every_event(
    ingested: tuple[StoreAt, list[GeneratedEvent]], capsys: pytest.CaptureFixture[str]
) -> None:
    at, generated = ingested
    room_id = generated[0].room_id
    before = _state(capsys, "--database", at.url, "--room", room_id, "--all-events", "--before")
    after = _state(capsys, "--database", at.url, "--room", room_id, "--all-events")
    # One line per event, in input order.
    assert [line["event_id"] for line in before] == [g.event_id for g in generated]
    assert [line["event_id"] for line in after] == [g.event_id for g in generated]
    for g, b, a in zip(generated, before, after, strict=True):
        assert b["rejected"] == a["rejected"] == (g.outcome == "rejected"), g.event_id
        assert _as_map(b) == g.state_before, g.event_id
        assert _as_map(a) == _state_after(g), g.event_id


def test_state_at_one_event_after_and_before(
    ingested: tuple[StoreAt, list[GeneratedEvent]], capsys: pytest.CaptureFixture[str]
) -> None:
    at, generated = ingested
    room_id = generated[0].room_id
    accepted_state = [g for g in generated if g.outcome == "accepted" and _key(g)]
    rejected = [g for g in generated if g.outcome == "rejected"]
    assert accepted_state and rejected, "the traffic exercises both"
    for g in (accepted_state[len(accepted_state) // 2], rejected[0], generated[0]):
        [a] = _state(capsys, "--database", at.url, "--room", room_id, "--at", g.event_id)
        [b] = _state(capsys, "--database", at.url, "--room", room_id, "--at", g.event_id,
                     "--before")
        assert a["event_id"] == b["event_id"] == g.event_id
        assert a["rejected"] == (g.outcome == "rejected")
        assert _as_map(a) == _state_after(g)
        assert _as_map(b) == g.state_before


@pytest.mark.parametrize("version", ["1", "2", "6", "12"])
def test_state_at_every_event_other_versions(
    tmp_path: Path, version: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Forks resolved by state resolution v1 (room v1), v2 and v2.1 (v12)."""
    from processor.storage import open_store

    generated = _traffic(version, 300, seed=int(version) + 40)
    url = str(tmp_path / "rs.db")
    store = open_store(url)
    try:
        process(store, [g.input for g in generated], batch_size=64)
    finally:
        store.close()
    room_id = generated[0].room_id
    lines = _state(capsys, "--database", url, "--room", room_id, "--all-events", "--before")
    assert [_as_map(line) for line in lines] == [g.state_before for g in generated]
    [now] = _state(capsys, "--database", url, "--room", room_id)
    assert _as_map(now) == _current(generated)


def test_unknown_room_or_event_is_a_clear_error(
    ingested: tuple[StoreAt, list[GeneratedEvent]], capsys: pytest.CaptureFixture[str]
) -> None:
    at, generated = ingested
    room_id = generated[0].room_id
    # NotFound (status 4), not a configuration error.
    assert main(["state", "--database", at.url, "--room", "!nowhere:s9.example"]) == 4
    assert capsys.readouterr().err == (
        "roomserver state: room !nowhere:s9.example is not in this database\n"
    )
    assert main(["state", "--database", at.url, "--room", room_id, "--at", "$nope"]) == 4
    assert capsys.readouterr().err == f"roomserver state: event $nope is not in room {room_id}\n"


def test_missing_database_file_is_a_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = str(tmp_path / "nothing.db")
    assert main(["state", "--database", missing, "--room", "!r:s1.example"]) == 2
    assert "nothing.db" in capsys.readouterr().err
    assert not (tmp_path / "nothing.db").exists(), "no empty database is left behind"


def test_the_state_at_an_outlier_is_unknown(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    database = tmp_path / "outlier.db"
    store = open_store(str(database))
    try:
        room = RoomBuilder("10")
        events = room.create()
        outlier = room.message(ALICE)
        process(store, [*inputs(events), as_input(outlier, "outlier")])
    finally:
        store.close()
    assert main(["state", "--database", str(database), "--room", room.room_id,
                 "--at", outlier.event_id]) == 0
    [line] = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert line == {"room_id": room.room_id, "event_id": outlier.event_id, "rejected": False,
                    "state": None}
