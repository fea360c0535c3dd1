"""`AuthChainIndex`: a room's auth DAG as compact integer arrays, for state resolution.

The caller keeps one index per room and adds each event as it is stored (its auth events
first, which is the order a room stores events in). Every event gets a dense *position* in
insertion order, so an event's auth ancestors always have smaller positions than the event.
That gives the walks below a floor: a path from a newer event down to an older one never
passes below the older one's position, so the walks prune everything older than what they
look for instead of walking back to the create event.

What it answers, without loading any event:

- the *auth difference* of a set of state maps (state resolution v2, 2.1);
- the *conflicted state subgraph* (state resolution v2.1, MSC4297);
- the auth subgraph of the power events inside the full conflicted set (step 1 of v2);
- the `m.room.power_levels` event among an event's auth events (mainline ordering).

Chain cover (so the answers cost what they return, not the room's age): every state event
sits on a *chain* at a sequence number. A chain is a path of auth edges — an event at key k
extends the chain of its auth event at the same key when that event is still the chain's
tip, otherwise (the first event of a key, or a fork) it starts a new chain — so the events of
a chain at or below a sequence number are exactly one event and its ancestors on that chain.
Each event keeps, per chain its auth ancestors touch, the highest sequence number it reaches
(`_reach`; its own chain is implied by its own position). The auth ancestors of any set of
events are then, per chain, a prefix: the union and intersection of auth chains are prefix
maxima and minima, with no walk down the history. The maps grow with the number of chains an
event's ancestry touches — the number of *forks at one key* in its history — not with the
number of events; an event whose map equals its chain predecessor's shares that object.

The auth difference does not walk the (large) unconflicted part of the state. With
S_i = U ∪ D_i (U the unconflicted events, D_i the events of S_i at conflicted keys) and
cl⁺(X) the events of X and their auth ancestors:

    ∪ cl⁺(S_i) − ∩ cl⁺(S_i)  =  ∪ cl⁺(D_i) − ∩ cl⁺(D_i) − cl⁺(U)

so only the chain maxima of the few conflicted events are merged, and each candidate is
tested for membership of cl⁺(U) by searching its *descendants* for an unconflicted event
(memoised across candidates, newest children first, stopping at the first hit).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence

from processor.errors import StateResolutionError
from processor.nids import MROOM_POWER_LEVELS_NID, EventNID, StateKeyTuple

_NO_PARENT = -1
#: `_chain` of an event not on a chain yet: a non-state event, given one only when an event
#: cites it (a non-state event is never an auth event of a valid event, so this is rare and
#: keeps messages, most of a room, off the chains).
_NO_CHAIN = -1
_EMPTY_REACH: dict[int, int] = {}


class AuthChainIndex:
    """A room's auth DAG over event NIDs: pure, in memory, grown one event at a time."""

    __slots__ = (
        "_auth", "_chain", "_chains", "_children", "_keys", "_nids", "_pl_parent", "_pos",
        "_reach", "_seq",
    )

    def __init__(self) -> None:
        self._pos: dict[int, int] = {}
        self._nids: list[EventNID] = []
        #: position -> positions of its auth events
        self._auth: list[tuple[int, ...]] = []
        #: position -> positions of the state events that cite it as an auth event
        self._children: list[list[int]] = []
        self._keys: list[StateKeyTuple | None] = []
        #: position -> position of the m.room.power_levels event among its auth events
        self._pl_parent: list[int] = []
        #: position -> its chain (`_NO_CHAIN`: none yet) and sequence number on it (from 1)
        self._chain: list[int] = []
        self._seq: list[int] = []
        #: chain -> its events' positions in sequence order (sequence number s at s - 1)
        self._chains: list[list[int]] = []
        #: position -> {chain: highest sequence number among its auth ancestors}, other than
        #: its own chain (shared, never mutated, when equal to its chain predecessor's)
        self._reach: list[dict[int, int]] = []

    # -- building -------------------------------------------------------------------------

    def add(
        self, nid: EventNID, key: StateKeyTuple | None, auth_nids: Iterable[EventNID]
    ) -> None:
        """Index an event. Its auth events must have been added before it. Adding an event
        twice is a no-op."""
        if nid in self._pos:
            return
        pos_of = self._pos
        auth: list[int] = []
        pl_parent = _NO_PARENT
        for auth_nid in auth_nids:
            auth_pos = pos_of.get(auth_nid)
            if auth_pos is None:
                raise StateResolutionError(
                    f"auth chain index: auth event NID {auth_nid} of event NID {nid} has not "
                    "been added; add events after their auth events"
                )
            if auth_pos in auth:
                continue
            auth.append(auth_pos)
            auth_key = self._keys[auth_pos]
            if auth_key is not None and auth_key[0] == MROOM_POWER_LEVELS_NID:
                pl_parent = auth_pos
        pos = len(self._nids)
        pos_of[nid] = pos
        self._nids.append(nid)
        self._auth.append(tuple(auth))
        self._children.append([])
        self._keys.append(key)
        self._pl_parent.append(pl_parent)
        self._chain.append(_NO_CHAIN)
        self._seq.append(0)
        self._reach.append(_EMPTY_REACH)
        if key is not None:
            # Only state events can be in a state map, so only they are worth finding
            # when searching descendants (see `auth_difference`).
            children = self._children
            for auth_pos in auth:
                children[auth_pos].append(pos)
            self._put_on_chain(pos)

    def _put_on_chain(self, pos: int) -> None:
        """Give `pos` its chain position and its reach; auth events not on a chain (non-state
        events) are put on one first, deepest first (a loop: such a path may be long)."""
        chain_of, auth_of = self._chain, self._auth
        stack = [a for a in auth_of[pos] if chain_of[a] == _NO_CHAIN]
        while stack:
            top = stack[-1]
            if chain_of[top] != _NO_CHAIN:
                stack.pop()
                continue
            below = [a for a in auth_of[top] if chain_of[a] == _NO_CHAIN]
            if below:
                stack.extend(below)
            else:
                stack.pop()
                self._place(top)
        self._place(pos)

    def _place(self, pos: int) -> None:
        """`_put_on_chain` for an event whose auth events are all on chains."""
        chain_of, keys, chains = self._chain, self._keys, self._chains
        auth = self._auth[pos]
        key = keys[pos]
        if key is None:
            # A cited non-state event lies on auth paths between state events now: the
            # descendant search of `auth_difference` must be able to pass through it.
            children = self._children
            for a in auth:
                children[a].append(pos)
        chain = _NO_CHAIN
        predecessor = _NO_PARENT
        if key is not None:
            for a in auth:
                if keys[a] == key and chains[chain_of[a]][-1] == a:
                    chain, predecessor = chain_of[a], a
                    break
        if chain == _NO_CHAIN:
            chain = len(chains)
            chains.append([])
        members = chains[chain]
        members.append(pos)
        chain_of[pos] = chain
        self._seq[pos] = len(members)
        reach = self._merged_reach(auth)
        reach.pop(chain, None)  # implied by the event's own position
        if predecessor != _NO_PARENT and reach == self._reach[predecessor]:
            self._reach[pos] = self._reach[predecessor]  # share: most state updates
        elif reach:
            self._reach[pos] = reach

    def _merged_reach(self, positions: Iterable[int]) -> dict[int, int]:
        """Per chain, the highest sequence number among `positions` and their ancestors."""
        chain_of, seq_of, reach_of = self._chain, self._seq, self._reach
        merged: dict[int, int] | None = None
        merged_reaches: set[int] = set()  # ids: events of one chain often share their reach
        for p in positions:
            chain = chain_of[p]
            if chain == _NO_CHAIN:  # a non-state event: asked about, or cited, first now
                self._put_on_chain(p)
                chain = chain_of[p]
            reach = reach_of[p]
            if merged is None:
                merged = dict(reach)  # a copy in C: reaches can be large (invite chains)
                merged_reaches.add(id(reach))
            elif id(reach) not in merged_reaches:
                merged_reaches.add(id(reach))
                get = merged.get
                for c, s in reach.items():
                    if get(c, 0) < s:
                        merged[c] = s
            s = seq_of[p]
            if merged.get(chain, 0) < s:
                merged[chain] = s
        return {} if merged is None else merged

    @classmethod
    def from_events(
        cls, rows: Iterable[tuple[EventNID, StateKeyTuple | None, Sequence[EventNID]]]
    ) -> AuthChainIndex:
        """Build an index from (event NID, state key tuple, auth event NIDs) rows in any
        order (e.g. a room's events as storage returns them on a cold start): each event is
        added after its auth events."""
        by_nid = {row[0]: row for row in rows}
        index = cls()
        added = index._pos
        for start in by_nid:
            if start in added:
                continue
            # Depth-first post-order: an event is added once all its auth events are in.
            stack = [(start, iter(by_nid[start][2]))]
            on_path = {start}
            while stack:
                nid, auth_iter = stack[-1]
                for auth_nid in auth_iter:
                    if auth_nid in added or auth_nid not in by_nid:
                        continue  # an unknown auth event is reported by `add`
                    if auth_nid in on_path:
                        raise StateResolutionError(
                            f"auth chain index: event NID {auth_nid} is its own auth ancestor"
                        )
                    on_path.add(auth_nid)
                    stack.append((auth_nid, iter(by_nid[auth_nid][2])))
                    break
                else:
                    stack.pop()
                    on_path.discard(nid)
                    _, key, auth_nids = by_nid[nid]
                    index.add(nid, key, auth_nids)
        return index

    def __contains__(self, nid: object) -> bool:
        return nid in self._pos

    def __len__(self) -> int:
        return len(self._nids)

    def missing(self, nids: Iterable[EventNID]) -> set[EventNID]:
        """Those of `nids` not in the index (a set difference in C: states are large)."""
        return set(nids).difference(self._pos)

    # -- lookups --------------------------------------------------------------------------

    def _positions(self, nids: Iterable[EventNID]) -> list[int]:
        pos_of = self._pos
        try:
            return [pos_of[nid] for nid in nids]
        except KeyError as e:
            raise StateResolutionError(
                f"event NID {e.args[0]} is not in the room's auth chain index; the caller "
                "must add every stored event (and its auth events) to the index"
            ) from None

    def _to_nids(self, positions: Iterable[int]) -> set[EventNID]:
        nids = self._nids
        return {nids[p] for p in positions}

    def power_levels_parent(self, nid: EventNID) -> EventNID | None:
        """The m.room.power_levels event among `nid`'s auth events, if any."""
        parent = self._pl_parent[self._positions((nid,))[0]]
        return None if parent == _NO_PARENT else self._nids[parent]

    def auth_chain(self, nids: Collection[EventNID]) -> set[EventNID]:
        """The auth chain of a set of events: their auth ancestors, not the events
        themselves unless one is an ancestor of another."""
        auth = self._auth
        roots = self._positions(nids)
        maxima = self._merged_reach({a for r in roots for a in auth[r]})
        chains = self._chains
        return self._to_nids(p for c, top in maxima.items() for p in chains[c][:top])

    # -- walks ----------------------------------------------------------------------------

    def _closure(self, roots: Iterable[int], floor: int) -> set[int]:
        """`roots` (those at or above `floor`) and their ancestors at or above `floor`."""
        auth = self._auth
        seen = {r for r in roots if r >= floor}
        stack = list(seen)
        pop, push, mark = stack.pop, stack.append, seen.add
        while stack:
            for a in auth[pop()]:
                if a >= floor and a not in seen:
                    mark(a)
                    push(a)
        return seen

    def power_subgraph(
        self, roots: Collection[EventNID], members: Collection[EventNID]
    ) -> dict[EventNID, set[EventNID]]:
        """Step 1 of state resolution v2 as the network runs it: `roots` and the events of
        `members` reachable from them by auth edges that stay inside `members`, each mapped
        to its own auth events among `members` (the edges of the topological sort).

        The spec's wording takes "the events in the auth chain of P which also belong to the
        full conflicted set", i.e. ancestors reached through events outside the set too, and
        orders them by the whole auth DAG. The reference homeserver walks only the direct auth
        edges between events of the set, for both the selection and the ordering; a room in
        which the two differ resolves differently, so the network's walk is the one here
        (docs/interoperability.md, "v2 step 1").
        """
        member_pos = set(self._positions(members))
        auth, nids = self._auth, self._nids
        edges: dict[int, list[int]] = {}
        stack = sorted(self._positions(roots))
        while stack:
            p = stack.pop()
            if p in edges:
                continue
            inside = [a for a in auth[p] if a in member_pos]
            edges[p] = inside
            stack.extend(a for a in inside if a not in edges)
        return {nids[p]: {nids[a] for a in inside} for p, inside in edges.items()}

    def auth_difference(
        self,
        state_sets: Sequence[Mapping[StateKeyTuple, EventNID]],
        conflicted_keys: Collection[StateKeyTuple],
    ) -> set[EventNID]:
        """∪ C_i − ∩ C_i, where C_i is the *full auth chain* of state map S_i.

        C_i counts the events of S_i themselves as well as their auth ancestors. The spec
        says "the union of the auth chains for each event in S_i", which read literally leaves
        out an event no other event of S_i cites; the deployed implementations (and the
        interoperable network) include the state events themselves, and so do we.
        """
        # ∪ cl⁺(D_i) − ∩ cl⁺(D_i): per chain, the events above the lowest of the sets'
        # prefixes and up to the highest.
        maxima: list[dict[int, int]] = []
        for state in state_sets:
            conflicted_events = [state[k] for k in conflicted_keys if k in state]
            maxima.append(self._merged_reach(self._positions(conflicted_events)))
        chains = self._chains
        # Only chains on which the maxima differ (item set differences run in C).
        first_items = maxima[0].items()
        differing: set[int] = set()
        for other in maxima[1:]:
            differing.update(c for c, _ in first_items ^ other.items())
        candidates: list[int] = []
        for chain in differing:
            tops = [m.get(chain, 0) for m in maxima]
            low, high = min(tops), max(tops)
            if high > low:
                candidates.extend(chains[chain][low:high])
        if not candidates:
            return set()
        in_unconflicted_chain = self._in_unconflicted_chain(candidates, state_sets)
        return self._to_nids(p for p in candidates if not in_unconflicted_chain[p])

    def _in_unconflicted_chain(
        self, candidates: Collection[int], state_sets: Sequence[Mapping[StateKeyTuple, EventNID]]
    ) -> dict[int, bool]:
        """For each candidate: is it an unconflicted event or an auth ancestor of one?

        Searches descendants (memoised; a hit marks the whole search path), newest children
        first since recent events are the ones most likely to be in the current state.
        """
        nids, keys, children = self._nids, self._keys, self._children
        first, others = state_sets[0], state_sets[1:]

        def unconflicted(p: int) -> bool:
            key = keys[p]
            if key is None:
                return False
            nid = nids[p]
            if first.get(key) != nid:
                return False
            return all(other.get(key) == nid for other in others)

        status: dict[int, bool] = {}
        for root in sorted(candidates, reverse=True):
            if root in status:
                continue
            if unconflicted(root):
                status[root] = True
                continue
            # Depth-first over descendants; each frame is (node, index of next child).
            stack: list[list[int]] = [[root, len(children[root])]]
            found = False
            while stack:
                frame = stack[-1]
                node, i = frame
                node_children = children[node]
                descended = False
                while i > 0:
                    i -= 1
                    child = node_children[i]
                    known = status.get(child)
                    if known is None:
                        if unconflicted(child):
                            status[child] = known = True
                        else:
                            frame[1] = i
                            stack.append([child, len(children[child])])
                            descended = True
                            break
                    if known:
                        found = True
                        break
                if found:
                    for node_frame in stack:
                        status[node_frame[0]] = True
                    break
                if not descended:
                    status[node] = False
                    stack.pop()
        return status

    def conflicted_subgraph(self, conflicted: Collection[EventNID]) -> set[EventNID]:
        """MSC4297: the events on auth-event paths between two events of the conflicted
        state set (endpoints included)."""
        if not conflicted:
            return set()
        conflicted_pos = set(self._positions(conflicted))
        reachable = self._closure(conflicted_pos, min(conflicted_pos))
        auth = self._auth
        # Ascending positions visit auth events before the events citing them, so one pass
        # finds every reachable event from which a conflicted event is reachable.
        on_path = set(conflicted_pos)
        for p in sorted(reachable):
            if p not in on_path and any(a in on_path for a in auth[p]):
                on_path.add(p)
        return self._to_nids(on_path)
