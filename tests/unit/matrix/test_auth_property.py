"""Property: for any event and any auth state, the auth functions return or raise AuthError —
never another exception — in every room version.

Events are drawn around the shapes the rules read (the auth event types, memberships, join
rules, power-level contents, third-party invites, authorisers), with arbitrary JSON values
mixed in wherever the rules look, so malformed content is exercised as much as well-formed.
"""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from processor.errors import AuthError
from processor.matrix.auth import auth_types_for_event, check_auth, check_auth_events_shape
from processor.matrix.events import Event
from processor.matrix.room_versions import KNOWN_ROOM_VERSIONS, RoomVersion
from tests.unit.matrix.test_auth_fixtures import Room

USERS = ["@alice:a.example", "@bob:b.example", "@carol:c.example", "alice", "@", ""]
TYPES = [
    "m.room.create",
    "m.room.member",
    "m.room.power_levels",
    "m.room.join_rules",
    "m.room.third_party_invite",
    "m.room.aliases",
    "m.room.redaction",
    "m.room.message",
    "m.room.topic",
]
MEMBERSHIPS = ["join", "invite", "leave", "ban", "knock", "other"]
JOIN_RULES = ["public", "invite", "knock", "restricted", "knock_restricted", "private"]
KEYS = [
    "membership",
    "join_rule",
    "creator",
    "room_version",
    "additional_creators",
    "m.federate",
    "users",
    "users_default",
    "events",
    "events_default",
    "state_default",
    "ban",
    "kick",
    "redact",
    "invite",
    "notifications",
    "third_party_invite",
    "join_authorised_via_users_server",
    "public_key",
    "public_keys",
    "signed",
    "mxid",
    "token",
    "signatures",
]

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**64), max_value=2**64),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=8),
    st.sampled_from(USERS + MEMBERSHIPS + JOIN_RULES + ["50", " +7 ", "1e3"]),
)
json_values: st.SearchStrategy[Any] = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(st.sampled_from(KEYS + USERS + TYPES) | st.text(max_size=4), children,
                        max_size=4),
    ),
    max_leaves=8,
)


@st.composite
def contents(draw: st.DrawFn) -> dict[str, Any]:
    content: dict[str, Any] = draw(st.dictionaries(st.sampled_from(KEYS), json_values, max_size=6))
    if draw(st.booleans()):
        content["membership"] = draw(st.sampled_from(MEMBERSHIPS) | json_values)
    if draw(st.booleans()):
        content["join_rule"] = draw(st.sampled_from(JOIN_RULES))
    if draw(st.booleans()):
        content["users"] = draw(st.dictionaries(st.sampled_from(USERS), json_values, max_size=3))
    if draw(st.booleans()):
        signed = {"mxid": draw(st.sampled_from(USERS)), "token": draw(st.sampled_from(["t", 5]))}
        if draw(st.booleans()):
            signed["signatures"] = {"id": {"ed25519:0": draw(st.text(max_size=8))}}
        content["third_party_invite"] = {"signed": signed}
    return content


_fixed_pdus: list[dict[str, Any]] = [
    {},
    {"room_id": "!r"},
    {"signatures": {"b.example": {"k": "s"}}},
]
pdus: st.SearchStrategy[dict[str, Any]] = st.one_of(
    st.sampled_from(_fixed_pdus),
    st.dictionaries(st.sampled_from(["signatures", "room_id"]), json_values, max_size=2),
)


@st.composite
def events(draw: st.DrawFn, state: bool = False) -> Event:
    event_type = draw(st.sampled_from(TYPES) | st.text(max_size=6))
    state_key: str | None
    if state:
        state_key = draw(st.sampled_from(["", *USERS, "t"]))
    else:
        state_key = draw(st.none() | st.sampled_from(["", *USERS, "t"]) | st.text(max_size=4))
    return Event(
        event_id=draw(
            st.sampled_from(["$create", "$a:a.example", "$b", "$"]) | st.text(max_size=5)
        ),
        room_id=draw(st.sampled_from(["!create", "!r:a.example", "", "!"])),
        sender=draw(st.sampled_from(USERS) | st.text(max_size=6)),
        type=event_type,
        state_key=state_key,
        content=draw(contents()),
        prev_event_ids=tuple(draw(st.lists(st.sampled_from(["$create", "$x"]), max_size=2))),
        auth_event_ids=(),
        depth=1,
        origin_server_ts=0,
        redacts=draw(st.none() | st.sampled_from(["$x:a.example", "$y", ""])),
        pdu=draw(pdus),
    )


@st.composite
def auth_states(draw: st.DrawFn) -> dict[tuple[str, str], Event]:
    state: dict[tuple[str, str], Event] = {}
    for event in draw(st.lists(events(state=True), max_size=8)):
        assert event.state_key is not None
        state[(event.type, event.state_key)] = event
    return state


versions = st.sampled_from(sorted(KNOWN_ROOM_VERSIONS.values(), key=lambda v: int(v.id)))


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(event=events(), auth_state=auth_states(), version=versions)
def test_check_auth_returns_or_raises_auth_error(
    event: Event, auth_state: dict[tuple[str, str], Event], version: RoomVersion
) -> None:
    try:
        check_auth(event, auth_state, version)
    except AuthError as e:
        assert str(e)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    event=events(),
    auth_events=st.lists(events(), max_size=5),
    version=versions,
    rejected=st.booleans(),
)
def test_shape_and_selection_return_or_raise_auth_error(
    event: Event, auth_events: list[Event], version: RoomVersion, rejected: bool
) -> None:
    keys = auth_types_for_event(event, version)
    assert all(isinstance(t, str) and isinstance(k, str) for t, k in keys)
    assert len(set(keys)) == len(keys)
    try:
        check_auth_events_shape(
            event, auth_events, version, rejected=(lambda _: True) if rejected else None
        )
    except AuthError as e:
        assert str(e)


# A well-formed room whose state events get arbitrary content: reaches the deep rules (power
# level comparisons, restricted joins, third-party invites) with malformed state.
ROOM_KEYS = [
    ("m.room.create", ""),
    ("m.room.power_levels", ""),
    ("m.room.join_rules", ""),
    ("m.room.member", "@alice:a.example"),
    ("m.room.member", "@bob:b.example"),
    ("m.room.member", "@carol:b.example"),
    ("m.room.member", "@eve:c.example"),
]


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    version_id=st.sampled_from(sorted(KNOWN_ROOM_VERSIONS, key=int)),
    corrupt=st.dictionaries(st.sampled_from(ROOM_KEYS), contents(), max_size=3),
    event_type=st.sampled_from(TYPES),
    sender=st.sampled_from(["@alice:a.example", "@bob:b.example", "@carol:b.example"]),
    target=st.sampled_from(["@bob:b.example", "@carol:b.example", "@dave:c.example"]),
    content=contents(),
)
def test_check_auth_on_a_corrupted_room(
    version_id: str,
    corrupt: dict[tuple[str, str], dict[str, Any]],
    event_type: str,
    sender: str,
    target: str,
    content: dict[str, Any],
) -> None:
    room = Room(version_id)
    room.set_state("m.room.third_party_invite", "t", sender, {"public_key": "AAAA"})
    for (corrupt_type, corrupt_key), new_content in corrupt.items():
        room.set_state(corrupt_type, corrupt_key, sender, new_content)
    key: str | None = None
    if event_type == "m.room.member":
        key = target
    elif event_type != "m.room.message":
        key = ""
    event = room.event(event_type, sender, key, content)
    try:
        room.check(event)
    except AuthError as e:
        assert str(e)
