"""Every answer reflects one committed state: while `ingest` commits a room batch by batch
in another thread, latest events and state (over HTTP, and through the engine directly, in
two reader threads) always equal the room as it stood after some committed batch — the
forward extremity and the whole current state of the same prefix of the input — and never
go back to an earlier batch.

No sleeps: the writer waits (on an event) at each batch boundary until a reader has seen
that boundary, so every committed state is observed, while the next batch is written as the
readers keep reading."""

from __future__ import annotations

import io
import json
import threading
from collections.abc import Iterator
from typing import Any

from processor.ingest import ingest, read_lines
from processor.storage import open_store
from tests.integration.pipeline.rooms import ALICE, BOB, S1, S2, S3, RoomBuilder, as_input
from tests.integration.query.conftest import Served

BATCH = 10
TIMEOUT = 120.0  # seconds a thread waits for the other before the test fails


def _room() -> tuple[RoomBuilder, list[dict[str, Any]], dict[int, tuple[list[str], Any]]]:
    """A room whose state changes with most events; the expected answer after each batch."""
    room = RoomBuilder("10")
    built = room.create(ALICE)
    for i in range(110):
        kind = i % 5
        if kind == 0:
            user = f"@user{i}:{(S1, S2, S3)[i % 3]}"
            built.append(room.member(user, user, "join"))
        elif kind == 1:
            built.append(room.event(ALICE, "m.room.topic", {"topic": f"topic {i}"}, ""))
        elif kind == 2:
            built.append(room.event(ALICE, "m.room.name", {"name": f"name {i}"}, ""))
        elif kind == 3:
            built.append(room.message(ALICE, f"message {i}"))
        else:
            built.append(room.event(ALICE, "x.counter", {"n": i}, f"key{i % 7}"))
    built.append(room.member(BOB, BOB, "join"))
    # Replay the intended state event by event: the answer after each committed batch.
    expected: dict[int, tuple[list[str], Any]] = {}
    state: dict[tuple[str, str], str] = {}
    for n, event in enumerate(built, start=1):
        if "state_key" in event.pdu:
            state[(event.pdu["type"], event.pdu["state_key"])] = event.event_id
        if n % BATCH == 0 or n == len(built):
            entries = sorted([t, k, e] for (t, k), e in state.items())
            expected[n] = ([event.event_id], entries)
    assert room.state == state
    return room, [as_input(b) for b in built], expected


class Readers:
    def __init__(self, expected: dict[int, tuple[list[str], Any]]) -> None:
        self.expected = expected
        self.seen = {n: threading.Event() for n in [0, *expected]}
        self.done = threading.Event()
        self.errors: list[str] = []
        self.answers = 0

    def boundary_of(self, body: dict[str, Any]) -> int | None:
        if not body["room_exists"]:
            return 0 if body["state"] == [] and body["latest_events"] == [] else None
        latest = [e["event_id"] for e in body["latest_events"]]
        for n, (extremities, state) in self.expected.items():
            if latest == extremities and body["state"] == state:
                return n
        return None

    def read(self, ask: Any, name: str) -> None:
        last = 0
        final = max(self.expected)
        try:
            while not self.errors:
                body = ask()
                self.answers += 1
                n = self.boundary_of(body)
                if n is None:
                    self.errors.append(f"{name}: an answer of no committed batch: {body}")
                    return
                if n < last:
                    self.errors.append(f"{name}: went back from batch end {last} to {n}")
                    return
                last = n
                self.seen[n].set()
                if n == final:
                    return
        except Exception as e:  # reported by the test, not lost in the thread
            self.errors.append(f"{name}: {type(e).__name__}: {e}")


def test_latest_events_and_state_is_always_a_committed_batch(served: Served) -> None:
    room, items, expected = _room()
    readers = Readers(expected)
    payload = b"".join(json.dumps(i).encode() + b"\n" for i in items)

    def messages() -> Iterator[Any]:
        for i, message in enumerate(read_lines(io.BytesIO(payload))):
            # Asked for the first message of the next batch: the previous one has committed.
            # Wait until a reader has seen it (or given up with an error).
            boundary = i and i % BATCH == 0 and not readers.errors
            if boundary and not readers.seen[i].wait(TIMEOUT):
                readers.errors.append(f"no reader saw the commit of batch end {i}")
            yield message

    writer_errors: list[BaseException] = []

    def write() -> None:
        store = open_store(served.url)
        try:
            ingest(store, messages(), batch_size=BATCH)
        except BaseException as e:
            writer_errors.append(e)
        finally:
            store.close()

    request = {"room_id": room.room_id}
    http_reader = threading.Thread(
        target=readers.read,
        args=(lambda: served.post("/query/latest_events_and_state", request)[1], "http"),
    )
    engine_reader = threading.Thread(
        target=readers.read,
        args=(
            lambda: json.loads(
                served.engine.answer("latest_events_and_state", json.dumps(request).encode())
            ),
            "engine",
        ),
    )
    # The readers start before the room exists: the first answers are "no such room".
    http_reader.start()
    engine_reader.start()
    assert readers.seen[0].wait(TIMEOUT) or readers.errors, "no reader answered"
    writer = threading.Thread(target=write)
    writer.start()
    writer.join(TIMEOUT * 2)
    http_reader.join(TIMEOUT)
    engine_reader.join(TIMEOUT)
    assert not writer.is_alive() and not http_reader.is_alive() and not engine_reader.is_alive()
    assert not writer_errors, writer_errors
    assert not readers.errors, readers.errors[:3]
    assert all(event.is_set() for event in readers.seen.values())
    assert readers.answers > len(expected)
