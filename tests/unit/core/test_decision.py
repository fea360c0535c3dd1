"""The per-event decision's pure functions (processor.core.decision), against the spec.

- state after an event (room version pages, "State resolution": the state after an event is
  the state before it plus the event, when it is an accepted state event);
- forward extremities (the events with no children yet);
- the current-state delta a consumer applies (docs/architecture.md §3: removes, then adds);
- step 4 of "Checks performed on receipt of a PDU" (server-server API): the auth rules
  against the event's own auth events, including rejected auth events and the v12 create
  event implied by the room ID (MSC4291);
- redactions: v1–v2 auth rule vs v3+ "Handling redactions".
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from processor.core.decision import (
    auth_keys,
    auth_verdict_key,
    check_against_auth_events,
    check_against_state,
    forward_extremities_after,
    redaction_is_valid,
    state_after,
    state_delta,
    state_delta_of_changes,
)
from processor.matrix.events import Event
from processor.matrix.room_versions import room_version
from processor.nids import EventNID, EventTypeNID, StateKeyNID, StateKeyTuple

ALICE = "@alice:a.example"
BOB = "@bob:b.example"
CAROL = "@carol:b.example"
DAVE = "@dave:d.example"
ALL_VERSIONS = [str(n) for n in range(1, 13)]


def _key(t: int, s: int) -> StateKeyTuple:
    return (EventTypeNID(t), StateKeyNID(s))


N = EventNID
TOPIC, NAME, MEMBER_A = _key(10, 1), _key(11, 1), _key(5, 20)


# ---------------------------------------------------------------- state_after


def test_state_after_adds_an_accepted_state_event() -> None:
    before = {TOPIC: N(1)}
    after = state_after(before, NAME, N(2), rejected=False)
    assert after == {TOPIC: N(1), NAME: N(2)}
    assert before == {TOPIC: N(1)}, "the state before is not modified"


def test_state_after_replaces_the_event_at_its_key() -> None:
    assert state_after({TOPIC: N(1), NAME: N(2)}, TOPIC, N(3), rejected=False) == {
        TOPIC: N(3), NAME: N(2),
    }


@pytest.mark.parametrize(
    ("key", "rejected"), [(None, False), (None, True), (TOPIC, True)],
    ids=["message", "rejected message", "rejected state event"],
)
def test_state_after_is_the_state_before_itself(key: StateKeyTuple | None, rejected: bool) -> None:
    """A message or a rejected event changes no state; the same object is returned so
    unchanged state is shared."""
    before = {TOPIC: N(1)}
    assert state_after(before, key, N(5), rejected) is before


# ---------------------------------------------------------------- forward extremities


def test_new_event_replaces_the_extremities_it_references() -> None:
    assert forward_extremities_after((N(1), N(2), N(3)), [N(1), N(3)], N(9)) == (N(2), N(9))


def test_event_referencing_no_extremity_becomes_another_extremity() -> None:
    """A fork: the new event's prev event is not a tip (its parent already has a child)."""
    assert forward_extremities_after((N(4),), [N(2)], N(9)) == (N(4), N(9))


def test_first_event_is_the_only_extremity() -> None:
    assert forward_extremities_after((), [], N(1)) == (N(1),)


def test_extremities_never_list_the_event_twice() -> None:
    assert forward_extremities_after((N(9), N(2)), [N(2)], N(9)) == (N(9),)


# ---------------------------------------------------------------- state delta


def _apply(
    state: Mapping[StateKeyTuple, EventNID],
    removed: Mapping[StateKeyTuple, EventNID],
    added: Mapping[StateKeyTuple, EventNID],
) -> dict[StateKeyTuple, EventNID]:
    """A consumer: removes, then adds."""
    out = {k: v for k, v in state.items() if removed.get(k) != v}
    out.update(added)
    return out


STATE_PAIRS = [
    ({}, {TOPIC: N(1)}),
    ({TOPIC: N(1)}, {TOPIC: N(2)}),
    ({TOPIC: N(1), NAME: N(2)}, {NAME: N(2)}),
    ({TOPIC: N(1), NAME: N(2)}, {MEMBER_A: N(3)}),
    ({TOPIC: N(1)}, {TOPIC: N(1)}),
]


@pytest.mark.parametrize(("old", "new"), STATE_PAIRS)
def test_state_delta_applied_gives_the_new_state(
    old: dict[StateKeyTuple, EventNID], new: dict[StateKeyTuple, EventNID]
) -> None:
    removed, added = state_delta(old, new)
    assert _apply(old, removed, added) == new
    # Minimal: nothing unchanged is listed.
    assert all(new.get(k) != v for k, v in removed.items())
    assert all(old.get(k) != v for k, v in added.items())


