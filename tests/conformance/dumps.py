"""Byte-level dumps of `roomserver state --all-events [--before]`, for determinism tests.

The input is the twelve conformance rooms interleaved line by line (each room keeps its own
order), so that every batch and every input partition mixes rooms. A dump holds, for every
room, exactly the bytes that `roomserver state --database DB --room ROOM --all-events`
prints (`after`) and the same with `--before` (`before`): the same function
(`room_state_lines`) and the same encoding as the command line (`processor/cli.py`).

`baseline()` is the reference every variant is held against: the interleaved input through
the embedded mode (`ingest`, SQLite, the command's default batch size), computed once per
test session.
"""

from __future__ import annotations

import atexit
import functools
import json
import shutil
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from itertools import zip_longest
from pathlib import Path

from processor.ingest import ingest
from processor.pipeline.caches import CacheLimits
from processor.pipeline.types import InputMessage
from processor.room_state import room_state_lines
from processor.storage import open_database
from tests.conformance.rooms import ROOMS, Room, room_ids, rooms_in

#: (room ID, "after" | "before") -> the bytes `roomserver state --all-events` prints.
Dump = dict[tuple[str, str], bytes]

MODES = ("after", "before")

#: `roomserver ingest --batch-size` default (processor/cli.py).
CLI_BATCH_SIZE = 1000


def interleaved(rooms: Sequence[Room]) -> list[bytes]:
    """The rooms' input lines, one line of each room in turn (each room in its own order)."""
    per_room = [room.lines() for room in rooms]
    return [line for turn in zip_longest(*per_room) for line in turn if line is not None]


@functools.cache
def input_lines() -> tuple[bytes, ...]:
    """The twelve conformance rooms, interleaved line by line."""
    rooms = rooms_in(ROOMS)
    assert len(rooms) == 12, f"expected the 12 conformance rooms in {ROOMS}, found {len(rooms)}"
    return tuple(interleaved(rooms))


def input_bytes() -> bytes:
    return b"".join(line + b"\n" for line in input_lines())


@functools.cache
def input_room_ids() -> tuple[str, ...]:
    return tuple(sorted(room_ids(input_lines())))


def encode(lines: Iterable[dict[str, object]]) -> bytes:
    """What `roomserver state` writes for these lines (`_state` in processor/cli.py)."""
    return "".join(json.dumps(line, separators=(",", ":")) + "\n" for line in lines).encode()


def dump(database: str, rooms: Iterable[str] | None = None) -> Dump:
    """Every room's `state --all-events` and `state --all-events --before` output, read as
    the command reads it (`open_database(..., read_only=True)`)."""
    store = open_database(database, read_only=True)
    try:
        return {
            (room_id, mode): encode(
                room_state_lines(
                    store, room_id, at=None, before=mode == "before", all_events=True
                )
            )
            for room_id in (input_room_ids() if rooms is None else rooms)
            for mode in MODES
        }
    finally:
        store.close()


def ingest_into(
    database: str,
    lines: Sequence[bytes],
    *,
    batch_size: int,
    cache_limits: CacheLimits | None = None,
) -> None:
    """The embedded mode in-process, as `roomserver ingest` runs it (line numbers from 1)."""
    store = open_database(database, read_only=False)
    try:
        messages = (InputMessage(line, "file", 0, n) for n, line in enumerate(lines, 1))
        summary = ingest(store, messages, batch_size=batch_size, cache_limits=cache_limits)
    finally:
        store.close()
    assert summary.events == len(lines)
    assert not summary.dead_letters, summary.dead_letters[:5]


@functools.cache
def baseline_database() -> str:
    """The reference database: the interleaved input through `ingest` into SQLite (kept,
    read-only from then on, until the test session ends)."""
    directory = tempfile.mkdtemp(prefix="roomserver-determinism-")
    atexit.register(shutil.rmtree, directory, ignore_errors=True)
    database = str(Path(directory) / "baseline.db")
    ingest_into(database, input_lines(), batch_size=CLI_BATCH_SIZE)
    return database


@functools.cache
def baseline() -> Mapping[tuple[str, str], bytes]:
    """The reference dump, of `baseline_database()`."""
    return dump(baseline_database())


def differences(want: Mapping[tuple[str, str], bytes], got: Mapping[tuple[str, str], bytes],
                what: str) -> str:
    """'' if `got` equals `want` byte for byte; else which rooms differ, and where the first
    difference of each is (line number, event, both lines, shortened)."""
    problems = []
    for key in sorted(want.keys() | got.keys()):
        room_id, mode = key
        if key not in got:
            problems.append(f"{room_id} ({mode}): missing from {what}")
            continue
        if key not in want:
            problems.append(f"{room_id} ({mode}): only in {what}")
            continue
        if got[key] == want[key]:
            continue
        want_lines = want[key].splitlines()
        got_lines = got[key].splitlines()
        for number, (a, b) in enumerate(zip_longest(want_lines, got_lines), 1):
            if a != b:
                problems.append(
                    f"{room_id} ({mode}): {len(want_lines)} lines in the baseline, "
                    f"{len(got_lines)} in {what}; first difference at line {number}: "
                    + _line_difference(a, b, what)
                )
                break
    if not problems:
        return ""
    return f"{what} differs from the ingest baseline in {len(problems)} of " \
        f"{len(want)} dumps:\n" + "\n".join(problems)


def _line_difference(want: bytes | None, got: bytes | None, what: str) -> str:
    """The first differing lines of two dumps, by field: the event, `rejected`, and the
    state entries only one side has."""
    if want is None or got is None:
        line = json.loads(want or got or b"{}")
        side = "the baseline" if want is None else what
        return f"event {line.get('event_id')} missing from {side}"
    a, b = json.loads(want), json.loads(got)
    if a.get("event_id") != b.get("event_id"):
        return f"event {a.get('event_id')} in the baseline, {b.get('event_id')} in {what}"
    parts = [f"event {a['event_id']}"]
    if a.get("rejected") != b.get("rejected"):
        parts.append(f"rejected: baseline {a.get('rejected')}, {what} {b.get('rejected')}")
    state_a = {tuple(entry) for entry in a.get("state") or ()}
    state_b = {tuple(entry) for entry in b.get("state") or ()}
    if (a.get("state") is None) != (b.get("state") is None):
        parts.append(f"state known: baseline {a.get('state') is not None}, "
                     f"{what} {b.get('state') is not None}")
    if state_a != state_b:
        parts.append(f"state entries only in the baseline: {sorted(state_a - state_b)[:5]}")
        parts.append(f"only in {what}: {sorted(state_b - state_a)[:5]}")
    if len(parts) == 1:  # the same content, other bytes (order, encoding)
        parts.append(f"baseline {want[:300]!r}, {what} {got[:300]!r}")
    return "; ".join(parts)
