"""Every event of the conformance rooms gets the reference homeserver's answer: rejected or
not, the state before it and the state after it (one room per room version 1–12)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conformance.rooms import ROOMS, Room, check_room, describe, rooms_in, unpack_large_set

REFERENCE_ROOMS = rooms_in(ROOMS)


def test_all_twelve_room_versions_are_vendored() -> None:
    assert len(REFERENCE_ROOMS) == 12
    assert all(room.expected.exists() for room in REFERENCE_ROOMS)


@pytest.mark.parametrize("room", REFERENCE_ROOMS, ids=lambda room: room.name)
def test_room_agrees_with_the_reference(room: Room, tmp_path: Path) -> None:
    found = check_room(room, tmp_path)
    assert not found, describe(room.name, found, len(room.lines()))


def test_large_set_agrees_with_the_reference(tmp_path: Path) -> None:
    """240 more rooms (20 per room version, 36,000 events) from another seed."""
    rooms = rooms_in(unpack_large_set(tmp_path / "data"))
    assert len(rooms) == 240
    failures = []
    for room in rooms:
        found = check_room(room, tmp_path)
        if found:
            failures.append(describe(room.name, found, len(room.lines())))
        (tmp_path / f"{room.name}.db").unlink()
    assert not failures, f"{len(failures)} of 240 rooms disagree:\n" + "\n".join(failures)
