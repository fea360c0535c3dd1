"""The conformance rooms, and how a test holds the roomserver's answers against them.

`data/rooms/` holds twelve forked rooms, one per room version 1–12, 150 events each, with
the reference homeserver's answer for every event (`<room>.expected.jsonl`: rejected or not,
the state before and the state after); `data/rooms-large.tar.xz` holds 240 more made the same
way. They are the network's behaviour, which the roomserver must match exactly: a
disagreement is a split room (docs/interoperability.md).

`ingest_room` runs the embedded mode in-process into an SQLite file and `answers` reads back
what `roomserver state --all-events [--before]` prints; `disagreements` compares, in input
order, and `describe` says which event first disagrees and at which keys.
"""

from __future__ import annotations

import json
import tarfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from processor.ingest import IngestSummary, ingest
from processor.pipeline.types import InputMessage
from processor.room_state import room_state_lines
from processor.storage.sqlite import SqliteStore

DATA = Path(__file__).parent / "data"
ROOMS = DATA / "rooms"
LARGE_ARCHIVE = DATA / "rooms-large.tar.xz"

StateEntry = tuple[str, str, str]


@dataclass(frozen=True)
class Answer:
    rejected: bool
    state_before: frozenset[StateEntry]
    state_after: frozenset[StateEntry]


@dataclass(frozen=True)
class Room:
    name: str
    input: Path
    expected: Path

    def lines(self) -> list[bytes]:
        return [line for line in self.input.read_bytes().splitlines() if line.strip()]

    def expected_answers(self) -> dict[str, Answer]:
        answers: dict[str, Answer] = {}
        for line in self.expected.read_text().splitlines():
            row = json.loads(line)
            answers[row["event_id"]] = Answer(
                row["rejected"], _entries(row["state_before"]), _entries(row["state_after"])
            )
        return answers


def rooms_in(directory: Path) -> list[Room]:
    return [
        Room(path.name.removesuffix(".input.jsonl"), path,
             path.with_name(path.name.replace(".input.", ".expected.")))
        for path in sorted(directory.glob("*.input.jsonl"))
    ]


def unpack_large_set(into: Path) -> Path:
    """Unpack `rooms-large.tar.xz` under `into`; returns the directory of its rooms."""
    with tarfile.open(LARGE_ARCHIVE) as archive:
        archive.extractall(into, filter="data")
    return into / "rooms-large"


def _entries(rows: Iterable[Sequence[str]] | None) -> frozenset[StateEntry]:
    return frozenset((t, k, e) for t, k, e in rows or ())


def ingest_room(
    lines: Sequence[bytes], database: Path, *, batch_size: int = 500
) -> IngestSummary:
    store = SqliteStore(str(database))
    try:
        messages = (InputMessage(line, "file", 0, n) for n, line in enumerate(lines, 1))
        return ingest(store, messages, batch_size=batch_size)
    finally:
        store.close()


def room_ids(lines: Iterable[bytes]) -> list[str]:
    """The rooms the input names (a v12 create event names none: its room is named by the
    events after it)."""
    found: dict[str, None] = {}
    for line in lines:
        room_id = json.loads(line)["event"].get("room_id")
        if isinstance(room_id, str):
            found.setdefault(room_id)
    return list(found)


def answers(database: Path, rooms: Iterable[str]) -> dict[str, Answer]:
    """Every event's answer, as `roomserver state --all-events [--before]` prints it."""
    store = SqliteStore(str(database))
    try:
        result: dict[str, Answer] = {}
        for room_id in rooms:
            after = room_state_lines(store, room_id, at=None, before=False, all_events=True)
            before = {
                row["event_id"]: row
                for row in room_state_lines(
                    store, room_id, at=None, before=True, all_events=True
                )
            }
            for row in after:
                result[row["event_id"]] = Answer(
                    row["rejected"],
                    _entries(before[row["event_id"]]["state"]),
                    _entries(row["state"]),
                )
        return result
    finally:
        store.close()


@dataclass(frozen=True)
class Disagreement:
    line: int
    event_id: str
    problems: list[str]

    def __str__(self) -> str:
        return f"input line {self.line}, event {self.event_id}: " + "; ".join(self.problems)


def _state_diff(what: str, want: frozenset[StateEntry], got: frozenset[StateEntry]) -> str:
    want_keys = {(t, k): e for t, k, e in want}
    got_keys = {(t, k): e for t, k, e in got}
    parts = []
    for key in sorted(want_keys.keys() | got_keys.keys()):
        if want_keys.get(key) != got_keys.get(key):
            parts.append(f"{key}: reference {want_keys.get(key)}, ours {got_keys.get(key)}")
    return f"{what} differs at " + ", ".join(parts)


def disagreements(
    lines: Sequence[bytes], expected: dict[str, Answer], got: dict[str, Answer]
) -> list[Disagreement]:
    """The events whose answer differs from the reference's, in input order (`outlier`
    lines are fed, not compared)."""
    found: list[Disagreement] = []
    by_event = _event_ids_in_order(lines)
    for number, event_id in by_event:
        want = expected[event_id]
        have = got.get(event_id)
        if have is None:
            found.append(Disagreement(number, event_id, ["not stored"]))
            continue
        problems = []
        if have.rejected != want.rejected:
            problems.append(f"rejected: reference {want.rejected}, ours {have.rejected}")
        if have.state_before != want.state_before:
            problems.append(_state_diff("state before", want.state_before, have.state_before))
        if have.state_after != want.state_after:
            problems.append(_state_diff("state after", want.state_after, have.state_after))
        if problems:
            found.append(Disagreement(number, event_id, problems))
    return found


def _event_ids_in_order(lines: Sequence[bytes]) -> list[tuple[int, str]]:
    """(line number, event ID) of each compared line. Event IDs of v3+ rooms are computed,
    not carried, so they are taken from the decoded event."""
    from processor.matrix import room_version
    from processor.matrix.pdu import decode_pdu

    ids: list[tuple[int, str]] = []
    for number, line in enumerate(lines, 1):
        item = json.loads(line)
        if item.get("kind", "new") == "outlier":
            continue
        event = decode_pdu(item["event"], room_version(item["room_version"]))
        ids.append((number, event.event_id))
    return ids


def describe(room: str, found: Sequence[Disagreement], total: int) -> str:
    return (
        f"{room}: {len(found)} of {total} events disagree with the reference homeserver; "
        f"first: {found[0]}"
    )


def check_room(room: Room, workdir: Path, *, lines: Sequence[bytes] | None = None,
               batch_size: int = 500) -> list[Disagreement]:
    """Ingest `room` (or `lines`, another arrangement of it) into a fresh database and
    compare every event's answer with the reference's."""
    lines = room.lines() if lines is None else lines
    database = workdir / f"{room.name}.db"
    ingest_room(lines, database, batch_size=batch_size)
    return disagreements(lines, room.expected_answers(), answers(database, room_ids(lines)))
