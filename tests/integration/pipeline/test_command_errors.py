"""`roomserver ingest` and `state` on wrong arguments: one line a user can act
on, no traceback, nothing created or rewritten by mistake; and the `--database` rule."""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import pytest

from processor.cli import main
from processor.errors import ConfigError
from processor.generate import generate
from processor.storage import DatabaseTarget, parse_database
from tests.integration.pipeline.rooms import encode_lines


def _traffic(events: int = 30) -> tuple[bytes, str]:
    traffic = generate(rooms=1, events=events, room_version="10", seed=14)
    room_id = next(i["event"]["room_id"] for i in traffic.inputs if "room_id" in i["event"])
    return encode_lines(traffic.inputs), str(room_id)


def _one_line_error(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "Traceback" not in err, err
    return err


@pytest.fixture
def db(tmp_path: Path) -> tuple[Path, str]:
    """An ingested database and its room."""
    data, room_id = _traffic()
    source = tmp_path / "in.jsonl"
    source.write_bytes(data)
    database = tmp_path / "rs.db"
    assert main(["ingest", str(source), "--database", str(database)]) == 0
    return database, room_id


def test_a_missing_input_file_creates_no_database(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    database = tmp_path / "rs.db"
    assert main(["ingest", str(tmp_path / "nope.jsonl"), "--database", str(database)]) == 1
    assert "nope.jsonl" in _one_line_error(capsys)
    assert list(tmp_path.iterdir()) == []


def test_a_directory_as_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["ingest", str(tmp_path), "--database", str(tmp_path / "rs.db")]) == 1
    assert "directory" in _one_line_error(capsys)


def test_output_into_a_missing_directory(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = tmp_path / "in.jsonl"
    source.write_bytes(_traffic()[0])
    out = tmp_path / "missing" / "out.jsonl"
    args = ["ingest", str(source), "--database", str(tmp_path / "rs.db"), "--output", str(out)]
    assert main(args) == 1
    assert str(out) in _one_line_error(capsys)


@pytest.mark.parametrize("via", ["/dev/stdin", "process substitution"])
def test_input_from_a_pipe_is_read_once(tmp_path: Path, via: str) -> None:
    """The line count for the progress bar used to read a pipe to its end first, leaving
    nothing to ingest ("events: 0", exit 0)."""
    data, _ = _traffic()
    database = tmp_path / "rs.db"
    command = [sys.executable, "-m", "processor.cli", "ingest"]
    if via == "/dev/stdin":
        done = subprocess.run(
            [*command, "/dev/stdin", "--database", str(database)],
            input=data, capture_output=True, check=True,
        )
    else:
        source = tmp_path / "in.jsonl"
        source.write_bytes(data)
        script = f'{" ".join(command)} <(cat "{source}") --database "{database}"'
        done = subprocess.run(["bash", "-c", script], capture_output=True, check=True)
    assert b"events:            30\n" in done.stdout


@pytest.mark.parametrize("flag", ["--room", "--at"])
def test_arguments_that_are_not_utf8(
    db: tuple[Path, str], flag: str, capsys: pytest.CaptureFixture[str]
) -> None:
    database, room_id = db
    # How Python hands over argv bytes that are not UTF-8 (b"\xff").
    values = {"--room": room_id, "--at": "$x", flag: "\udcff"}
    args = ["state", "--database", str(database), "--room", values["--room"]]
    args += ["--at", values["--at"]] if flag == "--at" else []
    assert main(args) == 2
    assert flag in _one_line_error(capsys)


def test_state_into_a_closed_pipe(db: tuple[Path, str]) -> None:
    database, room_id = db
    command = [sys.executable, "-m", "processor.cli", "state", "--database", str(database),
               "--room", room_id, "--all-events"]
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE) as process:
        assert process.stdout is not None and process.stderr is not None
        process.stdout.readline()
        process.stdout.close()  # as `| head -1` does
        err = process.stderr.read()
        assert process.wait() == 141
    assert b"Traceback" not in err and b"BrokenPipe" not in err, err


def test_state_never_rewrites_an_empty_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    empty = tmp_path / "empty.db"
    empty.touch()
    assert main(["state", "--database", str(empty), "--room", "!r:x"]) == 2
    assert "not a roomserver database" in _one_line_error(capsys)
    assert empty.read_bytes() == b""
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty.db"]


def test_state_leaves_the_database_as_it_was(db: tuple[Path, str]) -> None:
    database, room_id = db
    before = {p.name: p.read_bytes() for p in database.parent.iterdir()}
    assert main(["state", "--database", str(database), "--room", room_id]) == 0
    assert {p.name: p.read_bytes() for p in database.parent.iterdir()} == before


def test_a_bare_postgres_is_refused_not_made_a_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    source = tmp_path / "in.jsonl"
    source.write_bytes(_traffic()[0])
    assert main(["ingest", str(source), "--database", "postgres"]) == 2
    assert "sqlite:postgres" in _one_line_error(capsys)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.jsonl"]


@pytest.mark.parametrize("form", ["{path}", "sqlite:{path}"])
def test_sqlite_paths_with_equals_signs_and_the_sqlite_prefix(
    tmp_path: Path, form: str, capsys: pytest.CaptureFixture[str]
) -> None:
    data, room_id = _traffic()
    source = tmp_path / "in.jsonl"
    source.write_bytes(data)
    database = form.format(path=tmp_path / "a=b.db")
    assert main(["ingest", str(source), "--database", database]) == 0
    capsys.readouterr()
    assert main(["state", "--database", database, "--room", room_id]) == 0
    assert room_id in capsys.readouterr().out


@pytest.mark.parametrize(
    "url", ["postgresql://nobody@127.0.0.1:1/none", "postgresql://nobody@127.0.0.1:x/none"]
)
def test_an_unreachable_postgres_fails_at_once_in_one_line(
    url: str, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    """Closed port, malformed URL: the pool used to retry for 30 s, warning ten times."""
    with caplog.at_level(logging.WARNING):
        assert main(["state", "--database", url, "--room", "!r:x"]) == 1
    assert "cannot connect to PostgreSQL" in _one_line_error(capsys)
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []


@pytest.mark.parametrize(
    ("value", "target"),
    [
        ("postgresql://u@h/db", DatabaseTarget("postgresql", "postgresql://u@h/db")),
        ("postgres://u@h:5/db", DatabaseTarget("postgresql", "postgres://u@h:5/db")),
        ("sqlite:rooms.db", DatabaseTarget("sqlite", "rooms.db")),
        ("sqlite:///tmp/rooms.db", DatabaseTarget("sqlite", "/tmp/rooms.db")),
        ("sqlite::memory:", DatabaseTarget("sqlite", ":memory:")),
        ("rooms.db", DatabaseTarget("sqlite", "rooms.db")),
        ("dir/a=b.db", DatabaseTarget("sqlite", "dir/a=b.db")),
        ("host=h dbname=d", DatabaseTarget("sqlite", "host=h dbname=d")),
        ("./x:y.db", DatabaseTarget("sqlite", "./x:y.db")),
    ],
)
def test_the_database_rule(value: str, target: DatabaseTarget) -> None:
    assert parse_database(value) == target


@pytest.mark.parametrize(
    "value", ["", "postgres", "postgresql", "mysql://u@h/db", "postgresql:db", "sqlite:"]
)
def test_the_database_rule_refuses(value: str) -> None:
    with pytest.raises(ConfigError, match="postgresql://"):
        parse_database(value)
