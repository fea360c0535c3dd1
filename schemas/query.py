"""The query API: what the sync, client and federation services ask the roomserver.

`roomserver serve` answers these over HTTP (``POST /query/<name>`` with the request as a
JSON body; ``GET /query/supported_room_versions``), and ``roomserver query <name>`` answers
the same from a database file in the embedded mode. `schemas.client.QueryClient` is a typed
client. Every answer reflects one committed state of the database.

Errors are Matrix-shaped, `QueryErrorBody`: ``{"errcode": "M_NOT_FOUND", "error": "..."}``
with 404 for an unknown room or event, 400 (``M_BAD_JSON``/``M_NOT_JSON``) for a malformed
request, naming the field.

State is listed as ``[type, state_key, event_id]`` triples (as ``roomserver state`` prints
it); PDUs are the events as stored: the JSON received, or its redacted form once redacted.

Schema evolution: new fields get defaults and are appended; fields are never removed.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec

__all__ = [
    "ENDPOINTS",
    "AliasCreatorRequest",
    "AliasCreatorResponse",
    "AliasesForRoomRequest",
    "AliasesForRoomResponse",
    "AuthChainRequest",
    "AuthChainResponse",
    "BackfillRequest",
    "EventsRequest",
    "EventsResponse",
    "InviteEntry",
    "InvitesForUserRequest",
    "InvitesForUserResponse",
    "LatestEvent",
    "LatestEventsAndStateRequest",
    "LatestEventsAndStateResponse",
    "MemberEntry",
    "MembershipForUserRequest",
    "MembershipForUserResponse",
    "MembershipsForRoomRequest",
    "MembershipsForRoomResponse",
    "MissingEventsRequest",
    "PdusResponse",
    "QueryErrorBody",
    "RemoveAliasRequest",
    "RemoveAliasResponse",
    "ResolveAliasRequest",
    "ResolveAliasResponse",
    "RoomVersionRequest",
    "RoomVersionResponse",
    "ServerAllowedToSeeEventRequest",
    "ServerAllowedToSeeEventResponse",
    "SetAliasRequest",
    "SetAliasResponse",
    "StateAfterEventsRequest",
    "StateAfterEventsResponse",
    "StateAndAuthChainRequest",
    "StateAndAuthChainResponse",
    "StateEntry",
    "StoredEvent",
    "SupportedRoomVersionsResponse",
    "path_of",
]

#: Identifiers are at most 255 bytes (the spec's size limits); 1,000 IDs per request.
#: No NUL character: no identifier holds one, and PostgreSQL text cannot.
_NO_NUL = r"^[^\x00]*$"
Identifier = Annotated[str, msgspec.Meta(min_length=1, max_length=255, pattern=_NO_NUL)]
IdList = Annotated[list[Identifier], msgspec.Meta(max_length=1000)]
#: A (type, state_key) pair; the state key may be empty.
_StateName = Annotated[str, msgspec.Meta(max_length=255, pattern=_NO_NUL)]
StatePair = tuple[_StateName, _StateName]
StatePairs = Annotated[list[StatePair], msgspec.Meta(max_length=1000)]
#: How many events one federation query may return (Synapse caps /backfill at 100).
Limit = Annotated[int, msgspec.Meta(ge=0, le=1000)]


class _Request(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Requests refuse unknown fields: a misspelt field must not silently mean "absent"."""


class _Response(msgspec.Struct, kw_only=True):
    pass


class QueryErrorBody(_Response):
    errcode: str
    error: str


class StateEntry(msgspec.Struct, array_like=True):
    """One state entry: ``[type, state_key, event_id]``."""

    type: str
    state_key: str
    event_id: str


class LatestEvent(_Response):
    event_id: str
    depth: int


# -- latest events and state ------------------------------------------------------------------


class LatestEventsAndStateRequest(_Request):
    room_id: Identifier
    #: Only these (type, state_key) pairs of the current state; None = the whole state.
    state_keys: StatePairs | None = None
    #: Also return the state events' PDUs (in `pdus`, keyed by event ID).
    include_pdus: bool = False


