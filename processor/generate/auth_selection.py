"""Which state events a generated event lists as its `auth_events`.

The selection itself is the roomserver's own (`processor.matrix.auth.auth_types_for_event`,
server-server API "Auth events selection"), so generated events cite exactly what the
authorization rules accept. This adapter asks it before the event exists: only the fields the
selection reads (type, sender, state key, content) are filled in.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from processor.matrix.auth import auth_types_for_event
from processor.matrix.events import Event
from processor.matrix.room_versions import RoomVersion

__all__ = ["auth_state_keys"]


def auth_state_keys(
    version: RoomVersion,
    event_type: str,
    sender: str,
    state_key: str | None,
    content: Mapping[str, Any],
) -> list[tuple[str, str]]:
    """The (type, state_key) pairs whose current state events the event cites, in order."""
    draft = Event(
        event_id="",
        room_id="",
        sender=sender,
        type=event_type,
        state_key=state_key,
        content=content,
        prev_event_ids=(),
        auth_event_ids=(),
        depth=0,
        origin_server_ts=0,
        redacts=None,
        pdu={},
    )
    return auth_types_for_event(draft, version)
