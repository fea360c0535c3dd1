"""Content hashes, reference hashes, event IDs and v12 room IDs (server-server API
"Calculating the content hash/reference hash"; room version pages "Event IDs"; MSC4291)."""

from __future__ import annotations

import hashlib
from base64 import b64encode, urlsafe_b64encode
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from processor.matrix.canonical_json import canonical_json
from processor.matrix.hashing import (
    add_content_hash,
    check_content_hash,
    compute_event_id,
    content_hash,
    reference_hash,
    room_id_for_create_event,
)
from processor.matrix.redaction import redact
from processor.matrix.room_versions import KNOWN_ROOM_VERSIONS, room_version
from schemas.errors import InvalidEvent

# Appendix "Event Signing" inputs, transcribed.
MINIMAL_EVENT: dict[str, Any] = {
    "room_id": "!x:domain",
    "sender": "@a:domain",
    "origin": "domain",
    "origin_server_ts": 1000000,
    "signatures": {},
    "hashes": {},
    "type": "X",
    "content": {},
    "prev_events": [],
    "auth_events": [],
    "depth": 3,
    "unsigned": {"age_ts": 1000000},
}
MESSAGE_EVENT: dict[str, Any] = {
    "content": {"body": "Here is the message content"},
    "event_id": "$0:domain",
    "origin": "domain",
    "origin_server_ts": 1000000,
    "type": "m.room.message",
    "room_id": "!r:domain",
    "sender": "@u:domain",
    "signatures": {},
    "unsigned": {"age_ts": 1000000},
}


def test_content_hash_minimal_event() -> None:
    assert content_hash(MINIMAL_EVENT) == "5jM4wQpv6lnBo7CLIghJuHdW+s2CMBJPUOGOC89ncos"


def test_content_hash_message_event() -> None:
    assert content_hash(MESSAGE_EVENT) == "onLKD1bGljeBWQhWZ1kaP9SorVmRQNdN5aM2JYU2n/g"


def test_add_and_check_content_hash() -> None:
    hashed = add_content_hash(MESSAGE_EVENT)
    assert hashed["hashes"] == {"sha256": "onLKD1bGljeBWQhWZ1kaP9SorVmRQNdN5aM2JYU2n/g"}
    assert "hashes" not in MESSAGE_EVENT
    assert check_content_hash(hashed)
    tampered = {**hashed, "content": {"body": "changed"}}
    assert not check_content_hash(tampered)
    assert not check_content_hash(MESSAGE_EVENT)


def test_check_content_hash_accepts_padding_and_rejects_garbage() -> None:
    hashed = add_content_hash(MESSAGE_EVENT)
    padded = {**hashed, "hashes": {"sha256": hashed["hashes"]["sha256"] + "="}}
    assert check_content_hash(padded)
    for bad in ("!!!", "é", "", 5, None):
        assert not check_content_hash({**hashed, "hashes": {"sha256": bad}})
    assert not check_content_hash({**hashed, "hashes": "x"})


@pytest.mark.parametrize("legacy_key", ["age_ts", "outlier", "destinations"])
def test_content_hash_ignores_legacy_keys(legacy_key: str) -> None:
    # Interoperability with the reference homeserver (see hashing._NOT_IN_CONTENT_HASH).
    assert content_hash({**MESSAGE_EVENT, legacy_key: 1}) == content_hash(MESSAGE_EVENT)


def _v3_event() -> dict[str, Any]:
    return {
        "auth_events": ["$create", "$power"],
        "content": {"body": "hi", "msgtype": "m.text"},
        "depth": 5,
        "hashes": {"sha256": "abc"},
        "origin_server_ts": 1700000000000,
        "prev_events": ["$prev"],
        "room_id": "!room:example.org",
        "sender": "@alice:example.org",
        "type": "m.room.message",
        "signatures": {"example.org": {"ed25519:1": "sig"}},
        "unsigned": {"age": 5},
    }


def _expected_reference_hash(pdu: dict[str, Any], version_id: str) -> bytes:
    # Spec: redact, then drop signatures and unsigned, then SHA-256 of canonical JSON.
    redacted = redact(pdu, room_version(version_id))
    redacted.pop("signatures", None)
    redacted.pop("unsigned", None)
    return hashlib.sha256(canonical_json(redacted)).digest()