class LatestEventsAndStateResponse(_Response):
    room_exists: bool
    room_version: str | None = None
    #: The forward extremities, deepest first.
    latest_events: list[LatestEvent] = msgspec.field(default_factory=list)
    state: list[StateEntry] = msgspec.field(default_factory=list)
    pdus: dict[str, msgspec.Raw] | None = None


# -- state after events -----------------------------------------------------------------------


class StateAfterEventsRequest(_Request):
    room_id: Identifier
    #: The prev events of an event to be built: the state is the state before such an event.
    prev_event_ids: Annotated[list[Identifier], msgspec.Meta(min_length=1, max_length=100)]
    state_keys: StatePairs | None = None
    include_pdus: bool = False


class StateAfterEventsResponse(_Response):
    room_version: str
    state: list[StateEntry]
    #: The states after the prev events disagreed and were resolved.
    resolved: bool = False
    pdus: dict[str, msgspec.Raw] | None = None


# -- events and auth chains -------------------------------------------------------------------


class EventsRequest(_Request):
    event_ids: IdList
    #: When set, events of other rooms count as missing.
    room_id: Identifier | None = None


class StoredEvent(_Response):
    event_id: str
    room_id: str
    #: The PDU as received, or its redacted form when `redacted`.
    pdu: msgspec.Raw
    redacted: bool = False
    rejected: bool = False
    rejection_reason: str | None = None
    #: Stored without a known state (sent as an outlier and not processed since).
    outlier: bool = False


class EventsResponse(_Response):
    events: list[StoredEvent]
    #: The requested IDs that are not stored.
    missing: list[str] = msgspec.field(default_factory=list)


class AuthChainRequest(_Request):
    event_ids: IdList
    include_pdus: bool = False


class AuthChainResponse(_Response):
    #: Every event reachable through auth events from the given ones (not themselves),
    #: ordered by depth then ID.
    auth_chain_ids: list[str]
    missing: list[str] = msgspec.field(default_factory=list)
    pdus: list[msgspec.Raw] | None = None


# -- memberships ------------------------------------------------------------------------------


class MembershipForUserRequest(_Request):
    room_id: Identifier
    user_id: Identifier


class MembershipForUserResponse(_Response):
    #: "join", "invite", "leave", "ban", "knock", or None when the user never had one.
    membership: str | None
    event_id: str | None = None
    joined: bool = False
    #: The member event (JSON null when there is none: msgspec cannot decode Raw | None).
    pdu: msgspec.Raw = msgspec.field(default_factory=lambda: msgspec.Raw(b"null"))


class MembershipsForRoomRequest(_Request):
    room_id: Identifier
    joined_only: bool = True
    #: The memberships in the state after this event; None = the current state.
    at_event_id: Identifier | None = None


class MemberEntry(_Response):
    user_id: str
    membership: str
    event_id: str


class MembershipsForRoomResponse(_Response):
    #: Sorted by user ID.
    memberships: list[MemberEntry]


class InvitesForUserRequest(_Request):
    user_id: Identifier


class InviteEntry(_Response):
    room_id: str
    event_id: str
    inviter: str
    pdu: msgspec.Raw


class InvitesForUserResponse(_Response):
    #: Pending invites (the user's membership in the room's current state is "invite").
    invites: list[InviteEntry]


# -- federation -------------------------------------------------------------------------------


class ServerAllowedToSeeEventRequest(_Request):
    server_name: Identifier
    event_id: Identifier


class ServerAllowedToSeeEventResponse(_Response):
    allowed: bool


class MissingEventsRequest(_Request):
    """Federation ``/get_missing_events``: walk back from `latest_events` over prev events,
    stopping at `earliest_events`, at most `limit` events of depth at least `min_depth`."""

    room_id: Identifier
    latest_events: Annotated[list[Identifier], msgspec.Meta(min_length=1, max_length=1000)]
    #: The requesting server: only events it may see are returned.
    server_name: Identifier
    earliest_events: IdList = msgspec.field(default_factory=list)
    limit: Limit = 10
    min_depth: int = 0


