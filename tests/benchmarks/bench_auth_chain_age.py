"""Benchmark: does a conflicted merge cost more in an older room? (issue 16)

    .venv/bin/python tests/benchmarks/bench_auth_chain_age.py [--events 1000000]
        [--fork-every 100] [--fork-keys members|power]

Builds one long room directly on an `AuthChainIndex` (no storage, no event JSON): a create
event, a power levels event, join rules and 200 members, then messages (most of a room), a
member's membership changing now and then, and every `--fork-every` events a fork: two
branches from the current state, each changing one conflicted key (`members`: two members'
memberships; `power`: the power levels on both branches, each a new chain of the cover),
merged by one auth difference over the two branches' states. Reports the CPU time per
merge (process time, median of the merges in a window) when the room reaches 10k, 100k
and 1M events, and its ratio to the first. Target: every ratio within 1.5.
"""

from __future__ import annotations

import argparse
import statistics
import time

from processor.matrix.state_res import AuthChainIndex
from processor.nids import EventNID, EventTypeNID, StateKeyNID, StateKeyTuple

CREATE: StateKeyTuple = (EventTypeNID(1), StateKeyNID(1))
POWER: StateKeyTuple = (EventTypeNID(2), StateKeyNID(1))
JOIN_RULES: StateKeyTuple = (EventTypeNID(3), StateKeyNID(1))
MEMBERS = 200


def member(user: int) -> StateKeyTuple:
    return (EventTypeNID(4), StateKeyNID(100 + user))


class Room:
    def __init__(self) -> None:
        self.index = AuthChainIndex()
        self.next_nid = 1
        self.state: dict[StateKeyTuple, EventNID] = {}
        self.events = 0

    def add(
        self, key: StateKeyTuple | None, auth: list[EventNID],
        state: dict[StateKeyTuple, EventNID] | None = None,
    ) -> EventNID:
        nid = EventNID(self.next_nid)
        self.next_nid += 1
        self.index.add(nid, key, auth)
        self.events += 1
        if key is not None and state is not None:
            state[key] = nid
        return nid

    def auth_for(self, state: dict[StateKeyTuple, EventNID], sender: int,
                 key: StateKeyTuple | None) -> list[EventNID]:
        auth = [state[CREATE]]
        for k in (POWER, JOIN_RULES, member(sender)):
            if k in state:
                auth.append(state[k])
        if key is not None and key in state and state[key] not in auth:
            auth.append(state[key])
        return auth

    def setup(self) -> None:
        s = self.state
        self.add(CREATE, [], s)
        self.add(member(0), [s[CREATE]], s)
        self.add(POWER, [s[CREATE], s[member(0)]], s)
        self.add(JOIN_RULES, self.auth_for(s, 0, JOIN_RULES), s)
        for user in range(1, MEMBERS):
            self.add(member(user), self.auth_for(s, user, member(user)), s)


def run(events: int, fork_every: int, fork_keys: str, checkpoints: list[int],
        window: int) -> dict[int, float]:
    room = Room()
    room.setup()
    samples: dict[int, list[float]] = {c: [] for c in checkpoints}
    forks = 0
    i = 0
    while room.events < events or len(samples[checkpoints[-1]]) < window:
        i += 1
        s = room.state
        sender = i % MEMBERS
        if i % fork_every:
            if i % 20 == 0:  # a membership update (same key: extends the member's chain)
                room.add(member(sender), room.auth_for(s, sender, member(sender)), s)
            else:
                room.add(None, room.auth_for(s, sender, None))
            continue
        forks += 1
        branches = [dict(s), dict(s)]
        for b, branch in enumerate(branches):
            if fork_keys == "power":
                keys = [POWER]
            else:
                keys = [member((forks * 2 + b) % MEMBERS), member((forks * 2 + b + 1) % MEMBERS)]
            for key in keys:
                room.add(key, room.auth_for(branch, 0, key), branch)
            for _ in range(3):
                room.add(None, room.auth_for(branch, sender, None))
        conflicted = {k for k in branches[0].keys() | branches[1].keys()
                      if branches[0].get(k) != branches[1].get(k)}
        started = time.process_time()
        room.index.auth_difference(branches, conflicted)
        elapsed = time.process_time() - started
        for c in checkpoints:
            if c <= room.events and len(samples[c]) < window:
                samples[c].append(elapsed)
        room.state = branches[forks % 2]  # the merge keeps one branch's state
    return {c: statistics.median(v) for c, v in samples.items() if v}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--fork-every", type=int, default=100)
    parser.add_argument("--fork-keys", choices=("members", "power"), default="members")
    parser.add_argument("--window", type=int, default=200, help="merges timed per checkpoint")
    args = parser.parse_args()
    checkpoints = [c for c in (10_000, 100_000, 1_000_000) if c <= args.events]
    started = time.process_time()
    medians = run(args.events, args.fork_every, args.fork_keys, checkpoints, args.window)
    first = medians[checkpoints[0]]
    for c, m in medians.items():
        print(f"{c:>9,} events: {m * 1e6:8.1f} us CPU per conflicted merge "
              f"(x{m / first:.2f} of the first)")
    print(f"({time.process_time() - started:.0f} s CPU in all; fork keys: {args.fork_keys}, "
          f"a fork every {args.fork_every} events)")


if __name__ == "__main__":
    main()
