"""The checks on an untrusted PDU's fields that its format Struct cannot express: identifier
grammar and byte lengths, U+0000 in identifiers, integers in the canonical JSON range, and
the precise error for an envelope the fast path refused. Every failure is an `InvalidEvent`
naming the field (under the caller's `root`, e.g. ``$.event``)."""

from __future__ import annotations

from typing import Any, Final

import msgspec

from processor.matrix.canonical_json import (
    MAX_SAFE_INTEGER,
    MIN_SAFE_INTEGER,
    check_canonical_value,
)
from processor.matrix.events import Event
from schemas.errors import EventTooLarge, InvalidEvent
from schemas.pdu import MAX_ID_BYTES, PduV1, PduV12

_LEAVES: Final = (str, bool, type(None))


def ints_in_range(value: object) -> bool:
    """True if every integer in `value` is within ±(2**53 - 1). Floats were already trapped
    by the decoder's float hook; the error path re-walks with `check_canonical_value` for a
    precise message."""
    t = type(value)
    if t is int:
        return MIN_SAFE_INTEGER <= value <= MAX_SAFE_INTEGER  # type: ignore[operator]
    if t is dict:
        for item in value.values():  # type: ignore[attr-defined]
            if type(item) in _LEAVES:
                continue
            if not ints_in_range(item):
                return False
        return True
    if t is list:
        for item in value:  # type: ignore[attr-defined]
            if type(item) in _LEAVES:
                continue
            if not ints_in_range(item):
                return False
        return True
    return True


def reroot(message: str, root: str) -> tuple[str, str | None]:
    """Split msgspec's "... - at `$.x`" into (message, field) with `$` replaced by `root`."""
    head, sep, tail = message.rpartition(" - at `")
    if not sep:
        return message, root
    field = tail.rstrip("`")
    if root != "$":
        field = root + field[1:]
    return head, field


def invalid(
    message: str, field: str, root: str, error: type[InvalidEvent] = InvalidEvent
) -> InvalidEvent:
    if root != "$":
        field = root + field[1:]
    return error(message, field=field)


def check_id_bytes(value: str, name: str, root: str) -> None:
    # 255 *bytes*: a str of at most 63 characters cannot exceed it in UTF-8.
    if len(value) > 63 and len(value.encode("utf-8", "surrogatepass")) > MAX_ID_BYTES:
        raise invalid(
            f"Expected at most {MAX_ID_BYTES} bytes", f"$.{name}", root, EventTooLarge
        )


def check_event_ids(ids: tuple[str, ...], name: str, root: str) -> None:
    for index, event_id in enumerate(ids):
        if event_id[:1] != "$":
            raise invalid("Expected an event ID starting with `$`", f"$.{name}[{index}]", root)
        if len(event_id) > 63:
            check_id_bytes(event_id, f"{name}[{index}]", root)


def check_no_nul(event: Event, root: str) -> None:
    """Identifiers are stored and looked up as SQL text, which cannot hold U+0000
    (PostgreSQL refuses it): an event whose IDs, type or state key contain it is invalid."""
    named: list[tuple[str, str | None]] = [
        ("$.room_id", event.room_id),
        ("$.sender", event.sender),
        ("$.type", event.type),
        ("$.state_key", event.state_key),
        ("$.event_id", event.event_id),
        ("$.redacts" if "redacts" in event.pdu else "$.content.redacts", event.redacts),
    ]
    named += [(f"$.prev_events[{i}]", e) for i, e in enumerate(event.prev_event_ids)]
    named += [(f"$.auth_events[{i}]", e) for i, e in enumerate(event.auth_event_ids)]
    for field, value in named:
        if value is not None and "\x00" in value:
            raise invalid("Expected a string without U+0000", field, root)


def check_envelope(
    data: bytes,
    pdu: dict[str, Any],
    envelope_decoder: msgspec.json.Decoder[Any],
    room_id_has_server: bool,
    root: str,
    strict: bool,
) -> None:
    """Raise the precise `InvalidEvent` for a PDU the fast path refused (given its envelope
    decoder and whether room IDs carry a server name), or return if the refusal was only the
    fast path's caution (e.g. a 100-character ID within 255 bytes)."""
    try:
        envelope = envelope_decoder.decode(data)
    except msgspec.ValidationError as e:
        message, field = reroot(str(e), root)
        raise InvalidEvent(message, field=field) from None
    content = pdu["content"]
    if type(content) is not dict:
        raise invalid(f"Expected `object`, got `{json_type(content)}`", "$.content", root)
    unsigned = pdu.get("unsigned", {})
    if type(unsigned) is not dict:
        raise invalid(f"Expected `object`, got `{json_type(unsigned)}`", "$.unsigned", root)
    sender = envelope.sender
    # Appendix "User Identifiers": @localpart:domain.
    if sender[:1] != "@" or sender.find(":") < 2 or sender[-1] == ":":
        raise invalid("Expected a user ID of the form `@localpart:domain`", "$.sender", root)
    check_id_bytes(sender, "sender", root)
    check_id_bytes(envelope.type, "type", root)
    if isinstance(envelope.state_key, str):
        check_id_bytes(envelope.state_key, "state_key", root)
    if strict and (
        envelope.depth > MAX_SAFE_INTEGER
        or not MIN_SAFE_INTEGER <= envelope.origin_server_ts <= MAX_SAFE_INTEGER
    ):
        check_canonical_value(pdu, root=root)
    if isinstance(envelope, PduV1):
        if envelope.event_id[:1] != "$":
            raise invalid("Expected an event ID starting with `$`", "$.event_id", root)
        check_id_bytes(envelope.event_id, "event_id", root)
        check_event_ids(tuple(ref[0] for ref in envelope.prev_events), "prev_events", root)
        check_event_ids(tuple(ref[0] for ref in envelope.auth_events), "auth_events", root)
    else:
        check_event_ids(tuple(envelope.prev_events), "prev_events", root)
        check_event_ids(tuple(envelope.auth_events), "auth_events", root)
    if isinstance(envelope, PduV12) and envelope.type == "m.room.create":
        if "room_id" in pdu:
            raise invalid(
                "An m.room.create event in room version 12 must not have a room_id (the "
                "room ID is derived from its reference hash, MSC4291)",
                "$.room_id",
                root,
            )
        return
    if isinstance(envelope.room_id, str):
        check_room_id(envelope.room_id, room_id_has_server, root)
    else:
        raise invalid("Object missing required field `room_id`", "$", root)


def check_room_id(room_id: str, needs_server: bool, root: str) -> str:
    # v1-v11 room IDs are `!opaque:server`; v12 room IDs are `!` + a hash (MSC4291).
    if room_id[:1] != "!" or (needs_server and room_id.find(":") < 2):
        expected = "`!opaque:domain`" if needs_server else "starting with `!`"
        raise invalid(f"Expected a room ID {expected}", "$.room_id", root)
    if len(room_id) > 63:
        check_id_bytes(room_id, "room_id", root)
    return room_id


def json_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float"
    if isinstance(value, str):
        return "str"
    if isinstance(value, list):
        return "array"
    return "object"

