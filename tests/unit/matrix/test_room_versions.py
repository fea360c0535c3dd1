"""Room version records 1–12 against the spec's room version pages: one row per flag, listing
the versions where it holds."""

from __future__ import annotations

import pytest

from processor.errors import InvalidEvent, UnknownRoomVersion
from processor.matrix.room_versions import (
    KNOWN_ROOM_VERSIONS,
    EventIdFormat,
    RedactionAlgorithm,
    StateResAlgorithm,
    room_version,
)

ALL = set(range(1, 13))

# flag -> the room versions where the spec says it is true.
FLAGS: dict[str, set[int]] = {
    # v1, v2: the v1 redaction auth rule (the redacting server must be the original's).
    "redaction_auth_rule": {1, 2},
    # v1-v5: m.room.aliases auth special case (removed by MSC2432 in v6).
    "special_case_aliases_auth": {1, 2, 3, 4, 5},
    # v6 (MSC2540 and the "Canonical JSON" fragment v6): strict integers, no floats.
    "strict_canonical_json": set(range(6, 13)),
    # v6 (MSC2209): notifications keys are checked on power level changes.
    "limit_notifications_power_levels": set(range(6, 13)),
    # v7 (MSC2403): knocking.
    "knock": set(range(7, 13)),
    # v8 (MSC3083): restricted join rule.
    "restricted_join": set(range(8, 13)),
    # v9 (MSC3375): redaction keeps join_authorised_via_users_server.
    "redaction_keeps_join_authorised_via": set(range(9, 13)),
    # v10 (MSC3787, MSC3667): knock_restricted and integer-only power levels.
    "knock_restricted": set(range(10, 13)),
    "integer_power_levels": set(range(10, 13)),
    # v11 (MSC2175): the creator is the create event's sender.
    "implicit_room_creator": {11, 12},
    # v12 (MSC4291, MSC4289).
    "room_id_is_create_event_hash": {12},
    "create_event_implicit_in_auth_events": {12},
    "privileged_creators": {12},
}


@pytest.mark.parametrize("flag", sorted(FLAGS))
def test_flag_per_version(flag: str) -> None:
    holds = {n for n in ALL if getattr(room_version(str(n)), flag)}
    assert holds == FLAGS[flag]


def test_event_id_formats() -> None:
    # v1/v2 carry the ID; v3 "$" + base64; v4+ URL-safe (MSC1884).
    formats = {n: room_version(str(n)).event_id_format for n in ALL}
    assert formats[1] is formats[2] is EventIdFormat.IN_EVENT
    assert formats[3] is EventIdFormat.REFERENCE_HASH_BASE64
    assert all(formats[n] is EventIdFormat.REFERENCE_HASH_URLSAFE for n in range(4, 13))
    assert room_version("2").event_id_in_event and not room_version("3").event_id_in_event


def test_state_resolution_algorithms() -> None:
    algorithms = {n: room_version(str(n)).state_res for n in ALL}
    assert algorithms[1] is StateResAlgorithm.V1
    assert all(algorithms[n] is StateResAlgorithm.V2 for n in range(2, 12))
    assert algorithms[12] is StateResAlgorithm.V2_1


def test_redaction_algorithms() -> None:
    assert all(room_version(str(n)).redaction is RedactionAlgorithm.V1 for n in range(1, 11))
    assert room_version("11").redaction is room_version("12").redaction is RedactionAlgorithm.V11


def test_known_versions_are_exactly_1_to_12() -> None:
    assert set(KNOWN_ROOM_VERSIONS) == {str(n) for n in ALL}
    for version_id, version in KNOWN_ROOM_VERSIONS.items():
        assert version.id == version_id


@pytest.mark.parametrize("bad", ["0", "13", "", "1.0", "org.example.custom", None, 5])
def test_unknown_version_is_a_clear_error(bad: object) -> None:
    with pytest.raises(UnknownRoomVersion) as info:
        room_version(bad)  # type: ignore[arg-type]
    assert isinstance(info.value, InvalidEvent)
    assert "supported versions are 1 to 12" in str(info.value)
