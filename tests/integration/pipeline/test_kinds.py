"""The input kinds through the embedded mode (docs/architecture.md §3, `InputRoomEvent`):

- `outlier`: stored and checked against its own auth events only (server-server API,
  "Checks performed on receipt of a PDU", step 4); no state, no output; it can authorise a
  later event;
- `old` (backfill / gap fill): state before it computed, current state and forward
  extremities untouched, an `old_room_event`;
- `new` with `has_state`: the supplied state (the `/state_ids` answer of a join over
  federation, stored as outliers first) rewrites the room's state: `rewrites_state`;
- a duplicate is a no-op with no second output;
- a soft-failed event (step 6) is stored, is not a forward extremity and has no output.

Each test runs on SQLite and PostgreSQL (`store_at`).
"""

from __future__ import annotations

import json
from typing import Any

import msgspec
import pytest

from processor.storage.base import Store
from schemas.output import NewRoomEvent, OldRoomEvent
from tests.integration.pipeline.rooms import (
    ALICE,
    BOB,
    CAROL,
    DAVE,
    Built,
    RoomBuilder,
    StoreAt,
    as_input,
    event_record,
    extremities,
    inputs,
    process,
    state_of,
    store_at,
)

__all__ = ["store_at"]


def _opened(store: Store, version: str = "10") -> tuple[RoomBuilder, list[Built]]:
    room = RoomBuilder(version)
    events = room.create()
    done = process(store, inputs(events))
    assert done.summary.dead_letters == []
    return room, events


def _apply(
    state: dict[tuple[str, str], str],
    output: NewRoomEvent,
    by_id: dict[str, tuple[str, str]],
) -> None:
    """A consumer's copy of the current state: apply the removes, then the adds."""
    for event_id in output.removes_state_event_ids:
        state.pop(by_id[event_id], None)
    for event_id in output.adds_state_event_ids:
        state[by_id[event_id]] = event_id


def _keys(room: RoomBuilder) -> dict[str, tuple[str, str]]:
    return {
        event_id: (pdu["type"], pdu["state_key"])
        for event_id, pdu in room.pdus.items()
        if "state_key" in pdu
    }


# ---------------------------------------------------------------- outlier


def test_outlier_is_stored_and_auth_checked_only(store_at: StoreAt) -> None:
    store = store_at.store
    room, _ = _opened(store)
    before = state_of(store, room.room_id)
    tips = extremities(store, room.room_id)

    bob_join = room.member(BOB, BOB, "join", accept=False)
    done = process(store, [as_input(bob_join, "outlier")])

    assert done.outcome(bob_join) == "outlier"
    assert done.lines == []
    record = event_record(store, bob_join.event_id)
    assert record is not None
    assert record.outlier and not record.rejected
    # No state: neither a snapshot for it nor a change to the room.
    assert record.state_snapshot_nid == 0
    assert state_of(store, room.room_id) == before
    assert extremities(store, room.room_id) == tips


def test_outlier_failing_its_auth_events_is_stored_rejected(store_at: StoreAt) -> None:
    store = store_at.store
    room, _ = _opened(store)
    # Dave never joined: with auth events (create, power levels) only, rule "sender not in
    # the room" rejects his message.
    stray = room.message(DAVE, accept=False)
    done = process(store, [as_input(stray, "outlier")])
    assert done.outcome(stray) == "rejected"
    assert done.lines == []
    record = event_record(store, stray.event_id)
    assert record is not None and record.rejected


def test_an_outlier_authorises_a_later_event(store_at: StoreAt) -> None:
    store = store_at.store
    room, _ = _opened(store)
    bob_join = room.member(BOB, BOB, "join", accept=False)
    # Bob's message cites his (outlier) join as its auth event.
    # (Bob is not in the intended state, so auth_for picks create + power levels.)
    auth = [*room.auth_for(BOB, "m.room.message", None, {}), bob_join.event_id]
    message = room.message(BOB, auth=auth, accept=False)
    done = process(store, [as_input(bob_join, "outlier"), as_input(message, "outlier")])
    assert done.outcome(message) == "outlier"
    record = event_record(store, message.event_id)
    assert record is not None and not record.rejected


