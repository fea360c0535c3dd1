"""`decode_pdu` against the spec's PDU formats (server-server API, PDU schemas for room
versions 1/2, 3+, 12), the size limits (client-server API "Size limits"; PDU schema:
≤ 20 prev_events, ≤ 10 auth_events), strict canonical JSON from v6, and MSC4291 (v12)."""

from __future__ import annotations

import json
from types import MappingProxyType
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from processor.matrix.events import Event
from processor.matrix.hashing import add_content_hash, compute_event_id, room_id_for_create_event
from processor.matrix.pdu import decode_pdu
from processor.matrix.room_versions import KNOWN_ROOM_VERSIONS, RoomVersion, room_version
from schemas.errors import EventTooLarge, InvalidEvent

ALL_VERSIONS = [str(n) for n in range(1, 13)]
HASH = "x" * 43


def _id(n: int, version_id: str) -> str:
    return f"$event{n}:example.org" if version_id in ("1", "2") else "$" + f"{n:043d}"


def _ref(n: int, version_id: str) -> Any:
    if version_id in ("1", "2"):
        return [_id(n, version_id), {"sha256": HASH}]
    return _id(n, version_id)


def make_pdu(version_id: str, **overrides: Any) -> dict[str, Any]:
    """A valid message PDU in the format of `version_id`."""
    pdu: dict[str, Any] = {
        "auth_events": [_ref(1, version_id), _ref(2, version_id), _ref(3, version_id)],
        "content": {"body": "hello", "msgtype": "m.text"},
        "depth": 7,
        "hashes": {"sha256": HASH},
        "origin_server_ts": 1_700_000_000_000,
        "prev_events": [_ref(6, version_id)],
        "room_id": "!" + "r" * 43 if version_id == "12" else "!room:example.org",
        "sender": "@alice:example.org",
        "signatures": {"example.org": {"ed25519:1": "sig"}},
        "type": "m.room.message",
        "unsigned": {"age_ts": 1_700_000_000_000},
    }
    if version_id in ("1", "2"):
        pdu["event_id"] = "$abc:example.org"
        pdu["origin"] = "example.org"
    pdu.update(overrides)
    return pdu


def _encode(pdu: dict[str, Any]) -> bytes:
    return msgspec.json.encode(pdu)


def _error(raw: bytes | dict[str, Any], version_id: str) -> InvalidEvent:
    with pytest.raises(InvalidEvent) as info:
        decode_pdu(raw, room_version(version_id))
    return info.value


@pytest.mark.parametrize("version_id", ALL_VERSIONS)
def test_valid_message_decodes(version_id: str) -> None:
    pdu = make_pdu(version_id)
    version = room_version(version_id)
    event = decode_pdu(_encode(pdu), version)
    assert isinstance(event, Event)
    assert event.event_id == compute_event_id(pdu, version)
    assert event.room_id == pdu["room_id"]
    assert event.sender == "@alice:example.org"
    assert event.type == "m.room.message"
    assert event.state_key is None and not event.is_state
    assert event.content == {"body": "hello", "msgtype": "m.text"}
    assert event.prev_event_ids == (_id(6, version_id),)
    assert event.auth_event_ids == tuple(_id(n, version_id) for n in (1, 2, 3))
    assert event.depth == 7
    assert event.origin_server_ts == 1_700_000_000_000
    assert event.redacts is None
    assert event.pdu == pdu
    # The same PDU given as a JSON object decodes to the same Event.
    assert decode_pdu(pdu, version) == event


@pytest.mark.parametrize("version_id", ALL_VERSIONS)
def test_event_id_independent_of_json_formatting(version_id: str) -> None:
    pdu = make_pdu(version_id)
    pretty = json.dumps(dict(reversed(list(pdu.items()))), indent=4).encode()
    version = room_version(version_id)
    assert decode_pdu(pretty, version).event_id == decode_pdu(_encode(pdu), version).event_id


