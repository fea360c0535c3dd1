"""Untrusted bytes: not UTF-8, or nested deeper than the limit, anywhere in a
message — a skipped field, the raw event — raise `SchemaError` naming the field, never
UnicodeDecodeError or RecursionError; pass-through fields are bounded."""

from __future__ import annotations

import pytest

from processor.matrix.pdu import decode_pdu
from processor.matrix.room_versions import room_version
from schemas.codecs import decode_dead_letter, decode_input, decode_output
from schemas.errors import InvalidEvent, SchemaError
from schemas.untrusted import MAX_JSON_DEPTH

EVENT = b'{"type":"m.room.message","content":{"body":"hi"},"room_id":"!r:example.org"}'


def _nested(levels: int) -> bytes:
    """An input whose value at `$.x` makes the whole message `levels` deep."""
    inner = levels - 1
    return b'{"kind":"new","event":{},"x":' + b"[" * inner + b"]" * inner + b"}"


@pytest.mark.parametrize(
    ("data", "field"),
    [
        (b'{"kind":"new","event":{"type":"\xff"}}', "$.event.type"),
        (b'{"kind":"new","event":{"content":{"b":"\xed\xa0\x80"}}}', "$.event.content.b"),
        (b'{"kind":"new","event":{},"unknown":["a","\xc0\xaf"]}', "$.unknown[1]"),
    ],
)
def test_bytes_that_are_not_utf8_name_the_field(data: bytes, field: str) -> None:
    with pytest.raises(SchemaError, match="UTF-8") as error:
        decode_input(data)
    assert error.value.field == field


@pytest.mark.parametrize("levels", [MAX_JSON_DEPTH + 1, 990, 100_000])
def test_deep_nesting_is_refused(levels: int) -> None:
    with pytest.raises(SchemaError, match="deeper than 128") as error:
        decode_input(_nested(levels))
    assert error.value.field is not None and error.value.field.startswith("$.x[0]")


def test_nesting_up_to_the_limit_is_accepted() -> None:
    assert decode_input(_nested(MAX_JSON_DEPTH)).kind == "new"
    # Brackets in strings are not nesting.
    assert decode_input(b'{"kind":"new","event":{"b":"' + b"[" * 500 + b'"}}').kind == "new"


@pytest.mark.parametrize("decode", [decode_output, decode_dead_letter])
def test_every_decoder_refuses_them(decode: object) -> None:
    for data in (b'{"type":"\xff"}', b"[" * 5000 + b"]" * 5000):
        with pytest.raises(SchemaError):
            decode(data)  # type: ignore[operator]


@pytest.mark.parametrize("name", ["transaction_id", "send_as_server", "origin"])
def test_pass_through_fields_are_bounded(name: str) -> None:
    def item(value: str) -> bytes:
        return b'{"kind":"new","event":' + EVENT + f',"{name}":"{value}"}}'.encode()

    assert getattr(decode_input(item("x" * 255)), name) == "x" * 255
    with pytest.raises(SchemaError, match="length <= 255") as error:
        decode_input(item("x" * 1_000_000))
    assert error.value.field == f"$.{name}"


def test_state_event_ids_with_nul_are_refused() -> None:
    with pytest.raises(SchemaError) as error:
        decode_input(b'{"kind":"new","event":{},"state_event_ids":["$a","$b\\u0000"]}')
    assert error.value.field == "$.state_event_ids[1]"


@pytest.mark.parametrize(
    "data",
    [
        b'{"type":"m.room.message","x":"\xff"}',
        b'{"type":"m.room.message","x":' + b"[" * 5000 + b"]" * 5000 + b"}",
    ],
)
def test_decode_pdu_raises_only_invalid_event(data: bytes) -> None:
    for version in ("1", "10"):
        with pytest.raises(InvalidEvent) as error:
            decode_pdu(data, room_version(version), root="$.event")
        assert error.value.field is not None and error.value.field.startswith("$.event")


def test_decode_pdu_refuses_nul_in_identifiers() -> None:
    """Identifiers are SQL text, which cannot hold U+0000 (PostgreSQL refuses it); content
    is stored as bytes, where it may."""
    pdu = {
        "type": "m.room.topic", "state_key": "", "sender": "@a:x", "room_id": "!r:x",
        "content": {"topic": "\x00 is fine here"}, "prev_events": [], "auth_events": [],
        "depth": 1, "origin_server_ts": 1, "hashes": {"sha256": "x"}, "signatures": {},
    }
    version = room_version("10")
    assert decode_pdu(pdu, version).content["topic"].startswith("\x00")
    with pytest.raises(InvalidEvent) as error:
        decode_pdu({**pdu, "state_key": "a\x00b"}, version)
    assert error.value.field == "$.state_key"