def test_an_event_citing_a_rejected_outlier_is_rejected(store_at: StoreAt) -> None:
    store = store_at.store
    room, _ = _opened(store)
    # Carol is invited by Dave, who is not in the room: rejected as an outlier.
    invite = room.member(DAVE, CAROL, "invite", accept=False)
    join = room.member(
        CAROL, CAROL, "join", accept=False,
        auth=[*room.auth_for(CAROL, "m.room.member", CAROL, {"membership": "join"}),
              invite.event_id],
    )
    done = process(store, [as_input(invite, "outlier"), as_input(join, "outlier")])
    assert done.outcome(invite) == "rejected"
    # Auth rules: an event whose auth events were rejected is rejected.
    assert done.outcome(join) == "rejected"


# ---------------------------------------------------------------- old (gap fill)


def test_old_event_gets_state_but_leaves_the_room_alone(store_at: StoreAt) -> None:
    store = store_at.store
    room, _ = _opened(store)
    bob_join = room.member(BOB, BOB, "join")
    process(store, [as_input(bob_join)])
    current = state_of(store, room.room_id)
    tips = extremities(store, room.room_id)

    # A topic change we missed; federation fills the gap with it as `old`.
    missed = room.event(ALICE, "m.room.topic", {"topic": "missed"}, "")
    done = process(store, [as_input(missed, "old")])

    assert done.outcome(missed) == "accepted"
    [output] = done.outputs
    assert isinstance(output, OldRoomEvent)
    assert output.event == _raw(missed)
    # State before the old event is computed; the state after it has the topic...
    assert state_of(store, room.room_id, missed.event_id, before=True) == current
    assert state_of(store, room.room_id, missed.event_id)[("m.room.topic", "")] == (
        missed.event_id
    )
    # ... but the room's current state and forward extremities are untouched.
    assert state_of(store, room.room_id) == current
    assert extremities(store, room.room_id) == tips
    record = event_record(store, missed.event_id)
    assert record is not None and not record.outlier

    # The event that referenced the gap now arrives as `new`: its state includes the topic.
    after = room.message(BOB)
    done = process(store, [as_input(after)])
    assert done.outcome(after) == "accepted"
    assert state_of(store, room.room_id)[("m.room.topic", "")] == missed.event_id


def test_an_extremity_with_a_backfilled_child_is_no_longer_an_extremity(
    store_at: StoreAt,
) -> None:
    """Forward extremities are the events with no children (server-server API, "Room
    state"/glossary). Once the gap-filled event and its child are stored, the old tip has a
    child and must not stay a forward extremity."""
    store = store_at.store
    room, _ = _opened(store)
    missed = room.event(ALICE, "m.room.topic", {"topic": "missed"}, "")
    after = room.message(ALICE)
    done = process(store, [as_input(missed, "old"), as_input(after)])
    [_, new] = done.outputs
    assert isinstance(new, NewRoomEvent)
    assert new.latest_event_ids == [after.event_id]
    assert extremities(store, room.room_id) == {after.event_id}


# ---------------------------------------------------------------- has_state joins


def _remote_room(version: str) -> tuple[RoomBuilder, list[Built]]:
    """A room on other servers that our server (s2, Bob's) does not know yet."""
    room = RoomBuilder(version)
    events = room.create()
    events.append(room.event(ALICE, "m.room.topic", {"topic": "remote"}, ""))
    events.append(room.member(DAVE, DAVE, "join"))
    events.append(room.message(DAVE))
    return room, events


def _join_with_state(room: RoomBuilder) -> tuple[list[dict[str, Any]], Built, list[str]]:
    """The inputs of a join over federation: the state (and its auth chain) as outliers,
    then the join as `new` with `has_state`. The join's prev event is not stored here."""
    state_ids = list(room.state.values())
    join = room.member(BOB, BOB, "join")
    items = [
        as_input(room.pdus[event_id], "outlier", room_version=room.version.id)
        for event_id in _auth_order(room, state_ids)
    ]
    items.append(
        as_input(join, room_version=room.version.id, has_state=True, state_event_ids=state_ids)
    )
    return items, join, state_ids