def test_v1_event_id_is_carried() -> None:
    event = decode_pdu(_encode(make_pdu("1")), room_version("1"))
    assert event.event_id == "$abc:example.org"


@pytest.mark.parametrize("version_id", ["1", "2"])
def test_v1_requires_event_id(version_id: str) -> None:
    pdu = make_pdu(version_id)
    del pdu["event_id"]
    error = _error(_encode(pdu), version_id)
    assert str(error) == "Object missing required field `event_id` - at `$`"


@pytest.mark.parametrize("version_id", ["1", "2"])
def test_v1_rejects_plain_id_lists(version_id: str) -> None:
    error = _error(_encode(make_pdu(version_id, prev_events=["$a:example.org"])), version_id)
    assert error.field == "$.prev_events[0]"


@pytest.mark.parametrize("version_id", ALL_VERSIONS[2:])
def test_v3_rejects_id_hash_pairs(version_id: str) -> None:
    pdu = make_pdu(version_id, prev_events=[["$a", {"sha256": HASH}]])
    assert str(_error(_encode(pdu), version_id)) == (
        "Expected `str`, got `array` - at `$.prev_events[0]`"
    )


@pytest.mark.parametrize("version_id", ["3"])
def test_v3_event_id_uses_standard_base64(version_id: str) -> None:
    for depth in range(200):
        event_id = decode_pdu(_encode(make_pdu("3", depth=depth)), room_version("3")).event_id
        assert "-" not in event_id and "_" not in event_id


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("room_id", 5, "Expected `str`, got `int` - at `$.room_id`"),
        ("sender", None, "Expected `str`, got `null` - at `$.sender`"),
        ("type", ["x"], "Expected `str`, got `array` - at `$.type`"),
        ("depth", "7", "Expected `int`, got `str` - at `$.depth`"),
        ("depth", -1, "Expected `int` >= 0 - at `$.depth`"),
        ("depth", True, "Expected `int`, got `bool` - at `$.depth`"),
        ("origin_server_ts", "now", "Expected `int`, got `str` - at `$.origin_server_ts`"),
        ("state_key", None, "Expected `str`, got `null` - at `$.state_key`"),
        ("state_key", 1, "Expected `str`, got `int` - at `$.state_key`"),
        ("hashes", {}, "Object missing required field `sha256` - at `$.hashes`"),
        # msgspec names map values `[...]`.
        ("signatures", {"a": {"k": 1}}, "Expected `str`, got `int` - at `$.signatures[...][...]`"),
        ("content", [], "Expected `object`, got `array` - at `$.content`"),
        ("unsigned", 3, "Expected `object`, got `int` - at `$.unsigned`"),
        ("prev_events", "$a", "Expected `array`, got `str` - at `$.prev_events`"),
        ("auth_events", [1], "Expected `str`, got `int` - at `$.auth_events[0]`"),
    ],
)
def test_type_errors_name_the_field(field: str, value: Any, message: str) -> None:
    error = _error(_encode(make_pdu("10", **{field: value})), "10")
    assert str(error) == message


@pytest.mark.parametrize("missing", ["room_id", "sender", "type", "content", "depth",
                                     "origin_server_ts", "prev_events", "auth_events",
                                     "hashes", "signatures"])
def test_required_fields(missing: str) -> None:
    pdu = make_pdu("10")
    del pdu[missing]
    assert str(_error(_encode(pdu), "10")) == (
        f"Object missing required field `{missing}` - at `$`"
    )


def test_root_prefixes_the_path() -> None:
    with pytest.raises(InvalidEvent) as info:
        decode_pdu(_encode(make_pdu("10", room_id=5)), room_version("10"), root="$.event")
    assert str(info.value) == "Expected `str`, got `int` - at `$.event.room_id`"
    assert info.value.field == "$.event.room_id"


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("sender", "alice:example.org"),
        ("sender", "@alice"),
        ("sender", "@:example.org"),
        ("sender", "@alice:"),
        ("room_id", "room:example.org"),
        ("room_id", "!room"),
    ],
)
def test_identifier_grammar(field: str, value: str) -> None:
    assert _error(_encode(make_pdu("10", **{field: value})), "10").field == f"$.{field}"


