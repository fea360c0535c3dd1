"""The redaction algorithms, one table row per (room version, event type), transcribed from
the spec's room version pages: v1 ("v1-redactions"), v6 (MSC2432: aliases no longer kept),
v8 (join_rules keeps allow, MSC3083), v9 (member keeps join_authorised_via_users_server,
MSC3375), v11 (MSC2176/MSC3821/MSC3989), v12 (unchanged from v11)."""

from __future__ import annotations

from typing import Any

import pytest

from processor.matrix.redaction import redact
from processor.matrix.room_versions import room_version

ALL_VERSIONS = [str(n) for n in range(1, 13)]

# A content object for each type holding every key any version keeps, plus junk.
FULL_CONTENT: dict[str, dict[str, Any]] = {
    "m.room.member": {
        "membership": "join",
        "join_authorised_via_users_server": "@admin:example.org",
        "third_party_invite": {"signed": {"mxid": "@a:b", "token": "t"}, "display_name": "x"},
        "displayname": "Alice",
        "avatar_url": "mxc://x/y",
    },
    "m.room.create": {
        "creator": "@alice:example.org",
        "room_version": "12",
        "m.federate": False,
        "additional_creators": ["@bob:example.org"],
        "predecessor": {"room_id": "!old:x", "event_id": "$e"},
    },
    "m.room.join_rules": {"join_rule": "restricted", "allow": [{"type": "m.room_membership"}],
                          "junk": 1},
    "m.room.power_levels": {
        "ban": 50, "events": {"m.room.name": 50}, "events_default": 0, "invite": 0,
        "kick": 50, "redact": 50, "state_default": 50, "users": {"@a:b": 100},
        "users_default": 0, "notifications": {"room": 50}, "historical": 100,
    },
    "m.room.aliases": {"aliases": ["#a:example.org"], "junk": 1},
    "m.room.history_visibility": {"history_visibility": "shared", "junk": 1},
    "m.room.redaction": {"redacts": "$target", "reason": "spam"},
    "m.room.message": {"body": "hello", "msgtype": "m.text"},
    "m.room.name": {"name": "A room"},
}

PL_V1 = ["ban", "events", "events_default", "kick", "redact", "state_default", "users",
         "users_default"]

# (type, versions, content keys kept) — every row is a statement of the spec.
KEPT_CONTENT_KEYS: list[tuple[str, list[str], list[str]]] = [
    ("m.room.member", ["1", "2", "3", "4", "5", "6", "7", "8"], ["membership"]),
    ("m.room.member", ["9", "10"], ["membership", "join_authorised_via_users_server"]),
    ("m.room.member", ["11", "12"],
     ["membership", "join_authorised_via_users_server", "third_party_invite"]),
    ("m.room.create", ALL_VERSIONS[:10], ["creator"]),
    ("m.room.create", ["11", "12"], sorted(FULL_CONTENT["m.room.create"])),
    ("m.room.join_rules", ["1", "2", "3", "4", "5", "6", "7"], ["join_rule"]),
    ("m.room.join_rules", ["8", "9", "10", "11", "12"], ["allow", "join_rule"]),
    ("m.room.power_levels", ALL_VERSIONS[:10], PL_V1),
    ("m.room.power_levels", ["11", "12"], sorted([*PL_V1, "invite"])),
    ("m.room.aliases", ["1", "2", "3", "4", "5"], ["aliases"]),
    ("m.room.aliases", ["6", "7", "8", "9", "10", "11", "12"], []),
    ("m.room.history_visibility", ALL_VERSIONS, ["history_visibility"]),
    ("m.room.redaction", ALL_VERSIONS[:10], []),
    ("m.room.redaction", ["11", "12"], ["redacts"]),
    ("m.room.message", ALL_VERSIONS, []),
    ("m.room.name", ALL_VERSIONS, []),
]

CASES = [
    (event_type, version_id, kept)
    for event_type, versions, kept in KEPT_CONTENT_KEYS
    for version_id in versions
]


