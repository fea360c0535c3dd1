"""Benchmark: decode + validate + event ID of realistic PDUs (`processor.matrix.pdu`).

Builds N signed-looking PDUs (70% m.room.message, 20% m.room.member, 10% other state:
power levels, name, topic, join rules, history visibility, redactions) for one room version,
encodes them to JSON bytes once, then times `decode_pdu` over all of them on one core and
prints events/s. Target: >= 100,000 events/s.

    .venv/bin/python tests/benchmarks/bench_events.py [--events 100000] [--version 10|all]
        [--repeat 3] [--profile]

Garbage collection is left on (the default thresholds), as in the service.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import random
import time
from base64 import b64encode, urlsafe_b64encode
from typing import Any

import msgspec

from processor.matrix.hashing import add_content_hash
from processor.matrix.pdu import decode_pdu
from processor.matrix.room_versions import room_version

_TEXT = "the quick brown fox jumps over lazy dog matrix room server event state federation"
WORDS = _TEXT.split(" ")


def _b64(rng: random.Random, n: int, urlsafe: bool = True) -> str:
    raw = rng.randbytes(n)
    encoded = urlsafe_b64encode(raw) if urlsafe else b64encode(raw)
    return encoded.rstrip(b"=").decode()


def _event_id(rng: random.Random, version_id: str) -> str:
    if version_id in ("1", "2"):
        return f"${_b64(rng, 12)}:example.org"
    return "$" + _b64(rng, 32, urlsafe=version_id != "3")


def _ref(rng: random.Random, version_id: str) -> Any:
    if version_id in ("1", "2"):
        return [_event_id(rng, version_id), {"sha256": _b64(rng, 32, urlsafe=False)}]
    return _event_id(rng, version_id)


def _content(
    rng: random.Random, kind: str, users: list[str]
) -> tuple[str, str | None, dict[str, Any]]:
    if kind == "message":
        body = " ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 40)))
        content: dict[str, Any] = {"body": body, "msgtype": "m.text"}
        if rng.random() < 0.3:
            content["format"] = "org.matrix.custom.html"
            content["formatted_body"] = f"<p>{body}</p>"
        if rng.random() < 0.2:
            content["m.relates_to"] = {"m.in_reply_to": {"event_id": "$" + _b64(rng, 32)}}
        return "m.room.message", None, content
    if kind == "member":
        user = rng.choice(users)
        membership = rng.choice(["join", "join", "join", "leave", "invite"])
        content = {"membership": membership, "displayname": user[1:].split(":")[0].title()}
        if rng.random() < 0.5:
            content["avatar_url"] = f"mxc://example.org/{_b64(rng, 18)}"
        return "m.room.member", user, content
    choice = rng.randrange(6)
    if choice == 0:
        return "m.room.power_levels", "", {
            "ban": 50, "events": {"m.room.name": 50, "m.room.power_levels": 100},
            "events_default": 0, "invite": 0, "kick": 50, "redact": 50, "state_default": 50,
            "users": {u: rng.choice([0, 50, 100]) for u in rng.sample(users, 10)},
            "users_default": 0, "notifications": {"room": 50},
        }
    if choice == 1:
        return "m.room.name", "", {"name": " ".join(rng.choice(WORDS) for _ in range(3))}
    if choice == 2:
        return "m.room.topic", "", {"topic": " ".join(rng.choice(WORDS) for _ in range(12))}
    if choice == 3:
        return "m.room.join_rules", "", {"join_rule": rng.choice(["public", "invite"])}
    if choice == 4:
        return "m.room.history_visibility", "", {"history_visibility": "shared"}
    return "m.room.redaction", None, {"reason": "spam", "redacts": "$" + _b64(rng, 32)}


def make_pdus(count: int, version_id: str, seed: int = 42) -> list[bytes]:
    rng = random.Random(seed)
    users = [f"@user{i}:server{i % 17}.example.org" for i in range(500)]
    room_id = "!" + _b64(rng, 32) if version_id == "12" else "!abcdefghijklmnop:example.org"
    out: list[bytes] = []
    for depth in range(1, count + 1):
        r = rng.random()
        kind = "message" if r < 0.7 else "member" if r < 0.9 else "state"
        event_type, state_key, content = _content(rng, kind, users)
        sender = state_key if kind == "member" and state_key else rng.choice(users)
        pdu: dict[str, Any] = {
            "auth_events": [_ref(rng, version_id) for _ in range(rng.randint(3, 4))],
            "content": content,
            "depth": depth,
            "origin_server_ts": 1_700_000_000_000 + depth * 997,
            "prev_events": [_ref(rng, version_id) for _ in range(1 if rng.random() < 0.9 else 2)],
            "room_id": room_id,
            "sender": sender,
            "type": event_type,
            "unsigned": {"age_ts": 1_700_000_000_000 + depth * 997},
        }
        if state_key is not None:
            pdu["state_key"] = state_key
        if version_id in ("1", "2"):
            pdu["event_id"] = _event_id(rng, version_id)
            pdu["origin"] = sender.split(":", 1)[1]
        if event_type == "m.room.redaction" and int(version_id) <= 10:
            pdu["redacts"] = content["redacts"]
        pdu = add_content_hash(pdu)
        server = sender.split(":", 1)[1]
        pdu["signatures"] = {server: {"ed25519:a_" + _b64(rng, 3): _b64(rng, 64, False)}}
        out.append(msgspec.json.encode(pdu))
    return out


def run(version_id: str, events: int, repeat: int, profile: bool) -> float:
    version = room_version(version_id)
    pdus = make_pdus(events, version_id)
    total_bytes = sum(len(p) for p in pdus)
    print(f"room version {version.id}: {len(pdus)} PDUs, mean {total_bytes / len(pdus):.0f} bytes")

    if profile:
        profiler = cProfile.Profile()
        profiler.enable()
        for p in pdus:
            decode_pdu(p, version)
        profiler.disable()
        pstats.Stats(profiler).sort_stats("tottime").print_stats(15)
        return 0.0

    best = 0.0
    for number in range(repeat):
        start, cpu_start = time.perf_counter(), time.process_time()
        for p in pdus:
            decode_pdu(p, version)
        elapsed = time.perf_counter() - start
        cpu = time.process_time() - cpu_start
        rate = len(pdus) / elapsed
        best = max(best, rate)
        print(
            f"  run {number + 1}: {elapsed:.3f} s wall ({cpu:.3f} s CPU), {rate:,.0f} events/s, "
            f"{elapsed / len(pdus) * 1e6:.2f} us/event"
        )
    print(f"  best: {best:,.0f} events/s (target 100,000)")
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--version", default="10", help="a room version, or 'all'")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    versions = [str(n) for n in range(1, 13)] if args.version == "all" else [args.version]
    results = {v: run(v, args.events, args.repeat, args.profile) for v in versions}
    if len(results) > 1 and not args.profile:
        print("summary: " + ", ".join(f"v{v} {rate:,.0f}/s" for v, rate in results.items()))


if __name__ == "__main__":
    main()
