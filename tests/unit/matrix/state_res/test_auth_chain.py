"""`AuthChainIndex` against the spec's definitions, computed the obvious way on random DAGs:

- auth difference: ∪ C_i − ∩ C_i, C_i the events of S_i and all their auth ancestors
  (docs/interoperability.md: the state set's own events count);
- conflicted state subgraph (MSC4297): every event on an auth path between two conflicted
  events, endpoints included;
- step 1 of v2's subgraph: direct auth edges inside the full conflicted set (the network's
  reading, docs/interoperability.md).
"""

from __future__ import annotations

import random
from itertools import product

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from processor.errors import StateResolutionError
from processor.matrix.state_res import AuthChainIndex
from processor.nids import EventNID, EventTypeNID, StateKeyNID, StateKeyTuple


class Dag:
    def __init__(self, auth: list[list[int]], keys: list[StateKeyTuple]) -> None:
        self.auth = auth
        self.keys = keys
        self.index = AuthChainIndex()
        for node, parents in enumerate(auth):
            # NIDs deliberately not in position order: 1000 - node.
            self.index.add(self.nid(node), keys[node], [self.nid(p) for p in parents])

    @staticmethod
    def nid(node: int) -> EventNID:
        return EventNID(1000 - node)

    def ancestors(self, node: int) -> set[int]:
        seen: set[int] = set()
        stack = list(self.auth[node])
        while stack:
            n = stack.pop()
            if n not in seen:
                seen.add(n)
                stack.extend(self.auth[n])
        return seen


@st.composite
def dags(draw: st.DrawFn) -> Dag:
    size = draw(st.integers(min_value=1, max_value=30))
    auth: list[list[int]] = []
    keys: list[StateKeyTuple] = []
    for node in range(size):
        parents = draw(st.sets(st.integers(0, node - 1), max_size=3)) if node else set()
        auth.append(sorted(parents))
        keys.append((EventTypeNID(draw(st.integers(2, 4))), StateKeyNID(draw(st.integers(1, 3)))))
    return Dag(auth, keys)


@st.composite
def dag_and_state_sets(draw: st.DrawFn) -> tuple[Dag, list[dict[StateKeyTuple, int]]]:
    dag = draw(dags())
    n = len(dag.auth)
    state_sets = []
    for _ in range(draw(st.integers(2, 3))):
        chosen = draw(st.lists(st.integers(0, n - 1), max_size=8))
        state_sets.append({dag.keys[node]: node for node in chosen})
    return dag, state_sets


@settings(max_examples=200, deadline=None)
@given(dag_and_state_sets())
def test_auth_difference_matches_the_definition(
    case: tuple[Dag, list[dict[StateKeyTuple, int]]],
) -> None:
    dag, state_sets = case
    chains = [
        set(state.values()).union(*(dag.ancestors(n) for n in state.values()))
        for state in state_sets
    ]
    expected = set().union(*chains) - chains[0].intersection(*chains[1:])
    nid_sets = [{k: dag.nid(n) for k, n in state.items()} for state in state_sets]
    keys = set().union(*nid_sets)
    conflicted = {
        k for k in keys
        if len({s.get(k) for s in nid_sets}) > 1 or any(k not in s for s in nid_sets)
    }
    got = dag.index.auth_difference(nid_sets, conflicted)
    assert got == {dag.nid(n) for n in expected}


@settings(max_examples=200, deadline=None)
@given(dags(), st.data())
def test_conflicted_subgraph_matches_the_definition(dag: Dag, data: st.DataObject) -> None:
    n = len(dag.auth)
    conflicted = data.draw(st.sets(st.integers(0, n - 1), min_size=1, max_size=5))
    reach = {node: dag.ancestors(node) | {node} for node in range(n)}
    expected = {
        x
        for a, b in product(conflicted, repeat=2)
        for x in reach[a]
        if b in reach[x]
    }
    got = dag.index.conflicted_subgraph({dag.nid(c) for c in conflicted})
    assert got == {dag.nid(x) for x in expected}


@settings(max_examples=200, deadline=None)
@given(dags(), st.data())
def test_power_subgraph_follows_direct_edges_inside_the_set(
    dag: Dag, data: st.DataObject
) -> None:
    """Step 1 of v2 as the network runs it: from the roots, walk only auth edges whose
    target is in `members`; each reached event keeps its direct auth events in `members`."""
    n = len(dag.auth)
    members = data.draw(st.sets(st.integers(0, n - 1), min_size=1, max_size=8))
    roots = data.draw(st.sets(st.sampled_from(sorted(members)), max_size=3))
    expected: dict[int, set[int]] = {}
    frontier = sorted(roots)
    while frontier:
        node = frontier.pop()
        if node in expected:
            continue
        expected[node] = {a for a in dag.auth[node] if a in members}
        frontier.extend(expected[node])
    got = dag.index.power_subgraph({dag.nid(r) for r in roots}, {dag.nid(m) for m in members})
    assert got == {
        dag.nid(node): {dag.nid(a) for a in inside} for node, inside in expected.items()
    }


