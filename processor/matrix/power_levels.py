"""Power levels as the authorization rules read them: parsing, defaults, creators.

Owns the reading of `m.room.power_levels` and `m.room.create` for authorization:

* `user_power_level(user_id, auth_state, version)` and
  `required_power_level(event_type, is_state, auth_state, version)`, also used by state
  resolution for its power ordering;
* `validate_power_levels_content(content, version)`: the value checks of the power-levels
  rule (v1–v5 rule 10.1, v6–v11 rules 9.1–9.3, v12 rules 10.1–10.3);
* `CREATOR_POWER_LEVEL`: what a v12 room creator's power level reads as.

Defaults (client-server spec, `m.room.power_levels`): `users_default` 0, `events_default` 0,
`state_default` 50, `ban`/`kick`/`redact` 50, `invite` 0. With no power-levels event at all
every event needs level 0 (`state_default` and `events_default` are 0 then), the room creator
has 100 (v1–v11) and everyone else 0. In v12 (MSC4289) the creators (the create event's
sender plus `content.additional_creators`) always have `CREATOR_POWER_LEVEL`.

Value formats, by room version:

* v1–v5: integers, strings holding an integer (`" +0100 "`), and floats (truncated toward
  zero; non-finite floats are invalid) — the spec's "stringy" and "floaty" power levels;
* v6–v9: integers and integer strings (canonical JSON is strict, so no floats);
* v10+: integers only.

Booleans are never levels (JSON `true` is not an integer).

Parsing cost: the rules read the power-levels event on every check, so its content is parsed
once per event and kept in a small bounded cache (`_CACHE_SIZE` entries) keyed by event ID and
parse mode. An entry also holds a reference to the content object it was parsed from and is
used only while `event.content is` that object, so two different events that share an ID (a
malformed v1–v2 event, or test fixtures) can never read each other's levels. (Event content
is treated as immutable, as everywhere in the core.) `Event` is a frozen slotted dataclass
and its content is an unhashable mapping, so neither memoising on the object nor
`functools.lru_cache` on the event is possible; this cache is the one piece of module state
here and only ever changes speed, never results.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import re
from collections.abc import Mapping
from typing import Any, Final, TypeGuard

from processor.errors import AuthError
from processor.matrix.events import Event
from processor.matrix.room_versions import RoomVersion

__all__ = [
    "CREATE_KEY",
    "CREATOR_POWER_LEVEL",
    "NO_POWER_LEVELS",
    "POWER_LEVELS_KEY",
    "PowerLevels",
    "creator_level_user",
    "is_creator",
    "is_valid_user_id",
    "parse_level",
    "power_levels_of",
    "required_power_level",
    "user_power_level",
    "validate_power_levels_content",
]

CREATE_KEY: Final = ("m.room.create", "")
POWER_LEVELS_KEY: Final = ("m.room.power_levels", "")

#: The power level of a v12 room creator (MSC4289: "infinitely high"). 2**63 is above every
#: level a v12 power-levels event can hold (canonical JSON integers lie within ±(2**53 - 1)),
#: so a creator outranks everyone, and two creators are equal (neither can kick the other).
CREATOR_POWER_LEVEL: Final = 2**63

#: The power level of the room creator when there is no power-levels event (v1–v11).
_CREATOR_DEFAULT_LEVEL: Final = 100

#: The largest integer canonical JSON allows (v6+); larger values make a v6+ event invalid.
_MAX_CANONICAL_INT: Final = 2**53 - 1

_NAMED_LEVELS: Final = (
    "users_default",
    "events_default",
    "state_default",
    "ban",
    "redact",
    "kick",
    "invite",
)
_NAMED_DEFAULTS: Final[Mapping[str, int]] = {
    "users_default": 0,
    "events_default": 0,
    "state_default": 50,
    "ban": 50,
    "redact": 50,
    "kick": 50,
    "invite": 0,
}

# The spec's "stringy" power levels: base 10, optional sign, any leading zeroes, optional
# surrounding whitespace. ASCII only, and no `_` (Python's int() would accept both).
_INT_STRING: Final = re.compile(r"\s*[+-]?[0-9]+\s*", re.ASCII)

_CACHE_SIZE: Final = 1024

# parse modes
_INTEGERS_ONLY: Final = 0  # v10+
_INTEGERS_AND_STRINGS: Final = 1  # v6–v9
_INTEGERS_STRINGS_AND_FLOATS: Final = 2  # v1–v5


def _parse_mode(version: RoomVersion) -> int:
    if version.integer_power_levels:
        return _INTEGERS_ONLY
    if version.strict_canonical_json:
        return _INTEGERS_AND_STRINGS
    return _INTEGERS_STRINGS_AND_FLOATS


def _parse(value: object, mode: int) -> int | None:
    """A level as an int, or None when `value` is not a level in this parse mode."""
    if type(value) is int:
        return value
    if mode == _INTEGERS_ONLY:
        return None
    if type(value) is str:
        if _INT_STRING.fullmatch(value) is None:
            return None
        return int(value)
    if type(value) is float and mode == _INTEGERS_STRINGS_AND_FLOATS:
        # "floaty" power levels: truncate at the decimal point; non-finite is invalid.
        if not math.isfinite(value):
            return None
        return int(value)
    return None


def parse_level(value: object, version: RoomVersion) -> int | None:
    """A single power level value as `version` reads it, or None when it is not one."""
    return _parse(value, _parse_mode(version))


def is_valid_user_id(value: object) -> TypeGuard[str]:
    """`@localpart:server`, at most 255 bytes (appendices, user identifiers).

    Historical user IDs allow almost any localpart character, so only the shape is checked.
    """
    if type(value) is not str or len(value) < 4 or value[0] != "@":
        return False
    localpart, sep, server = value[1:].partition(":")
    return bool(sep and localpart and server) and len(value.encode()) <= 255


@dataclasses.dataclass(frozen=True, slots=True)
class PowerLevels:
    """The levels of one power-levels event, with defaults applied and bad values skipped."""

    users: Mapping[str, int]
    users_default: int
    events: Mapping[str, int]
    events_default: int
    state_default: int
    ban: int
    redact: int
    kick: int
    invite: int
    notifications: Mapping[str, int]

    def named(self, name: str) -> int:
        value: int = getattr(self, name)
        return value

    def _replace_users(self, users: Mapping[str, int]) -> PowerLevels:
        return dataclasses.replace(self, users=users)


#: What the rules read when there is no power-levels event at all: users other than the
#: creator are at 0, `events_default` is 0. The spec says `state_default` is 0 then too
#: ("Defaults to 50 if unspecified, but 0 if there is no m.room.power_levels event at all");
#: the reference homeserver requires 50 regardless, so a non-creator's state event before
#: the room has power levels is rejected across the network, and here
#: (docs/interoperability.md, "state_default without power levels").
NO_POWER_LEVELS: Final = PowerLevels(
    users={},
    users_default=0,
    events={},
    events_default=0,
    state_default=50,
    ban=50,
    redact=50,
    kick=50,
    invite=0,
    notifications={},
)


def _level_map(value: object, mode: int) -> dict[str, int]:
    if not isinstance(value, Mapping):
        return {}
    out: dict[str, int] = {}
    for key, raw in value.items():
        level = _parse(raw, mode)
        if type(key) is str and level is not None:
            out[key] = level
    return out


def _parse_content(content: Mapping[str, Any], mode: int) -> PowerLevels:
    """Lenient reading of an already accepted event: values that are not levels read as the
    default (a malformed event would have been rejected by rule 10; this only keeps a bad
    state from crashing)."""
    named: dict[str, int] = {}
    for name in _NAMED_LEVELS:
        level = _parse(content.get(name), mode)
        named[name] = _NAMED_DEFAULTS[name] if level is None else level
    return PowerLevels(
        users=_level_map(content.get("users"), mode),
        events=_level_map(content.get("events"), mode),
        notifications=_level_map(content.get("notifications"), mode),
        **named,
    )


_cache: dict[tuple[str, int], tuple[Mapping[str, Any], PowerLevels]] = {}


def power_levels_of(event: Event | None, version: RoomVersion) -> PowerLevels:
    """The parsed levels of a power-levels event (`NO_POWER_LEVELS` for None)."""
    if event is None:
        return NO_POWER_LEVELS
    content = event.content
    if not isinstance(content, Mapping):
        return _parse_content({}, _parse_mode(version))
    mode = _parse_mode(version)
    key = (event.event_id, mode)
    hit = _cache.get(key)
    if hit is not None and hit[0] is content:
        return hit[1]
    parsed = _parse_content(content, mode)
    if len(_cache) >= _CACHE_SIZE:
        # Evict the oldest insertion (dicts keep insertion order): FIFO is enough here, the
        # working set is the handful of power-levels events of the rooms in flight.
        # (Another thread evicting at the same moment only makes the bound approximate.)
        with contextlib.suppress(KeyError, RuntimeError, StopIteration):
            del _cache[next(iter(_cache))]
    _cache[key] = (content, parsed)
    return parsed


def creator_level_user(create: Event, version: RoomVersion) -> object:
    """v1–v11: the single room creator who is at 100 when there is no power-levels event:
    `content.creator` (v1–v10), the create event's sender (v11+, "implicit room creator")."""
    if version.implicit_room_creator:
        return create.sender
    content = create.content
    return content.get("creator") if isinstance(content, Mapping) else None


