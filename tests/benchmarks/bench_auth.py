"""Benchmark: authorization checks per second against the state of a 10,000-member room.

    .venv/bin/python tests/benchmarks/bench_auth.py [--members 10000] [--seconds 2]
        [--versions 10,12]

Scenarios (each an accepted event, so the full rule path runs):

* message      — a joined member's m.room.message (create, power levels, sender's member);
* join public  — a stranger joining a public room;
* join invited — an invited user joining an invite-only room;
* join restricted — a stranger joining a restricted room via an authorising user (v8+);
* kick         — a moderator kicking a member (power levels of both users read);
* power_levels — the creator changing a power-levels event that lists 1,000 users
                 (the rule compares every entry, so this one is O(users)).

The auth state is a plain dict of 10,000 member events plus the room's auth events; the
checks look up only the keys they need, so the state size does not matter for the first five.
Prints checks/s per scenario; runs on one core (the interpreter is single-threaded).
"""

from __future__ import annotations

import argparse
import functools
import time
from collections.abc import Callable
from typing import Any

from processor.matrix.auth import check_auth
from processor.matrix.events import Event
from processor.matrix.room_versions import room_version


def _event(
    event_id: str,
    room_id: str,
    sender: str,
    type: str,
    state_key: str | None,
    content: dict[str, Any],
    pdu: dict[str, Any] | None = None,
) -> Event:
    return Event(
        event_id=event_id,
        room_id=room_id,
        sender=sender,
        type=type,
        state_key=state_key,
        content=content,
        prev_event_ids=("$prev",),
        auth_event_ids=(),
        depth=10,
        origin_server_ts=0,
        redacts=None,
        pdu=pdu or {},
    )


def build_room(
    version_id: str, members: int, join_rule: str, pl_users: int = 10
) -> tuple[dict[tuple[str, str], Event], str]:
    version = room_version(version_id)
    creator = "@creator:hs0.example"
    room_id = "!create" if version.room_id_is_create_event_hash else "!room:hs0.example"
    create_content: dict[str, Any] = {"room_version": version_id}
    if not version.implicit_room_creator:
        create_content["creator"] = creator
    state: dict[tuple[str, str], Event] = {}
    state[("m.room.create", "")] = _event(
        "$create", room_id, creator, "m.room.create", "", create_content
    )
    users: dict[str, int] = {} if version.privileged_creators else {creator: 100}
    users["@mod:hs1.example"] = 50
    for n in range(pl_users):
        users[f"@user{n}:hs{n % 50}.example"] = n % 40
    state[("m.room.power_levels", "")] = _event(
        "$pl", room_id, creator, "m.room.power_levels", "", {"users": users}
    )
    state[("m.room.join_rules", "")] = _event(
        "$jr", room_id, creator, "m.room.join_rules", "", {"join_rule": join_rule}
    )
    for user in (creator, "@mod:hs1.example"):
        state[("m.room.member", user)] = _event(
            f"$m-{user}", room_id, user, "m.room.member", user, {"membership": "join"}
        )
    for n in range(members):
        user = f"@user{n}:hs{n % 50}.example"
        state[("m.room.member", user)] = _event(
            f"$m{n}", room_id, user, "m.room.member", user, {"membership": "join"}
        )
    state[("m.room.member", "@invited:hs2.example")] = _event(
        "$inv", room_id, "@mod:hs1.example", "m.room.member", "@invited:hs2.example",
        {"membership": "invite"},
    )
    return state, room_id


def measure(check: Callable[[], None], seconds: float) -> float:
    check()  # warm the power-levels cache, as in steady state
    count = 0
    batch = 1000
    start = time.perf_counter()
    deadline = start + seconds
    while True:
        for _ in range(batch):
            check()
        count += batch
        now = time.perf_counter()
        if now >= deadline:
            return count / (now - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--members", type=int, default=10_000)
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--versions", default="10,12")
    args = parser.parse_args()

    for version_id in args.versions.split(","):
        version = room_version(version_id)
        print(f"room version {version_id}, {args.members} members")
        scenarios: list[tuple[str, dict[tuple[str, str], Event], Event]] = []

        state, room_id = build_room(version_id, args.members, "public")
        scenarios.append(("message", state, _event(
            "$msg", room_id, "@user42:hs42.example", "m.room.message", None,
            {"msgtype": "m.text", "body": "hello"},
        )))
        scenarios.append(("join public", state, _event(
            "$join", room_id, "@new:hs9.example", "m.room.member", "@new:hs9.example",
            {"membership": "join"},
        )))
        scenarios.append(("kick", state, _event(
            "$kick", room_id, "@mod:hs1.example", "m.room.member", "@user7:hs7.example",
            {"membership": "leave"},
        )))
        invite_state, _ = build_room(version_id, args.members, "invite")
        scenarios.append(("join invited", invite_state, _event(
            "$join2", room_id, "@invited:hs2.example", "m.room.member", "@invited:hs2.example",
            {"membership": "join"},
        )))
        if version.restricted_join:
            restricted_state, _ = build_room(version_id, args.members, "restricted")
            scenarios.append(("join restricted", restricted_state, _event(
                "$join3", room_id, "@new:hs9.example", "m.room.member", "@new:hs9.example",
                {"membership": "join", "join_authorised_via_users_server": "@mod:hs1.example"},
                pdu={"signatures": {"hs1.example": {"ed25519:a": "sig"}}},
            )))
        pl_state, _ = build_room(version_id, args.members, "public", pl_users=1000)
        new_levels = dict(pl_state[("m.room.power_levels", "")].content)
        new_users = dict(new_levels["users"])
        new_users["@user1:hs1.example"] = 5
        new_levels["users"] = new_users
        scenarios.append(("power_levels (1,000 users)", pl_state, _event(
            "$pl2", room_id, "@creator:hs0.example", "m.room.power_levels", "", new_levels,
        )))

        for name, auth_state, event in scenarios:
            rate = measure(functools.partial(check_auth, event, auth_state, version), args.seconds)
            print(f"  {name:28s} {rate:>12,.0f} checks/s")


if __name__ == "__main__":
    main()
