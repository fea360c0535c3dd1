"""The Matrix authorization rules for room versions 1–12, and auth-event selection.

Three entry points, all pure:

* `auth_types_for_event(event, version)`: the (type, state_key) pairs the server-server
  spec's "auth events selection" picks for an event;
* `check_auth_events_shape(event, auth_events, version, rejected=None)`: the checks on the
  event's own `auth_events` list that need no room state (rule 2 of v1–v11, rules 2–3 of
  v12: no duplicates, only selected types, none rejected, all in the event's room, the
  create event present (v1–v11) or absent and implied by the room ID (v12));
* `check_auth(event, auth_state, version)`: rule 1 (`m.room.create`) and the state-dependent
  rules, against `auth_state` — a map (type, state_key) → event that the caller picks (the
  event's auth events, the state before it, or the room's current state). In v12 the create
  event is never listed in `auth_events` but is still read from `auth_state`: the caller
  adds it (it is the event whose ID is the room ID).

Both checks raise `AuthError("<rule context>: <reason>")`, never anything else, whatever the
content of the event or the state holds.

Rule numbers differ by version family; comments cite them as "v1–v5 rule 5.2.3" etc.:

* v1–v2: 1 create, 2 auth events, 3 m.federate, 4 aliases, 5 member, 6 sender joined,
  7 third-party invite, 8 required level, 9 `@` state keys, 10 power levels, 11 redaction;
* v3–v5: as v1–v2 without the redaction rule (11 is "otherwise, allow");
* v6–v11: no aliases rule: 4 member, 5 sender joined, 6 third-party invite, 7 required level,
  8 `@` state keys, 9 power levels;
* v12: a new rule 2 (room ID = create event ID), so: 3 auth events, 4 m.federate, 5 member,
  6 sender joined, 7 third-party invite, 8 required level, 9 `@` state keys, 10 power levels.

Signatures: "events must be signed by the server denoted by the sender" and PDU signature
verification are the federation API's job before an event reaches the roomserver. Two rules
are checked here: the `join_authorised_via_users_server` rule (v8+) checks that the PDU carries
a signature from the authorising server (a presence check, as the reference server does; the
signature itself was verified with the PDU), and third-party invites verify the `signed` block
cryptographically (see `processor.matrix.third_party_invite`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from processor.errors import AuthError
from processor.matrix.events import Event, server_name_of
from processor.matrix.power_levels import (
    CREATE_KEY,
    POWER_LEVELS_KEY,
    creator_level_user,
    is_creator,
    is_valid_user_id,
    power_levels_of,
    user_power_level,
    validate_power_levels_content,
)
from processor.matrix.room_versions import KNOWN_ROOM_VERSIONS, RoomVersion
from processor.matrix.third_party_invite import check_third_party_invite

__all__ = [
    "auth_types_for_event",
    "check_auth",
    "check_auth_events_shape",
]

CREATE = "m.room.create"
MEMBER = "m.room.member"
POWER_LEVELS = "m.room.power_levels"
JOIN_RULES = "m.room.join_rules"
THIRD_PARTY_INVITE = "m.room.third_party_invite"
ALIASES = "m.room.aliases"
REDACTION = "m.room.redaction"

JOIN_RULES_KEY = (JOIN_RULES, "")

_JOIN = "join"
_INVITE = "invite"
_LEAVE = "leave"
_BAN = "ban"
_KNOCK = "knock"

_AUTHORISER = "join_authorised_via_users_server"




def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _membership(member_event: Event | None) -> object:
    """The membership of a member event in the state, or None when there is none."""
    if member_event is None:
        return None
    content = member_event.content
    return content.get("membership") if isinstance(content, Mapping) else None


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
    if membership in (_JOIN, _INVITE, _KNOCK):
        types.append(JOIN_RULES_KEY)
    if membership == _INVITE:
        invite = content.get("third_party_invite")
        signed = invite.get("signed") if isinstance(invite, Mapping) else None
        token = signed.get("token") if isinstance(signed, Mapping) else None
        if type(token) is str:
            types.append((THIRD_PARTY_INVITE, token))
    if membership == _JOIN and version.restricted_join:
        authoriser = content.get(_AUTHORISER)
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
        raise AuthError(f"auth_events: room ID {_short(event.room_id)} is not a create event ID")
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
                f"auth_events: {auth_event.event_id} is in room {_short(auth_event.room_id)}, "
                f"not {_short(event.room_id)}"
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
                f"m.room.create: room ID {_short(event.room_id)} is not the create event's ID"
            )
    elif server_name_of(event.room_id) != server_name_of(event.sender):
        # v1–v11 rule 1.2
        raise AuthError(
            f"m.room.create: room ID domain {_short(server_name_of(event.room_id))} does not "
            f"match sender domain {_short(server_name_of(event.sender))}"
        )
    content = event.content
    if not isinstance(content, Mapping):
        raise AuthError("m.room.create: content is not an object")
    # rule 1.3
    if "room_version" in content:
        declared = content["room_version"]
        if type(declared) is not str or declared not in KNOWN_ROOM_VERSIONS:
            raise AuthError(f"m.room.create: room_version {_short(declared)} is not recognised")
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
            raise AuthError(f"room ID {_short(event.room_id)}: no create event for this room")
        if create.event_id[1:] != event.room_id[1:]:
            raise AuthError(
                f"room ID {_short(event.room_id)} is not the ID of create event "
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
            f"m.federate: the room does not federate and sender {_short(event.sender)} is not "
            f"from {_short(server_name_of(create.sender))}"
        )

    # v1–v5 rule 4: m.room.aliases
    if version.special_case_aliases_auth and event.type == ALIASES:
        if event.state_key is None:
            raise AuthError("m.room.aliases: no state_key")
        if event.state_key != server_name_of(event.sender):
            raise AuthError(
                f"m.room.aliases: state_key {_short(event.state_key)} is not the sender's "
                f"domain {_short(server_name_of(event.sender))}"
            )
        return

    # v1–v5 rule 5, v6–v11 rule 4, v12 rule 5
    if event.type == MEMBER:
        _check_member(event, create, auth_state, version)
        return

    # v1–v5 rule 6, v6–v11 rule 5, v12 rule 6
    sender = event.sender
    if _membership(auth_state.get((MEMBER, sender))) != _JOIN:
        raise AuthError(f"{_short(event.type)}: sender {_short(sender)} is not joined to the room")

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
            f"{_short(event.type)}: sender level {sender_level} is below the required level "
            f"{required}"
        )

    # v1–v5 rule 9, v6–v11 rule 8, v12 rule 9
    state_key = event.state_key
    if state_key is not None and state_key.startswith("@") and state_key != sender:
        raise AuthError(
            f"{_short(event.type)}: state_key {_short(state_key)} starts with @ and is not the "
            "sender"
        )

    # v1–v5 rule 10, v6–v11 rule 9, v12 rule 10
    if event.type == POWER_LEVELS:
        _check_power_levels(event, create, pl_event, sender_level, version)
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
            f"{levels.redact} and {_short(redacts)} is not from the redaction's server"
        )
    # otherwise, allow


def _join_rule(auth_state: Mapping[tuple[str, str], Event]) -> object:
    """The room's join rule. With no join-rules event (or no `join_rule` in it) the rules'
    text falls through to "otherwise, reject" for every join but the creator's; the reference
    server reads the room as `invite` then, which also lets an invited or joined user join,
    and we match it (interoperability, docs/interoperability.md)."""
    join_rules = auth_state.get(JOIN_RULES_KEY)
    if join_rules is None:
        return _INVITE
    content = join_rules.content
    if not isinstance(content, Mapping):
        return None
    return content.get("join_rule", _INVITE)


def _check_member(
    event: Event,
    create: Event,
    auth_state: Mapping[tuple[str, str], Event],
    version: RoomVersion,
) -> None:
    # Rule numbers below: "v1–v5 5.x / v6–v11 4.x / v12 5.x".
    state_key = event.state_key
    content = event.content
    # 5.1 / 4.1 / 5.1
    if state_key is None:
        raise AuthError("m.room.member: no state_key")
    if not isinstance(content, Mapping) or "membership" not in content:
        raise AuthError("m.room.member: content has no membership")
    membership = content["membership"]
    if type(membership) is not str:
        raise AuthError(f"m.room.member: membership {_short(membership)} is not a string")
    sender = event.sender

    # v8–v11 4.2, v12 5.2: the authorising server must have signed the event.
    if version.restricted_join and _AUTHORISER in content:
        authoriser = content[_AUTHORISER]
        if not is_valid_user_id(authoriser):
            raise AuthError(
                f"m.room.member {_short(membership)}: {_AUTHORISER} {_short(authoriser)} is "
                "not a valid user ID"
            )
        if not _signed_by(event, server_name_of(authoriser)):
            raise AuthError(
                f"m.room.member {_short(membership)}: not signed by "
                f"{server_name_of(authoriser)}, the server of {_AUTHORISER} {authoriser}"
            )

    sender_membership = _membership(auth_state.get((MEMBER, sender)))

    if membership == _JOIN:
        # v1–v10: 5.2.1 / 4.3.1, v11 4.3.1, v12 5.3.1: the creator's own first join.
        prev = event.prev_event_ids
        if (
            len(prev) == 1
            and prev[0] == create.event_id
            and state_key == creator_level_user(create, version)
        ):
            return
        # 5.2.2 / 4.3.2 / 5.3.2
        if sender != state_key:
            raise AuthError("m.room.member join: sender is not the state_key")
        # 5.2.3 / 4.3.3 / 5.3.3 — before the join rule: a banned user cannot join even with
        # an invite.
        if sender_membership == _BAN:
            raise AuthError("m.room.member join: sender is banned")
        join_rule = _join_rule(auth_state)
        # 5.2.4 / 4.3.4 / 5.3.4 (knock from v7)
        if join_rule == _INVITE or (version.knock and join_rule == _KNOCK):
            if sender_membership in (_INVITE, _JOIN):
                return
            raise AuthError(
                f"m.room.member join: join rule is {join_rule} and sender is not invited"
            )
        # v8+ 4.3.5 / 5.3.5: restricted (v8+) and knock_restricted (v10+)
        if (version.restricted_join and join_rule == "restricted") or (
            version.knock_restricted and join_rule == "knock_restricted"
        ):
            if sender_membership in (_INVITE, _JOIN):
                return
            _check_join_authoriser(content, auth_state, version, join_rule)
            return
        # 5.2.5 / 4.3.6 / 5.3.6
        if join_rule == "public":
            return
        # 5.2.6 / 4.3.7 / 5.3.7
        raise AuthError(
            f"m.room.member join: join rule {_short(join_rule)} does not allow this join"
        )

    if membership == _INVITE:
        # 5.3.1 / 4.4.1 / 5.4.1: third-party invites (allowed or rejected right here)
        if "third_party_invite" in content:
            check_third_party_invite(event, auth_state)
            return
        # 5.3.2 / 4.4.2 / 5.4.2
        if sender_membership != _JOIN:
            raise AuthError("m.room.member invite: sender is not joined to the room")
        # 5.3.3 / 4.4.3 / 5.4.3
        target_membership = _membership(auth_state.get((MEMBER, state_key)))
        if target_membership in (_JOIN, _BAN):
            raise AuthError(f"m.room.member invite: target is already {target_membership}")
        # 5.3.4 / 4.4.4 / 5.4.4
        sender_level = user_power_level(sender, auth_state, version)
        invite_level = power_levels_of(auth_state.get(POWER_LEVELS_KEY), version).invite
        if sender_level >= invite_level:
            return
        # 5.3.5 / 4.4.5 / 5.4.5
        raise AuthError(
            f"m.room.member invite: sender level {sender_level} is below the invite level "
            f"{invite_level}"
        )

    if membership == _LEAVE:
        # 5.4.1 / 4.5.1 / 5.5.1: leaving, or rejecting an invite (or a knock, v7+)
        if sender == state_key:
            if sender_membership in (_INVITE, _JOIN) or (
                version.knock and sender_membership == _KNOCK
            ):
                return
            raise AuthError(
                f"m.room.member leave: sender's membership is {_short(sender_membership)}, "
                "not one that can be left"
            )
        # 5.4.2 / 4.5.2 / 5.5.2
        if sender_membership != _JOIN:
            raise AuthError("m.room.member leave: sender is not joined to the room")
        levels = power_levels_of(auth_state.get(POWER_LEVELS_KEY), version)
        sender_level = user_power_level(sender, auth_state, version)
        target_level = user_power_level(state_key, auth_state, version)
        # 5.4.3 / 4.5.3 / 5.5.3: unbanning needs the ban level (as well as the kick level)
        target_membership = _membership(auth_state.get((MEMBER, state_key)))
        if target_membership == _BAN and sender_level < levels.ban:
            raise AuthError(
                f"m.room.member leave: target is banned and sender level {sender_level} is "
                f"below the ban level {levels.ban}"
            )
        # 5.4.4 / 4.5.4 / 5.5.4
        if sender_level >= levels.kick and target_level < sender_level:
            return
        # 5.4.5 / 4.5.5 / 5.5.5
        raise AuthError(
            f"m.room.member leave: sender level {sender_level} cannot kick a user at "
            f"{target_level} (kick level {levels.kick})"
        )

    if membership == _BAN:
        # 5.5.1 / 4.6.1 / 5.6.1
        if sender_membership != _JOIN:
            raise AuthError("m.room.member ban: sender is not joined to the room")
        levels = power_levels_of(auth_state.get(POWER_LEVELS_KEY), version)
        sender_level = user_power_level(sender, auth_state, version)
        target_level = user_power_level(state_key, auth_state, version)
        # 5.5.2 / 4.6.2 / 5.6.2
        if sender_level >= levels.ban and target_level < sender_level:
            return
        # 5.5.3 / 4.6.3 / 5.6.3
        raise AuthError(
            f"m.room.member ban: sender level {sender_level} cannot ban a user at "
            f"{target_level} (ban level {levels.ban})"
        )

    if membership == _KNOCK and version.knock:
        # v7–v11 4.7.1, v12 5.7.1 (knock_restricted from v10)
        join_rule = _join_rule(auth_state)
        if not (
            join_rule == _KNOCK or (version.knock_restricted and join_rule == "knock_restricted")
        ):
            raise AuthError(
                f"m.room.member knock: join rule {_short(join_rule)} does not allow knocking"
            )
        # 4.7.2 / 5.7.2
        if sender != state_key:
            raise AuthError("m.room.member knock: sender is not the state_key")
        # 4.7.3 / 5.7.3
        if sender_membership not in (_BAN, _INVITE, _JOIN):
            return
        # 4.7.4 / 5.7.4
        raise AuthError(f"m.room.member knock: sender is already {sender_membership}")

    # 5.6 / 4.8 / 5.8
    raise AuthError(f"m.room.member: unknown membership {_short(membership)}")


def _signed_by(event: Event, server_name: str) -> bool:
    signatures = event.pdu.get("signatures")
    if not isinstance(signatures, Mapping):
        return False
    by_server = signatures.get(server_name)
    return isinstance(by_server, Mapping) and len(by_server) > 0


def _check_join_authoriser(
    content: Mapping[str, object],
    auth_state: Mapping[tuple[str, str], Event],
    version: RoomVersion,
    join_rule: str,
) -> None:
    """v8–v11 rule 4.3.5.2, v12 5.3.5.2: `join_authorised_via_users_server` must be a user
    with sufficient permission to invite: joined to the room (an invite needs that, rule
    4.4.2) and at or above the invite level."""
    authoriser = content.get(_AUTHORISER)
    context = f"m.room.member join ({join_rule})"
    if authoriser is None:
        raise AuthError(f"{context}: sender is not invited and there is no {_AUTHORISER}")
    if type(authoriser) is not str:  # already validated by 4.2, kept for the type checker
        raise AuthError(f"{context}: {_AUTHORISER} is not a user ID")
    if _membership(auth_state.get((MEMBER, authoriser))) != _JOIN:
        raise AuthError(f"{context}: authorising user {authoriser} is not joined to the room")
    level = user_power_level(authoriser, auth_state, version)
    invite_level = power_levels_of(auth_state.get(POWER_LEVELS_KEY), version).invite
    if level < invite_level:
        raise AuthError(
            f"{context}: authorising user {authoriser} is at level {level}, below the invite "
            f"level {invite_level}"
        )


def _check_power_levels(
    event: Event,
    create: Event,
    pl_event: Event | None,
    sender_level: int,
    version: RoomVersion,
) -> None:
    """v1–v5 rule 10, v6–v11 rule 9, v12 rule 10: changes to the power levels."""
    content = event.content
    if not isinstance(content, Mapping):
        raise AuthError("m.room.power_levels: content is not an object")
    # v10–v11 9.1–9.3, v12 10.1–10.3 (v1–v9: 10.1 / 9.1, users only; see the validator)
    new = validate_power_levels_content(content, version)
    # v12 10.4 (MSC4289): creators cannot be listed in users
    if version.privileged_creators:
        for user_id in new.users:
            if is_creator(user_id, create):
                raise AuthError(
                    f"m.room.power_levels: users lists {user_id}, a room creator, whose level "
                    "cannot be set"
                )
    # v1–v5 10.2, v6–v11 9.4, v12 10.5
    if pl_event is None:
        return
    # Every value is compared below: each must be a level (v1–v9 checked only users so far).
    new = validate_power_levels_content(content, version, for_comparison=True)
    old = power_levels_of(pl_event, version)
    old_content = pl_event.content if isinstance(pl_event.content, Mapping) else {}

    # v1–v5 10.3, v6–v11 9.5, v12 10.6: the named levels, where added, changed or removed.
    for name in ("users_default", "events_default", "state_default", "ban", "redact", "kick",
                 "invite"):
        old_value = old.named(name) if name in old_content else None
        new_value = new.named(name) if name in content else None
        if old_value == new_value:
            continue
        if old_value is not None and old_value > sender_level:
            raise AuthError(
                f"m.room.power_levels: cannot change {name} from {old_value}, above the "
                f"sender's level {sender_level}"
            )
        if new_value is not None and new_value > sender_level:
            raise AuthError(
                f"m.room.power_levels: cannot set {name} to {new_value}, above the sender's "
                f"level {sender_level}"
            )

    # v1–v5 10.4–10.5 (events), v6–v11 9.6–9.7, v12 10.7–10.8 (events and notifications)
    maps: list[tuple[str, Mapping[str, int], Mapping[str, int]]] = [
        ("events", old.events, new.events)
    ]
    if version.limit_notifications_power_levels:
        maps.append(("notifications", old.notifications, new.notifications))
    for name, old_map, new_map in maps:
        for key in old_map.keys() | new_map.keys():
            old_value = old_map.get(key)
            new_value = new_map.get(key)
            if old_value == new_value:
                continue
            if old_value is not None and old_value > sender_level:
                raise AuthError(
                    f"m.room.power_levels: cannot change {name}[{key!r}] from {old_value}, "
                    f"above the sender's level {sender_level}"
                )
            if new_value is not None and new_value > sender_level:
                raise AuthError(
                    f"m.room.power_levels: cannot set {name}[{key!r}] to {new_value}, above "
                    f"the sender's level {sender_level}"
                )

    # v1–v5 10.6–10.7, v6–v11 9.8–9.9, v12 10.9–10.10: users
    sender = event.sender
    for user_id in old.users.keys() | new.users.keys():
        old_value = old.users.get(user_id)
        new_value = new.users.get(user_id)
        if old_value == new_value:
            continue
        if user_id != sender and old_value is not None and old_value >= sender_level:
            raise AuthError(
                f"m.room.power_levels: cannot change the level of {user_id} from {old_value}, "
                f"not below the sender's level {sender_level}"
            )
        if new_value is not None and new_value > sender_level:
            raise AuthError(
                f"m.room.power_levels: cannot set the level of {user_id} to {new_value}, above "
                f"the sender's level {sender_level}"
            )
