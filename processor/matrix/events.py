"""`Event`: a PDU decoded into the fields the authorization rules and state resolution read.

The same object serves every room version: `prev_event_ids`/`auth_event_ids` are plain IDs
whatever the wire format, and `redacts` is read from the top level (v1..v10) or from content
(v11+). `pdu` keeps the full JSON object for hashing and redaction.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Event:
    event_id: str
    room_id: str
    sender: str
    type: str
    state_key: str | None
    content: Mapping[str, Any]
    prev_event_ids: tuple[str, ...]
    auth_event_ids: tuple[str, ...]
    depth: int
    origin_server_ts: int
    redacts: str | None
    #: The PDU as a JSON object, as received (what hashing and redaction take).
    pdu: Mapping[str, Any]

    @property
    def is_state(self) -> bool:
        return self.state_key is not None

    @property
    def state_tuple(self) -> tuple[str, str] | None:
        """(type, state_key) for a state event, else None."""
        return None if self.state_key is None else (self.type, self.state_key)

    @property
    def membership(self) -> object:
        """`content.membership` as found (may be of any type in a malformed event)."""
        return self.content.get("membership")


def server_name_of(matrix_id: str) -> str:
    """The server name of a user ID, a room ID (v1–v11) or an event ID (v1, v2): everything
    after the first `:` (appendices, "Common identifier format")."""
    return matrix_id.partition(":")[2]
