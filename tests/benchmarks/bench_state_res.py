"""Benchmark: state resolution of two forks of a big room (prints milliseconds).

Rooms: N members joined on a linear history (create, creator's join, power levels with a
few moderators, public join rules, N joins), then two forks. Each fork: a power levels change
by the creator, new joins (citing that fork's power levels), members leaving, kicks (fork 0)
or bans (fork 1) by the creator — 3 each, or 30% of the fork's conflicts in the power-heavy
variant —, a topic and a name. The two fork tips' states are resolved.

    .venv/bin/python tests/benchmarks/bench_state_res.py [--runs 7] [--profile]

Sizes: 10,000 members with ~450 conflicted keys (target ≤ 20 ms) and 50,000 members with
~2,000 (target ≤ 120 ms), for room versions 11 (v2) and 12 (v2.1). The event source is the
in-memory one: the figure is the core's, not storage's. Wall-clock times on a shared machine
are noisy; the CPU time of the resolving thread is printed too.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from processor.matrix.events import Event
from processor.matrix.room_versions import RoomVersion, room_version
from processor.matrix.state_res import (
    InMemoryEventSource,
    StateResEvent,
    resolve_state,
)
from processor.matrix.state_res.v2 import conflicted_state_keys
from processor.nids import (
    EMPTY_STATE_KEY_NID,
    MROOM_CREATE_NID,
    MROOM_JOIN_RULES_NID,
    MROOM_MEMBER_NID,
    MROOM_POWER_LEVELS_NID,
    EventNID,
    EventTypeNID,
    StateKeyNID,
    StateKeyTuple,
)

TOPIC_NID = EventTypeNID(8)
NAME_NID = EventTypeNID(9)
CREATOR = "@creator:example.org"

State = dict[StateKeyTuple, EventNID]


class RoomGenerator:
    """Builds events straight into an `InMemoryEventSource` (no auth checks: the histories
    are valid by construction)."""

    def __init__(self, version: RoomVersion) -> None:
        self.version = version
        self.source = InMemoryEventSource()
        self.room_id = "!e1" if version.room_id_is_create_event_hash else "!r:example.org"
        self.next_nid = 1
        self.ts = 1_000_000
        self.user_key: dict[str, StateKeyNID] = {}
        self.string_keys: dict[str, str] = {}

    def member_key(self, user: str) -> StateKeyTuple:
        nid = self.user_key.get(user)
        if nid is None:
            nid = self.user_key[user] = StateKeyNID(len(self.user_key) + 2)
            self.source.register_state_key("m.room.member", user, MROOM_MEMBER_NID, nid)
        return (MROOM_MEMBER_NID, nid)

    def send(self, state: State, event_type: str, type_nid: EventTypeNID, sender: str,
             state_key: str, key: StateKeyTuple, content: dict[str, Any],
             auth_keys: Sequence[StateKeyTuple]) -> EventNID:
        auth_nids = tuple(state[k] for k in auth_keys if k in state)
        nid = EventNID(self.next_nid)
        self.next_nid += 1
        self.ts += 7
        auth_ids = tuple(f"$e{a}" for a in auth_nids)
        v12_create = nid == 1 and self.version.room_id_is_create_event_hash
        event = Event(
            event_id=f"$e{nid}", room_id="" if v12_create else self.room_id, sender=sender,
            type=event_type, state_key=state_key,
            content=content, prev_event_ids=(), auth_event_ids=auth_ids, depth=nid,
            origin_server_ts=self.ts, redacts=None, pdu={},
        )
        self.source.add(StateResEvent(nid=nid, event=event, key=key, auth_nids=auth_nids))
        state[key] = nid
        return nid

    def common_auth(self, sender: str) -> list[StateKeyTuple]:
        keys = [] if self.version.create_event_implicit_in_auth_events else [CREATE]
        return [*keys, PL, self.member_key(sender)]

    def member(self, state: State, sender: str, target: str, membership: str) -> None:
        key = self.member_key(target)
        auth = [*self.common_auth(sender), key]
        if membership in ("join", "invite"):
            auth.append(JR)
        self.send(state, "m.room.member", MROOM_MEMBER_NID, sender, target, key,
                  {"membership": membership}, auth)

    def power_levels(self, state: State, users: dict[str, int]) -> None:
        if self.version.privileged_creators:
            users = {u: level for u, level in users.items() if u != CREATOR}
        self.send(state, "m.room.power_levels", MROOM_POWER_LEVELS_NID, CREATOR, "", PL,
                  {"users": users}, self.common_auth(CREATOR))

    def simple(self, state: State, event_type: str, type_nid: EventTypeNID,
               content: dict[str, Any]) -> None:
        key = (type_nid, EMPTY_STATE_KEY_NID)
        self.source.register_state_key(event_type, "", type_nid, EMPTY_STATE_KEY_NID)
        self.send(state, event_type, type_nid, CREATOR, "", key, content,
                  self.common_auth(CREATOR))


CREATE: StateKeyTuple = (MROOM_CREATE_NID, EMPTY_STATE_KEY_NID)
PL: StateKeyTuple = (MROOM_POWER_LEVELS_NID, EMPTY_STATE_KEY_NID)
JR: StateKeyTuple = (MROOM_JOIN_RULES_NID, EMPTY_STATE_KEY_NID)


def build(version: RoomVersion, members: int, conflicts: int, power_share: float = 0.0
          ) -> tuple[RoomGenerator, list[State]]:
    gen = RoomGenerator(version)
    state: State = {}
    create_content: dict[str, Any] = {"room_version": version.id, "creator": CREATOR}
    gen.send(state, "m.room.create", MROOM_CREATE_NID, CREATOR, "", CREATE, create_content, [])
    gen.member(state, CREATOR, CREATOR, "join")
    mods = {f"@mod{i}:example.org": 50 for i in range(5)}
    users = {CREATOR: 100, **mods}
    gen.power_levels(state, users)
    gen.simple(state, "m.room.join_rules", MROOM_JOIN_RULES_NID, {"join_rule": "public"})
    for user in mods:
        gen.member(state, user, user, "join")
    for i in range(members):
        user = f"@user{i}:server{i % 50}.example.org"
        gen.member(state, user, user, "join")

    forks: list[State] = []
    per_fork = conflicts // 2
    kicks = 3 + int(per_fork * power_share)
    joins = int((per_fork - kicks) * 0.88)
    leaves = per_fork - joins - kicks - 5
    for f in range(2):
        fork = dict(state)
        gen.power_levels(fork, {**users, f"@user{f}:server{f}.example.org": 10 + f})
        for i in range(joins):
            user = f"@new{f}_{i}:fork{f}.example.org"
            gen.member(fork, user, user, "join")
        for i in range(leaves):
            user = f"@user{f * leaves + i + 100}:server{(f * leaves + i + 100) % 50}.example.org"
            gen.member(fork, user, user, "leave")
        for i in range(kicks):
            n = members - 1 - (f * kicks + i)
            target = f"@user{n}:server{n % 50}.example.org"
            gen.member(fork, CREATOR, target, "leave" if f == 0 else "ban")
        gen.simple(fork, "m.room.topic", TOPIC_NID, {"topic": f"fork {f}"})
        gen.simple(fork, "m.room.name", NAME_NID, {"name": f"fork {f}"})
        forks.append(fork)
    return gen, forks


def run(version_id: str, members: int, conflicts: int, runs: int, profile: bool,
        power_share: float = 0.0) -> None:
    version = room_version(version_id)
    gen, forks = build(version, members, conflicts, power_share)
    conflicted = len(conflicted_state_keys(forks))
    timings, cpu_timings = [], []
    for _ in range(runs):
        start, cpu_start = time.perf_counter(), time.thread_time()
        resolved = resolve_state(version, forks, gen.source)
        timings.append((time.perf_counter() - start) * 1000)
        cpu_timings.append((time.thread_time() - cpu_start) * 1000)
    print(
        f"room v{version_id:>2} ({version.state_res.value:>4}), {power_share:4.0%} kicks/bans: "
        f"{members:>6} members, "
        f"{len(forks[0]):>6} state keys, {conflicted:>5} conflicted keys, "
        f"{len(gen.source):>6} events -> first {timings[0]:7.2f} ms, "
        f"median {statistics.median(timings):7.2f} ms, best {min(timings):7.2f} ms; "
        f"CPU median {statistics.median(cpu_timings):7.2f} ms ({len(resolved)} keys resolved)"
    )
    if profile:
        profiler = cProfile.Profile()
        profiler.enable()
        resolve_state(version, forks, gen.source)
        profiler.disable()
        pstats.Stats(profiler).sort_stats("cumulative").print_stats(18)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    for members, conflicts in ((10_000, 450), (50_000, 2_000)):
        for version_id in ("11", "12"):
            for power_share in (0.0, 0.3):
                run(version_id, members, conflicts, args.runs, args.profile, power_share)


if __name__ == "__main__":
    main()