def test_table_covers_every_type_and_version() -> None:
    covered = {(t, v) for t, v, _ in CASES}
    assert covered == {(t, v) for t in FULL_CONTENT for v in ALL_VERSIONS}


def _event(event_type: str) -> dict[str, Any]:
    return {
        "event_id": "$e:example.org",
        "type": event_type,
        "room_id": "!r:example.org",
        "sender": "@alice:example.org",
        "state_key": "",
        "content": FULL_CONTENT[event_type],
        "hashes": {"sha256": "h"},
        "signatures": {"example.org": {"ed25519:1": "s"}},
        "depth": 4,
        "prev_events": ["$p"],
        "prev_state": [],
        "auth_events": ["$a"],
        "origin": "example.org",
        "origin_server_ts": 1,
        "membership": "join",
        "unsigned": {"age": 1},
        "redacts": "$target",
        "extra_top_level": True,
    }


@pytest.mark.parametrize(("event_type", "version_id", "kept"), CASES)
def test_content_keys_kept(event_type: str, version_id: str, kept: list[str]) -> None:
    redacted = redact(_event(event_type), room_version(version_id))
    assert sorted(redacted["content"]) == sorted(kept)
    for key in kept:
        if key != "third_party_invite":
            assert redacted["content"][key] == FULL_CONTENT[event_type][key]


V1_TOP = ["auth_events", "content", "depth", "event_id", "hashes", "membership", "origin",
          "origin_server_ts", "prev_events", "prev_state", "room_id", "sender", "signatures",
          "state_key", "type"]
# v11 (MSC2176): origin, membership, prev_state no longer protected.
V11_TOP = sorted(set(V1_TOP) - {"origin", "membership", "prev_state"})


@pytest.mark.parametrize("version_id", ALL_VERSIONS)
def test_top_level_keys_kept(version_id: str) -> None:
    redacted = redact(_event("m.room.message"), room_version(version_id))
    expected = V1_TOP if int(version_id) <= 10 else V11_TOP
    assert sorted(redacted) == expected
    # `redacts` at top level and `unsigned` are never protected.
    assert "redacts" not in redacted and "unsigned" not in redacted


@pytest.mark.parametrize("version_id", ["11", "12"])
def test_v11_member_keeps_only_signed_of_third_party_invite(version_id: str) -> None:
    redacted = redact(_event("m.room.member"), room_version(version_id))
    assert redacted["content"]["third_party_invite"] == {
        "signed": {"mxid": "@a:b", "token": "t"}
    }


@pytest.mark.parametrize("version_id", ["11", "12"])
def test_v11_member_third_party_invite_without_signed_is_dropped(version_id: str) -> None:
    event = _event("m.room.member")
    event["content"] = {"membership": "invite", "third_party_invite": {"display_name": "x"}}
    assert redact(event, room_version(version_id))["content"] == {"membership": "invite"}


def test_v12_create_keeps_additional_creators() -> None:
    redacted = redact(_event("m.room.create"), room_version("12"))
    assert redacted["content"]["additional_creators"] == ["@bob:example.org"]


@pytest.mark.parametrize("content", [None, "string", [1, 2], 5])
def test_non_object_content_redacts_to_empty(content: object) -> None:
    event = _event("m.room.member")
    event["content"] = content
    assert redact(event, room_version("10"))["content"] == {}


def test_missing_content_becomes_empty_object() -> None:
    event = _event("m.room.message")
    del event["content"]
    assert redact(event, room_version("4"))["content"] == {}


def test_redact_does_not_mutate_input() -> None:
    event = _event("m.room.power_levels")
    before = repr(event)
    redact(event, room_version("11"))
    assert repr(event) == before


def test_redaction_is_idempotent() -> None:
    for version_id in ALL_VERSIONS:
        version = room_version(version_id)
        for event_type in FULL_CONTENT:
            once = redact(_event(event_type), version)
            assert redact(once, version) == once
