"""Redactions through the embedded mode (docs/architecture.md §3: `redacted_event`).

- v1, v2 (auth rules, m.room.redaction rule): a redaction is allowed when the sender has the
  `redact` power level, or when the redacted event's ID has the redaction's event ID domain;
  otherwise it is rejected (stored rejected, no output).
- v3+ ("Handling redactions" on the room version 3 page and later): redactions are not
  auth-checked beyond the usual rules, but a server applies one only when the sender has the
  redact level or is on the same server as the original event's sender. Otherwise the
  redaction is stored (and is a timeline event) but the target stays as it was.
- Once applied, the redacted form is what is served: the events table's JSON, and outputs
  that carry the event afterwards; a `redacted_event` output says so.
- A redaction may arrive before its target: it is applied when the target arrives.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from processor.storage.base import Store
from schemas.output import NewRoomEvent, RedactedEvent
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
    inputs,
    process,
    state_of,
    store_at,
)

__all__ = ["store_at"]

V1_V2 = ["1", "2"]
V3_PLUS = ["3", "10", "11", "12"]


def _room(store: Store, version: str) -> tuple[RoomBuilder, Built]:
    """Alice (power 100, creator) and Bob, Carol (s2) and Dave (s3) joined; a message from
    Bob to redact."""
    room = RoomBuilder(version)
    events = room.create()
    events += [room.member(u, u, "join") for u in (BOB, CAROL, DAVE)]
    message = room.message(BOB, "secret")
    events.append(message)
    done = process(store, inputs(events))
    assert done.summary.dead_letters == []
    assert all(o.value == "accepted" for o in done.summary.event_outcomes.values())
    return room, message


def _stored(store: Store, event_id: str) -> dict[str, Any]:
    record = event_record(store, event_id)
    assert record is not None
    parsed: dict[str, Any] = json.loads(record.json)
    return parsed


def _assert_redacted(pdu: dict[str, Any], original: dict[str, Any]) -> None:
    # The redaction algorithm keeps no content keys of an m.room.message, and keeps the
    # hashes and signatures, so the event ID and signatures still check out.
    assert pdu["content"] == {}
    assert pdu["hashes"] == original["hashes"]
    assert pdu["signatures"] == original["signatures"]
    assert pdu["sender"] == original["sender"]


def _redacted_outputs(done: Any) -> list[RedactedEvent]:
    return [o for o in done.outputs if isinstance(o, RedactedEvent)]


@pytest.mark.parametrize("version", V1_V2 + V3_PLUS)
def test_redaction_by_power_is_applied(store_at: StoreAt, version: str) -> None:
    store = store_at.store
    room, message = _room(store, version)
    redaction = room.redaction(ALICE, message.event_id)
    done = process(store, [as_input(redaction)])

    assert done.outcome(redaction) == "accepted"
    new, redacted = done.outputs
    assert isinstance(new, NewRoomEvent)
    assert json.loads(bytes(new.event))["type"] == "m.room.redaction"
    assert isinstance(redacted, RedactedEvent)
    assert redacted.redacted_event_id == message.event_id
    assert json.loads(bytes(redacted.redacted_because)) == redaction.pdu
    assert redacted.stream_position == new.stream_position + 1
    _assert_redacted(_stored(store, message.event_id), message.pdu)

    # Served redacted afterwards: an `old` re-delivery is a duplicate, and the `state`
    # command still lists the room unchanged (a message is not state).
    again = process(store, [as_input(message), as_input(redaction)])
    assert again.lines == []
    assert state_of(store, room.room_id) == room.state


@pytest.mark.parametrize("version", V1_V2 + V3_PLUS)
def test_redaction_from_the_original_server_is_applied(store_at: StoreAt, version: str) -> None:
    """Carol has no redact power but is on Bob's server (s2). v1–v2: the event IDs share
    the domain; v3+: the senders share the server."""
    store = store_at.store
    room, message = _room(store, version)
    redaction = room.redaction(CAROL, message.event_id)
    done = process(store, [as_input(redaction)])
    assert done.outcome(redaction) == "accepted"
    assert [r.redacted_event_id for r in _redacted_outputs(done)] == [message.event_id]
    _assert_redacted(_stored(store, message.event_id), message.pdu)


@pytest.mark.parametrize("version", V1_V2)
def test_v1_v2_unauthorised_redaction_is_rejected(store_at: StoreAt, version: str) -> None:
    """v1–v2 auth rules, m.room.redaction: neither the redact level nor the same domain."""
    store = store_at.store
    room, message = _room(store, version)
    redaction = room.redaction(DAVE, message.event_id, accept=False)
    done = process(store, [as_input(redaction)])
    assert done.outcome(redaction) == "rejected"
    assert done.lines == []
    assert _stored(store, message.event_id) == message.pdu


@pytest.mark.parametrize("version", V3_PLUS)
def test_v3_plus_unauthorised_redaction_is_stored_but_not_applied(
    store_at: StoreAt, version: str
) -> None:
    store = store_at.store
    room, message = _room(store, version)
    redaction = room.redaction(DAVE, message.event_id)
    done = process(store, [as_input(redaction)])
    # v3+: the auth rules let it in (it is a timeline event) ...
    assert done.outcome(redaction) == "accepted"
    [new] = done.outputs
    assert isinstance(new, NewRoomEvent)
    # ... but it is not applied.
    assert _stored(store, message.event_id) == message.pdu

    # A redaction that is allowed still applies afterwards.
    allowed = room.redaction(ALICE, message.event_id)
    done = process(store, [as_input(allowed)])
    assert [r.redacted_event_id for r in _redacted_outputs(done)] == [message.event_id]
    assert json.loads(bytes(_redacted_outputs(done)[0].redacted_because)) == allowed.pdu


@pytest.mark.parametrize("batch_size", [1, 100])
@pytest.mark.parametrize("version", ["2", "10", "11"])
def test_second_redaction_of_an_event_is_not_announced_again(
    store_at: StoreAt, version: str, batch_size: int
) -> None:
    store = store_at.store
    room, message = _room(store, version)
    first = room.redaction(ALICE, message.event_id)
    second = room.redaction(CAROL, message.event_id)
    done = process(store, [as_input(first), as_input(second)], batch_size=batch_size)
    assert done.outcome(second) == "accepted"
    assert [r.redacted_event_id for r in _redacted_outputs(done)] == [message.event_id]


@pytest.mark.parametrize("version", ["3", "10", "11", "12"])
def test_redaction_before_its_target_is_applied_when_the_target_arrives(
    store_at: StoreAt, version: str
) -> None:
    store = store_at.store
    room, _ = _room(store, version)
    fork_point = list(room.tips)
    # Bob's message and Alice's redaction of it are siblings in the DAG; the redaction
    # reaches us first.
    target = room.message(BOB, "arrives late")
    redaction = room.redaction(ALICE, target.event_id, prev=fork_point)
    done = process(store, [as_input(redaction)])
    assert done.outcome(redaction) == "accepted"
    assert _redacted_outputs(done) == []

    done = process(store, [as_input(target)])
    assert done.outcome(target) == "accepted"
    [redacted] = _redacted_outputs(done)
    assert redacted.redacted_event_id == target.event_id
    assert json.loads(bytes(redacted.redacted_because)) == redaction.pdu
    _assert_redacted(_stored(store, target.event_id), target.pdu)
    # The target's own output comes once the redaction is known to apply: what is served
    # from then on is the redacted form.
    [new] = [o for o in done.outputs if isinstance(o, NewRoomEvent)]
    _assert_redacted(json.loads(bytes(new.event)), target.pdu)


@pytest.mark.parametrize("version", ["3", "11"])
def test_unauthorised_redaction_before_its_target_is_not_applied(
    store_at: StoreAt, version: str
) -> None:
    store = store_at.store
    room, _ = _room(store, version)
    fork_point = list(room.tips)
    target = room.message(BOB, "arrives late")
    redaction = room.redaction(DAVE, target.event_id, prev=fork_point)
    process(store, [as_input(redaction)])
    done = process(store, [as_input(target)])
    assert done.outcome(target) == "accepted"
    assert _redacted_outputs(done) == []
    assert _stored(store, target.event_id) == target.pdu


@pytest.mark.parametrize("version", ["1", "10", "11"])
def test_redacted_state_event_stays_in_the_state(store_at: StoreAt, version: str) -> None:
    """Redaction strips content, it does not remove the event from the room's state; the
    `state` command keeps serving it at every point."""
    store = store_at.store
    room, _ = _room(store, version)
    topic = room.event(ALICE, "m.room.topic", {"topic": "to be redacted"}, "")
    process(store, [as_input(topic)])
    redaction = room.redaction(ALICE, topic.event_id)
    done = process(store, [as_input(redaction)])
    assert [r.redacted_event_id for r in _redacted_outputs(done)] == [topic.event_id]
    stored = _stored(store, topic.event_id)
    assert stored["content"] == {}
    assert stored["state_key"] == ""
    assert state_of(store, room.room_id)[("m.room.topic", "")] == topic.event_id
    assert state_of(store, room.room_id, redaction.event_id, before=True) == room.state


@pytest.mark.parametrize("version", ["2", "11"])
def test_backfilled_redaction_is_applied(store_at: StoreAt, version: str) -> None:
    """A redaction that arrives as `old` (backfill / gap fill) is history like any other:
    once validated, its target is served redacted."""
    store = store_at.store
    room, message = _room(store, version)
    redaction = room.redaction(ALICE, message.event_id)
    done = process(store, [as_input(redaction, "old")])
    assert done.outcome(redaction) == "accepted"
    assert [type(o).__name__ for o in done.outputs] == ["OldRoomEvent", "RedactedEvent"]
    _assert_redacted(_stored(store, message.event_id), message.pdu)


def test_redaction_of_an_event_in_another_room_does_not_apply(store_at: StoreAt) -> None:
    store = store_at.store
    room, _ = _room(store, "10")
    other = RoomBuilder("10")
    # The create event first: built after the message, it would cite it as a prev event
    # and be rejected, and a rejected create event establishes no room.
    opening = other.create()
    elsewhere = other.message(ALICE)
    process(store, inputs([*opening, elsewhere]))
    redaction = room.redaction(ALICE, elsewhere.event_id)
    done = process(store, [as_input(redaction)])
    assert done.outcome(redaction) == "accepted"
    assert _redacted_outputs(done) == []
    assert _stored(store, elsewhere.event_id) == elsewhere.pdu
