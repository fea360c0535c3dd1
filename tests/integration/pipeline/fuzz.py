"""A mutation fuzzer for `ingest` over generated valid traffic.

One case: a database that already holds the first part of the traffic (stored by an earlier
run), then a run of the rest with one mutated line inserted at a random place in its last
batch. The mutation is one of the ways a hostile producer breaks a line (bytes that are not
UTF-8, encoded surrogates, deep nesting, huge or NUL-carrying fields, a false room version,
another kind, byte flips, truncation...), applied to a copy of an earlier line. Properties
checked against a clean run of the same traffic:

* no exception escapes `ingest` (no traceback), the run ends (pytest-timeout bounds it);
* every valid event before the mutated line has the outcome and the state (per
  `room_state_lines`) the clean run gives it, and every valid event after it is processed;
* nothing stored before the run changed (rejected flag and state of every earlier event).
"""

from __future__ import annotations

import io
import json
import random
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from processor.core.decision import Outcome
from processor.generate import generate
from processor.ingest import ingest, read_lines
from processor.room_state import room_state_lines
from processor.storage import open_store

__all__ = ["FuzzFailure", "Fuzzer"]

_BATCH = 16
Mutation = Callable[[bytes, random.Random], bytes]


def _splice(line: bytes, rng: random.Random, piece: bytes) -> bytes:
    at = rng.randrange(1, len(line))
    return line[:at] + piece + line[at:]


def _in_string(line: bytes, rng: random.Random, piece: bytes) -> bytes:
    """`piece` inside a random string value (after an opening quote)."""
    quotes = [i for i, b in enumerate(line) if b == 0x22]
    at = rng.choice(quotes) + 1
    return line[:at] + piece + line[at:]


def _set_field(line: bytes, name: str, value: Any) -> bytes:
    item = json.loads(line)
    item[name] = value
    return json.dumps(item).encode()


def _set_event_field(line: bytes, name: str, value: Any) -> bytes:
    item = json.loads(line)
    item["event"][name] = value
    return json.dumps(item).encode()


MUTATIONS: dict[str, Mutation] = {
    "byte 0xff": lambda line, rng: _in_string(line, rng, b"\xff"),
    "encoded surrogate": lambda line, rng: _in_string(line, rng, b"\xed\xa0\x80"),
    "overlong utf-8": lambda line, rng: _in_string(line, rng, b"\xc0\xaf"),
    "random bytes": lambda line, rng: _splice(line, rng, rng.randbytes(rng.randrange(1, 8))),
    "flip a byte": lambda line, rng: (
        lambda at: line[:at] + bytes([line[at] ^ (1 << rng.randrange(8))]) + line[at + 1 :]
    )(rng.randrange(len(line))),
    "truncate": lambda line, rng: line[: rng.randrange(len(line))],
    "deep nesting": lambda line, rng: line[:-1]
    + b',"x":' + b"[" * (n := rng.choice([129, 990, 5000])) + b"]" * n + b"}",
    "deep content": lambda line, rng: line.replace(
        b'"content":{', b'"content":{"d":' + b"[" * 2000 + b"]" * 2000 + b",", 1
    ),
    "NUL in a string": lambda line, rng: _in_string(line, rng, b"\\u0000"),
    "huge transaction_id": lambda line, rng: _set_field(line, "transaction_id", "t" * 1_000_000),
    "huge send_as_server": lambda line, rng: _set_field(line, "send_as_server", "s" * 1_000_000),
    "false room_version": lambda line, rng: _set_field(
        line, "room_version", rng.choice(["1", "2", "5", "11", "12", "99", ""])
    ),
    "other kind": lambda line, rng: _set_field(line, "kind", rng.choice(["outlier", "old"])),
    "other room": lambda line, rng: _set_event_field(line, "room_id", "!elsewhere:s9.example"),
    "has_state junk": lambda line, rng: _set_field(
        _set_field(line, "has_state", True), "state_event_ids", ["$nope", "\x00"]
    ),
    "wrong type": lambda line, rng: _set_event_field(
        line, rng.choice(["prev_events", "auth_events", "depth", "content", "sender"]),
        rng.choice([None, 1, "x", [], {}, [[1]], 2**64]),
    ),
    "duplicate key": lambda line, rng: line[:-1] + b',"kind":"new"}',
}


