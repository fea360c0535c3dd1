"""`roomserver state` ends with one line and a status that says what went wrong:
a room or event that is not in the database is `NotFound` (status 4, no longer a
"configuration error"), and a database whose stored state is broken is `CorruptState`
(status 3, saying to restore or rebuild), never a traceback."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from processor.cli import main
from processor.generate import generate
from tests.integration.pipeline.rooms import encode_lines


@pytest.fixture
def db(tmp_path: Path) -> tuple[Path, str]:
    """An ingested SQLite database and its room."""
    traffic = generate(rooms=1, events=30, room_version="10", seed=13)
    room_id = next(i["event"]["room_id"] for i in traffic.inputs if "room_id" in i["event"])
    source = tmp_path / "in.jsonl"
    source.write_bytes(encode_lines(traffic.inputs))
    database = tmp_path / "rs.db"
    assert main(["ingest", str(source), "--database", str(database)]) == 0
    return database, str(room_id)


def _error_line(capsys: pytest.CaptureFixture[str]) -> str:
    captured = capsys.readouterr()
    assert captured.out == ""
    err = captured.err
    assert err.endswith("\n") and err.count("\n") == 1 and "Traceback" not in err, err
    return err.rstrip("\n")


def test_a_room_not_in_the_database(
    db: tuple[Path, str], capsys: pytest.CaptureFixture[str]
) -> None:
    database, _ = db
    capsys.readouterr()
    assert main(["state", "--database", str(database), "--room", "!nope:x"]) == 4
    assert _error_line(capsys) == "roomserver state: room !nope:x is not in this database"


def test_an_event_not_in_the_room(
    db: tuple[Path, str], capsys: pytest.CaptureFixture[str]
) -> None:
    database, room_id = db
    capsys.readouterr()
    args = ["state", "--database", str(database), "--room", room_id, "--at", "$nope"]
    assert main(args) == 4
    assert _error_line(capsys) == f"roomserver state: event $nope is not in room {room_id}"


def test_a_snapshot_naming_missing_blocks(
    db: tuple[Path, str], capsys: pytest.CaptureFixture[str]
) -> None:
    """Every state block deleted: the room's current snapshot names blocks that do not
    exist, an invariant the storage checks on read."""
    database, room_id = db
    with sqlite3.connect(database) as conn:
        assert conn.execute("DELETE FROM state_blocks").rowcount > 0
    conn.close()
    capsys.readouterr()
    assert main(["state", "--database", str(database), "--room", room_id]) == 3
    line = _error_line(capsys)
    assert line.startswith("roomserver state: the database is corrupt: state snapshot "), line
    assert "names state blocks that do not exist" in line
    assert line.endswith("restore it from a backup or rebuild it (roomserver rebuild)")
