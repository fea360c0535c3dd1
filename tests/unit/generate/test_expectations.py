"""The outcome the generator intends for each event is the one the authorization rules give.

The server-server API, "Checks performed on receipt of a PDU": an event is rejected if it
fails the rules against its own auth events (step 4) or against the state before it (step
5); it is soft-failed if it passes those but fails against the room's current state (step 6).
Each generated event is checked with `processor.matrix.auth.check_auth` against the state the
generator built it on (the state before it) and the room's current state at that point.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping

import pytest

from processor.errors import AuthError
from processor.matrix.auth import auth_types_for_event, check_auth, check_auth_events_shape
from processor.matrix.events import Event
from processor.matrix.room_versions import RoomVersion
from tests.unit.generate.conftest import Traced, traced


def _passes(event: Event, state: Mapping[tuple[str, str], Event], version: RoomVersion) -> bool:
    try:
        check_auth(event, state, version)
    except AuthError:
        return False
    return True


def _state(ids: Mapping[tuple[str, str], str], events: Mapping[str, Event]) -> dict[
    tuple[str, str], Event
]:
    return {key: events[event_id] for key, event_id in ids.items()}


def _check_outcomes(t: Traced) -> Counter[str]:
    version = t.version
    seen: Counter[str] = Counter()
    for g in t.generated:
        event = t.events[g.event_id]
        assert g.state_before is not None and g.current_state is not None
        before = _state(g.state_before, t.events)
        current = _state(g.current_state, t.events)
        auth_events = [t.events[a] for a in event.auth_event_ids]
        own = {(e.type, e.state_key or ""): e for e in auth_events}
        if event.type == "m.room.create":
            own = {}
        elif ("m.room.create", "") in before:
            # v12: the create event is implied by the room ID, never listed (MSC4291).
            own.setdefault(("m.room.create", ""), before[("m.room.create", "")])
        # The auth events are the selection's picks from the state before the event.
        picked = [before[k].event_id for k in auth_types_for_event(event, version) if k in before]
        assert sorted(picked) == sorted(event.auth_event_ids), g.event_id

        passes_before = _passes(event, before, version)
        if g.outcome == "rejected":
            assert not passes_before, f"{g.kind} {g.event_id} was meant to be rejected"
        else:
            check_auth_events_shape(event, auth_events, version)
            assert _passes(event, own, version), f"{g.kind} {g.event_id}: own auth events"
            assert passes_before, f"{g.kind} {g.event_id}: state before"
            passes_current = _passes(event, current, version)
            if g.outcome == "accepted":
                assert passes_current, f"{g.kind} {g.event_id}: current state"
            else:
                assert not passes_current, f"{g.kind} {g.event_id} was meant to soft-fail"
        seen[g.outcome] += 1
    return seen


def test_intended_outcomes_are_the_auth_rules_outcomes(traffic_by_version: Traced) -> None:
    seen = _check_outcomes(traffic_by_version)
    assert seen["accepted"] > 0 and seen["rejected"] > 0


@pytest.mark.parametrize("seed", [3, 4])
def test_intended_outcomes_in_larger_rooms(seed: int) -> None:
    """Longer histories (more forks, more rule changes); soft fails appear among them."""
    seen: Counter[str] = Counter()
    for version_id in ("1", "6", "10", "12"):
        seen += _check_outcomes(traced(3, 1000, version_id, seed))
    assert seen["soft_failed"] > 0
