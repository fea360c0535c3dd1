"""Step 1: bytes to an event — decode the input message, find the room version, decode and
validate the PDU for that version and compute its event ID.

A room's version comes from its create event (stored, or earlier in the same batch); the
input's `room_version` hint is used only to decode an event of a room not established yet,
which the next step then dead-letters or checks (see `rooms.py`). Whatever fails here is a
`DeadLetterError` naming the field.
"""

from __future__ import annotations

from typing import Any

import msgspec

from processor.errors import InvalidEvent, SchemaError, UnknownRoomVersion
from processor.matrix.pdu import decode_pdu
from processor.matrix.room_versions import RoomVersion, room_version, room_version_of_create
from processor.pipeline.caches import RoomCache
from processor.pipeline.types import DeadLetterError, Decoded, InputMessage
from processor.storage.base import Batch
from schemas.codecs import decode_input
from schemas.dead_letter import DeadLetterReason
from schemas.errors import EventTooLarge
from schemas.input import InputRoomEvent


class _PeekPDU(msgspec.Struct):
    """Just enough of a PDU to find its room version before decoding it for real."""

    type: Any = None
    state_key: Any = None
    room_id: Any = None
    #: Read only for a create event: left raw, so the others' content is skipped, not built.
    content: msgspec.Raw = msgspec.Raw(b"null")


_peek_decoder = msgspec.json.Decoder(_PeekPDU)


class BatchDecoder:
    """Decodes the messages of one batch; remembers the versions of the rooms whose create
    events the batch holds, for the events after them in the same batch."""

    def __init__(self, cache: RoomCache, batch: Batch) -> None:
        self._cache = cache
        self._batch = batch
        self._created: dict[str, RoomVersion] = {}

    def decode(self, message: InputMessage) -> Decoded | DeadLetterError:
        try:
            try:
                item = decode_input(message.value)
            except SchemaError as e:
                raise DeadLetterError(DeadLetterReason.MALFORMED, str(e)) from e
            version = self._room_version(item)
            try:
                event = decode_pdu(item.event, version, root="$.event")
            except InvalidEvent as e:
                raise DeadLetterError(_invalid_reason(e), str(e)) from e
        except DeadLetterError as e:
            return e
        if event.type == "m.room.create" and event.state_key == "":
            self._created.setdefault(event.room_id, version)
        return Decoded(item, event, version)

    def _room_version(self, item: InputRoomEvent) -> RoomVersion:
        try:
            peek = _peek_decoder.decode(item.event)
        except (msgspec.DecodeError, msgspec.ValidationError) as e:
            raise DeadLetterError(DeadLetterReason.MALFORMED, f"event: {e}") from e
        if peek.type == "m.room.create" and peek.state_key == "":
            try:
                content = msgspec.json.decode(peek.content)
            except msgspec.DecodeError as e:
                raise DeadLetterError(DeadLetterReason.MALFORMED, f"event: {e}") from e
            try:
                return room_version_of_create(content)
            except InvalidEvent as e:
                raise DeadLetterError(DeadLetterReason.UNKNOWN_ROOM_VERSION, str(e)) from e
        if not isinstance(peek.room_id, str):
            raise DeadLetterError(
                DeadLetterReason.INVALID_EVENT, "Expected `str` - at `$.event.room_id`"
            )
        if "\x00" in peek.room_id:
            # Looked up as SQL text, which cannot hold it (see `decode_pdu`).
            raise DeadLetterError(
                DeadLetterReason.INVALID_EVENT,
                "Expected a string without U+0000 - at `$.event.room_id`",
            )
        room = self._cache.room(self._batch, peek.room_id)
        if room is not None:
            return room.version
        created = self._created.get(peek.room_id)
        if created is not None:
            return created
        if item.room_version is None:
            raise DeadLetterError(
                DeadLetterReason.UNKNOWN_ROOM,
                f"room {peek.room_id} is not known and the input names no room_version",
            )
        try:
            return room_version(item.room_version)
        except InvalidEvent as e:
            raise DeadLetterError(DeadLetterReason.UNKNOWN_ROOM_VERSION, str(e)) from e


def _invalid_reason(error: InvalidEvent) -> DeadLetterReason:
    if isinstance(error, UnknownRoomVersion):
        return DeadLetterReason.UNKNOWN_ROOM_VERSION
    if isinstance(error, EventTooLarge):
        # Over 65,536 bytes, or an identifier over 255 bytes ("Size limits").
        return DeadLetterReason.OVERSIZED_EVENT
    return DeadLetterReason.INVALID_EVENT
