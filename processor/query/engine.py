"""The query API's answers: one method per endpoint, a request Struct in, a response out.

`QueryEngine.answer(name, body)` is the one code path of both `roomserver serve` (HTTP) and
`roomserver query` (the embedded mode): it decodes the request (a `BadRequest` naming the
field when it is malformed), answers it in one read transaction of `QueryDatabase`, and
encodes the response.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable, Collection, Iterable, Mapping
from typing import Any

import msgspec

from processor.core.decision import state_after
from processor.errors import StateResolutionError
from processor.matrix.room_versions import KNOWN_ROOM_VERSIONS
from processor.nids import (
    MROOM_MEMBER_NID,
    EventNID,
    StateKeyTuple,
    StateSnapshotNID,
)
from processor.query import aliases
from processor.query.database import QueryDatabase, ReadTx
from processor.query.errors import BadRequest, NotFound, QueryError
from processor.query.reads import (
    QueryCaches,
    Skeleton,
    event_ids_of,
    load_skeletons,
    memberships_of,
    room_of,
    skeletons_and_ancestors,
    skeletons_by_id,
)
from processor.query.resolution import resolve_prev_states
from processor.query.server_visibility import ServerVisibility, state_key_of
from processor.storage.base import RoomRecord
from schemas import query as q

log = logging.getLogger(__name__)

__all__ = ["DEFAULT_ROOM_VERSION", "QueryEngine"]

#: The version a client service should create rooms with (Synapse's default too).
DEFAULT_ROOM_VERSION = "10"

_ENCODER = msgspec.json.Encoder()


class QueryEngine:
    def __init__(self, database: QueryDatabase, caches: QueryCaches | None = None) -> None:
        self.db = database
        self.caches = caches or QueryCaches()
        self._decoders = {
            name: msgspec.json.Decoder(request)
            for name, (request, _) in q.ENDPOINTS.items()
            if request is not None
        }
        self._handlers: dict[str, Callable[[Any], Any]] = {
            "latest_events_and_state": self.latest_events_and_state,
            "state_after_events": self.state_after_events,
            "events": self.events,
            "auth_chain": self.auth_chain,
            "membership_for_user": self.membership_for_user,
            "memberships_for_room": self.memberships_for_room,
            "invites_for_user": self.invites_for_user,
            "server_allowed_to_see_event": self.server_allowed_to_see_event,
            "missing_events": self.missing_events,
            "state_and_auth_chain": self.state_and_auth_chain,
            "backfill": self.backfill,
            "room_version": self.room_version,
            "supported_room_versions": lambda _: self.supported_room_versions(),
            "alias/set": self.set_alias,
            "alias/resolve": self.resolve_alias,
            "alias/list": self.aliases_for_room,
            "alias/remove": self.remove_alias,
            "alias/creator": self.alias_creator,
        }

    # ------------------------------------------------------------------ decoding, dispatch

    def decode(self, name: str, body: bytes) -> Any:
        """The request of endpoint `name` from JSON bytes; `BadRequest` naming the field."""
        decoder = self._decoders.get(name)
        if decoder is None:
            return None
        if not body.strip():
            raise BadRequest("the request body is empty: expected a JSON object", "M_NOT_JSON")
        try:
            return decoder.decode(body)
        except msgspec.ValidationError as e:
            raise BadRequest(f"invalid request: {e}") from None
        except msgspec.DecodeError as e:
            raise BadRequest(f"the request body is not JSON: {e}", "M_NOT_JSON") from None
        except UnicodeDecodeError as e:
            raise BadRequest(f"the request body is not UTF-8: {e.reason}", "M_NOT_JSON") from None
        except RecursionError:
            raise BadRequest("the request body is nested too deeply", "M_NOT_JSON") from None

    def handle(self, name: str, request: Any) -> Any:
        handler = self._handlers.get(name)
        if handler is None:
            raise NotFound(f"no query named {name!r}", "M_UNRECOGNIZED")
        return handler(request)

    def answer(self, name: str, body: bytes) -> bytes:
        """Decode, answer and encode: what both the HTTP handlers and `roomserver query` do."""
        return _ENCODER.encode(self.handle(name, self.decode(name, body)))

    # ------------------------------------------------------------------ helpers

    def _room(self, tx: ReadTx, room_id: str) -> RoomRecord:
        room = tx.batch.select_room(room_id)
        if room is None:
            raise NotFound(f"room {room_id} is not known to this roomserver")
        return room

    def _event_in_room(self, tx: ReadTx, room: RoomRecord, event_id: str) -> Skeleton:
        found = skeletons_by_id(tx, self.caches, [event_id]).get(event_id)
        if found is None or found.room_nid != room.room_nid:
            raise NotFound(f"event {event_id} is not known in room {room.room_id}")
        return found

    def _selected(
        self,
        tx: ReadTx,
        snapshot: StateSnapshotNID,
        pairs: list[tuple[str, str]] | None,
        extra: Mapping[StateKeyTuple, EventNID] | None = None,
    ) -> dict[StateKeyTuple, EventNID]:
        """The state at `snapshot` (with `extra` entries over it): whole, or at `pairs`."""
        if pairs is None:
            entries = tx.batch.load_state(snapshot) if snapshot else {}
            if extra:
                entries.update(extra)
            return entries
        keys = self._key_tuples(tx, pairs)
        found = tx.batch.load_state_entries(snapshot, keys) if snapshot and keys else {}
        for key in keys:
            if extra and key in extra:
                found[key] = extra[key]
        return found

    def _key_tuples(self, tx: ReadTx, pairs: Iterable[tuple[str, str]]) -> list[StateKeyTuple]:
        pairs = list(pairs)
        types = tx.batch.select_event_type_nids({t for t, _ in pairs})
        keys = tx.batch.select_state_key_nids({k for _, k in pairs})
        # A name without a NID is in no state: leave it out.
        return [(types[t], keys[k]) for t, k in pairs if t in types and k in keys]

    def _render(
        self, tx: ReadTx, entries: Mapping[StateKeyTuple, EventNID]
    ) -> list[q.StateEntry]:
        batch = tx.batch
        types = batch.event_type_names({k[0] for k in entries})
        keys = batch.state_key_names({k[1] for k in entries})
        ids = event_ids_of(tx, self.caches, entries.values())
        state = [q.StateEntry(types[t], keys[s], ids[nid]) for (t, s), nid in entries.items()]
        state.sort(key=lambda e: (e.type, e.state_key))
        return state

    def _pdus_by_id(self, tx: ReadTx, nids: Collection[EventNID]) -> dict[str, msgspec.Raw]:
        records = tx.batch.select_events(nids)
        return {r.event_id: msgspec.Raw(r.json) for r in records.values()}

    def _pdus_in_order(self, tx: ReadTx, nids: list[EventNID]) -> list[msgspec.Raw]:
        records = tx.batch.select_events(nids)
        return [msgspec.Raw(records[n].json) for n in nids]

    # ------------------------------------------------------------------ latest events, state

    def latest_events_and_state(
        self, request: q.LatestEventsAndStateRequest
    ) -> q.LatestEventsAndStateResponse:
        with self.db.read() as tx:
            room = tx.batch.select_room(request.room_id)
            if room is None:
                return q.LatestEventsAndStateResponse(room_exists=False)
            skeletons = load_skeletons(tx, self.caches, room.forward_extremities)
            latest = sorted(
                (q.LatestEvent(s.event_id, s.depth) for s in skeletons.values()),
                key=lambda e: (-e.depth, e.event_id),
            )
            entries = self._selected(
                tx, StateSnapshotNID(room.current_snapshot_nid), request.state_keys
            )
            return q.LatestEventsAndStateResponse(
                room_exists=True,
                room_version=room.room_version,
                latest_events=latest,
                state=self._render(tx, entries),
                pdus=self._pdus_by_id(tx, entries.values()) if request.include_pdus else None,
            )

    def state_after_events(
        self, request: q.StateAfterEventsRequest
    ) -> q.StateAfterEventsResponse:
        with self.db.read() as tx:
            room = self._room(tx, request.room_id)
            found = skeletons_by_id(tx, self.caches, request.prev_event_ids)
            prevs: list[Skeleton] = []
            for event_id in dict.fromkeys(request.prev_event_ids):
                prev = found.get(event_id)
                if prev is None or prev.room_nid != room.room_nid:
                    raise NotFound(f"prev event {event_id} is not known in room {room.room_id}")
                if prev.outlier:
                    raise NotFound(
                        f"prev event {event_id} is an outlier: the state after it is not known",
                        "M_NOT_FOUND",
                    )
                prevs.append(prev)
            # The state after each prev event, as the pipeline computes it for a new event.
            afters = [
                state_after(
                    tx.batch.load_state(StateSnapshotNID(p.snapshot_nid)) if p.snapshot_nid else {},
                    state_key_of(p), p.nid, p.rejected,
                )
                for p in prevs
            ]
            distinct: list[Mapping[StateKeyTuple, EventNID]] = []
            for after in afters:
                if all(after != d for d in distinct):
                    distinct.append(after)
            resolved = len(distinct) > 1
            if resolved:
                try:
                    entries = resolve_prev_states(tx, room, distinct)
                except StateResolutionError as e:
                    raise NotFound(
                        f"the states after the prev events cannot be resolved: {e}"
                    ) from None
            else:
                entries = dict(distinct[0])
            if request.state_keys is not None:
                keys = set(self._key_tuples(tx, request.state_keys))
                entries = {k: v for k, v in entries.items() if k in keys}
            return q.StateAfterEventsResponse(
                room_version=room.room_version,
                state=self._render(tx, entries),
                resolved=resolved,
                pdus=self._pdus_by_id(tx, entries.values()) if request.include_pdus else None,
            )

    # ------------------------------------------------------------------ events, auth chains

    def events(self, request: q.EventsRequest) -> q.EventsResponse:
        with self.db.read() as tx:
            room_nid = None
            if request.room_id is not None:
                room_nid = self._room(tx, request.room_id).room_nid
            records = tx.batch.select_events_by_id(request.event_ids)
            events: list[q.StoredEvent] = []
            missing: list[str] = []
            for event_id in dict.fromkeys(request.event_ids):
                record = records.get(event_id)
                if record is None or (room_nid is not None and record.room_nid != room_nid):
                    missing.append(event_id)
                    continue
                events.append(
                    q.StoredEvent(
                        event_id=event_id,
                        room_id=room_of(tx, self.caches, record.room_nid)[0],
                        pdu=msgspec.Raw(record.json),
                        redacted=record.redacted,
                        rejected=record.rejected,
                        rejection_reason=record.rejection_reason,
                        outlier=record.outlier,
                    )
                )
            return q.EventsResponse(events=events, missing=missing)

    def _auth_chain(self, tx: ReadTx, starts: Iterable[EventNID]) -> list[Skeleton]:
        """Every event reachable through auth events from `starts` (breadth-first), ordered
        by depth then event ID (auth events before the events citing them)."""
        seen: dict[EventNID, Skeleton] = {}
        given = load_skeletons(tx, self.caches, starts).values()
        frontier = {a for s in given for a in s.auth_nids}
        while frontier:
            loaded = load_skeletons(tx, self.caches, frontier)
            seen.update(loaded)
            frontier = {a for s in loaded.values() for a in s.auth_nids if a not in seen}
        return sorted(seen.values(), key=lambda s: (s.depth, s.event_id))

    def auth_chain(self, request: q.AuthChainRequest) -> q.AuthChainResponse:
        with self.db.read() as tx:
            found = skeletons_by_id(tx, self.caches, request.event_ids)
            missing = [e for e in dict.fromkeys(request.event_ids) if e not in found]
            chain = self._auth_chain(tx, [s.nid for s in found.values()])
            return q.AuthChainResponse(
                auth_chain_ids=[s.event_id for s in chain],
                missing=missing,
                pdus=self._pdus_in_order(tx, [s.nid for s in chain])
                if request.include_pdus
                else None,
            )

    # ------------------------------------------------------------------ memberships

    def membership_for_user(
        self, request: q.MembershipForUserRequest
    ) -> q.MembershipForUserResponse:
        with self.db.read() as tx:
            room = self._room(tx, request.room_id)
            key = tx.batch.select_state_key_nids([request.user_id]).get(request.user_id)
            nid = None
            if key is not None and room.current_snapshot_nid:
                nid = tx.batch.load_state_entries(
                    StateSnapshotNID(room.current_snapshot_nid), [(MROOM_MEMBER_NID, key)]
                ).get((MROOM_MEMBER_NID, key))
            if nid is None:
                return q.MembershipForUserResponse(membership=None)
            record = tx.batch.select_events([nid])[nid]
            membership = memberships_of(tx, self.caches, [nid])[nid]
            return q.MembershipForUserResponse(
                membership=membership,
                event_id=record.event_id,
                joined=membership == "join",
                pdu=msgspec.Raw(record.json),
            )

    def memberships_for_room(
        self, request: q.MembershipsForRoomRequest
    ) -> q.MembershipsForRoomResponse:
        with self.db.read() as tx:
            room = self._room(tx, request.room_id)
            if request.at_event_id is None:
                snapshot = StateSnapshotNID(room.current_snapshot_nid)
                extra: dict[StateKeyTuple, EventNID] = {}
            else:
                at = self._event_in_room(tx, room, request.at_event_id)
                if at.outlier:
                    raise NotFound(
                        f"event {at.event_id} is an outlier: the state at it is not known"
                    )
                snapshot = StateSnapshotNID(at.snapshot_nid)
                key = state_key_of(at)
                extra = {key: at.nid} if key is not None and not at.rejected else {}
            state = self._selected(tx, snapshot, None, extra)
            members = {k[1]: nid for k, nid in state.items() if k[0] == MROOM_MEMBER_NID}
            values = memberships_of(tx, self.caches, members.values())
            if request.joined_only:
                members = {k: nid for k, nid in members.items() if values[nid] == "join"}
            names = tx.batch.state_key_names(members)
            ids = event_ids_of(tx, self.caches, members.values())
            entries = [
                q.MemberEntry(
                    user_id=names[k], membership=values[nid] or "", event_id=ids[nid]
                )
                for k, nid in members.items()
            ]
            entries.sort(key=lambda m: m.user_id)
            return q.MembershipsForRoomResponse(memberships=entries)

    def invites_for_user(self, request: q.InvitesForUserRequest) -> q.InvitesForUserResponse:
        with self.db.read() as tx:
            key = tx.batch.select_state_key_nids([request.user_id]).get(request.user_id)
            if key is None:
                return q.InvitesForUserResponse(invites=[])
            # The memberships table is the rooms' current state: a pending invite is a
            # current membership "invite" (index from migration 0003).
            rows = tx.rows(
                "SELECT room_nid, event_nid FROM memberships"
                " WHERE target_nid = %s AND membership = 'invite' ORDER BY room_nid",
                (key,),
            )
            records = tx.batch.select_events([r[1] for r in rows])
            invites: list[q.InviteEntry] = []
            for room_nid, nid in rows:
                record = records[nid]
                sender = msgspec.json.decode(record.json, type=_Sender).sender
                invites.append(
                    q.InviteEntry(
                        room_id=room_of(tx, self.caches, room_nid)[0],
                        event_id=record.event_id,
                        inviter=sender,
                        pdu=msgspec.Raw(record.json),
                    )
                )
            invites.sort(key=lambda i: i.room_id)
            return q.InvitesForUserResponse(invites=invites)

    # ------------------------------------------------------------------ history visibility

    def server_allowed_to_see_event(
        self, request: q.ServerAllowedToSeeEventRequest
    ) -> q.ServerAllowedToSeeEventResponse:
        with self.db.read() as tx:
            event = skeletons_by_id(tx, self.caches, [request.event_id]).get(request.event_id)
            if event is None:
                raise NotFound(f"event {request.event_id} is not known to this roomserver")
            room = tx.batch.select_room_by_nid(event.room_nid)
            visible = ServerVisibility(self.caches, tx, room, request.server_name)
            return q.ServerAllowedToSeeEventResponse(allowed=visible(event))

    def _walk(
        self,
        tx: ReadTx,
        room: RoomRecord,
        starts: list[Skeleton],
        *,
        include_starts: bool,
        stop: set[EventNID],
        limit: int,
        min_depth: int,
    ) -> list[Skeleton]:
        """Breadth-first over prev events from `starts`, at most `limit` events, never into
        `stop` or below `min_depth`, never out of the room. The ancestors are in the cache
        already (`skeletons_and_ancestors` loaded the starts with them)."""
        picked: dict[EventNID, Skeleton] = {}
        seen: set[EventNID] = set(stop) | {s.nid for s in starts}
        queue: deque[Skeleton] = deque()
        if include_starts:
            queue.extend(starts)
        else:
            prevs = [p for s in starts for p in s.prev_nids if p not in seen]
            seen.update(prevs)
            queue.extend(load_skeletons(tx, self.caches, prevs).values())
        while queue and len(picked) < limit:
            # One level at a time, so each level's prev events load in one round trip.
            level = list(queue)
            queue.clear()
            nexts: list[EventNID] = []
            for event in sorted(level, key=lambda s: (-s.depth, s.event_id)):
                if len(picked) >= limit:
                    break
                if event.room_nid != room.room_nid or event.depth < min_depth:
                    continue
                picked[event.nid] = event
                for p in event.prev_nids:
                    if p not in seen:
                        seen.add(p)
                        nexts.append(p)
            if nexts and len(picked) < limit:
                queue.extend(load_skeletons(tx, self.caches, nexts).values())
        return list(picked.values())

    def _visible_pdus(
        self, tx: ReadTx, room: RoomRecord, events: list[Skeleton], server_name: str
    ) -> q.PdusResponse:
        visible = ServerVisibility(self.caches, tx, room, server_name)
        shown = [e for e in events if not e.rejected and visible(e)]
        shown.sort(key=lambda s: (s.depth, s.event_id))
        return q.PdusResponse(pdus=self._pdus_in_order(tx, [s.nid for s in shown]))

    def missing_events(self, request: q.MissingEventsRequest) -> q.PdusResponse:
        with self.db.read() as tx:
            room = self._room(tx, request.room_id)
            found = skeletons_and_ancestors(
                tx, self.caches, request.latest_events, request.limit
            )
            latest = [s for s in found.values() if s.room_nid == room.room_nid]
            if not latest:
                raise NotFound(
                    f"none of latest_events is known in room {room.room_id}: "
                    f"{', '.join(request.latest_events[:3])}"
                )
            earliest = skeletons_by_id(tx, self.caches, request.earliest_events)
            events = self._walk(
                tx, room, latest, include_starts=False,
                stop={s.nid for s in earliest.values()},
                limit=request.limit, min_depth=request.min_depth,
            )
            return self._visible_pdus(tx, room, events, request.server_name)

    def backfill(self, request: q.BackfillRequest) -> q.PdusResponse:
        with self.db.read() as tx:
            room = self._room(tx, request.room_id)
            found = skeletons_and_ancestors(tx, self.caches, request.event_ids, request.limit)
            starts = [s for s in found.values() if s.room_nid == room.room_nid]
            if not starts:
                raise NotFound(
                    f"none of event_ids is known in room {room.room_id}: "
                    f"{', '.join(request.event_ids[:3])}"
                )
            events = self._walk(
                tx, room, starts, include_starts=True, stop=set(),
                limit=request.limit, min_depth=0,
            )
            return self._visible_pdus(tx, room, events, request.server_name)

    def state_and_auth_chain(
        self, request: q.StateAndAuthChainRequest
    ) -> q.StateAndAuthChainResponse:
        with self.db.read() as tx:
            room = self._room(tx, request.room_id)
            event = self._event_in_room(tx, room, request.event_id)
            if event.outlier:
                raise NotFound(
                    f"event {event.event_id} is an outlier: the state before it is not known"
                )
            state = tx.batch.load_state(StateSnapshotNID(event.snapshot_nid)) if (
                event.snapshot_nid
            ) else {}
            state_nids = sorted(state.values())
            chain = [s.nid for s in self._auth_chain(tx, state_nids)]
            if request.ids_only:
                ids = event_ids_of(tx, self.caches, [*state_nids, *chain])
                return q.StateAndAuthChainResponse(
                    state_ids=sorted(ids[n] for n in state_nids),
                    auth_chain_ids=[ids[n] for n in chain],
                )
            return q.StateAndAuthChainResponse(
                pdus=self._pdus_in_order(tx, state_nids),
                auth_chain=self._pdus_in_order(tx, chain),
            )

    # ------------------------------------------------------------------ versions

    def room_version(self, request: q.RoomVersionRequest) -> q.RoomVersionResponse:
        with self.db.read() as tx:
            return q.RoomVersionResponse(room_version=self._room(tx, request.room_id).room_version)

    def supported_room_versions(self) -> q.SupportedRoomVersionsResponse:
        return q.SupportedRoomVersionsResponse(
            default=DEFAULT_ROOM_VERSION,
            available={v: "stable" for v in sorted(KNOWN_ROOM_VERSIONS, key=int)},
        )

    # ------------------------------------------------------------------ aliases

    def set_alias(self, request: q.SetAliasRequest) -> q.SetAliasResponse:
        with self.db.write() as tx:
            self._room(tx, request.room_id)
            created = aliases.set_alias(tx, request.alias, request.room_id, request.creator)
            return q.SetAliasResponse(created=created)

    def resolve_alias(self, request: q.ResolveAliasRequest) -> q.ResolveAliasResponse:
        with self.db.read() as tx:
            found = aliases.lookup(tx, request.alias)
            if found is None:
                raise NotFound(f"alias {request.alias} does not exist")
            return q.ResolveAliasResponse(room_id=found[0])

    def aliases_for_room(self, request: q.AliasesForRoomRequest) -> q.AliasesForRoomResponse:
        with self.db.read() as tx:
            self._room(tx, request.room_id)
            return q.AliasesForRoomResponse(aliases=aliases.for_room(tx, request.room_id))

    def remove_alias(self, request: q.RemoveAliasRequest) -> q.RemoveAliasResponse:
        with self.db.write() as tx:
            return q.RemoveAliasResponse(removed=aliases.remove(tx, request.alias))

    def alias_creator(self, request: q.AliasCreatorRequest) -> q.AliasCreatorResponse:
        with self.db.read() as tx:
            found = aliases.lookup(tx, request.alias)
            if found is None:
                raise NotFound(f"alias {request.alias} does not exist")
            return q.AliasCreatorResponse(creator=found[1])


class _Sender(msgspec.Struct):
    sender: str


def error_body(error: QueryError) -> bytes:
    return _ENCODER.encode(q.QueryErrorBody(errcode=error.errcode, error=error.message))
