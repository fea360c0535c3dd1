"""Redactions: an accepted m.room.redaction replaces its target's stored form with the
redacted one (the room version's redaction algorithm) once it is valid against the state
before the redaction, and announces it (`redacted_event`). A redaction whose target has
not arrived yet waits for it (pending) and applies when the target is stored.
"""

from __future__ import annotations

from collections.abc import Mapping

from processor.core import decision
from processor.matrix.canonical_json import canonical_json
from processor.matrix.redaction import redact
from processor.nids import EventNID, StateKeyTuple
from processor.pipeline.context import RoomContext
from processor.pipeline.outputs import OutputBuilder
from processor.pipeline.types import LoadedEvent
from processor.storage.base import RedactionRecord

StateMap = Mapping[StateKeyTuple, EventNID]


def handle_redaction(
    ctx: RoomContext, outputs: OutputBuilder, redaction: LoadedEvent, state_before: StateMap
) -> None:
    target_id = redaction.event.redacts
    if not isinstance(target_id, str):
        return
    target = ctx.load_by_id([target_id]).get(target_id)
    if target is None:
        # Not here yet: applied when the target arrives (`apply_pending_redactions`).
        ctx.batch.insert_redaction(redaction.nid, target_id, False)
        ctx.cache.add_pending_redaction(
            RedactionRecord(redaction.nid, target_id, validated=False)
        )
        return
    _apply(ctx, outputs, redaction, target, state_before)


def apply_pending_redactions(
    ctx: RoomContext, outputs: OutputBuilder, loaded: LoadedEvent
) -> LoadedEvent:
    """Apply the redactions that were waiting for `loaded`; returns its stored form (the
    redacted one once redacted, which is what is served, its own output included)."""
    pending = ctx.cache.pending_redactions(loaded.event_id)
    if not pending:
        return loaded
    for record in pending:
        redaction = ctx.load_one(record.redaction_event_nid)
        if redaction.rejected or redaction.room_nid != ctx.room.record.room_nid:
            continue
        before = ctx.cache.state_before(ctx.batch, ctx.room, redaction)
        _apply(ctx, outputs, redaction, loaded, before.entries)
    return ctx.load_one(loaded.nid)


def _apply(
    ctx: RoomContext,
    outputs: OutputBuilder,
    redaction: LoadedEvent,
    target: LoadedEvent,
    state_before: StateMap,
) -> None:
    room = ctx.room
    if target.redacted or target.room_nid != room.record.room_nid:
        return
    auth_state = ctx.auth_state(redaction.event, state_before)
    if not decision.redaction_is_valid(
        redaction.event, target.event.sender, auth_state, room.version
    ):
        ctx.batch.insert_redaction(redaction.nid, target.event_id, False)
        return
    redacted = canonical_json(redact(dict(target.event.pdu), room.version))
    ctx.batch.redact_event(target.nid, redacted, redaction.nid)
    ctx.batch.insert_redaction(redaction.nid, target.event_id, True)
    ctx.cache.forget(target.nid, target.event_id)
    outputs.redacted_event(room, target.event_id, redaction)