def _auth_order(room: RoomBuilder, event_ids: list[str]) -> list[str]:
    """The events in an order where each one's auth events come first."""
    return sorted(event_ids, key=lambda e: room.depths[e])


@pytest.mark.parametrize("version", ["1", "10", "12"])
def test_state_rewriting_join_into_an_unknown_room(store_at: StoreAt, version: str) -> None:
    store = store_at.store
    room, _ = _remote_room(version)
    items, join, state_ids = _join_with_state(room)
    done = process(store, items)

    assert done.summary.dead_letters == []
    assert done.outcome(join) == "accepted"
    [output] = done.outputs
    assert isinstance(output, NewRoomEvent)
    assert output.rewrites_state is True
    assert output.latest_event_ids == [join.event_id]
    assert sorted(output.adds_state_event_ids) == sorted([*state_ids, join.event_id])
    assert output.removes_state_event_ids == []
    # The current state is the supplied state plus the join.
    assert state_of(store, room.room_id) == room.state
    assert extremities(store, room.room_id) == {join.event_id}

    # The room goes on from there.
    reply = room.message(BOB)
    done = process(store, [as_input(reply)])
    assert done.outcome(reply) == "accepted"


def test_state_rewriting_join_replaces_a_stale_state(store_at: StoreAt) -> None:
    """Bob's server was in the room, left, and missed changes; rejoining with the state
    from federation replaces its stale view: removes then adds give the new state."""
    store = store_at.store
    room = RoomBuilder("11")
    events = room.create()
    events.append(room.event(ALICE, "m.room.topic", {"topic": "old"}, ""))
    events.append(room.member(BOB, BOB, "join"))
    events.append(room.member(BOB, BOB, "leave"))
    done = process(store, inputs(events))
    assert done.summary.dead_letters == []
    by_key = _keys(room)
    consumer: dict[tuple[str, str], str] = {}
    for output in done.outputs:
        assert isinstance(output, NewRoomEvent)
        _apply(consumer, output, by_key)

    # Unseen by Bob's server: a new topic, a name, Dave joins.
    room.event(ALICE, "m.room.topic", {"topic": "new"}, "")
    room.event(ALICE, "m.room.name", {"name": "Room"}, "")
    room.member(DAVE, DAVE, "join")
    items, _, _ = _join_with_state(room)
    done = process(store, items)
    assert done.summary.dead_letters == []
    [output] = done.outputs
    assert isinstance(output, NewRoomEvent) and output.rewrites_state
    by_key = _keys(room)
    _apply(consumer, output, by_key)
    assert consumer == room.state
    assert state_of(store, room.room_id) == room.state


# ---------------------------------------------------------------- duplicates, soft failure


def test_duplicate_event_is_a_no_op(store_at: StoreAt) -> None:
    store = store_at.store
    room, _ = _opened(store)
    message = room.message(ALICE)
    done = process(store, [as_input(message), as_input(message)])
    assert len(done.outputs) == 1
    assert done.outcome(message) == "accepted"
    again = process(store, [as_input(message), as_input(message, "old")])
    assert again.lines == []
    assert {o.value: n for o, n in again.summary.outcomes.items()} == {"duplicate": 2}


def test_soft_failed_event_is_stored_without_output_or_extremity(store_at: StoreAt) -> None:
    store = store_at.store
    room, _ = _opened(store)
    bob_join = room.member(BOB, BOB, "join")
    ban = room.member(ALICE, BOB, "ban")
    process(store, inputs([bob_join, ban]))

    # Bob's message was built on the state before the ban (it passes step 5) but fails
    # against the current state, where Bob is banned (step 6: soft fail).
    # Its auth events are those of the state it was built on (Bob's join, not the ban).
    auth = [e for e in room.auth_for(BOB, "m.room.message", None, {}) if e != ban.event_id]
    late = room.message(
        BOB, prev=[bob_join.event_id], auth=[*auth, bob_join.event_id], accept=False
    )
    done = process(store, [as_input(late)])
    assert done.outcome(late) == "soft_failed"
    assert done.lines == []
    record = event_record(store, late.event_id)
    assert record is not None and not record.rejected and not record.outlier
    assert extremities(store, room.room_id) == {ban.event_id}

    # The next event does not reference it.
    after = room.message(ALICE)
    done = process(store, [as_input(after)])
    [output] = done.outputs
    assert isinstance(output, NewRoomEvent)
    assert output.latest_event_ids == [after.event_id]


