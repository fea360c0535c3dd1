"""State resolution over numeric IDs: v1 (room v1), v2 (room v2–v11), v2.1 (room v12).

`resolve_state(version, state_sets, events)` takes the state maps to resolve (keyed by
(type NID, state key NID), valued by event NID) and an `EventSource` through which the caller
batch-loads the few events resolution reads and shares the room's `AuthChainIndex`; it
returns the resolved state map. Pure: no I/O beyond the caller's callbacks, no global state.

Modules: `source` (what resolution reads, the `EventSource` protocol, a dict-backed source),
`auth_chain` (the auth DAG index: auth difference, conflicted subgraph), `v1`, `v2` (v2 and
v2.1).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from processor.matrix.room_versions import RoomVersion, StateResAlgorithm
from processor.matrix.state_res.auth_chain import AuthChainIndex
from processor.matrix.state_res.source import EventSource, InMemoryEventSource, StateResEvent
from processor.matrix.state_res.v1 import resolve_v1
from processor.matrix.state_res.v2 import conflicted_state_keys, is_power_event, resolve_v2
from processor.nids import EventNID, StateKeyTuple

__all__ = [
    "AuthChainIndex",
    "EventSource",
    "InMemoryEventSource",
    "StateResEvent",
    "conflicted_state_keys",
    "is_power_event",
    "resolve_state",
]


def resolve_state(
    version: RoomVersion,
    state_sets: Sequence[Mapping[StateKeyTuple, EventNID]],
    events: EventSource,
) -> dict[StateKeyTuple, EventNID]:
    """The resolution of `state_sets` by the algorithm `version` names.

    Raises `StateResolutionError` when an event it needs is unknown to `events` or to its
    auth chain index. One state map (or none conflicting) resolves to itself without loading
    anything.
    """
    if version.state_res is StateResAlgorithm.V1:
        return resolve_v1(version, state_sets, events)
    return resolve_v2(version, state_sets, events)
