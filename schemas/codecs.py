"""Decoders and encoders for the wire messages, built once at module level.

Decoding untrusted bytes raises only `SchemaError`, whose message names the field, in
msgspec's words: "Expected `str`, got `int` - at `$.kind`". Encoding a message built in code
cannot fail on a well-typed Struct.

=====================  =====================================  ============================
message                decode                                 encode
=====================  =====================================  ============================
input room event       `decode_input`                         `encode_input`
output event (union)   `decode_output`                        `encode_output`
dead-letter record     `decode_dead_letter`                   `encode_dead_letter`
=====================  =====================================  ============================
"""

from __future__ import annotations

import msgspec

from schemas.dead_letter import DeadLetter
from schemas.errors import SchemaError
from schemas.input import InputRoomEvent
from schemas.output import OutputEvent

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


def decode_input(data: bytes) -> InputRoomEvent:
    """An `InputRoomEvent` from the input topic's message value."""
    try:
        return _input_decoder.decode(data)
    except msgspec.MsgspecError as e:
        raise _schema_error(e, "input") from None


def encode_input(item: InputRoomEvent) -> bytes:
    return _encoder.encode(item)


def decode_output(data: bytes) -> OutputEvent:
    """One output event (any member of the union, chosen by its ``type``)."""
    try:
        return _output_decoder.decode(data)
    except msgspec.MsgspecError as e:
        raise _schema_error(e, "output") from None


def encode_output(message: OutputEvent) -> bytes:
    return _encoder.encode(message)


def decode_dead_letter(data: bytes) -> DeadLetter:
    try:
        return _dead_letter_decoder.decode(data)
    except msgspec.MsgspecError as e:
        raise _schema_error(e, "dead-letter record") from None


def encode_dead_letter(record: DeadLetter) -> bytes:
    return _encoder.encode(record)
