"""Kinds do not change answers: any subset of a room's events sent first as outliers (each
after its auth events), then the whole room as `new`, gives exactly the answers of the plain
run — including for outliers the auth rules reject, whose state becomes known when they
arrive as `new`."""

from __future__ import annotations

import random
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conformance.arrangements import with_outliers_first
from tests.conformance.rooms import ROOMS, Room, check_room, describe, rooms_in

REFERENCE_ROOMS = rooms_in(ROOMS)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    room=st.sampled_from(REFERENCE_ROOMS),
    seed=st.integers(0, 2**32 - 1),
    fraction=st.sampled_from([0.1, 0.3, 0.6, 1.0]),
)
def test_outliers_first_give_the_plain_answers(room: Room, seed: int, fraction: float) -> None:
    lines = with_outliers_first(room.lines(), random.Random(seed), fraction)
    with tempfile.TemporaryDirectory() as workdir:
        found = check_room(room, Path(workdir), lines=lines)
    assert not found, describe(room.name, found, len(lines))


def test_a_rejected_outlier_gets_its_state_when_it_arrives_as_new(tmp_path: Path) -> None:
    """The case that lost a room: every outlier of room v4, rejected ones included."""
    room = next(r for r in REFERENCE_ROOMS if r.name.endswith("-v4"))
    lines = with_outliers_first(room.lines(), random.Random(0), 1.0)
    found = check_room(room, tmp_path, lines=lines)
    assert not found, describe(room.name, found, len(lines))
