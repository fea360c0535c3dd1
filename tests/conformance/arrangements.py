"""Other valid arrangements of a conformance room's input: the same DAG in another arrival
order, or with some events sent first as outliers. Every arrangement keeps each event after
its prev and auth events (an outlier after its auth events)."""

from __future__ import annotations

import json
import random
from collections.abc import Sequence

from processor.matrix import room_version
from processor.matrix.events import Event
from processor.matrix.pdu import decode_pdu


def _events(lines: Sequence[bytes]) -> list[Event]:
    decoded = []
    for line in lines:
        item = json.loads(line)
        decoded.append(decode_pdu(item["event"], room_version(item["room_version"])))
    return decoded


def another_arrival_order(lines: Sequence[bytes], rng: random.Random) -> list[bytes]:
    """A random topological order of the room's events (prev and auth events first)."""
    events = _events(lines)
    index = {e.event_id: i for i, e in enumerate(events)}
    waiting = [
        len({index[d] for d in (*e.prev_event_ids, *e.auth_event_ids) if d in index})
        for e in events
    ]
    unblocks: list[list[int]] = [[] for _ in events]
    for i, e in enumerate(events):
        for d in sorted({index[d] for d in (*e.prev_event_ids, *e.auth_event_ids) if d in index}):
            unblocks[d].append(i)
    ready = [i for i, n in enumerate(waiting) if n == 0]
    order: list[int] = []
    while ready:
        i = ready.pop(rng.randrange(len(ready)))
        order.append(i)
        for j in unblocks[i]:
            waiting[j] -= 1
            if waiting[j] == 0:
                ready.append(j)
    assert len(order) == len(events)
    return [lines[i] for i in order]


def with_outliers_first(
    lines: Sequence[bytes], rng: random.Random, fraction: float
) -> list[bytes]:
    """`fraction` of the room's state events, with their auth ancestors, first as `outlier`
    lines (in input order, so each after its auth events), then the whole room as given."""
    events = _events(lines)
    by_id = {e.event_id: e for e in events}
    chosen: set[str] = set()
    for event in events:
        if event.state_key is not None and rng.random() < fraction:
            stack = [event.event_id]
            while stack:
                event_id = stack.pop()
                if event_id not in chosen:
                    chosen.add(event_id)
                    stack.extend(by_id[event_id].auth_event_ids)
    outliers = []
    for line, event in zip(lines, events, strict=True):
        if event.event_id in chosen:
            item = json.loads(line)
            item["kind"] = "outlier"
            outliers.append(json.dumps(item).encode())
    return outliers + list(lines)
