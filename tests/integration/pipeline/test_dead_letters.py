"""Bad input through `ingest` : each bad
line becomes a dead letter reported with its line number and a machine-readable reason
(`schemas.dead_letter.DeadLetterReason`), and processing goes on with the next line.

Size limits are the server-server API's "Size limits" (room versions: PDUs): a PDU of at
most 65,536 bytes as canonical JSON with its signatures; `type`, `state_key`, `sender`,
`room_id`, `event_id` at most 255 bytes.
"""

from __future__ import annotations

from typing import Any

import pytest

from processor.matrix.canonical_json import canonical_json
from processor.storage.base import Store
from tests.integration.pipeline.rooms import (
    ALICE,
    BOB,
    CAROL,
    Built,
    RoomBuilder,
    StoreAt,
    as_input,
    process,
    sqlite_store,
    store_at,
)

__all__ = ["sqlite_store", "store_at"]

MAX_PDU_BYTES = 65_536


def _reasons(done: Any) -> list[tuple[str, str]]:
    """(line, reason) of each reported dead letter, and the full lines kept for messages."""
    out = []
    for text in done.summary.dead_letters:
        line, reason, _ = text.split(": ", 2)
        out.append((line, reason))
    return out


def _sized_message(room: RoomBuilder, size: int) -> Built:
    """A message whose PDU is exactly `size` bytes as canonical JSON (hashes and
    signatures have fixed lengths, so the body length fixes the size)."""
    probe = room.message(ALICE, "", accept=False)
    base = len(canonical_json(probe.pdu))
    built = room.message(ALICE, "x" * (size - base), accept=False)
    assert len(canonical_json(built.pdu)) == size
    return built


def test_every_kind_of_bad_line_is_reported_and_skipped(store_at: StoreAt) -> None:
    store = store_at.store
    room = RoomBuilder("10")
    good: list[Built] = room.create()
    stranger = RoomBuilder("10")
    stranger.create()  # never sent: the room stays unknown
    stranger_message = stranger.message(ALICE)

    lines: list[dict[str, Any] | bytes] = [as_input(e) for e in good]
    bad: dict[int, str] = {}

    def add_bad(item: dict[str, Any] | bytes, reason: str) -> None:
        lines.append(item)
        bad[len(lines)] = reason
        # After each bad line, a good one: processing goes on.
        message = room.message(ALICE)
        good.append(message)
        lines.append(as_input(message))

    add_bad(b"\xff\xfe\x00 not json", "malformed")
    add_bad(b'{"kind": "new", "event": {"type": "m.room.message"', "malformed")
    add_bad({"kind": "sideways", "event": room.message(ALICE, accept=False).pdu}, "malformed")
    add_bad({"kind": "new"}, "malformed")
    unknown_version = RoomBuilder("10")
    unknown_create = unknown_version.create()[0].pdu
    add_bad(
        as_input({**unknown_create, "content": {"room_version": "99", "creator": ALICE}}),
        "unknown_room_version",
    )
    add_bad(as_input(stranger_message, room_version="99"), "unknown_room_version")
    add_bad(as_input(_sized_message(room, MAX_PDU_BYTES + 1)), "oversized_event")
    add_bad(as_input(room.event(ALICE, "m.room.topic", {}, "k" * 256, accept=False)),
            "oversized_event")
    # A message for a room never seen: no create event, no room_version to place it.
    add_bad(as_input(stranger_message), "unknown_room")
    add_bad(as_input(stranger_message, room_version="10"), "unknown_room")
    missing_auth = "$" + "A" * 43
    add_bad(as_input(room.message(ALICE, accept=False, auth=[
        *room.auth_for(ALICE, "m.room.message", None, {}), missing_auth,
    ])), "missing_auth_events")
    missing_prev = "$" + "B" * 43
    add_bad(as_input(room.message(ALICE, prev=[missing_prev], accept=False)),
            "missing_prev_events")

    done = process(store, lines, batch_size=7)

    assert _reasons(done) == [(f"line {n}", reason) for n, reason in sorted(bad.items())]
    assert {e.event_id: done.outcome(e) for e in good} == {e.event_id: "accepted" for e in good}
    # The messages name what is wrong.
    by_line = {int(t.split(":")[0][5:]): t for t in done.summary.dead_letters}
    missing_auth_line = next(n for n, r in bad.items() if r == "missing_auth_events")
    assert missing_auth in by_line[missing_auth_line]
    missing_prev_line = next(n for n, r in bad.items() if r == "missing_prev_events")
    assert missing_prev in by_line[missing_prev_line]
    bad_lines = sorted(bad)
    assert "$.kind" in by_line[bad_lines[2]]
    assert "99" in by_line[bad_lines[4]]


