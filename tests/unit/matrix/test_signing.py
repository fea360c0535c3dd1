"""Signing and verification against the spec appendix "Cryptographic Test Vectors" (seed,
server name "domain", key ID "ed25519:1") and the "Unpadded Base64" examples."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from processor.matrix.room_versions import room_version
from processor.matrix.signing import (
    decode_base64,
    encode_base64,
    public_key_from_seed,
    sign_event,
    sign_json,
    verify_ed25519,
    verify_signed_json,
)

SEED = decode_base64("YJDBA9Xnr2sVqXD9Vj7XVUnmFZcZrlw8Md7kMW+3XA1")
SERVER_NAME = "domain"
KEY_ID = "ed25519:1"


@pytest.mark.parametrize(
    ("raw", "encoded"),
    [
        (b"", ""),
        (b"f", "Zg"),
        (b"fo", "Zm8"),
        (b"foo", "Zm9v"),
        (b"foob", "Zm9vYg"),
        (b"fooba", "Zm9vYmE"),
        (b"foobar", "Zm9vYmFy"),
    ],
)
def test_unpadded_base64_appendix_examples(raw: bytes, encoded: str) -> None:
    assert encode_base64(raw) == encoded
    assert decode_base64(encoded) == raw
    # "implementations SHOULD accept input with or without padding"
    assert decode_base64(encoded + "=" * (-len(encoded) % 4)) == raw


def test_urlsafe_base64() -> None:
    assert encode_base64(b"\xfb\xff", urlsafe=True) == "-_8"
    assert encode_base64(b"\xfb\xff") == "+/8"
    assert decode_base64("-_8") == b"\xfb\xff"


@pytest.mark.parametrize("garbage", ["!!!!", "a", "Zm9v$", "é"])
def test_decode_base64_rejects_garbage(garbage: str) -> None:
    with pytest.raises(ValueError):
        decode_base64(garbage)


def test_seed_is_32_bytes() -> None:
    assert len(SEED) == 32
    assert len(public_key_from_seed(SEED)) == 32


def test_sign_empty_object() -> None:
    assert sign_json({}, SERVER_NAME, KEY_ID, SEED) == {
        "signatures": {
            "domain": {
                "ed25519:1": "K8280/U9SSy9IVtjBuVeLr+HpOB4BQFWbg+UZaADMtTdGYI7Geitb76LTrr5QV"
                "/7Xg4ahLwYGYZzuHGZKM5ZAQ"
            }
        }
    }


def test_sign_object_with_data() -> None:
    assert sign_json({"one": 1, "two": "Two"}, SERVER_NAME, KEY_ID, SEED) == {
        "one": 1,
        "signatures": {
            "domain": {
                "ed25519:1": "KqmLSbO39/Bzb0QIYE82zqLwsA+PDzYIpIRA2sRQ4sL53+sN6/fpNSoqE7BP7v"
                "BZhG6kYdD13EIMJpvhJI+6Bw"
            }
        },
        "two": "Two",
    }


def test_sign_ignores_unsigned_and_existing_signatures() -> None:
    signed = sign_json(
        {"one": 1, "two": "Two", "unsigned": {"age_ts": 1}, "signatures": {"other": {"k": "s"}}},
        SERVER_NAME,
        KEY_ID,
        SEED,
    )
    assert signed["signatures"]["domain"]["ed25519:1"].startswith("KqmLSbO39")
    assert signed["signatures"]["other"] == {"k": "s"}
    assert signed["unsigned"] == {"age_ts": 1}


def test_sign_returns_a_copy() -> None:
    original: dict[str, object] = {"a": {"b": 1}}
    sign_json(original, SERVER_NAME, KEY_ID, SEED)
    assert original == {"a": {"b": 1}}


def test_event_signing_vector_minimal_event() -> None:
    # Appendix "Event Signing": the minimal event, signed over its redacted form.
    event = {
        "room_id": "!x:domain",
        "sender": "@a:domain",
        "origin": "domain",
        "origin_server_ts": 1000000,
        "signatures": {},
        "hashes": {"sha256": "5jM4wQpv6lnBo7CLIghJuHdW+s2CMBJPUOGOC89ncos"},
        "type": "X",
        "content": {},
        "prev_events": [],
        "auth_events": [],
        "depth": 3,
        "unsigned": {"age_ts": 1000000},
    }
    signed = sign_event(event, room_version("1"), SERVER_NAME, KEY_ID, SEED)
    assert signed["signatures"] == {
        "domain": {
            "ed25519:1": "KxwGjPSDEtvnFgU00fwFz+l6d2pJM6XBIaMEn81SXPTRl16AqLAYqfIReFGZlHi5K"
            "LjAWbOoMszkwsQma+lYAg"
        }
    }
    assert signed["unsigned"] == {"age_ts": 1000000}


def test_event_signing_vector_message_event() -> None:
    event = {
        "content": {"body": "Here is the message content"},
        "event_id": "$0:domain",
        "hashes": {"sha256": "onLKD1bGljeBWQhWZ1kaP9SorVmRQNdN5aM2JYU2n/g"},
        "origin": "domain",
        "origin_server_ts": 1000000,
        "type": "m.room.message",
        "room_id": "!r:domain",
        "sender": "@u:domain",
        "signatures": {},
        "unsigned": {"age_ts": 1000000},
    }
    signed = sign_event(event, room_version("1"), SERVER_NAME, KEY_ID, SEED)
    assert signed["signatures"]["domain"]["ed25519:1"] == (
        "Wm+VzmOUOz08Ds+0NTWb1d4CZrVsJSikkeRxh6aCcUwu6pNC78FunoD7KNWzqFn241eYHYMGCA5McEiVPdhzBA"
    )
    assert signed["content"] == {"body": "Here is the message content"}


def test_verify_signed_json_round_trip_and_tamper() -> None:
    public_key = public_key_from_seed(SEED)
    signed = sign_json({"one": 1, "two": "Two"}, SERVER_NAME, KEY_ID, SEED)
    assert verify_signed_json(signed, SERVER_NAME, KEY_ID, public_key)
    # unsigned is not covered (appendix: "intermediate entities can add unsigned data")
    assert verify_signed_json({**signed, "unsigned": {"x": 1}}, SERVER_NAME, KEY_ID, public_key)
    assert not verify_signed_json({**signed, "one": 2}, SERVER_NAME, KEY_ID, public_key)
    assert not verify_signed_json(signed, "other", KEY_ID, public_key)
    assert not verify_signed_json(signed, SERVER_NAME, "ed25519:2", public_key)
    assert not verify_signed_json({"one": 1}, SERVER_NAME, KEY_ID, public_key)
    assert not verify_signed_json({**signed, "f": 1.5}, SERVER_NAME, KEY_ID, public_key)
    assert not verify_signed_json(signed, SERVER_NAME, KEY_ID, b"short")


def test_verify_ed25519() -> None:
    public_key_b64 = encode_base64(public_key_from_seed(SEED))
    signature = (
        "K8280/U9SSy9IVtjBuVeLr+HpOB4BQFWbg+UZaADMtTdGYI7Geitb76LTrr5QV/7Xg4ahLwYGYZzuHGZKM5ZAQ"
    )
    assert verify_ed25519(public_key_b64, signature, b"{}")
    assert verify_ed25519(public_key_b64 + "=", signature + "==", b"{}")
    assert not verify_ed25519(public_key_b64, signature, b"{ }")


@given(st.text(max_size=100), st.text(max_size=100), st.binary(max_size=50))
def test_verify_ed25519_never_raises(key: str, signature: str, message: bytes) -> None:
    assert verify_ed25519(key, signature, message) in (True, False)


@given(st.binary(max_size=64))
def test_base64_round_trip(data: bytes) -> None:
    assert decode_base64(encode_base64(data)) == data
    assert decode_base64(encode_base64(data, urlsafe=True)) == data
