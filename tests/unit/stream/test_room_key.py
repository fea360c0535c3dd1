"""`roomserver produce` keys each input by its room ID, so a room stays in one partition."""

from __future__ import annotations

import msgspec

from processor.generate import generate
from processor.matrix.pdu import decode_pdu
from processor.matrix.room_versions import room_version
from processor.stream.commands import room_key


def test_every_input_is_keyed_by_its_room() -> None:
    traffic = generate(rooms=3, events=60, room_version="10", seed=2)
    for item in traffic.inputs:
        line = msgspec.json.encode(item)
        assert room_key(line) == item["event"]["room_id"].encode()


def test_a_v12_create_event_is_keyed_by_the_room_id_derived_from_it() -> None:
    traffic = generate(rooms=1, events=5, room_version="12", seed=4)
    create = traffic.inputs[0]
    assert create["event"]["type"] == "m.room.create" and "room_id" not in create["event"]
    derived = decode_pdu(create["event"], room_version("12")).room_id
    assert room_key(msgspec.json.encode(create)) == derived.encode()
    # ... which is the key of every later event of the room.
    assert room_key(msgspec.json.encode(traffic.inputs[1])) == derived.encode()


def test_a_malformed_line_gets_an_empty_key() -> None:
    assert room_key(b"{not json") == b""
    assert room_key(b'{"event": {"room_id": 5}}') == b""
