"""Step 4: the state before an event — the state after its one prev event, or the
resolution of the states after its prev events (state resolution, by the room version's
algorithm), or the state a federation join supplies (`has_state`).

A resolved state is kept as one of its inputs plus the changes at the keys that can differ,
so that storing it writes a small delta and comparing it with that input never walks the
whole state.
"""

from __future__ import annotations

import time
from collections.abc import Collection, Sequence

from processor.errors import StateResolutionError
from processor.matrix.state_res import conflicted_state_keys, resolve_state
from processor.nids import EventNID, StateKeyTuple
from processor.pipeline.context import RoomContext
from processor.pipeline.event_source import BatchEventSource
from processor.pipeline.types import BatchResult, DeadLetterError, LoadedEvent, StateAt
from schemas.dead_letter import DeadLetterReason
from schemas.input import InputRoomEvent


def prev_events(ctx: RoomContext, event_prev_ids: Sequence[str],
                item: InputRoomEvent) -> list[LoadedEvent]:
    """The event's prev events; all must be stored, except for a federation join (whose
    prev events, the resident server's extremities, are usually not stored here)."""
    if not item.has_state:
        return ctx.require(event_prev_ids, DeadLetterReason.MISSING_PREV_EVENTS, "prev")
    found = ctx.load_by_id(event_prev_ids)
    room_nid = ctx.room.record.room_nid
    return [found[i] for i in event_prev_ids if i in found and found[i].room_nid == room_nid]


def state_before(
    ctx: RoomContext,
    item: InputRoomEvent,
    prevs: Sequence[LoadedEvent],
    result: BatchResult,
) -> StateAt:
    if item.has_state:
        state_events = ctx.require(
            item.state_event_ids, DeadLetterReason.MISSING_STATE_EVENTS, "state"
        )
        entries: dict[StateKeyTuple, EventNID] = {}
        for e in state_events:
            if e.key is None:
                raise DeadLetterError(
                    DeadLetterReason.INVALID_EVENT,
                    f"state event {e.event_id} is not a state event",
                )
            entries[e.key] = e.nid
        return StateAt(entries)
    if not prevs:
        return StateAt({})
    for prev in prevs:
        if prev.outlier:
            raise DeadLetterError(
                DeadLetterReason.MISSING_STATE_EVENTS,
                f"prev event {prev.event_id} is an outlier: the state after it is not known",
            )
    afters = [ctx.state_after(prev) for prev in prevs]
    first = afters[0]
    if all(a is first or a.entries is first.entries or (
        a.snapshot_nid != 0 and a.snapshot_nid == first.snapshot_nid) for a in afters):
        return first
    return resolve(ctx, afters, result)


def resolve(
    ctx: RoomContext,
    states: Sequence[StateAt],
    result: BatchResult,
    prefer: StateAt | None = None,
) -> StateAt:
    """The resolution of `states`, kept as one of them (`prefer` when it is one, else one
    already stored) plus its changes."""
    distinct = frozenset({id(s.entries): s for s in states}.values())
    if len(distinct) == 1:
        return states[0]
    cache = ctx.cache
    # The same states resolve to the same state: a message on one branch of a fork leaves
    # the extremities' states as they were.
    cached = cache.resolved(distinct)
    if cached is not None:
        return cached
    result.state_resolutions += 1
    started = time.perf_counter()
    source = BatchEventSource(cache, ctx.batch, ctx.room)
    state_sets = [s.entries for s in distinct]
    try:
        source.ensure_indexed(set().union(*(entries.values() for entries in state_sets)))
        resolved = resolve_state(ctx.room.version, state_sets, source)
    except StateResolutionError as e:
        raise DeadLetterError(DeadLetterReason.MISSING_STATE_EVENTS, str(e)) from e
    finally:
        result.state_resolution_seconds += time.perf_counter() - started
    base = _resolution_base(distinct, prefer)
    # Resolution keeps every unconflicted entry, so only the conflicted keys, and keys no
    # input holds (an event of the auth difference that passes the iterative auth checks
    # enters the state: v2 step 2), can differ from any one input; a key resolved away
    # becomes a removal (0).
    changed_keys = conflicted_state_keys(state_sets)
    changed_keys.update(resolved.keys() - base.entries.keys())
    changes = {
        key: resolved.get(key, EventNID(0))
        for key in changed_keys
        if resolved.get(key) != base.entries.get(key)
    }
    state = StateAt(resolved, base=base, changes=changes)
    cache.remember_resolved(distinct, state)
    return state


def _resolution_base(states: Collection[StateAt], prefer: StateAt | None) -> StateAt:
    """The input a resolved state is expressed against: `prefer` (the room's current state)
    when it is one of them, else one that is stored already, else any."""
    for state in states:
        if prefer is not None and state.entries is prefer.entries:
            return state
    for state in states:
        if state.snapshot_nid:
            return state
    return next(iter(states))