def test_state_delta_of_the_same_state_is_empty() -> None:
    state = {TOPIC: N(1)}
    assert state_delta(state, state) == ({}, {})


@pytest.mark.parametrize(
    ("old", "changes"),
    [({}, {TOPIC: N(1)}), ({TOPIC: N(1)}, {TOPIC: N(2)}), ({TOPIC: N(1)}, {TOPIC: N(1)}),
     ({TOPIC: N(1), NAME: N(2)}, {NAME: N(3), MEMBER_A: N(4)})],
)
def test_state_delta_of_changes_matches_the_full_comparison(
    old: dict[StateKeyTuple, EventNID], changes: dict[StateKeyTuple, EventNID]
) -> None:
    new = {**old, **changes}
    assert state_delta_of_changes(old, changes) == state_delta(old, new)


# ---------------------------------------------------------------- events for the auth rules


class Room:
    """Events of one room for one version: just the fields the auth rules read."""

    def __init__(self, version_id: str) -> None:
        self.version = room_version(version_id)
        self.count = 0
        content: dict[str, Any] = {"room_version": version_id}
        if not self.version.implicit_room_creator:
            content["creator"] = ALICE
        if self.version.room_id_is_create_event_hash:
            self.room_id = "!createhash"
            self.create = self.event(
                "m.room.create", ALICE, content, "", event_id="$createhash", auth=()
            )
        else:
            self.room_id = "!room:a.example"
            self.create = self.event("m.room.create", ALICE, content, "", auth=())
        self.alice = self.event("m.room.member", ALICE, {"membership": "join"}, ALICE,
                                auth=self.ids(self.create))
        users = {} if self.version.privileged_creators else {ALICE: 100}
        self.power = self.event("m.room.power_levels", ALICE, {"users": users}, "",
                                auth=self.ids(self.create, self.alice))
        self.join_rules = self.event("m.room.join_rules", ALICE, {"join_rule": "public"}, "",
                                     auth=self.ids(self.create, self.alice, self.power))

    def ids(self, *events: Event) -> tuple[str, ...]:
        """auth_events as listed: never the create event in v12 (MSC4291)."""
        return tuple(
            e.event_id for e in events
            if not (self.version.create_event_implicit_in_auth_events
                    and e.type == "m.room.create")
        )

    def event(
        self,
        event_type: str,
        sender: str,
        content: Mapping[str, Any],
        state_key: str | None = None,
        *,
        auth: Sequence[str],
        event_id: str | None = None,
        redacts: str | None = None,
    ) -> Event:
        self.count += 1
        return Event(
            event_id=event_id or f"$e{self.count}:{sender.partition(':')[2]}",
            room_id=self.room_id,
            sender=sender,
            type=event_type,
            state_key=state_key,
            content=dict(content),
            prev_event_ids=(),
            auth_event_ids=tuple(auth),
            depth=self.count,
            origin_server_ts=self.count,
            redacts=redacts,
            pdu={},
        )

    def auth_list(self, *events: Event) -> list[Event]:
        """What the handler hands over: the listed auth events (no v12 create)."""
        return [e for e in events if e.event_id in self.ids(*events)]

    def implied(self) -> Event | None:
        return self.create if self.version.create_event_implicit_in_auth_events else None

    def state(self, *extra: Event) -> dict[tuple[str, str], Event]:
        events = [self.create, self.alice, self.power, self.join_rules, *extra]
        return {(e.type, e.state_key): e for e in events if e.state_key is not None}


def _bob_join(room: Room) -> Event:
    return room.event(
        "m.room.member", BOB, {"membership": "join"}, BOB,
        auth=room.ids(room.create, room.power, room.join_rules),
    )


