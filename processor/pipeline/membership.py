"""Memberships and invites: the room's membership table follows its current state, and a
local user's invite is announced (`new_invite_event`) and retired when their membership
changes again (`retire_invite_event`).
"""

from __future__ import annotations

from collections.abc import Mapping

from processor.matrix.events import server_name_of
from processor.nids import EventNID, StateKeyTuple
from processor.pipeline.context import RoomContext
from processor.pipeline.outputs import OutputBuilder
from processor.pipeline.types import LoadedEvent


def update_memberships(ctx: RoomContext, added: Mapping[StateKeyTuple, EventNID]) -> None:
    """Record the memberships the current state gained."""
    member_type = ctx.cache.known_type_nid("m.room.member")
    if not added or member_type is None:
        return
    members = [(k, nid) for k, nid in added.items() if k[0] == member_type]
    if not members:
        return
    loaded = ctx.load(nid for _, nid in members)
    room_nid = ctx.room.record.room_nid
    for (_, target), nid in members:
        membership = loaded[nid].event.membership
        if isinstance(membership, str):
            ctx.batch.set_membership(room_nid, target, membership, nid)


def announce_invites(
    ctx: RoomContext, outputs: OutputBuilder, server_name: str, loaded: LoadedEvent
) -> None:
    """A membership event of a local user retires their pending invites; an invite of one
    is recorded and announced."""
    event = loaded.event
    if event.type != "m.room.member" or event.state_key is None:
        return
    target = event.state_key
    if not server_name or server_name_of(target) != server_name:
        return
    room = ctx.room
    retired = ctx.batch.retire_invites(room.record.room_nid, target)
    if retired:
        invites = ctx.load(retired)
        for nid in retired:
            outputs.retire_invite_event(room, invites[nid], loaded, target)
    if event.membership == "invite":
        ctx.batch.insert_invite(room.record.room_nid, target, loaded.nid)
        outputs.new_invite_event(room, loaded, target)
