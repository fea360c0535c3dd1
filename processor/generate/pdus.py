"""Finishing generated events into PDUs of a room version: references, hash, signatures, ID.

What differs between room versions here (the room version pages, "Event format"):

- v1/v2: the event carries an ``event_id`` (``$opaque:origin``) and lists ``prev_events`` /
  ``auth_events`` as ``[event_id, {"sha256": reference hash}]`` pairs.
- v3+: plain lists of event IDs; the ID is derived from the reference hash, so it is
  computed after hashing (signatures do not enter the reference hash).
- v11+ (MSC2174): a redaction names its target in ``content.redacts``, not at the top level.
- v12 (MSC4291): the create event has no ``room_id``; the room ID is derived from it.

The order follows the server-server API: content hash first ("Calculating the content hash"),
then signatures over the redacted event ("Signing events"), then the reference hash.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from processor.generate.keys import ServerKey
from processor.matrix.hashing import (
    add_content_hash,
    event_id_from_reference_hash,
    reference_hash_trusted,
    room_id_for_create_event,
)
from processor.matrix.redaction import redact
from processor.matrix.room_versions import RedactionAlgorithm, RoomVersion
from processor.matrix.signing import encode_base64, signature_payload

__all__ = ["PduFactory"]


class PduFactory:
    """Builds the signed PDUs of one room. Remembers the reference hashes of the events it
    built, which v1/v2 events quote when they reference them."""

    def __init__(self, version: RoomVersion) -> None:
        self.version = version
        self._reference_hashes: dict[str, str] = {}

    def _references(self, event_ids: Sequence[str]) -> list[Any]:
        if self.version.event_id_in_event:
            return [[eid, {"sha256": self._reference_hashes[eid]}] for eid in event_ids]
        return list(event_ids)

    def build(
        self,
        *,
        room_id: str | None,
        sender: str,
        event_type: str,
        content: Mapping[str, Any],
        state_key: str | None,
        prev_event_ids: Sequence[str],
        auth_event_ids: Sequence[str],
        depth: int,
        origin_server_ts: int,
        signers: Sequence[ServerKey],
        opaque_event_id: str | None = None,
        redacts: str | None = None,
    ) -> tuple[dict[str, Any], str]:
        """The finished PDU and its event ID.

        `room_id` is None only for a v12 create event. `opaque_event_id` is the v1/v2
        ``event_id`` (ignored for v3+). `signers` sign in order; the first is the origin.
        """
        version = self.version
        pdu: dict[str, Any] = {
            "type": event_type,
            "sender": sender,
            "content": dict(content),
            "prev_events": self._references(prev_event_ids),
            "auth_events": self._references(auth_event_ids),
            "depth": depth,
            "origin_server_ts": origin_server_ts,
        }
        if room_id is not None:
            pdu["room_id"] = room_id
        if state_key is not None:
            pdu["state_key"] = state_key
        if redacts is not None:
            # MSC2174 moved `redacts` into content in v11, the version whose redaction
            # algorithm (RedactionAlgorithm.V11) protects `content.redacts`.
            if version.redaction is RedactionAlgorithm.V11:
                pdu["content"]["redacts"] = redacts
            else:
                pdu["redacts"] = redacts
        if version.event_id_in_event:
            if opaque_event_id is None:
                raise ValueError(f"room version {version.id} events need an opaque event ID")
            pdu["event_id"] = opaque_event_id
        pdu = add_content_hash(pdu)
        # Every signature covers the same bytes: the canonical JSON of the redacted event
        # without signatures/unsigned (server-server API "Signing events").
        payload = signature_payload(redact(pdu, version))
        signatures: dict[str, dict[str, str]] = {}
        for signer in signers:
            signatures.setdefault(signer.server_name, {})[signer.key_id] = encode_base64(
                signer.private_key.sign(payload)
            )
        pdu["signatures"] = signatures
        # The values were checked for canonical JSON by the content hash above, so the
        # reference hash can skip that walk.
        digest = reference_hash_trusted(pdu, version)
        if opaque_event_id is not None and version.event_id_in_event:
            event_id = opaque_event_id
            self._reference_hashes[event_id] = encode_base64(digest)
        else:
            event_id = event_id_from_reference_hash(digest, version)
        return pdu, event_id

    def room_id_of_create(self, create_pdu: Mapping[str, Any]) -> str:
        """v12: the room ID derived from the create event (MSC4291)."""
        return room_id_for_create_event(create_pdu, self.version)