class BackfillRequest(_Request):
    """Federation ``/backfill``: `limit` events walking back from `event_ids` (included)."""

    room_id: Identifier
    event_ids: Annotated[list[Identifier], msgspec.Meta(min_length=1, max_length=1000)]
    server_name: Identifier
    limit: Limit = 10


class PdusResponse(_Response):
    #: Ordered by depth (oldest first), then event ID.
    pdus: list[msgspec.Raw]


class StateAndAuthChainRequest(_Request):
    """Federation ``/state`` and ``/state_ids``: the state before `event_id`."""

    room_id: Identifier
    event_id: Identifier
    #: IDs only (``/state_ids``) instead of PDUs (``/state``).
    ids_only: bool = False


class StateAndAuthChainResponse(_Response):
    state_ids: list[str] | None = None
    auth_chain_ids: list[str] | None = None
    pdus: list[msgspec.Raw] | None = None
    auth_chain: list[msgspec.Raw] | None = None


# -- room versions ----------------------------------------------------------------------------


class RoomVersionRequest(_Request):
    room_id: Identifier


class RoomVersionResponse(_Response):
    room_version: str


class SupportedRoomVersionsResponse(_Response):
    default: str
    #: Version ID -> "stable" (the shape of the client API's m.room_versions capability).
    available: dict[str, Literal["stable", "unstable"]]


# -- aliases ----------------------------------------------------------------------------------

Alias = Annotated[
    str, msgspec.Meta(min_length=2, max_length=255, pattern=r"^#[^:\x00]*:[^\x00]+$")
]


class SetAliasRequest(_Request):
    alias: Alias
    room_id: Identifier
    #: The user creating the alias (kept, and answered by /alias/creator).
    creator: Identifier


class SetAliasResponse(_Response):
    #: False when the alias already pointed at this room (nothing changed).
    created: bool


class ResolveAliasRequest(_Request):
    alias: Alias


class ResolveAliasResponse(_Response):
    room_id: str


class AliasesForRoomRequest(_Request):
    room_id: Identifier


class AliasesForRoomResponse(_Response):
    aliases: list[str]


class RemoveAliasRequest(_Request):
    alias: Alias


class RemoveAliasResponse(_Response):
    removed: bool


class AliasCreatorRequest(_Request):
    alias: Alias


class AliasCreatorResponse(_Response):
    creator: str


#: Endpoint name -> (request type, response type). ``POST /query/<name>`` unless the name
#: starts with ``alias/`` (``POST /<name>``). `supported_room_versions` takes no request.
ENDPOINTS: dict[str, tuple[Any, Any]] = {
    "latest_events_and_state": (LatestEventsAndStateRequest, LatestEventsAndStateResponse),
    "state_after_events": (StateAfterEventsRequest, StateAfterEventsResponse),
    "events": (EventsRequest, EventsResponse),
    "auth_chain": (AuthChainRequest, AuthChainResponse),
    "membership_for_user": (MembershipForUserRequest, MembershipForUserResponse),
    "memberships_for_room": (MembershipsForRoomRequest, MembershipsForRoomResponse),
    "invites_for_user": (InvitesForUserRequest, InvitesForUserResponse),
    "server_allowed_to_see_event": (
        ServerAllowedToSeeEventRequest,
        ServerAllowedToSeeEventResponse,
    ),
    "missing_events": (MissingEventsRequest, PdusResponse),
    "state_and_auth_chain": (StateAndAuthChainRequest, StateAndAuthChainResponse),
    "backfill": (BackfillRequest, PdusResponse),
    "room_version": (RoomVersionRequest, RoomVersionResponse),
    "supported_room_versions": (None, SupportedRoomVersionsResponse),
    "alias/set": (SetAliasRequest, SetAliasResponse),
    "alias/resolve": (ResolveAliasRequest, ResolveAliasResponse),
    "alias/list": (AliasesForRoomRequest, AliasesForRoomResponse),
    "alias/remove": (RemoveAliasRequest, RemoveAliasResponse),
    "alias/creator": (AliasCreatorRequest, AliasCreatorResponse),
}


def path_of(name: str) -> str:
    """The HTTP path of endpoint `name`."""
    return f"/{name}" if name.startswith("alias/") else f"/query/{name}"
