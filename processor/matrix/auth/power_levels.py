"""Changes to m.room.power_levels (v1–v5 rule 10, v6–v11 rule 9, v12 rule 10)."""

from __future__ import annotations

from collections.abc import Mapping

from processor.errors import AuthError
from processor.matrix.events import Event
from processor.matrix.power_levels import (
    is_creator,
    power_levels_of,
    validate_power_levels_content,
)
from processor.matrix.room_versions import RoomVersion


def check_power_levels_change(
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
