"""The pure Matrix core: room versions, canonical JSON, hashing, redaction, auth rules and
state resolution. No I/O, no global state; only the standard library, `schemas` and
`processor.core` are imported here.

The public names below are stable: other parts of the roomserver and their tests use them.
"""

from __future__ import annotations

from processor.matrix.events import Event
from processor.matrix.room_versions import (
    KNOWN_ROOM_VERSIONS,
    EventIdFormat,
    RedactionAlgorithm,
    RoomVersion,
    StateResAlgorithm,
    room_version,
)

__all__ = [
    "KNOWN_ROOM_VERSIONS",
    "Event",
    "EventIdFormat",
    "RedactionAlgorithm",
    "RoomVersion",
    "StateResAlgorithm",
    "room_version",
]

# Canonical JSON, hashes and event IDs, redaction, signing.
from processor.matrix.canonical_json import CanonicalJsonError, canonical_json
from processor.matrix.hashing import (
    add_content_hash,
    check_content_hash,
    compute_event_id,
    content_hash,
    reference_hash,
    room_id_for_create_event,
)
from processor.matrix.redaction import redact
from processor.matrix.signing import (
    decode_base64,
    encode_base64,
    public_key_from_seed,
    sign_event,
    sign_json,
    verify_ed25519,
    verify_signed_json,
)

__all__ += [
    "CanonicalJsonError",
    "add_content_hash",
    "canonical_json",
    "check_content_hash",
    "compute_event_id",
    "content_hash",
    "decode_base64",
    "encode_base64",
    "public_key_from_seed",
    "redact",
    "reference_hash",
    "room_id_for_create_event",
    "sign_event",
    "sign_json",
    "verify_ed25519",
    "verify_signed_json",
]

# Authorization rules and auth-event selection.
from processor.matrix.auth import (  # noqa: E402
    auth_types_for_event,
    check_auth,
    check_auth_events_shape,
)
from processor.matrix.power_levels import (  # noqa: E402
    CREATOR_POWER_LEVEL,
    required_power_level,
    user_power_level,
)

__all__ += [
    "CREATOR_POWER_LEVEL",
    "auth_types_for_event",
    "check_auth",
    "check_auth_events_shape",
    "required_power_level",
    "user_power_level",
]

# State resolution v1, v2, v2.1 over NIDs.
from processor.matrix.state_res import (  # noqa: E402
    AuthChainIndex,
    EventSource,
    InMemoryEventSource,
    StateResEvent,
    resolve_state,
)

__all__ += [
    "AuthChainIndex",
    "EventSource",
    "InMemoryEventSource",
    "StateResEvent",
    "resolve_state",
]

# Decoding a PDU for its room version into an Event.
from processor.matrix.pdu import decode_pdu  # noqa: E402

__all__ += ["decode_pdu"]
