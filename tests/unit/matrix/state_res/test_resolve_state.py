"""`resolve_state`'s contract with its caller: what it loads, what it leaves alone, how it
fails."""

from __future__ import annotations

from collections.abc import Collection, Mapping

import pytest

from processor.errors import StateResolutionError
from processor.matrix.room_versions import room_version
from processor.matrix.state_res import (
    AuthChainIndex,
    InMemoryEventSource,
    StateResEvent,
    resolve_state,
)
from processor.nids import EventNID, StateKeyTuple
from tests.unit.matrix.state_res.builder import ALICE, RoomBuilder


class CountingSource:
    """Wraps an event source and records every NID it is asked to load."""

    def __init__(self, inner: InMemoryEventSource) -> None:
        self.inner = inner
        self.loaded: list[EventNID] = []

    def load(self, nids: Collection[EventNID]) -> Mapping[EventNID, StateResEvent]:
        self.loaded.extend(nids)
        return self.inner.load(nids)

    def state_key_nids(
        self, keys: Collection[tuple[str, str]]
    ) -> Mapping[tuple[str, str], StateKeyTuple]:
        return self.inner.state_key_nids(keys)

    @property
    def auth_index(self) -> AuthChainIndex:
        return self.inner.auth_index


def _big_room_with_topic_fork(version_id: str) -> RoomBuilder:
    room = RoomBuilder(room_version(version_id))
    room.start()
    for i in range(40):
        room.join("main", f"member{i}", f"@member{i}:m.test")
    room.fork("main", "a")
    room.fork("main", "b")
    room.send("a", "topic_a", "m.room.topic", ALICE, "", {"topic": "a"})
    # deeper and later than topic_a: it wins under v1 (depth) and v2 (origin_server_ts)
    room.send("b", "name_b", "m.room.name", ALICE, "", {"name": "b"})
    room.send("b", "topic_b", "m.room.topic", ALICE, "", {"topic": "b"})
    return room


@pytest.mark.parametrize("version_id", ["1", "11", "12"])
def test_only_the_events_resolution_reads_are_loaded(version_id: str) -> None:
    room = _big_room_with_topic_fork(version_id)
    source = CountingSource(room.source)
    resolved = resolve_state(room.version, [room.state("a"), room.state("b")], source)
    assert room.names(resolved)[("m.room.topic", "")] == "topic_b"
    loaded = {room.name_of[nid] for nid in source.loaded}
    # The conflicted events and what the auth rules read for them (create, power levels,
    # Alice's membership) — never the 40 unrelated members.
    assert {"topic_a", "topic_b"} <= loaded
    assert not any(name.startswith("member") for name in loaded)
    assert len(loaded) <= 9


def test_single_state_set_is_returned_without_loading() -> None:
    room = _big_room_with_topic_fork("11")
    source = CountingSource(room.source)
    state = room.state("a")
    resolved = resolve_state(room.version, [state], source)
    assert resolved == state and resolved is not state
    assert source.loaded == []
    assert resolve_state(room.version, [], source) == {}


def test_inputs_are_not_modified() -> None:
    room = _big_room_with_topic_fork("11")
    a, b = room.state("a"), room.state("b")
    a_copy, b_copy = dict(a), dict(b)
    resolve_state(room.version, [a, b], room.source)
    assert (a, b) == (a_copy, b_copy)


@pytest.mark.parametrize("version_id", ["1", "11"])
def test_unknown_event_is_a_state_resolution_error_naming_it(version_id: str) -> None:
    room = _big_room_with_topic_fork(version_id)
    bogus = dict(room.state("a"))
    bogus[room.key("m.room.topic", "")] = EventNID(987654)
    with pytest.raises(StateResolutionError, match="987654"):
        resolve_state(room.version, [bogus, room.state("b")], room.source)


def test_in_memory_source_rejects_events_before_their_auth_events() -> None:
    room = _big_room_with_topic_fork("11")
    orphan = room.by_name["topic_a"]
    source = InMemoryEventSource()
    with pytest.raises(StateResolutionError, match="has not been added"):
        source.add(orphan)
