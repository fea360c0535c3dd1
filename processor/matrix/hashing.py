"""Content hashes, reference hashes, event IDs and v12 room IDs (server-server API "Calculating
the content hash for an event", "Calculating the reference hash for an event"; room version
pages "Event IDs").

- content hash: SHA-256 of the canonical JSON of the event without ``unsigned``,
  ``signatures`` and ``hashes``; stored unpadded-Base64 as ``hashes.sha256``.
- reference hash: SHA-256 of the canonical JSON of the *redacted* event without
  ``signatures`` and ``unsigned`` (``hashes`` is kept: redaction protects it).
- event ID: v1/v2 carry it in the event; v3 is ``$`` + unpadded standard Base64 of the
  reference hash; v4+ the same with the URL-safe alphabet.
- v12 room ID (MSC4291): ``!`` + unpadded URL-safe Base64 of the create event's reference
  hash, with no server part.

Strict canonical JSON (floats and out-of-range integers rejected) applies from v6; events of
v1–v5 are hashed as they are, since the spec warns they may hold such numbers.
"""

from __future__ import annotations

import hashlib
from base64 import b64decode, b64encode, urlsafe_b64encode
from collections.abc import Mapping
from typing import Any

from processor.matrix.canonical_json import canonical_json, encode_canonical_trusted
from processor.matrix.redaction import redact
from processor.matrix.room_versions import EventIdFormat, RoomVersion
from schemas.errors import InvalidEvent

__all__ = [
    "add_content_hash",
    "check_content_hash",
    "compute_event_id",
    "content_hash",
    "event_id_from_reference_hash",
    "reference_hash",
    "reference_hash_trusted",
    "room_id_for_create_event",
]

#: The spec ("Calculating the content hash for an event") removes `unsigned`, `signatures`
#: and `hashes`. The reference homeserver also leaves out the legacy top-level keys `age_ts`,
#: `outlier` and `destinations`; events carrying them exist on the network, so for
#: interoperability they are left out here too.
_NOT_IN_CONTENT_HASH = frozenset(
    {"unsigned", "signatures", "hashes", "age_ts", "outlier", "destinations"}
)


def content_hash(pdu: Mapping[str, Any], *, strict: bool = True) -> str:
    """The unpadded standard Base64 SHA-256 content hash of `pdu`."""
    hashed = {k: v for k, v in pdu.items() if k not in _NOT_IN_CONTENT_HASH}
    digest = hashlib.sha256(canonical_json(hashed, strict=strict)).digest()
    return b64encode(digest).rstrip(b"=").decode("ascii")


def add_content_hash(pdu: Mapping[str, Any]) -> dict[str, Any]:
    """A shallow copy of `pdu` with ``hashes`` = ``{"sha256": content_hash(pdu)}``."""
    hashed = dict(pdu)
    hashed["hashes"] = {"sha256": content_hash(pdu)}
    return hashed


def check_content_hash(pdu: Mapping[str, Any], *, strict: bool = True) -> bool:
    """Whether ``hashes.sha256`` matches the event's content (spec: an event failing this
    check is redacted before it is processed further)."""
    hashes = pdu.get("hashes")
    if not isinstance(hashes, Mapping):
        return False
    expected = hashes.get("sha256")
    if not isinstance(expected, str):
        return False
    # Compare bytes, not text: padded, unpadded and URL-safe Base64 are all accepted
    # (appendix "Unpadded Base64": decoders SHOULD accept padding).
    try:
        raw = expected.rstrip("=").encode("ascii")
        altchars = b"-_" if b"-" in raw or b"_" in raw else None
        expected_digest = b64decode(raw + b"=" * (-len(raw) % 4), altchars, validate=True)
    except ValueError:  # binascii.Error and UnicodeEncodeError are ValueErrors
        return False
    actual = content_hash(pdu, strict=strict)
    return expected_digest == b64decode(actual + "=" * (-len(actual) % 4))


def _reference_payload(pdu: Mapping[str, Any], version: RoomVersion) -> dict[str, Any]:
    redacted = redact(pdu, version)
    redacted.pop("signatures", None)
    redacted.pop("unsigned", None)
    return redacted


def reference_hash(pdu: Mapping[str, Any], version: RoomVersion) -> bytes:
    """The 32-byte SHA-256 reference hash of `pdu` under `version`'s redaction algorithm."""
    payload = canonical_json(
        _reference_payload(pdu, version), strict=version.strict_canonical_json
    )
    return hashlib.sha256(payload).digest()


def reference_hash_trusted(pdu: Mapping[str, Any], version: RoomVersion) -> bytes:
    """`reference_hash` without the canonical-JSON walk: only for a `pdu` just decoded from
    JSON with its numbers checked (`processor.matrix.pdu` does)."""
    return hashlib.sha256(encode_canonical_trusted(_reference_payload(pdu, version))).digest()


def event_id_from_reference_hash(digest: bytes, version: RoomVersion) -> str:
    """``$`` + the reference hash in the Base64 alphabet of `version` (v3 standard, v4+
    URL-safe). Not defined for v1/v2, whose IDs are carried in the event."""
    if version.event_id_format is EventIdFormat.REFERENCE_HASH_URLSAFE:
        return "$" + urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")
    if version.event_id_format is EventIdFormat.REFERENCE_HASH_BASE64:
        return "$" + b64encode(digest).rstrip(b"=").decode("ascii")
    raise ValueError(f"room version {version.id} carries event IDs in the event")


def compute_event_id(pdu: Mapping[str, Any], version: RoomVersion) -> str:
    """The event ID of `pdu` in a room of `version`.

    v1/v2: the ``event_id`` the event carries (`InvalidEvent` if it is missing or not a
    string). v3+: derived from the reference hash, so ``signatures`` and ``unsigned`` never
    change it.
    """
    if version.event_id_format is EventIdFormat.IN_EVENT:
        event_id = pdu.get("event_id")
        if not isinstance(event_id, str):
            raise InvalidEvent(
                f"Expected `str`, got `{type(event_id).__name__}`: room version "
                f"{version.id} events carry their event ID",
                field="$.event_id",
            )
        return event_id
    return event_id_from_reference_hash(reference_hash(pdu, version), version)


def room_id_for_create_event(pdu: Mapping[str, Any], version: RoomVersion) -> str:
    """The room ID a create event belongs to.

    v12+ (MSC4291): ``!`` + unpadded URL-safe Base64 of the create event's reference hash
    (the event ID with ``!`` for ``$``; no server part). Earlier versions: the ``room_id``
    the event carries (`InvalidEvent` if missing or not a string).
    """
    if version.room_id_is_create_event_hash:
        digest = reference_hash(pdu, version)
        return "!" + urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")
    room_id = pdu.get("room_id")
    if not isinstance(room_id, str):
        raise InvalidEvent(
            f"Expected `str`, got `{type(room_id).__name__}`", field="$.room_id"
        )
    return room_id