def _raw(built: Built) -> msgspec.Raw:
    return msgspec.Raw(msgspec.json.encode(built.pdu))


def test_join_that_fails_against_the_supplied_state_is_rejected(store_at: StoreAt) -> None:
    """Step 5 on a state-rewriting join reads the supplied state: an invite-only room
    rejects Bob's uninvited join, and the room's state is not rewritten."""
    store = store_at.store
    room = RoomBuilder("10")
    room.create(join_rule="invite")
    room.message(ALICE)
    items, join, _ = _join_with_state(room)
    done = process(store, items)
    assert done.summary.dead_letters == []
    assert done.outcome(join) == "rejected"
    assert done.lines == []
    record = event_record(store, join.event_id)
    assert record is not None and record.rejected


def test_stream_positions_count_every_output_without_gaps(store_at: StoreAt) -> None:
    """Design §3: per room, strictly increasing, no gaps — across batches and across
    restarts (each `process` call is a new handler on the same store)."""
    store = store_at.store
    room = RoomBuilder("10")
    first = room.create()
    first.append(room.member(ALICE, BOB, "invite"))
    positions = [o.stream_position for o in process(store, inputs(first), server_name="s2.example",
                                                     batch_size=2).outputs]
    message = room.message(ALICE)
    redaction = room.redaction(ALICE, message.event_id)
    join = room.member(BOB, BOB, "join")
    old = room.event(ALICE, "m.room.topic", {"topic": "x"}, "", prev=[join.event_id],
                     accept=False)
    later = [as_input(message), as_input(redaction), as_input(join), as_input(old, "old")]
    positions += [o.stream_position for o in process(store, later, server_name="s2.example",
                                                      batch_size=3).outputs]
    # create, join, power, join rules, invite (+ new_invite), message, redaction
    # (+ redacted_event), join (+ retire_invite), old_room_event.
    assert positions == list(range(1, 13))


def test_old_event_carries_the_history_visibility_at_it(store_at: StoreAt) -> None:
    """The visibility of an event is the m.room.history_visibility in effect at the event
    (client-server API, "History visibility"), not the room's current one: a backfilled
    event from before a change keeps the older setting."""
    store = store_at.store
    room = RoomBuilder("10")
    events = room.create()
    events.append(room.event(ALICE, "m.room.history_visibility",
                             {"history_visibility": "shared"}, ""))
    fork = list(room.tips)
    events.append(room.event(ALICE, "m.room.history_visibility",
                             {"history_visibility": "joined"}, ""))
    after = room.message(ALICE)
    events.append(after)
    done = process(store, inputs(events))
    last = done.outputs[-1]
    assert isinstance(last, NewRoomEvent) and last.history_visibility == "joined"

    backfilled = room.message(ALICE, prev=fork, accept=False)
    done = process(store, [as_input(backfilled, "old")])
    [output] = done.outputs
    assert isinstance(output, OldRoomEvent)
    assert output.history_visibility == "shared"


def test_an_outlier_arriving_again_as_new_is_processed(store_at: StoreAt) -> None:
    """An event first fetched as an outlier (say, as another event's auth event) and then
    received as `new` gets its state and its output then, once."""
    store = store_at.store
    room, _ = _opened(store)
    message = room.message(ALICE)
    first = process(store, [as_input(message, "outlier")])
    assert first.outcome(message) == "outlier"
    assert first.outputs == []

    done = process(store, [as_input(message)])
    assert done.outcome(message) == "accepted"
    [new] = done.outputs
    assert isinstance(new, NewRoomEvent)
    assert json.loads(bytes(new.event)) == message.pdu
    record = event_record(store, message.event_id)
    assert record is not None and not record.outlier and record.state_snapshot_nid != 0
    assert extremities(store, room.room_id) == {message.event_id}

    again = process(store, [as_input(message)])
    assert again.outcome(message) is None and again.outputs == []
