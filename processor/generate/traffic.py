"""Traffic for many rooms: the rooms' events interleaved in one produce order.

Deterministic for a seed: one `random.Random(seed)` drives everything (server keys, users,
actions, timestamps), so the same arguments give byte-identical output.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import IO, Any

import msgspec

from processor.errors import ConfigError
from processor.generate.keys import ServerKey, make_servers
from processor.generate.model import Clock, GeneratedEvent, IntendedOutcome
from processor.generate.rooms import RoomSimulation
from processor.matrix.room_versions import KNOWN_ROOM_VERSIONS
from processor.matrix.room_versions import room_version as lookup_room_version

__all__ = [
    "MIXED",
    "GeneratedTraffic",
    "generate",
    "iter_generate",
    "servers_for_seed",
    "versions_for_rooms",
    "write_jsonl",
]

#: `--room-version mixed`: room i gets version 1 + (i mod 12).
MIXED = "mixed"

#: How many homeservers exist in the generated world; each room uses 2–4 of them.
_SERVER_POOL = 6


@dataclass(slots=True)
class GeneratedTraffic:
    """The inputs in produce order, and the outcome intended for every event ID."""

    inputs: list[dict[str, Any]] = field(default_factory=list)
    expected: dict[str, IntendedOutcome] = field(default_factory=dict)
    #: What each event exercises (event ID -> "message", "kick", "reject:...", ...).
    kinds: dict[str, str] = field(default_factory=dict)
    #: Every server that signed something, for signature checks.
    servers: list[ServerKey] = field(default_factory=list)


def versions_for_rooms(rooms: int, room_version_id: str) -> list[str]:
    """The room version of each room: the given one, or 1..12 in turn for ``mixed``."""
    if room_version_id == MIXED:
        ids = sorted(KNOWN_ROOM_VERSIONS, key=int)
        return [ids[i % len(ids)] for i in range(rooms)]
    lookup_room_version(room_version_id)  # UnknownRoomVersion for anything else
    return [room_version_id] * rooms


def servers_for_seed(seed: int) -> list[ServerKey]:
    """The homeservers (names and signing keys) of the world generated from `seed`. Their
    own random stream (a string seed is hashed deterministically), so the keys do not depend
    on how many rooms or events are generated."""
    return make_servers(random.Random(f"roomserver generate keys {seed}"), _SERVER_POOL)


def iter_generate(
    rooms: int, events: int, room_version: str = "10", seed: int = 0, *, trace: bool = False
) -> Iterator[GeneratedEvent]:
    """Yield `events` generated events spread over `rooms` rooms, in produce order.

    `trace` records on each event the state it was built against (for tests; it costs a
    copy of the room's state per event).
    """
    if rooms < 1:
        raise ConfigError(f"--rooms must be at least 1, got {rooms}")
    if events < 0:
        raise ConfigError(f"--events must not be negative, got {events}")
    version_ids = versions_for_rooms(rooms, room_version)
    rng = random.Random(seed)
    servers = servers_for_seed(seed)
    clock = Clock(rng)
    simulations = []
    for index, version_id in enumerate(version_ids):
        count = rng.randint(2, 4)
        simulations.append(
            RoomSimulation(
                rng,
                lookup_room_version(version_id),
                rng.sample(servers, count),
                clock,
                index + 1,
                trace=trace,
            )
        )
    for _ in range(events):
        yield rng.choice(simulations).next_event()


def generate(rooms: int, events: int, room_version: str = "10", seed: int = 0) -> GeneratedTraffic:
    """Generate `events` input events over `rooms` rooms of `room_version` ("1".."12" or
    ``mixed``), deterministically for `seed`."""
    traffic = GeneratedTraffic(servers=servers_for_seed(seed))
    for generated in iter_generate(rooms, events, room_version, seed):
        traffic.inputs.append(generated.input)
        traffic.expected[generated.event_id] = generated.outcome
        traffic.kinds[generated.event_id] = generated.kind
    return traffic


_ENCODER = msgspec.json.Encoder()


def write_jsonl(traffic: GeneratedTraffic, file: IO[str]) -> None:
    """Write the inputs as JSON lines (one InputRoomEvent per line)."""
    for item in traffic.inputs:
        file.write(_ENCODER.encode(item).decode("utf-8"))
        file.write("\n")
