"""The authorization rules' entry points: auth-event selection, the checks on an event's own
`auth_events`, rule 1 (m.room.create) and the state-dependent rules (see the package
docstring for the rule numbering)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from processor.errors import AuthError
from processor.matrix.auth.common import (
    ALIASES,
    AUTHORISER,
    CREATE,
    INVITE,
    JOIN,
    JOIN_RULES_KEY,
    KNOCK,
    MEMBER,
    POWER_LEVELS,
    REDACTION,
    THIRD_PARTY_INVITE,
    membership_of,
    short,
)
from processor.matrix.auth.member import check_member
from processor.matrix.auth.power_levels import check_power_levels_change
from processor.matrix.events import Event, server_name_of
from processor.matrix.power_levels import (
    CREATE_KEY,
    POWER_LEVELS_KEY,
    is_valid_user_id,
    power_levels_of,
    user_power_level,
)
from processor.matrix.room_versions import KNOWN_ROOM_VERSIONS, RoomVersion

# --------------------------------------------------------------------------------------------
# Auth events selection (server-server API, "Auth events selection")


def auth_types_for_event(event: Event, version: RoomVersion) -> list[tuple[str, str]]:
    """The (type, state_key) pairs of the state events that authorise `event`.

    The create event (not in v12, where the room ID implies it), the power levels, the
    sender's member event; for `m.room.member`: the target's member event, the join rules
    when membership is join, invite or knock, the `m.room.third_party_invite` event named by
    `content.third_party_invite.signed.token` for invites, and for joins in v8+ the member
    event of `content.join_authorised_via_users_server` (only joins, per matrix-spec#2100,
    as the reference server does). The create event has no auth events. Malformed content
    selects nothing extra.
    """
    if event.type == CREATE:
        return []
    types: list[tuple[str, str]] = []
    if not version.create_event_implicit_in_auth_events:
        types.append(CREATE_KEY)
    types.append(POWER_LEVELS_KEY)
    types.append((MEMBER, event.sender))
    if event.type != MEMBER:
        return types
    state_key = event.state_key
    if type(state_key) is str and (MEMBER, state_key) not in types:
        types.append((MEMBER, state_key))
    content = event.content
    if not isinstance(content, Mapping):
        return types
    membership = content.get("membership")
    if membership in (JOIN, INVITE, KNOCK):
        types.append(JOIN_RULES_KEY)
    if membership == INVITE:
        invite = content.get("third_party_invite")
        signed = invite.get("signed") if isinstance(invite, Mapping) else None
        token = signed.get("token") if isinstance(signed, Mapping) else None
        if type(token) is str:
            types.append((THIRD_PARTY_INVITE, token))
    if membership == JOIN and version.restricted_join:
        authoriser = content.get(AUTHORISER)
        if type(authoriser) is str and (MEMBER, authoriser) not in types:
            types.append((MEMBER, authoriser))
    return types


# --------------------------------------------------------------------------------------------
# State-independent checks of the event's own auth_events


def check_auth_events_shape(
    event: Event,
    auth_events: Sequence[Event],
    version: RoomVersion,
    rejected: Callable[[str], bool] | None = None,
) -> None:
    """The checks on the events listed in `event.auth_events` that need no room state.

    v1–v11 rule 2, v12 rules 2–3: no two entries for one (type, state_key); only the types the
    selection algorithm picks for this event; none rejected; all in the event's room; the
    create event among them (v1–v11) or, in v12, never listed (the room ID names it; that it
    is an accepted create event is checked by `check_auth`, which reads it from the state).

    `rejected(event_id)` says whether an auth event was itself rejected; pass None when the
    caller hands over only events it has accepted. The create event must have no auth events.
    """
    if event.type == CREATE:
        if auth_events:
            raise AuthError("m.room.create: a create event has no auth_events")
        return
    if version.room_id_is_create_event_hash and not event.room_id.startswith("!"):
        raise AuthError(f"auth_events: room ID {short(event.room_id)} is not a create event ID")
    allowed = auth_types_for_event(event, version)
    seen: set[tuple[str, str]] = set()
    for auth_event in auth_events:
        state_key = auth_event.state_key
        if state_key is None:
            raise AuthError(f"auth_events: {auth_event.event_id} is not a state event")
        key = (auth_event.type, state_key)
        # v1–v11 rule 2.1, v12 rule 3.1
        if key in seen:
            raise AuthError(f"auth_events: duplicate entries for {key}")
        seen.add(key)
        # v12 rule 3.2: the create event MUST NOT be selected.
        if version.create_event_implicit_in_auth_events and auth_event.type == CREATE:
            raise AuthError(
                f"auth_events: {auth_event.event_id} is the create event, which is implied by "
                "the room ID and must not be listed"
            )
        # v1–v11 rule 2.2, v12 rule 3.2
        if key not in allowed:
            raise AuthError(
                f"auth_events: {auth_event.event_id} {key} is not an auth event for this event"
            )
        # v1–v11 rule 2.3, v12 rule 3.3
        if rejected is not None and rejected(auth_event.event_id):
            raise AuthError(f"auth_events: {auth_event.event_id} was rejected")
        # v12 rule 3.5 (for all versions: "checks performed on receipt of a PDU")
        if auth_event.room_id != event.room_id:
            raise AuthError(
                f"auth_events: {auth_event.event_id} is in room {short(auth_event.room_id)}, "
                f"not {short(event.room_id)}"
            )
    # v1–v11 rule 2.4
    if not version.create_event_implicit_in_auth_events and CREATE_KEY not in seen:
        raise AuthError("auth_events: no m.room.create event among the auth events")


# --------------------------------------------------------------------------------------------
# Rule 1: m.room.create


def _check_create(event: Event, version: RoomVersion) -> None:
    # rule 1.1
    if event.prev_event_ids:
        raise AuthError("m.room.create: a create event has no prev_events")
    if version.room_id_is_create_event_hash:
        # v12 rule 1.2: the room ID is the create event's ID with `!` (MSC4291), so the
        # event itself carries none.
        if event.pdu.get("room_id") is not None:
            raise AuthError("m.room.create: a v12 create event must not have a room_id")
        if event.room_id and event.room_id[1:] != event.event_id[1:]:
            raise AuthError(
                f"m.room.create: room ID {short(event.room_id)} is not the create event's ID"
            )
    elif server_name_of(event.room_id) != server_name_of(event.sender):
        # v1–v11 rule 1.2
        raise AuthError(
            f"m.room.create: room ID domain {short(server_name_of(event.room_id))} does not "
            f"match sender domain {short(server_name_of(event.sender))}"
        )
    content = event.content
    if not isinstance(content, Mapping):
        raise AuthError("m.room.create: content is not an object")
    # rule 1.3
    if "room_version" in content:
        declared = content["room_version"]
        if type(declared) is not str or declared not in KNOWN_ROOM_VERSIONS:
            raise AuthError(f"m.room.create: room_version {short(declared)} is not recognised")
    # v1–v10 rule 1.4 (removed in v11: the creator is the sender)
    if not version.implicit_room_creator and "creator" not in content:
        raise AuthError("m.room.create: content has no creator")
    # v12 rule 1.4 (MSC4289)
    if version.privileged_creators and "additional_creators" in content:
        additional = content["additional_creators"]
        if not isinstance(additional, list) or not all(
            is_valid_user_id(user_id) for user_id in additional
        ):
            raise AuthError(
                "m.room.create: additional_creators is not an array of valid user IDs"
            )


# --------------------------------------------------------------------------------------------
# The state-dependent rules


def check_auth(
    event: Event, auth_state: Mapping[tuple[str, str], Event], version: RoomVersion
) -> None:
    """Raise `AuthError` unless `event` passes the authorization rules of `version` against
    `auth_state`; return None when it is allowed.

    Reads only the keys the rules name (create, power levels, join rules, the sender's,
    target's and authoriser's member events, the third-party invite), never the whole state.
    """
    # rule 1
    if event.type == CREATE:
        _check_create(event, version)
        return

    create = auth_state.get(CREATE_KEY)
    if version.room_id_is_create_event_hash:
        # v12 rule 2: the room ID is an accepted create event's ID with sigil `!` (the
        # caller's auth state holds only accepted events).
        if create is None or not event.room_id.startswith("!"):
            raise AuthError(f"room ID {short(event.room_id)}: no create event for this room")
        if create.event_id[1:] != event.room_id[1:]:
            raise AuthError(
                f"room ID {short(event.room_id)} is not the ID of create event "
                f"{create.event_id}"
            )
    elif create is None:
        # v1–v11 rule 2.4
        raise AuthError("m.room.create: no create event in the auth events or state")

    # v1–v11 rule 3, v12 rule 4: m.federate
    create_content = create.content
    if (
        isinstance(create_content, Mapping)
        and create_content.get("m.federate") is False
        and server_name_of(event.sender) != server_name_of(create.sender)
    ):
        raise AuthError(
            f"m.federate: the room does not federate and sender {short(event.sender)} is not "
            f"from {short(server_name_of(create.sender))}"
        )

    # v1–v5 rule 4: m.room.aliases
    if version.special_case_aliases_auth and event.type == ALIASES:
        if event.state_key is None:
            raise AuthError("m.room.aliases: no state_key")
        if event.state_key != server_name_of(event.sender):
            raise AuthError(
                f"m.room.aliases: state_key {short(event.state_key)} is not the sender's "
                f"domain {short(server_name_of(event.sender))}"
            )
        return

    # v1–v5 rule 5, v6–v11 rule 4, v12 rule 5
    if event.type == MEMBER:
        check_member(event, create, auth_state, version)
        return

    # v1–v5 rule 6, v6–v11 rule 5, v12 rule 6
    sender = event.sender
    if membership_of(auth_state.get((MEMBER, sender))) != JOIN:
        raise AuthError(f"{short(event.type)}: sender {short(sender)} is not joined to the room")

    pl_event = auth_state.get(POWER_LEVELS_KEY)
    levels = power_levels_of(pl_event, version)
    sender_level = user_power_level(sender, auth_state, version)

    # v1–v5 rule 7, v6–v11 rule 6, v12 rule 7
    if event.type == THIRD_PARTY_INVITE:
        if sender_level < levels.invite:
            raise AuthError(
                f"m.room.third_party_invite: sender level {sender_level} is below the invite "
                f"level {levels.invite}"
            )
        return

    # v1–v5 rule 8, v6–v11 rule 7, v12 rule 8
    required = levels.events.get(event.type)
    if required is None:
        required = levels.state_default if event.state_key is not None else levels.events_default
    if required > sender_level:
        raise AuthError(
            f"{short(event.type)}: sender level {sender_level} is below the required level "
            f"{required}"
        )

    # v1–v5 rule 9, v6–v11 rule 8, v12 rule 9
    state_key = event.state_key
    if state_key is not None and state_key.startswith("@") and state_key != sender:
        raise AuthError(
            f"{short(event.type)}: state_key {short(state_key)} starts with @ and is not the "
            "sender"
        )

    # v1–v5 rule 10, v6–v11 rule 9, v12 rule 10
    if event.type == POWER_LEVELS:
        check_power_levels_change(event, create, pl_event, sender_level, version)
        return

    # v1–v2 rule 11: redactions (from v3 a redaction is checked when it is applied instead)
    if version.redaction_auth_rule and event.type == REDACTION:
        if sender_level >= levels.redact:
            return
        redacts = event.redacts
        if type(redacts) is str and server_name_of(redacts) == server_name_of(event.event_id):
            return
        raise AuthError(
            f"m.room.redaction: sender level {sender_level} is below the redact level "
            f"{levels.redact} and {short(redacts)} is not from the redaction's server"
        )
    # otherwise, allow
