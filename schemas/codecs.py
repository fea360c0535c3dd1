"""Decoders and encoders for the wire messages, built once at module level.

Decoding untrusted bytes raises only `SchemaError`, whose message names the field, in
msgspec's words: "Expected `str`, got `int` - at `$.kind`".
"""

from __future__ import annotations

import msgspec

from schemas.errors import SchemaError
from schemas.input import InputRoomEvent

__all__ = ["decode_input", "encode_input"]

_input_decoder = msgspec.json.Decoder(InputRoomEvent)
_encoder = msgspec.json.Encoder()


def decode_input(data: bytes) -> InputRoomEvent:
    try:
        return _input_decoder.decode(data)
    except msgspec.ValidationError as e:
        text = str(e)
        field = text.rsplit(" - at `", 1)[1].rstrip("`") if " - at `" in text else None
        raise SchemaError(text, field=field) from None
    except msgspec.DecodeError as e:
        raise SchemaError(f"input is not valid JSON: {e}") from None


def encode_input(item: InputRoomEvent) -> bytes:
    return _encoder.encode(item)
