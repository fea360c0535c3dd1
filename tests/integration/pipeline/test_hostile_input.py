"""Hostile input: whatever the bytes of a line, it alone is dead-lettered and the
rest of its batch is stored; no input can establish a room or its version but the room's
create event, and an event citing an event of another room version is dead-lettered, not
a crash.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from processor.storage.base import Store
from tests.integration.pipeline.rooms import (
    ALICE,
    Built,
    RoomBuilder,
    StoreAt,
    as_input,
    encode_lines,
    event_record,
    process,
    sqlite_store,
    state_of,
    store_at,
)

__all__ = ["sqlite_store", "store_at"]


def _line(item: dict[str, Any]) -> bytes:
    return json.dumps(item, separators=(",", ":")).encode()


def _reasons(done: Any) -> list[tuple[str, str]]:
    """(line, reason) of each reported dead letter."""
    pairs = [t.split(": ", 2) for t in done.summary.dead_letters]
    return [(p[0], p[1]) for p in pairs]


def _hostile_lines(room: RoomBuilder) -> list[tuple[bytes, str, str]]:
    """(line, reason, a fragment of the message) for each way the issue's fuzzing lost a
    whole batch, each derived from a valid message of `room`."""
    message = _line(as_input(room.message(ALICE, accept=False)))
    deep = b"[" * 1000 + b"]" * 1000
    return [
        (message.replace(b'"body":"', b'"body":"\xff', 1), "malformed", "$.event.content.body"),
        (
            message.replace(b'"type":"m.room.message"', b'"type":"\xed\xa0\x80"', 1),
            "malformed",
            "$.event.type",
        ),
        (b'{"kind":"new","event":{"type":"\xff"}}', "malformed", "UTF-8"),
        (message[:-1] + b',"x":' + deep + b"}", "malformed", "$.x"),
        (message.replace(b'"body":"', b'"deep":' + deep + b',"body":"', 1), "malformed",
         "$.event.content.deep"),
        (message[:-1] + b',"transaction_id":"' + b"t" * 1_000_000 + b'"}', "malformed",
         "$.transaction_id"),
        (message[:-1] + b',"send_as_server":"' + b"s" * 1_000_000 + b'"}', "malformed",
         "$.send_as_server"),
        # U+0000 in an identifier: PostgreSQL cannot store it as text.
        (
            _line(as_input(room.event(ALICE, "m.room.topic", {"topic": "t"}, "a\x00b",
                                      accept=False))),
            "invalid_event",
            "$.event.state_key",
        ),
        (message.replace(b'"prev_events":["', b'"prev_events":["$\\u0000', 1),
         "invalid_event", "$.event.prev_events[0]"),
        (_line({**as_input(room.message(ALICE, accept=False)), "has_state": True,
                "state_event_ids": ["$a\x00"]}), "malformed", "$.state_event_ids[0]"),
    ]


def test_a_hostile_line_costs_only_itself(store_at: StoreAt) -> None:
    """Each hostile line sits between good ones in one batch: before the fix each aborted
    the batch (UnicodeDecodeError, RecursionError, an output over the limit, a PostgreSQL
    error) and every good line in it was lost."""
    store = store_at.store
    room = RoomBuilder("10")
    good: list[Built] = room.create()
    lines: list[dict[str, Any] | bytes] = [as_input(e) for e in good]
    expected: list[tuple[str, str]] = []
    fragments: dict[str, str] = {}
    for line, reason, fragment in _hostile_lines(room):
        lines.append(line)
        expected.append((f"line {len(lines)}", reason))
        fragments[f"line {len(lines)}"] = fragment
        after = room.message(ALICE)
        good.append(after)
        lines.append(as_input(after))
    done = process(store, lines, batch_size=len(lines))
    assert _reasons(done) == expected
    for text in done.summary.dead_letters:
        where = text.split(":")[0]
        assert fragments[where] in text, text
        assert "\n" not in text
    assert {e.event_id: done.outcome(e) for e in good} == {e.event_id: "accepted" for e in good}
    assert state_of(store, room.room_id) == room.state


def _stored_state(store: Store, room: RoomBuilder) -> dict[tuple[str, str], str]:
    return state_of(store, room.room_id)


@pytest.mark.parametrize("kind", ["outlier", "old"])
def test_a_hint_cannot_set_the_version_of_an_unknown_room(sqlite_store: StoreAt, kind: str) -> None:
    """An event of a room not known yet, whose input claims version 11 while the room's
    create event says 1, used to register the room as version 11 (though it was itself
    rejected), and every real event of the room was then dead-lettered."""
    store = sqlite_store.store
    room = RoomBuilder("1")
    # With no prev or auth events, a v1 event decodes as v11 too (`event_id` is then just
    # an unknown key): it is rejected, but it used to register the room first.
    stray = room.message(ALICE, prev=[], auth=[], accept=False)
    opening = room.create()
    message = room.message(ALICE)
    poison = process(store, [as_input(stray, kind, room_version="11")])
    assert _reasons(poison) == [("line 1", "unknown_room")]
    with store.batch() as batch:
        assert batch.select_room(room.room_id) is None
    done = process(store, [as_input(e) for e in [*opening, message]])
    assert done.summary.dead_letters == []
    assert {e.event_id: done.outcome(e) for e in [*opening, message]} == {
        e.event_id: "accepted" for e in [*opening, message]
    }
    assert _stored_state(store, room) == room.state


def test_a_rejected_create_event_establishes_no_room(sqlite_store: StoreAt) -> None:
    """A forged create event that fails the auth rules (here: it lists a prev event) with
    another version must not lock the room to that version before the real one arrives."""
    store = sqlite_store.store
    room = RoomBuilder("1")
    forged = RoomBuilder("11")
    forged.room_id = room.room_id
    forged_create = forged.event(ALICE, "m.room.create", {"room_version": "11"}, "",
                                 prev=["$" + "P" * 43])
    listing_auth = forged.event(ALICE, "m.room.create", {"room_version": "11", "x": 1}, "",
                                auth=["$" + "A" * 43])
    first = process(store, [as_input(forged_create), as_input(listing_auth, "outlier")])
    assert [r for _, r in _reasons(first)] == ["invalid_event", "invalid_event"]
    opening = room.create()
    done = process(store, [as_input(e) for e in opening])
    assert done.summary.dead_letters == []
    assert _stored_state(store, room) == room.state


def test_an_event_citing_a_stored_event_of_another_room_version(sqlite_store: StoreAt) -> None:
    """In a later run, an auth event ID, a prev event ID, or a redaction target from a v1
    room, cited by a v10 event: stored events were decoded with the citing room's version
    ("stored event ... does not decode", exit 1). Now: the same verdict as within one run."""
    store = sqlite_store.store
    v1 = RoomBuilder("1")
    v1_events = v1.create()
    v1_message = v1.message(ALICE)
    v10 = RoomBuilder("10")
    v10_events = v10.create()
    process(store, [as_input(e) for e in [*v1_events, v1_message, *v10_events]])
    auth = v10.message(ALICE, accept=False, auth=[
        *v10.auth_for(ALICE, "m.room.message", None, {}), v1_events[0].event_id,
    ])
    prev = v10.message(ALICE, accept=False, prev=[v1_message.event_id])
    redaction = v10.redaction(ALICE, v1_message.event_id)
    after = v10.message(ALICE)
    done = process(store, [as_input(e) for e in [auth, prev, redaction, after]])
    assert _reasons(done) == [("line 1", "invalid_event"), ("line 2", "invalid_event")]
    assert "is in another room" in done.summary.dead_letters[0]
    assert done.outcome(redaction) == "accepted"
    assert done.outcome(after) == "accepted"
    stored = event_record(store, v1_message.event_id)
    assert stored is not None and not stored.redacted


def test_a_known_room_keeps_its_version_whatever_the_hint(sqlite_store: StoreAt) -> None:
    store = sqlite_store.store
    room = RoomBuilder("10")
    opening = room.create()
    message = room.message(ALICE)
    done = process(store, [
        *(as_input(e) for e in opening), as_input(message, room_version="1"),
    ])
    assert done.summary.dead_letters == []
    assert done.outcome(message) == "accepted"


def test_hostile_lines_through_the_command(tmp_path: Any) -> None:
    """The same through `roomserver ingest`: exit 0, each bad line reported once."""
    from processor.cli import main

    room = RoomBuilder("10")
    opening = room.create()
    lines: list[dict[str, Any] | bytes] = [as_input(e) for e in opening]
    hostile = _hostile_lines(room)
    lines += [line for line, _, _ in hostile]
    source = tmp_path / "in.jsonl"
    source.write_bytes(encode_lines(lines))
    assert main(["ingest", str(source), "--database", str(tmp_path / "rs.db")]) == 0
