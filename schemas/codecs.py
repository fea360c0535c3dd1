"""Decoders and encoders for the wire messages, built once at module level.

Decoding untrusted bytes raises only `SchemaError`, whose message names the field, in
msgspec's words: "Expected `str`, got `int` - at `$.kind`". That includes bytes that are not
UTF-8 and JSON nested deeper than `schemas.untrusted.MAX_JSON_DEPTH`, checked before msgspec
sees them (it would skip the first and recurse into the second). Encoding a message built in
code cannot fail on a well-typed Struct.

=====================  =====================================  ============================
message                decode                                 encode
=====================  =====================================  ============================
input room event       `decode_input`                         `encode_input`
output event (union)   `decode_output`                        `encode_output`
dead-letter record     `decode_dead_letter`                   `encode_dead_letter`
=====================  =====================================  ============================
"""

from __future__ import annotations

from typing import Any

import msgspec

from schemas.dead_letter import DeadLetter
from schemas.errors import SchemaError
from schemas.input import InputRoomEvent
from schemas.output import OutputEvent
from schemas.untrusted import check_json_bytes

__all__ = [
    "decode_dead_letter",
    "decode_input",
    "decode_output",
    "encode_dead_letter",
    "encode_input",
    "encode_output",
]

_input_decoder = msgspec.json.Decoder(InputRoomEvent)
_output_decoder: msgspec.json.Decoder[OutputEvent] = msgspec.json.Decoder(OutputEvent)
_dead_letter_decoder = msgspec.json.Decoder(DeadLetter)
_encoder = msgspec.json.Encoder()


def _schema_error(e: msgspec.MsgspecError, what: str) -> SchemaError:
    text = str(e)
    if isinstance(e, msgspec.ValidationError):
        field = text.rsplit(" - at `", 1)[1].rstrip("`") if " - at `" in text else "$"
        return SchemaError(text, field=field)
    return SchemaError(f"{what} is not valid JSON: {text}", field="$")


def _decode(decoder: msgspec.json.Decoder[Any], data: bytes, what: str) -> Any:
    check_json_bytes(data, what)
    try:
        return decoder.decode(data)
    except msgspec.MsgspecError as e:
        raise _schema_error(e, what) from None
    except (UnicodeDecodeError, RecursionError) as e:
        # Not reached after check_json_bytes; kept so that no input can ever raise these.
        raise SchemaError(f"{what} cannot be decoded: {e}", field="$") from None


def decode_input(data: bytes) -> InputRoomEvent:
    """An `InputRoomEvent` from the input topic's message value. Its `event` stays raw, but
    is known to be UTF-8 and nested within the limit (the whole message was checked)."""
    item: InputRoomEvent = _decode(_input_decoder, data, "input")
    if item.state_event_ids and b"\\u0000" in data:
        for index, event_id in enumerate(item.state_event_ids):
            if "\x00" in event_id:
                raise SchemaError(
                    "Expected an event ID without U+0000",
                    field=f"$.state_event_ids[{index}]",
                )
    return item


def encode_input(item: InputRoomEvent) -> bytes:
    return _encoder.encode(item)


def decode_output(data: bytes) -> OutputEvent:
    """One output event (any member of the union, chosen by its ``type``)."""
    output: OutputEvent = _decode(_output_decoder, data, "output")
    return output


def encode_output(message: OutputEvent) -> bytes:
    return _encoder.encode(message)


def decode_dead_letter(data: bytes) -> DeadLetter:
    record: DeadLetter = _decode(_dead_letter_decoder, data, "dead-letter record")
    return record


def encode_dead_letter(record: DeadLetter) -> bytes:
    return _encoder.encode(record)