def is_creator(user_id: str, create: Event | None) -> bool:
    """v12 (MSC4289): the create event's sender or one of `content.additional_creators`."""
    if create is None:
        return False
    if user_id == create.sender:
        return True
    content = create.content
    if not isinstance(content, Mapping):
        return False
    additional = content.get("additional_creators")
    return isinstance(additional, list) and user_id in additional


def user_power_level(
    user_id: str, auth_state: Mapping[tuple[str, str], Event], version: RoomVersion
) -> int:
    """The power level of `user_id` in `auth_state`.

    v12 creators: `CREATOR_POWER_LEVEL`. Otherwise `users[user_id]`, else `users_default`
    (0); with no power-levels event: 100 for the creator (v1–v11), 0 for everyone else.
    """
    create = auth_state.get(CREATE_KEY)
    if version.privileged_creators and is_creator(user_id, create):
        return CREATOR_POWER_LEVEL
    pl_event = auth_state.get(POWER_LEVELS_KEY)
    if pl_event is None:
        if (
            not version.privileged_creators
            and create is not None
            and user_id == creator_level_user(create, version)
        ):
            return _CREATOR_DEFAULT_LEVEL
        return 0
    levels = power_levels_of(pl_event, version)
    return levels.users.get(user_id, levels.users_default)