def test_power_subgraph_does_not_cross_events_outside_the_set() -> None:
    """A power event whose auth chain reaches a member of the set only through an event
    outside it: the spec's wording would select that member, the network does not."""
    index = AuthChainIndex()
    key = (EventTypeNID(2), StateKeyNID(1))
    index.add(EventNID(1), key, [])  # in the set, reached only through 2
    index.add(EventNID(2), key, [EventNID(1)])  # outside the set
    index.add(EventNID(3), key, [EventNID(2)])  # the power event
    assert index.power_subgraph({EventNID(3)}, {EventNID(1), EventNID(3)}) == {
        EventNID(3): set()
    }


def test_power_levels_parent_and_auth_chain() -> None:
    index = AuthChainIndex()
    pl = (EventTypeNID(2), StateKeyNID(1))
    create = (EventTypeNID(1), StateKeyNID(1))
    member = (EventTypeNID(5), StateKeyNID(7))
    index.add(EventNID(1), create, [])
    index.add(EventNID(2), member, [EventNID(1)])
    index.add(EventNID(3), pl, [EventNID(1), EventNID(2)])
    index.add(EventNID(4), pl, [EventNID(1), EventNID(3), EventNID(2)])
    index.add(EventNID(4), pl, [])  # idempotent
    assert len(index) == 4
    assert index.power_levels_parent(EventNID(4)) == EventNID(3)
    assert index.power_levels_parent(EventNID(3)) is None
    assert index.auth_chain({EventNID(4)}) == {1, 2, 3}


def test_unknown_events_are_named() -> None:
    index = AuthChainIndex()
    with pytest.raises(StateResolutionError, match="auth event NID 9 of event NID 10"):
        index.add(EventNID(10), None, [EventNID(9)])
    with pytest.raises(StateResolutionError, match="event NID 5 is not in the room's auth"):
        index.auth_chain({EventNID(5)})


@settings(max_examples=50, deadline=None)
@given(dags(), st.randoms(use_true_random=False))
def test_from_events_in_any_order_builds_the_same_index(dag: Dag, rnd: random.Random) -> None:
    rows = [
        (dag.nid(node), dag.keys[node], [dag.nid(p) for p in dag.auth[node]])
        for node in range(len(dag.auth))
    ]
    rnd.shuffle(rows)
    index = AuthChainIndex.from_events(rows)
    assert len(index) == len(dag.auth)
    for node in range(len(dag.auth)):
        assert index.auth_chain({dag.nid(node)}) == {dag.nid(a) for a in dag.ancestors(node)}


def test_from_events_names_a_missing_auth_event() -> None:
    rows = [(EventNID(2), None, [EventNID(1)])]
    with pytest.raises(StateResolutionError, match="auth event NID 1 of event NID 2"):
        AuthChainIndex.from_events(rows)


def test_from_events_rejects_a_cycle() -> None:
    rows = [(EventNID(1), None, [EventNID(2)]), (EventNID(2), None, [EventNID(1)])]
    with pytest.raises(StateResolutionError, match="is its own auth ancestor"):
        AuthChainIndex.from_events(rows)


@st.composite
def dags_with_non_state_events(draw: st.DrawFn) -> tuple[Dag, list[dict[StateKeyTuple, int]]]:
    """Some events are non-state (no key) and cited as auth events anyway (what a rejected
    event may do): they go on the chain cover only when cited, and must still count."""
    size = draw(st.integers(min_value=1, max_value=25))
    auth: list[list[int]] = []
    keys: list[StateKeyTuple | None] = []
    for node in range(size):
        cited = draw(st.sets(st.integers(0, node - 1), max_size=3)) if node else set()
        auth.append(sorted(cited))
        state = draw(st.booleans())
        keys.append((EventTypeNID(2), StateKeyNID(draw(st.integers(1, 2)))) if state else None)
    dag = Dag.__new__(Dag)
    dag.auth, dag.keys = auth, keys  # type: ignore[assignment]
    dag.index = AuthChainIndex()
    for node, cites in enumerate(auth):
        dag.index.add(dag.nid(node), keys[node], [dag.nid(p) for p in cites])
    stated = [node for node in range(size) if keys[node] is not None]
    state_sets = []
    for _ in range(2):
        chosen = draw(st.lists(st.sampled_from(stated), max_size=6)) if stated else []
        state_sets.append({key: node for node in chosen if (key := keys[node]) is not None})
    return dag, state_sets


@settings(max_examples=200, deadline=None)
@given(dags_with_non_state_events())
def test_non_state_auth_events_count_in_auth_chains_and_differences(
    case: tuple[Dag, list[dict[StateKeyTuple, int]]],
) -> None:
    dag, state_sets = case
    for node in range(len(dag.auth)):
        assert dag.index.auth_chain({dag.nid(node)}) == {dag.nid(a) for a in dag.ancestors(node)}
    chains = [
        set(state.values()).union(*(dag.ancestors(n) for n in state.values()))
        for state in state_sets
    ]
    expected = set().union(*chains) - chains[0].intersection(*chains[1:])
    nid_sets = [{k: dag.nid(n) for k, n in state.items()} for state in state_sets]
    conflicted = {
        k for k in set().union(*nid_sets) if len({s.get(k) for s in nid_sets}) > 1
    }
    assert dag.index.auth_difference(nid_sets, conflicted) == {dag.nid(n) for n in expected}
