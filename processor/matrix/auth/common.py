"""What the authorization rules share: event types, memberships, and short renderings of
untrusted values for messages."""

from __future__ import annotations

from collections.abc import Mapping

from processor.matrix.events import Event

CREATE = "m.room.create"
MEMBER = "m.room.member"
POWER_LEVELS = "m.room.power_levels"
JOIN_RULES = "m.room.join_rules"
THIRD_PARTY_INVITE = "m.room.third_party_invite"
ALIASES = "m.room.aliases"
REDACTION = "m.room.redaction"

JOIN_RULES_KEY = (JOIN_RULES, "")

JOIN = "join"
INVITE = "invite"
LEAVE = "leave"
BAN = "ban"
KNOCK = "knock"

AUTHORISER = "join_authorised_via_users_server"




def short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def membership_of(member_event: Event | None) -> object:
    """The membership of a member event in the state, or None when there is none."""
    if member_event is None:
        return None
    content = member_event.content
    return content.get("membership") if isinstance(content, Mapping) else None
