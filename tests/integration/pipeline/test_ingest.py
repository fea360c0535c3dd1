"""The embedded mode end to end: generated rooms through `ingest` into SQLite.

The generator knows which events it made to be rejected or soft-failed; the handler must
reach exactly those outcomes, for every room version.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from processor.core.decision import Outcome
from processor.generate import generate
from processor.generate.traffic import write_jsonl
from processor.ingest import ingest, read_lines
from processor.storage import open_store


def _jsonl(traffic_inputs: list[dict[str, object]]) -> bytes:
    return b"".join(json.dumps(i).encode() + b"\n" for i in traffic_inputs)


@pytest.mark.parametrize("version", [str(v) for v in range(1, 13)])
def test_generated_rooms_reach_the_intended_outcomes(tmp_path: Path, version: str) -> None:
    traffic = generate(rooms=2, events=400, room_version=version, seed=int(version))
    text = io.StringIO()
    write_jsonl(traffic, text)
    store = open_store(str(tmp_path / "rs.db"))
    try:
        summary = ingest(
            store, read_lines(io.BytesIO(text.getvalue().encode())), batch_size=64,
            record_outcomes=True,
        )
    finally:
        store.close()
    assert summary.dead_letters == []
    got = {event_id: outcome.value for event_id, outcome in summary.event_outcomes.items()}
    wrong = {
        event_id: (want, got.get(event_id))
        for event_id, want in traffic.expected.items()
        if got.get(event_id) != want
    }
    assert wrong == {}
    assert summary.outcomes.get(Outcome.ACCEPTED, 0) > 200


def test_malformed_lines_are_reported_with_their_line_number(tmp_path: Path) -> None:
    traffic = generate(rooms=1, events=30, room_version="10", seed=7)
    lines = _jsonl(traffic.inputs).splitlines(keepends=True)
    lines.insert(3, b"{not json\n")
    lines.insert(10, b'{"kind": "new", "event": {"type": 5}}\n')
    store = open_store(str(tmp_path / "rs.db"))
    try:
        summary = ingest(store, read_lines(io.BytesIO(b"".join(lines))), batch_size=8)
    finally:
        store.close()
    assert [d.split(":")[0] for d in summary.dead_letters] == ["line 4", "line 11"]
    assert summary.events == 32
    assert summary.outcomes[Outcome.DEAD_LETTERED] == 2
    # Everything else was processed.
    processed = sum(n for o, n in summary.outcomes.items() if o is not Outcome.DEAD_LETTERED)
    assert processed == 30


def test_ingesting_twice_is_a_no_op(tmp_path: Path) -> None:
    traffic = generate(rooms=1, events=50, room_version="11", seed=3)
    data = _jsonl(traffic.inputs)
    store = open_store(str(tmp_path / "rs.db"))
    try:
        first = io.BytesIO()
        ingest(store, read_lines(io.BytesIO(data)), output=first)
        again = io.BytesIO()
        summary = ingest(store, read_lines(io.BytesIO(data)), output=again)
    finally:
        store.close()
    assert summary.outcomes == {Outcome.DUPLICATE: 50}
    assert again.getvalue() == b""
    assert first.getvalue().count(b"\n") > 0


def test_the_ingest_command_makes_garbage_collection_rarer(tmp_path: Path) -> None:
    import gc

    from processor.cli import main
    from processor.gc_tuning import THRESHOLDS

    traffic = generate(rooms=1, events=20, room_version="10", seed=5)
    source = tmp_path / "in.jsonl"
    source.write_bytes(_jsonl(traffic.inputs))
    before = gc.get_threshold()
    try:
        assert main(["ingest", str(source), "--database", str(tmp_path / "rs.db")]) == 0
        assert gc.get_threshold() == THRESHOLDS
    finally:
        gc.set_threshold(*before)
