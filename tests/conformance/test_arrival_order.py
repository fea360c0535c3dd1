"""The state before and after every event, and its rejection, do not depend on the arrival
order: the same DAG in other valid orders (every event after its prev and auth events) gets
the reference's answers. (Soft fail may differ; it is not part of the answer.)"""

from __future__ import annotations

import random
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conformance.arrangements import another_arrival_order
from tests.conformance.rooms import ROOMS, Room, check_room, describe, rooms_in

REFERENCE_ROOMS = rooms_in(ROOMS)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(room=st.sampled_from(REFERENCE_ROOMS), seed=st.integers(0, 2**32 - 1),
       batch_size=st.sampled_from([1, 7, 500]))
def test_any_valid_arrival_order_gives_the_same_answers(
    room: Room, seed: int, batch_size: int
) -> None:
    lines = another_arrival_order(room.lines(), random.Random(seed))
    with tempfile.TemporaryDirectory() as workdir:
        found = check_room(room, Path(workdir), lines=lines, batch_size=batch_size)
    assert not found, describe(room.name, found, len(lines))
