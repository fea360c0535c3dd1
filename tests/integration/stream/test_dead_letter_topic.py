"""Bad input reaches the dead-letter topic and never blocks its partition (docs/architecture.md §5).

Each case of the issue's list is produced, between good events, to a one-partition input
topic; each must arrive on the dead-letter topic as a `schemas.dead_letter.DeadLetter` with
the original bytes, the source topic/partition/offset and a machine-readable reason, and the
good event produced after all of them must still be processed (its output published).

Cases come from the server-server API, "Checks performed on receipt of a PDU": 1. is a
valid event (else dropped; here: dead-lettered with the reason, since no federation peer is
waiting for an answer); 2. (signatures: the federation API's job); 4. passes authorization
rules based on the event's auth events, which requires them to be known (the roomserver does
not fetch: it reports what it misses); 5. state before the event, which requires the prev
events. Size limits: the spec's "Size limits" section (an event is at most 65,536 bytes as
canonical JSON).
"""

from __future__ import annotations

import copy
import io
from typing import Any

import msgspec
import pytest

from processor.config import Settings
from processor.generate import iter_generate
from processor.matrix.hashing import add_content_hash
from processor.stream import commands
from schemas.dead_letter import DeadLetterReason
from tests.fixtures.kafka import NewTopicFactory
from tests.integration.stream.topic_reader import (
    read_dead_letters,
    read_topic,
    run_to_end,
    service_settings,
)

MISSING_ID = "$" + "A" * 43  # a well-formed v4+ event ID that no input ever carried


def _line(item: dict[str, Any]) -> bytes:
    return msgspec.json.encode(item)


def _with_event(item: dict[str, Any], **changes: Any) -> dict[str, Any]:
    """`item` with its PDU changed (and its content hash recomputed, as a sender would)."""
    changed = copy.deepcopy(item)
    changed["event"].update(changes)
    changed["event"].pop("hashes", None)
    changed["event"] = add_content_hash(changed["event"])
    return changed


def _bad_inputs(create: dict[str, Any], good: dict[str, Any]) -> list[tuple[str, bytes, str]]:
    """(reason, original bytes, a fragment the human message must contain) per case, all
    derived from `good` (an accepted message in the room) or the room's `create` event."""
    pdu = good["event"]
    create_999 = copy.deepcopy(create)
    create_999["event"]["content"]["room_version"] = "999"
    create_999["event"]["room_id"] = "!other:s9.example"
    unknown_room = _with_event(good, room_id="!unknown:s9.example")
    del unknown_room["room_version"]
    unknown_room_new = _with_event(good, room_id="!unknown2:s9.example")  # room_version set
    big = _with_event(good, content={**pdu["content"], "body": "x" * 70_000})
    no_sender = _with_event(good, sender=12)
    return [
        (DeadLetterReason.MALFORMED.value, b"\xff\xfe not JSON at all", ""),
        (DeadLetterReason.MALFORMED.value, b'{"kind": "new", "event": {"type": "m', ""),
        # Valid JSON, not an InputRoomEvent (input schema).
        (DeadLetterReason.MALFORMED.value, _line({**good, "kind": "sideways"}), "kind"),
        (DeadLetterReason.MALFORMED.value, _line({"kind": "new"}), "event"),
        # An InputRoomEvent whose PDU is invalid for its room version (PDU schema).
        (DeadLetterReason.INVALID_EVENT.value, _line(no_sender), "sender"),
        (DeadLetterReason.UNKNOWN_ROOM_VERSION.value, _line(create_999), "999"),
        (DeadLetterReason.OVERSIZED_EVENT.value, _line(big), "65"),
        (DeadLetterReason.UNKNOWN_ROOM.value, _line(unknown_room), "!unknown:s9.example"),
        (DeadLetterReason.UNKNOWN_ROOM.value, _line(unknown_room_new), "!unknown2:s9.example"),
        (
            DeadLetterReason.MISSING_AUTH_EVENTS.value,
            _line(_with_event(good, auth_events=[*pdu["auth_events"], MISSING_ID])),
            MISSING_ID,
        ),
        (
            DeadLetterReason.MISSING_PREV_EVENTS.value,
            _line(_with_event(good, prev_events=[MISSING_ID])),
            MISSING_ID,
        ),
    ]


@pytest.fixture
def settings(
    kafka_bootstrap_servers: str, database_url: str, new_topic: NewTopicFactory
) -> Settings:
    prefix = new_topic(1)
    return service_settings(
        kafka_bootstrap_servers, database_url, prefix, 1,
        batch_size=4,  # the bad inputs span several batches, and share them with good ones
    )


async def test_every_dead_letter_case_reaches_the_topic_and_the_partition_flows(
    settings: Settings,
) -> None:
    generated = [g.input for g in iter_generate(1, 7, "10", seed=2)]
    # 0 create, 1 join, 2 power levels, 3 join rules, 4 history visibility, 5 name,
    # 6 a message: accepted, and built on the events before it only.
    assert generated[6]["event"]["type"] == "m.room.message"
    setup, good = generated[:6], generated[6]
    bad = _bad_inputs(generated[0], good)
    lines = [_line(item) for item in setup] + [original for _, original, _ in bad]
    lines.append(_line(good))

    produced = await commands.produce(settings, io.BytesIO(b"\n".join(lines) + b"\n"))
    assert produced == len(lines)
    ends = await commands.input_end_offsets(settings)
    assert ends == {0: len(lines)}
    await run_to_end(settings)

    dead = await read_dead_letters(settings)
    assert [(d.reason, d.offset) for d in dead] == [
        (reason, len(setup) + i) for i, (reason, _, _) in enumerate(bad)
    ]
    for record, (_, original, fragment) in zip(dead, bad, strict=True):
        assert record.original_bytes() == original
        assert (record.topic, record.partition) == (settings.input_topic, 0)
        assert fragment in record.message, record.message
        assert record.message  # a sentence for the operator

    # The partition kept flowing: the good event after the bad ones was processed.
    outputs = [
        msgspec.json.decode(r.value or b"")
        for r in await read_topic(settings.kafka_bootstrap_servers, settings.output_topic, 1)
    ]
    assert [o["event"] for o in outputs] == [item["event"] for item in [*setup, good]]
