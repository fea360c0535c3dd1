"""History visibility for servers: may a homeserver see an event of a room? Pure, no I/O.

The client-server spec ("History visibility", `m.room.history_visibility`) defines who may
see an event from the room's history visibility *at that event*:

- ``world_readable``: "All events while this is the m.room.history_visibility value may be
  shared by any participating homeserver with anyone, regardless of whether they have ever
  joined the room."
- ``shared``: "Previous events are always accessible to newly joined members. All events in
  the room are accessible, even those sent when the member was not a part of the room."
- ``invited``: "Events are accessible to newly joined members from the point they were
  invited onwards. Events stop being accessible when the member's state changes to
  something other than invite or join."
- ``joined``: "Events are accessible to newly joined members from the point they joined the
  room onwards. Events stop being accessible when the member's state changes to something
  other than join."

A server sees what any of its users may see, so its users' memberships decide: at the event
for ``invited`` and ``joined``; for ``shared``, a user joined *now* sees earlier events too,
so a server with a user invited or joined at the event, or joined now, may see it. An absent
or unknown value counts as ``shared`` (the spec's default: "the default ... is shared").
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

__all__ = [
    "DEFAULT_HISTORY_VISIBILITY",
    "HISTORY_VISIBILITIES",
    "history_visibility_of",
    "server_may_see_event",
    "server_name_of",
]

DEFAULT_HISTORY_VISIBILITY = "shared"
HISTORY_VISIBILITIES = frozenset({"world_readable", "shared", "invited", "joined"})


def history_visibility_of(content: Mapping[str, Any] | None) -> str:
    """The visibility an `m.room.history_visibility` event's content sets (None: no such
    event in the state); unknown or malformed values are the default."""
    if content is None:
        return DEFAULT_HISTORY_VISIBILITY
    value = content.get("history_visibility")
    if isinstance(value, str) and value in HISTORY_VISIBILITIES:
        return value
    return DEFAULT_HISTORY_VISIBILITY


def server_name_of(user_id: str) -> str:
    """The server part of a user ID (everything after the first colon)."""
    return user_id.partition(":")[2]


def server_may_see_event(
    visibility: str,
    memberships_at_event: Iterable[str],
    memberships_now: Iterable[str] = (),
) -> bool:
    """Whether a server may see an event whose history visibility (at the event) is
    `visibility`, given the memberships of the server's users in the state at the event
    and in the room's current state (one membership value per user)."""
    if visibility == "world_readable":
        return True
    at_event = set(memberships_at_event)
    if visibility == "joined":
        return "join" in at_event
    if visibility == "invited":
        return bool(at_event & {"join", "invite"})
    # shared (and anything unknown, which counts as shared)
    return bool(at_event & {"join", "invite"}) or "join" in set(memberships_now)
