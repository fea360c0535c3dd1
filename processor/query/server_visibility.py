"""Whether a server may see an event of a room, for the federation queries (missing events,
backfill, server allowed to see event): the pure rules of `processor.matrix.visibility`
applied to the stored state after the event, with the server's members found in it."""

from __future__ import annotations

from typing import Any

import msgspec

from processor.matrix.visibility import history_visibility_of, server_may_see_event
from processor.nids import (
    EMPTY_STATE_KEY_NID,
    MROOM_HISTORY_VISIBILITY_NID,
    MROOM_MEMBER_NID,
    EventNID,
    EventTypeNID,
    StateKeyNID,
    StateKeyTuple,
    StateSnapshotNID,
)
from processor.query.database import ReadTx
from processor.query.reads import (
    QueryCaches,
    Skeleton,
    StateView,
    memberships_of,
    servers_of_keys,
)
from processor.storage.base import RoomRecord


def state_key_of(s: Skeleton) -> StateKeyTuple | None:
    """The (type, state key) NIDs of a state event; None for a message."""
    if not s.state_key_nid:
        return None
    return (EventTypeNID(s.type_nid), StateKeyNID(s.state_key_nid))


class _HistoryVisibility(msgspec.Struct):
    content: dict[str, Any] = {}


class ServerVisibility:
    """`server_may_see_event` for one server in one room within one request.

    What decides is the history visibility and whether any of the server's users is joined
    or invited, in the state after the event. States are immutable, so that is computed once
    per (state snapshot, server) and cached process-wide (`QueryCaches.views`); an accepted
    state event adjusts its state-before view by its own change (a member event of one of
    the server's users, a history visibility event). A 10,000-member room's state is walked
    once, not once per request."""

    _HV_KEY = (MROOM_HISTORY_VISIBILITY_NID, EMPTY_STATE_KEY_NID)

    def __init__(
        self, caches: QueryCaches, tx: ReadTx, room: RoomRecord, server_name: str
    ) -> None:
        self._caches = caches
        self._tx = tx
        self._room = room
        self._server = server_name
        self._by_state: dict[tuple[int, int], bool] = {}

    def _visibility_of(self, hv_nid: EventNID | None) -> str:
        if hv_nid is None:
            return history_visibility_of(None)
        record = self._tx.batch.select_events([hv_nid])[hv_nid]
        return history_visibility_of(
            msgspec.json.decode(record.json, type=_HistoryVisibility).content
        )

    def _view(self, snapshot_nid: int) -> StateView:
        caches = self._caches
        memo = (snapshot_nid, self._server)
        with caches.lock:
            view = caches.views.get(memo)
        if view is not None:
            return view
        tx = self._tx
        state = tx.batch.load_state(StateSnapshotNID(snapshot_nid)) if snapshot_nid else {}
        members = {k[1]: nid for k, nid in state.items() if k[0] == MROOM_MEMBER_NID}
        servers = servers_of_keys(tx, caches, members)
        ours = {k: nid for k, nid in members.items() if servers[k] == self._server}
        values = memberships_of(tx, caches, ours.values())
        view = StateView(
            self._visibility_of(state.get(self._HV_KEY)),
            frozenset(k for k, nid in ours.items() if values[nid] == "join"),
            frozenset(k for k, nid in ours.items() if values[nid] == "invite"),
        )
        with caches.lock:
            caches.views.put(memo, view)
        return view

    def __call__(self, event: Skeleton) -> bool:
        if event.outlier or not event.snapshot_nid:
            # No state is known at an outlier: nothing says the server may see it.
            return False
        key = state_key_of(event)
        # The state after an accepted state event is not the state before it: a member event
        # changes a server's memberships, a history visibility event the visibility. Events
        # that change no state (messages) share the memo of their state before.
        own = event.nid if key is not None and not event.rejected else 0
        memo = (event.snapshot_nid, own)
        cached = self._by_state.get(memo)
        if cached is not None:
            return cached
        view = self._view(event.snapshot_nid)
        visibility, joined, invited = view.visibility, view.joined, view.invited
        if key is not None and own:
            if key == self._HV_KEY:
                visibility = self._visibility_of(event.nid)
            elif key[0] == MROOM_MEMBER_NID:
                tx, caches = self._tx, self._caches
                if servers_of_keys(tx, caches, [key[1]])[key[1]] == self._server:
                    # The state after the event: a server's user's own join makes it visible.
                    membership = memberships_of(tx, caches, [event.nid])[event.nid]
                    user = frozenset([key[1]])
                    joined = joined - user | (user if membership == "join" else frozenset())
                    invited = invited - user | (user if membership == "invite" else frozenset())
        at_event = [m for m, users in (("join", joined), ("invite", invited)) if users]
        allowed = server_may_see_event(visibility, at_event, ())
        if not allowed and visibility not in ("joined", "invited"):
            now = self._view(self._room.current_snapshot_nid).joined
            allowed = server_may_see_event(visibility, at_event, ["join"] if now else [])
        self._by_state[memo] = allowed
        return allowed
