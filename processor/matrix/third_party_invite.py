"""The third-party invite rule: an `m.room.member` invite carrying `third_party_invite`.

v1–v5 rule 5.3.1, v6–v11 rule 4.4.1, v12 rule 5.4.1: the invite is allowed only when the
`signed` block (`mxid`, `token`, `signatures`) was signed by the identity server holding one
of the public keys that the inviter published in the matching `m.room.third_party_invite`
event (`content.public_key` and `content.public_keys[].public_key`). The signature covers the
canonical JSON of `signed` without `signatures` (appendix "Signing JSON"). Ed25519 comes from
`processor.matrix.signing` (the `cryptography` package, a maintained binding of OpenSSL).

Key validity (`key_validity_url`) is an identity-server call and not part of the auth rules.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

from processor.errors import AuthError, InvalidEvent
from processor.matrix.events import Event
from processor.matrix.signing import signature_payload, verify_ed25519

__all__ = ["check_third_party_invite", "third_party_invite_public_keys"]

_CONTEXT = "m.room.member invite (third party)"


def third_party_invite_public_keys(invite_event: Event) -> list[str]:
    """The unpadded-Base64 public keys an `m.room.third_party_invite` event publishes."""
    content = invite_event.content
    keys: list[str] = []
    if not isinstance(content, Mapping):
        return keys
    single = content.get("public_key")
    if type(single) is str:
        keys.append(single)
    many = content.get("public_keys")
    if isinstance(many, list):
        for entry in many:
            if isinstance(entry, Mapping):
                key = entry.get("public_key")
                if type(key) is str and key not in keys:
                    keys.append(key)
    return keys


def _signatures(signed: Mapping[str, object]) -> Iterator[str]:
    """Every Ed25519 signature in `signed.signatures` (other algorithms are skipped)."""
    signatures = signed.get("signatures")
    if not isinstance(signatures, Mapping):
        return
    for by_server in signatures.values():
        if not isinstance(by_server, Mapping):
            continue
        for key_id, signature in by_server.items():
            if type(key_id) is str and key_id.startswith("ed25519:") and type(signature) is str:
                yield signature


def check_third_party_invite(
    event: Event, auth_state: Mapping[tuple[str, str], Event]
) -> None:
    """Allow (return) or reject (raise AuthError) an invite with `content.third_party_invite`.

    The caller has checked that `event` is an `m.room.member` invite with a state key.
    """
    state_key = event.state_key
    content = event.content
    # .1: a banned target cannot be invited, even by a third party.
    target = auth_state.get(("m.room.member", state_key or ""))
    if (
        target is not None
        and isinstance(target.content, Mapping)
        and target.content.get("membership") == "ban"
    ):
        raise AuthError(f"{_CONTEXT}: target {state_key} is banned")
    # .2
    invite = content.get("third_party_invite")
    signed = invite.get("signed") if isinstance(invite, Mapping) else None
    if not isinstance(signed, Mapping):
        raise AuthError(f"{_CONTEXT}: third_party_invite has no signed object")
    # .3
    mxid = signed.get("mxid")
    token = signed.get("token")
    if type(mxid) is not str or type(token) is not str:
        raise AuthError(f"{_CONTEXT}: signed has no mxid and token strings")
    # .4
    if mxid != state_key:
        raise AuthError(f"{_CONTEXT}: signed.mxid {mxid} is not the state_key {state_key}")
    # .5
    invite_event = auth_state.get(("m.room.third_party_invite", token))
    if invite_event is None:
        raise AuthError(f"{_CONTEXT}: no m.room.third_party_invite event for token {token!r}")
    # .6
    if invite_event.sender != event.sender:
        raise AuthError(
            f"{_CONTEXT}: sender {event.sender} did not send the m.room.third_party_invite "
            f"{invite_event.event_id} (sent by {invite_event.sender})"
        )
    # .7: any signature in `signed` by any published public key.
    public_keys = third_party_invite_public_keys(invite_event)
    try:
        payload = signature_payload(signed)
    except InvalidEvent as e:
        raise AuthError(f"{_CONTEXT}: signed cannot be encoded as canonical JSON: {e}") from None
    for signature in _signatures(signed):
        for public_key in public_keys:
            if verify_ed25519(public_key, signature, payload):
                return
    # .8
    raise AuthError(
        f"{_CONTEXT}: no signature in signed matches a public key of "
        f"m.room.third_party_invite {invite_event.event_id}"
    )
