"""The m.room.member rules (v1–v5 rule 5, v6–v11 rule 4, v12 rule 5), by membership: join,
invite, leave, ban, knock; the restricted-join authoriser (v8+)."""

from __future__ import annotations

from collections.abc import Mapping

from processor.errors import AuthError
from processor.matrix.auth.common import (
    AUTHORISER,
    BAN,
    INVITE,
    JOIN,
    JOIN_RULES_KEY,
    KNOCK,
    LEAVE,
    MEMBER,
    membership_of,
    short,
)
from processor.matrix.events import Event, server_name_of
from processor.matrix.power_levels import (
    POWER_LEVELS_KEY,
    creator_level_user,
    is_valid_user_id,
    power_levels_of,
    user_power_level,
)
from processor.matrix.room_versions import RoomVersion
from processor.matrix.third_party_invite import check_third_party_invite


def _join_rule(auth_state: Mapping[tuple[str, str], Event]) -> object:
    """The room's join rule. With no join-rules event (or no `join_rule` in it) the rules'
    text falls through to "otherwise, reject" for every join but the creator's; the reference
    server reads the room as `invite` then, which also lets an invited or joined user join,
    and we match it (interoperability, docs/interoperability.md)."""
    join_rules = auth_state.get(JOIN_RULES_KEY)
    if join_rules is None:
        return INVITE
    content = join_rules.content
    if not isinstance(content, Mapping):
        return None
    return content.get("join_rule", INVITE)


def check_member(
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
        raise AuthError(f"m.room.member: membership {short(membership)} is not a string")
    sender = event.sender

    # v8–v11 4.2, v12 5.2: the authorising server must have signed the event.
    if version.restricted_join and AUTHORISER in content:
        authoriser = content[AUTHORISER]
        if not is_valid_user_id(authoriser):
            raise AuthError(
                f"m.room.member {short(membership)}: {AUTHORISER} {short(authoriser)} is "
                "not a valid user ID"
            )
        if not _signed_by(event, server_name_of(authoriser)):
            raise AuthError(
                f"m.room.member {short(membership)}: not signed by "
                f"{server_name_of(authoriser)}, the server of {AUTHORISER} {authoriser}"
            )

    sender_membership = membership_of(auth_state.get((MEMBER, sender)))

    if membership == JOIN:
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
        if sender_membership == BAN:
            raise AuthError("m.room.member join: sender is banned")
        join_rule = _join_rule(auth_state)
        # 5.2.4 / 4.3.4 / 5.3.4 (knock from v7)
        if join_rule == INVITE or (version.knock and join_rule == KNOCK):
            if sender_membership in (INVITE, JOIN):
                return
            raise AuthError(
                f"m.room.member join: join rule is {join_rule} and sender is not invited"
            )
        # v8+ 4.3.5 / 5.3.5: restricted (v8+) and knock_restricted (v10+)
        if (version.restricted_join and join_rule == "restricted") or (
            version.knock_restricted and join_rule == "knock_restricted"
        ):
            if sender_membership in (INVITE, JOIN):
                return
            _check_join_authoriser(content, auth_state, version, join_rule)
            return
        # 5.2.5 / 4.3.6 / 5.3.6
        if join_rule == "public":
            return
        # 5.2.6 / 4.3.7 / 5.3.7
        raise AuthError(
            f"m.room.member join: join rule {short(join_rule)} does not allow this join"
        )

    if membership == INVITE:
        # 5.3.1 / 4.4.1 / 5.4.1: third-party invites (allowed or rejected right here)
        if "third_party_invite" in content:
            check_third_party_invite(event, auth_state)
            return
        # 5.3.2 / 4.4.2 / 5.4.2
        if sender_membership != JOIN:
            raise AuthError("m.room.member invite: sender is not joined to the room")
        # 5.3.3 / 4.4.3 / 5.4.3
        target_membership = membership_of(auth_state.get((MEMBER, state_key)))
        if target_membership in (JOIN, BAN):
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

    if membership == LEAVE:
        # 5.4.1 / 4.5.1 / 5.5.1: leaving, or rejecting an invite (or a knock, v7+)
        if sender == state_key:
            if sender_membership in (INVITE, JOIN) or (
                version.knock and sender_membership == KNOCK
            ):
                return
            raise AuthError(
                f"m.room.member leave: sender's membership is {short(sender_membership)}, "
                "not one that can be left"
            )
        # 5.4.2 / 4.5.2 / 5.5.2
        if sender_membership != JOIN:
            raise AuthError("m.room.member leave: sender is not joined to the room")
        levels = power_levels_of(auth_state.get(POWER_LEVELS_KEY), version)
        sender_level = user_power_level(sender, auth_state, version)
        target_level = user_power_level(state_key, auth_state, version)
        # 5.4.3 / 4.5.3 / 5.5.3: unbanning needs the ban level (as well as the kick level)
        target_membership = membership_of(auth_state.get((MEMBER, state_key)))
        if target_membership == BAN and sender_level < levels.ban:
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

    if membership == BAN:
        # 5.5.1 / 4.6.1 / 5.6.1
        if sender_membership != JOIN:
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

    if membership == KNOCK and version.knock:
        # v7–v11 4.7.1, v12 5.7.1 (knock_restricted from v10)
        join_rule = _join_rule(auth_state)
        if not (
            join_rule == KNOCK or (version.knock_restricted and join_rule == "knock_restricted")
        ):
            raise AuthError(
                f"m.room.member knock: join rule {short(join_rule)} does not allow knocking"
            )
        # 4.7.2 / 5.7.2
        if sender != state_key:
            raise AuthError("m.room.member knock: sender is not the state_key")
        # 4.7.3 / 5.7.3
        if sender_membership not in (BAN, INVITE, JOIN):
            return
        # 4.7.4 / 5.7.4
        raise AuthError(f"m.room.member knock: sender is already {sender_membership}")

    # 5.6 / 4.8 / 5.8
    raise AuthError(f"m.room.member: unknown membership {short(membership)}")


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
    authoriser = content.get(AUTHORISER)
    context = f"m.room.member join ({join_rule})"
    if authoriser is None:
        raise AuthError(f"{context}: sender is not invited and there is no {AUTHORISER}")
    if type(authoriser) is not str:  # already validated by 4.2, kept for the type checker
        raise AuthError(f"{context}: {AUTHORISER} is not a user ID")
    if membership_of(auth_state.get((MEMBER, authoriser))) != JOIN:
        raise AuthError(f"{context}: authorising user {authoriser} is not joined to the room")
    level = user_power_level(authoriser, auth_state, version)
    invite_level = power_levels_of(auth_state.get(POWER_LEVELS_KEY), version).invite
    if level < invite_level:
        raise AuthError(
            f"{context}: authorising user {authoriser} is at level {level}, below the invite "
            f"level {invite_level}"
        )