def test_a_pdu_of_exactly_the_size_limit_is_accepted(sqlite_store: StoreAt) -> None:
    store = sqlite_store.store
    room = RoomBuilder("11")
    events = room.create()
    at_limit = _sized_message(room, MAX_PDU_BYTES)
    over = _sized_message(room, MAX_PDU_BYTES + 1)
    done = process(store, [*(as_input(e) for e in events), as_input(at_limit), as_input(over)])
    assert done.outcome(at_limit) == "accepted"
    assert _reasons(done) == [("line 6", "oversized_event")]


@pytest.mark.parametrize("version", ["1", "3", "12"])
def test_missing_auth_events_are_named(sqlite_store: StoreAt, version: str) -> None:
    """The create event is left out: every later event's auth events are missing. v12 has
    no create event in auth_events (MSC4291), but needs it all the same. (As an outlier,
    with its room version, the event may open a room the server does not know yet.)"""
    store = sqlite_store.store
    room = RoomBuilder(version)
    create, join, *_ = room.create()
    done = process(store, [as_input(join, "outlier", room_version=version)])
    [line] = done.summary.dead_letters
    assert line.startswith("line 1: missing_auth_events: ")
    assert create.event_id in line


def test_dead_letters_leave_no_trace_in_the_store(sqlite_store: StoreAt) -> None:
    store: Store = sqlite_store.store
    room = RoomBuilder("10")
    events = room.create()
    bad = room.message(ALICE, prev=["$" + "C" * 43], accept=False)
    process(store, [as_input(e) for e in events])
    first = process(store, [as_input(bad)])
    assert _reasons(first) == [("line 1", "missing_prev_events")]
    # Not stored: the same input is dead-lettered again (not a duplicate).
    again = process(store, [as_input(bad)])
    assert _reasons(again) == [("line 1", "missing_prev_events")]
    # And the room goes on.
    after = room.member(BOB, BOB, "join")
    assert process(store, [as_input(after)]).outcome(after) == "accepted"


def test_has_state_naming_events_not_stored(sqlite_store: StoreAt) -> None:
    """`state_event_ids` must already be stored (as outliers): otherwise the join cannot be
    placed, and the dead letter names what is missing."""
    store = sqlite_store.store
    room = RoomBuilder("10")
    events = room.create()
    state_ids = list(room.state.values())
    join = room.member(BOB, BOB, "join")
    # Only the create event is sent ahead.
    done = process(store, [
        as_input(events[0], "outlier"),
        as_input(join, room_version="10", has_state=True, state_event_ids=state_ids),
    ])
    [line] = done.summary.dead_letters
    # The join's auth events are missing first (power levels, join rules).
    assert line.startswith("line 2: missing_auth_events: ")
    assert room.state[("m.room.power_levels", "")] in line

    # Auth events stored, one state event not: missing_state_events.
    topic = room.event(ALICE, "m.room.topic", {"topic": "t"}, "")
    bob = room.member(CAROL, CAROL, "join")
    done = process(store, [as_input(e, "outlier") for e in events[1:]] + [
        as_input(bob, room_version="10", has_state=True,
                 state_event_ids=[*state_ids, topic.event_id]),
    ])
    [line] = done.summary.dead_letters
    assert line.startswith("line 4: missing_state_events: ")
    assert topic.event_id in line
