"""Ed25519 signing of JSON objects and events, and unpadded Base64 (spec appendices
"Unpadded Base64", "Signing JSON" → "Signing Details" / "Checking for a Signature").

JSON is signed over the canonical JSON of the object without its ``signatures`` and
``unsigned`` members; the unpadded-Base64 signature is stored at
``signatures[signing_name][key_id]``. An event is signed over its *redacted* form (after its
content hash has been added), so a signature survives redaction (server-server API "Signing
events").

The roomserver itself verifies only third-party-invite signatures (an auth rule needs them);
`roomserver generate` signs the traffic it produces. The `cryptography` package provides
Ed25519; it does no I/O, so this module stays in the pure core.
"""

from __future__ import annotations

import base64
import binascii
import copy
from collections.abc import Mapping
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from processor.matrix.canonical_json import canonical_json
from processor.matrix.redaction import redact
from processor.matrix.room_versions import RoomVersion

__all__ = [
    "decode_base64",
    "encode_base64",
    "public_key_from_seed",
    "sign_event",
    "sign_json",
    "signature_payload",
    "verify_ed25519",
    "verify_signed_json",
]


def encode_base64(data: bytes, urlsafe: bool = False) -> str:
    """Unpadded Base64 (standard alphabet, or URL-safe ``-_`` when `urlsafe`)."""
    encoded = base64.urlsafe_b64encode(data) if urlsafe else base64.b64encode(data)
    return encoded.rstrip(b"=").decode("ascii")


def decode_base64(data: str | bytes) -> bytes:
    """Decode Base64 with or without padding, standard or URL-safe alphabet (the appendix
    says implementations SHOULD accept both padded and unpadded input).

    Raises `ValueError` on anything that is not Base64.
    """
    raw = data.encode("ascii", "strict") if isinstance(data, str) else bytes(data)
    raw = raw.rstrip(b"=")
    if len(raw) % 4 == 1:
        raise ValueError("invalid Base64 length")
    padded = raw + b"=" * (-len(raw) % 4)
    try:
        if b"-" in raw or b"_" in raw:
            return base64.b64decode(padded, altchars=b"-_", validate=True)
        return base64.b64decode(padded, validate=True)
    except binascii.Error as e:
        raise ValueError(f"invalid Base64: {e}") from None


def _private_key(seed: bytes) -> Ed25519PrivateKey:
    if len(seed) != 32:
        raise ValueError(f"an Ed25519 seed is 32 bytes, got {len(seed)}")
    return Ed25519PrivateKey.from_private_bytes(seed)


def public_key_from_seed(seed: bytes) -> bytes:
    """The 32-byte Ed25519 public key for a 32-byte seed."""
    return _private_key(seed).public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


def signature_payload(obj: Mapping[str, Any]) -> bytes:
    """The bytes a signature covers: canonical JSON without ``signatures`` and ``unsigned``."""
    return canonical_json({k: v for k, v in obj.items() if k not in ("signatures", "unsigned")})


def sign_json(
    obj: Mapping[str, Any], signing_name: str, key_id: str, seed: bytes
) -> dict[str, Any]:
    """A copy of `obj` with an Ed25519 signature by `signing_name`/`key_id` added to its
    ``signatures`` (existing signatures and ``unsigned`` are kept, not covered)."""
    signature = _private_key(seed).sign(signature_payload(obj))
    signed = copy.deepcopy(dict(obj))
    signatures = signed.get("signatures")
    if not isinstance(signatures, dict):
        signatures = {}
    by_entity = signatures.get(signing_name)
    if not isinstance(by_entity, dict):
        by_entity = {}
    by_entity[key_id] = encode_base64(signature)
    signatures[signing_name] = by_entity
    signed["signatures"] = signatures
    return signed


def sign_event(
    pdu: Mapping[str, Any], version: RoomVersion, signing_name: str, key_id: str, seed: bytes
) -> dict[str, Any]:
    """A copy of the event `pdu` signed by `signing_name` (server-server API "Signing
    events"): the signature covers the redacted event, so `pdu` should already carry its
    content hash (`processor.matrix.hashing.add_content_hash`)."""
    redacted_signed = sign_json(redact(pdu, version), signing_name, key_id, seed)
    signed = copy.deepcopy(dict(pdu))
    signed["signatures"] = redacted_signed["signatures"]
    return signed


def verify_ed25519(public_key_b64: str, signature_b64: str, message: bytes) -> bool:
    """Whether `signature_b64` is a valid Ed25519 signature of `message` by the key
    `public_key_b64` (both unpadded Base64). Garbage input gives False, never an exception."""
    try:
        public_key = Ed25519PublicKey.from_public_bytes(decode_base64(public_key_b64))
        public_key.verify(decode_base64(signature_b64), message)
    except (InvalidSignature, ValueError, TypeError, AttributeError):
        return False
    return True


def verify_signed_json(
    obj: Mapping[str, Any], signing_name: str, key_id: str, public_key: bytes
) -> bool:
    """Whether `obj` carries a valid signature by `signing_name` with `key_id`, checked
    against the raw 32-byte `public_key` (appendix "Checking for a Signature", steps 1–7).
    Missing entries, undecodable signatures and non-canonical content give False."""
    try:
        signature = obj["signatures"][signing_name][key_id]
        if not isinstance(signature, str):
            return False
        payload = signature_payload(obj)
        key = Ed25519PublicKey.from_public_bytes(public_key)
        key.verify(decode_base64(signature), payload)
    except (InvalidSignature, ValueError, TypeError, KeyError, AttributeError):
        return False
    return True