# ---------------------------------------------------------------- step 4


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_event_passes_against_its_own_auth_events(version: str) -> None:
    room = Room(version)
    join = _bob_join(room)
    reason = check_against_auth_events(
        join, room.auth_list(room.create, room.power, room.join_rules), [], room.version,
        room.implied(),
    )
    assert reason is None


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_event_with_a_rejected_auth_event_is_rejected(version: str) -> None:
    """Checks on receipt, step 4: auth events that were themselves rejected reject the
    event (v1–v11 rule 2.3, v12 rule 3.3)."""
    room = Room(version)
    join = _bob_join(room)
    reason = check_against_auth_events(
        join, room.auth_list(room.create, room.power, room.join_rules),
        [room.join_rules.event_id, room.power.event_id, room.join_rules.event_id],
        room.version, room.implied(),
    )
    assert reason is not None
    assert room.join_rules.event_id in reason and room.power.event_id in reason


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_event_failing_the_rules_on_its_auth_events_is_rejected(version: str) -> None:
    """Dave sends a message citing no membership of his: not in the room."""
    room = Room(version)
    message = room.event("m.room.message", DAVE, {"body": "hi"},
                         auth=room.ids(room.create, room.power))
    reason = check_against_auth_events(
        message, room.auth_list(room.create, room.power), [], room.version, room.implied()
    )
    assert reason is not None and DAVE in reason


@pytest.mark.parametrize("version", [str(n) for n in range(1, 12)])
def test_v1_v11_the_create_event_must_be_listed(version: str) -> None:
    room = Room(version)
    join = room.event("m.room.member", BOB, {"membership": "join"}, BOB,
                      auth=(room.power.event_id, room.join_rules.event_id))
    reason = check_against_auth_events(join, [room.power, room.join_rules], [], room.version)
    assert reason is not None and "m.room.create" in reason


def test_v12_the_create_event_is_implied_by_the_room_id() -> None:
    """MSC4291: the create event is never in auth_events; the caller supplies it."""
    room = Room("12")
    join = _bob_join(room)
    listed = [room.power, room.join_rules]
    assert check_against_auth_events(join, listed, [], room.version, room.create) is None
    # Without the create event the rules have no room to check against.
    assert check_against_auth_events(join, listed, [], room.version, None) is not None
    # Listing it is itself a reason to reject (v12 rule 3.2).
    with_create = room.event(
        "m.room.member", CAROL, {"membership": "join"}, CAROL,
        auth=(room.create.event_id, room.power.event_id, room.join_rules.event_id),
    )
    reason = check_against_auth_events(
        with_create, [room.create, *listed], [], room.version, room.create
    )
    assert reason is not None and "create" in reason


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_auth_event_of_an_unexpected_type_rejects(version: str) -> None:
    """v1–v11 rule 2.2, v12 rule 3.2: only events the selection algorithm would pick."""
    room = Room(version)
    topic = room.event("m.room.topic", ALICE, {"topic": "t"}, "",
                       auth=room.ids(room.create, room.power, room.alice))
    message = room.event(
        "m.room.message", ALICE, {"body": "x"},
        auth=(*room.ids(room.create, room.power, room.alice), topic.event_id),
    )
    reason = check_against_auth_events(
        message, [*room.auth_list(room.create, room.power, room.alice), topic], [],
        room.version, room.implied(),
    )
    assert reason is not None and topic.event_id in reason


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_check_against_state(version: str) -> None:
    """Steps 5 and 6 read a state rather than the auth events: Bob, banned there, may not
    send a message."""
    room = Room(version)
    bob_join = _bob_join(room)
    ban = room.event("m.room.member", ALICE, {"membership": "ban"}, BOB,
                     auth=room.ids(room.create, room.power, room.alice, bob_join))
    message = room.event("m.room.message", BOB, {"body": "x"},
                         auth=room.ids(room.create, room.power, bob_join))
    assert check_against_state(message, room.state(bob_join), room.version) is None
    assert check_against_state(message, room.state(ban), room.version) is not None


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_auth_keys_always_include_the_create_event(version: str) -> None:
    room = Room(version)
    keys = auth_keys(_bob_join(room), room.version)
    assert ("m.room.create", "") in keys
    assert {("m.room.power_levels", ""), ("m.room.member", BOB),
            ("m.room.join_rules", "")} <= set(keys)


# ---------------------------------------------------------------- redactions


def _redaction(room: Room, sender: str, target: Event) -> Event:
    return room.event("m.room.redaction", sender, {}, auth=(), redacts=target.event_id)


@pytest.mark.parametrize("version", ["1", "2"])
def test_v1_v2_an_accepted_redaction_applies(version: str) -> None:
    """v1–v2: the auth rules (m.room.redaction rule) already checked the redact level or
    the event ID domain; a redaction that got past them applies."""
    room = Room(version)
    message = room.event("m.room.message", BOB, {"body": "x"}, auth=())
    redaction = _redaction(room, DAVE, message)
    assert redaction_is_valid(redaction, message.sender, room.state(), room.version)


