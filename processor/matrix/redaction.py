"""The redaction algorithms of room versions 1–12.

Redaction strips an event down to the keys the protocol needs (auth, the DAG, hashes,
signatures). Its output is what the reference hash (event IDs since v3) and event signatures
are computed over, so the key lists below are consensus-critical: they are transcribed from
the room version pages of the spec.

Top-level keys kept:

- v1–v10: event_id, type, room_id, sender, state_key, content, hashes, signatures, depth,
  prev_events, prev_state, auth_events, origin, origin_server_ts, membership.
- v11+ (MSC2176): the same without origin, membership and prev_state.

Content keys kept, by event type:

============================  ================================  ============================
type                          v1–v10                            v11+ (MSC2176/3821/3989)
============================  ================================  ============================
m.room.member                 membership; v9+ also              membership,
                              join_authorised_via_users_server  join_authorised_via_users_
                              (MSC3375)                         server, third_party_invite.
                                                                signed (MSC3821)
m.room.create                 creator                           every key (so v12's
                                                                additional_creators too)
m.room.join_rules             join_rule; v8+ also allow         join_rule, allow
m.room.power_levels           ban, events, events_default,      the same plus invite
                              kick, redact, state_default,
                              users, users_default
m.room.aliases                aliases (v1–v5 only; MSC2432)     —
m.room.history_visibility     history_visibility                history_visibility
m.room.redaction              —                                 redacts (MSC2174)
============================  ================================  ============================

v12 (MSC4291) leaves the v11 algorithm unchanged (its room version page lists "Redactions"
under "Unchanged from v11").

The redacted dict is new at the top level and in ``content``; deeper values (e.g. the
``users`` map of power levels) are shared with the input and must not be mutated.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from processor.matrix.room_versions import RedactionAlgorithm, RoomVersion

__all__ = [
    "TYPES_WITH_PROTECTED_CONTENT",
    "redact",
    "redacted_content",
    "redacted_top_level_keys",
]

#: Every event type that keeps any content key in some room version; the content of every
#: other type redacts to ``{}`` in all versions.
TYPES_WITH_PROTECTED_CONTENT: frozenset[str] = frozenset(
    {
        "m.room.member",
        "m.room.create",
        "m.room.join_rules",
        "m.room.power_levels",
        "m.room.aliases",
        "m.room.history_visibility",
        "m.room.redaction",
    }
)

_TOP_LEVEL_V1: frozenset[str] = frozenset(
    {
        "event_id",
        "type",
        "room_id",
        "sender",
        "state_key",
        "content",
        "hashes",
        "signatures",
        "depth",
        "prev_events",
        "prev_state",
        "auth_events",
        "origin",
        "origin_server_ts",
        "membership",
    }
)
# v11 (MSC2176): origin, membership and prev_state are no longer protected.
_TOP_LEVEL_V11: frozenset[str] = _TOP_LEVEL_V1 - {"origin", "membership", "prev_state"}

_POWER_LEVELS_V1 = (
    "ban",
    "events",
    "events_default",
    "kick",
    "redact",
    "state_default",
    "users",
    "users_default",
)
# v11 (MSC3821... MSC2176): power levels also keep `invite`.
_POWER_LEVELS_V11 = (*_POWER_LEVELS_V1, "invite")


def redacted_top_level_keys(version: RoomVersion) -> frozenset[str]:
    """The top-level keys the redaction algorithm of `version` keeps."""
    if version.redaction is RedactionAlgorithm.V11:
        return _TOP_LEVEL_V11
    return _TOP_LEVEL_V1


def _content_keys_v1(event_type: object, version: RoomVersion) -> tuple[str, ...]:
    if event_type == "m.room.member":
        # v9+ (MSC3375): keep the authorising server of a restricted join.
        if version.redaction_keeps_join_authorised_via:
            return ("membership", "join_authorised_via_users_server")
        return ("membership",)
    if event_type == "m.room.create":
        return ("creator",)
    if event_type == "m.room.join_rules":
        # v8+ (MSC3083): keep the restricted join rule's `allow` list. v8 is exactly the
        # version that introduced restricted joins, so the flag coincides.
        return ("join_rule", "allow") if version.restricted_join else ("join_rule",)
    if event_type == "m.room.power_levels":
        return _POWER_LEVELS_V1
    if event_type == "m.room.aliases":
        # v1–v5 only: MSC2432 (room v6) stopped protecting `aliases`, together with removing
        # the aliases auth special case, so `special_case_aliases_auth` marks exactly v1–v5.
        return ("aliases",) if version.special_case_aliases_auth else ()
    if event_type == "m.room.history_visibility":
        return ("history_visibility",)
    return ()


def _content_keys_v11(event_type: object) -> tuple[str, ...]:
    if event_type == "m.room.member":
        return ("membership", "join_authorised_via_users_server")
    if event_type == "m.room.join_rules":
        return ("join_rule", "allow")
    if event_type == "m.room.power_levels":
        return _POWER_LEVELS_V11
    if event_type == "m.room.history_visibility":
        return ("history_visibility",)
    if event_type == "m.room.redaction":
        return ("redacts",)
    return ()


def redacted_content(
    event_type: object, content: object, version: RoomVersion
) -> dict[str, Any]:
    """The `content` of an event of `event_type` after redaction under `version`."""
    if not isinstance(content, Mapping) or not content:
        return {}
    if version.redaction is RedactionAlgorithm.V11:
        if event_type == "m.room.create":
            # v11 (MSC2176): the create event keeps its whole content.
            return dict(content)
        kept = {k: content[k] for k in _content_keys_v11(event_type) if k in content}
        if event_type == "m.room.member":
            # v11 (MSC3821): keep `third_party_invite.signed`, which the invite auth rule
            # checks, but nothing else of `third_party_invite`.
            invite = content.get("third_party_invite")
            if isinstance(invite, Mapping) and "signed" in invite:
                kept["third_party_invite"] = {"signed": invite["signed"]}
        return kept
    return {k: content[k] for k in _content_keys_v1(event_type, version) if k in content}


def redact(pdu: Mapping[str, Any], version: RoomVersion) -> dict[str, Any]:
    """The event `pdu` (a JSON object) as the redaction algorithm of `version` leaves it.

    ``unsigned`` is always removed (it is not a protected key). A missing or non-object
    ``content`` becomes ``{}``: the redacted form of any event has a content object.
    """
    keep = redacted_top_level_keys(version)
    redacted = {k: v for k, v in pdu.items() if k in keep}
    redacted["content"] = redacted_content(pdu.get("type"), pdu.get("content"), version)
    return redacted
