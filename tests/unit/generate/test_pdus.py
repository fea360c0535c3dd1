"""Every generated event is a valid PDU of its room version.

Checked against the spec, not the generator: the event format of each room version page
(v1/v2 carry `event_id` and reference pairs; v3+ derive the ID from the reference hash, v12
derives the room ID from the create event, MSC4291), the content hash and signature rules of
the server-server API ("Calculating the content hash", "Signing events"), and the DAG shape
("depth = max(prev depths) + 1"; prev/auth events already produced).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from processor.matrix.hashing import check_content_hash, reference_hash
from processor.matrix.redaction import redact
from processor.matrix.signing import encode_base64, verify_signed_json
from tests.unit.generate.conftest import Traced


def test_event_ids_and_room_ids_follow_the_room_version(traffic_by_version: Traced) -> None:
    version = traffic_by_version.version
    for g in traffic_by_version.generated:
        pdu = g.input["event"]
        decoded = traffic_by_version.events[g.event_id]
        # decode_pdu computed the ID from the PDU alone; the generator's must agree.
        assert decoded.event_id == g.event_id
        if version.event_id_in_event:
            assert pdu["event_id"] == g.event_id
            assert g.event_id.startswith("$") and ":" in g.event_id
        else:
            assert "event_id" not in pdu
            assert ":" not in g.event_id
            urlsafe = not ("+" in g.event_id or "/" in g.event_id)
            if int(version.id) >= 4:
                assert urlsafe
        if pdu["type"] == "m.room.create":
            if version.room_id_is_create_event_hash:
                assert "room_id" not in pdu
                assert decoded.room_id == "!" + g.event_id[1:]
            assert ("creator" in pdu["content"]) is (not version.implicit_room_creator)


def test_content_hashes_and_signatures_verify(traffic_by_version: Traced) -> None:
    version = traffic_by_version.version
    keys = {s.server_name: s for s in traffic_by_version.servers}
    for g in traffic_by_version.generated:
        pdu = g.input["event"]
        assert check_content_hash(pdu, strict=version.strict_canonical_json), g.event_id
        origin = pdu["sender"].split(":", 1)[1]
        assert g.input["origin"] == origin
        signers = [origin]
        authoriser = pdu["content"].get("join_authorised_via_users_server")
        if authoriser is not None:
            signers.append(authoriser.split(":", 1)[1])
        redacted = redact(pdu, version)
        for server in signers:
            key = keys[server]
            assert verify_signed_json(redacted, server, key.key_id, key.public_key), (
                f"{g.event_id} not signed by {server}"
            )


def _references(pdu: Mapping[str, Any], field: str, in_event: bool) -> list[str]:
    if in_event:
        return [pair[0] for pair in pdu[field]]
    return list(pdu[field])


def test_dag_shape(traffic_by_version: Traced) -> None:
    version = traffic_by_version.version
    produced: dict[str, Mapping[str, Any]] = {}
    room_of: dict[str, str] = {}
    not_built_on = {g.event_id for g in traffic_by_version.generated if g.outcome != "accepted"}
    for g in traffic_by_version.generated:
        pdu = g.input["event"]
        event = traffic_by_version.events[g.event_id]
        prev = _references(pdu, "prev_events", version.event_id_in_event)
        auth = _references(pdu, "auth_events", version.event_id_in_event)
        assert 1 <= len(prev) <= 3 or pdu["type"] == "m.room.create"
        for ref in prev + auth:
            assert ref in produced, f"{g.event_id} references {ref} before it was produced"
            assert room_of[ref] == event.room_id
            assert ref not in not_built_on, f"{g.event_id} builds on non-accepted {ref}"
        expected_depth = max((produced[p]["depth"] for p in prev), default=0) + 1
        assert pdu["depth"] == expected_depth
        if version.event_id_in_event:
            # v1/v2: each reference carries the referenced event's reference hash.
            for pair in pdu["prev_events"] + pdu["auth_events"]:
                digest = encode_base64(reference_hash(produced[pair[0]], version))
                assert pair[1] == {"sha256": digest}
        produced[g.event_id] = pdu
        room_of[g.event_id] = event.room_id
        assert g.input["kind"] == "new" and g.input["room_version"] == version.id
        assert g.input["send_as_server"] == ""


def test_redactions_name_their_target_where_the_version_says(traffic_by_version: Traced) -> None:
    version = traffic_by_version.version
    redactions = [
        g.input["event"]
        for g in traffic_by_version.generated
        if g.input["event"]["type"] == "m.room.redaction"
    ]
    assert redactions
    for pdu in redactions:
        if int(version.id) >= 11:  # MSC2174
            assert "redacts" in pdu["content"] and "redacts" not in pdu
        else:
            assert "redacts" in pdu and "redacts" not in pdu["content"]