def test_event_ids_must_have_the_sigil() -> None:
    error = _error(_encode(make_pdu("10", auth_events=["$a", "b"])), "10")
    assert error.field == "$.auth_events[1]"


# --- Size limits -------------------------------------------------------------------------


@pytest.mark.parametrize("field", ["room_id", "sender", "type", "state_key"])
def test_255_byte_limit_counts_utf8_bytes(field: str) -> None:
    prefix = {"room_id": "!", "sender": "@"}.get(field, "")
    suffix = ":example.org" if field in ("room_id", "sender") else ""
    pad = 255 - len(prefix) - len(suffix)
    at_limit = prefix + "a" * pad + suffix
    assert len(at_limit.encode()) == 255
    decode_pdu(_encode(make_pdu("10", **{field: at_limit})), room_version("10"))
    # 128 two-byte characters: 128 characters but 256 bytes.
    over = prefix + "é" * ((pad + 1) // 2) + "é" * ((pad + 1) % 2) + suffix
    assert len(over.encode()) > 255 and len(over) <= 255
    error = _error(_encode(make_pdu("10", **{field: over})), "10")
    assert error.field == f"$.{field}"
    assert "255 bytes" in str(error)
    assert isinstance(error, EventTooLarge)


def test_255_byte_limit_on_v1_event_id() -> None:
    pdu = make_pdu("1", event_id="$" + "a" * 243 + ":example.org")
    assert _error(_encode(pdu), "1").field == "$.event_id"


def test_prev_and_auth_event_count_limits() -> None:
    version = room_version("10")
    decode_pdu(_encode(make_pdu("10", prev_events=[_id(n, "10") for n in range(20)])), version)
    decode_pdu(_encode(make_pdu("10", auth_events=[_id(n, "10") for n in range(10)])), version)
    error = _error(_encode(make_pdu("10", prev_events=[_id(n, "10") for n in range(21)])), "10")
    assert str(error) == "Expected `array` of length <= 20 - at `$.prev_events`"
    error = _error(_encode(make_pdu("10", auth_events=[_id(n, "10") for n in range(11)])), "10")
    assert str(error) == "Expected `array` of length <= 10 - at `$.auth_events`"


def _with_body_size(target: int) -> dict[str, Any]:
    pdu = make_pdu("10")
    base = len(msgspec.json.encode(pdu, order="sorted")) - len("hello")
    pdu["content"]["body"] = "a" * (target - base)
    assert len(msgspec.json.encode(pdu, order="sorted")) == target
    return pdu


def test_pdu_size_limit_is_on_canonical_json() -> None:
    version = room_version("10")
    at_limit = _with_body_size(65_536)
    decode_pdu(_encode(at_limit), version)
    decode_pdu(at_limit, version)
    # Whitespace makes the bytes longer, but the canonical form is what is limited.
    decode_pdu(json.dumps(at_limit, indent=8).encode(), version)
    over = _with_body_size(65_537)
    error = _error(_encode(over), "10")
    assert error.field == "$" and "65537 bytes" in str(error)
    assert isinstance(error, EventTooLarge)
    assert _error(over, "10").field == "$"


# --- Strict canonical JSON (v6+) ---------------------------------------------------------


@pytest.mark.parametrize("version_id", ALL_VERSIONS[5:])
def test_v6_rejects_floats_with_path(version_id: str) -> None:
    raw = _encode(make_pdu(version_id)).replace(b'"msgtype"', b'"info":{"w":[1,2.5]},"msgtype"')
    error = _error(raw, version_id)
    assert error.field == "$.content.info.w[1]"
    assert "Float" in str(error)


@pytest.mark.parametrize("version_id", ALL_VERSIONS[5:])
@pytest.mark.parametrize("number", [2**53, -(2**53), 2**70])
def test_v6_rejects_out_of_range_integers(version_id: str, number: int) -> None:
    error = _error(_encode(make_pdu(version_id, content={"n": {"m": number}})), version_id)
    assert error.field == "$.content.n.m"
    error = _error(_encode(make_pdu(version_id, unsigned={"age": number})), version_id)
    assert error.field == "$.unsigned.age"
    error = _error(_encode(make_pdu(version_id, origin_server_ts=number)), version_id)
    assert error.field == "$.origin_server_ts"


def test_v6_rejects_out_of_range_integer_in_unknown_key() -> None:
    error = _error(_encode(make_pdu("6", extra=[2**53])), "6")
    assert error.field == "$.extra[0]"


def test_v6_accepts_boundary_integers() -> None:
    pdu = make_pdu("6", content={"n": 2**53 - 1, "m": -(2**53) + 1}, depth=2**53 - 1)
    decode_pdu(_encode(pdu), room_version("6"))


@pytest.mark.parametrize("version_id", ALL_VERSIONS[:5])
def test_v1_to_v5_tolerate_floats_and_big_integers(version_id: str) -> None:
    # Canonical JSON warning: events of v1-v5 "might not be fully compliant".
    pdu = make_pdu(version_id, content={"f": 0.5, "n": 2**60})
    event = decode_pdu(_encode(pdu), room_version(version_id))
    assert event.content == {"f": 0.5, "n": 2**60}


def test_mapping_input_is_checked_like_bytes() -> None:
    version = room_version("10")
    for bad, field in [
        ({"f": 1.5}, "$.content.f"),
        ({"f": float("nan")}, "$.content.f"),
        ({"r": msgspec.Raw(b"1")}, "$.content.r"),
        ({"b": b"bytes"}, "$.content.b"),
    ]:
        with pytest.raises(InvalidEvent) as info:
            decode_pdu(make_pdu("10", content=bad), version)
        assert info.value.field == field


# --- Redacts, state events ---------------------------------------------------------------


@pytest.mark.parametrize("version_id", ALL_VERSIONS[:10])
def test_redacts_at_top_level_before_v11(version_id: str) -> None:
    pdu = make_pdu(version_id, type="m.room.redaction", redacts="$target", content={})
    event = decode_pdu(_encode(pdu), room_version(version_id))
    assert event.redacts == "$target"
    assert event.event_id == compute_event_id(pdu, room_version(version_id))


@pytest.mark.parametrize("version_id", ["11", "12"])
def test_redacts_in_content_from_v11(version_id: str) -> None:
    # MSC2174: `redacts` moved into content; a top-level one is just an unknown key.
    pdu = make_pdu(
        version_id, type="m.room.redaction", content={"redacts": "$target"}, redacts="$other"
    )
    assert decode_pdu(_encode(pdu), room_version(version_id)).redacts == "$target"
    bad = make_pdu(version_id, type="m.room.redaction", content={"redacts": 5})
    assert _error(_encode(bad), version_id).field == "$.content.redacts"
    # Non-redaction events have no `redacts` whatever their content says.
    other = make_pdu(version_id, content={"redacts": "$x"})
    assert decode_pdu(_encode(other), room_version(version_id)).redacts is None


@pytest.mark.parametrize("version_id", ALL_VERSIONS)
def test_state_event(version_id: str) -> None:
    pdu = make_pdu(
        version_id,
        type="m.room.member",
        state_key="@bob:example.org",
        content={"membership": "join", "displayname": "Bob"},
    )
    event = decode_pdu(_encode(pdu), room_version(version_id))
    assert event.state_tuple == ("m.room.member", "@bob:example.org")
    assert event.membership == "join"


# --- Room version 12 (MSC4291) -----------------------------------------------------------


def _v12_create(**overrides: Any) -> dict[str, Any]:
    pdu = make_pdu(
        "12",
        type="m.room.create",
        state_key="",
        content={"room_version": "12", "additional_creators": ["@bob:example.org"]},
        prev_events=[],
        auth_events=[],
        depth=1,
    )
    del pdu["room_id"]
    pdu.update(overrides)
    return add_content_hash(pdu)


def test_v12_create_event_room_id_is_its_reference_hash() -> None:
    version = room_version("12")
    create = _v12_create()
    event = decode_pdu(_encode(create), version)
    assert event.room_id == "!" + event.event_id[1:]
    assert event.room_id == room_id_for_create_event(create, version)
    assert ":" not in event.room_id


def test_v12_create_event_must_not_have_room_id() -> None:
    error = _error(_encode(_v12_create(room_id="!x:example.org")), "12")
    assert error.field == "$.room_id"
    assert "MSC4291" in str(error)


def test_v12_other_events_need_room_id() -> None:
    pdu = make_pdu("12")
    del pdu["room_id"]
    assert str(_error(_encode(pdu), "12")) == "Object missing required field `room_id` - at `$`"


def test_v12_room_ids_have_no_server_part() -> None:
    event = decode_pdu(_encode(make_pdu("12")), room_version("12"))
    assert event.room_id == "!" + "r" * 43


@pytest.mark.parametrize("version_id", ALL_VERSIONS[:11])
def test_create_event_before_v12_carries_room_id(version_id: str) -> None:
    pdu = make_pdu(version_id, type="m.room.create", state_key="", content={})
    event = decode_pdu(_encode(pdu), room_version(version_id))
    assert event.room_id == "!room:example.org"


# --- Only InvalidEvent, whatever the input -----------------------------------------------


@pytest.mark.parametrize(
    "raw", [b"", b"{", b"[]", b"null", b"1", b'"x"', b"\xff\xfe", b'{"a":NaN}', b"{}"]
)
def test_garbage_bytes(raw: bytes) -> None:
    for version_id in ALL_VERSIONS:
        _error(raw, version_id)


_versions = st.sampled_from(list(KNOWN_ROOM_VERSIONS.values()))
_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=12,
)