@dataclass
class FuzzFailure:
    case: int
    mutation: str
    problem: str


@dataclass
class Fuzzer:
    """Generated traffic, its clean run, and a prefix-stored database to copy per case."""

    workdir: Path
    seed: int = 14
    events: int = 160
    lines: list[bytes] = field(default_factory=list)
    prefix: int = 0
    clean: dict[str, tuple[bool, Any]] = field(default_factory=dict)
    clean_outcomes: dict[str, Outcome] = field(default_factory=dict)
    event_ids: list[str] = field(default_factory=list)
    rooms: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        # Two rooms of different versions (the v1 format has event IDs in the event; v12
        # derives room IDs from create events), so citing across versions is exercised.
        traffic = [
            generate(rooms=1, events=self.events // 2, room_version=v, seed=self.seed + n)
            for n, v in enumerate(("1", "11"))
        ]
        inputs = [i for t in traffic for i in t.inputs]
        self.lines = [json.dumps(i, separators=(",", ":")).encode() for i in inputs]
        clean_db = self.workdir / "clean.db"
        summary = self._run(clean_db, self.lines)
        self.clean_outcomes = summary.event_outcomes
        self.event_ids = list(summary.event_outcomes)
        self.rooms = sorted({i["event"]["room_id"] for i in inputs if "room_id" in i["event"]})
        self.clean = self._states(clean_db)
        # The part stored "before the run" of each case.
        self.prefix = len(self.lines) // 2
        self._run(self.workdir / "prefix.db", self.lines[: self.prefix])

    @staticmethod
    def _run(path: Path, lines: list[bytes]) -> Any:
        store = open_store(str(path))
        try:
            data = b"\n".join(lines) + b"\n"
            return ingest(store, read_lines(io.BytesIO(data)), batch_size=_BATCH,
                          record_outcomes=True)
        finally:
            store.close()

    def _states(self, path: Path) -> dict[str, tuple[bool, Any]]:
        """Event ID -> (rejected, state after it) for every event of the traffic's rooms."""
        store = open_store(str(path))
        try:
            found: dict[str, tuple[bool, Any]] = {}
            for room_id in self.rooms:
                for line in room_state_lines(store, room_id, at=None, before=False,
                                             all_events=True):
                    found[line["event_id"]] = (line["rejected"], line["state"])
            return found
        finally:
            store.close()

    def cases(self, count: int, seed: int) -> Iterator[tuple[int, str, FuzzFailure | None]]:
        rng = random.Random(seed)
        names = sorted(MUTATIONS)
        for case in range(count):
            name = names[case % len(names)] if case < len(names) else rng.choice(names)
            yield case, name, self.case(case, name, random.Random(rng.random()))

    def case(self, case: int, name: str, rng: random.Random) -> FuzzFailure | None:
        rest = self.lines[self.prefix :]
        # Somewhere in the last batch: the lines before it are compared exactly.
        at = rng.randrange(max(0, len(rest) - _BATCH), len(rest) + 1)
        source = rng.randrange(0, self.prefix + at)
        mutated = MUTATIONS[name](self.lines[source], rng)
        path = self.workdir / f"case{case}.db"
        shutil.copyfile(self.workdir / "prefix.db", path)
        try:
            try:
                summary = self._run(path, [*rest[:at], mutated, *rest[at:]])
            except Exception as e:  # the property: nothing escapes
                return FuzzFailure(case, name, f"{type(e).__name__}: {e}"[:300])
            states = self._states(path)
        finally:
            for leftover in path.parent.glob(path.name + "*"):
                leftover.unlink()
        ids = self.event_ids
        checked = ids[: self.prefix + at]
        for event_id in checked:
            if states.get(event_id) != self.clean.get(event_id):
                return FuzzFailure(case, name, f"{event_id}: state differs from a clean run")
        outcomes = summary.event_outcomes
        for event_id in ids[self.prefix + at :]:
            got = outcomes.get(event_id)
            if got is None or got is Outcome.DEAD_LETTERED:
                return FuzzFailure(case, name, f"{event_id}: valid event not processed ({got})")
        return None
