"""Invites with `third_party_invite`: v1–v5 rule 5.3.1, v6–v11 rule 4.4.1, v12 rule 5.4.1.

The identity server's key pair is made from fixed seeds; `signed` is signed with
`processor.matrix.signing.sign_json` exactly as an identity server signs it.
"""

from __future__ import annotations

from typing import Any

import pytest

from processor.errors import AuthError
from processor.matrix.events import Event
from processor.matrix.signing import encode_base64, public_key_from_seed, sign_json
from tests.unit.matrix.test_auth_fixtures import (
    ALL_VERSIONS,
    BOB,
    CAROL,
    DAVE,
    EVE,
    Room,
)

ID_SERVER_SEED = bytes(range(32))
OTHER_SEED = bytes(range(1, 33))
ID_SERVER_KEY = encode_base64(public_key_from_seed(ID_SERVER_SEED))
OTHER_KEY = encode_base64(public_key_from_seed(OTHER_SEED))
URLSAFE_KEY = encode_base64(public_key_from_seed(ID_SERVER_SEED), urlsafe=True)

TOKEN = "abc123"


def _signed(mxid: str = DAVE, token: str = TOKEN, seed: bytes = ID_SERVER_SEED) -> dict[str, Any]:
    return sign_json({"mxid": mxid, "token": token}, "id.example", "ed25519:0", seed)


def _room(
    version_id: str,
    *,
    public_key: str | None = ID_SERVER_KEY,
    public_keys: list[Any] | None = None,
    sender: str = BOB,
) -> Room:
    room = Room(version_id)
    content: dict[str, Any] = {"display_name": "d...@example.com", "key_validity_url": "x"}
    if public_key is not None:
        content["public_key"] = public_key
    if public_keys is not None:
        content["public_keys"] = public_keys
    room.set_state("m.room.third_party_invite", TOKEN, sender, content)
    return room


def _invite(room: Room, signed: Any, *, target: str = DAVE, sender: str = BOB) -> Event:
    third_party_invite: Any = {"display_name": "d...@example.com", "signed": signed}
    return room.member(
        target, "invite", sender=sender, extra={"third_party_invite": third_party_invite}
    )


@pytest.mark.parametrize("version_id", ALL_VERSIONS)
def test_valid_signature_allows(version_id: str) -> None:
    room = _room(version_id)
    room.check(_invite(room, _signed()))


@pytest.mark.parametrize("version_id", ALL_VERSIONS)
def test_key_from_public_keys_list(version_id: str) -> None:
    room = _room(
        version_id,
        public_key=OTHER_KEY,
        public_keys=[{"public_key": OTHER_KEY}, {"public_key": ID_SERVER_KEY}, "junk"],
    )
    room.check(_invite(room, _signed()))


@pytest.mark.parametrize("version_id", ["1", "12"])
def test_urlsafe_public_key(version_id: str) -> None:
    room = _room(version_id, public_key=URLSAFE_KEY)
    room.check(_invite(room, _signed()))


@pytest.mark.parametrize("version_id", ALL_VERSIONS)
def test_sender_level_and_membership_not_checked(version_id: str) -> None:
    # The third-party branch allows (.7) before the ordinary invite rules: the invite level
    # does not apply. (The inviter must still be the m.room.third_party_invite's sender.)
    room = _room(version_id, sender=CAROL)
    room.set_power_levels(invite=100)
    room.check(_invite(room, _signed(), sender=CAROL))


THIRD_PARTY_ROWS: list[tuple[str, Any, dict[str, Any], str]] = [
    # (description, signed, overrides, expected)
    ("signed missing", None, {}, "no signed object"),
    ("signed not an object", "x", {}, "no signed object"),
    ("no mxid", {"token": TOKEN}, {}, "no mxid and token"),
    ("no token", {"mxid": DAVE}, {}, "no mxid and token"),
    ("token not a string", {"mxid": DAVE, "token": 5}, {}, "no mxid and token"),
    ("mxid is not the state_key", "other-mxid", {}, "is not the state_key"),
    ("no m.room.third_party_invite for the token", "other-token", {},
     "no m.room.third_party_invite"),
    ("sender did not send the third-party invite", "ok", {"sender": CAROL},
     "did not send"),
    ("signed by another key", "other-key", {}, "no signature"),
    ("tampered after signing", "tampered", {}, "no signature"),
    ("no signatures", "unsigned", {}, "no signature"),
    ("no public keys", "ok", {"no_keys": True}, "no signature"),
    ("garbage public key", "ok", {"public_key": "!!!"}, "no signature"),
    ("banned target", "ok", {"target": EVE}, "is banned"),
    ("signature with other algorithm", "curve", {}, "no signature"),
]


def _signed_variant(kind: Any) -> Any:
    if not isinstance(kind, str) or kind in ("x",):
        return kind
    if kind == "ok":
        return _signed()
    if kind == "other-mxid":
        return _signed(mxid=CAROL)
    if kind == "other-token":
        return _signed(token="nope")
    if kind == "other-key":
        return _signed(seed=OTHER_SEED)
    if kind == "tampered":
        return _signed() | {"token": TOKEN, "mxid": DAVE, "extra": 1}
    if kind == "unsigned":
        return {"mxid": DAVE, "token": TOKEN}
    if kind == "curve":
        signed = _signed()
        signature = signed["signatures"]["id.example"]["ed25519:0"]
        return signed | {"signatures": {"id.example": {"curve25519:0": signature}}}
    raise AssertionError(kind)


@pytest.mark.parametrize(
    ("version_id", "signed", "overrides", "expected"),
    [
        pytest.param(v, signed, overrides, expected, id=f"v{v}-{description}")
        for description, signed, overrides, expected in THIRD_PARTY_ROWS
        for v in ALL_VERSIONS
    ],
)
def test_third_party_invite_rejections(
    version_id: str, signed: Any, overrides: dict[str, Any], expected: str
) -> None:
    if overrides.get("no_keys"):
        room = _room(version_id, public_key=None)
    else:
        room = _room(version_id, public_key=overrides.get("public_key", ID_SERVER_KEY))
    target = overrides.get("target", DAVE)
    sender = overrides.get("sender", BOB)
    signed_value = _signed_variant(signed)
    if target != DAVE and isinstance(signed_value, dict):
        signed_value = _signed(mxid=target)
    event = _invite(room, signed_value, target=target, sender=sender)
    with pytest.raises(AuthError, match=expected):
        room.check(event)


@pytest.mark.parametrize("version_id", ALL_VERSIONS)
def test_third_party_invite_not_an_object(version_id: str) -> None:
    room = _room(version_id)
    event = room.member(DAVE, "invite", sender=BOB, extra={"third_party_invite": "x"})
    with pytest.raises(AuthError, match="no signed object"):
        room.check(event)