def _decodes_or_invalid(raw: bytes | dict[str, Any], version: RoomVersion) -> Event | None:
    try:
        return decode_pdu(raw, version)
    except InvalidEvent:
        return None


@given(st.binary(max_size=300), _versions)
def test_arbitrary_bytes_raise_only_invalid_event(raw: bytes, version: RoomVersion) -> None:
    _decodes_or_invalid(raw, version)


@given(_json, _versions)
def test_arbitrary_json_raises_only_invalid_event(value: Any, version: RoomVersion) -> None:
    _decodes_or_invalid(json.dumps(value).encode(), version)
    if isinstance(value, dict):
        _decodes_or_invalid(value, version)


_FIELDS = ["room_id", "sender", "type", "state_key", "content", "depth", "origin_server_ts",
           "prev_events", "auth_events", "hashes", "signatures", "unsigned", "event_id",
           "redacts", "origin", "extra"]


@settings(max_examples=300)
@given(st.sampled_from(ALL_VERSIONS), st.sampled_from(_FIELDS), _json, st.booleans())
def test_mutated_pdus_decode_consistently(
    version_id: str, field: str, value: Any, as_mapping: bool
) -> None:
    """Any one field replaced by any JSON value: InvalidEvent, or an Event whose ID agrees
    with `compute_event_id` over the same object."""
    pdu = make_pdu(version_id, **{field: value})
    version = room_version(version_id)
    raw = json.dumps(pdu).encode()
    event = _decodes_or_invalid(pdu if as_mapping else raw, version)
    if event is not None:
        assert event.event_id == compute_event_id(json.loads(raw), version)
        assert event.pdu == json.loads(raw)