@pytest.mark.parametrize("version", [str(n) for n in range(3, 13)])
def test_v3_plus_redaction_applies_with_the_redact_level(version: str) -> None:
    room = Room(version)
    message = room.event("m.room.message", BOB, {"body": "x"}, auth=())
    assert redaction_is_valid(_redaction(room, ALICE, message), BOB, room.state(), room.version)


@pytest.mark.parametrize("version", [str(n) for n in range(3, 13)])
def test_v3_plus_redaction_applies_from_the_original_server(version: str) -> None:
    room = Room(version)
    message = room.event("m.room.message", BOB, {"body": "x"}, auth=())
    assert redaction_is_valid(_redaction(room, CAROL, message), BOB, room.state(), room.version)


@pytest.mark.parametrize("version", [str(n) for n in range(3, 13)])
def test_v3_plus_redaction_from_elsewhere_without_power_does_not_apply(version: str) -> None:
    room = Room(version)
    message = room.event("m.room.message", BOB, {"body": "x"}, auth=())
    assert not redaction_is_valid(
        _redaction(room, DAVE, message), BOB, room.state(), room.version
    )


@pytest.mark.parametrize("version", ["3", "10", "11"])
def test_v3_plus_redact_level_is_read_from_the_power_levels(version: str) -> None:
    """Dave with power 10 against `redact: 5` may redact; against the default 50 not."""
    room = Room(version)
    message = room.event("m.room.message", BOB, {"body": "x"}, auth=())
    low = room.event("m.room.power_levels", ALICE,
                     {"users": {ALICE: 100, DAVE: 10}, "redact": 5}, "", auth=())
    default = room.event("m.room.power_levels", ALICE, {"users": {ALICE: 100, DAVE: 10}}, "",
                         auth=())
    redaction = _redaction(room, DAVE, message)
    assert redaction_is_valid(redaction, BOB, room.state(low), room.version)
    assert not redaction_is_valid(redaction, BOB, room.state(default), room.version)


# ---------------------------------------------------------------- reusing verdicts


_REUSABLE_TYPES = ["m.room.message", "m.reaction", "org.example.custom", "m.room.aliases",
                   "m.room.third_party_invite", "m.room.topic"]


@settings(max_examples=60, deadline=None)
@given(
    version=st.sampled_from(ALL_VERSIONS),
    event_type=st.sampled_from(_REUSABLE_TYPES),
    sender=st.sampled_from([ALICE, BOB]),
    contents=st.lists(
        st.dictionaries(st.sampled_from(["body", "msgtype", "membership", "users"]),
                        st.one_of(st.text(max_size=5), st.integers(-5, 200))),
        min_size=2, max_size=4,
    ),
)
def test_events_with_the_same_verdict_key_get_the_same_verdict(
    version: str, event_type: str, sender: str, contents: list[dict[str, Any]]
) -> None:
    """The rules read only the type, sender and auth events of a non-state event of these
    types: content, depth and timestamps never change the verdict."""
    room = Room(version)
    auth = (room.create, room.alice, room.power)
    verdicts = set()
    keys = set()
    for content in contents:
        event = room.event(event_type, sender, content, auth=room.ids(*auth))
        keys.add(auth_verdict_key(event, (EventNID(1), EventNID(2))))
        verdicts.add(check_against_auth_events(
            event, room.auth_list(*auth), [], room.version, room.implied()
        ))
    assert len(keys) == 1 and None not in keys
    assert len(verdicts) == 1


@pytest.mark.parametrize(
    ("event_type", "state_key"),
    [("m.room.message", ""), ("m.room.member", None), ("m.room.power_levels", None),
     ("m.room.redaction", None), ("m.room.create", None), ("m.room.topic", "")],
)
def test_no_verdict_key_when_the_rules_read_more_than_type_and_sender(
    event_type: str, state_key: str | None
) -> None:
    room = Room("10")
    event = room.event(event_type, ALICE, {}, state_key, auth=room.ids(room.create))
    assert auth_verdict_key(event, (EventNID(1),)) is None


def test_verdict_keys_differ_by_sender_and_auth_events() -> None:
    room = Room("10")
    alice = room.event("m.room.message", ALICE, {}, auth=())
    bob = room.event("m.room.message", BOB, {}, auth=())
    one, two = (EventNID(1),), (EventNID(1), EventNID(2))
    assert len({auth_verdict_key(alice, one), auth_verdict_key(bob, one),
                auth_verdict_key(alice, two)}) == 3
