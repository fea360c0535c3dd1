"""Wire codecs: inputs, outputs and dead-letter records decode to their Structs, round-trip,
and untrusted bytes raise only `SchemaError` naming the field (docs/architecture.md §3)."""

from __future__ import annotations

import base64
import contextlib
import json
from typing import Any

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from schemas.codecs import (
    decode_dead_letter,
    decode_input,
    decode_output,
    encode_dead_letter,
    encode_input,
    encode_output,
)
from schemas.dead_letter import DeadLetter, DeadLetterReason
from schemas.errors import SchemaError
from schemas.input import InputRoomEvent
from schemas.output import (
    NewInviteEvent,
    NewRoomEvent,
    OldRoomEvent,
    RedactedEvent,
    RetireInviteEvent,
)

PDU = b'{"type":"m.room.message","content":{"body":"hi"},"room_id":"!r:example.org"}'


def test_input_minimal_gets_defaults() -> None:
    item = decode_input(b'{"kind":"new","event":' + PDU + b"}")
    assert item.kind == "new"
    assert bytes(item.event) == PDU  # kept byte for byte
    assert item.room_version is None
    assert item.origin is None
    assert item.has_state is False
    assert item.state_event_ids == []
    assert item.send_as_server == ""
    assert item.transaction_id is None


def test_input_round_trip() -> None:
    item = InputRoomEvent(
        kind="old",
        event=msgspec.Raw(PDU),
        room_version="10",
        origin="example.org",
        has_state=True,
        state_event_ids=["$a", "$b"],
        send_as_server="example.org",
        transaction_id="txn1",
    )
    decoded = decode_input(encode_input(item))
    assert decoded.kind == "old" and bytes(decoded.event) == PDU
    assert (decoded.room_version, decoded.origin, decoded.has_state) == ("10", "example.org", True)
    assert decoded.state_event_ids == ["$a", "$b"]
    assert (decoded.send_as_server, decoded.transaction_id) == ("example.org", "txn1")


@pytest.mark.parametrize(
    ("raw", "message", "field"),
    [
        (b'{"kind":5,"event":{}}', "Expected `str`, got `int` - at `$.kind`", "$.kind"),
        (
            b'{"kind":"newest","event":{}}',
            "Invalid enum value 'newest' - at `$.kind`",
            "$.kind",
        ),
        (b'{"kind":"new"}', "Object missing required field `event` - at `$`", "$"),
        (
            b'{"kind":"new","event":{},"state_event_ids":[1]}',
            "Expected `str`, got `int` - at `$.state_event_ids[0]`",
            "$.state_event_ids[0]",
        ),
        (
            b'{"kind":"new","event":{},"room_version":10}',
            "Expected `str | null`, got `int` - at `$.room_version`",
            "$.room_version",
        ),
    ],
)
def test_input_errors_name_the_field(raw: bytes, message: str, field: str) -> None:
    with pytest.raises(SchemaError) as info:
        decode_input(raw)
    assert str(info.value) == message
    assert info.value.field == field


def test_input_not_json() -> None:
    with pytest.raises(SchemaError, match="input is not valid JSON"):
        decode_input(b"{nope")


@given(st.binary(max_size=200))
def test_arbitrary_bytes_raise_only_schema_error(raw: bytes) -> None:
    for decode in (decode_input, decode_output, decode_dead_letter):
        with contextlib.suppress(SchemaError):
            decode(raw)


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10),
    lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=8), c, max_size=3),
    max_leaves=10,
)


@given(
    st.dictionaries(
        st.sampled_from(["kind", "event", "type", "room_id", "stream_position", "part", "reason"]),
        _json,
    )
)
def test_arbitrary_json_raises_only_schema_error(value: dict[str, Any]) -> None:
    raw = json.dumps(value).encode()
    for decode in (decode_input, decode_output, decode_dead_letter):
        with contextlib.suppress(SchemaError):
            decode(raw)


# --- Outputs: the shapes the roomserver's output builder writes ---------------------------


def test_new_room_event_as_published() -> None:
    message = {
        "type": "new_room_event",
        "room_id": "!r:example.org",
        "stream_position": 7,
        "event": msgspec.Raw(PDU),
        "room_version": "10",
        "latest_event_ids": ["$e"],
        "adds_state_event_ids": ["$s1"],
        "removes_state_event_ids": ["$s0"],
        "last_sent_event_id": None,
        "rewrites_state": False,
        "history_visibility": "joined",
        "send_as_server": "example.org",
        "transaction_id": None,
        "part": 1,
        "parts": 1,
    }
    decoded = decode_output(msgspec.json.encode(message))
    assert isinstance(decoded, NewRoomEvent)
    assert bytes(decoded.event) == PDU
    assert decoded.stream_position == 7
    assert decoded.adds_state_event_ids == ["$s1"]
    assert decoded.removes_state_event_ids == ["$s0"]
    assert decoded.history_visibility == "joined"
    assert decode_output(encode_output(decoded)) == decoded


@pytest.mark.parametrize(
    ("message", "cls"),
    [
        (
            {"type": "old_room_event", "room_id": "!r:x", "stream_position": 1,
             "event": msgspec.Raw(PDU), "room_version": "10", "history_visibility": "shared"},
            OldRoomEvent,
        ),
        (
            {"type": "new_invite_event", "room_id": "!r:x", "stream_position": 2,
             "event": msgspec.Raw(PDU), "room_version": "10", "target_user_id": "@b:x"},
            NewInviteEvent,
        ),
        (
            {"type": "retire_invite_event", "room_id": "!r:x", "stream_position": 3,
             "event_id": "$inv", "target_user_id": "@b:x", "retired_by_event_id": "$join",
             "membership": "join"},
            RetireInviteEvent,
        ),
        (
            {"type": "redacted_event", "room_id": "!r:x", "stream_position": 4,
             "redacted_event_id": "$e", "redacted_because": msgspec.Raw(PDU)},
            RedactedEvent,
        ),
    ],
)
def test_other_outputs_as_published(message: dict[str, Any], cls: type) -> None:
    decoded = decode_output(msgspec.json.encode(message))
    assert isinstance(decoded, cls)
    assert decoded.room_id == "!r:x"
    assert json.loads(encode_output(decoded)) == json.loads(msgspec.json.encode(message))


def test_output_errors() -> None:
    with pytest.raises(SchemaError) as info:
        decode_output(b'{"type":"something_else","room_id":"!r","stream_position":1}')
    assert str(info.value) == "Invalid value 'something_else' - at `$.type`"
    with pytest.raises(SchemaError) as info:
        decode_output(b'{"type":"redacted_event","room_id":"!r","stream_position":"1"}')
    assert info.value.field == "$.stream_position"


# --- Dead letters ---------------------------------------------------------------------------


def test_dead_letter_keeps_original_bytes() -> None:
    original = b"\x00\xffnot json"
    record = DeadLetter.of(
        original,
        reason=DeadLetterReason.MALFORMED,
        message="input is not valid JSON",
        topic="roomserver.input",
        partition=3,
        offset=42,
    )
    decoded = decode_dead_letter(encode_dead_letter(record))
    assert decoded == record
    assert decoded.original_bytes() == original
    assert decoded.reason == "malformed"
    assert base64.b64decode(json.loads(encode_dead_letter(record))["original"]) == original
    assert json.loads(encode_dead_letter(record))["type"] == "dead_letter"
