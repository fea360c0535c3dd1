"""Step 5: an accepted `new` event moves the room on — its forward extremities (the events
no other event names as a prev event yet) and its current state (the resolution of the
states after them).
"""

from __future__ import annotations

from collections.abc import Sequence

from processor.core import decision
from processor.nids import EventNID, StateKeyTuple
from processor.pipeline.context import RoomContext
from processor.pipeline.membership import update_memberships
from processor.pipeline.state_before import resolve
from processor.pipeline.types import BatchResult, LoadedEvent
from schemas.input import InputRoomEvent

StateDelta = dict[StateKeyTuple, EventNID]


def advance_room(
    ctx: RoomContext,
    loaded: LoadedEvent,
    item: InputRoomEvent,
    prevs: Sequence[LoadedEvent],
    result: BatchResult,
) -> tuple[StateDelta, StateDelta]:
    """The new forward extremities and current state; returns the current state's change as
    (removed, added)."""
    room = ctx.room
    old_current = ctx.current_state()
    after = ctx.state_after(loaded)
    if item.has_state:
        extremities: tuple[EventNID, ...] = (loaded.nid,)
    else:
        extremities = decision.forward_extremities_after(
            room.forward_extremities, _extremities_reached(ctx, prevs), loaded.nid
        )
    if len(extremities) == 1:
        new_current = after
    else:
        tips = ctx.load(extremities)
        new_current = resolve(
            ctx, [ctx.state_after(tips[n]) for n in extremities], result, prefer=old_current
        )
    if (
        new_current.changes is not None
        and new_current.base is not None
        and new_current.base.entries is old_current.entries
    ):
        # The common case: the new current state is the old one plus this event.
        removed, added = decision.state_delta_of_changes(
            old_current.entries, new_current.changes
        )
    else:
        removed, added = decision.state_delta(old_current.entries, new_current.entries)
    room.forward_extremities = extremities
    room.set_current(new_current)
    update_memberships(ctx, added)
    return removed, added


def _extremities_reached(ctx: RoomContext, prevs: Sequence[LoadedEvent]) -> set[EventNID]:
    """The forward extremities that are ancestors of a new event (so no longer
    extremities). Usually its prev events are the extremities themselves; a prev event that
    is not one (a backfilled `old` event, say) is walked back, no deeper than the shallowest
    extremity."""
    extremities = set(ctx.room.forward_extremities)
    reached: set[EventNID] = set()
    if not extremities:
        return reached
    floor: int | None = None
    seen: set[EventNID] = set()
    stack = list(prevs)
    while stack:
        event = stack.pop()
        if event.nid in seen:
            continue
        seen.add(event.nid)
        if event.nid in extremities:
            reached.add(event.nid)
            continue
        if floor is None:
            floor = min(e.event.depth for e in ctx.load(extremities).values())
        if event.event.depth > floor and event.prev_nids:
            stack.extend(ctx.load(event.prev_nids).values())
    return reached
