"""Which state events a generated event lists as its `auth_events`.

Server-server API "Auth events selection": the create event (not in v12, MSC4291), the
current power levels, the sender's membership; for a membership event also the target's
membership, the join rules (join, invite, knock), and for a restricted join (v8+) the
membership of the user in `join_authorised_via_users_server`. Third-party invites are never
generated, so their selection is not needed here.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

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
    if event_type == "m.room.create":
        return []
    keys: list[tuple[str, str]] = []
    if not version.create_event_implicit_in_auth_events:
        keys.append(("m.room.create", ""))
    keys.append(("m.room.power_levels", ""))
    keys.append(("m.room.member", sender))
    if event_type == "m.room.member" and state_key is not None:
        keys.append(("m.room.member", state_key))
        membership = content.get("membership")
        if membership in ("join", "invite", "knock"):
            keys.append(("m.room.join_rules", ""))
        authoriser = content.get("join_authorised_via_users_server")
        if membership == "join" and version.restricted_join and isinstance(authoriser, str):
            keys.append(("m.room.member", authoriser))
    deduplicated: list[tuple[str, str]] = []
    for key in keys:
        if key not in deduplicated:
            deduplicated.append(key)
    return deduplicated