def test_float_then_malformed_json_is_invalid_json() -> None:
    # Found by hypothesis: the float hook fires before the decoder reaches `Infinity`.
    raw = _encode(make_pdu("10")).replace(b'"depth":7', b'"depth":7,"x":[0.0,Infinity]')
    assert "Invalid JSON" in str(_error(raw, "10"))


@pytest.mark.parametrize("version_id", ALL_VERSIONS[:5])
def test_v1_to_v5_tolerate_big_depth_and_timestamp(version_id: str) -> None:
    pdu = make_pdu(version_id, depth=2**60, origin_server_ts=2**60)
    event = decode_pdu(_encode(pdu), room_version(version_id))
    assert (event.depth, event.origin_server_ts) == (2**60, 2**60)


@pytest.mark.parametrize("version_id", ALL_VERSIONS)
def test_long_identifiers_within_255_bytes_are_accepted(version_id: str) -> None:
    # Over 63 characters takes the careful path; still valid up to 255 bytes.
    long_id = "$" + "e" * 200 + (":example.org" if version_id in ("1", "2") else "")
    pdu = make_pdu(
        version_id,
        sender="@" + "a" * 200 + ":example.org",
        type="m." + "t" * 200,
        state_key="s" * 250,
        prev_events=[[long_id, {"sha256": HASH}] if version_id in ("1", "2") else long_id],
    )
    if version_id != "12":
        pdu["room_id"] = "!" + "r" * 200 + ":example.org"
    else:
        pdu["room_id"] = "!" + "r" * 200
    if version_id in ("1", "2"):
        pdu["event_id"] = long_id
    event = decode_pdu(_encode(pdu), room_version(version_id))
    assert event.prev_event_ids == (long_id,)
    assert event.state_key == "s" * 250


