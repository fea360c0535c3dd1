"""A small typed client of the query API (`roomserver serve`), for the other services.

Standard library HTTP (``http.client``, one keep-alive connection per client; not shared
between threads) and msgspec, so it adds no dependency to `schemas`::

    client = QueryClient("http://127.0.0.1:8780")
    answer = client.latest_events_and_state(LatestEventsAndStateRequest(room_id="!r:x"))

An error answer raises `QueryAPIError` with its HTTP status, Matrix errcode and message.
"""

from __future__ import annotations

import http.client
from typing import Any, TypeVar
from urllib.parse import urlsplit

import msgspec

from schemas import query as q

__all__ = ["QueryAPIError", "QueryClient"]

T = TypeVar("T")


class QueryAPIError(Exception):
    def __init__(self, status: int, errcode: str, error: str) -> None:
        super().__init__(f"{status} {errcode}: {error}")
        self.status = status
        self.errcode = errcode
        self.error = error


class QueryClient:
    def __init__(self, base_url: str, *, timeout: float = 30.0) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"expected http://HOST:PORT or https://HOST:PORT, got {base_url!r}")
        self._https = parts.scheme == "https"
        self._host = parts.hostname
        self._port = parts.port
        self._prefix = parts.path.rstrip("/")
        self._timeout = timeout
        self._conn: http.client.HTTPConnection | None = None
        self._encoder = msgspec.json.Encoder()

    def _connection(self) -> http.client.HTTPConnection:
        if self._conn is None:
            kind = http.client.HTTPSConnection if self._https else http.client.HTTPConnection
            self._conn = kind(self._host, self._port, timeout=self._timeout)
        return self._conn

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def __enter__(self) -> QueryClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def request(self, method: str, path: str, body: bytes | None, response_type: type[T]) -> T:
        """One request; the response decoded as `response_type`."""
        headers = {"Content-Type": "application/json"} if body is not None else {}
        for attempt in (1, 2):
            conn = self._connection()
            try:
                conn.request(method, self._prefix + path, body=body, headers=headers)
                response = conn.getresponse()
                data = response.read()
                break
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
                # The server closed an idle keep-alive connection: reconnect once.
                self.close()
                if attempt == 2:
                    raise
        if response.status != 200:
            try:
                err = msgspec.json.decode(data, type=q.QueryErrorBody)
            except msgspec.DecodeError:
                raise QueryAPIError(response.status, "M_UNKNOWN", data[:200].decode(
                    "utf-8", "replace")) from None
            raise QueryAPIError(response.status, err.errcode, err.error)
        return msgspec.json.decode(data, type=response_type)

    def _post(self, name: str, request: Any, response_type: type[T]) -> T:
        return self.request("POST", q.path_of(name), self._encoder.encode(request), response_type)

    def latest_events_and_state(
        self, request: q.LatestEventsAndStateRequest
    ) -> q.LatestEventsAndStateResponse:
        return self._post("latest_events_and_state", request, q.LatestEventsAndStateResponse)

    def state_after_events(self, request: q.StateAfterEventsRequest) -> q.StateAfterEventsResponse:
        return self._post("state_after_events", request, q.StateAfterEventsResponse)

    def events(self, request: q.EventsRequest) -> q.EventsResponse:
        return self._post("events", request, q.EventsResponse)

    def auth_chain(self, request: q.AuthChainRequest) -> q.AuthChainResponse:
        return self._post("auth_chain", request, q.AuthChainResponse)

    def membership_for_user(
        self, request: q.MembershipForUserRequest
    ) -> q.MembershipForUserResponse:
        return self._post("membership_for_user", request, q.MembershipForUserResponse)

    def memberships_for_room(
        self, request: q.MembershipsForRoomRequest
    ) -> q.MembershipsForRoomResponse:
        return self._post("memberships_for_room", request, q.MembershipsForRoomResponse)

    def invites_for_user(self, request: q.InvitesForUserRequest) -> q.InvitesForUserResponse:
        return self._post("invites_for_user", request, q.InvitesForUserResponse)

    def server_allowed_to_see_event(
        self, request: q.ServerAllowedToSeeEventRequest
    ) -> q.ServerAllowedToSeeEventResponse:
        return self._post(
            "server_allowed_to_see_event", request, q.ServerAllowedToSeeEventResponse
        )

    def missing_events(self, request: q.MissingEventsRequest) -> q.PdusResponse:
        return self._post("missing_events", request, q.PdusResponse)

    def state_and_auth_chain(
        self, request: q.StateAndAuthChainRequest
    ) -> q.StateAndAuthChainResponse:
        return self._post("state_and_auth_chain", request, q.StateAndAuthChainResponse)

    def backfill(self, request: q.BackfillRequest) -> q.PdusResponse:
        return self._post("backfill", request, q.PdusResponse)

    def room_version(self, request: q.RoomVersionRequest) -> q.RoomVersionResponse:
        return self._post("room_version", request, q.RoomVersionResponse)

    def supported_room_versions(self) -> q.SupportedRoomVersionsResponse:
        return self.request(
            "GET", q.path_of("supported_room_versions"), None, q.SupportedRoomVersionsResponse
        )

    def set_alias(self, request: q.SetAliasRequest) -> q.SetAliasResponse:
        return self._post("alias/set", request, q.SetAliasResponse)

    def resolve_alias(self, request: q.ResolveAliasRequest) -> q.ResolveAliasResponse:
        return self._post("alias/resolve", request, q.ResolveAliasResponse)

    def aliases_for_room(self, request: q.AliasesForRoomRequest) -> q.AliasesForRoomResponse:
        return self._post("alias/list", request, q.AliasesForRoomResponse)

    def remove_alias(self, request: q.RemoveAliasRequest) -> q.RemoveAliasResponse:
        return self._post("alias/remove", request, q.RemoveAliasResponse)

    def alias_creator(self, request: q.AliasCreatorRequest) -> q.AliasCreatorResponse:
        return self._post("alias/creator", request, q.AliasCreatorResponse)
