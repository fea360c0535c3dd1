"""Generated homeservers: a server name and a deterministic ed25519 signing key for each.

The generator plays every homeserver in its rooms, so it owns their signing keys. Seeds come
from the generator's seeded `random.Random`, so the same `--seed` gives the same keys and the
same signatures. The public keys are exposed so tests (and a federation-API stand-in) can
verify what was signed.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from processor.matrix.signing import encode_base64, public_key_from_seed

__all__ = ["ServerKey", "make_servers"]


@dataclass(frozen=True, slots=True)
class ServerKey:
    """One generated homeserver and its signing key."""

    server_name: str
    #: ``ed25519:<version>`` as it appears in ``signatures``.
    key_id: str
    #: The 32-byte ed25519 seed (private key).
    seed: bytes
    #: The key object, built once: rebuilding it per event would dominate signing time.
    private_key: Ed25519PrivateKey = field(repr=False, compare=False)

    @property
    def public_key(self) -> bytes:
        """The raw 32-byte public key."""
        return public_key_from_seed(self.seed)

    @property
    def public_key_base64(self) -> str:
        """The public key as unpadded Base64, as a `/_matrix/key/v2/server` answer lists it."""
        return encode_base64(self.public_key)


def make_servers(rng: random.Random, count: int) -> list[ServerKey]:
    """`count` servers named ``s1.example`` … with keys drawn from `rng`."""
    servers = []
    for n in range(1, count + 1):
        seed = rng.randbytes(32)
        servers.append(
            ServerKey(
                server_name=f"s{n}.example",
                key_id=f"ed25519:gen{n}",
                seed=seed,
                private_key=Ed25519PrivateKey.from_private_bytes(seed),
            )
        )
    return servers