# Every shape the fast and the careful paths take: the event ID always agrees with
# `compute_event_id` over the same JSON object.
SHAPES: list[dict[str, Any]] = [
    {},
    {"unsigned": None},
    {"state_key": "", "type": "m.room.name", "content": {"name": "n"}},
    {"type": "m.room.redaction", "redacts": "$t", "content": {"redacts": "$t", "reason": "r"}},
    {"type": "m.room.member", "state_key": "@b:x.org",
     "content": {"membership": "join", "join_authorised_via_users_server": "@a:x.org"}},
    {"type": "m.room.power_levels", "state_key": "",
     "content": {"users": {"@a:x.org": 100}, "invite": 50, "notifications": {"room": 20}}},
    {"type": "m.room.create", "state_key": "", "content": {"creator": "@a:x.org"}},
    {"origin": "x.org", "membership": "join", "prev_state": [], "extra": {"n": 1}},
    {"hashes": {"sha256": HASH, "sha512": "other"}},
    {"event_id": "$carried:x.org"},
]


@pytest.mark.parametrize("version_id", ALL_VERSIONS)
@pytest.mark.parametrize("shape", range(len(SHAPES)))
def test_event_id_agrees_with_compute_event_id(version_id: str, shape: int) -> None:
    overrides = dict(SHAPES[shape])
    pdu = make_pdu(version_id, **overrides)
    if pdu.get("unsigned", 0) is None:
        del pdu["unsigned"]
    if version_id == "12" and pdu["type"] == "m.room.create":
        del pdu["room_id"]
    version = room_version(version_id)
    event = decode_pdu(_encode(pdu), version)
    assert event.event_id == compute_event_id(pdu, version)
    assert event.pdu == pdu
    assert decode_pdu(pdu, version) == event


def test_input_types() -> None:
    version = room_version("10")
    pdu = make_pdu("10")
    expected = decode_pdu(_encode(pdu), version)
    assert decode_pdu(bytearray(_encode(pdu)), version) == expected
    assert decode_pdu(memoryview(_encode(pdu)), version) == expected
    assert decode_pdu(msgspec.Raw(_encode(pdu)), version) == expected
    assert decode_pdu(MappingProxyType(pdu), version) == expected
    with pytest.raises(InvalidEvent):
        decode_pdu(_encode(pdu).decode(), version)  # type: ignore[arg-type]
