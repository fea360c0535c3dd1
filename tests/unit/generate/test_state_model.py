"""The state the generator builds each event on is the state the room's DAG defines.

Room version pages, "State resolution": the state before an event is the resolution of the
states after its `prev_events`. The generator's branches conflict, and it resolves their
states at each merge. This replays the DAG through `processor.matrix.state_res.resolve_state`
(v1, v2, v2.1) on its own and checks the generator's state before every event, so the
intended outcomes hold for a roomserver that resolves state the same way, and the keys the
generator notes as conflicted at each merge. The room's current state, against which soft
failures are judged (server-server API "Checks performed on receipt of a PDU", step 6), is
likewise the resolution of the states after the forward extremities.
"""

from __future__ import annotations

import pytest

from processor.matrix.state_res import InMemoryEventSource, StateResEvent, resolve_state
from processor.nids import (
    PREASSIGNED_EVENT_TYPE_NIDS,
    PREASSIGNED_STATE_KEY_NIDS,
    EventNID,
    EventTypeNID,
    StateKeyNID,
    StateKeyTuple,
)
from tests.unit.generate.conftest import ALL_VERSIONS, traced


class _Nids:
    def __init__(self) -> None:
        self.types: dict[str, EventTypeNID] = dict(PREASSIGNED_EVENT_TYPE_NIDS)
        self.state_keys: dict[str, StateKeyNID] = dict(PREASSIGNED_STATE_KEY_NIDS)
        self.events: dict[str, EventNID] = {}
        self.event_ids: dict[EventNID, str] = {}
        self.keys: dict[StateKeyTuple, tuple[str, str]] = {}

    def key(self, event_type: str, state_key: str) -> StateKeyTuple:
        type_nid = self.types.setdefault(event_type, EventTypeNID(len(self.types) + 100))
        key_nid = self.state_keys.setdefault(state_key, StateKeyNID(len(self.state_keys) + 100))
        self.keys[(type_nid, key_nid)] = (event_type, state_key)
        return (type_nid, key_nid)

    def event(self, event_id: str) -> EventNID:
        nid = self.events.setdefault(event_id, EventNID(len(self.events) + 1))
        self.event_ids[nid] = event_id
        return nid


def _conflicts(
    state_sets: list[dict[StateKeyTuple, EventNID]],
) -> tuple[set[StateKeyTuple], set[StateKeyTuple]]:
    """Keys not held with the same event by every state set; those some sets lack."""
    keys = {k for s in state_sets for k in s}
    conflicted = {k for k in keys if len({s.get(k) for s in state_sets}) > 1}
    partial = {k for k in conflicted if any(k not in s for s in state_sets)}
    return conflicted, partial


@pytest.mark.parametrize("version_id", ALL_VERSIONS)
def test_state_before_each_event_is_the_resolved_state(version_id: str) -> None:
    t = traced(2, 700, version_id, seed=int(version_id) + 500)
    nids = _Nids()
    sources: dict[str, InMemoryEventSource] = {}
    state_after: dict[str, dict[StateKeyTuple, EventNID]] = {}
    extremities: dict[str, list[str]] = {}
    merges = 0
    for g in t.generated:
        event = t.events[g.event_id]
        source = sources.setdefault(event.room_id, InMemoryEventSource())
        state_sets = [state_after[p] for p in event.prev_event_ids]
        if not state_sets:
            before: dict[StateKeyTuple, EventNID] = {}
        elif len(state_sets) == 1:
            before = dict(state_sets[0])
        else:
            merges += 1
            before = resolve_state(t.version, state_sets, source)
            # The generator's note of what conflicted at this merge.
            conflicted, partial = _conflicts(state_sets)
            assert sorted(nids.keys[k] for k in conflicted) == list(g.conflicted_keys)
            assert sorted(nids.keys[k] for k in partial) == list(g.partial_keys)
            held = {nids.event_ids[s[k]] for s in state_sets for k in conflicted if k in s}
            assert sorted(held) == list(g.conflicted_events)
        as_ids = {nids.keys[k]: nids.event_ids[v] for k, v in before.items()}
        assert as_ids == dict(g.state_before or {}), f"state before {g.kind} {g.event_id}"
        # The room's current state (what soft-failing checks against) is the resolution of
        # the states after its forward extremities.
        tips = extremities.setdefault(event.room_id, [])
        if tips:
            tip_sets = [state_after[tip] for tip in tips]
            current = (
                tip_sets[0] if len(tip_sets) == 1 else resolve_state(t.version, tip_sets, source)
            )
            current_ids = {nids.keys[k]: nids.event_ids[v] for k, v in current.items()}
            assert current_ids == dict(g.current_state or {}), f"current at {g.event_id}"
        if g.outcome != "accepted":
            continue  # nothing builds on rejected or soft-failed events
        nid = nids.event(g.event_id)
        key = None if event.state_key is None else nids.key(event.type, event.state_key)
        source.add(
            StateResEvent(
                nid=nid,
                event=event,
                key=key,
                auth_nids=tuple(nids.events[a] for a in event.auth_event_ids),
            )
        )
        after = dict(before)
        if key is not None:
            after[key] = nid
        state_after[g.event_id] = after
        tips[:] = [tip for tip in tips if tip not in event.prev_event_ids] + [g.event_id]
    assert merges > 0
    assert sum(1 for g in t.generated if g.conflicted_keys) > 0