@pytest.mark.parametrize("version_id", [str(n) for n in range(1, 13)])
def test_event_id_format_per_room_version(version_id: str) -> None:
    version = room_version(version_id)
    pdu = _v3_event()
    if version_id in ("1", "2"):
        pdu["event_id"] = "$abc123:example.org"
        # v1/v2: the event ID is the one carried in the event.
        assert compute_event_id(pdu, version) == "$abc123:example.org"
        return
    digest = _expected_reference_hash(pdu, version_id)
    event_id = compute_event_id(pdu, version)
    if version_id == "3":
        # v3: `$` + unpadded standard Base64.
        assert event_id == "$" + b64encode(digest).decode().rstrip("=")
    else:
        # v4+: `$` + unpadded URL-safe Base64.
        assert event_id == "$" + urlsafe_b64encode(digest).decode().rstrip("=")
        assert "+" not in event_id and "/" not in event_id
    assert len(event_id) == 44 and ":" not in event_id


def test_v3_and_v4_event_ids_differ_only_in_alphabet() -> None:
    # Find an event whose hash contains + or / (deterministic search over depth).
    for depth in range(100):
        pdu = {**_v3_event(), "depth": depth}
        v3 = compute_event_id(pdu, room_version("3"))
        if "+" in v3 or "/" in v3:
            v4 = compute_event_id(pdu, room_version("4"))
            assert v4 == v3.replace("+", "-").replace("/", "_")
            return
    raise AssertionError("no hash with + or / found")


def test_v1_event_without_event_id_is_invalid() -> None:
    with pytest.raises(InvalidEvent) as info:
        compute_event_id(_v3_event(), room_version("1"))
    assert info.value.field == "$.event_id"


def test_event_id_ignores_non_protected_content() -> None:
    # A message's body is redacted away, so the reference hash (and ID) does not cover it,
    # but the content hash does.
    version = room_version("10")
    a = _v3_event()
    b = {**a, "content": {"body": "other"}}
    assert compute_event_id(a, version) == compute_event_id(b, version)
    a["hashes"] = {"sha256": content_hash(a)}
    b["hashes"] = {"sha256": content_hash(b)}
    assert compute_event_id(a, version) != compute_event_id(b, version)


def test_reference_hash_uses_version_redaction() -> None:
    # `origin` is protected in v1-v10 but not v11+ (MSC2176).
    a = {**_v3_event(), "origin": "example.org"}
    b = {**_v3_event(), "origin": "other.example"}
    assert reference_hash(a, room_version("10")) != reference_hash(b, room_version("10"))
    assert reference_hash(a, room_version("11")) == reference_hash(b, room_version("11"))


def test_v12_room_id_from_create_event() -> None:
    # MSC4291: the room ID is the create event's ID with `!` for `$`; no server part.
    version = room_version("12")
    create = {
        "auth_events": [],
        "content": {"room_version": "12"},
        "depth": 1,
        "hashes": {"sha256": "x"},
        "origin_server_ts": 1,
        "prev_events": [],
        "sender": "@creator:example.org",
        "state_key": "",
        "type": "m.room.create",
    }
    room_id = room_id_for_create_event(create, version)
    assert room_id == "!" + compute_event_id(create, version)[1:]
    assert ":" not in room_id and len(room_id) == 44


def test_room_id_for_create_event_before_v12_is_carried() -> None:
    create = {"room_id": "!r:example.org", "type": "m.room.create"}
    assert room_id_for_create_event(create, room_version("11")) == "!r:example.org"
    with pytest.raises(InvalidEvent):
        room_id_for_create_event({"type": "m.room.create"}, room_version("11"))


_extra = st.dictionaries(
    st.text(max_size=5),
    st.one_of(st.text(max_size=10), st.integers(-(2**53) + 1, 2**53 - 1)),
    max_size=4,
)


@given(_extra, _extra, st.sampled_from([v for v in KNOWN_ROOM_VERSIONS if v not in ("1", "2")]))
def test_event_id_unchanged_by_signatures_and_unsigned(
    signatures: dict[str, Any], unsigned: dict[str, Any], version_id: str
) -> None:
    version = room_version(version_id)
    base = _v3_event()
    base.pop("signatures")
    base.pop("unsigned")
    decorated = {**base, "signatures": {"x": signatures}, "unsigned": unsigned}
    assert compute_event_id(decorated, version) == compute_event_id(base, version)
