"""Split `new_room_event`s (schemas.output docstring): a state-rewriting join into a big room
is published as parts 1..N sharing one stream position; `reassemble` rebuilds it."""

from __future__ import annotations

import msgspec
import pytest

from schemas.codecs import decode_output, encode_output
from schemas.output import NewRoomEvent, reassemble

EVENT = msgspec.Raw(b'{"type":"m.room.member"}')
NULL = msgspec.Raw(b"null")


def _split(removes: list[str], adds: list[str], per_part: int) -> list[NewRoomEvent]:
    """Slices the way the module docstring describes: removes first, then adds."""
    tagged = [("r", i) for i in removes] + [("a", i) for i in adds]
    slices = [tagged[i : i + per_part] for i in range(0, len(tagged), per_part)] or [[]]
    return [
        NewRoomEvent(
            room_id="!big:example.org",
            stream_position=9,
            event=EVENT if number == 1 else NULL,
            room_version="10",
            latest_event_ids=["$join"],
            adds_state_event_ids=[i for kind, i in chunk if kind == "a"],
            removes_state_event_ids=[i for kind, i in chunk if kind == "r"],
            rewrites_state=True,
            part=number,
            parts=len(slices),
        )
        for number, chunk in enumerate(slices, start=1)
    ]


def test_fifty_thousand_member_join_fits_and_reassembles() -> None:
    adds = [f"${n:043d}" for n in range(50_000)]
    removes = [f"$old{n:040d}" for n in range(3)]
    parts = _split(removes, adds, per_part=20_000)
    assert len(parts) == 3
    max_message_bytes = 1_048_576
    wire = [encode_output(p) for p in parts]
    assert all(len(message) < max_message_bytes for message in wire)
    decoded = [decode_output(message) for message in wire]
    assert all(isinstance(p, NewRoomEvent) for p in decoded)
    whole = reassemble([p for p in decoded if isinstance(p, NewRoomEvent)])
    assert whole.adds_state_event_ids == adds
    assert whole.removes_state_event_ids == removes
    assert (whole.part, whole.parts) == (1, 1)
    assert bytes(whole.event) == bytes(EVENT)
    # Continuation parts carry no event.
    assert bytes(decoded[1].event) == b"null"  # type: ignore[union-attr]


def test_unsplit_message_reassembles_to_itself() -> None:
    [single] = _split(["$r"], ["$a"], per_part=10)
    assert reassemble([single]) is single


def test_missing_or_mixed_parts_are_refused() -> None:
    parts = _split([], [f"$a{n}" for n in range(6)], per_part=2)
    with pytest.raises(ValueError, match=r"expected parts 1\.\.3"):
        reassemble([parts[0], parts[2]])
    other = msgspec.structs.replace(parts[1], stream_position=10)
    with pytest.raises(ValueError, match="stream position 10"):
        reassemble([parts[0], other, parts[2]])
    with pytest.raises(ValueError):
        reassemble([])
