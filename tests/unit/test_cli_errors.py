"""The CLI ends every `RoomserverError` the same way: one line on stderr,
`roomserver <command>: <message>`, never a traceback, and a non-zero status that says
which kind of failure it was (2 configuration, 3 corrupt database, 4 not found, 1 other)."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

import processor.cli as cli
import processor.errors as errors
from processor.matrix.canonical_json import CanonicalJsonError
from processor.pipeline.outputs import OutputTooLarge
from schemas.errors import EventTooLarge


def _all_subclasses(cls: type[errors.RoomserverError]) -> list[type[errors.RoomserverError]]:
    found = [cls]
    for sub in cls.__subclasses__():
        found += _all_subclasses(sub)
    return found


#: One instance of each class of the tree (those whose constructors take other arguments
#: built with them), with the exit status it must give.
EXPECTED_STATUS: dict[type[errors.RoomserverError], int] = {
    errors.RoomserverError: 1,
    errors.SchemaError: 1,
    errors.InvalidEvent: 1,
    EventTooLarge: 1,
    CanonicalJsonError: 1,
    errors.UnknownRoomVersion: 1,
    errors.AuthError: 1,
    errors.StateResolutionError: 1,
    errors.StorageError: 1,
    errors.CorruptState: 3,
    errors.NotFound: 4,
    errors.RoomNotFound: 4,
    errors.EventNotFound: 4,
    errors.KafkaUnavailable: 1,
    errors.MessageTooLarge: 1,
    errors.ConfigError: 2,
    errors.TopicNotFound: 2,
    OutputTooLarge: 2,
}


def _instance(cls: type[errors.RoomserverError]) -> errors.RoomserverError:
    if cls is errors.UnknownRoomVersion:
        return errors.UnknownRoomVersion("99")
    if cls is errors.RoomNotFound:
        return errors.RoomNotFound("!nope:x")
    if cls is errors.EventNotFound:
        return errors.EventNotFound("$nope", "!r:x")
    return cls(f"something about {cls.__name__}")


def test_every_class_of_the_tree_has_an_expected_status() -> None:
    """A new error class must be added above (and so get a status on purpose)."""
    tree = set(_all_subclasses(errors.RoomserverError))
    assert tree <= set(EXPECTED_STATUS), sorted(c.__name__ for c in tree - set(EXPECTED_STATUS))


def _run_raising(
    error: BaseException, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
    command: str = "state",
) -> tuple[int, str]:
    def dispatch(args: argparse.Namespace) -> int:
        raise error

    monkeypatch.setattr(cli, "_dispatch", dispatch)
    status = cli.main([command, "--room", "!r:x"] if command == "state" else [command, "-"])
    captured = capsys.readouterr()
    assert captured.out == ""
    return status, captured.err


@pytest.mark.parametrize("cls", list(EXPECTED_STATUS), ids=lambda c: c.__name__)
def test_each_error_is_one_line_and_its_status(
    cls: type[errors.RoomserverError],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    error = _instance(cls)
    status, err = _run_raising(error, monkeypatch, capsys)
    assert status == EXPECTED_STATUS[cls]
    assert err.endswith("\n") and err.count("\n") == 1, err
    assert err.startswith("roomserver state: "), err
    assert str(error).splitlines()[0] in err
    assert "Traceback" not in err


def test_a_message_over_several_lines_is_folded_into_one(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """psycopg's messages carry a DETAIL line under the ERROR."""
    error = errors.StorageError('PostgreSQL: duplicate key\nDETAIL:  Key (x)=(1) exists.\n')
    status, err = _run_raising(error, monkeypatch, capsys)
    assert status == 1
    assert err == (
        "roomserver state: PostgreSQL: duplicate key; DETAIL:  Key (x)=(1) exists.\n"
    )


def test_corrupt_state_says_what_to_do(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    error = errors.CorruptState("state snapshot 7 names state blocks that do not exist: [99]")
    status, err = _run_raising(error, monkeypatch, capsys)
    assert status == cli.EXIT_CORRUPT == 3
    assert err == (
        "roomserver state: the database is corrupt: state snapshot 7 names state blocks "
        "that do not exist: [99]; stopping: restore it from a backup or rebuild it "
        "(roomserver rebuild)\n"
    )


def test_a_bare_value_error_is_not_swallowed(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Only the roomserver's own errors are one line: anything else is a bug, whose
    traceback is what a bug report needs."""
    with pytest.raises(ValueError, match="a bug"):
        _run_raising(ValueError("a bug"), monkeypatch, capsys)


def test_produce_from_a_missing_file_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The file is opened before Kafka is contacted: no broker is needed to see this."""
    missing = tmp_path / "nope.jsonl"
    assert cli.main(["produce", str(missing)]) == 1
    err = capsys.readouterr().err
    assert err == f"roomserver produce: cannot open input {missing}: No such file or directory\n"


def test_generate_into_a_missing_directory_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "missing" / "out.jsonl"
    assert cli.main(["generate", "--rooms", "1", "--events", "3", "--output", str(out)]) == 1
    err = capsys.readouterr().err
    assert err == f"roomserver generate: cannot open output {out}: No such file or directory\n"


def test_generate_with_no_rooms_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["generate", "--rooms", "0", "--events", "3"]) == 2
    assert capsys.readouterr().err == "roomserver generate: --rooms must be at least 1, got 0\n"
