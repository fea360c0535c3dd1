"""Shared generated traffic for the generator's tests (generated once per session: signing
thousands of events is the slow part)."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from processor.generate import GeneratedEvent, ServerKey, iter_generate, servers_for_seed
from processor.matrix.events import Event
from processor.matrix.pdu import decode_pdu
from processor.matrix.room_versions import RoomVersion, room_version

ALL_VERSIONS = [str(n) for n in range(1, 13)]


@dataclass
class Traced:
    """Generated events with their decoded form, by room version."""

    version: RoomVersion
    generated: list[GeneratedEvent]
    servers: list[ServerKey]
    #: event ID -> decoded event (every generated event, in any outcome)
    events: dict[str, Event]


def traced(rooms: int, events: int, version_id: str, seed: int) -> Traced:
    generated = list(iter_generate(rooms, events, version_id, seed, trace=True))
    servers = servers_for_seed(seed)
    version = room_version(version_id)
    decoded = {g.event_id: decode_pdu(g.input["event"], version) for g in generated}
    return Traced(version, generated, servers, decoded)


@pytest.fixture(scope="session", params=ALL_VERSIONS, ids=lambda v: f"v{v}")
def traffic_by_version(request: pytest.FixtureRequest) -> Traced:
    """Two rooms of one version, 600 events, every outcome and state traced."""
    return traced(2, 600, request.param, seed=int(request.param) * 101)
