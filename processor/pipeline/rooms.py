"""Which room an event is in: a room already established, or one its create event
establishes now.

Only a room's create event establishes it (and its version, from the create event's
content): any other event cites that create event among its auth events (v12: implies it by
the room ID), so it could not be checked before the room exists — and registering the room
from it, with the version its input claims, would make that claim the room's version for good
(a v11 claim on a v1 room would dead-letter every real event).
"""

from __future__ import annotations

from typing import NoReturn

from processor.core import decision
from processor.matrix.events import Event
from processor.matrix.room_versions import create_event_id_of_room
from processor.pipeline.caches import RoomCache, TrackedRoom
from processor.pipeline.types import DeadLetterError, Decoded
from processor.storage.base import Batch
from schemas.dead_letter import DeadLetterReason


def room_of(cache: RoomCache, batch: Batch, decoded: Decoded) -> TrackedRoom:
    event, version = decoded.event, decoded.version
    room = cache.room(batch, event.room_id)
    if room is None:
        if event.type != "m.room.create" or event.state_key != "":
            _unknown_room(cache, batch, decoded)
        return _establish(cache, batch, decoded)
    if room.version is not version:
        raise DeadLetterError(
            DeadLetterReason.INVALID_EVENT,
            f"event {event.event_id} claims room version {version.id} but room "
            f"{event.room_id} is version {room.version.id}",
        )
    return room


def _unknown_room(cache: RoomCache, batch: Batch, decoded: Decoded) -> NoReturn:
    """An event other than a create event, in a room not established: dead-lettered, with
    what is missing."""
    event, item = decoded.event, decoded.item
    if item.kind == "new" and not item.has_state:
        raise DeadLetterError(
            DeadLetterReason.UNKNOWN_ROOM,
            f"room {event.room_id} is not known: send its create event first, "
            "or the event with has_state and its state",
        )
    wanted = list(event.auth_event_ids)
    if decoded.version.create_event_implicit_in_auth_events:
        wanted.append(create_event_id_of_room(event.room_id))
    missing = [i for i in wanted if cache.event_nid(batch, i) is None]
    if missing:
        raise DeadLetterError(
            DeadLetterReason.MISSING_AUTH_EVENTS,
            f"auth events not stored: {', '.join(missing)} (room {event.room_id} is not "
            "known: its create event comes first)",
        )
    raise DeadLetterError(
        DeadLetterReason.UNKNOWN_ROOM,
        f"room {event.room_id} is not known: send its create event first",
    )


def _establish(cache: RoomCache, batch: Batch, decoded: Decoded) -> TrackedRoom:
    """Establish a room from its create event. The event is checked first (it needs nothing
    stored): a create event that would be rejected, or dead-lettered after the room was
    registered, must not establish the room, or a forged one with another version would lock
    the real one out."""
    event, item, version = decoded.event, decoded.item, decoded.version
    if event.auth_event_ids:
        rejected: str | None = "m.room.create: a create event has no auth_events"
    else:
        rejected = decision.check_against_auth_events(event, [], [], version)
    if rejected is None and item.has_state and item.state_event_ids:
        rejected = "a create event has no state before it (state_event_ids)"
    if rejected is not None:
        raise DeadLetterError(
            DeadLetterReason.INVALID_EVENT,
            f"create event {event.event_id} does not establish room {event.room_id}: "
            f"{rejected}",
        )
    record = batch.insert_room(event.room_id, version.id)
    return cache.add_room(record, version)


def implied_create_event_id(room: TrackedRoom, event: Event) -> str | None:
    """v12 (MSC4291): the ID of the create event an event implies (never in its
    auth_events); None in earlier versions and for the create event itself."""
    if not room.version.create_event_implicit_in_auth_events or event.type == "m.room.create":
        return None
    return create_event_id_of_room(room.record.room_id)
