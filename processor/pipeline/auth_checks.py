"""Step 2: the authorization rules, three times ("Checks performed on receipt of a PDU"):

- 2a. against the event's own auth events — fail: rejected (an auth event not stored makes
  the event unprocessable: a dead letter);
- 2b. against the state before the event — fail: rejected;
- 2c. against the room's current state (`new` events only) — fail: soft-failed.

A check is skipped when the state hands over exactly the events an earlier check read: the
rules are a function of the event and those events. The rules themselves are the pure core's
(`processor.core.decision`, `processor.matrix.auth`).
"""

from __future__ import annotations

from dataclasses import dataclass

from processor.core import decision
from processor.matrix.events import Event
from processor.nids import EventNID
from processor.pipeline.context import RoomContext
from processor.pipeline.rooms import implied_create_event_id
from processor.pipeline.types import DeadLetterError, LoadedEvent, StateAt
from schemas.dead_letter import DeadLetterReason
from schemas.input import InputRoomEvent

#: Auth verdicts kept per room for reuse (see `decision.auth_verdict_key`).
AUTH_VERDICTS_PER_ROOM = 4096


@dataclass(slots=True)  # not frozen: a frozen __init__ costs 2x, per event
class OwnAuth:
    """Step 2a's result: the event's auth events, the verdict, and what it read by key."""

    event: Event
    events: list[LoadedEvent]
    rejected: str | None
    checked: dict[tuple[str, str], EventNID]


def check_own_auth_events(ctx: RoomContext, event: Event) -> OwnAuth:
    """Step 2a."""
    room = ctx.room
    auth_events = ctx.require(
        event.auth_event_ids, DeadLetterReason.MISSING_AUTH_EVENTS, "auth"
    )
    implied_create = _implied_create_event(ctx, event)
    verdict_key = decision.auth_verdict_key(event, tuple(e.nid for e in auth_events))
    verdicts = room.auth_verdicts
    if verdict_key is not None and verdict_key in verdicts:
        rejected = verdicts[verdict_key]
    else:
        rejected = decision.check_against_auth_events(
            event,
            [e.event for e in auth_events],
            [e.event_id for e in auth_events if e.rejected],
            room.version,
            implied_create.event if implied_create is not None else None,
        )
        if verdict_key is not None:
            if len(verdicts) >= AUTH_VERDICTS_PER_ROOM:
                verdicts.clear()
            verdicts[verdict_key] = rejected
    checked = {e.event.state_tuple: e.nid for e in auth_events if e.event.state_tuple}
    if implied_create is not None:
        checked[("m.room.create", "")] = implied_create.nid
    return OwnAuth(event, auth_events, rejected, checked)


def _implied_create_event(ctx: RoomContext, event: Event) -> LoadedEvent | None:
    create_id = implied_create_event_id(ctx.room, event)
    if create_id is None:
        return None
    create = ctx.load_by_id([create_id]).get(create_id)
    if create is None:
        raise DeadLetterError(
            DeadLetterReason.MISSING_AUTH_EVENTS,
            f"auth events not stored: {create_id} (the room's create event)",
        )
    return create


def check_against_states(
    ctx: RoomContext, item: InputRoomEvent, own: OwnAuth, state_before: StateAt
) -> tuple[str | None, str | None]:
    """Steps 2b (reject) and 2c (soft fail; `new` events only, and not a state-rewriting
    join, which is checked against the state it brings). Returns (rejected, soft_failed)."""
    event, rejected, checked = own.event, own.rejected, own.checked
    if rejected is not None:
        return rejected, None
    version = ctx.room.version
    before_nids = ctx.auth_nids(event, state_before.entries)
    if before_nids != checked:
        rejected = decision.check_against_state(
            event, ctx.events_by_key(before_nids), version
        )
        if rejected is not None:
            return rejected, None
    if item.kind != "new" or item.has_state:
        return None, None
    current = ctx.current_state().entries
    if current is state_before.entries:
        return None, None
    current_nids = ctx.auth_nids(event, current)
    if current_nids == before_nids:
        return None, None
    soft_failed = decision.check_against_state(
        event, ctx.events_by_key(current_nids), version
    )
    return None, soft_failed