def required_power_level(
    event_type: str,
    is_state: bool,
    auth_state: Mapping[tuple[str, str], Event],
    version: RoomVersion,
) -> int:
    """The level needed to send an event of `event_type`: `events[event_type]`, else
    `state_default` (50) for state events or `events_default` (0) for others; 0 for
    everything when there is no power-levels event."""
    levels = power_levels_of(auth_state.get(POWER_LEVELS_KEY), version)
    level = levels.events.get(event_type)
    if level is not None:
        return level
    return levels.state_default if is_state else levels.events_default


def _fail(reason: str) -> AuthError:
    return AuthError(f"m.room.power_levels: {reason}")


def _check_value(where: str, value: object, mode: int, version: RoomVersion) -> int:
    level = _parse(value, mode)
    if level is None:
        kind = "an integer" if mode == _INTEGERS_ONLY else "an integer or integer string"
        raise _fail(f"{where} is {value!r}, not {kind}")
    if version.strict_canonical_json and not -_MAX_CANONICAL_INT <= level <= _MAX_CANONICAL_INT:
        # v6+ canonical JSON: integers lie within ±(2**53 - 1).
        raise _fail(f"{where} is {level}, outside the canonical JSON integer range")
    return level


def _check_map(
    name: str, value: object, mode: int, version: RoomVersion, *, user_keys: bool
) -> dict[str, int]:
    if not isinstance(value, Mapping):
        raise _fail(f"{name} is not an object")
    out: dict[str, int] = {}
    for key, raw in value.items():
        if type(key) is not str:
            raise _fail(f"{name} has a non-string key {key!r}")
        if user_keys and not is_valid_user_id(key):
            raise _fail(f"users key {key!r} is not a valid user ID")
        out[key] = _check_value(f"{name}[{key!r}]", raw, mode, version)
    return out


def validate_power_levels_content(
    content: Mapping[str, Any], version: RoomVersion, *, for_comparison: bool = False
) -> PowerLevels:
    """Check the values of a new power-levels event; return its levels or raise AuthError.

    The shape rules (`for_comparison=False`): v10+ (v10–v11 rules 9.1–9.3, v12 rules
    10.1–10.3) the named levels are integers, `events` and `notifications` objects of
    integers, `users` an object of valid user IDs to integers. v1–v9 (v1–v5 rule 10.1, v6–v9
    rule 9.1) check only `users` (valid user IDs to integers or integer strings; floats too in
    v1–v5), so a first power-levels event with an odd `ban` is accepted there, as the
    reference server accepts it; such a value later reads as the default.

    `for_comparison=True` is for the change rules (v1–v5 10.3–10.7, v6–v11 9.5–9.9, v12
    10.6–10.10), which compare every value with the sender's level: a value that is not a
    level in this room version (or an `events` that is not an object) cannot be compared and
    is rejected, where the reference server fails to read it. `notifications` is only read
    from v6 (`limit_notifications_power_levels`).
    """
    mode = _parse_mode(version)
    users = (
        _check_map("users", content["users"], mode, version, user_keys=True)
        if "users" in content
        else {}
    )
    if not (for_comparison or version.integer_power_levels):
        return _parse_content(content, mode)._replace_users(users)
    named: dict[str, int] = {}
    for name in _NAMED_LEVELS:
        if name in content:
            named[name] = _check_value(name, content[name], mode, version)
        else:
            named[name] = _NAMED_DEFAULTS[name]
    events = (
        _check_map("events", content["events"], mode, version, user_keys=False)
        if "events" in content
        else {}
    )
    notifications: dict[str, int] = {}
    if version.limit_notifications_power_levels and "notifications" in content:
        notifications = _check_map(
            "notifications", content["notifications"], mode, version, user_keys=False
        )
    return PowerLevels(users=users, events=events, notifications=notifications, **named)
